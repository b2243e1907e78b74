//! Raw bytes as a seekable layer blob: its footer and the table of contents
//! it locates (what a partial pull reads by range from a registry): it must
//! return an error or a checked TOC, never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _accepted = layerstore::fuzzing::seekable_toc(data);
});
