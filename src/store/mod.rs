//! The content-addressed chunk store: a directory of packs and their indexes,
//! refs (a namespace of small files naming objects) and the lock. The
//! directories and files of a store are described, and named, in
//! [`layout`].
//!
//! ## The lock protocol
//!
//! Every open `Store` holds `<store>/lock` shared for as long as it is open.
//! Garbage collection and repair need the store alone: they convert this
//! handle's lock to exclusive, which succeeds only when no other process has
//! the store open. A writer's chunks are therefore never collected while it
//! could still name them: it holds the lock from open to close, across every
//! put, flush and tag. The price is that gc waits (or gives up with
//! [`Error::Locked`]) while any other process has the store open.

pub(crate) mod cache;
pub(crate) mod chunk_list;
mod chunker;
mod config;
mod copy;
mod frame;
mod fsck;
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzzing;
mod gc;
mod index;
pub(crate) mod layout;
mod lock;
mod mmap;
mod pack;
mod read;
mod refs;
mod stats;
mod verify;
mod write;

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock, RwLockWriteGuard};
use std::time::{Duration, Instant};

use rustix::fs::FlockOperation;

use crate::error::{Error, Result};
use crate::fsutil::durable;
use crate::id::{ChunkId, PackId};

use self::cache::FrameCache;
use self::chunker::Chunker;
use self::config::{Config, ConfigError};
use self::index::{Index, Location};
use self::mmap::Mapped;

pub use self::config::StoreOptions;
pub use self::copy::CopyReport;
pub use self::gc::GcReport;
pub use self::read::ChunkReader;
pub(crate) use self::refs::is_ref_part;
pub use self::stats::{PackStats, StoreStats};

/// Bytes of decompressed frames kept for reads.
const FRAME_CACHE_BYTES: usize = 64 << 20;

/// A content-addressed, deduplicating chunk store in a directory.
///
/// A `Store` is `Send + Sync`: share it between threads by reference or `Arc`.
/// Many processes may open and write one store at once.
///
/// Content written with the `put_*` methods is readable at once through this
/// `Store`, and durable — visible to other processes and kept across a crash —
/// once [`Store::flush`] returns. Dropping a `Store` flushes, ignoring errors;
/// call `flush` to see them.
pub struct Store {
    root: PathBuf,
    config: Config,
    chunker: Chunker,
    lock: File,
    committed: RwLock<Committed>,
    /// Indexes skipped because their header is damaged, and why; `fsck`
    /// reports them and its repair rebuilds them from their packs.
    bad_indexes: Mutex<Vec<(PathBuf, String)>>,
    pending: Mutex<write::Pending>,
    pending_changed: Condvar,
    cache: FrameCache,
    pack_seq: AtomicU64,
    /// Where in `committed.packs` the last chunk looked for was found.
    last_hit: AtomicUsize,
}

/// The packs whose indexes are on disk.
#[derive(Default)]
struct Committed {
    packs: Vec<Arc<Pack>>,
    names: HashSet<PackId>,
}

/// One committed pack: its index (mapped) and its file (opened on first read).
pub(crate) struct Pack {
    id: PackId,
    /// Number in this process, for frame-cache keys.
    seq: u64,
    path: PathBuf,
    idx_path: PathBuf,
    index: Index<Mapped>,
    file: OnceLock<(File, u64)>,
}

