//! Raw bytes into the pack reader: it must return, never panic or over-allocate.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _accepted = layerstore::fuzzing::pack(data);
});
