//! The content-addressed chunk store: a directory of packs and their indexes,
//! refs (a namespace of small files naming objects) and the lock. The
//! directories and files of a store are described, and named, in
//! [`layout`].
//!
//! ## The lock protocol
//!
//! Every open `Store` holds `<store>/lock` shared for as long as it is open.
//! Repair (`fsck --repair`) needs the store alone: it converts this handle's
//! lock to exclusive, which succeeds only when no other process has the store
//! open. Garbage collection does not: it runs while other processes read and
//! write, and what they put is kept by their leases (`lease.rs`, with the
//! argument why that is enough); `lock.rs` lists every lock.

pub(crate) mod cache;
pub(crate) mod chunk_list;
mod chunker;
mod combined_index;
mod committed;
mod config;
mod copy;
mod frame;
mod fsck;
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzzing;
mod gc;
mod gc_summary;
mod index;
pub(crate) mod layout;
mod lease;
mod lock;
mod maintain;
mod mmap;
mod pack;
mod read;
mod refs;
mod source;
mod stats;
mod verify;
mod write;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Condvar, Mutex, RwLock, RwLockWriteGuard};
use std::time::{Duration, Instant};

use rustix::fs::FlockOperation;

use crate::error::{Error, Result};
use crate::fsutil::durable;
use crate::id::ChunkId;

use self::cache::FrameCache;
use self::chunker::Chunker;
use self::committed::Committed;
pub(crate) use self::committed::Pack;
use self::config::{Config, ConfigError};

pub use self::config::StoreOptions;
pub use self::copy::CopyReport;
pub use self::gc::GcReport;
pub(crate) use self::gc::SweepOptions;
pub(crate) use self::gc_summary::{GcSummary, KeyRoot, PackSet, summary_key};
pub use self::lease::RootLease;
pub use self::read::ChunkReader;
pub(crate) use self::refs::is_ref_part;
pub use self::source::ChunkSource;
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
    /// Where in `committed.recent` the last chunk looked for was found.
    last_hit: AtomicUsize,
    /// Held while the view is rebuilt or a pack added to it, so that one
    /// thread's rebuild from an older listing never drops another's pack.
    refreshing: Mutex<()>,
    /// Whether a flush that commits a pack runs maintenance
    /// ([`Store::set_auto_maintenance`]).
    auto_maintenance: AtomicBool,
    /// Set when a pack is committed, cleared when maintenance runs.
    maintenance_due: AtomicBool,
    /// Where chunks the store lacks are fetched from ([`Store::set_chunk_source`]).
    source: RwLock<Option<std::sync::Arc<dyn ChunkSource>>>,
    /// What keeps what this handle put from an online gc (`lease.rs`).
    lease: lease::Lease,
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
        // Its parent fsynced: a store that `create` returned survives a crash.
        durable::create_dir(root)?;
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
            crate::fsutil::fault::check("create directory", &dir)
                .and_then(|()| fs_err::create_dir_all(&dir))
                .map_err(|e| Error::io("create directory", &dir, e))?;
        }
        let lock_path = layout::lock(root);
        crate::fsutil::fault::check("create", &lock_path)
            .and_then(|()| File::create(&lock_path))
            .map_err(|e| Error::io("create", &lock_path, e))?;
        // The config is written last, once the rest is durable: a directory
        // with a config is a store. (`write_atomic` fsyncs the directory.)
        durable::sync_dir(root)?;
        durable::write_atomic(&layout::tmp(root), &config_path, config.render().as_bytes())?;
        Self::open(root)
    }

    /// Opens the store in `path`.
    ///
    /// # Errors
    /// [`Error::NotAStore`] if there is no `config`; [`Error::UnsupportedVersion`]
    /// if a newer format wrote it; [`Error::BadConfig`] if it is garbled;
    /// [`Error::Locked`] if a repair holds the store;
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
                reason: "a repair holds it exclusively",
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
            refreshing: Mutex::new(()),
            auto_maintenance: AtomicBool::new(true),
            maintenance_due: AtomicBool::new(false),
            source: RwLock::new(None),
            lease: lease::Lease::default(),
            root,
        };
        store.refresh()?;
        if locking {
            // A store without a usable combined index (written before there
            // was one, or after a crash) gets one now, if it has enough packs
            // to need it; a store that cannot be written still opens.
            let _ = store.maintain_index_at_open();
        }
        Ok(store)
    }

    /// The store's directory.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Keeps at most `bytes` of decompressed frames (64 MiB unless set): a
    /// long-running reader that reads ahead itself, such as a lazy view's
    /// server, needs only the frames its readers are in.
    pub(crate) fn limit_frame_cache(&mut self, bytes: usize) {
        self.cache = FrameCache::new(bytes);
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
/// `tmp/` (then converts it to shared), and so does gc; repair holds it for as long
/// as it runs.
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
                *committed = self.fresh_view()?;
            }
            drop(committed);
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Locked {
                    path: lock_path,
                    reason: "other processes have the store open; repair needs it alone",
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
        *self.committed = self.store.fresh_view().unwrap_or_default();
        let lock_path = layout::lock(&self.store.root);
        // Exclusive to shared: nobody else holds the lock, so this cannot wait.
        let _ = lock::take(&self.store.lock, &lock_path, FlockOperation::LockShared);
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.flush();
        self.release_lease();
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.root)
            .finish_non_exhaustive()
    }
}
