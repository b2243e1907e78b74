//! A layer in overlayfs's form: the tree that, as a lower directory above
//! the directories of the layers below, shows the layer applied.

use std::collections::{BTreeMap, HashSet};

use crate::error::{Error, Result};
use crate::fsutil::device::makedev;
use crate::tree::{Entry, EntryKind, Layer, Metadata, Snapshot, TreePath};

/// The xattr that makes a directory of an overlayfs layer opaque.
pub(crate) const OPAQUE_XATTR: &[u8] = b"trusted.overlay.opaque";

/// The namespace of overlayfs's own xattrs (origin, impure, redirect, …).
pub(crate) const OVERLAY_XATTR_PREFIX: &[u8] = b"trusted.overlay.";

/// The tree that, as a lower directory of overlayfs above the directories of
/// the layers below, shows `after` = `layer.apply(lower)`.
///
/// # Errors
/// [`Error::InvalidTree`] if `after` is not `layer` applied to `lower` (a
/// parent or a hard-link target is missing).
pub(crate) fn overlay_tree(layer: &Layer, lower: &Snapshot, after: &Snapshot) -> Result<Snapshot> {
    let mut out: BTreeMap<TreePath, Entry> = BTreeMap::new();
    let opaque_set: HashSet<&TreePath> = layer.opaque_dirs().iter().collect();
    let whiteout_set: HashSet<&TreePath> = layer.whiteouts().iter().collect();
    let upserted_file = |path: &TreePath| {
        layer
            .upserts()
            .binary_search_by(|e| e.path.cmp(path))
            .ok()
            .and_then(|i| layer.upserts().get(i))
            .is_some_and(Entry::is_file)
    };
    let opaque = |mut meta: Metadata| {
        meta.xattrs.insert(OPAQUE_XATTR.to_vec(), b"y".to_vec());
        meta
    };
    for upsert in layer.upserts() {
        let mut entry = upsert.clone();
        // overlayfs would act on these (hide, redirect, …); an image's own
        // are not shown (overlayfs hides the namespace in the view anyway).
        entry
            .meta
            .xattrs
            .retain(|name, _| !name.starts_with(OVERLAY_XATTR_PREFIX));
        if let EntryKind::Hardlink { target } = &upsert.kind
            && !upserted_file(target)
        {
            // A link to a lower layer's file: copied up, with the inode's
            // metadata, since links cannot cross lower directories.
            let file = after.get(target).filter(|e| e.is_file());
            let file = file.ok_or_else(|| Error::InvalidTree {
                path: upsert.path.to_string(),
                reason: format!("hard-link target '{target}' is not a file of the tree"),
            })?;
            entry = Entry::new(upsert.path.clone(), file.kind.clone(), file.meta.clone());
        }
        if entry.is_dir()
            && (opaque_set.contains(&entry.path) || whiteout_set.contains(&entry.path))
        {
            entry.meta = opaque(entry.meta);
        }
        out.insert(entry.path.clone(), entry);
    }
    for dir in layer.opaque_dirs() {
        if out.contains_key(dir) {
            continue;
        }
        if let Some(entry) = after.get(dir).filter(|e| e.is_dir()) {
            out.insert(
                dir.clone(),
                Entry::dir(dir.clone(), opaque(entry.meta.clone())),
            );
        }
    }
    for path in layer.whiteouts() {
        // Only what is in the lower tree needs hiding, and only where the
        // parent still is a directory (else nothing beneath it shows anyway).
        let parent_is_dir = path
            .parent()
            .is_some_and(|p| after.get(&p).is_some_and(Entry::is_dir));
        if out.contains_key(path) || lower.get(path).is_none() || !parent_is_dir {
            continue;
        }
        let whiteout = EntryKind::CharDevice {
            rdev: makedev(0, 0),
        };
        out.insert(
            path.clone(),
            Entry::new(path.clone(), whiteout, Metadata::new(0)),
        );
    }
    // Lower hard links to a file this layer replaces follow it here.
    if layer.upserts().iter().any(Entry::is_file) {
        for entry in after {
            if let EntryKind::Hardlink { target } = &entry.kind
                && !out.contains_key(&entry.path)
                && upserted_file(target)
            {
                out.insert(entry.path.clone(), entry.clone());
            }
        }
    }
    // Parents, with the metadata they have at this layer; the root always.
    let mut parents: Vec<TreePath> = vec![TreePath::ROOT];
    for path in out.keys() {
        let mut at = path.parent();
        while let Some(p) = at {
            if out.contains_key(&p) {
                break;
            }
            at = p.parent();
            parents.push(p);
        }
    }
    for path in parents {
        if out.contains_key(&path) {
            continue;
        }
        let entry = after
            .get(&path)
            .filter(|e| e.is_dir())
            .ok_or_else(|| Error::InvalidTree {
                path: path.to_string(),
                reason: "a parent directory of the layer is not a directory of the tree".into(),
            })?;
        out.insert(path.clone(), Entry::dir(path, entry.meta.clone()));
    }
    Snapshot::from_sorted(out.into_values().collect())
}
