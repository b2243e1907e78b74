//! Raw bytes as an OCI layer tar (what import reads from a registry or a
//! layout): it must return an error or a valid layer, never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _accepted = layerstore::fuzzing::layer_tar(data);
});
