//! A container's upper directory read back as a [`Layer`].
//!
//! overlayfs records a container's changes in its upper directory: new and
//! changed entries as they are (a changed lower file is copied up whole,
//! with its metadata; a directory is copied up when something beneath it
//! changes), a deleted lower entry as a `0:0` character device (a whiteout),
//! a directory deleted and recreated with `trusted.overlay.opaque=y`, and
//! bookkeeping xattrs of its own (`trusted.overlay.origin`, `impure`, …).
//!
//! The upper directory is scanned with [`Store::scan`] (stat cache included,
//! so a second commit of one container reads only what changed since), then:
//! whiteouts and opaque markers become the layer's whiteouts and opaque
//! directories, overlayfs's xattrs are dropped, and an entry equal to the
//! base image's entry at the same path (a directory copied up for a child, a
//! file copied up and changed back) is left out. A file copied up for a
//! metadata change (chmod, chown, touch) has content equal to the lower
//! file's: its chunks are those of the lower file, already in the store, so
//! the upsert changes only metadata and stores no new content.

use std::path::Path;

use crate::error::Result;
use crate::mount::overlay::extract::{OPAQUE_XATTR, OVERLAY_XATTR_PREFIX};
use crate::store::Store;
use crate::tree::{Entry, EntryKind, Layer, ScanOptions, Snapshot};

/// The layer of the changes recorded in `upper` over the tree `base`.
///
/// # Errors
/// [`Store::scan`]'s errors (naming the path); [`crate::Error::InvalidTree`]
/// if the changes do not make a layer.
pub(crate) fn layer_from_upper(store: &Store, upper: &Path, base: &Snapshot) -> Result<Layer> {
    let scanned = store.scan(upper, &ScanOptions::default())?.snapshot;
    let mut upserts = Vec::new();
    let mut whiteouts = Vec::new();
    let mut opaque_dirs = Vec::new();
    for mut entry in scanned.into_entries() {
        if !entry.path.is_root() && is_whiteout(&entry) {
            whiteouts.push(entry.path);
            continue;
        }
        let is_opaque = entry.is_dir()
            && entry
                .meta
                .xattrs
                .get(OPAQUE_XATTR)
                .is_some_and(|v| v.as_slice() == b"y");
        entry
            .meta
            .xattrs
            .retain(|name, _| !name.starts_with(OVERLAY_XATTR_PREFIX));
        if is_opaque && !entry.path.is_root() {
            opaque_dirs.push(entry.path.clone());
        }
        if base.get(&entry.path) == Some(&entry) {
            continue;
        }
        upserts.push(entry);
    }
    Layer::new(upserts, whiteouts, opaque_dirs)
}

/// Whether `entry` is an overlayfs whiteout: a `0:0` character device.
fn is_whiteout(entry: &Entry) -> bool {
    matches!(entry.kind, EntryKind::CharDevice { rdev: 0 })
}
