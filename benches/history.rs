//! A store with a long history, built fast, for `scripts/bench-history.sh`:
//! a bench-like program (no criterion) with two commands.
//!
//! - `build STORE N`: creates a store at STORE and makes N small commits in
//!   it, as a CI loop would: each one a one-layer image of 4 small files (3
//!   shared by every commit, 1 new), flushed (automatic maintenance on, as
//!   in any handle), then tagged `ci/job-<n mod 50>:latest`, so that the
//!   store ends with 50 tags. Prints the time taken and the files in `packs/`.
//! - `open STORE`: opens the store 200 times; prints the median and the 90th
//!   percentile of `Store::open` in ms.
//!
//! `cargo bench --bench history -- build /tmp/aged 10000`

#![allow(clippy::cast_precision_loss, reason = "figures printed for people")]

use std::path::Path;
use std::time::{Duration, Instant};

use layerstore::{Entry, History, Metadata, Snapshot, Store, StoreOptions, TreePath};

/// Tags the commits cycle through.
const TAGS: u64 = 50;

fn small_commit(store: &Store, n: u64) {
    let mut entries = vec![Entry::dir(TreePath::ROOT, Metadata::default())];
    let shared = |i: u64| format!("shared file {i}\n").repeat(40 + i as usize);
    let files = [
        ("a.txt", shared(1)),
        ("b.txt", shared(2)),
        ("c.txt", shared(3)),
        (
            "build.log",
            format!("commit {n}: job {} passed\n", n % TAGS).repeat(20),
        ),
    ];
    for (name, content) in files {
        let chunks = store.put_bytes(content.as_bytes()).expect("put");
        entries.push(Entry::file(
            TreePath::new(name.as_bytes()).expect("path"),
            chunks,
            Metadata::new(0o644),
        ));
    }
    let tree = Snapshot::from_entries(entries).expect("tree");
    let layer = Snapshot::empty().diff(&tree);
    let id = store
        .put_child_image(None, &layer, &tree, None, History::default())
        .expect("image");
    store.flush().expect("flush");
    let tag = format!("ci/job-{}:latest", n % TAGS).parse().expect("tag");
    store.set_tag(&tag, &id).expect("tag");
}

fn build(path: &Path, commits: u64) {
    let started = Instant::now();
    let store = Store::create(path, &StoreOptions::default()).expect("create");
    for n in 0..commits {
        small_commit(&store, n);
    }
    drop(store);
    let took = started.elapsed();
    let files = std::fs::read_dir(path.join("packs"))
        .expect("packs/")
        .count();
    println!(
        "built {commits} commits in {:.1} s ({:.2} ms each); files in packs/: {files}",
        took.as_secs_f64(),
        took.as_secs_f64() * 1e3 / commits as f64
    );
}

fn open(path: &Path) {
    let mut times: Vec<Duration> = (0..200)
        .map(|_| {
            let started = Instant::now();
            let store = Store::open(path).expect("open");
            let took = started.elapsed();
            drop(store);
            took
        })
        .collect();
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "Store::open: median {:.3} ms, p90 {:.3} ms (200 opens)",
        ms(times[100]),
        ms(times[180])
    );
}

fn main() {
    // `cargo bench` passes `--bench`.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["build", path, commits] => build(Path::new(path), commits.parse().expect("N")),
        ["open", path] => open(Path::new(path)),
        [] => println!("history: give `build STORE N` or `open STORE`"),
        _ => {
            eprintln!("usage: history build STORE N | history open STORE");
            std::process::exit(2);
        }
    }
}
