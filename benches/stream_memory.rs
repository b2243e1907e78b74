//! Peak memory while putting a long stream: `put_reader` over generated mixed
//! data (half text-like, half incompressible), never held in memory at once.
//! Run under `/usr/bin/time -v` and read "Maximum resident set size".
//!
//! `LAYERSTORE_BENCH_STREAM_GIB=10 /usr/bin/time -v cargo bench --bench stream_memory`
//! (or run the built bench binary directly under `time`, to leave cargo out).
//! Skips with a message when the variable is unset.

#![allow(clippy::cast_precision_loss, reason = "figures printed for people")]

mod common;

use std::path::Path;
use std::time::Instant;

use layerstore::{Store, StoreOptions};

fn main() {
    let Some(gib) = std::env::var("LAYERSTORE_BENCH_STREAM_GIB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        println!("stream_memory: skipped (set LAYERSTORE_BENCH_STREAM_GIB, e.g. 10)");
        return;
    };
    let len = gib << 30;
    let base = std::env::var_os("LAYERSTORE_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let dir = tempfile::tempdir_in(base).expect("a temporary directory");
    let store = Store::create(dir.path().join("store"), &StoreOptions::default()).expect("store");
    let start = Instant::now();
    let list = store
        .put_reader(
            common::MixedReader::new(len, 0x57e4),
            Path::new("<generated>"),
        )
        .expect("put_reader");
    store.flush().expect("flush");
    let took = start.elapsed();
    assert_eq!(list.content_len(), len);
    let stats = store.stats().expect("stats");
    println!(
        "put_reader of {gib} GiB: {:.1} s ({:.0} MiB/s), {} chunks, {:.1} MiB stored, {} threads",
        took.as_secs_f64(),
        (len >> 20) as f64 / took.as_secs_f64(),
        list.chunks().len(),
        stats.stored_bytes as f64 / f64::from(1 << 20),
        rayon::current_num_threads()
    );
}
