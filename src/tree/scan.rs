//! Scanning a directory into a [`Snapshot`], storing file contents on the way.
//!
//! The walk is a rayon task per directory, which lists it, examines its
//! children in parallel and spawns a task for each subdirectory: there is no
//! recursion on the stack however deep the tree, and at most a few
//! descriptors per thread are open at once. Each directory is opened beneath
//! the scanned root with no symbolic link followed (`openat2` with
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, see [`crate::fsutil::confine`]),
//! and its children are examined relative to that descriptor with the calls
//! that do not follow a link ([`crate::fsutil::dir`]): the scan never leaves
//! the directory it was given, and a symbolic link is recorded, never entered.
//!
//! Regular files with one link are read as they are found; files with more
//! links are grouped by (device, inode) once the walk is done, the first path
//! of each group in [`TreePath`] order is read (once) and recorded as the
//! file, the others as [`EntryKind::Hardlink`]s to it. Each directory's children
//! are kept in name order, and the directories, sorted by path, are joined
//! depth first at the end: the entries come out in [`TreePath`] order without
//! a sort of the whole tree, and the snapshot, and its id, do not depend on
//! the walk's order or the number of threads.
//!
//! A rescan skips reading files that have not changed, through the stat cache
//! ([`crate::tree::statcache`], whose module docs give the exact rule).

use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io::{self, Seek};
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use rustix::fs::{FileType, Stat};
use rustix::io::Errno;

use crate::digest::SnapshotId;
use crate::error::{Error, Result};
use crate::fsutil::confine::Root;
use crate::fsutil::dir::Dir;
use crate::fsutil::xattr::Xattrs;
use crate::store::Store;
use crate::store::chunk_list::ChunkList;
use crate::tree::entry::{Entry, EntryKind, Metadata, Timestamp};
use crate::tree::path::TreePath;
use crate::tree::snapshot::Snapshot;
use crate::tree::statcache::{self, CacheFile, FileStat, Loaded, Records};

/// How [`Store::scan`] works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanOptions {
    /// Take the chunk lists of files that have not changed since the last scan
    /// of the same directory from the stat cache instead of reading them, and
    /// save a new cache at the end. With `false` the cache is neither read nor
    /// written: every file is read.
    pub use_stat_cache: bool,
    /// Run the scan in a thread pool of its own with this many threads; `None`
    /// runs it in the current rayon pool (the global one, unless called from
    /// inside another). The result is the same for any number.
    pub threads: Option<usize>,
}

impl Default for ScanOptions {
    /// The stat cache on, the current rayon pool.
    fn default() -> Self {
        Self {
            use_stat_cache: true,
            threads: None,
        }
    }
}

/// What [`Store::scan`] found.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ScanOutcome {
    /// The tree: every entry of the directory, its root's metadata included.
    pub snapshot: Snapshot,
    /// What was left out or may be inexact, sorted by path.
    pub warnings: Vec<ScanWarning>,
    /// How many times a file's content was read (a file re-read because it
    /// changed while being read counts twice).
    pub files_read: u64,
    /// The bytes of content read.
    pub bytes_read: u64,
    /// How many files' chunk lists came from the stat cache, unread.
    pub files_from_cache: u64,
    /// The id under which the scan stored the tree, if it did (it does when
    /// it saves the stat cache, which names the tree): pass it to
    /// [`Store::put_child_image_of`] or [`Store::diff_stored`] rather than
    /// storing or reading the tree again.
    pub snapshot_id: Option<SnapshotId>,
}

/// Something a scan left out, or could not do, without failing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub struct ScanWarning {
    /// The entry concerned (the root, `.`, for the stat cache).
    pub path: TreePath,
    /// What happened.
    pub kind: ScanWarningKind,
    /// The details: the system's error, the stat-cache file, ….
    pub detail: String,
}

/// The kinds of [`ScanWarning`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum ScanWarningKind {
    /// A socket: trees have no sockets; it is left out.
    Socket,
    /// A file type this crate does not know; it is left out.
    Unsupported,
    /// The path vanished between being listed and being examined; it is left
    /// out (with everything beneath it).
    Vanished,
    /// The path was replaced while it was examined (another inode, another
    /// kind, a directory swapped for a link); it is left out (with everything
    /// beneath it).
    Replaced,
    /// A file changed while it was read, and again while it was read a second
    /// time; the second read's content is kept (and not cached).
    ChangedWhileRead,
    /// The stat cache could not be read (corrupt, unknown version, unreadable)
    /// and was ignored: every file was read.
    StatCacheIgnored,
    /// The stat cache could not be saved: the next scan reads every file.
    StatCacheNotSaved,
}

impl fmt::Display for ScanWarningKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ScanWarningKind::Socket => "socket skipped",
            ScanWarningKind::Unsupported => "unsupported file type skipped",
            ScanWarningKind::Vanished => "vanished during the scan, skipped",
            ScanWarningKind::Replaced => "replaced during the scan, skipped",
            ScanWarningKind::ChangedWhileRead => "changed while read, kept the last read",
            ScanWarningKind::StatCacheIgnored => "stat cache ignored",
            ScanWarningKind::StatCacheNotSaved => "stat cache not saved",
        })
    }
}

impl fmt::Display for ScanWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.path, self.kind, self.detail)
    }
}

