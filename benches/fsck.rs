//! `fsck` of a store holding 512 MiB of mixed content (incompressible and
//! text-like), in packs of the default size: every frame decoded, every chunk
//! rehashed, every pack hashed against its name. Throughput is in bytes of
//! pack read (what `FsckReport::bytes_checked` counts).
//!
//! `cargo bench --bench fsck`

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use layerstore::{FsckOptions, Store, StoreOptions};

const LEN: usize = 512 << 20;

fn fsck(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Store::create(dir.path().join("store"), &StoreOptions::default()).expect("store");
    store.put_bytes(&common::mixed(LEN, 0xf5c)).expect("put");
    store.flush().expect("flush");
    let first = store.fsck(&FsckOptions::default()).expect("fsck");
    assert!(first.is_clean(), "{:?}", first.problems);

    let mut group = c.benchmark_group("fsck");
    group.throughput(Throughput::Bytes(first.bytes_checked));
    group.sample_size(10);
    group.bench_function("512MiB mixed", |b| {
        b.iter(|| {
            let report = store.fsck(&FsckOptions::default()).expect("fsck");
            assert_eq!(report.bytes_checked, first.bytes_checked);
            report
        });
    });
    group.finish();
}

criterion_group!(benches, fsck);
criterion_main!(benches);
