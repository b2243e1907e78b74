//! Statistics: what the store holds and what it costs on disk.

use std::collections::HashSet;

use super::{Store, layout};
use crate::error::{Error, Result};
use crate::id::{ChunkId, PackId};

/// One pack's share of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackStats {
    /// The pack.
    pub id: PackId,
    /// Chunks indexed in it (a chunk indexed by two packs, which concurrent
    /// writers avoid, counts in both).
    pub chunks: u64,
    /// Their uncompressed bytes.
    pub chunk_bytes: u64,
    /// The pack file's size on disk (frames, headers, and any dead bytes).
    pub stored_bytes: u64,
}

/// The whole store (committed packs only; call [`Store::flush`] first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Distinct chunks.
    pub chunks: u64,
    /// Their uncompressed bytes: the content after deduplication.
    pub unique_bytes: u64,
    /// Bytes of pack files on disk: after deduplication and compression.
    pub stored_bytes: u64,
    /// Bytes of index files on disk (the packs' and the combined index).
    pub index_bytes: u64,
    /// Per pack, in the order the packs were loaded.
    pub packs: Vec<PackStats>,
}

/// Statistics
impl Store {
    /// Counts chunks and bytes over every committed index.
    ///
    /// # Errors
    /// [`Error::Io`] naming a pack or index whose size cannot be read.
    pub fn stats(&self) -> Result<StoreStats> {
        self.refresh()?;
        let mut stats = StoreStats::default();
        let mut seen = HashSet::new();
        for pack in &self.committed_packs() {
            let index = pack.index()?;
            let mut p = PackStats {
                id: pack.id,
                chunks: 0,
                chunk_bytes: 0,
                stored_bytes: std::fs::metadata(&pack.path)
                    .map_err(|e| Error::io("stat", &pack.path, e))?
                    .len(),
            };
            for i in 0..index.len() {
                let len = index.location_at(i).map_or(0, |loc| u64::from(loc.len));
                p.chunks += 1;
                p.chunk_bytes += len;
                if seen.insert(index.id_at(i)) {
                    stats.chunks += 1;
                    stats.unique_bytes += len;
                }
            }
            stats.stored_bytes += p.stored_bytes;
            stats.index_bytes += std::fs::metadata(&pack.idx_path)
                .map_err(|e| Error::io("stat", &pack.idx_path, e))?
                .len();
            stats.packs.push(p);
        }
        let combined = layout::combined_index(self.path());
        match std::fs::metadata(&combined) {
            Ok(meta) => stats.index_bytes += meta.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("stat", &combined, e)),
        }
        Ok(stats)
    }
}

/// One chunk's cost
impl Store {
    /// The bytes chunk `id` takes in its pack: its share, by length, of the
    /// compressed frame it lies in (so the shares of a frame's chunks add up
    /// to the frame's stored payload). `None` if the chunk is not committed
    /// (missing, or put by this process and not yet flushed).
    #[must_use]
    pub fn chunk_stored_len(&self, id: &ChunkId) -> Option<u64> {
        let (_, location) = self.find_committed(id)?;
        let loc = location.ok()?;
        let raw = u64::from(loc.raw_len).max(1);
        Some((u64::from(loc.stored_len) * u64::from(loc.len)).div_ceil(raw))
    }
}