impl Pack {
    /// The open pack file and its length.
    fn file(&self) -> Result<&(File, u64)> {
        if let Some(f) = self.file.get() {
            return Ok(f);
        }
        let file = File::open(&self.path).map_err(|e| Error::io("open pack", &self.path, e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io("stat", &self.path, e))?
            .len();
        Ok(self.file.get_or_init(|| (file, len)))
    }

    fn find(&self, id: &ChunkId) -> Option<Result<Location>> {
        let i = self.index.find(id)?;
        Some(self.index.location_at(i).ok_or_else(|| {
            Error::corrupt(
                &self.idx_path,
                0,
                format!("record {i} has an unknown codec"),
            )
        }))
    }
}

/// Opening and creating
impl Store {
    /// Creates a store in `path` (created if absent; it must be empty or hold
    /// nothing but an earlier store, which is then opened as it is).
    ///
    /// # Errors
    /// [`Error::Io`] naming the path when the directory cannot be made or
    /// written; [`Error::BadConfig`] for options out of range;
    /// [`Error::InvalidArgument`] if the directory holds other files.
    pub fn create(path: impl AsRef<Path>, options: &StoreOptions) -> Result<Self> {
        let root = path.as_ref();
        let config_path = layout::config(root);
        let config = Config::new(options).map_err(|reason| Error::BadConfig {
            path: config_path.clone(),
            reason,
        })?;
        if config_path.exists() {
            return Self::open(root);
        }
        fs_err::create_dir_all(root).map_err(|e| Error::io("create directory", root, e))?;
        let mut entries =
            std::fs::read_dir(root).map_err(|e| Error::io("read directory", root, e))?;
        if let Some(entry) = entries.next() {
            let entry = entry.map_err(|e| Error::io("read directory", root, e))?;
            if !matches!(
                entry.file_name().to_str(),
                Some(layout::PACKS | layout::TMP | layout::LOCK)
            ) {
                return Err(Error::InvalidArgument(format!(
                    "'{}' is not empty and holds no store (found '{}')",
                    root.display(),
                    entry.file_name().to_string_lossy()
                )));
            }
        }
        for dir in [layout::packs(root), layout::tmp(root)] {
            fs_err::create_dir_all(&dir).map_err(|e| Error::io("create directory", &dir, e))?;
        }
        let lock_path = layout::lock(root);
        File::create(&lock_path).map_err(|e| Error::io("create", &lock_path, e))?;
        // The config is written last: a directory with a config is a store.
        durable::write_atomic(&layout::tmp(root), &config_path, config.render().as_bytes())?;
        durable::sync_dir(root)?;
        Self::open(root)
    }

    /// Opens the store in `path`.
    ///
    /// # Errors
    /// [`Error::NotAStore`] if there is no `config`; [`Error::UnsupportedVersion`]
    /// if a newer format wrote it; [`Error::BadConfig`] if it is garbled;
    /// [`Error::Locked`] if garbage collection holds the store;
    /// [`Error::Io`] naming the path for system failures.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path.as_ref(), true)
    }

    /// A second handle on a store whose lock this process already holds
    /// exclusively (through another handle): it takes no lock and does not
    /// clean `tmp/`. Garbage collection and repair work through one.
    pub(crate) fn open_unlocked(path: &Path) -> Result<Self> {
        Self::open_with(path, false)
    }

