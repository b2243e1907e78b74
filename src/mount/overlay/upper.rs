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
use crate::mount::BaseTree;
use crate::mount::overlay::extract::{OPAQUE_XATTR, OVERLAY_XATTR_PREFIX};
use crate::store::Store;
use crate::tree::{Entry, EntryKind, Layer, ScanOptions, Snapshot, TreePath};

/// Who wrote an upper directory, and so in which form it records what it
/// hides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Writer {
    /// The kernel's overlayfs: `0:0` character devices and
    /// `trusted.overlay.opaque`.
    Kernel,
    /// `fuse-overlayfs` run without privilege: also `.wh..wh..opq` files
    /// (an opaque directory, as `user.fuseoverlayfs.opaque=y` is) and, where
    /// it could not make a device, `.wh.NAME` files (a whiteout of NAME).
    FuseOverlayfs,
}

/// The upper-directory markers of an unprivileged `fuse-overlayfs`.
const FUSE_OPAQUE_FILE: &[u8] = b".wh..wh..opq";
const FUSE_WHITEOUT_PREFIX: &[u8] = b".wh.";
const FUSE_OPAQUE_XATTR: &[u8] = b"user.fuseoverlayfs.opaque";

/// The layer of the changes recorded in `upper` (written by `writer`) over
/// the tree `base`.
///
/// # Errors
/// [`Store::scan`]'s errors (naming the path); [`crate::Error::InvalidTree`]
/// if the changes do not make a layer.
pub(crate) fn layer_from_upper(
    store: &Store,
    upper: &Path,
    base: &BaseTree<'_>,
    writer: Writer,
) -> Result<Layer> {
    let scanned = store.scan(upper, &ScanOptions::default())?.snapshot;
    let scanned = match writer {
        Writer::Kernel => scanned,
        Writer::FuseOverlayfs => kernel_form(scanned)?,
    };
    // Directories moved from the lower layers (overlayfs's redirects): their
    // lower contents are elsewhere in the base, so each becomes an opaque
    // directory with its whole merged contents spelled out.
    let moved: Vec<TreePath> = scanned
        .iter()
        .filter(|e| e.is_dir() && redirect(e).is_some())
        .map(|e| e.path.clone())
        .fold(Vec::new(), |mut tops, path| {
            if !tops.iter().any(|t: &TreePath| t.is_ancestor_of(&path)) {
                tops.push(path);
            }
            tops
        });
    let mut upserts = Vec::new();
    let mut whiteouts = Vec::new();
    let mut opaque_dirs = Vec::new();
    for dir in &moved {
        let origin = lower_origin(&scanned, base, dir)?;
        merged_subtree(&scanned, base, dir, origin.as_ref(), &mut upserts)?;
        if base.entry(dir)?.is_some_and(|e| e.is_dir()) {
            opaque_dirs.push(dir.clone());
        }
    }
    let in_moved = |path: &TreePath| moved.iter().any(|m| m == path || m.is_ancestor_of(path));
    for mut entry in scanned.iter().filter(|e| !in_moved(&e.path)).cloned() {
        if !entry.path.is_root() && is_whiteout(&entry) {
            whiteouts.push(entry.path);
            continue;
        }
        let is_opaque = is_opaque(&entry);
        strip_overlay_xattrs(&mut entry);
        // Only a directory the base has can hide anything (overlayfs also
        // marks directories it creates new, with nothing below, opaque).
        let lower = base.entry(&entry.path)?;
        if is_opaque && !entry.path.is_root() && lower.as_ref().is_some_and(Entry::is_dir) {
            opaque_dirs.push(entry.path.clone());
        }
        if lower.as_ref() == Some(&entry) {
            continue;
        }
        upserts.push(entry);
    }
    upserts.sort_by(|a, b| a.path.cmp(&b.path));
    upserts.extend(split_links(base, &upserts, &whiteouts, &opaque_dirs)?);
    Layer::new(upserts, whiteouts, opaque_dirs)
}

/// The xattr naming where a moved directory's lower contents are.
const REDIRECT_XATTR: &[u8] = b"trusted.overlay.redirect";

fn redirect(entry: &Entry) -> Option<&[u8]> {
    entry.meta.xattrs.get(REDIRECT_XATTR).map(Vec::as_slice)
}

fn is_opaque(entry: &Entry) -> bool {
    entry.is_dir()
        && entry
            .meta
            .xattrs
            .get(OPAQUE_XATTR)
            .is_some_and(|v| v.as_slice() == b"y")
}

