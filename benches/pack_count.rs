//! `contains` hits and misses in stores of the same 100 000 chunks written
//! as 1, 100 and 10 000 packs, each then folded into the combined index
//! (`Store::maintain(false)`, automatic maintenance off so that nothing is
//! consolidated): the rate should not depend on the number of packs.
//! Opening each store is timed too.
//!
//! The stores are built once per run, in a temporary directory (10 000
//! flushes: about a minute, not timed).
//!
//! `cargo bench --bench pack_count`

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use layerstore::{ChunkId, Store, StoreOptions};

const CHUNKS: u64 = 100_000;
/// Lookups per timed iteration.
const BATCH: usize = 4096;

fn blob(n: u64) -> [u8; 64] {
    let mut out = [0u8; 64];
    common::Noise::new(n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x9ac5).fill(&mut out);
    out[..8].copy_from_slice(&n.to_le_bytes());
    out
}

/// A store of `CHUNKS` one-chunk blobs in `packs` packs, folded.
fn build(path: &std::path::Path, packs: u64) -> Vec<ChunkId> {
    let store = Store::create(path, &StoreOptions::default()).expect("store");
    store.set_auto_maintenance(false);
    let per_pack = CHUNKS / packs;
    let mut ids = Vec::with_capacity(CHUNKS as usize);
    for n in 0..CHUNKS {
        ids.push(store.put_bytes(&blob(n)).expect("put").chunks()[0].id);
        if (n + 1) % per_pack == 0 {
            store.flush().expect("flush");
        }
    }
    store.maintain(false).expect("maintain");
    let packs_on_disk = std::fs::read_dir(path.join("packs"))
        .expect("packs/")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "pack"))
        })
        .count();
    assert_eq!(packs_on_disk as u64, packs);
    ids
}

fn pack_count(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut noise = common::Noise::new(0x1d);
    let misses: Vec<ChunkId> = (0..BATCH as u64)
        .map(|n| ChunkId::of(&blob(CHUNKS + n)))
        .collect();
    for packs in [1u64, 100, 10_000] {
        let path = dir.path().join(format!("store-{packs}"));
        let ids = build(&path, packs);
        let hits: Vec<ChunkId> = (0..BATCH)
            .map(|_| ids[(noise.next_u64() % CHUNKS) as usize])
            .collect();
        let mut group = c.benchmark_group(format!("{packs} packs"));
        group.bench_function("Store::open", |b| {
            b.iter(|| Store::open(&path).expect("open"));
        });
        let store = Store::open(&path).expect("open");
        group.throughput(Throughput::Elements(BATCH as u64));
        group.bench_function("contains (hits)", |b| {
            b.iter(|| assert!(hits.iter().all(|id| store.contains(id))));
        });
        group.bench_function("contains (misses)", |b| {
            b.iter(|| assert!(!misses.iter().any(|id| store.contains(id))));
        });
        group.finish();
    }
}

criterion_group!(benches, pack_count);
criterion_main!(benches);
