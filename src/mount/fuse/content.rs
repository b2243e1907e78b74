//! File content for a lazy view: verified chunks, loaded ahead of the
//! reader and shared while in flight.
//!
//! A reader that goes through files in order (`tar`, `cp -r`, a build
//! reading its sources) waits for each request in turn: the server would
//! idle between them. So when a file is first read, the files after it in
//! its directory are loaded ahead by two loader threads of the view and
//! handed to the kernel's page cache (`FUSE_NOTIFY_STORE`): reading them
//! then asks the server nothing. A file read sequentially has its next
//! chunks loaded ahead into a cache; a request that needs a chunk being
//! loaded waits for that load rather than starting its own (as threads
//! reading one frame of a pack do in the store).
//! Loaded-ahead chunks wait in a small cache (least recently used out); a
//! chunk read on demand is kept only if the next request of the file will
//! need it too, so files read once do not churn the cache.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::nodes::Node;

use crate::error::Result;
use crate::id::ChunkId;
use crate::store::Store;
use crate::store::cache::ByteCache;
use crate::store::chunk_list::ChunkRef;

/// Decompressed chunks kept for the requests that will need them.
const CACHE_BYTES: usize = 16 << 20;
/// Threads loading ahead (blocked on their queue when idle: no spinning).
const LOADERS: usize = 2;

/// Work for a loader, with the view whose content it is.
type Job = (Arc<Content>, Work);

enum Work {
    /// Load a chunk into the cache.
    Chunk(ChunkRef),
    /// Load a file's chunks (each with its offset in the file) and hand
    /// them to the kernel's page cache for the file, unless it was read
    /// meanwhile.
    Push {
        file: Arc<Node>,
        chunks: Vec<(u64, ChunkRef)>,
    },
}

/// The chunks of one view.
pub(super) struct Content {
    store: Arc<Store>,
    cache: ByteCache<ChunkId>,
    /// The loaders' queue; they end when it is dropped with the view.
    queue: Mutex<std::sync::mpsc::Sender<Job>>,
    /// How pushed content reaches the kernel, once the session exists.
    kernel: std::sync::OnceLock<fuser::Notifier>,
}

impl Content {
    pub(super) fn new(store: Arc<Store>) -> Self {
        let (queue, jobs) = std::sync::mpsc::channel::<Job>();
        let jobs = Arc::new(Mutex::new(jobs));
        for i in 0..LOADERS {
            let jobs = Arc::clone(&jobs);
            // A view without loaders still serves every read on demand.
            let _ = std::thread::Builder::new()
                .name(format!("layerstore-load-{i}"))
                .spawn(move || {
                    loop {
                        let job = jobs
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .recv();
                        let Ok((content, work)) = job else {
                            return;
                        };
                        content.work(work);
                    }
                });
        }
        Self {
            store,
            cache: ByteCache::new(CACHE_BYTES),
            queue: Mutex::new(queue),
            kernel: std::sync::OnceLock::new(),
        }
    }

    /// Lets the loaders hand content to the kernel's page cache through
    /// `notifier` (the session's).
    pub(super) fn connect(&self, notifier: fuser::Notifier) {
        let _ = self.kernel.set(notifier);
    }

    /// Does one loader's job. Errors are left for the request that needs
    /// the chunk to report.
    fn work(&self, work: Work) {
        match work {
            Work::Chunk(c) => drop(self.chunk(c, true)),
            Work::Push { file, chunks } => {
                // Read meanwhile (its reader's requests loaded it): handing
                // it over again would only copy it once more.
                if file.ahead.load(Ordering::Relaxed) != 0 {
                    return;
                }
                let ino = file.ino;
                let Some(kernel) = self.kernel.get() else {
                    for (_, c) in chunks {
                        drop(self.chunk(c, true));
                    }
                    return;
                };
                for (offset, c) in chunks {
                    let Ok(bytes) = self.chunk(c, false) else {
                        return;
                    };
                    // Refused if the kernel has let the inode go: then the
                    // reader's request reads it.
                    if kernel.store(fuser::INodeNo(ino), offset, &bytes).is_err() {
                        return;
                    }
                }
            }
        }
    }

    pub(super) fn store(&self) -> &Store {
        &self.store
    }

    /// Chunk `c`, verified: from the cache, from a load in flight, or read
    /// now (and cached if `keep`).
    ///
    /// # Errors
    /// [`Store::read_chunk`]'s (naming pack and offset), and a chunk whose
    /// length is not the one the file's list gives.
    pub(super) fn chunk(&self, c: ChunkRef, keep: bool) -> Result<Arc<Vec<u8>>> {
        self.cache
            .get_or_load(c.id, keep, || self.store.read_listed_chunk(c))
    }

    /// Loads `chunks` on the loader threads into the cache, each
    /// unless cached or loading already. Errors are left for the request
    /// that needs the chunk to report.
    pub(super) fn load_ahead(self: &Arc<Self>, chunks: impl IntoIterator<Item = ChunkRef>) {
        let queue = self
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for c in chunks {
            if self.cache.get(c.id).is_some() || self.cache.is_loading(c.id) {
                continue;
            }
            if queue.send((Arc::clone(self), Work::Chunk(c))).is_err() {
                // No loader: the request that needs it loads it.
                return;
            }
        }
    }

    /// Loads the file `ino`'s `chunks` (with their offsets) on a loader
    /// thread and hands them to the kernel's page cache, so that reading the
    /// file asks the server nothing.
    pub(super) fn push_ahead(self: &Arc<Self>, file: Arc<Node>, chunks: Vec<(u64, ChunkRef)>) {
        if chunks.is_empty() {
            return;
        }
        let queue = self
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = queue.send((Arc::clone(self), Work::Push { file, chunks }));
    }
}