/// Scanning
impl Store {
    /// Scans the directory `dir`: stores the content of every regular file in
    /// this store and returns the tree as a [`Snapshot`], with warnings for
    /// what was left out. The walk is parallel (rayon); the snapshot, and its
    /// id, are the same for any number of threads and any walk order.
    ///
    /// Recorded: files (content, size), directories, symbolic links (target
    /// bytes, never followed), hard links (grouped by device and inode),
    /// character and block devices (`rdev`), fifos; for each, mode with
    /// setuid/setgid/sticky (`& 0o7777`), uid, gid, mtime to the nanosecond
    /// and every extended attribute this process may read (`trusted.*` too
    /// when privileged). Sockets are skipped with a warning. Paths are bytes.
    ///
    /// `dir` itself is trusted: a symbolic link in it is followed. Nothing
    /// beneath it is: the scan never follows a link, never leaves `dir`.
    ///
    /// With [`ScanOptions::use_stat_cache`], a file is not read if the
    /// previous scan of the same directory (same canonical path, same store)
    /// saw the same device, inode, size, mtime and ctime, its mtime and ctime
    /// were then at least a second older than that scan's start (git's
    /// racy-timestamp rule: a file changed within the timestamps' granularity
    /// of being read is read again), and every chunk is still in the store.
    /// [`ScanOutcome::files_read`] and [`ScanOutcome::files_from_cache`] say
    /// how it went. The cache lives in `<store>/cache/stat/`; a damaged one is
    /// ignored with a warning. It names the scan's snapshot, which the scan
    /// stores (as [`Store::put_snapshot`]) unless it is the previous scan's;
    /// a snapshot too large to be one object (64 MiB encoded) is not stored
    /// and no cache is saved, with a warning.
    ///
    /// The store is not flushed: call [`Store::flush`] to make the content
    /// durable.
    ///
    /// # Errors
    /// [`Error::Io`] naming `dir` if it is missing or not a directory;
    /// [`Error::Io`] / [`Error::Xattr`] naming the path of an entry that cannot
    /// be read for another reason than vanishing during the scan (permission
    /// denied, I/O error); [`Error::InvalidArgument`] for `threads: Some(0)` or
    /// a pool that cannot be started; an error from the store when writing
    /// fails.
    pub fn scan(&self, dir: impl AsRef<Path>, options: &ScanOptions) -> Result<ScanOutcome> {
        let dir = dir.as_ref();
        match options.threads {
            None => self.scan_in_pool(dir, options),
            Some(0) => Err(Error::InvalidArgument(
                "a scan needs at least one thread (threads: Some(0))".to_owned(),
            )),
            Some(n) => {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .thread_name(|i| format!("layerstore-scan-{i}"))
                    .build()
                    .map_err(|e| {
                        Error::InvalidArgument(format!("cannot start {n} scan threads: {e}"))
                    })?;
                pool.install(|| self.scan_in_pool(dir, options))
            }
        }
    }

    /// Records, as the stat cache of `dir`, that its regular files hold the
    /// content of the files of `tree` at the same paths, so that the next
    /// [`Store::scan`] of `dir` reads only what changed since. For a
    /// directory just written from `tree` (by [`Store::checkout`] or a copy
    /// of a checkout) that nothing else has written to yet. A file whose size
    /// differs from `tree`'s, or that is not a regular file, is left out (and
    /// read by the next scan). Returns how many files were recorded.
    ///
    /// Before the cache is written, this waits (a few milliseconds) until the
    /// filesystem stamps files later than the newest change time it
    /// recorded: any later change of a file then moves its change time, and
    /// the cache does not match it any more. That is what lets the cache
    /// trust these files at once, where a scan's own cache trusts only files
    /// unchanged for a second (see the stat cache's racy-timestamp rule).
    ///
    /// # Errors
    /// [`Error::Io`] naming `dir` if it cannot be opened, or the cache file if
    /// it cannot be written.
    pub fn seed_stat_cache(&self, dir: impl AsRef<Path>, tree: &Snapshot) -> Result<u64> {
        let dir = dir.as_ref();
        let canonical = fs_err::canonicalize(dir).map_err(|e| Error::io("open", dir, e))?;
        let root = Root::open(&canonical)?;
        let mut records = Records::new(tree.entries().len());
        let mut recorded = 0;
        let mut newest = Timestamp::EPOCH;
        for (index, entry) in tree.entries().iter().enumerate() {
            let EntryKind::File { size, .. } = &entry.kind else {
                continue;
            };
            let Ok(st) = root.lstat(entry.path.as_bytes()) else {
                continue;
            };
            let now = file_stat(&st);
            if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile
                || now.size != *size
                || now.mtime != entry.meta.mtime
            {
                continue;
            }
            // As on disk (a checkout may have left out privileged ones): the
            // cache gives the tree's, so a file whose differ is left out.
            let Ok(xattrs) = root.xattrs(entry.path.as_bytes()) else {
                continue;
            };
            if !xattrs
                .iter()
                .map(|(k, v)| (k, v))
                .eq(entry.meta.xattrs.iter())
            {
                continue;
            }
            newest = newest.max(now.mtime).max(now.ctime);
            records.set(index, &now);
            recorded += 1;
        }
        wait_for_clock_past(&canonical, newest)?;
        let tree_id = self.put_snapshot(tree)?;
        // The cache trusts timestamps older than its start less a margin
        // (statcache::cutoff); every recorded time is older than this start,
        // and the wait above made any later change distinguishable.
        let started = Timestamp::new(newest.secs.saturating_add(2), 0);
        let bytes = CacheFile::encode(canonical.as_os_str().as_bytes(), started, tree_id, records);
        let cache_path = statcache::cache_path(self, canonical.as_os_str().as_bytes());
        CacheFile::write(self, &cache_path, &bytes)?;
        Ok(recorded)
    }

