//! The tree model at the size of a Linux source tree (84 000 entries): diffing
//! two snapshots, applying the layer, and decoding a stored snapshot.
//!
//! `cargo bench --bench tree`

use criterion::{Criterion, criterion_group, criterion_main};
use layerstore::{ChunkId, ChunkList, ChunkRef, Entry, Metadata, Snapshot, Timestamp, TreePath};

const DIRS: usize = 5_000;
const FILES_PER_DIR: usize = 16;

/// A tree of `DIRS` directories of `FILES_PER_DIR` files each; `touched`
/// files (every n-th) get new content, as after a small edit of the tree.
fn tree(touch_every: usize) -> Snapshot {
    let mut entries = vec![Entry::dir(TreePath::ROOT, Metadata::default())];
    let mut n = 0usize;
    for d in 0..DIRS {
        let dir = TreePath::new(format!("d{:02}/sub{d:05}", d % 40)).expect("path");
        entries.push(Entry::dir(dir.clone(), Metadata::new(0o755)));
        for f in 0..FILES_PER_DIR {
            n += 1;
            let edited = touch_every != 0 && n.is_multiple_of(touch_every);
            let id = ChunkId::of(format!("{n}-{edited}").as_bytes());
            let chunks: ChunkList = vec![ChunkRef { id, len: 4096 }].into();
            let mut meta = Metadata::new(0o644);
            meta.mtime = Timestamp::new(1_700_000_000, u32::try_from(n).unwrap_or(0));
            entries.push(Entry::file(
                dir.join(format!("file{f:02}.c")).expect("path"),
                chunks,
                meta,
            ));
        }
    }
    for d in 0..40 {
        entries.push(Entry::dir(
            TreePath::new(format!("d{d:02}")).expect("path"),
            Metadata::new(0o755),
        ));
    }
    Snapshot::from_entries(entries).expect("valid tree")
}

fn bench(c: &mut Criterion) {
    let old = tree(0);
    let new = tree(97);
    assert!(old.entries().len() > 80_000);
    let layer = old.diff(&new);
    let encoded = new.encode();
    let mut group = c.benchmark_group("tree-84k");
    group.sample_size(20);
    group.bench_function("diff", |b| b.iter(|| old.diff(&new)));
    group.bench_function("changes", |b| b.iter(|| old.changes(&new)));
    group.bench_function("apply", |b| b.iter(|| layer.apply(&old).expect("apply")));
    group.bench_function("decode", |b| {
        b.iter(|| Snapshot::decode(&encoded).expect("decode"));
    });
    group.bench_function("encode", |b| b.iter(|| new.encode()));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