fn strip_overlay_xattrs(entry: &mut Entry) {
    entry
        .meta
        .xattrs
        .retain(|name, _| !name.starts_with(OVERLAY_XATTR_PREFIX));
}

/// Where in the base the lower contents of the upper directory `dir` are:
/// its redirect (absolute, or relative to its parent's origin), else its
/// parent's origin joined with its name; `None` below an opaque directory or
/// where the base has no directory.
fn lower_origin(
    scanned: &Snapshot,
    base: &BaseTree<'_>,
    dir: &TreePath,
) -> Result<Option<TreePath>> {
    if dir.is_root() {
        return Ok(Some(TreePath::ROOT));
    }
    let entry = scanned.get(dir);
    let parent_origin = |base| match dir.parent() {
        Some(parent) => lower_origin(scanned, base, &parent),
        None => Ok(None),
    };
    let origin = match entry.and_then(redirect) {
        Some(r) if r.first() == Some(&b'/') => {
            r.get(1..).and_then(|r| TreePath::new(r.to_vec()).ok())
        }
        Some(r) => parent_origin(base)?.and_then(|o| o.join(r).ok()),
        None if entry.is_some_and(is_opaque) => None,
        None => {
            parent_origin(base)?.and_then(|o| dir.file_name().and_then(|name| o.join(name).ok()))
        }
    };
    let Some(origin) = origin else {
        return Ok(None);
    };
    Ok(base.entry(&origin)?.filter(Entry::is_dir).map(|_| origin))
}

/// Pushes to `out` every entry beneath the upper directory `dir` (and `dir`
/// itself) as the mount shows it: upper entries, and the base's entries
/// beneath `origin` that no upper entry or whiteout replaces, moved to `dir`.
fn merged_subtree(
    scanned: &Snapshot,
    base: &BaseTree<'_>,
    dir: &TreePath,
    origin: Option<&TreePath>,
    out: &mut Vec<Entry>,
) -> Result<()> {
    let Some(upper_dir) = scanned.get(dir) else {
        return Ok(());
    };
    let mut entry = upper_dir.clone();
    strip_overlay_xattrs(&mut entry);
    out.push(entry);
    let mut names = std::collections::BTreeSet::new();
    for child in scanned.children_of(dir) {
        let Some(name) = child.path.file_name() else {
            continue;
        };
        names.insert(name.to_vec());
        if is_whiteout(child) {
            continue;
        }
        if child.is_dir() {
            let child_origin = lower_origin(scanned, base, &child.path)?;
            merged_subtree(scanned, base, &child.path, child_origin.as_ref(), out)?;
        } else {
            let mut entry = child.clone();
            strip_overlay_xattrs(&mut entry);
            out.push(entry);
        }
    }
    let Some(origin) = origin else {
        return Ok(());
    };
    for child in base.children(origin)? {
        let Some(name) = child.path.file_name() else {
            continue;
        };
        if names.contains(name) {
            continue;
        }
        let below = base.descendants(&child.path)?;
        for e in std::iter::once(&child).chain(&below) {
            if let Some(moved) = rebase(base, e, origin, dir)? {
                out.push(moved);
            }
        }
    }
    Ok(())
}

/// `entry` of the base, beneath `from`, moved beneath `to`; a hard link to a
/// file outside `from` becomes a copy of it.
fn rebase(
    base: &BaseTree<'_>,
    entry: &Entry,
    from: &TreePath,
    to: &TreePath,
) -> Result<Option<Entry>> {
    let moved = |path: &TreePath| -> Option<TreePath> {
        let rel = path.as_bytes().get(from.as_bytes().len()..)?;
        let rel = if from.is_root() { rel } else { rel.get(1..)? };
        to.join(rel).ok()
    };
    let Some(path) = moved(&entry.path) else {
        return Ok(None);
    };
    let mut out = Entry::new(path, entry.kind.clone(), entry.meta.clone());
    if let EntryKind::Hardlink { target } = &entry.kind {
        if from.is_ancestor_of(target) {
            let Some(target) = moved(target) else {
                return Ok(None);
            };
            out.kind = EntryKind::Hardlink { target };
        } else {
            let Some(file) = base.entry(target)? else {
                return Ok(None);
            };
            out.kind = file.kind;
            out.meta = file.meta;
        }
    }
    Ok(Some(out))
}

