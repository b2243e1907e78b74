//! Checkout: a [`Snapshot`] materialised as a directory tree on disk.
//!
//! The work is done in phases, each in parallel (rayon) where its items are
//! independent, so that no later step undoes an earlier one:
//!
//! 1. Directories, in path order (a parent before its children), with the
//!    private mode `0o700` so that the process can fill them whatever their
//!    final mode.
//! 2. Regular files (content read chunk by chunk from the store, every chunk
//!    verified, chunks of one file written in parallel at their offsets),
//!    symbolic links, fifos and devices, all in parallel, files with the
//!    private mode `0o600`. A file's metadata is set as soon as its content
//!    is written, through the descriptor still open (as in phase 4; neither
//!    its mode nor its mtime is touched by what follows).
//! 3. Hard links, to their target (a file made in phase 2).
//! 4. Metadata of the other non-directories, in parallel: xattrs, then owner,
//!    mode and mtime (owner before mode, because `chown` clears setuid and
//!    setgid), then `security.capability` (which `chown` would remove).
//!    A hard link's inode has its target's metadata, set once.
//! 5. Metadata of directories, deepest first, one depth at a time, and the
//!    root's last: a directory's mtime is set after every entry in it was
//!    created, and its mode (perhaps without write or search permission) only
//!    once nothing beneath it needs to be reached any more.
//!
//! Every write goes through [`confine::ConfinedDir`]: paths are resolved beneath the
//! destination one component at a time and no symbolic link is followed, so
//! a symlink in the snapshot, wherever it points, never redirects a write.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::fsutil::confine::{self, ConfinedDir, SpecialFile};
use crate::fsutil::fault;
use crate::progress::{Progress, ProgressStage, Tracker};
use crate::store::Store;
use crate::store::chunk_list::ChunkList;
use crate::tree::entry::{Entry, EntryKind, Metadata};
use crate::tree::path::TreePath;
use crate::tree::snapshot::Snapshot;

/// The xattr holding a file's capabilities; the kernel removes it on `chown`.
const CAPABILITY_XATTR: &[u8] = b"security.capability";

/// The namespace of xattrs that only a privileged process may read or write.
const TRUSTED_PREFIX: &[u8] = b"trusted.";

/// How [`Store::checkout`] treats what the process may not be allowed to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckoutOptions {
    /// Skip character and block devices when the process is not privileged
    /// (not root), listing them in [`CheckoutOutcome::skipped_devices`],
    /// instead of failing with [`Error::NeedsPrivilege`].
    pub skip_devices: bool,
    /// Fail, rather than skip, when an unprivileged process cannot restore
    /// what needs privilege: an owner other than its own user and groups,
    /// `trusted.*` xattrs and `security.capability`. A privileged process
    /// restores all of them either way.
    pub strict_owner: bool,
    /// The number of threads to write with; `None` (or 0) uses rayon's
    /// current pool (by default one thread per CPU).
    pub threads: Option<usize>,
    /// Told how many entries and bytes of file content are written, of the
    /// totals known from the start ([`ProgressStage::Checkout`]).
    pub progress: Progress,
}

impl CheckoutOptions {
    /// Skips devices when not privileged (see
    /// [`skip_devices`](Self#structfield.skip_devices)).
    #[must_use]
    pub fn skip_devices(mut self, skip: bool) -> Self {
        self.skip_devices = skip;
        self
    }

    /// Fails rather than skips what needs privilege (see
    /// [`strict_owner`](Self#structfield.strict_owner)).
    #[must_use]
    pub fn strict_owner(mut self, strict: bool) -> Self {
        self.strict_owner = strict;
        self
    }

    /// Writes with this many threads (0: rayon's current pool).
    #[must_use]
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = Some(threads);
        self
    }

    /// Reports progress to `progress` (see
    /// [`progress`](Self#structfield.progress)).
    #[must_use]
    pub fn progress(mut self, progress: Progress) -> Self {
        self.progress = progress;
        self
    }
}

/// What a [`Store::checkout`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckoutOutcome {
    /// Regular files written (further hard links to them not counted).
    pub files: u64,
    /// Bytes of content written into them.
    pub bytes: u64,
    /// Devices not created because the process is not privileged and
    /// [`CheckoutOptions::skip_devices`] was set, in path order.
    pub skipped_devices: Vec<TreePath>,
}

