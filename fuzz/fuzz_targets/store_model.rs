//! The model-based target: operations decoded from the bytes drive a store
//! (in a temporary directory) and an in-memory model side by side.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    layerstore::fuzzing::store_model(data);
});
