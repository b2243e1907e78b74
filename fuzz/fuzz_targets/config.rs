//! Raw bytes into the config reader: it must return, never panic or over-allocate.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _accepted = layerstore::fuzzing::config(data);
});
