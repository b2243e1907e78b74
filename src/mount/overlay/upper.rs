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

use std::collections::HashMap;
use std::path::Path;

use crate::error::Result;
use crate::mount::overlay::extract::{OPAQUE_XATTR, OVERLAY_XATTR_PREFIX};
use crate::store::Store;
use crate::tree::{Entry, EntryKind, Layer, ScanOptions, Snapshot, TreePath};

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
    upserts.extend(split_links(base, &upserts, &whiteouts, &opaque_dirs));
    Layer::new(upserts, whiteouts, opaque_dirs)
}

/// Hard links of `base` whose target the changes replace or delete, while
/// the links themselves stay: overlayfs keeps showing them with the old
/// content (a copy-up or a whiteout breaks the link, never the lower inode),
/// so they become files of their own, the old content and metadata, the
/// further links of one group linked to the first.
fn split_links(
    base: &Snapshot,
    upserts: &[Entry],
    whiteouts: &[TreePath],
    opaque_dirs: &[TreePath],
) -> Vec<Entry> {
    let upserted = |path: &TreePath| upserts.binary_search_by(|e| e.path.cmp(path)).is_ok();
    let touched = |path: &TreePath| {
        upserted(path)
            || whiteouts
                .iter()
                .any(|w| w == path || w.is_ancestor_of(path))
            || opaque_dirs.iter().any(|o| o.is_ancestor_of(path))
    };
    let mut firsts: HashMap<&TreePath, TreePath> = HashMap::new();
    let mut out = Vec::new();
    for entry in base {
        let EntryKind::Hardlink { target } = &entry.kind else {
            continue;
        };
        if !touched(target) || touched(&entry.path) {
            continue;
        }
        if let Some(first) = firsts.get(target) {
            out.push(Entry::hardlink(
                entry.path.clone(),
                first.clone(),
                entry.meta.clone(),
            ));
        } else if let Some(file) = base.get(target) {
            out.push(Entry::new(
                entry.path.clone(),
                file.kind.clone(),
                file.meta.clone(),
            ));
            firsts.insert(target, entry.path.clone());
        }
    }
    out
}

/// Whether `entry` is an overlayfs whiteout: a `0:0` character device.
fn is_whiteout(entry: &Entry) -> bool {
    matches!(entry.kind, EntryKind::CharDevice { rdev: 0 })
}

/// Real overlayfs mounts: need root.
#[cfg(test)]
mod privileged {
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    use super::*;
    use crate::mount::overlay::extract::LayerCache;
    use crate::mount::overlay::extract::tests_support::{
        p, privileged, store, tricky_image, unlink,
    };
    use crate::mount::overlay::kernel::{self, OverlaySpec};
    use crate::tree::CheckoutOptions;

    #[test]
    fn the_upper_dir_read_back_as_a_layer_gives_the_merged_tree() {
        if !privileged("overlay commit") {
            return;
        }
        let (tmp, store) = store();
        let (image, base) = tricky_image(&store);
        let cache = LayerCache::new(&store);
        let mut lowers: Vec<PathBuf> = cache.ensure(&store, &image).unwrap();
        lowers.reverse();
        let (upper, work, merged) = (
            tmp.path().join("upper"),
            tmp.path().join("work"),
            tmp.path().join("merged"),
        );
        let root_only = Snapshot::from_sorted(vec![base.root().clone()]).unwrap();
        store
            .checkout(&root_only, &upper, &CheckoutOptions::default())
            .unwrap();
        std::fs::create_dir(&work).unwrap();
        std::fs::create_dir(&merged).unwrap();
        kernel::mount(
            &merged,
            &OverlaySpec {
                lowers: &lowers,
                upper: Some((&upper, &work)),
            },
        )
        .unwrap();
        let changed = (|| -> std::io::Result<_> {
            let m = |s: &str| merged.join(s);
            std::fs::remove_file(m("a/b/k"))?;
            std::fs::remove_dir_all(m("o"))?;
            std::fs::create_dir(m("o"))?;
            std::fs::write(m("o/new"), b"fresh")?;
            std::fs::set_permissions(m("a/x"), std::fs::Permissions::from_mode(0o640))?;
            std::fs::write(m("a/b/new"), b"changed")?;
            std::fs::create_dir_all(m("top/deeper"))?;
            std::fs::write(m("top/deeper/file"), b"new file")?;
            std::fs::rename(m("s"), m("s2"))?;
            // Renaming a lower directory is refused (no redirects): tools copy.
            let renamed = std::fs::rename(m("a/b"), m("a/b2"));
            Ok(renamed.map_err(|e| e.raw_os_error()))
        })();
        let seen = store.scan(&merged, &crate::ScanOptions::default());
        kernel::unmount_at(&merged).unwrap();
        assert_eq!(
            changed.unwrap(),
            Err(Some(rustix::io::Errno::XDEV.raw_os_error()))
        );
        let seen = seen.unwrap().snapshot;

        let layer = layer_from_upper(&store, &upper, &base).unwrap();
        assert_eq!(layer.whiteouts(), [p("a/b/k"), p("s")]);
        assert_eq!(layer.opaque_dirs(), [p("o")]);
        // The chmod is a metadata-only upsert: the lower file's chunks.
        let chmod = layer.upserts().iter().find(|e| e.path == p("a/x")).unwrap();
        assert_eq!(chmod.kind, base.get(&p("a/x")).unwrap().kind);
        assert_eq!(chmod.meta.mode, 0o640);
        // overlayfs's own xattrs are gone; the file's own are kept.
        assert!(layer.upserts().iter().all(|e| {
            e.meta
                .xattrs
                .keys()
                .all(|k| !k.starts_with(b"trusted.overlay."))
        }));
        assert_eq!(
            chmod.meta.xattrs.get(&b"user.note"[..]).map(Vec::as_slice),
            Some(&b"kept"[..])
        );
        // Copied-up parents that did not change are left out.
        assert!(
            layer
                .upserts()
                .iter()
                .all(|e| e.path != p("a/b") || e.meta != base.get(&p("a/b")).unwrap().meta)
        );
        assert_eq!(unlink(&layer.apply(&base).unwrap()), unlink(&seen));
    }
}
