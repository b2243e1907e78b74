//! Reading: verified chunk reads, and a `Read + Seek` reader over a chunk list.

use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use super::write::PendingChunk;
use super::{Pack, Store};
use crate::error::{Error, Result};
use crate::id::ChunkId;
use crate::store::chunk_list::{ChunkList, ChunkRef};
use crate::store::index::Location;
use crate::store::pack;

/// Reading
impl Store {
    /// Whether the store holds chunk `id` (committed or written by this process).
    #[must_use]
    pub fn contains(&self, id: &ChunkId) -> bool {
        self.is_committed(id) || self.lock_pending().chunks.contains_key(id)
    }

    /// The bytes of chunk `id`, verified against the id.
    ///
    /// # Errors
    /// [`Error::ChunkNotFound`] if no index names it; [`Error::Corrupt`] naming
    /// the pack and offset if the stored bytes do not hash to `id` or cannot be
    /// decoded; [`Error::Io`] naming the pack if it cannot be read.
    pub fn read_chunk(&self, id: &ChunkId) -> Result<Vec<u8>> {
        let pending = self.lock_pending().lookup(id);
        let (bytes, path, offset) = match pending {
            Some(PendingChunk::Grouped { .. } | PendingChunk::Object { .. }) => {
                unreachable!("lookup copies grouped chunks out")
            }
            Some(PendingChunk::Sealing { bytes, offset, len }) => {
                let slice = bytes
                    .get(offset as usize..offset as usize + len as usize)
                    .ok_or_else(|| Error::corrupt(self.tmp_dir(), 0, "pending group is short"))?;
                (slice.to_vec(), self.tmp_dir(), 0)
            }
            Some(PendingChunk::Written {
                file,
                path,
                seq,
                loc,
            }) => {
                let bytes = self.read_located(&file, &path, seq, &loc)?;
                (bytes, path.to_path_buf(), loc.payload_offset)
            }
            None => {
                return match self.read_committed_chunk(id) {
                    Err(Error::ChunkNotFound { .. }) if self.has_chunk_source() => {
                        self.fetch_from_source(id)
                    }
                    other => other,
                };
            }
        };
        if ChunkId::of(&bytes) != *id {
            return Err(Error::corrupt(
                path,
                offset,
                format!("chunk {id} does not match its bytes"),
            ));
        }
        Ok(bytes)
    }

    /// Committed chunk `id`, verified. A read that fails (the chunk is not
    /// found, its pack is gone, its bytes do not verify) tries again once the
    /// view is refreshed, since another process may have consolidated its
    /// pack; then through the packs' own indexes, since the combined index
    /// may be damaged (which is then no longer used).
    fn read_committed_chunk(&self, id: &ChunkId) -> Result<Vec<u8>> {
        let not_found = || Error::ChunkNotFound {
            id: *id,
            store: self.root.clone(),
        };
        let first = match self.find_committed(id) {
            Some(found) => self.read_found(id, found),
            None => Err(not_found()),
        };
        let err = match first {
            Ok(bytes) => return Ok(bytes),
            Err(err) => err,
        };
        self.refresh()?;
        let err = match self
            .find_committed(id)
            .map(|found| self.read_found(id, found))
        {
            Some(Ok(bytes)) => return Ok(bytes),
            Some(Err(again)) => again,
            None => err,
        };
        if self.read_committed().combined.is_some()
            && let Some(found) = self.find_in_pack_indexes(id)
            && let Ok(bytes) = self.read_found(id, found)
        {
            self.distrust_combined();
            return Ok(bytes);
        }
        Err(err)
    }

    /// Chunk `id` of `pack` at `loc`, verified.
    fn read_found(
        &self,
        id: &ChunkId,
        (pack, loc): (Arc<Pack>, Result<Location>),
    ) -> Result<Vec<u8>> {
        let loc = loc?;
        let (file, len) = pack.file()?;
        loc.check(*len).map_err(|reason| {
            Error::corrupt(
                &pack.path,
                loc.payload_offset,
                format!(
                    "the entry for {id} in '{}' does not fit: {reason}",
                    pack.idx_path.display()
                ),
            )
        })?;
        let bytes = self.read_located(file, &pack.path, pack.seq, &loc)?;
        if ChunkId::of(&bytes) != *id {
            return Err(Error::corrupt(
                &pack.path,
                loc.payload_offset,
                format!("chunk {id} does not match its bytes"),
            ));
        }
        Ok(bytes)
    }

