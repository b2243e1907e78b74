//! Raw bytes into a stored tree's directory object: decoding returns, never
//! panics or over-allocates; what decodes re-encodes to the same bytes and
//! reads back as a tree (see `layerstore::fuzzing::directory`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _accepted = layerstore::fuzzing::directory(data);
});