    fn open_with(path: &Path, locking: bool) -> Result<Self> {
        let root = path.to_path_buf();
        let config_path = layout::config(&root);
        let bytes = match std::fs::read(&config_path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(if root.is_dir() {
                    Error::NotAStore { path: root }
                } else {
                    Error::io("open store", &root, e)
                });
            }
            Err(e) => return Err(Error::io("read", &config_path, e)),
        };
        let config = Config::parse(&bytes).map_err(|err| match err {
            ConfigError::UnsupportedVersion(found) => Error::UnsupportedVersion {
                path: config_path.clone(),
                found,
                supported: config::FORMAT_VERSION,
            },
            ConfigError::Malformed(reason) => Error::BadConfig {
                path: config_path.clone(),
                reason,
            },
        })?;
        for dir in [layout::packs(&root), layout::tmp(&root)] {
            if !dir.is_dir() {
                return Err(Error::corrupt(&dir, 0, "missing store directory"));
            }
        }
        let lock_path = layout::lock(&root);
        let lock = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| Error::io("open", &lock_path, e))?;
        // Alone with the store: whatever is in tmp/ was left by a crash.
        if locking && lock::take(&lock, &lock_path, FlockOperation::NonBlockingLockExclusive)? {
            clean_tmp(&layout::tmp(&root), false)?;
        }
        if locking && !take_shared_soon(&lock, &lock_path)? {
            return Err(Error::Locked {
                path: lock_path,
                reason: "garbage collection holds it exclusively",
            });
        }
        let store = Self {
            chunker: Chunker::new(config.chunk_min, config.chunk_avg, config.chunk_max),
            config,
            lock,
            committed: RwLock::new(Committed::default()),
            bad_indexes: Mutex::new(Vec::new()),
            pending: Mutex::new(write::Pending::default()),
            pending_changed: Condvar::new(),
            cache: FrameCache::new(FRAME_CACHE_BYTES),
            last_hit: AtomicUsize::new(0),
            pack_seq: AtomicU64::new(0),
            root,
        };
        store.refresh()?;
        Ok(store)
    }

    /// The store's directory.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The zstd level new frames are written at.
    #[must_use]
    pub fn zstd_level(&self) -> i32 {
        self.config.zstd_level
    }

    fn packs_dir(&self) -> PathBuf {
        layout::packs(&self.root)
    }

    fn tmp_dir(&self) -> PathBuf {
        layout::tmp(&self.root)
    }

    /// Loads the indexes that other processes committed since this store was
    /// opened (or last refreshed). Writers refresh by themselves when they flush.
    /// An index whose header is damaged is skipped (its chunks read as missing)
    /// and remembered for [`Store::fsck`](crate::Store::fsck) to report.
    ///
    /// # Errors
    /// [`Error::Io`] if `packs/` cannot be listed or an index cannot be mapped.
    pub fn refresh(&self) -> Result<()> {
        let found = self.indexed_pack_ids()?;
        let known: Vec<PackId> = {
            let committed = self
                .committed
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            found
                .into_iter()
                .filter(|id| !committed.names.contains(id))
                .collect()
        };
        let loaded = self.load_packs(known)?;
        let mut committed = self
            .committed
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for pack in loaded {
            if committed.names.insert(pack.id) {
                committed.packs.push(pack);
            }
        }
        Ok(())
    }

    /// Every pack that has an `.idx` file in `packs/`, sorted.
    fn indexed_pack_ids(&self) -> Result<Vec<PackId>> {
        let dir = self.packs_dir();
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::io("read directory", &dir, e))? {
            let entry = entry.map_err(|e| Error::io("read directory", &dir, e))?;
            let name = entry.file_name();
            if let Some((id, true)) = name.to_str().and_then(layout::parse_pack_dir_name) {
                found.push(id);
            }
        }
        found.sort();
        Ok(found)
    }

    /// Loads the indexes of `ids`, skipping (and remembering) those whose
    /// header is damaged or that cannot be read (a failing disk, say), so
    /// that the store still opens and `fsck` can say what is wrong. Their
    /// chunks read as missing; gc leaves their packs alone (an index is
    /// there).
    fn load_packs(&self, ids: Vec<PackId>) -> Result<Vec<Arc<Pack>>> {
        let mut loaded = Vec::with_capacity(ids.len());
        for id in ids {
            let skipped = match self.load_pack(id) {
                Ok(pack) => {
                    loaded.push(Arc::new(pack));
                    continue;
                }
                Err(Error::Corrupt { path, reason, .. }) => (path, reason),
                // The process's own limits (open files, memory) say nothing
                // about the index: those fail the open.
                Err(Error::Io { path, source, .. })
                    if !matches!(
                        rustix::io::Errno::from_io_error(&source),
                        Some(
                            rustix::io::Errno::MFILE
                                | rustix::io::Errno::NFILE
                                | rustix::io::Errno::NOMEM
                        )
                    ) =>
                {
                    (path, format!("cannot be read: {source}"))
                }
                Err(other) => return Err(other),
            };
            let (path, reason) = skipped;
            let mut bad = self
                .bad_indexes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !bad.iter().any(|(p, _)| *p == path) {
                bad.push((path, reason));
            }
        }
        Ok(loaded)
    }

    /// Every index on disk loaded afresh, forgetting what was loaded before
    /// (after garbage collection or repair, packs may have gone).
    fn load_all(&self) -> Result<Committed> {
        self.bad_indexes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        let packs = self.load_packs(self.indexed_pack_ids()?)?;
        Ok(Committed {
            names: packs.iter().map(|p| p.id).collect(),
            packs,
        })
    }

    /// Indexes that opening (or refreshing) skipped because their header is
    /// damaged, each with the reason: their chunks read as missing until
    /// [`Store::fsck`](crate::Store::fsck) with `repair` rebuilds them.
    #[must_use]
    pub fn damaged_indexes(&self) -> Vec<(PathBuf, String)> {
        self.bad_indexes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Snapshot of the committed packs.
    fn committed_packs(&self) -> Vec<Arc<Pack>> {
        self.committed
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .packs
            .clone()
    }

    fn load_pack(&self, id: PackId) -> Result<Pack> {
        let dir = self.packs_dir();
        let idx_path = dir.join(layout::index_file(&id));
        let file = File::open(&idx_path).map_err(|e| Error::io("open index", &idx_path, e))?;
        let mapped = mmap::map(&file, &idx_path)?;
        let index = Index::new(mapped).map_err(|reason| Error::corrupt(&idx_path, 0, reason))?;
        Ok(Pack {
            id,
            seq: self.pack_seq.fetch_add(1, Ordering::Relaxed),
            path: dir.join(layout::pack_file(&id)),
            idx_path,
            index,
            file: OnceLock::new(),
        })
    }

    /// The committed pack and location of `id`.
    fn find_committed(&self, id: &ChunkId) -> Option<(Arc<Pack>, Result<Location>)> {
        self.search_packs(|pack| pack.find(id).map(|loc| (Arc::clone(pack), loc)))
    }

    fn is_committed(&self, id: &ChunkId) -> bool {
        self.search_packs(|pack| pack.index.find(id)).is_some()
    }

    /// The first answer of `find` among the committed packs: the pack that
    /// answered last is asked first (the chunks of one file or tree mostly
    /// sit in one pack, and a store committed to many times has many packs),
    /// then the others, newest first.
    fn search_packs<T>(&self, find: impl Fn(&Arc<Pack>) -> Option<T>) -> Option<T> {
        let committed = self
            .committed
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let hint = self.last_hit.load(Ordering::Relaxed);
        if let Some(found) = committed.packs.get(hint).and_then(&find) {
            return Some(found);
        }
        let (i, found) = committed
            .packs
            .iter()
            .enumerate()
            .rev()
            .filter(|(i, _)| *i != hint)
            .find_map(|(i, pack)| find(pack).map(|found| (i, found)))?;
        self.last_hit.store(i, Ordering::Relaxed);
        Some(found)
    }
}

