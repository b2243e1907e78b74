//! The overlay backend (needs root): mounting a container over an image whose
//! layers are extracted, committing a few changed files (the backend's part
//! alone, and the whole lifecycle through `Containers`), extracting a layer
//! against `Store::checkout` of the same tree, each on a small and a large
//! image; and the disk use of ten containers of one image, printed.
//!
//! `cargo bench --bench overlay` (as root; it says so and does nothing else)

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use layerstore::mount::{
    BaseTree, CommitOptions, Containers, MountBackend, OverlayBackend, PrepareOptions, ViewSpec,
};
use layerstore::{CheckoutOptions, History, ImageId, ScanOptions, Snapshot, Store, StoreOptions};

mod common;

/// Writes `files` files of about 2 KiB (text-like) in directories of 50.
fn write_tree(dir: &Path, files: usize, seed: u64) {
    let mut noise = common::Noise::new(seed);
    for i in 0..files {
        let sub = dir.join(format!("d{:03}", i / 50));
        if i % 50 == 0 {
            std::fs::create_dir_all(&sub).expect("mkdir");
        }
        let mut content = vec![0u8; 1024 + (noise.next_u64() % 2048) as usize];
        noise.fill(&mut content);
        std::fs::write(sub.join(format!("f{i:05}")), content).expect("write");
    }
}

/// A store with a one-layer image of `files` files; its tree.
fn image(root: &Path, files: usize) -> (Store, ImageId, Snapshot) {
    let store = Store::create(root.join("store"), &StoreOptions::default()).expect("store");
    let src = root.join("src");
    write_tree(&src, files, files as u64);
    let options = ScanOptions::default().use_stat_cache(false);
    let tree = store.scan(&src, &options).expect("scan").snapshot;
    let layer = Snapshot::empty().diff(&tree);
    let id = store
        .put_child_image(None, &layer, &tree, None, History::default())
        .expect("image");
    store.flush().expect("flush");
    (store, id, tree)
}

fn options(target: &Path) -> PrepareOptions {
    PrepareOptions::default().backend("overlay").target(target)
}

/// Changes one file, adds one, deletes one.
fn change_three_files(target: &Path) {
    std::fs::write(target.join("d000/f00001"), b"changed").expect("write");
    std::fs::write(target.join("d000/new"), b"new").expect("write");
    std::fs::remove_file(target.join("d000/f00002")).expect("rm");
}

/// Disk use of `dirs`: allocated blocks of each inode once.
fn du(dirs: &[&Path]) -> u64 {
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut pending: Vec<std::path::PathBuf> = dirs.iter().map(|d| d.to_path_buf()).collect();
    while let Some(path) = pending.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if seen.insert((meta.dev(), meta.ino())) {
            total += meta.blocks() * 512;
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read dir") {
                pending.push(entry.expect("entry").path());
            }
        }
    }
    total
}

/// Prints the disk use of ten containers of `image`, each with one changed
/// file, against that of ten checkouts of it.
fn print_disk_use(containers: &Containers<'_>, image: &ImageId, dir: &Path, label: &str) {
    let store = containers.store();
    let layers = store.path().join("mounts/layers");

    // Ten containers of one image, each with one changed file.
    let before = du(&[store.path()]);
    let mut targets = Vec::new();
    for i in 0..10 {
        let t = dir.join(format!("c{i}"));
        containers
            .prepare(&format!("c{i}"), image, &options(&t))
            .expect("prepare");
        std::fs::write(t.join("d000/f00001"), b"mine").expect("write");
        targets.push(t);
    }
    let after = du(&[store.path()]);
    let extracted = du(&[&layers]);
    println!(
        "overlay/disk-use/{label}: store {:.1} MiB before, {:.1} MiB with ten containers \
         (extracted layers {:.1} MiB, once); ten checkouts would take {:.1} MiB",
        before as f64 / 1_048_576.0,
        after as f64 / 1_048_576.0,
        extracted as f64 / 1_048_576.0,
        10.0 * extracted as f64 / 1_048_576.0,
    );
    for i in 0..10 {
        containers.remove(&format!("c{i}")).expect("remove");
    }
}

/// Extracting the image's layer for overlayfs against `Store::checkout` of
/// its tree.
fn bench_extraction(
    group: &mut BenchmarkGroup<'_, WallTime>,
    label: &str,
    store: &Store,
    image: &ImageId,
    tree: &Snapshot,
    dir: &Path,
) {
    let layers = store.path().join("mounts/layers");
    group.bench_function(format!("extract/{label}"), |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                std::fs::remove_dir_all(&layers).expect("clear cache");
                let start = Instant::now();
                OverlayBackend::extract(store, image).expect("extract");
                spent += start.elapsed();
            }
            spent
        });
    });
    group.bench_function(format!("checkout/{label}"), |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let dest = dir.join("checkout");
                let start = Instant::now();
                store
                    .checkout(tree, &dest, &CheckoutOptions::default())
                    .expect("checkout");
                spent += start.elapsed();
                std::fs::remove_dir_all(&dest).expect("clear");
            }
            spent
        });
    });
}

fn bench(c: &mut Criterion) {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED: the overlay benches need root (overlayfs mounts)");
        return;
    }
    let mut group = c.benchmark_group("overlay");
    group.sample_size(20);
    for (label, files) in [("small-200", 200), ("large-20000", 20_000)] {
        let tmp = tempfile::tempdir().expect("tmp");
        let (store, image, tree) = image(tmp.path(), files);
        OverlayBackend::extract(&store, &image).expect("extract");
        let containers = Containers::new(&store).with_backend(Arc::new(OverlayBackend::new()));
        let target = tmp.path().join("box");

        if files > 1000 {
            print_disk_use(&containers, &image, tmp.path(), label);
        }

        // The backend alone (what overlay adds), then the whole lifecycle.
        let backend = OverlayBackend::new();
        let state = tmp.path().join("state");
        std::fs::create_dir(&state).expect("state");
        std::fs::create_dir_all(&target).expect("target");
        let base = BaseTree::given(tree.clone());
        let spec = ViewSpec {
            name: "bench",
            state: &state,
            target: Some(&target),
            image,
            base: &base,
            read_only: false,
        };
        group.bench_function(format!("backend-mount/{label}"), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    backend.mount(&store, &spec).expect("mount");
                    spent += start.elapsed();
                    backend.remove(&store, &spec).expect("remove");
                }
                spent
            });
        });
        group.bench_function(format!("backend-changes-3-files/{label}"), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    backend.mount(&store, &spec).expect("mount");
                    change_three_files(&target);
                    let start = Instant::now();
                    let layer = backend.changes(&store, &spec).expect("changes");
                    spent += start.elapsed();
                    assert_eq!(layer.whiteouts().len(), 1);
                    backend.remove(&store, &spec).expect("remove");
                }
                spent
            });
        });

        group.bench_function(format!("mount/{label}"), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    containers
                        .prepare("box", &image, &options(&target))
                        .expect("prepare");
                    spent += start.elapsed();
                    containers.remove("box").expect("remove");
                }
                spent
            });
        });

        group.bench_function(format!("commit-3-files/{label}"), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    containers
                        .prepare("box", &image, &options(&target))
                        .expect("prepare");
                    change_three_files(&target);
                    let start = Instant::now();
                    containers
                        .commit("box", &CommitOptions::default())
                        .expect("commit");
                    spent += start.elapsed();
                    containers.remove("box").expect("remove");
                }
                spent
            });
        });

        bench_extraction(&mut group, label, &store, &image, &tree, tmp.path());
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
