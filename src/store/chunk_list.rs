//! The chunk list of a piece of content: what `put` returns and readers take.

use serde::{Deserialize, Serialize};

use crate::id::ChunkId;

/// One chunk of some content: its id and its uncompressed length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChunkRef {
    /// BLAKE3 of the chunk's bytes.
    pub id: ChunkId,
    /// The chunk's length in bytes (at most the chunker's maximum, 256 KiB).
    pub len: u32,
}

/// The chunks of one piece of content, in order. Concatenating their bytes gives
/// the content back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChunkList {
    chunks: Vec<ChunkRef>,
}

impl ChunkList {
    /// An empty list (the content of an empty file).
    #[must_use]
    pub const fn new() -> Self {
        Self { chunks: Vec::new() }
    }

    /// The chunks, in order.
    #[must_use]
    pub fn chunks(&self) -> &[ChunkRef] {
        &self.chunks
    }

    /// Where each chunk starts in the content, in order.
    pub(crate) fn starts(&self) -> Vec<u64> {
        let mut at = 0u64;
        self.chunks
            .iter()
            .map(|c| {
                let start = at;
                at += u64::from(c.len);
                start
            })
            .collect()
    }

    /// The total length of the content in bytes.
    #[must_use]
    pub fn content_len(&self) -> u64 {
        self.chunks.iter().map(|c| u64::from(c.len)).sum()
    }

    /// Whether the content is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Appends one chunk.
    pub fn push(&mut self, chunk: ChunkRef) {
        self.chunks.push(chunk);
    }

    /// Appends every chunk of `other`.
    pub fn extend_from(&mut self, other: &ChunkList) {
        self.chunks.extend_from_slice(&other.chunks);
    }
}

impl From<Vec<ChunkRef>> for ChunkList {
    fn from(chunks: Vec<ChunkRef>) -> Self {
        Self { chunks }
    }
}

impl FromIterator<ChunkRef> for ChunkList {
    fn from_iter<I: IntoIterator<Item = ChunkRef>>(iter: I) -> Self {
        Self {
            chunks: iter.into_iter().collect(),
        }
    }
}