    fn scan_in_pool(&self, dir: &Path, options: &ScanOptions) -> Result<ScanOutcome> {
        let meta = fs_err::metadata(dir).map_err(|e| Error::io("scan", dir, e))?;
        if !meta.is_dir() {
            let source = io::Error::new(io::ErrorKind::NotADirectory, "not a directory");
            return Err(Error::io("scan", dir, source));
        }
        let started = now();
        let canonical = fs_err::canonicalize(dir).map_err(|e| Error::io("scan", dir, e))?;
        let mut scan = Scan::new(self, Root::open(&canonical)?, options.use_stat_cache);
        let cache_path = statcache::cache_path(self, canonical.as_os_str().as_bytes());
        if options.use_stat_cache {
            scan.cache = scan.load_cache(&cache_path, canonical.as_os_str().as_bytes());
        }

        let mut dirs = scan.walk()?;
        dirs.par_sort_unstable_by(|a, b| a.path.cmp(&b.path));
        let linked = take_linked(&mut dirs);
        for ((dir, item), (entry, stat)) in scan.link_groups(linked)? {
            dirs[dir].items[item] = Found::Entry(entry, stat);
        }
        // In path order with their stats, which become the cache's records in
        // the snapshot's order. Paths are unique (a repeat is refused below).
        let (entries, stats): (Vec<Entry>, Vec<Option<FileStat>>) =
            depth_first(dirs).into_iter().unzip();
        let snapshot = Snapshot::from_sorted(entries)?;

        let mut snapshot_id = None;
        if scan.save_cache {
            // The cache names the snapshot, stored: the previous one if
            // nothing changed (no need to encode it again).
            let tree_id = match &scan.cache {
                Some(cache) if *cache.tree() == snapshot => Some(cache.tree_id()),
                _ => match self.put_snapshot(&snapshot) {
                    Ok(id) => Some(id),
                    // A directory too large to be one object: no cache, but
                    // the scan stands.
                    Err(err @ Error::InvalidArgument(_)) => {
                        scan.warn(&TreePath::ROOT, ScanWarningKind::StatCacheNotSaved, err);
                        None
                    }
                    Err(err) => return Err(err),
                },
            };
            snapshot_id = tree_id;
            if let Some(tree_id) = tree_id {
                let mut records = Records::new(stats.len());
                for (index, stat) in stats.iter().enumerate() {
                    if let Some(stat) = stat {
                        records.set(index, stat);
                    }
                }
                // Unchanged, and nothing read (a file read because it was
                // racy becomes trusted only under a newer scan start): the
                // cache on disk says all there is.
                let same = *scan.files_read.get_mut() == 0
                    && scan
                        .cache
                        .as_ref()
                        .is_some_and(|c| c.tree_id() == tree_id && c.has_records(&records));
                if !same {
                    let root = canonical.as_os_str().as_bytes();
                    let bytes = CacheFile::encode(root, started, tree_id, records);
                    if let Err(err) = CacheFile::write(self, &cache_path, &bytes) {
                        scan.warn(&TreePath::ROOT, ScanWarningKind::StatCacheNotSaved, err);
                    }
                }
            }
        }
        let mut warnings = scan
            .warnings
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        warnings.sort_unstable();
        Ok(ScanOutcome {
            snapshot,
            warnings,
            files_read: scan.files_read.into_inner(),
            bytes_read: scan.bytes_read.into_inner(),
            files_from_cache: scan.files_from_cache.into_inner(),
            snapshot_id,
        })
    }
}

/// What the walk found so far, shared by its tasks.
#[derive(Default)]
struct Walked {
    dirs: Vec<Listed>,
    error: Option<Error>,
}

/// A directory as the walk listed it: its own entry, then what each of its
/// children is, in name order.
struct Listed {
    path: TreePath,
    items: Vec<Found>,
}

/// Where a child sits in the walk's output: the index of its directory among
/// the [`Listed`] (sorted by path) and its own among that directory's items.
type Slot = (usize, usize);

/// The state of one scan, shared by its threads.
struct Scan<'s> {
    store: &'s Store,
    root: Root,
    /// The previous scan's stat cache, if it is used and could be read.
    cache: Option<Loaded>,
    /// Whether this scan saves a stat cache for the next one.
    save_cache: bool,
    warnings: Mutex<Vec<ScanWarning>>,
    files_read: AtomicU64,
    bytes_read: AtomicU64,
    files_from_cache: AtomicU64,
}

/// A directory found by the walk, to be listed at the next level.
struct Pending {
    path: TreePath,
    /// The device and inode its parent's listing saw; `None` for the root.
    expect: Option<(u64, u64)>,
}

/// A regular file with more than one link, read once its group is known.
struct Linked {
    path: TreePath,
    stat: Stat,
    xattrs: Xattrs,
    /// Its chunks from the stat cache, if the cache may be trusted for it
    /// (then its xattrs came from there too).
    cached: Option<ChunkList>,
}

/// An entry, and for a regular file the stat of the file whose content it
/// holds, for the next stat cache (`None` if it changed while read).
type Stated = (Entry, Option<FileStat>);

/// A regular file's content, read (or taken from the stat cache).
#[derive(Debug)]
struct ReadFile {
    chunks: ChunkList,
    /// Its stat once read.
    stat: Stat,
    /// Whether it did not change while read: then the content is that of the
    /// file with this stat, and the next stat cache may record it.
    stable: bool,
}

/// What examining one name of a directory gives.
enum Found {
    /// An entry; for a regular file, the stat of the file whose content it
    /// holds, for the next stat cache (`None` if it changed while read).
    Entry(Entry, Option<FileStat>),
    /// A subdirectory, listed by a task of its own.
    Dir(Pending),
    /// A file with several links, until its group is known.
    Linked(Linked),
    /// Nothing any more: a file with several links that vanished before its
    /// group was read.
    Gone,
}

impl<'s> Scan<'s> {
    fn new(store: &'s Store, root: Root, use_stat_cache: bool) -> Self {
        Scan {
            store,
            root,
            cache: None,
            save_cache: use_stat_cache,
            warnings: Mutex::new(Vec::new()),
            files_read: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            files_from_cache: AtomicU64::new(0),
        }
    }

    fn warn(&self, path: &TreePath, kind: ScanWarningKind, detail: impl fmt::Display) {
        self.warnings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(ScanWarning {
                path: path.clone(),
                kind,
                detail: detail.to_string(),
            });
    }

    /// `Ok(Some(value))`; or, when `result` failed because `path` vanished or
    /// was replaced meanwhile, a warning and `Ok(None)`; or the error.
    fn tolerate<T>(&self, path: &TreePath, result: Result<T>) -> Result<Option<T>> {
        match result {
            Ok(value) => Ok(Some(value)),
            Err(err) => match raced(&err) {
                Some(kind) => {
                    self.warn(path, kind, err);
                    Ok(None)
                }
                None => Err(err),
            },
        }
    }