/// Checking out
impl Store {
    /// Writes the tree `snapshot` into the directory `dest`: every entry with
    /// its content, kind, mode (setuid, setgid and sticky included), owner,
    /// mtime to the nanosecond (directories and the root's too), xattrs,
    /// symlink target, hard-link group and device number. `dest` is created
    /// if absent (its parents too); it must otherwise be an empty directory.
    /// `dest` itself is trusted (a symbolic link there is followed); nothing
    /// beneath it is.
    ///
    /// Owners are restored when the process is root, or when they are the
    /// process's own user and one of its groups; otherwise they are left to
    /// the process unless [`CheckoutOptions::strict_owner`] is set. Devices
    /// need root (see [`CheckoutOptions::skip_devices`]); `trusted.*` xattrs
    /// and `security.capability` are restored when the process is root,
    /// skipped otherwise (unless `strict_owner`). Nothing is synced to disk.
    ///
    /// On error, whatever was written so far is left in `dest` for the caller
    /// to remove (every directory in it with read, write and search
    /// permission for its owner, whatever its mode in `snapshot`); nothing is
    /// ever written outside `dest`.
    ///
    /// # Errors
    /// - [`Error::DestinationNotEmpty`] if `dest` holds anything;
    ///   [`Error::Io`] naming `dest` if it cannot be created or opened.
    /// - [`Error::NeedsPrivilege`] naming the first device, before anything is
    ///   written, if the process is not root and `skip_devices` is not set.
    /// - [`Error::Checkout`] naming the file being written when its content
    ///   cannot be read: its source is the store's error ([`Error::Corrupt`]
    ///   naming the pack and offset, [`Error::ChunkNotFound`], …).
    /// - [`Error::Io`] or [`Error::Xattr`] naming the path when a system call
    ///   fails (for example `chown` without privilege under `strict_owner`).
    /// - [`Error::InvalidArgument`] if the thread pool cannot be started.
    pub fn checkout(
        &self,
        snapshot: &Snapshot,
        dest: impl AsRef<Path>,
        options: &CheckoutOptions,
    ) -> Result<CheckoutOutcome> {
        checkout_as(
            self,
            snapshot,
            dest.as_ref(),
            options,
            &ProcessIds::current(),
        )
    }
}

/// Who the process is, as far as checkout cares.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ProcessIds {
    /// Effective uid 0: may create devices, give files away, set `trusted.*`
    /// and `security.capability`.
    privileged: bool,
    uid: u32,
    gid: u32,
    /// Supplementary groups, to which a file's owner may give it.
    groups: Vec<u32>,
}

impl ProcessIds {
    fn current() -> Self {
        let uid = rustix::process::geteuid();
        ProcessIds {
            privileged: uid.is_root(),
            uid: uid.as_raw(),
            gid: rustix::process::getegid().as_raw(),
            // Without the list, only the primary group is known to be ours.
            groups: rustix::process::getgroups()
                .map(|g| g.into_iter().map(rustix::process::Gid::as_raw).collect())
                .unwrap_or_default(),
        }
    }

    /// The owner to set for `meta`: each id, or `None` to leave it to the
    /// process because it may not set it (and `strict` is off).
    fn owner(&self, meta: &Metadata, strict: bool) -> (Option<u32>, Option<u32>) {
        let uid_ok = self.privileged || strict || meta.uid == self.uid;
        let gid_ok =
            self.privileged || strict || meta.gid == self.gid || self.groups.contains(&meta.gid);
        (uid_ok.then_some(meta.uid), gid_ok.then_some(meta.gid))
    }

    /// Whether to set the xattr `name` (all but `trusted.*` and
    /// `security.capability` need no privilege).
    fn sets_xattr(&self, name: &[u8], strict: bool) -> bool {
        self.privileged || strict || !(name.starts_with(TRUSTED_PREFIX) || name == CAPABILITY_XATTR)
    }
}

/// [`Store::checkout`] as the process `creds` (tests pretend to be
/// unprivileged with it).
fn checkout_as(
    store: &Store,
    snapshot: &Snapshot,
    dest: &Path,
    options: &CheckoutOptions,
    creds: &ProcessIds,
) -> Result<CheckoutOutcome> {
    if !creds.privileged && !options.skip_devices {
        let device = snapshot.iter().find_map(|e| match e.kind {
            EntryKind::CharDevice { .. } => Some((e, "character device")),
            EntryKind::BlockDevice { .. } => Some((e, "block device")),
            _ => None,
        });
        if let Some((entry, what)) = device {
            return Err(Error::NeedsPrivilege {
                path: full_path(dest, &entry.path),
                what,
            });
        }
    }
    let root = prepare_destination(dest)?;
    let job = Job {
        store,
        root: &root,
        options,
        creds,
        progress: options.progress.track(ProgressStage::Checkout),
    };
    match options.threads {
        Some(n) if n > 0 => rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .thread_name(|i| format!("layerstore-checkout-{i}"))
            .build()
            .map_err(|e| Error::InvalidArgument(format!("cannot start {n} checkout threads: {e}")))?
            .install(|| job.run(snapshot)),
        _ => job.run(snapshot),
    }
}