impl chunk_list::ChunkList {
    /// The chunk list `bytes` would get in a store, computed without storing
    /// anything: the chunk boundaries and BLAKE3 ids, on this thread alone.
    /// Useful to learn which chunks another store lacks before sending any.
    #[must_use]
    pub fn of(bytes: &[u8]) -> Self {
        let chunker = Chunker::new(config::CHUNK_MIN, config::CHUNK_AVG, config::CHUNK_MAX);
        // Each chunk is hashed as soon as it is cut, while its bytes are still
        // in the CPU's cache from the cut: one pass over memory, not two.
        let mut list = Self::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(chunker.cut(rest));
            list.push(chunk_list::ChunkRef {
                id: ChunkId::of(chunk),
                len: chunk.len() as u32,
            });
            rest = tail;
        }
        list
    }
}

/// Removes everything in `tmp/` (called only while holding the store lock
/// exclusively, so no other process is using it). With `keep_ours`, files this
/// process is writing (their names carry its pid) are kept; returns the paths
/// removed.
fn clean_tmp(tmp: &Path, keep_ours: bool) -> Result<Vec<PathBuf>> {
    let ours = format!("-{}-", std::process::id());
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(tmp).map_err(|e| Error::io("read directory", tmp, e))? {
        let entry = entry.map_err(|e| Error::io("read directory", tmp, e))?;
        let path = entry.path();
        if keep_ours && entry.file_name().to_string_lossy().contains(&ours) {
            continue;
        }
        let result =
            crate::fsutil::fault::check("remove stale temporary file", &path).and_then(|()| {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                }
            });
        result.map_err(|e| Error::io("remove stale temporary file", &path, e))?;
        removed.push(path);
    }
    Ok(removed)
}