    fn load_cache(&self, path: &Path, root: &[u8]) -> Option<Loaded> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                let detail = format!("cannot read '{}': {e}", path.display());
                self.warn(&TreePath::ROOT, ScanWarningKind::StatCacheIgnored, detail);
                return None;
            }
        };
        let cache = match CacheFile::decode(&bytes, root) {
            Ok(cache) => cache,
            Err(err) => {
                let detail = format!("'{}': {err}", path.display());
                self.warn(&TreePath::ROOT, ScanWarningKind::StatCacheIgnored, detail);
                return None;
            }
        };
        // Not in the store any more (never flushed, or collected): a miss,
        // like chunks gone; damaged: say so.
        let tree = match self.store.snapshot(&cache.snapshot_id()) {
            Ok(tree) => tree,
            Err(Error::ObjectNotFound { .. }) => return None,
            Err(err) => {
                let detail = format!("'{}': its snapshot: {err}", path.display());
                self.warn(&TreePath::ROOT, ScanWarningKind::StatCacheIgnored, detail);
                return None;
            }
        };
        let loaded = cache.with_tree(tree);
        if loaded.is_none() {
            let detail = format!(
                "'{}': its records do not match its snapshot",
                path.display()
            );
            self.warn(&TreePath::ROOT, ScanWarningKind::StatCacheIgnored, detail);
        }
        loaded
    }

    /// Walks the tree: every directory, listed, in no particular order.
    fn walk(&self) -> Result<Vec<Listed>> {
        let found = Mutex::new(Walked::default());
        // Each directory is a task that spawns its subdirectories' tasks:
        // the threads steal work from one another, with no wait for a whole
        // depth of the tree to finish before the next starts.
        rayon::scope(|scope| {
            let root = Pending {
                path: TreePath::ROOT,
                expect: None,
            };
            self.visit(scope, &root, &found);
        });
        let found = found
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match found.error {
            Some(err) => Err(err),
            None => Ok(found.dirs),
        }
    }

    /// Lists the directory `pending` into `found` and spawns a task for each
    /// of its subdirectories. After an error anywhere, nothing more is
    /// listed; the first error is kept.
    fn visit<'a>(&'a self, scope: &rayon::Scope<'a>, pending: &Pending, found: &'a Mutex<Walked>) {
        let lock = || {
            found
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if lock().error.is_some() {
            return;
        }
        let listed = match self.list(pending) {
            Ok(listed) => listed,
            Err(err) => {
                lock().error.get_or_insert(err);
                return;
            }
        };
        for item in &listed {
            if let Found::Dir(dir) = item {
                let dir = Pending {
                    path: dir.path.clone(),
                    expect: dir.expect,
                };
                scope.spawn(move |scope| self.visit(scope, &dir, found));
            }
        }
        lock().dirs.push(Listed {
            path: pending.path.clone(),
            items: listed,
        });
    }

    /// The directory `pending` itself and what its children are, in name
    /// order. Nothing if it vanished or was replaced since its parent was
    /// listed.
    fn list(&self, pending: &Pending) -> Result<Vec<Found>> {
        let opened = self.root.open_dir(pending.path.as_bytes());
        let dir = if pending.expect.is_none() {
            opened? // the root: no race to tolerate
        } else {
            match self.tolerate(&pending.path, opened)? {
                Some(dir) => dir,
                None => return Ok(Vec::new()),
            }
        };
        let st = dir.stat()?;
        if let Some(expect) = pending.expect
            && expect != (dev(&st), ino(&st))
        {
            let detail = format!("'{}' is another directory now", dir.path().display());
            self.warn(&pending.path, ScanWarningKind::Replaced, detail);
            return Ok(Vec::new());
        }
        let own = Entry::dir(pending.path.clone(), metadata(&st, dir.xattrs()?));
        let mut names = dir.names()?;
        names.sort_unstable();
        // Where the directory's descendants were in the previous scan's tree:
        // its children are looked up there, not in the whole tree.
        let near = self
            .cache
            .as_ref()
            .map_or(0..0, |cache| cache.range_of(&pending.path));
        let children: Vec<Option<Found>> = names
            .par_iter()
            .map(|name| self.examine(&dir, &pending.path, name, &near))
            .collect::<Result<_>>()?;
        let mut out = Vec::with_capacity(children.len() + 1);
        out.push(Found::Entry(own, None));
        out.extend(children.into_iter().flatten());
        Ok(out)
    }

    /// What the child `name` of `dir` (at `parent`) is. `near`: the range of
    /// the stat cache's tree where `parent`'s descendants are.
    fn examine(
        &self,
        dir: &Dir,
        parent: &TreePath,
        name: &[u8],
        near: &Range<usize>,
    ) -> Result<Option<Found>> {
        let path = parent.join(name)?;
        let Some(st) = self.tolerate(&path, dir.lstat(name))? else {
            return Ok(None);
        };
        let file_type = FileType::from_raw_mode(st.st_mode);
        match file_type {
            FileType::Directory => {
                return Ok(Some(Found::Dir(Pending {
                    path,
                    expect: Some((dev(&st), ino(&st))),
                })));
            }
            FileType::Socket | FileType::Unknown => {
                let kind = if file_type == FileType::Socket {
                    ScanWarningKind::Socket
                } else {
                    ScanWarningKind::Unsupported
                };
                let detail = format!(
                    "'{}' (mode {:#o})",
                    dir.child_path(name).display(),
                    st.st_mode
                );
                self.warn(&path, kind, detail);
                return Ok(None);
            }
            _ => {}
        }
        let cached = match file_type {
            FileType::RegularFile => self.lookup_cache(&path, &st, near),
            _ => None,
        };
        // A file with other links is grouped after the walk; one whose other
        // links are outside the tree (a `cp -al` copy of it, say) is a group
        // of one, and takes its chunks and xattrs from the cache all the same.
        if st.st_nlink > 1
            && let Some(old) = cached
            && let EntryKind::File { chunks, .. } = &old.kind
        {
            return Ok(Some(Found::Linked(Linked {
                cached: Some(chunks.clone()),
                xattrs: old.meta.xattrs.clone().into_iter().collect(),
                path,
                stat: st,
            })));
        }
        if st.st_nlink <= 1
            && let Some(old) = cached
        {
            self.files_from_cache.fetch_add(1, Ordering::Relaxed);
            let meta = Metadata {
                xattrs: old.meta.xattrs.clone(),
                ..metadata(&st, Vec::new())
            };
            let kind = old.kind.clone();
            return Ok(Some(Found::Entry(
                Entry::new(path, kind, meta),
                Some(file_stat(&st)),
            )));
        }
        let Some(xattrs) = self.tolerate(&path, dir.child_xattrs(name))? else {
            return Ok(None);
        };
        let mut stat = None;
        let (kind, st) = match file_type {
            FileType::RegularFile if st.st_nlink > 1 => {
                return Ok(Some(Found::Linked(Linked {
                    path,
                    stat: st,
                    xattrs,
                    cached: None,
                })));
            }
            FileType::RegularFile => {
                let shown = dir.child_path(name);
                match self.read_content(&path, &st, &shown, || dir.open_file(name))? {
                    Some(read) => {
                        stat = read.stable.then(|| file_stat(&read.stat));
                        (file_kind(read.chunks), read.stat)
                    }
                    None => return Ok(None),
                }
            }
            FileType::Symlink => match self.tolerate(&path, dir.read_link(name))? {
                Some(target) => (EntryKind::Symlink { target }, st),
                None => return Ok(None),
            },
            FileType::CharacterDevice => (EntryKind::CharDevice { rdev: rdev(&st) }, st),
            FileType::BlockDevice => (EntryKind::BlockDevice { rdev: rdev(&st) }, st),
            _ => (EntryKind::Fifo, st),
        };
        Ok(Some(Found::Entry(
            Entry::new(path, kind, metadata(&st, xattrs)),
            stat,
        )))
    }

    /// The previous scan's entry of the regular file at `path` whose `lstat`
    /// was `st` (its chunks and xattrs), from the stat cache, if it may be
    /// trusted for that file (see [`crate::tree::statcache`]): then neither
    /// its content nor its xattrs are read.
    fn lookup_cache(&self, path: &TreePath, st: &Stat, near: &Range<usize>) -> Option<&Entry> {
        let now = file_stat(st);
        self.cache
            .as_ref()?
            .lookup(path, near, &now, |id| self.store.contains(id))
    }

    /// The chunks of the regular file at `path` whose `lstat` was `st` and
    /// whose xattrs are `xattrs`, and its `stat` once read: read through `open`
    /// and stored. `None` (after a warning) if it vanished or was replaced.
    fn read_content(
        &self,
        path: &TreePath,
        st: &Stat,
        shown: &Path,
        open: impl FnOnce() -> Result<File>,
    ) -> Result<Option<ReadFile>> {
        let Some(mut file) = self.tolerate(path, open())? else {
            return Ok(None);
        };
        let fstat =
            |file: &File| rustix::fs::fstat(file).map_err(|e| Error::io("stat", shown, e.into()));
        let mut before = fstat(&file)?;
        if (dev(&before), ino(&before)) != (dev(st), ino(st)) {
            let detail = format!("'{}' is another file now", shown.display());
            self.warn(path, ScanWarningKind::Replaced, detail);
            return Ok(None);
        }
        let mut second = false;
        loop {
            let chunks = self.store.put_reader(&file, shown)?;
            self.files_read.fetch_add(1, Ordering::Relaxed);
            self.bytes_read
                .fetch_add(chunks.content_len(), Ordering::Relaxed);
            let after = fstat(&file)?;
            let stable = file_stat(&before) == file_stat(&after)
                && chunks.content_len() == file_stat(&after).size;
            if stable {
                return Ok(Some(ReadFile {
                    chunks,
                    stat: after,
                    stable: true,
                }));
            }
            if second {
                let detail = format!(
                    "'{}' changed while read twice; kept {} bytes",
                    shown.display(),
                    chunks.content_len()
                );
                self.warn(path, ScanWarningKind::ChangedWhileRead, detail);
                return Ok(Some(ReadFile {
                    chunks,
                    stat: after,
                    stable: false,
                }));
            }
            second = true;
            before = after;
            file.rewind().map_err(|e| Error::io("seek", shown, e))?;
        }
    }

    /// The entries of the files with several links: per (device, inode), the
    /// first path in order is the file, read once; the others link to it.
    fn link_groups(&self, linked: Vec<(Slot, Linked)>) -> Result<Vec<(Slot, Stated)>> {
        // Sorted by inode as indices: the files themselves are large to move.
        let mut order: Vec<(u64, u64, usize)> = linked
            .iter()
            .enumerate()
            .map(|(i, (_, file))| (dev(&file.stat), ino(&file.stat), i))
            .collect();
        order.par_sort_unstable();
        let mut files: Vec<Option<(Slot, Linked)>> = linked.into_iter().map(Some).collect();
        // Runs of one inode. A run of one (a file whose other links are
        // outside the tree, as in a `cp -al` copy) is the common case and
        // needs no group of its own.
        let mut lone = Vec::new();
        let mut groups = Vec::new();
        for run in order.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)) {
            if let [(_, _, i)] = run {
                lone.extend(files[*i].take());
            } else {
                groups.push(
                    run.iter()
                        .filter_map(|&(_, _, i)| files[i].take())
                        .collect::<Vec<_>>(),
                );
            }
        }
        let mut out: Vec<(Slot, Stated)> = lone
            .into_par_iter()
            .map(|(slot, file)| Ok(self.lead(file)?.map(|stated| (slot, stated))))
            .filter_map(Result::transpose)
            .collect::<Result<_>>()?;
        let grouped: Vec<Vec<(Slot, Stated)>> = groups
            .into_par_iter()
            .map(|group| self.link_group(group))
            .collect::<Result<_>>()?;
        out.extend(grouped.into_iter().flatten());
        Ok(out)
    }

    fn link_group(&self, mut group: Vec<(Slot, Linked)>) -> Result<Vec<(Slot, Stated)>> {
        group.sort_unstable_by(|(_, a), (_, b)| a.path.cmp(&b.path));
        let mut members = group.into_iter();
        // If the first path vanished or was replaced, the next one leads.
        while let Some((slot, first)) = members.next() {
            let target = first.path.clone();
            let Some(lead) = self.lead(first)? else {
                continue;
            };
            let mut out = vec![(slot, lead)];
            out.extend(members.map(|(slot, m)| {
                let meta = metadata(&m.stat, m.xattrs);
                (slot, (Entry::hardlink(m.path, target.clone(), meta), None))
            }));
            return Ok(out);
        }
        Ok(Vec::new())
    }

    /// The entry of the file that a group of links leads with: its content
    /// read, or taken from the stat cache; `None` (after a warning) if it
    /// vanished or was replaced.
    fn lead(&self, first: Linked) -> Result<Option<Stated>> {
        // The walk looked the file up in the stat cache already.
        let found = if let Some(chunks) = first.cached {
            self.files_from_cache.fetch_add(1, Ordering::Relaxed);
            Some(ReadFile {
                chunks,
                stat: first.stat,
                stable: true,
            })
        } else {
            let shown = self.full(&first.path);
            let open = || self.root.open_read(first.path.as_bytes());
            self.read_content(&first.path, &first.stat, &shown, open)?
        };
        Ok(found.map(|read| {
            let stat = read.stable.then(|| file_stat(&read.stat));
            let entry = Entry::new(
                first.path,
                file_kind(read.chunks),
                metadata(&read.stat, first.xattrs),
            );
            (entry, stat)
        }))
    }

    /// The full path of `path`, for messages.
    fn full(&self, path: &TreePath) -> PathBuf {
        if path.is_root() {
            self.root.path().to_path_buf()
        } else {
            self.root.path().join(OsStr::from_bytes(path.as_bytes()))
        }
    }
}