/// Creates `dest` if absent and opens it, checking that it is empty.
fn prepare_destination(dest: &Path) -> Result<ConfinedDir> {
    fault::check("create directory", dest)
        .and_then(|()| std::fs::create_dir_all(dest))
        .map_err(|e| Error::io("create directory", dest, e))?;
    let root = ConfinedDir::open(dest)?;
    if !root.read_dir(b"")?.is_empty() {
        return Err(Error::DestinationNotEmpty {
            path: dest.to_owned(),
        });
    }
    Ok(root)
}

/// `path` beneath `dest`, for error messages.
fn full_path(dest: &Path, path: &TreePath) -> PathBuf {
    if path.is_root() {
        dest.to_owned()
    } else {
        dest.join(std::ffi::OsStr::from_bytes(path.as_bytes()))
    }
}

/// What phase 2 did with one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Made {
    /// A regular file of this many bytes.
    File(u64),
    /// A symlink, fifo or device.
    Node,
    /// A device left out (unprivileged, `skip_devices`).
    Skipped,
}

/// One checkout in progress.
struct Job<'a> {
    store: &'a Store,
    root: &'a ConfinedDir,
    options: &'a CheckoutOptions,
    creds: &'a ProcessIds,
    /// Entries made (a directory once created, a file once written, a hard
    /// link once linked, the root once its metadata is set) and bytes of
    /// content written.
    progress: Tracker,
}

