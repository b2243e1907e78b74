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
//! ([`statcache`], whose module docs give the exact rule).
//!
//! # Parts
//!
//! [`Store::scan`] (here) opens the root, loads the previous scan's stat
//! cache, walks, groups the linked files, joins the listings and saves the
//! next stat cache; each step has a file of its own:
//! - `walk`: the parallel walk, which lists each directory, examines its
//!   children and reads the files with one link, and the depth-first join of
//!   the listings into path order;
//! - `read`: reading one regular file's content into the store, again if it
//!   changed while read;
//! - `links`: the files with several links, grouped by device and inode
//!   once the walk is done, each group read once;
//! - `stat`: what a scan takes from `stat` (an entry's metadata, what the
//!   stat cache compares), loading and consulting the previous scan's stat
//!   cache, and the clock probe behind its racy-timestamp rule;
//! - [`statcache`]: the stat cache's file format and when a cached entry is
//!   trusted;
//! - `seed`: [`Store::seed_stat_cache`], which records a directory just
//!   checked out as if it had been scanned.
//!
//! The state the walk's threads share (`Scan`: the root, the stat cache,
//! warnings and counters) is defined here; each part adds its methods to it.

mod links;
mod read;
mod seed;
mod stat;
pub(crate) mod statcache;
mod walk;

#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use rayon::prelude::*;
use rustix::io::Errno;

use self::links::take_linked;
use self::statcache::{CacheFile, FileStat, Loaded, Records};
use self::walk::{Found, depth_first};
use crate::error::{Error, ErrorKind, Result};
use crate::fsutil::confine::ConfinedDir;
use crate::id::SnapshotId;
use crate::progress::{Progress, ProgressStage, Tracker};
use crate::store::Store;
use crate::tree::entry::{Entry, Timestamp};
use crate::tree::path::TreePath;
use crate::tree::snapshot::Snapshot;

/// How [`Store::scan`] works.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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
    /// Told how many entries are examined of those listed so far (the total
    /// grows as the walk goes) and how many bytes of content are read or
    /// taken from the stat cache ([`ProgressStage::Scan`]).
    pub progress: Progress,
}

impl Default for ScanOptions {
    /// The stat cache on, the current rayon pool, no progress hook.
    fn default() -> Self {
        Self {
            use_stat_cache: true,
            threads: None,
            progress: Progress::none(),
        }
    }
}

impl ScanOptions {
    /// Uses the stat cache, or (with `false`) reads every file and neither
    /// reads nor writes the cache.
    #[must_use]
    pub fn use_stat_cache(mut self, use_stat_cache: bool) -> Self {
        self.use_stat_cache = use_stat_cache;
        self
    }

    /// Scans in a thread pool of its own with this many threads (0 is
    /// refused by [`Store::scan`]).
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
    /// stores (as [`Store::put_snapshot`]);
    /// a snapshot too large to be one object (64 MiB encoded) is not stored
    /// and no cache is saved, with a warning.
    ///
    /// The store is not flushed: call [`Store::flush`] to make the content
    /// durable.
    ///
    /// # Errors
    /// [`Error::NoSuchDirectory`] naming `dir` if it is missing or not a
    /// directory;
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

    fn scan_in_pool(&self, dir: &Path, options: &ScanOptions) -> Result<ScanOutcome> {
        let missing = |reason| Error::NoSuchDirectory {
            path: dir.to_path_buf(),
            reason,
        };
        let meta = match fs_err::metadata(dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(missing("no such file or directory"));
            }
            other => other.map_err(|e| Error::io("scan", dir, e))?,
        };
        if !meta.is_dir() {
            return Err(missing("not a directory"));
        }
        // A clock before 1970 gives the epoch: no cache entry written by
        // this scan is trusted.
        let started = Timestamp::now();
        let canonical = fs_err::canonicalize(dir).map_err(|e| Error::io("scan", dir, e))?;
        let mut scan = Scan::new(self, ConfinedDir::open(&canonical)?, options.use_stat_cache);
        scan.progress = options.progress.track(ProgressStage::Scan);
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
            // The cache names the snapshot, stored (even when it is the
            // previous scan's: its directories are then found stored and
            // leased, so that a gc running meanwhile keeps them).
            let tree_id = match self.put_snapshot(&snapshot) {
                Ok(id) => Some(id),
                // A directory too large to be one object: no cache, but the
                // scan stands.
                Err(err) if err.kind() == ErrorKind::TooLarge => {
                    scan.warn(&TreePath::ROOT, ScanWarningKind::StatCacheNotSaved, err);
                    None
                }
                Err(err) => return Err(err),
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
        scan.progress.finish();
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

/// The state of one scan, shared by its threads.
struct Scan<'s> {
    store: &'s Store,
    root: ConfinedDir,
    /// The previous scan's stat cache, if it is used and could be read.
    cache: Option<Loaded>,
    /// Whether this scan saves a stat cache for the next one.
    save_cache: bool,
    warnings: Mutex<Vec<ScanWarning>>,
    files_read: AtomicU64,
    bytes_read: AtomicU64,
    files_from_cache: AtomicU64,
    /// Entries examined of those listed, bytes read or taken from the cache.
    progress: Tracker,
}

/// An entry, and for a regular file the stat of the file whose content it
/// holds, for the next stat cache (`None` if it changed while read).
type Stated = (Entry, Option<FileStat>);

impl<'s> Scan<'s> {
    fn new(store: &'s Store, root: ConfinedDir, use_stat_cache: bool) -> Self {
        Scan {
            store,
            root,
            cache: None,
            save_cache: use_stat_cache,
            warnings: Mutex::new(Vec::new()),
            files_read: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            files_from_cache: AtomicU64::new(0),
            progress: Progress::none().track(ProgressStage::Scan),
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
}

/// Whether `err` says that a path vanished (`ENOENT`) or was replaced by
/// something of another kind (`ENOTDIR`, `ELOOP` for a link where
/// `O_NOFOLLOW` was given, `ENXIO` for a socket, a link met on the way, not a
/// regular file any more) while it was scanned, and if so which warning it is.
fn raced(err: &Error) -> Option<ScanWarningKind> {
    let source = match err {
        // A link met on the way; or `Dir::open_file` and `ConfinedDir::open_read`
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
