//! Raw bytes into the config reader: it must return, never panic or over-allocate.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    layerstore::fuzzing::config(data);
});
