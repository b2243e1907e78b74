//! Stored size of a real source tree against compressing each chunk alone.
//!
//! Puts every regular file under `$LAYERSTORE_BENCH_TREE` into a fresh store
//! (files in parallel on rayon's default pool), flushes, and compares
//! `stats().stored_bytes` with the sum, over every stored chunk, of that chunk
//! compressed alone with zstd at the store's level (or its raw length when
//! zstd does not shrink it, as a store compressing chunks alone would do).
//! Prints the figures; skips with a message when the variable is unset.
//!
//! `LAYERSTORE_BENCH_TREE=/work/data/linux/linux-source-6.1 cargo bench --bench source_tree`

#![allow(clippy::cast_precision_loss, reason = "figures printed for people")]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use layerstore::{ChunkId, Store, StoreOptions};
use rayon::prelude::*;

fn walk(dir: &Path, out: &mut Vec<(PathBuf, u64)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("dir entry"))
        .collect();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let meta = std::fs::symlink_metadata(entry.path()).expect("lstat");
        if meta.is_dir() {
            walk(&entry.path(), out);
        } else if meta.is_file() {
            out.push((entry.path(), meta.len()));
        }
    }
}

fn main() {
    let Some(tree) = std::env::var_os("LAYERSTORE_BENCH_TREE") else {
        println!("source_tree: skipped (set LAYERSTORE_BENCH_TREE to a source tree)");
        return;
    };
    let tree = PathBuf::from(tree);
    let mut files = Vec::new();
    walk(&tree, &mut files);
    let input: u64 = files.iter().map(|(_, len)| len).sum();

    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Store::create(dir.path().join("store"), &StoreOptions::default()).expect("store");
    let start = Instant::now();
    let lists: Vec<_> = files
        .par_iter()
        .map(|(path, _)| store.put_file(path).expect("put_file"))
        .collect();
    store.flush().expect("flush");
    let ingest = start.elapsed();
    let stats = store.stats().expect("stats");

    let mut chunks: HashMap<ChunkId, u32> = HashMap::new();
    for list in &lists {
        for c in list.chunks() {
            chunks.insert(c.id, c.len);
        }
    }
    let ids: Vec<ChunkId> = chunks.keys().copied().collect();
    let level = store.zstd_level();
    let (alone_zstd, alone_best) = ids
        .par_iter()
        .map_init(
            || zstd::bulk::Compressor::new(level).expect("zstd"),
            |z, id| {
                let bytes = store.read_chunk(id).expect("read_chunk");
                let packed = z.compress(&bytes).expect("compress").len() as u64;
                (packed, packed.min(bytes.len() as u64))
            },
        )
        .reduce(|| (0, 0), |a, b| (a.0 + b.0, a.1 + b.1));

    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    println!("source tree:            {}", tree.display());
    println!(
        "files:                  {} ({:.1} MiB)",
        files.len(),
        mib(input)
    );
    println!(
        "ingest (put_file all, flush): {:.2} s on {} threads ({:.0} MiB/s)",
        ingest.as_secs_f64(),
        rayon::current_num_threads(),
        mib(input) / ingest.as_secs_f64()
    );
    println!(
        "unique chunks:          {} ({:.1} MiB)",
        stats.chunks,
        mib(stats.unique_bytes)
    );
    println!(
        "store stored_bytes:     {} ({:.1} MiB), index {:.1} MiB",
        stats.stored_bytes,
        mib(stats.stored_bytes),
        mib(stats.index_bytes)
    );
    println!(
        "each chunk alone, zstd -{level}: {} ({:.1} MiB); raw when not smaller: {} ({:.1} MiB)",
        alone_zstd,
        mib(alone_zstd),
        alone_best,
        mib(alone_best)
    );
    println!(
        "ratio stored / alone:   {:.3} (vs zstd alone), {:.3} (vs raw-when-not-smaller); target <= 0.85",
        stats.stored_bytes as f64 / alone_zstd as f64,
        stats.stored_bytes as f64 / alone_best as f64
    );
}
