//! Chunking and hashing of incompressible data on one core: `ChunkList::of`,
//! and its two halves alone (the `FastCDC` chunker, BLAKE3) for comparison.
//!
//! `cargo bench --bench chunk_hash`

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use layerstore::ChunkList;

/// Input size: large enough to leave the caches, small enough to be quick.
const LEN: usize = 64 << 20;

fn chunk_hash(c: &mut Criterion) {
    let data = common::random(LEN, 0xc0de);
    let one = common::pool(1);
    let mut group = c.benchmark_group("chunk_hash");
    group.throughput(Throughput::Bytes(LEN as u64));
    group.sample_size(20);

    group.bench_function("ChunkList::of (1 thread)", |b| {
        b.iter(|| one.install(|| ChunkList::of(std::hint::black_box(&data))));
    });
    // The store's chunker parameters: FastCDC 2020, 16/64/256 KiB, level 1.
    group.bench_function("fastcdc v2020 alone", |b| {
        b.iter(|| {
            fastcdc::v2020::FastCDC::new(std::hint::black_box(&data), 16 << 10, 64 << 10, 256 << 10)
                .map(|c| c.length)
                .sum::<usize>()
        });
    });
    // BLAKE3 over the same chunk sizes ChunkList::of hashes.
    let lengths: Vec<usize> = ChunkList::of(&data)
        .chunks()
        .iter()
        .map(|c| c.len as usize)
        .collect();
    group.bench_function("blake3 alone (per chunk)", |b| {
        b.iter(|| {
            let mut at = 0;
            for &len in &lengths {
                std::hint::black_box(blake3::hash(&data[at..at + len]));
                at += len;
            }
        });
    });
    group.finish();
}

criterion_group!(benches, chunk_hash);
criterion_main!(benches);