/// How long to sleep between attempts to take the lock exclusively.
const LOCK_RETRY: Duration = Duration::from_millis(50);

/// How long opening a store waits for the lock held exclusively. Another
/// process opening the store holds it so for the moment it takes to clean
/// `tmp/` (then converts it to shared); gc holds it for as long as it runs.
const OPEN_LOCK_WAIT: Duration = Duration::from_secs(2);

/// Takes `lock` shared, trying every 10 ms for up to [`OPEN_LOCK_WAIT`]:
/// `false` if it is still held exclusively then.
fn take_shared_soon(lock: &File, path: &Path) -> Result<bool> {
    let deadline = Instant::now() + OPEN_LOCK_WAIT;
    loop {
        if lock::take(lock, path, FlockOperation::NonBlockingLockShared)? {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// This handle's lock converted to exclusive, and its view of the committed
/// packs frozen: other threads using the handle wait (reads and puts block)
/// until it is dropped, which reloads every index and converts the lock back
/// to shared.
pub(crate) struct Exclusive<'a> {
    store: &'a Store,
    committed: RwLockWriteGuard<'a, Committed>,
}

/// Exclusive access
impl Store {
    /// Converts this handle's shared lock to exclusive, trying every 50 ms for
    /// up to `wait`.
    ///
    /// `flock` converts a lock by releasing it and then taking the new one, so
    /// the conversion is not atomic: when it fails (other processes hold the
    /// lock shared) this handle briefly holds no lock, and it takes its shared
    /// lock back at once. If another process took the lock exclusively in that
    /// gap (its own gc), this waits for it and then reloads every index, since
    /// packs may have been deleted meanwhile. The handle's committed view is
    /// write-locked across each attempt, so no thread of this process reads
    /// or deduplicates against a stale view.
    pub(crate) fn lock_exclusive(&self, wait: Duration) -> Result<Exclusive<'_>> {
        let lock_path = layout::lock(&self.root);
        let deadline = Instant::now() + wait;
        loop {
            let mut committed = self
                .committed
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if lock::take(
                &self.lock,
                &lock_path,
                FlockOperation::NonBlockingLockExclusive,
            )? {
                return Ok(Exclusive {
                    store: self,
                    committed,
                });
            }
            if !lock::take(
                &self.lock,
                &lock_path,
                FlockOperation::NonBlockingLockShared,
            )? {
                lock::take(&self.lock, &lock_path, FlockOperation::LockShared)?;
                *committed = self.load_all()?;
            }
            drop(committed);
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Locked {
                    path: lock_path,
                    reason: "other processes have the store open; gc and repair need it alone",
                });
            }
            std::thread::sleep(LOCK_RETRY.min(deadline - now));
        }
    }
}

impl Exclusive<'_> {
    /// Removes what other processes left in `tmp/` (they are gone: we hold the
    /// lock exclusively); returns the paths removed.
    pub(crate) fn clean_tmp(&self) -> Result<Vec<PathBuf>> {
        clean_tmp(&self.store.tmp_dir(), true)
    }
}

impl Drop for Exclusive<'_> {
    fn drop(&mut self) {
        // Packs may have been deleted, rewritten or quarantined: start afresh.
        // If the indexes cannot be loaded, an empty view is safe (reads miss
        // until the next refresh; puts store chunks again rather than
        // deduplicating against a pack that is gone).
        *self.committed = self.store.load_all().unwrap_or_default();
        let lock_path = layout::lock(&self.store.root);
        // Exclusive to shared: nobody else holds the lock, so this cannot wait.
        let _ = lock::take(&self.store.lock, &lock_path, FlockOperation::LockShared);
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.root)
            .finish_non_exhaustive()
    }
}
