//! Reliability: garbage collection (and the summary that spares a gc its
//! walk), fsck and repair, (feature `fault-injection`) gc killed mid-way, gc
//! beside live writers and readers (and readers' root leases), write faults
//! in commit, gc, repair and checkout, and the crash states a power loss
//! could leave of commit, tag, gc, consolidation and repair; and
//! (feature `fuzzing`) the fuzz inputs replayed. One binary.

#[path = "../common/mod.rs"]
mod common;
#[cfg(feature = "fault-injection")]
mod crash;
#[cfg(feature = "fault-injection")]
mod crash_maintain;
#[cfg(feature = "fault-injection")]
mod crash_model;
#[cfg(feature = "fault-injection")]
mod crash_states;
#[cfg(feature = "fault-injection")]
mod faults;
#[cfg(feature = "fault-injection")]
mod faults_checkout;
#[cfg(feature = "fault-injection")]
mod faults_gc;
#[cfg(feature = "fault-injection")]
mod faults_maintain;
#[cfg(feature = "fault-injection")]
mod faults_repair;
mod fsck;
#[cfg(feature = "fuzzing")]
mod fuzz_regressions;
mod gc;
mod gc_summary;
#[cfg(feature = "fault-injection")]
mod online_gc;
#[cfg(feature = "fault-injection")]
mod root_lease;
#[cfg(feature = "fault-injection")]
mod sources;
pub(crate) use common::random_bytes;
#[cfg(feature = "fault-injection")]
pub(crate) use common::{child, child_arg};

use std::path::{Path, PathBuf};

use layerstore::{
    Entry, EntryKind, History, ImageId, Metadata, Snapshot, Store, StoreOptions, TreePath,
};

/// Deterministic compressible bytes.
pub(crate) fn text_bytes(len: usize, seed: u64) -> Vec<u8> {
    random_bytes(len / 8 + 1, seed)
        .iter()
        .flat_map(|b| format!("w{:02} ", b % 40).into_bytes())
        .take(len)
        .collect()
}

/// The files of a test image: a few large random ones and small text ones
/// (which the store groups into shared frames).
pub(crate) fn files(seed: u64, large: usize, small: usize) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for i in 0..large {
        out.push((
            format!("big{i}"),
            random_bytes(150_000 + (i * 7919) % 100_000, seed * 1000 + i as u64),
        ));
    }
    for i in 0..small {
        out.push((
            format!("small{i}"),
            text_bytes(2_000 + (i * 131) % 20_000, seed * 1000 + 500 + i as u64),
        ));
    }
    out
}

pub(crate) fn new_store(dir: &Path) -> (Store, PathBuf) {
    let path = dir.join("store");
    let store = Store::create(&path, &StoreOptions::default()).expect("create store");
    (store, path)
}

/// Stores `files` as a one-layer image tagged `tag`.
pub(crate) fn make_image(store: &Store, tag: &str, files: &[(String, Vec<u8>)]) -> ImageId {
    let id = put_image(store, files);
    store.set_tag(&tag.parse().unwrap(), &id).unwrap();
    id
}

/// Stores `files` as a one-layer image (not flushed, not tagged).
pub(crate) fn put_image(store: &Store, files: &[(String, Vec<u8>)]) -> ImageId {
    let mut entries = vec![Entry::dir(TreePath::ROOT, Metadata::default())];
    for (name, content) in files {
        let chunks = store.put_bytes(content).unwrap();
        entries.push(Entry::file(
            TreePath::new(name.as_bytes()).unwrap(),
            chunks,
            Metadata::new(0o644),
        ));
    }
    let tree = Snapshot::from_entries(entries).unwrap();
    let layer = Snapshot::empty().diff(&tree);
    store
        .put_child_image(None, &layer, &tree, None, History::default())
        .unwrap()
}

/// Reads every file of image `id`'s tree (each read verified), by path.
pub(crate) fn read_image(
    store: &Store,
    id: &ImageId,
) -> layerstore::Result<Vec<(String, Vec<u8>)>> {
    let tree = store.image_tree(id)?;
    let mut out = Vec::new();
    for entry in tree.entries() {
        if let EntryKind::File { chunks, .. } = &entry.kind {
            out.push((entry.path.to_string(), store.read_all(chunks)?));
        }
    }
    Ok(out)
}

/// Asserts that image `id` reads back as `files`.
pub(crate) fn assert_image(store: &Store, id: &ImageId, files: &[(String, Vec<u8>)]) {
    let mut expected = files.to_vec();
    expected.sort();
    let mut read = read_image(store, id).unwrap();
    read.sort();
    assert_eq!(read.len(), expected.len());
    for (r, e) in read.iter().zip(&expected) {
        assert!(r == e, "file {} of image {id} differs", e.0);
    }
}

/// Bytes of `packs/` on disk.
pub(crate) fn packs_bytes(store_path: &Path) -> u64 {
    std::fs::read_dir(store_path.join("packs"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

pub(crate) fn packs_with(store_path: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(store_path.join("packs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    out.sort();
    out
}
