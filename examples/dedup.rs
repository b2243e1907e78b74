//! Store a directory's files twice and show what deduplication and compression
//! saved.
//!
//! ```text
//! cargo run --release --example dedup [DIR]
//! ```
//!
//! DIR defaults to this crate's own source tree. The store is made in a
//! temporary directory and deleted at the end.

use std::path::{Path, PathBuf};
use std::time::Instant;

use layerstore::{Store, StoreOptions};
use rayon::prelude::*;

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            files_under(&entry.path(), out)?;
        } else if kind.is_file() {
            out.push(entry.path());
        }
    }
    Ok(())
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / f64::from(1 << 20))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args_os()
        .nth(1)
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    let mut files = Vec::new();
    files_under(&dir, &mut files).map_err(|e| format!("cannot list '{}': {e}", dir.display()))?;
    files.retain(|f| {
        !f.strip_prefix(&dir)
            .unwrap_or(f)
            .components()
            .any(|c| c.as_os_str() == "target" || c.as_os_str() == ".git")
    });
    let logical: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    println!("{}: {} files, {}", dir.display(), files.len(), mib(logical));

    let scratch = tempfile::tempdir()?;
    let store = Store::create(scratch.path().join("store"), &StoreOptions::default())?;

    for pass in ["first", "second"] {
        let started = Instant::now();
        let lists = files
            .par_iter()
            .map(|f| store.put_file(f))
            .collect::<Result<Vec<_>, _>>()?;
        store.flush()?;
        let elapsed = started.elapsed();
        let stats = store.stats()?;
        let chunks: usize = lists.iter().map(|l| l.chunks().len()).sum();
        println!(
            "{pass} pass: {chunks} chunks in {:.0} ms; the store now holds {} distinct chunks, {} of content in {} on disk",
            elapsed.as_secs_f64() * 1000.0,
            stats.chunks,
            mib(stats.unique_bytes),
            mib(stats.stored_bytes + stats.index_bytes),
        );
    }

    let stats = store.stats()?;
    let on_disk = stats.stored_bytes + stats.index_bytes;
    let twice = 2 * logical;
    println!();
    println!("stored twice:           {}", mib(twice));
    println!(
        "after deduplication:    {} ({:.1}x smaller)",
        mib(stats.unique_bytes),
        twice as f64 / stats.unique_bytes.max(1) as f64
    );
    println!(
        "after compression:      {} on disk ({:.1}x smaller than the content, {:.1}x overall)",
        mib(on_disk),
        stats.unique_bytes as f64 / on_disk.max(1) as f64,
        twice as f64 / on_disk.max(1) as f64
    );
    Ok(())
}
