//! Raw bytes into `Image::decode`: it must return, never panic or over-allocate,
//! and what decodes must re-encode to the same bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _accepted = layerstore::fuzzing::image(data);
});