/// Takes the files with several links out of `dirs`, each with its slot
/// (left [`Found::Gone`] until its group is read).
fn take_linked(dirs: &mut [Listed]) -> Vec<(Slot, Linked)> {
    let mut linked = Vec::new();
    for (d, dir) in dirs.iter_mut().enumerate() {
        for (i, item) in dir.items.iter_mut().enumerate() {
            if matches!(item, Found::Linked(_))
                && let Found::Linked(file) = std::mem::replace(item, Found::Gone)
            {
                linked.push(((d, i), file));
            }
        }
    }
    linked
}

/// The entries of `dirs` (sorted by path; each one's items in name order) in
/// [`TreePath`] order: each directory's entry, then its children, a
/// subdirectory's own descendants right after it. Depth first with a stack
/// of its own, however deep the tree. Component-wise path order lists the
/// directories in the order this meets them, so the next one listed is the
/// next one met. (A subdirectory that vanished or was replaced before it was
/// listed has a listing with no items; one with no listing at all, which the
/// walk does not make, would be skipped.)
fn depth_first(dirs: Vec<Listed>) -> Vec<Stated> {
    let total = dirs.iter().map(|dir| dir.items.len()).sum();
    let mut out = Vec::with_capacity(total);
    let mut dirs = dirs.into_iter().peekable();
    let mut open: Vec<std::vec::IntoIter<Found>> = Vec::new();
    open.extend(dirs.next().map(|root| root.items.into_iter()));
    while let Some(items) = open.last_mut() {
        match items.next() {
            None => {
                open.pop();
            }
            Some(Found::Entry(entry, stat)) => out.push((entry, stat)),
            Some(Found::Dir(dir)) => {
                if let Some(listed) = dirs.next_if(|listed| listed.path == dir.path) {
                    open.push(listed.items.into_iter());
                }
            }
            Some(Found::Linked(_) | Found::Gone) => {}
        }
    }
    debug_assert!(dirs.next().is_none(), "a listing no directory met");
    out
}

