//! The `copy` backend: the merged tree materialised in the target directory,
//! no privilege needed.
//!
//! - Mount (new container): the image's tree is checked out once per image
//!   into `<store>/containers/.base/<tree id>/` (shared by every container of
//!   the image), then copied into the target file by file, by reflink where
//!   the filesystem can (XFS, Btrfs: the copy shares the base's extents and
//!   costs no space until written), else by copying the bytes. The target's
//!   stat cache is then seeded from the image's tree, so the first commit
//!   reads only the files that changed.
//! - Commit: a scan of the target with the stat cache, diffed against the
//!   image's tree.
//! - Unmount: the tree is moved (renamed) into the container's state,
//!   `containers/<name>/rootfs`, and the target left empty; mount moves it
//!   back. Across filesystems it is copied instead.
//! - Read-only views: when the process may mount (root), the target is
//!   bind-mounted onto itself read-only, so that every write fails with
//!   `EROFS`; otherwise only writes through [`ViewFiles`](super::ViewFiles)
//!   are refused, and the directory itself stays writable.
//! - Remove: the container's tree is deleted; the shared base checkout goes
//!   with the last container that uses it (each user is a file in
//!   `containers/.base/<tree id>.users/`).
//!
//! Unmounting or removing refuses (`EBUSY`) while something is mounted
//! beneath the target: the files of another filesystem are never moved or
//! deleted.

use std::collections::BTreeSet;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::io::Errno;

use super::{BaseTree, MountBackend, Usage, ViewSpec};
use crate::error::{Error, Result};
use crate::fsutil::confine::{self, ConfinedDir};
use crate::fsutil::{durable, reflink};
use crate::store::{Store, layout};
use crate::tree::{CheckoutOptions, Layer, ScanOptions, Snapshot, TreePath};

/// The container's tree while unmounted.
const ROOTFS: &str = "rootfs";
/// Present while mounted; holds the target.
const MOUNTED: &str = "copy-mounted";
/// Whether the read-only bind mount was made.
const BIND: &str = "copy-bind";
/// Paths of devices the checkout skipped (not root), one a line.
const SKIPPED: &str = "copy-skipped-devices";

/// Views materialised as directories (see the module docs).
#[derive(Debug, Default)]
pub struct CopyBackend {}

impl CopyBackend {
    /// The backend.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

fn target<'a>(view: &ViewSpec<'a>) -> Result<&'a Path> {
    view.target.ok_or_else(|| Error::Container {
        name: view.name.to_owned(),
        reason: "the copy backend needs a target directory".to_owned(),
    })
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn busy(target: &Path, what: &str) -> Error {
    Error::io(
        "unmount",
        target,
        io::Error::new(
            io::ErrorKind::ResourceBusy,
            format!("{what}: device or resource busy (EBUSY)"),
        ),
    )
}

/// Fails with `EBUSY` if anything is mounted beneath `target` (our own
/// read-only bind mount at `target` itself excepted when `own_bind`).
fn refuse_if_busy(target: &Path, own_bind: bool) -> Result<()> {
    let canonical = std::fs::canonicalize(target).unwrap_or_else(|_| target.to_path_buf());
    for point in super::mountinfo::mounts_beneath(target)? {
        if own_bind && point == canonical {
            continue;
        }
        return Err(busy(
            target,
            &format!("'{}' is mounted beneath it", point.display()),
        ));
    }
    Ok(())
}

/// Moves the directory `from` to `to` (absent): a rename, or across
/// filesystems a copy and a delete.
fn move_tree(from: &Path, to: &Path) -> Result<()> {
    match std::fs::rename(from, to) {
        Ok(()) => {
            if let Some(parent) = to.parent() {
                durable::sync_dir(parent)?;
            }
            Ok(())
        }
        Err(e) if e.raw_os_error() == Some(Errno::XDEV.raw_os_error()) => {
            copy_tree(from, to)?;
            std::fs::remove_dir_all(from).map_err(|e| Error::io("remove", from, e))
        }
        Err(e) => Err(Error::io("move", from, e)),
    }
}

