//! Putting mixed data (half text-like, half incompressible) into a fresh store,
//! with rayon pools of 1 and 2 threads. Each iteration gets its own store in a
//! temporary directory, so deduplication never skips the work; creating it is
//! not timed. Timed: `put_bytes` followed by `flush` (fsync included).
//!
//! `cargo bench --bench put` (64 MiB input);
//! `LAYERSTORE_BENCH_FULL=1 cargo bench --bench put -- 1GiB` for the 1 GiB input.

mod common;

use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use layerstore::{Store, StoreOptions};

fn put_once(pool: &rayon::ThreadPool, data: &[u8]) -> Duration {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Store::create(dir.path().join("store"), &StoreOptions::default()).expect("store");
    let start = Instant::now();
    pool.install(|| {
        store.put_bytes(data).expect("put");
        store.flush().expect("flush");
    });
    let took = start.elapsed();
    drop(store);
    took
}

fn bench_put(c: &mut Criterion, name: &str, len: usize, samples: usize) {
    let data = common::mixed(len, 0x0070_0070);
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Bytes(len as u64));
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(samples);
    for threads in [1, 2] {
        let pool = common::pool(threads);
        group.bench_function(format!("{threads} thread(s)"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| put_once(&pool, &data)).sum());
        });
    }
    group.finish();
}

/// The machine's own scaling: zstd at level 3 over 1 MiB blocks of the same
/// data, no store. What `put` can gain from 2 threads is bounded by this.
fn control(c: &mut Criterion) {
    use rayon::prelude::*;
    let len = 64 << 20;
    let data = common::mixed(len, 0x0070_0070);
    let mut group = c.benchmark_group("control zstd-3 64MiB mixed");
    group.throughput(Throughput::Bytes(len as u64));
    group.sample_size(20);
    for threads in [1, 2] {
        let pool = common::pool(threads);
        group.bench_function(format!("{threads} thread(s)"), |b| {
            b.iter(|| {
                pool.install(|| {
                    data.par_chunks(1 << 20)
                        .map(|block| zstd::bulk::compress(block, 3).expect("zstd").len())
                        .sum::<usize>()
                })
            });
        });
    }
    group.finish();
}

fn put(c: &mut Criterion) {
    control(c);
    bench_put(c, "put 64MiB mixed", 64 << 20, 20);
    if std::env::var_os("LAYERSTORE_BENCH_FULL").is_some() {
        bench_put(c, "put 1GiB mixed", 1 << 30, 10);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = put
}
criterion_main!(benches);