/// Whether `err` says that a path vanished (`ENOENT`) or was replaced by
/// something of another kind (`ENOTDIR`, `ELOOP` for a link where
/// `O_NOFOLLOW` was given, `ENXIO` for a socket, a link met on the way, not a
/// regular file any more) while it was scanned, and if so which warning it is.
fn raced(err: &Error) -> Option<ScanWarningKind> {
    let source = match err {
        // A link met on the way; or `Dir::open_file` and `Root::open_read`
        // refusing what is not a regular file (any more), under this name.
        Error::SymlinkInPath { .. }
        | Error::Io {
            op: "open for reading",
            ..
        } => return Some(ScanWarningKind::Replaced),
        Error::Io { source, .. } | Error::Xattr { source, .. } => source,
        _ => return None,
    };
    match source.raw_os_error().map(Errno::from_raw_os_error) {
        Some(Errno::NOENT) => Some(ScanWarningKind::Vanished),
        Some(Errno::NOTDIR | Errno::LOOP | Errno::NXIO) => Some(ScanWarningKind::Replaced),
        _ => None,
    }
}

fn file_kind(chunks: ChunkList) -> EntryKind {
    EntryKind::File {
        size: chunks.content_len(),
        chunks,
    }
}

/// An entry's metadata from its `stat` and xattrs.
fn metadata(st: &Stat, xattrs: Xattrs) -> Metadata {
    Metadata {
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        mtime: mtime(st),
        xattrs: xattrs.into_iter().collect(),
    }
}

// The widths of `struct stat`'s fields differ between architectures: what is a
// no-op cast on x86_64 is a widening one elsewhere.
#[allow(
    clippy::unnecessary_cast,
    reason = "field widths differ by architecture"
)]
fn dev(st: &Stat) -> u64 {
    st.st_dev as u64
}

#[allow(
    clippy::unnecessary_cast,
    reason = "field widths differ by architecture"
)]
fn ino(st: &Stat) -> u64 {
    st.st_ino as u64
}

#[allow(
    clippy::unnecessary_cast,
    reason = "field widths differ by architecture"
)]
fn rdev(st: &Stat) -> u64 {
    st.st_rdev as u64
}

#[allow(
    clippy::unnecessary_cast,
    reason = "field widths differ by architecture"
)]
fn mtime(st: &Stat) -> Timestamp {
    Timestamp::new(st.st_mtime as i64, st.st_mtime_nsec as u32)
}

#[allow(
    clippy::unnecessary_cast,
    reason = "field widths differ by architecture"
)]
fn ctime(st: &Stat) -> Timestamp {
    Timestamp::new(st.st_ctime as i64, st.st_ctime_nsec as u32)
}

/// What the stat cache compares.
fn file_stat(st: &Stat) -> FileStat {
    FileStat {
        dev: dev(st),
        ino: ino(st),
        // A regular file's size is never negative.
        size: u64::try_from(st.st_size).unwrap_or(0),
        mtime: mtime(st),
        ctime: ctime(st),
    }
}

/// Waits until a file created in `dir` gets a change time later than
/// `newest` (the filesystem's clock is coarse: a tick of up to 10 ms). The
/// probe is made in `dir` itself, whose filesystem's granularity counts;
/// `dir`'s times are put back afterwards.
fn wait_for_clock_past(dir: &Path, newest: Timestamp) -> Result<()> {
    let before = rustix::fs::stat(dir).map_err(|e| Error::io("stat", dir, e.into()))?;
    let result = probe_clock(dir, newest);
    let times = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: before.st_atime,
            tv_nsec: i64::try_from(before.st_atime_nsec).unwrap_or(0),
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: before.st_mtime,
            tv_nsec: i64::try_from(before.st_mtime_nsec).unwrap_or(0),
        },
    };
    rustix::fs::utimensat(rustix::fs::CWD, dir, &times, rustix::fs::AtFlags::empty())
        .map_err(|e| Error::io("set times of", dir, e.into()))?;
    result
}

