//! Committing a copy-backend container after a small change, against a plain
//! stat walk of the same tree: the copy backend's commit rescans the target
//! with the stat cache (seeded when the container was made), so it should
//! cost about one walk, whatever the size of the tree's content.
//!
//! `cargo bench --bench mount`; the medians are in
//! `target/criterion/mount/*/new/estimates.json`, and the ratio is printed.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use layerstore::mount::{CommitOptions, Containers, PrepareOptions};
use layerstore::{History, ScanOptions, Snapshot, Store, StoreOptions};

const DIRS: usize = 400;
const FILES_PER_DIR: usize = 50;
const CHANGED: usize = 5;

/// A source-like tree: `DIRS` directories of `FILES_PER_DIR` files of about
/// 4 KiB of text each (20 000 files, 80 MiB).
fn make_tree(dir: &Path) {
    let mut noise = common::Noise::new(7);
    let mut text = Vec::new();
    for d in 0..DIRS {
        let sub = dir.join(format!("d{:02}/sub{d:04}", d % 20));
        std::fs::create_dir_all(&sub).expect("mkdir");
        for f in 0..FILES_PER_DIR {
            text.clear();
            common::text_fill(&mut noise, &mut text, 2048 + (f * 97) % 4096);
            std::fs::write(sub.join(format!("file{f:02}.c")), &text).expect("write");
        }
    }
}

/// lstat of every entry, depth first: what any change detection must do.
fn stat_walk(dir: &Path) -> u64 {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let path = entry.expect("entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("lstat");
            n += 1;
            if meta.is_dir() {
                stack.push(path);
            }
        }
    }
    n
}

fn median_ns(name: &str) -> Option<f64> {
    let path = format!("target/criterion/mount/{name}/new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["median"]["point_estimate"].as_f64()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::create(dir.path().join("store"), &StoreOptions::default()).expect("store");
    let src = dir.path().join("src");
    make_tree(&src);
    let scanned = store.scan(&src, &ScanOptions::default()).expect("scan");
    let base = store
        .put_child_image(
            None,
            &Snapshot::empty().diff(&scanned.snapshot),
            &scanned.snapshot,
            None,
            History::default(),
        )
        .expect("image");
    store.flush().expect("flush");
    let containers = Containers::new(&store);
    let target = dir.path().join("container");
    containers
        .prepare(
            "bench",
            &base,
            &PrepareOptions::default().backend("copy").target(&target),
        )
        .expect("prepare");
    let entries = stat_walk(&target);

    let mut group = c.benchmark_group("mount");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("stat_walk", |b| b.iter(|| stat_walk(&target)));
    group.bench_function("scan_with_stat_cache", |b| {
        b.iter(|| store.scan(&target, &ScanOptions::default()).expect("scan"));
    });
    let mut round = 0u64;
    group.bench_function("copy_commit_5_changed", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                round += 1;
                for i in 0..CHANGED {
                    let file = target.join(format!("d{i:02}/sub{i:04}/file{i:02}.c"));
                    std::fs::write(&file, format!("changed in round {round}\n")).expect("edit");
                }
                let start = Instant::now();
                containers
                    .commit("bench", &CommitOptions::default())
                    .expect("commit");
                total += start.elapsed();
            }
            total
        });
    });
    group.finish();

    // The ratio from paired rounds (a walk, a scan and a commit back to back
    // in each), so that both see the same load on a shared machine.
    let (mut walks, mut scans, mut commits) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..15 {
        round += 1;
        for i in 0..CHANGED {
            let file = target.join(format!("d{i:02}/sub{i:04}/file{i:02}.c"));
            std::fs::write(&file, format!("changed in round {round}\n")).expect("edit");
        }
        let start = Instant::now();
        stat_walk(&target);
        walks.push(start.elapsed());
        let start = Instant::now();
        containers
            .commit("bench", &CommitOptions::default())
            .expect("commit");
        commits.push(start.elapsed());
        let start = Instant::now();
        store.scan(&target, &ScanOptions::default()).expect("scan");
        scans.push(start.elapsed());
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2].as_secs_f64() * 1e3
    };
    let (walk, scan, commit) = (median(&mut walks), median(&mut scans), median(&mut commits));
    println!(
        "{entries} entries, paired medians of 15 rounds: stat walk {walk:.1} ms, scan with the \
         stat cache {scan:.1} ms, copy commit of {CHANGED} changed files {commit:.1} ms; \
         commit / walk = {:.2}",
        commit / walk
    );
    if let (Some(walk), Some(commit)) = (median_ns("stat_walk"), median_ns("copy_commit_5_changed"))
    {
        println!(
            "criterion medians: stat walk {:.1} ms, copy commit {:.1} ms, ratio {:.2}",
            walk / 1e6,
            commit / 1e6,
            commit / walk
        );
    }
    containers.remove("bench").expect("remove");
}

criterion_group!(benches, bench);
criterion_main!(benches);