/// Copies the tree `src` into the empty directory `dst`: files by reflink
/// where the filesystem can, else by copying; directories, links, hard-link
/// groups, devices and fifos; mode, owner, mtime to the nanosecond and
/// xattrs. `src` is trusted (our own checkout); `dst` is written through a
/// confined root.
pub(crate) fn copy_tree(src: &Path, dst: &Path) -> Result<CopyStats> {
    fs_err::create_dir_all(dst).map_err(|e| Error::io("create directory", dst, e))?;
    let root = ConfinedDir::open(dst)?;
    let mut stats = CopyStats::default();
    let mut links: std::collections::HashMap<(u64, u64), Vec<u8>> =
        std::collections::HashMap::new();
    // Directories get their metadata after their children are written.
    let mut dirs: Vec<(Vec<u8>, std::fs::Metadata)> = Vec::new();
    let mut stack: Vec<Vec<u8>> = vec![Vec::new()];
    while let Some(rel) = stack.pop() {
        let here = if rel.is_empty() {
            src.to_path_buf()
        } else {
            src.join(std::ffi::OsStr::from_bytes(&rel))
        };
        let meta = std::fs::symlink_metadata(&here).map_err(|e| Error::io("stat", &here, e))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            if !rel.is_empty() {
                root.mkdir(&rel, 0o700)?;
            }
            let entries =
                std::fs::read_dir(&here).map_err(|e| Error::io("read directory", &here, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| Error::io("read directory", &here, e))?;
                let name = entry.file_name();
                let child = if rel.is_empty() {
                    name.as_bytes().to_vec()
                } else {
                    [rel.as_slice(), b"/", name.as_bytes()].concat()
                };
                stack.push(child);
            }
            dirs.push((rel, meta));
            continue;
        }
        if ft.is_file() && meta.nlink() > 1 {
            if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
                root.hardlink(&rel, first)?;
                continue;
            }
            links.insert((meta.dev(), meta.ino()), rel.clone());
        }
        if ft.is_file() {
            let from = std::fs::File::open(&here).map_err(|e| Error::io("open", &here, e))?;
            let to = root.create_file(&rel, 0o600)?;
            let to_path = dst.join(std::ffi::OsStr::from_bytes(&rel));
            match reflink::reflink_or_copy(&from, &here, &to, &to_path)? {
                reflink::CopyMethod::Reflink => stats.reflinked += 1,
                _ => stats.copied += 1,
            }
        } else if ft.is_symlink() {
            let target =
                std::fs::read_link(&here).map_err(|e| Error::io("read symbolic link", &here, e))?;
            root.symlink(&rel, target.as_os_str().as_bytes())?;
        } else if ft.is_fifo() {
            root.mknod(&rel, confine::SpecialFile::Fifo, meta.mode(), 0)?;
        } else if ft.is_char_device() {
            root.mknod(
                &rel,
                confine::SpecialFile::CharDevice,
                meta.mode(),
                meta.rdev(),
            )?;
        } else if ft.is_block_device() {
            root.mknod(
                &rel,
                confine::SpecialFile::BlockDevice,
                meta.mode(),
                meta.rdev(),
            )?;
        } else {
            continue;
        }
        finish(&root, &here, &rel, &meta, ft.is_symlink())?;
    }
    for (rel, meta) in dirs.iter().rev() {
        let here = if rel.is_empty() {
            src.to_path_buf()
        } else {
            src.join(std::ffi::OsStr::from_bytes(rel))
        };
        finish(&root, &here, rel, meta, false)?;
    }
    Ok(stats)
}

/// Sets the xattrs, owner, mode and mtime of `rel` in `root` from `meta`.
fn finish(
    root: &ConfinedDir,
    src: &Path,
    rel: &[u8],
    meta: &std::fs::Metadata,
    link: bool,
) -> Result<()> {
    if !link {
        for (name, value) in
            crate::fsutil::xattr::list(crate::fsutil::xattr::Target::Path(src), src)?
        {
            root.set_xattr(rel, &name, &value)?;
        }
    }
    let privileged = is_root();
    root.set_metadata(
        rel,
        &confine::FileAttrs {
            mode: meta.mode() & 0o7777,
            uid: privileged.then_some(meta.uid()),
            gid: privileged.then_some(meta.gid()),
            mtime_sec: meta.mtime(),
            mtime_nsec: u32::try_from(meta.mtime_nsec()).unwrap_or(0),
        },
    )
}

/// What [`copy_tree`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CopyStats {
    /// Files that share their source's extents.
    pub(crate) reflinked: u64,
    /// Files whose bytes were copied.
    pub(crate) copied: u64,
}