    /// The chunk at `loc` in `file`, not yet verified. Frames shared by several
    /// chunks go through the frame cache.
    fn read_located(
        &self,
        file: &std::fs::File,
        path: &Path,
        seq: u64,
        loc: &Location,
    ) -> Result<Vec<u8>> {
        let start = loc.offset_in_frame as usize;
        let end = start + loc.len as usize;
        if loc.frame_chunks == 1 {
            if loc.codec == crate::store::frame::Codec::Raw {
                return pack::read_raw_chunk(file, path, loc);
            }
            let mut payload = pack::read_payload(file, path, loc)?;
            if start != 0 || end > payload.len() {
                return payload.get(start..end).map(<[u8]>::to_vec).ok_or_else(|| {
                    Error::corrupt(path, loc.payload_offset, "chunk outside its frame")
                });
            }
            // The usual case, a chunk that is its frame's whole payload: hand
            // the decompressed buffer over rather than copying it.
            payload.truncate(end);
            return Ok(payload);
        }
        let key = (seq, loc.payload_offset);
        // Threads reading chunks of one frame at once decompress it once.
        let frame = self
            .cache
            .get_or_load(key, true, || pack::read_payload(file, path, loc))?;
        frame
            .get(start..end)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| Error::corrupt(path, loc.payload_offset, "chunk outside its frame"))
    }

    /// Every chunk id (of this store's committed indexes and this process's
    /// pending chunks) whose hex form starts with `hex_prefix` (lowercase, at
    /// least 2 digits), sorted and without repeats.
    pub(crate) fn chunk_ids_with_prefix(&self, hex_prefix: &str) -> Vec<ChunkId> {
        let matches = |id: &ChunkId| id.to_hex().starts_with(hex_prefix);
        let mut out: Vec<ChunkId> = self
            .lock_pending()
            .chunks
            .keys()
            .filter(|id| matches(id))
            .copied()
            .collect();
        let first = u8::from_str_radix(hex_prefix.get(..2).unwrap_or("00"), 16).unwrap_or(0);
        let committed = self.read_committed();
        if let Some(combined) = &committed.combined {
            for i in combined.index.first_byte_range(first) {
                let id = combined.index.id_at(i);
                if matches(&id) {
                    out.push(id);
                }
            }
        }
        for pack in &committed.recent {
            let Ok(index) = pack.index() else { continue };
            for i in index.first_byte_range(first) {
                let id = index.id_at(i);
                if matches(&id) {
                    out.push(id);
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// A key that orders chunks as they lie in the store (pack, then frame), so
    /// that reading many chunks in key order decompresses each shared frame
    /// once instead of once per chunk. Chunks not yet committed sort last.
    pub(crate) fn locality(&self, id: &ChunkId) -> (u64, u64) {
        match self.find_committed(id) {
            Some((pack, Ok(loc))) => (pack.seq, loc.payload_offset),
            _ => (u64::MAX, 0),
        }
    }

    /// A reader of the content whose chunk list is `list`.
    #[must_use]
    pub fn reader(&self, list: &ChunkList) -> ChunkReader<'_> {
        let starts = list.starts();
        let total = list.content_len();
        ChunkReader {
            store: self,
            list: list.clone(),
            starts,
            len: total,
            pos: 0,
            current: None,
        }
    }

    /// All of the content of `list`, verified.
    ///
    /// # Errors
    /// As [`Store::read_chunk`].
    pub fn read_all(&self, list: &ChunkList) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(usize::try_from(list.content_len()).unwrap_or(0));
        for chunk in list.chunks() {
            out.extend_from_slice(&self.read_listed_chunk(*chunk)?);
        }
        Ok(out)
    }

    /// The bytes of the chunk a list names, verified against its id and
    /// checked against the length the list gives it.
    ///
    /// # Errors
    /// As [`Store::read_chunk`]; [`Error::Corrupt`] if the length differs.
    pub(crate) fn read_listed_chunk(&self, chunk: ChunkRef) -> Result<Vec<u8>> {
        let bytes = self.read_chunk(&chunk.id)?;
        if bytes.len() != chunk.len as usize {
            return Err(Error::corrupt(
                self.path(),
                0,
                format!(
                    "chunk {} is {} bytes, the list says {}",
                    chunk.id,
                    bytes.len(),
                    chunk.len
                ),
            ));
        }
        Ok(bytes)
    }
}

/// Reads the content of a chunk list with [`Read`] and [`Seek`]. Seeking is
/// random access: reading at an offset loads only the chunk that holds it.
/// Every chunk is verified before any of its bytes are returned; errors are
/// `io::Error`s wrapping the crate's [`Error`].
pub struct ChunkReader<'a> {
    store: &'a Store,
    list: ChunkList,
    starts: Vec<u64>,
    len: u64,
    pos: u64,
    current: Option<(usize, Vec<u8>)>,
}

impl ChunkReader<'_> {
    /// The content's total length.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the content is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Read for ChunkReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.pos >= self.len {
            return Ok(0);
        }
        let i = self.starts.partition_point(|&s| s <= self.pos) - 1;
        if self.current.as_ref().is_none_or(|(c, _)| *c != i) {
            let bytes = self.store.read_listed_chunk(self.list.chunks()[i])?;
            self.current = Some((i, bytes));
        }
        let Some((_, bytes)) = &self.current else {
            return Ok(0);
        };
        let within = (self.pos - self.starts[i]) as usize;
        let n = buf.len().min(bytes.len() - within);
        buf[..n].copy_from_slice(&bytes[within..within + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for ChunkReader<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let target = target.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the content",
            )
        })?;
        self.pos = target;
        Ok(target)
    }
}
