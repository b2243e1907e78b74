//! A store holding one million chunks: opening it, and membership lookups
//! (`contains`) of chunks it holds and of chunks it does not.
//!
//! The store is built once per run (1M distinct 64-byte blobs, one chunk each)
//! in a temporary directory; that takes a few seconds and is not timed.
//!
//! `cargo bench --bench index`

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use layerstore::{ChunkId, Store, StoreOptions};
use rayon::prelude::*;

const CHUNKS: u64 = 1_000_000;
/// Lookups per timed iteration.
const BATCH: usize = 4096;

fn blob(n: u64) -> [u8; 64] {
    let mut out = [0u8; 64];
    common::Noise::new(n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xb10b).fill(&mut out);
    out[..8].copy_from_slice(&n.to_le_bytes());
    out
}

fn index(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("store");
    let ids: Vec<ChunkId> = {
        let store = Store::create(&path, &StoreOptions::default()).expect("store");
        let ids = (0..CHUNKS)
            .into_par_iter()
            .map(|n| {
                let list = store.put_bytes(&blob(n)).expect("put");
                list.chunks()[0].id
            })
            .collect();
        store.flush().expect("flush");
        assert_eq!(store.stats().expect("stats").chunks, CHUNKS);
        ids
    };

    let mut group = c.benchmark_group("1M chunks");
    group.bench_function("Store::open", |b| {
        b.iter(|| Store::open(&path).expect("open"));
    });

    let store = Store::open(&path).expect("open");
    let mut noise = common::Noise::new(0x1d);
    let hits: Vec<ChunkId> = (0..BATCH)
        .map(|_| ids[(noise.next_u64() % CHUNKS) as usize])
        .collect();
    let misses: Vec<ChunkId> = (0..BATCH as u64)
        .map(|n| ChunkId::of(&blob(CHUNKS + n)))
        .collect();
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("contains (hits)", |b| {
        b.iter(|| assert!(hits.iter().all(|id| store.contains(id))));
    });
    group.bench_function("contains (misses)", |b| {
        b.iter(|| assert!(!misses.iter().any(|id| store.contains(id))));
    });
    group.finish();
}

criterion_group!(benches, index);
criterion_main!(benches);