/// The shared checkout of `base`, made if missing: `containers/.base/<id>`.
fn base_checkout(store: &Store, base: &BaseTree<'_>) -> Result<(PathBuf, Vec<TreePath>)> {
    let dir = layout::base_checkouts(store.path());
    let id = base.id()?.to_hex();
    let done = dir.join(&id);
    let skipped_file = dir.join(format!("{id}.skipped"));
    if done.is_dir() {
        return Ok((done, read_paths(&skipped_file)?));
    }
    fs_err::create_dir_all(&dir).map_err(|e| Error::io("create directory", &dir, e))?;
    let tmp = durable::unique_tmp_path(&dir, ".tmp");
    let options = CheckoutOptions::default().skip_devices(!is_root());
    let outcome = match store.checkout(base.get()?, &tmp, &options) {
        Ok(outcome) => outcome,
        Err(err) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(err);
        }
    };
    write_paths(&dir, &skipped_file, &outcome.skipped_devices)?;
    match std::fs::rename(&tmp, &done) {
        Ok(()) => durable::sync_dir(&dir)?,
        // Another process made it at the same moment: theirs is as good.
        Err(_) if done.is_dir() => {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        Err(e) => return Err(Error::io("rename into place", &done, e)),
    }
    Ok((done, outcome.skipped_devices))
}

fn users_dir(store: &Store, base: &BaseTree<'_>) -> Result<PathBuf> {
    Ok(layout::base_checkouts(store.path()).join(format!("{}.users", base.id()?.to_hex())))
}

/// Records the container as a user of its base checkout.
fn add_user(store: &Store, view: &ViewSpec<'_>) -> Result<()> {
    let dir = users_dir(store, view.base)?;
    fs_err::create_dir_all(&dir).map_err(|e| Error::io("create directory", &dir, e))?;
    durable::write_atomic(&dir, &dir.join(view.name), b"")
}

/// Forgets the container as a user of its base checkout, and deletes the
/// checkout when it was the last.
fn drop_user(store: &Store, view: &ViewSpec<'_>) -> Result<()> {
    let dir = users_dir(store, view.base)?;
    match std::fs::remove_file(dir.join(view.name)) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("remove", dir.join(view.name), e)),
    }
    let empty = std::fs::read_dir(&dir).map_or(true, |mut d| d.next().is_none());
    if empty {
        // `.base/<id>.users` → `.base/<id>` and `.base/<id>.skipped`.
        let checkout = dir.with_extension("");
        let _ = std::fs::remove_file(checkout.with_extension("skipped"));
        match std::fs::remove_dir_all(&checkout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", &checkout, e)),
        }
        let _ = std::fs::remove_dir(&dir);
    }
    Ok(())
}

fn write_paths(tmp_dir: &Path, file: &Path, paths: &[TreePath]) -> Result<()> {
    let mut text = Vec::new();
    for p in paths {
        text.extend_from_slice(p.as_bytes());
        text.push(b'\n');
    }
    durable::write_atomic(tmp_dir, file, &text)
}

fn read_paths(file: &Path) -> Result<Vec<TreePath>> {
    match std::fs::read(file) {
        Ok(bytes) => bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| TreePath::new(l.to_vec()))
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io("read", file, e)),
    }
}

/// Remounts the target (bind mount on itself) read-only.
fn bind_read_only(target: &Path) -> Result<()> {
    use rustix::mount::{MountFlags, mount_bind, mount_remount};
    mount_bind(target, target).map_err(|e| Error::io("bind-mount", target, e.into()))?;
    if let Err(e) = mount_remount(target, MountFlags::BIND | MountFlags::RDONLY, "") {
        let _ = rustix::mount::unmount(target, rustix::mount::UnmountFlags::DETACH);
        return Err(Error::io("remount read-only", target, e.into()));
    }
    Ok(())
}

impl CopyBackend {
    /// The directory holding the container's tree now, if any.
    fn tree_dir(view: &ViewSpec<'_>) -> Result<Option<PathBuf>> {
        if view.state.join(MOUNTED).exists() {
            return Ok(Some(target(view)?.to_path_buf()));
        }
        let saved = view.state.join(ROOTFS);
        Ok(saved.is_dir().then_some(saved))
    }
}

