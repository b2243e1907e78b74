//! Text into the Containerfile parser: instructions or an error naming a
//! line, never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _accepted = layerstore::fuzzing::containerfile(data);
});
