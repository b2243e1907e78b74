//! Fuzz inputs replayed as ordinary tests: every seed of `fuzz/corpus/` and
//! every crasher kept in `tests/fixtures/fuzz/<target>/` goes through the
//! same entry point as its fuzz target, so a fixed crash stays fixed.

use std::path::Path;

use layerstore::{ChunkId, Entry, History, Metadata, Snapshot, TreePath, fuzzing};

use super::new_store;

/// A fuzz target's entry point: whether the reader accepted the input.
type Target = fn(&[u8]) -> bool;

const TARGETS: [(&str, Target); 12] = [
    ("config", fuzzing::config),
    ("index", fuzzing::index),
    ("frame", fuzzing::frame),
    ("pack", fuzzing::pack),
    ("snapshot", fuzzing::snapshot),
    ("directory", fuzzing::directory),
    ("layer", fuzzing::layer),
    ("image", fuzzing::image),
    ("store_model", |bytes| {
        fuzzing::store_model(bytes);
        true
    }),
    ("containerfile", fuzzing::containerfile),
    ("layer_tar", fuzzing::layer_tar),
    ("seekable_toc", fuzzing::seekable_toc),
];

fn files_in(dir: &Path, seeds_only: bool) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<_> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| {
            !seeds_only
                || p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("seed-")
        })
        .collect();
    out.sort();
    out
}

#[test]
fn seeds_and_crashers_replay_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut replayed = 0;
    for (target, run) in TARGETS {
        let seeds = files_in(&root.join("fuzz/corpus").join(target), true);
        assert!(!seeds.is_empty(), "fuzz target {target} has no seed");
        let crashers = files_in(&root.join("tests/fixtures/fuzz").join(target), false);
        for file in seeds.iter().chain(&crashers) {
            eprintln!("{target}: {}", file.display());
            let accepted = run(&std::fs::read(file).unwrap());
            // A seed must still reach past the reader's first check (a format
            // change that leaves it stale makes it fuzz nothing), except one
            // named as an error case; crashers may be refused.
            let name = file.file_name().unwrap().to_string_lossy();
            if seeds.contains(file) && !name.starts_with("seed-error") {
                assert!(accepted, "{target}: the seed {name} no longer decodes");
            }
            replayed += 1;
        }
    }
    eprintln!("{replayed} inputs replayed");
}

/// Writes the seeds of the metadata targets (run by hand when the format
/// changes: `cargo test --test reliability write_fuzz_seeds -- --ignored`).
#[test]
#[ignore = "writes fuzz/corpus seeds; run by hand"]
fn write_fuzz_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = new_store(dir.path());
    let path = |p: &str| TreePath::new(p.as_bytes()).unwrap();
    let file = |p: &str, content: &[u8]| {
        Entry::file(
            path(p),
            store.put_bytes(content).unwrap(),
            Metadata::new(0o644),
        )
    };
    let lower = Snapshot::from_entries(vec![
        Entry::dir(TreePath::ROOT, Metadata::default()),
        Entry::dir(path("etc"), Metadata::new(0o755)),
        file("etc/hosts", b"127.0.0.1 localhost\n"),
        file("gone", b"deleted in the upper layer"),
        Entry::dir(path("opaque"), Metadata::new(0o755)),
        file("opaque/old", b"hidden"),
    ])
    .unwrap();
    let upper = Snapshot::from_entries(vec![
        Entry::dir(TreePath::ROOT, Metadata::default()),
        Entry::dir(path("etc"), Metadata::new(0o755)),
        file("etc/hosts", b"127.0.0.1 localhost\n::1 localhost\n"),
        Entry::symlink(path("link"), "etc/hosts", Metadata::new(0o777)),
        Entry::dir(path("opaque"), Metadata::new(0o700)),
        file("opaque/new", &b"x".repeat(70_000)),
    ])
    .unwrap();
    let layer = lower.diff(&upper);
    let base = store
        .put_child_image(
            None,
            &Snapshot::empty().diff(&lower),
            &lower,
            None,
            History::default(),
        )
        .unwrap();
    let image = store
        .put_child_image(Some(&base), &layer, &upper, None, History::default())
        .unwrap();
    let stored = |tree: &Snapshot| {
        let id = store.put_snapshot(tree).unwrap();
        store.read_chunk(&ChunkId::from(id)).unwrap()
    };
    let seeds: [(&str, &str, Vec<u8>); 8] = [
        ("snapshot", "seed-snapshot-0", lower.encode()),
        ("snapshot", "seed-snapshot-1", upper.encode()),
        ("directory", "seed-directory-0", stored(&lower)),
        ("directory", "seed-directory-1", stored(&upper)),
        ("layer", "seed-layer-0", layer.encode()),
        (
            "layer",
            "seed-layer-1",
            Snapshot::empty().diff(&lower).encode(),
        ),
        (
            "image",
            "seed-image-0",
            store.image(&base).unwrap().encode(),
        ),
        (
            "image",
            "seed-image-1",
            store.image(&image).unwrap().encode(),
        ),
    ];
    let config = std::fs::read(store.path().join("config")).unwrap();
    let seeds = seeds.into_iter().chain([("config", "seed-config", config)]);
    for (target, name, bytes) in seeds {
        std::fs::create_dir_all(root.join(target)).unwrap();
        std::fs::write(root.join(target).join(name), bytes).unwrap();
    }
    // The model target: operation bytes (see `fuzzing::store_model`).
    let model: [(&str, &[u8]); 3] = [
        // commit, tag a, commit on a, tag b, gc, reopen, untag a, gc
        (
            "seed-model-0",
            &[
                1, 1, 0, 3, 9, 2, 3, 0, 0, 7, 1, 3, 1, 1, 3, 1, 11, 7, 5, 0, 6, 0,
            ],
        ),
        // put, commit, flush, tag, put, gc with repacking, reopen
        (
            "seed-model-1",
            &[
                0, 200, 4, 2, 1, 1, 0, 3, 3, 2, 7, 7, 0, 4, 0, 0, 1, 0, 6, 2, 7, 1,
            ],
        ),
        // several commits and tags, untag, gc, commit on a survivor
        (
            "seed-model-2",
            &[
                1, 1, 0, 0, 1, 5, 6, 1, 1, 0, 2, 2, 4, 5, 3, 0, 0, 3, 1, 1, 5, 2, 6, 0, 2, 0, 0, 0,
                1, 1, 8, 4, 7, 1,
            ],
        ),
    ];
    std::fs::create_dir_all(root.join("store_model")).unwrap();
    for (name, bytes) in model {
        std::fs::write(root.join("store_model").join(name), bytes).unwrap();
    }
}
