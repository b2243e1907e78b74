//! Where a store fetches the chunks it lacks: a [`ChunkSource`] (a registry
//! that serves an image lazily, say). A read that misses asks the source,
//! verifies what it returns and keeps it, so the next read is local.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::id::ChunkId;
use crate::store::Store;

/// Fetches chunks a store lacks, for [`Store::set_chunk_source`].
///
/// The store trusts nothing a source returns: every chunk is stored under
/// the BLAKE3 of its bytes, and a read succeeds only if the chunk it wants
/// is among them.
pub trait ChunkSource: Send + Sync {
    /// The bytes of chunk `id` and, at the source's choice, of other chunks
    /// fetched with it (a whole frame of a seekable layer), each chunk's
    /// bytes one element; empty if the source does not know `id`.
    ///
    /// # Errors
    /// Whatever fetching fails with (the registry unreachable, bytes that
    /// do not verify); the read that asked fails with it.
    fn fetch(&self, id: &ChunkId) -> Result<Vec<Vec<u8>>>;
}

/// Chunks from elsewhere
impl Store {
    /// Makes reads that miss fetch from `source` (or no longer, with
    /// `None`). Fetched chunks are stored as any `put` is, durable at the
    /// next [`Store::flush`].
    pub fn set_chunk_source(&self, source: Option<Arc<dyn ChunkSource>>) {
        *self
            .source
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = source;
    }

    /// Whether reads that miss fetch from a source.
    #[must_use]
    pub fn has_chunk_source(&self) -> bool {
        self.source
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some()
    }

    /// Chunk `id` from the source, the chunks fetched with it kept.
    pub(crate) fn fetch_from_source(&self, id: &ChunkId) -> Result<Vec<u8>> {
        let source = self
            .source
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let not_found = || Error::ChunkNotFound {
            id: *id,
            store: self.root.clone(),
        };
        let Some(source) = source else {
            return Err(not_found());
        };
        let mut wanted = None;
        for bytes in source.fetch(id)? {
            let chunk = self.put_chunk(&bytes)?;
            if chunk.id == *id {
                wanted = Some(bytes);
            }
        }
        wanted.ok_or_else(not_found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path().join("s"), &crate::StoreOptions::default()).unwrap();
        (dir, store)
    }

    struct Fixed(Vec<Vec<u8>>);

    impl ChunkSource for Fixed {
        fn fetch(&self, _: &ChunkId) -> Result<Vec<Vec<u8>>> {
            Ok(self.0.clone())
        }
    }

    #[test]
    fn a_miss_fetches_from_the_source_and_keeps_what_it_returns() {
        let (_dir, store) = new_store();
        let (a, b) = (b"chunk a".to_vec(), b"chunk b, fetched with a".to_vec());
        let (ida, idb) = (ChunkId::of(&a), ChunkId::of(&b));
        assert!(matches!(
            store.read_chunk(&ida),
            Err(Error::ChunkNotFound { .. })
        ));
        store.set_chunk_source(Some(Arc::new(Fixed(vec![a.clone(), b.clone()]))));
        assert_eq!(store.read_chunk(&ida).unwrap(), a);
        store.set_chunk_source(None);
        // Kept: both read without the source.
        assert_eq!(store.read_chunk(&idb).unwrap(), b);
        store.flush().unwrap();
        assert_eq!(store.read_chunk(&ida).unwrap(), a);
    }

    #[test]
    fn a_source_without_the_chunk_is_a_miss() {
        let (_dir, store) = new_store();
        // Returns bytes, but not those of the chunk asked for: kept (they
        // are some chunk), and the read still misses.
        store.set_chunk_source(Some(Arc::new(Fixed(vec![b"other".to_vec()]))));
        let id = ChunkId::of(b"wanted");
        assert!(matches!(
            store.read_chunk(&id),
            Err(Error::ChunkNotFound { .. })
        ));
        assert!(store.contains(&ChunkId::of(b"other")));
    }
}
