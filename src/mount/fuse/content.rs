//! File content for a lazy view: verified chunks, loaded ahead of the
//! reader and shared while in flight.
//!
//! A reader that goes through files in order (`tar`, `cp -r`, a build
//! reading its sources) waits for each request in turn: the server would
//! idle between them. So when a file is first read, the chunks of the files
//! after it in its directory are loaded ahead, and a file read sequentially
//! has its next chunks loaded likewise, by two loader threads of the view;
//! a request that needs a chunk being loaded waits for that load rather than
//! starting its own (as threads reading one frame of a pack do in the store).
//! Loaded-ahead chunks wait in a small cache (least recently used out); a
//! chunk read on demand is kept only if the next request of the file will
//! need it too, so files read once do not churn the cache.

use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::id::ChunkId;
use crate::store::Store;
use crate::store::cache::ByteCache;
use crate::store::chunk_list::ChunkRef;

/// Decompressed chunks kept for the requests that will need them.
const CACHE_BYTES: usize = 16 << 20;
/// Threads loading ahead (blocked on their queue when idle: no spinning).
const LOADERS: usize = 2;

/// A chunk to load ahead, for the view whose content it is.
type Job = (Arc<Content>, ChunkRef);

/// The chunks of one view.
pub(super) struct Content {
    store: Arc<Store>,
    cache: ByteCache<ChunkId>,
    /// The loaders' queue; they end when it is dropped with the view.
    queue: Mutex<std::sync::mpsc::Sender<Job>>,
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
                        let Ok((content, c)) = job else {
                            return;
                        };
                        // An error is left for the request that needs it.
                        let _ = content.chunk(c, true);
                    }
                });
        }
        Self {
            store,
            cache: ByteCache::new(CACHE_BYTES),
            queue: Mutex::new(queue),
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
        self.cache.get_or_load(c.id, keep, || self.load(c))
    }

    fn load(&self, c: ChunkRef) -> Result<Vec<u8>> {
        let bytes = self.store.read_chunk(&c.id)?;
        if bytes.len() != c.len as usize {
            return Err(Error::corrupt(
                self.store.path(),
                0,
                format!(
                    "chunk {} is {} bytes, the file's list says {}",
                    c.id,
                    bytes.len(),
                    c.len
                ),
            ));
        }
        Ok(bytes)
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
            if queue.send((Arc::clone(self), c)).is_err() {
                // No loader: the request that needs it loads it.
                return;
            }
        }
    }
}
