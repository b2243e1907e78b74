//! The `overlay` backend for real: overlayfs mounts, so these tests need root
//! (`CAP_SYS_ADMIN`). Without it each says SKIPPED loudly, and fails instead
//! when `LAYERSTORE_REQUIRE_PRIVILEGED=1` (CI sets it).

#[path = "../common/mod.rs"]
mod common;
mod crash;
mod lifecycle;
mod privilege;

use std::path::Path;
use std::sync::Arc;

pub(crate) use common::require_root;
use layerstore::mount::{Containers, OverlayBackend, PrepareOptions};
use layerstore::{Entry, EntryKind, History, ImageId, ScanOptions, Snapshot, Store, StoreOptions};

pub(crate) fn new_store(dir: &Path) -> Store {
    Store::create(dir.join("store"), &StoreOptions::default()).unwrap()
}

pub(crate) fn containers(store: &Store) -> Containers<'_> {
    Containers::new(store).with_backend(Arc::new(OverlayBackend::new()))
}

pub(crate) fn no_cache() -> ScanOptions {
    ScanOptions::default().use_stat_cache(false)
}

/// An image whose layers are the successive states of `dirs`: each
/// directory is scanned and diffed against the previous one.
pub(crate) fn image_of(store: &Store, dirs: &[&Path]) -> ImageId {
    let mut parent: Option<ImageId> = None;
    let mut tree = Snapshot::empty();
    for dir in dirs {
        let next = store.scan(dir, &no_cache()).unwrap().snapshot;
        let layer = tree.diff(&next);
        let id = store
            .put_child_image(parent.as_ref(), &layer, &next, None, History::default())
            .unwrap();
        parent = Some(id);
        tree = next;
    }
    store.flush().unwrap();
    parent.unwrap()
}

/// Writes a small tree of files into `dir`.
pub(crate) fn write_tree(dir: &Path, files: &[(&str, &str)]) {
    for (path, content) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
}

/// `tree` with hard links replaced by copies of their target: overlayfs cannot
/// link across layers, so a link to a lower layer's file is a copy there.
pub(crate) fn comparable(tree: &Snapshot) -> Snapshot {
    let entries = tree
        .iter()
        .map(|e| match &e.kind {
            EntryKind::Hardlink { target } => {
                let t = tree.get(target).unwrap();
                Entry::new(e.path.clone(), t.kind.clone(), t.meta.clone())
            }
            _ => e.clone(),
        })
        .collect();
    Snapshot::from_sorted(entries).unwrap()
}

pub(crate) fn target_options(target: &Path) -> PrepareOptions {
    PrepareOptions::default().backend("overlay").target(target)
}