impl Job<'_> {
    /// The phases of the module documentation, in the current rayon pool.
    fn run(&self, snapshot: &Snapshot) -> Result<CheckoutOutcome> {
        let Some((root_entry, entries)) = snapshot.entries().split_first() else {
            self.progress.finish();
            return Ok(CheckoutOutcome::default());
        };
        let content: u64 = entries
            .iter()
            .map(|e| match &e.kind {
                EntryKind::File { size, .. } => *size,
                _ => 0,
            })
            .sum();
        self.progress
            .add_total(snapshot.entries().len() as u64, content);

        // 1. Directories: path order puts every parent before its children.
        for dir in entries.iter().filter(|e| e.is_dir()) {
            self.root.mkdir(dir.path.as_bytes(), 0o700)?;
            self.progress.add(1, 0);
        }

        // 2. Files, symlinks, fifos, devices. Files go in the order their
        // first chunks lie in the store: each thread takes a contiguous run of
        // that order, so a shared frame is decompressed once, not once per
        // small file (the frame cache holds only a few hundred frames).
        let mut nodes: Vec<(u64, u64, &Entry)> = entries
            .iter()
            .filter(|e| !e.is_dir() && !matches!(e.kind, EntryKind::Hardlink { .. }))
            .map(|e| {
                let (pack, offset) = match &e.kind {
                    EntryKind::File { chunks, .. } => chunks
                        .chunks()
                        .first()
                        .map_or((0, 0), |c| self.store.locality(&c.id)),
                    _ => (0, 0),
                };
                (pack, offset, e)
            })
            .collect();
        nodes.sort_by_key(|(pack, offset, _)| (*pack, *offset));
        let nodes: Vec<&Entry> = nodes.into_iter().map(|(_, _, e)| e).collect();
        let made: Vec<Made> = nodes
            .par_iter()
            .map_init(
                || None,
                |parent, e| {
                    let made = self.make(e, parent)?;
                    self.progress.add(1, 0);
                    Ok(made)
                },
            )
            .collect::<Result<_>>()?;

        // 3. Hard links.
        entries.par_iter().try_for_each(|e| match &e.kind {
            EntryKind::Hardlink { target } => {
                self.root.hardlink(e.path.as_bytes(), target.as_bytes())?;
                self.progress.add(1, 0);
                Ok(())
            }
            _ => Ok(()),
        })?;

        // 4. Metadata of symlinks, fifos and devices (files had theirs in
        // phase 2; a hard link's inode has its target's).
        nodes
            .par_iter()
            .zip(&made)
            .filter(|(_, made)| matches!(made, Made::Node))
            .try_for_each(|(e, _)| self.set_metadata(&e.path, &e.meta))?;

        // 5. Directories, deepest first, then the root.
        if let Err(err) = self.set_dir_metadata(root_entry, entries) {
            // Some directories may have their final mode already, perhaps
            // without write or search permission for their owner: give it
            // back, so that the caller can remove what was written (as
            // phases 1 to 4 leave it) and retry.
            for dir in entries.iter().filter(|e| e.is_dir()) {
                self.root.make_traversable(dir.path.as_bytes());
            }
            self.root.make_traversable(b"");
            return Err(err);
        }
        self.progress.add(1, 0);
        self.progress.finish();

        let mut outcome = CheckoutOutcome::default();
        for (entry, made) in nodes.iter().zip(&made) {
            match made {
                Made::File(bytes) => {
                    outcome.files += 1;
                    outcome.bytes += bytes;
                }
                Made::Node => {}
                Made::Skipped => outcome.skipped_devices.push(entry.path.clone()),
            }
        }
        Ok(outcome)
    }

    /// Phase 5: the metadata of directories, deepest first, then the root's.
    fn set_dir_metadata(&self, root_entry: &Entry, entries: &[Entry]) -> Result<()> {
        let mut by_depth: Vec<Vec<&Entry>> = Vec::new();
        for dir in entries.iter().filter(|e| e.is_dir()) {
            let depth = dir.path.depth();
            if by_depth.len() < depth {
                by_depth.resize_with(depth, Vec::new);
            }
            by_depth[depth - 1].push(dir);
        }
        for level in by_depth.iter().rev() {
            level
                .par_iter()
                .try_for_each(|e| self.set_metadata(&e.path, &e.meta))?;
        }
        self.set_metadata(&root_entry.path, &root_entry.meta)
    }

    /// Creates the file, symlink, fifo or device `entry` (phase 2). `parent`
    /// keeps the directory of the last file made on this thread open.
    fn make(&self, entry: &Entry, parent: &mut Option<(Vec<u8>, OwnedFd)>) -> Result<Made> {
        let path = entry.path.as_bytes();
        let device = |kind, rdev| {
            if self.creds.privileged {
                self.root
                    .mknod(path, kind, 0o600, rdev)
                    .map(|()| Made::Node)
            } else {
                // `checkout_as` refused the snapshot unless `skip_devices`.
                Ok(Made::Skipped)
            }
        };
        match &entry.kind {
            EntryKind::File { size, chunks } => {
                let file = self.root.create_file_reusing(path, 0o600, parent)?;
                self.write_content(&file, &entry.path, chunks)?;
                // Phase 4 for a file, through the descriptor still open: the
                // hard links of phase 3 change neither its mode nor its mtime.
                self.set_file_metadata(&file, path, &entry.meta)?;
                Ok(Made::File(*size))
            }
            EntryKind::Symlink { target } => self.root.symlink(path, target).map(|()| Made::Node),
            EntryKind::Fifo => self
                .root
                .mknod(path, SpecialFile::Fifo, 0o600, 0)
                .map(|()| Made::Node),
            EntryKind::CharDevice { rdev } => device(SpecialFile::CharDevice, *rdev),
            EntryKind::BlockDevice { rdev } => device(SpecialFile::BlockDevice, *rdev),
            // Directories and hard links have phases of their own.
            EntryKind::Dir | EntryKind::Hardlink { .. } => Ok(Made::Node),
        }
    }

    /// Writes the content `chunks` into `file` (at `path`): each chunk read
    /// verified from the store and written at its offset, in parallel.
    fn write_content(&self, file: &File, path: &TreePath, chunks: &ChunkList) -> Result<()> {
        let full = || full_path(self.root.path(), path);
        let mut offsets = Vec::with_capacity(chunks.chunks().len());
        let mut at = 0u64;
        for chunk in chunks.chunks() {
            offsets.push(at);
            at += u64::from(chunk.len);
        }
        chunks
            .chunks()
            .par_iter()
            .zip(offsets)
            .try_for_each(|(chunk, offset)| {
                let bytes = self
                    .store
                    .read_chunk(&chunk.id)
                    .map_err(|source| Error::Checkout {
                        path: full(),
                        source: Box::new(source),
                    })?;
                if bytes.len() != chunk.len as usize {
                    return Err(Error::InvalidTree {
                        path: path.to_string(),
                        reason: format!(
                            "chunk {} is {} bytes, the entry says {}",
                            chunk.id,
                            bytes.len(),
                            chunk.len
                        ),
                    });
                }
                fault::check_lazy("write", full)
                    .and_then(|()| file.write_all_at(&bytes, offset))
                    .map_err(|e| Error::io("write", full(), e))?;
                self.progress.add(0, bytes.len() as u64);
                Ok(())
            })
    }

    /// Sets the xattrs, owner, mode and mtime of the regular file `file`,
    /// just written at `path` (phase 4, through its descriptor).
    fn set_file_metadata(&self, file: &File, path: &[u8], meta: &Metadata) -> Result<()> {
        let strict = self.options.strict_owner;
        let sets = |name: &[u8]| self.creds.sets_xattr(name, strict);
        for (name, value) in &meta.xattrs {
            if name.as_slice() != CAPABILITY_XATTR && sets(name) {
                self.root.set_file_xattr(file, path, name, value)?;
            }
        }
        let (uid, gid) = self.creds.owner(meta, strict);
        self.root
            .set_file_metadata(file, path, &confine_metadata(meta, uid, gid))?;
        // After the chown, which would remove it; setting it leaves the mtime.
        if let Some(value) = meta.xattrs.get(CAPABILITY_XATTR)
            && sets(CAPABILITY_XATTR)
        {
            self.root
                .set_file_xattr(file, path, CAPABILITY_XATTR, value)?;
        }
        Ok(())
    }

    /// Sets the xattrs, owner, mode and mtime of `path` (phases 4 and 5).
    fn set_metadata(&self, path: &TreePath, meta: &Metadata) -> Result<()> {
        let path = path.as_bytes();
        let strict = self.options.strict_owner;
        let sets = |name: &[u8]| self.creds.sets_xattr(name, strict);
        for (name, value) in &meta.xattrs {
            if name.as_slice() != CAPABILITY_XATTR && sets(name) {
                self.root.set_xattr(path, name, value)?;
            }
        }
        let (uid, gid) = self.creds.owner(meta, strict);
        self.root
            .set_metadata(path, &confine_metadata(meta, uid, gid))?;
        // After the chown, which would remove it; setting it leaves the mtime.
        if let Some(value) = meta.xattrs.get(CAPABILITY_XATTR)
            && sets(CAPABILITY_XATTR)
        {
            self.root.set_xattr(path, CAPABILITY_XATTR, value)?;
        }
        Ok(())
    }
}