impl MountBackend for CopyBackend {
    fn name(&self) -> &'static str {
        "copy"
    }

    fn mount(&self, store: &Store, view: &ViewSpec<'_>) -> Result<()> {
        let target = target(view)?;
        let saved = view.state.join(ROOTFS);
        if view.state.join(MOUNTED).exists() {
            return Ok(());
        }
        if saved.is_dir() {
            std::fs::remove_dir(target).map_err(|e| Error::io("replace", target, e))?;
            if let Err(err) = move_tree(&saved, target) {
                let _ = fs_err::create_dir_all(target);
                return Err(err);
            }
        } else {
            add_user(store, view)?;
            let (base_dir, skipped) = base_checkout(store, view.base)?;
            write_paths(view.state, &view.state.join(SKIPPED), &skipped)?;
            if let Err(err) = copy_tree(&base_dir, target) {
                let _ = clear_dir(target);
                return Err(err);
            }
            store.seed_stat_cache(target, view.base.get()?)?;
            super::rescan::record(store, view.state, target, view.base.get()?)?;
        }
        if view.read_only && is_root() {
            bind_read_only(target)?;
            durable::write_atomic(view.state, &view.state.join(BIND), b"1\n")?;
        }
        durable::write_atomic(
            view.state,
            &view.state.join(MOUNTED),
            target.as_os_str().as_bytes(),
        )
    }

    fn unmount(&self, _store: &Store, view: &ViewSpec<'_>) -> Result<()> {
        if !view.state.join(MOUNTED).exists() {
            return Ok(());
        }
        let target = target(view)?;
        let bind = view.state.join(BIND);
        let has_bind = bind.exists();
        refuse_if_busy(target, has_bind)?;
        if has_bind {
            match rustix::mount::unmount(target, rustix::mount::UnmountFlags::empty()) {
                Ok(()) | Err(Errno::INVAL) => {}
                Err(Errno::BUSY) => return Err(busy(target, "the read-only view is in use")),
                Err(e) => return Err(Error::io("unmount", target, e.into())),
            }
            std::fs::remove_file(&bind).map_err(|e| Error::io("remove", &bind, e))?;
        }
        let saved = view.state.join(ROOTFS);
        move_tree(target, &saved)?;
        fs_err::create_dir_all(target).map_err(|e| Error::io("create directory", target, e))?;
        let marker = view.state.join(MOUNTED);
        std::fs::remove_file(&marker).map_err(|e| Error::io("remove", &marker, e))?;
        durable::sync_dir(view.state)
    }

    fn is_mounted(&self, view: &ViewSpec<'_>) -> Result<bool> {
        Ok(view.state.join(MOUNTED).exists())
    }

    fn changes(&self, store: &Store, view: &ViewSpec<'_>) -> Result<Layer> {
        let Some(dir) = Self::tree_dir(view)? else {
            return Ok(Layer::empty());
        };
        let (mut tree, mut id) =
            if let Some(walked) = super::rescan::rescan(store, view.state, &dir)? {
                walked
            } else {
                let scanned = store.scan(&dir, &ScanOptions::default())?;
                // So that the next commit walks quickly again.
                super::rescan::record(store, view.state, &dir, &scanned.snapshot)?;
                let id = match scanned.snapshot_id {
                    Some(id) => id,
                    None => store.put_snapshot(&scanned.snapshot)?,
                };
                (scanned.snapshot, id)
            };
        let skipped = read_paths(&view.state.join(SKIPPED))?;
        if !skipped.is_empty() {
            // Devices this process could not create are the image's still.
            let present: BTreeSet<&TreePath> = tree.entries().iter().map(|e| &e.path).collect();
            let mut extra = Vec::new();
            for path in &skipped {
                if !present.contains(path) && path.parent().is_some_and(|d| present.contains(&d)) {
                    extra.extend(view.base.entry(path)?);
                }
            }
            if !extra.is_empty() {
                extra.extend(tree.into_entries());
                tree = Snapshot::from_entries(extra)?;
                id = store.put_snapshot(&tree)?;
            }
        }
        // Both trees are stored: only the directories that differ are read.
        store.diff_stored(&view.base.id()?, &id)
    }

    fn usage(&self, store: &Store, view: &ViewSpec<'_>) -> Result<Usage> {
        Ok(super::layer_usage(&self.changes(store, view)?))
    }

    fn remove(&self, store: &Store, view: &ViewSpec<'_>) -> Result<()> {
        if view.state.join(MOUNTED).exists() {
            self.unmount(store, view)?;
        }
        drop_user(store, view)
    }
}

/// Empties the directory `dir`, not crossing into other filesystems.
fn clear_dir(dir: &Path) -> Result<()> {
    refuse_if_busy(dir, false)?;
    let root = ConfinedDir::open(dir)?;
    for name in root.read_dir(b"")? {
        root.remove(&name)?;
    }
    Ok(())
}