/// Hard links of `base` whose target the changes replace or delete, while
/// the links themselves stay: overlayfs keeps showing them with the old
/// content (a copy-up or a whiteout breaks the link, never the lower inode),
/// so they become files of their own, the old content and metadata, the
/// further links of one group linked to the first.
fn split_links(
    base: &BaseTree<'_>,
    upserts: &[Entry],
    whiteouts: &[TreePath],
    opaque_dirs: &[TreePath],
) -> Result<Vec<Entry>> {
    let upserted = |path: &TreePath| upserts.binary_search_by(|e| e.path.cmp(path)).is_ok();
    let touched = |path: &TreePath| {
        upserted(path)
            || whiteouts
                .iter()
                .any(|w| w == path || w.is_ancestor_of(path))
            || opaque_dirs.iter().any(|o| o.is_ancestor_of(path))
    };
    let links = base.hardlinks()?;
    let mut firsts: HashMap<&TreePath, TreePath> = HashMap::new();
    let mut out = Vec::new();
    for entry in &links {
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
        } else if let Some(file) = base.entry(target)? {
            out.push(Entry::new(entry.path.clone(), file.kind, file.meta));
            firsts.insert(target, entry.path.clone());
        }
    }
    Ok(out)
}

/// Whether `entry` is an overlayfs whiteout: a `0:0` character device.
fn is_whiteout(entry: &Entry) -> bool {
    matches!(entry.kind, EntryKind::CharDevice { rdev: 0 })
}

/// An unprivileged `fuse-overlayfs`'s upper directory in the kernel's form:
/// an opaque marker file becomes its directory's opaque xattr, a `.wh.NAME`
/// file a `0:0` device at NAME, `user.fuseoverlayfs.opaque` the kernel's
/// opaque xattr.
fn kernel_form(scanned: Snapshot) -> Result<Snapshot> {
    let mut opaque = std::collections::HashSet::new();
    let mut entries = Vec::with_capacity(scanned.entries().len());
    for mut entry in scanned.into_entries() {
        let name = entry.path.file_name().unwrap_or_default().to_vec();
        let is_file = matches!(entry.kind, EntryKind::File { .. });
        if is_file && name == FUSE_OPAQUE_FILE {
            opaque.extend(entry.path.parent());
            continue;
        }
        if is_file
            && name.len() > FUSE_WHITEOUT_PREFIX.len()
            && name.starts_with(FUSE_WHITEOUT_PREFIX)
        {
            let hidden = &name[FUSE_WHITEOUT_PREFIX.len()..];
            let parent = entry.path.parent().unwrap_or(TreePath::ROOT);
            entry.path = parent.join(hidden)?;
            entry.kind = EntryKind::CharDevice { rdev: 0 };
        }
        if entry.meta.xattrs.remove(FUSE_OPAQUE_XATTR).as_deref() == Some(b"y".as_slice()) {
            opaque.insert(entry.path.clone());
        }
        entries.push(entry);
    }
    for entry in &mut entries {
        if entry.is_dir() && opaque.contains(&entry.path) {
            entry
                .meta
                .xattrs
                .insert(OPAQUE_XATTR.to_vec(), b"y".to_vec());
        }
    }
    Snapshot::from_entries(entries)
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
            // Lower directories moved: within their parent (a relative
            // redirect), elsewhere (an absolute one), changed after the move.
            std::fs::rename(m("a/b"), m("a/b2"))?;
            std::fs::rename(m("d"), m("top/moved"))?;
            std::fs::write(m("top/moved/4"), b"four")?;
            std::fs::remove_file(m("top/moved/3"))
        })();
        let seen = store.scan(&merged, &crate::ScanOptions::default());
        kernel::unmount_at(&merged).unwrap();
        changed.unwrap();
        let seen = seen.unwrap().snapshot;

        // The base read a directory at a time (as a commit does) and read
        // whole give one layer.
        let lazy = BaseTree::lazy(&store, image.id());
        let layer = layer_from_upper(&store, &upper, &lazy, Writer::Kernel).unwrap();
        assert!(!lazy.is_loaded());
        let given = BaseTree::given(base.clone());
        assert_eq!(
            layer_from_upper(&store, &upper, &given, Writer::Kernel).unwrap(),
            layer
        );
        assert_eq!(
            store.apply_layer(&image.rootfs(), &layer).unwrap(),
            layer.apply(&base).unwrap().id()
        );
        assert_eq!(layer.whiteouts(), [p("a/b"), p("d"), p("s")]);
        // The moved directories are new here: nothing below them to hide.
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