/// What [`ConfinedDir`] sets of `meta`, with the owner the process may give.
fn confine_metadata(meta: &Metadata, uid: Option<u32>, gid: Option<u32>) -> confine::FileAttrs {
    confine::FileAttrs {
        mode: meta.mode,
        uid,
        gid,
        mtime_sec: meta.mtime.secs,
        mtime_nsec: meta.mtime.nanos,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;
    use crate::store::StoreOptions;
    use crate::tree::entry::Timestamp;

    fn p(s: &str) -> TreePath {
        TreePath::new(s).unwrap()
    }

    fn unprivileged() -> ProcessIds {
        ProcessIds {
            privileged: false,
            uid: 1000,
            gid: 1000,
            groups: vec![1000, 27],
        }
    }

    fn owned(uid: u32, gid: u32) -> Metadata {
        let mut meta = Metadata::new(0o644);
        meta.uid = uid;
        meta.gid = gid;
        meta
    }

    #[test]
    fn owners_are_set_only_where_the_process_may() {
        let user = unprivileged();
        assert_eq!(
            user.owner(&owned(1000, 1000), false),
            (Some(1000), Some(1000))
        );
        assert_eq!(user.owner(&owned(1000, 27), false), (Some(1000), Some(27)));
        assert_eq!(user.owner(&owned(0, 0), false), (None, None));
        assert_eq!(user.owner(&owned(1000, 5), false), (Some(1000), None));
        // Strict: try, and let the kernel refuse.
        assert_eq!(user.owner(&owned(0, 5), true), (Some(0), Some(5)));
        let root = ProcessIds {
            privileged: true,
            uid: 0,
            gid: 0,
            groups: vec![],
        };
        assert_eq!(root.owner(&owned(7, 8), false), (Some(7), Some(8)));
    }

    #[test]
    fn privileged_xattrs_are_skipped_without_privilege_unless_strict() {
        let user = unprivileged();
        assert!(user.sets_xattr(b"user.a", false));
        assert!(user.sets_xattr(b"security.selinux", false));
        assert!(!user.sets_xattr(b"trusted.overlay.opaque", false));
        assert!(!user.sets_xattr(CAPABILITY_XATTR, false));
        assert!(user.sets_xattr(CAPABILITY_XATTR, true));
        let root = ProcessIds {
            privileged: true,
            ..unprivileged()
        };
        assert!(root.sets_xattr(b"trusted.x", false));
    }

    fn device_snapshot() -> Snapshot {
        Snapshot::from_sorted(vec![
            Entry::dir(TreePath::ROOT, Metadata::new(0o755)),
            Entry::new(
                p("dev"),
                EntryKind::CharDevice {
                    rdev: crate::fsutil::device::makedev(1, 3),
                },
                Metadata::new(0o666),
            ),
            Entry::new(p("pipe"), EntryKind::Fifo, Metadata::new(0o640)),
        ])
        .unwrap()
    }

    #[test]
    fn unprivileged_devices_are_refused_before_anything_is_written_or_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::create(tmp.path().join("store"), &StoreOptions::default()).unwrap();
        let dest = tmp.path().join("out");
        let snap = device_snapshot();
        let err = checkout_as(
            &store,
            &snap,
            &dest,
            &CheckoutOptions::default(),
            &unprivileged(),
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::NeedsPrivilege { path, what: "character device" } if *path == dest.join("dev")),
            "{err}"
        );
        assert!(!dest.exists());

        let options = CheckoutOptions::default().skip_devices(true);
        // As the real user, so that owners are left alone in this test.
        let creds = ProcessIds {
            privileged: false,
            ..ProcessIds::current()
        };
        let outcome = checkout_as(&store, &snap, &dest, &options, &creds).unwrap();
        assert_eq!(outcome.skipped_devices, [p("dev")]);
        assert!(std::fs::symlink_metadata(dest.join("dev")).is_err());
        let pipe = std::fs::symlink_metadata(dest.join("pipe")).unwrap();
        assert_eq!(pipe.mode() & 0o7777, 0o640);
    }

    #[test]
    fn an_unprivileged_checkout_leaves_foreign_owners_to_the_process() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::create(tmp.path().join("store"), &StoreOptions::default()).unwrap();
        let me = ProcessIds {
            privileged: false,
            ..ProcessIds::current()
        };
        let mut meta = owned(me.uid.wrapping_add(4242), me.gid.wrapping_add(4242));
        meta.mtime = Timestamp::new(1_234_567_890, 5);
        let snap = Snapshot::from_sorted(vec![
            Entry::dir(TreePath::ROOT, Metadata::new(0o755)),
            Entry::file(p("f"), store.put_bytes(b"x").unwrap(), meta),
        ])
        .unwrap();
        let dest = tmp.path().join("out");
        checkout_as(&store, &snap, &dest, &CheckoutOptions::default(), &me).unwrap();
        let st = std::fs::symlink_metadata(dest.join("f")).unwrap();
        assert_eq!((st.uid(), st.mode() & 0o7777), (me.uid, 0o644));
        assert_eq!((st.mtime(), st.mtime_nsec()), (1_234_567_890, 5));
    }

    #[test]
    fn a_checkout_reports_monotone_progress_ending_at_the_total() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::create(tmp.path().join("store"), &StoreOptions::default()).unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir(&src).unwrap();
        crate::testing::progress_tree(&src, 6, 5);
        let snap = store
            .scan(&src, &crate::tree::ScanOptions::default())
            .unwrap()
            .snapshot;
        let (progress, events) = crate::testing::recording_progress();
        let options = CheckoutOptions::default().progress(progress).threads(3);
        let outcome = store
            .checkout(&snap, tmp.path().join("out"), &options)
            .unwrap();
        let events = events.lock().unwrap();
        let last = crate::testing::monotone_to_the_end(&events);
        let entries = snap.entries().len() as u64;
        assert_eq!(last.stage, ProgressStage::Checkout);
        assert_eq!((last.entries, last.entries_total), (entries, Some(entries)));
        assert_eq!(
            (last.bytes, last.bytes_total),
            (outcome.bytes, Some(outcome.bytes))
        );
        // Every event before the end knew both totals from the start.
        assert!(
            events
                .iter()
                .all(|e| e.entries_total == Some(entries) && e.bytes_total == Some(outcome.bytes)),
            "{events:?}"
        );
    }
}