fn probe_clock(dir: &Path, newest: Timestamp) -> Result<()> {
    let probe = dir.join(format!(".layerstore-clock-{}", std::process::id()));
    for _ in 0..2000 {
        let file = File::create(&probe).map_err(|e| Error::io("create", &probe, e))?;
        let st = rustix::fs::fstat(&file).map_err(|e| Error::io("stat", &probe, e.into()))?;
        drop(file);
        let _ = std::fs::remove_file(&probe);
        if ctime(&st) > newest {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    Err(Error::io(
        "wait for the clock of",
        dir,
        io::Error::other("the filesystem's clock did not move in two seconds"),
    ))
}

/// The current time as a [`Timestamp`].
fn now() -> Timestamp {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => Timestamp::new(
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        // A clock before 1970: trust no cache entry written by this scan.
        Err(_) => Timestamp::EPOCH,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::config::StoreOptions;

    struct Fixture {
        _tmp: tempfile::TempDir,
        store: Store,
        tree: PathBuf,
    }

    fn fixture() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::create(tmp.path().join("store"), &StoreOptions::default()).unwrap();
        let tree = tmp.path().join("tree");
        std::fs::create_dir(&tree).unwrap();
        Fixture {
            _tmp: tmp,
            store,
            tree,
        }
    }

    fn kinds(scan: &Scan<'_>) -> Vec<(String, ScanWarningKind)> {
        let warnings = scan.warnings.lock().unwrap();
        warnings
            .iter()
            .map(|w| (w.path.to_string(), w.kind))
            .collect()
    }

    fn content_of(fx: &Fixture, out: &ScanOutcome, path: &str) -> Vec<u8> {
        match &out
            .snapshot
            .get(&TreePath::new(path).unwrap())
            .unwrap()
            .kind
        {
            EntryKind::File { chunks, .. } => fx.store.read_all(chunks).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    /// Rewrites the tree's stat cache: every file's chunks replaced by
    /// `chunks` (if given) and the scan's start set to `started`.
    fn tamper(fx: &Fixture, chunks: Option<&ChunkList>, started: Timestamp) {
        let canonical = std::fs::canonicalize(&fx.tree).unwrap();
        let root = canonical.as_os_str().as_bytes();
        let path = statcache::cache_path(&fx.store, root);
        let cache = CacheFile::decode(&std::fs::read(&path).unwrap(), root).unwrap();
        let (_, tree_id, records) = cache.into_parts();
        let mut entries = fx.store.snapshot(&tree_id).unwrap().into_entries();
        for entry in &mut entries {
            if let (Some(chunks), EntryKind::File { .. }) = (chunks, &entry.kind) {
                entry.kind = file_kind(chunks.clone());
            }
        }
        let tree_id = fx
            .store
            .put_snapshot(&Snapshot::from_sorted(entries).unwrap())
            .unwrap();
        let bytes = CacheFile::encode_parts(root, started, tree_id, records);
        CacheFile::write(&fx.store, &path, &bytes).unwrap();
    }

    /// A rescan that finds the same tree and reads nothing leaves the cache
    /// file as it is; one that reads a file writes it again.
    #[test]
    fn an_unchanged_rescan_leaves_the_cache_file_alone() {
        use std::os::unix::fs::MetadataExt;
        let fx = fixture();
        std::fs::write(fx.tree.join("a"), b"alpha").unwrap();
        std::fs::write(fx.tree.join("b"), b"bravo").unwrap();
        let canonical = std::fs::canonicalize(&fx.tree).unwrap();
        let path = statcache::cache_path(&fx.store, canonical.as_os_str().as_bytes());
        let first = fx.store.scan(&fx.tree, &ScanOptions::default()).unwrap();
        assert_eq!(first.files_read, 2);
        // Files as new as the scan are racy; a scan start well after them
        // makes the cache trusted for them.
        tamper(&fx, None, Timestamp::new(now().secs + 10, 0));
        let written = std::fs::metadata(&path).unwrap().ino();
        let second = fx.store.scan(&fx.tree, &ScanOptions::default()).unwrap();
        assert_eq!(second.files_read, 0, "{second:?}");
        assert_eq!(second.snapshot.id(), first.snapshot.id());
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), written);
        std::fs::write(fx.tree.join("b"), b"BRAVO").unwrap();
        let fourth = fx.store.scan(&fx.tree, &ScanOptions::default()).unwrap();
        assert_eq!(fourth.files_read, 1);
        assert_ne!(std::fs::metadata(&path).unwrap().ino(), written);
    }

    #[test]
    fn the_cache_is_trusted_only_for_files_older_than_the_scan_start() {
        let fx = fixture();
        std::fs::write(fx.tree.join("f"), b"real").unwrap();
        let first = fx.store.scan(&fx.tree, &ScanOptions::default()).unwrap();
        assert_eq!(content_of(&fx, &first, "f"), b"real");

        // A cache whose scan started well after the file's last change is
        // trusted: its (false) chunks are taken without reading the file.
        let fake = fx.store.put_bytes(b"fake").unwrap();
        let later = Timestamp::new(now().secs + 10, 0);
        tamper(&fx, Some(&fake), later);
        let trusted = fx.store.scan(&fx.tree, &ScanOptions::default()).unwrap();
        assert_eq!(content_of(&fx, &trusted, "f"), b"fake");
        assert_eq!((trusted.files_read, trusted.files_from_cache), (0, 1));

        // The same cache written by a scan that started in the second of the
        // file's ctime: racily clean, so the file is read.
        let ctime = file_stat(&rustix::fs::lstat(fx.tree.join("f")).unwrap()).ctime;
        for started in [ctime, Timestamp::new(ctime.secs + 1, 999_999_999)] {
            tamper(&fx, Some(&fake), started);
            let racy = fx.store.scan(&fx.tree, &ScanOptions::default()).unwrap();
            assert_eq!(content_of(&fx, &racy, "f"), b"real", "started {started:?}");
            assert_eq!(racy.files_read, 1);
        }
        // Two seconds on, the file is settled.
        tamper(&fx, Some(&fake), Timestamp::new(ctime.secs + 2, 0));
        let settled = fx.store.scan(&fx.tree, &ScanOptions::default()).unwrap();
        assert_eq!(content_of(&fx, &settled, "f"), b"fake");
    }

    #[test]
    fn listings_join_in_path_order_without_what_was_not_listed() {
        let path = |p: &str| TreePath::new(p).unwrap();
        let meta = Metadata::default();
        let dir = |p: &str| Found::Entry(Entry::dir(path(p), meta.clone()), None);
        let file = |p: &str| Found::Entry(Entry::new(path(p), EntryKind::Fifo, meta.clone()), None);
        let sub = |p: &str| {
            Found::Dir(Pending {
                path: path(p),
                expect: Some((0, 0)),
            })
        };
        let root = Found::Entry(Entry::dir(TreePath::ROOT, meta.clone()), None);
        let mut dirs = vec![
            Listed {
                path: path("a/b"),
                items: vec![dir("a/b"), file("a/b/z")],
            },
            // "gone" has no listing (the walk gives a vanished directory
            // an empty one); the `Gone` is a linked file that vanished
            // before its group was read.
            Listed {
                path: TreePath::ROOT,
                items: vec![
                    root,
                    sub("a"),
                    file("a-c"),
                    sub("gone"),
                    file("h"),
                    Found::Gone,
                    sub("z"),
                ],
            },
            Listed {
                path: path("a"),
                items: vec![dir("a"), sub("a/b"), file("a/c")],
            },
            Listed {
                path: path("z"),
                items: vec![dir("z"), sub("z/y")],
            },
        ];
        dirs.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        let entries: Vec<Entry> = depth_first(dirs).into_iter().map(|(e, _)| e).collect();
        let paths: Vec<String> = entries.iter().map(|e| e.path.to_string()).collect();
        assert_eq!(paths, [".", "a", "a/b", "a/b/z", "a/c", "a-c", "h", "z"]);
        Snapshot::from_sorted(entries).unwrap();
    }

    #[test]
    fn vanished_and_replaced_paths_are_warnings_not_errors() {
        let fx = fixture();
        std::fs::create_dir(fx.tree.join("d")).unwrap();
        std::fs::write(fx.tree.join("f"), b"x").unwrap();
        std::os::unix::fs::symlink("d", fx.tree.join("l")).unwrap();
        let scan = Scan::new(&fx.store, Root::open(&fx.tree).unwrap(), false);
        let root_dir = scan.root.open_dir(b"").unwrap();

        // Listed, then gone before it is examined.
        assert!(
            scan.examine(&root_dir, &TreePath::ROOT, b"gone", &(0..0))
                .unwrap()
                .is_none()
        );
        // A directory gone, replaced by another, or by a link, before it is listed.
        let pending = |path: &str, expect| Pending {
            path: TreePath::new(path).unwrap(),
            expect: Some(expect),
        };
        let d = rustix::fs::lstat(fx.tree.join("d")).unwrap();
        assert!(scan.list(&pending("gone", (0, 0))).unwrap().is_empty());
        assert!(scan.list(&pending("d", (dev(&d), 0))).unwrap().is_empty());
        assert!(
            scan.list(&pending("l", (dev(&d), ino(&d))))
                .unwrap()
                .is_empty()
        );
        assert!(scan.list(&pending("f", (0, 0))).unwrap().is_empty());
        assert_eq!(
            scan.list(&pending("d", (dev(&d), ino(&d)))).unwrap().len(),
            1
        );

        // A file replaced by another inode between lstat and open.
        let f = TreePath::new("f").unwrap();
        let shown = fx.tree.join("f");
        let got = scan
            .read_content(&f, &d, &shown, || root_dir.open_file(b"f"))
            .unwrap();
        assert!(got.is_none());
        // A file replaced by a link between lstat and open.
        let st = rustix::fs::lstat(&shown).unwrap();
        let got = scan
            .read_content(&f, &st, &shown, || root_dir.open_file(b"l"))
            .unwrap();
        assert!(got.is_none());

        assert_eq!(
            kinds(&scan),
            [
                ("gone".to_owned(), ScanWarningKind::Vanished),
                ("gone".to_owned(), ScanWarningKind::Vanished),
                ("d".to_owned(), ScanWarningKind::Replaced),
                ("l".to_owned(), ScanWarningKind::Replaced),
                ("f".to_owned(), ScanWarningKind::Replaced),
                ("f".to_owned(), ScanWarningKind::Replaced),
                ("f".to_owned(), ScanWarningKind::Replaced),
            ]
        );
        assert_eq!(scan.files_read.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_file_that_keeps_changing_is_read_twice_and_kept_with_a_warning() {
        // A /proc file reports size 0 but has content: every read looks like
        // the file changed under it.
        let fx = fixture();
        let scan = Scan::new(&fx.store, Root::open("/proc/self").unwrap(), true);
        let dir = scan.root.open_dir(b"").unwrap();
        let st = dir.lstat(b"status").unwrap();
        let path = TreePath::new("status").unwrap();
        let read = scan
            .read_content(&path, &st, Path::new("/proc/self/status"), || {
                dir.open_file(b"status")
            })
            .unwrap()
            .unwrap();
        assert!(read.chunks.content_len() > 0);
        assert_eq!(scan.files_read.load(Ordering::Relaxed), 2);
        assert_eq!(
            kinds(&scan),
            [("status".to_owned(), ScanWarningKind::ChangedWhileRead)]
        );
        // What changed while read is not remembered for the cache.
        assert!(!read.stable);
    }

    #[test]
    fn an_unreadable_file_is_an_error_naming_it() {
        let fx = fixture();
        std::fs::write(fx.tree.join("f"), b"x").unwrap();
        let scan = Scan::new(&fx.store, Root::open(&fx.tree).unwrap(), false);
        let shown = fx.tree.join("f");
        let st = rustix::fs::lstat(&shown).unwrap();
        let denied = || {
            let source = io::Error::from_raw_os_error(Errno::ACCESS.raw_os_error());
            Err(Error::io("open", &shown, source))
        };
        let err = scan
            .read_content(&TreePath::new("f").unwrap(), &st, &shown, denied)
            .unwrap_err();
        assert!(err.to_string().contains(&*shown.to_string_lossy()), "{err}");
        assert!(kinds(&scan).is_empty());
    }
}
