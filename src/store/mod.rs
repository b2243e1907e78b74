//! The content-addressed chunk store: a directory of packs and their indexes.
//!
//! ```text
//! <store>/
//!   config          format version, chunker parameters, compression
//!   lock            flock: shared by every open store, exclusive for gc and cleanup
//!   packs/<id>.pack frames of chunks, immutable once renamed into place
//!   packs/<id>.idx  the pack's sorted index, written after the pack is durable
//!   tmp/            packs and files being written; cleaned when nobody holds the lock
//!   cache/stat/<h>  the stat cache of one scanned directory (owned by `tree::scan`;
//!                   a cache only: safe to delete)
//! ```

mod cache;
pub(crate) mod chunk_list;
mod chunker;
pub(crate) mod config;
pub(crate) mod frame;
pub(crate) mod index;
mod lock;
mod mmap;
pub(crate) mod pack;
mod read;
mod refs;
mod stats;
mod write;

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock};

use rustix::fs::FlockOperation;

use crate::digest::{ChunkId, PackId};
use crate::error::{Error, Result};
use crate::fsutil::durable;

use self::cache::FrameCache;
use self::chunker::Chunker;
use self::config::{Config, ConfigError, StoreOptions};
use self::index::{Index, Location};
use self::mmap::Mapped;

pub use self::read::ChunkReader;
pub use self::refs::TagName;
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
    _lock: File,
    committed: RwLock<Committed>,
    pending: Mutex<write::Pending>,
    pending_changed: Condvar,
    cache: FrameCache,
    pack_seq: AtomicU64,
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
        let config_path = root.join("config");
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
            if !matches!(entry.file_name().to_str(), Some("packs" | "tmp" | "lock")) {
                return Err(Error::InvalidArgument(format!(
                    "'{}' is not empty and holds no store (found '{}')",
                    root.display(),
                    entry.file_name().to_string_lossy()
                )));
            }
        }
        for dir in ["packs", "tmp"] {
            let dir = root.join(dir);
            fs_err::create_dir_all(&dir).map_err(|e| Error::io("create directory", &dir, e))?;
        }
        let lock_path = root.join("lock");
        File::create(&lock_path).map_err(|e| Error::io("create", &lock_path, e))?;
        // The config is written last: a directory with a config is a store.
        durable::write_atomic(&root.join("tmp"), &config_path, config.render().as_bytes())?;
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
        let root = path.as_ref().to_path_buf();
        let config_path = root.join("config");
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
        for dir in ["packs", "tmp"] {
            let dir = root.join(dir);
            if !dir.is_dir() {
                return Err(Error::corrupt(&dir, 0, "missing store directory"));
            }
        }
        let lock_path = root.join("lock");
        let lock = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| Error::io("open", &lock_path, e))?;
        // Alone with the store: whatever is in tmp/ was left by a crash.
        if lock::take(&lock, &lock_path, FlockOperation::NonBlockingLockExclusive)? {
            clean_tmp(&root.join("tmp"))?;
        }
        if !lock::take(&lock, &lock_path, FlockOperation::NonBlockingLockShared)? {
            return Err(Error::Locked {
                path: lock_path,
                reason: "garbage collection holds it exclusively",
            });
        }
        let store = Self {
            chunker: Chunker::new(config.chunk_min, config.chunk_avg, config.chunk_max),
            config,
            _lock: lock,
            committed: RwLock::new(Committed::default()),
            pending: Mutex::new(write::Pending::default()),
            pending_changed: Condvar::new(),
            cache: FrameCache::new(FRAME_CACHE_BYTES),
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
        self.root.join("packs")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Loads the indexes that other processes committed since this store was
    /// opened (or last refreshed). Writers refresh by themselves when they flush.
    ///
    /// # Errors
    /// [`Error::Io`] if `packs/` cannot be listed or an index cannot be mapped;
    /// [`Error::Corrupt`] naming an index whose header is damaged.
    pub fn refresh(&self) -> Result<()> {
        let dir = self.packs_dir();
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::io("read directory", &dir, e))? {
            let entry = entry.map_err(|e| Error::io("read directory", &dir, e))?;
            let name = entry.file_name();
            let Some(hex) = name.to_str().and_then(|n| n.strip_suffix(".idx")) else {
                continue;
            };
            if let Ok(id) = PackId::from_hex(hex) {
                found.push(id);
            }
        }
        found.sort();
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
        let mut loaded = Vec::with_capacity(known.len());
        for id in known {
            loaded.push(Arc::new(self.load_pack(id)?));
        }
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

    fn load_pack(&self, id: PackId) -> Result<Pack> {
        let dir = self.packs_dir();
        let idx_path = dir.join(format!("{}.idx", id.to_hex()));
        let file = File::open(&idx_path).map_err(|e| Error::io("open index", &idx_path, e))?;
        let mapped = mmap::map(&file, &idx_path)?;
        let index = Index::new(mapped).map_err(|reason| Error::corrupt(&idx_path, 0, reason))?;
        Ok(Pack {
            id,
            seq: self.pack_seq.fetch_add(1, Ordering::Relaxed),
            path: dir.join(format!("{}.pack", id.to_hex())),
            idx_path,
            index,
            file: OnceLock::new(),
        })
    }

    /// The committed pack and location of `id`, newest pack first.
    fn find_committed(&self, id: &ChunkId) -> Option<(Arc<Pack>, Result<Location>)> {
        let committed = self
            .committed
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        committed
            .packs
            .iter()
            .rev()
            .find_map(|pack| pack.find(id).map(|loc| (Arc::clone(pack), loc)))
    }

    fn is_committed(&self, id: &ChunkId) -> bool {
        let committed = self
            .committed
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        committed
            .packs
            .iter()
            .rev()
            .any(|p| p.index.find(id).is_some())
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
/// exclusively, so no writer is using it).
fn clean_tmp(tmp: &Path) -> Result<()> {
    for entry in std::fs::read_dir(tmp).map_err(|e| Error::io("read directory", tmp, e))? {
        let entry = entry.map_err(|e| Error::io("read directory", tmp, e))?;
        let path = entry.path();
        let result = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        result.map_err(|e| Error::io("remove stale temporary file", &path, e))?;
    }
    Ok(())
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
