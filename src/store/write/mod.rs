//! Writing: chunk, hash, deduplicate, compress and pack content, in parallel.
//!
//! # Parts
//!
//! This file holds the entry points, the `put_*` methods, which cut content
//! into chunks and hand each to [`Store::put_chunk`] (or a metadata object
//! to [`Store::put_object`]), and the sizes that shape frames and packs.
//! Below them:
//! - `pending`: what is written but not yet committed ([`Pending`]): the
//!   open groups of small chunks, sealed into frames, and the pack being
//!   written, rotated when it grows past [`PACK_TARGET`];
//! - `flush`: [`Store::flush`], which seals what is open and commits the
//!   packs and their indexes.

mod flush;
mod pending;

#[cfg(test)]
mod tests;

pub(crate) use self::pending::{Pending, PendingChunk};

use std::fs::File;
use std::io::Read;
use std::path::Path;

use rayon::prelude::*;

use self::pending::Group;
use super::Store;
use crate::error::{Error, Result};
use crate::id::ChunkId;
use crate::store::chunk_list::{ChunkList, ChunkRef};
use crate::store::frame;

/// Chunks shorter than this are grouped with others into shared frames:
/// with the store's chunker (at most 256 KiB a chunk) that is every chunk.
/// A chunk as large as half a frame would gain little from company and make
/// its neighbours' reads decode it too, so it keeps a frame of its own.
/// Grouping only chunks under 128 KiB, as before, stored four Debian root
/// filesystems (`scripts/compare-peers.sh --rootfs`) in 1.5 MB more and a
/// Linux source tree in 5.7 MB more.
pub(crate) const GROUP_BELOW: usize = 1 << 20;
/// A shared frame is sealed once its chunks add up to this much: zstd's
/// window at level 3, so every chunk can match against any other in its
/// frame. Four Debian root filesystems stored 257.3 MB with 512 KiB frames,
/// 252.6 MB with 1 MiB, 250.2 MB with 2 MiB, at the same speed; a cold read
/// of a small chunk decodes up to the whole frame (about 2 ms here), a warm
/// one is served from the frame cache.
pub(crate) const GROUP_TARGET: usize = 2 << 20;
/// Metadata objects (a tree's directories, layers, images) share frames of
/// up to this much (one larger object has a frame of its own): reading one
/// small object, an image say, decodes at most this much, however large the
/// tree stored beside it.
pub(crate) const OBJECT_FRAME_TARGET: usize = 1 << 20;
/// A pack is finished and indexed once it grows past this.
pub(crate) const PACK_TARGET: u64 = 256 << 20;
/// `put_reader` reads and chunks this much at a time (bounds its memory).
const READ_BLOCK: usize = 8 << 20;
/// `put_bytes` on a pool of several threads cuts this much at a time and
/// hands it to the pool, so that cutting overlaps hashing and compressing.
const PIPELINE_BATCH: usize = 4 << 20;

/// The size of the read buffer each thread keeps between calls of
/// [`Store::put_reader`] (a larger one, grown for a large file, is freed).
const READ_BUFFER_KEPT: usize = 256 << 10;

thread_local! {
    /// [`Store::put_reader`]'s buffer on this thread (empty while in use: a
    /// nested call, on a thread that stole work while waiting, gets its own).
    static READ_BUFFER: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Writing
impl Store {
    /// Stores `bytes`; returns their chunk list. Chunks already in the store are
    /// not stored again. The chunks of one call are hashed and compressed in
    /// parallel (rayon).
    ///
    /// # Errors
    /// [`Error::Io`] naming the pack being written (a full disk, for example).
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<ChunkList> {
        if bytes.len() <= PIPELINE_BATCH || rayon::current_num_threads() == 1 {
            let (ranges, _) = self.chunker.split(bytes, true);
            return self.put_ranges(bytes, &ranges);
        }
        // Cutting is sequential (each boundary depends on the one before), so
        // cut a batch at a time on this thread and hand each batch to the pool
        // to hash, compress and pack while the next one is cut. Cutting all of
        // the input first would leave the other threads idle meanwhile.
        let done: std::sync::Mutex<Vec<(usize, Result<ChunkList>)>> =
            std::sync::Mutex::new(Vec::new());
        rayon::scope(|scope| {
            let mut start = 0;
            let mut batch = 0;
            while start < bytes.len() {
                let mut ranges = Vec::new();
                let batch_start = start;
                while start < bytes.len() && start - batch_start < PIPELINE_BATCH {
                    let len = self.chunker.cut(&bytes[start..]);
                    ranges.push(start..start + len);
                    start += len;
                }
                let done = &done;
                scope.spawn(move |_| {
                    let list = self.put_ranges(bytes, &ranges);
                    done.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push((batch, list));
                });
                batch += 1;
            }
        });
        let mut done = done
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        done.sort_unstable_by_key(|(batch, _)| *batch);
        let mut list = ChunkList::new();
        for (_, part) in done {
            list.extend_from(&part?);
        }
        Ok(list)
    }

    /// Stores everything `reader` yields, reading a few megabytes at a time, so
    /// memory stays bounded whatever the length. `what` names the source in
    /// error messages.
    ///
    /// # Errors
    /// [`Error::Io`] naming `what` if reading fails, or the pack if writing does.
    pub fn put_reader(&self, reader: impl Read, what: &Path) -> Result<ChunkList> {
        // A scan reads tens of thousands of small files on each thread: one
        // buffer per thread for them, not one grown from nothing per file.
        let mut buf = READ_BUFFER.take();
        let result = self.put_reader_into(&mut buf, reader, what);
        if buf.len() <= READ_BUFFER_KEPT {
            READ_BUFFER.set(buf);
        }
        result
    }

    /// [`Store::put_reader`] through `buf`, which it grows as the content
    /// needs, up to a block, and reads into without clearing: a small file
    /// costs one `read` for its bytes and one to see its end.
    fn put_reader_into(
        &self,
        buf: &mut Vec<u8>,
        mut reader: impl Read,
        what: &Path,
    ) -> Result<ChunkList> {
        let block = READ_BLOCK + self.chunker.max_size();
        if buf.len() < READ_BUFFER_KEPT {
            buf.resize(READ_BUFFER_KEPT, 0);
        }
        let mut list = ChunkList::new();
        let mut filled = 0;
        loop {
            let mut at_end = false;
            while filled < block {
                if filled == buf.len() {
                    buf.resize((2 * buf.len()).min(block), 0);
                }
                match reader.read(&mut buf[filled..]) {
                    Ok(0) => {
                        at_end = true;
                        break;
                    }
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(Error::io("read", what, e)),
                }
            }
            let (ranges, carry) = self.chunker.split(&buf[..filled], at_end);
            list.extend_from(&self.put_ranges(&buf[..filled], &ranges)?);
            if at_end {
                return Ok(list);
            }
            // The bytes after the last cut start the next block.
            buf.copy_within(carry..filled, 0);
            filled -= carry;
        }
    }

    /// Stores the contents of the file at `path`.
    ///
    /// # Errors
    /// [`Error::Io`] naming `path` if it cannot be read, or the pack if writing fails.
    pub fn put_file(&self, path: impl AsRef<Path>) -> Result<ChunkList> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
        self.put_reader(file, path)
    }

    fn put_ranges(&self, bytes: &[u8], ranges: &[std::ops::Range<usize>]) -> Result<ChunkList> {
        let generation = self.sync_gc_state()?;
        let put = |r: &std::ops::Range<usize>| self.store_chunk(&bytes[r.clone()]);
        let refs = if ranges.len() > 1 {
            ranges.par_iter().map(put).collect::<Result<Vec<_>>>()?
        } else {
            ranges.iter().map(put).collect::<Result<Vec<_>>>()?
        };
        let found: Vec<&[u8]> = refs
            .iter()
            .zip(ranges)
            .filter(|((_, found), _)| *found)
            .map(|(_, r)| &bytes[r.clone()])
            .collect();
        self.settle(generation, &found, false)?;
        Ok(ChunkList::from(
            refs.into_iter().map(|(chunk, _)| chunk).collect::<Vec<_>>(),
        ))
    }

    /// Records in the lease the chunks (or objects, with `objects`) that a
    /// put found already committed, then, if a gc changed phase since
    /// `generation` (the view's when the put began), stores again those that
    /// gc may delete: see `store::lease` for why this is enough.
    fn settle(&self, generation: u64, found: &[&[u8]], objects: bool) -> Result<()> {
        if found.is_empty() {
            return Ok(());
        }
        self.lease_ids(found.iter().map(|data| ChunkId::of(data)))?;
        if self.sync_gc_state()? == generation {
            return Ok(());
        }
        for data in found {
            if objects {
                self.store_object(data)?;
            } else {
                self.store_chunk(data)?;
            }
        }
        Ok(())
    }

    /// Stores a metadata object (an encoded snapshot, layer or image) as one
    /// chunk, not cut by the chunker, so that its id is the BLAKE3 of its bytes
    /// and every read of it is verified like a chunk's.
    ///
    /// The objects put between two flushes share frames of up to
    /// [`OBJECT_FRAME_TARGET`] (a larger object has one of its own),
    /// compressed with a window spanning the frame and long-distance
    /// matching.
    ///
    /// # Errors
    /// [`Error::TooLarge`] if the object is larger than a frame may be
    /// (64 MiB); [`Error::InvalidArgument`] if it is empty; otherwise as
    /// [`Store::put_bytes`].
    pub(crate) fn put_object(&self, bytes: &[u8]) -> Result<ChunkId> {
        let generation = self.sync_gc_state()?;
        let (id, found) = self.store_object(bytes)?;
        if found {
            self.settle(generation, &[bytes], true)?;
        }
        Ok(id)
    }

    /// [`Store::put_object`] without the lease: the id, and whether it was
    /// found committed.
    fn store_object(&self, bytes: &[u8]) -> Result<(ChunkId, bool)> {
        if bytes.len() > frame::MAX_FRAME_RAW as usize {
            return Err(Error::TooLarge {
                what: "metadata object",
                size: bytes.len() as u64,
                max: u64::from(frame::MAX_FRAME_RAW),
            });
        }
        if bytes.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "a metadata object of 0 bytes is outside 1..={} bytes",
                frame::MAX_FRAME_RAW
            )));
        }
        let id = ChunkId::of(bytes);
        if self.is_committed_to_stay(&id) {
            return Ok((id, true));
        }
        let mut pending = self.lock_pending();
        if pending.chunks.contains_key(&id) {
            return Ok((id, false));
        }
        if self.is_committed_to_stay(&id) {
            return Ok((id, true));
        }
        if !pending.object_bytes.is_empty()
            && pending.object_bytes.len() + bytes.len() > OBJECT_FRAME_TARGET
        {
            self.seal(pending, Group::Objects)?;
            pending = self.lock_pending();
            if pending.chunks.contains_key(&id) {
                return Ok((id, false));
            }
            if self.is_committed_to_stay(&id) {
                return Ok((id, true));
            }
        }
        pending.found(&id);
        let offset = pending.object_bytes.len() as u32;
        let len = bytes.len() as u32;
        pending.object_bytes.extend_from_slice(bytes);
        pending.objects.push((id, len));
        pending
            .chunks
            .insert(id, PendingChunk::Object { offset, len });
        Ok((id, false))
    }

    /// Stores one chunk unless it is already stored.
    pub(crate) fn put_chunk(&self, data: &[u8]) -> Result<ChunkRef> {
        let generation = self.sync_gc_state()?;
        let (chunk, found) = self.store_chunk(data)?;
        if found {
            self.settle(generation, &[data], false)?;
        }
        Ok(chunk)
    }

    /// [`Store::put_chunk`] without the lease: the chunk, and whether it was
    /// found committed (then the caller records it, see [`Store::settle`]).
    fn store_chunk(&self, data: &[u8]) -> Result<(ChunkRef, bool)> {
        let id = ChunkId::of(data);
        let chunk = ChunkRef {
            id,
            len: data.len() as u32,
        };
        if self.is_committed_to_stay(&id) {
            return Ok((chunk, true));
        }
        if data.len() < GROUP_BELOW {
            let mut pending = self.lock_pending();
            if pending.chunks.contains_key(&id) {
                return Ok((chunk, false));
            }
            if self.is_committed_to_stay(&id) {
                return Ok((chunk, true));
            }
            pending.found(&id);
            let lane = pending::lane();
            let group = pending.group_mut(lane);
            if group.bytes.is_empty() {
                // Room for the whole group: growing it by doubling would copy
                // every chunk again.
                group.bytes.reserve(GROUP_TARGET + GROUP_BELOW);
            }
            let offset = group.bytes.len() as u32;
            group.bytes.extend_from_slice(data);
            group.chunks.push((id, chunk.len));
            let full = group.bytes.len() >= GROUP_TARGET;
            pending.chunks.insert(
                id,
                PendingChunk::Grouped {
                    lane,
                    offset,
                    len: chunk.len,
                },
            );
            if full {
                self.seal(pending, Group::Chunks(lane))?;
            }
            return Ok((chunk, false));
        }
        if self.lock_pending().chunks.contains_key(&id) {
            return Ok((chunk, false));
        }
        let encoded = frame::encode(vec![(id, chunk.len)], data, self.config.zstd_level)
            .map_err(|e| Error::io("compress", self.tmp_dir(), e))?;
        let mut pending = self.lock_pending();
        if pending.chunks.contains_key(&id) {
            return Ok((chunk, false));
        }
        if self.is_committed_to_stay(&id) {
            return Ok((chunk, true));
        }
        pending.found(&id);
        self.append_frame(&mut pending, &encoded)?;
        self.maybe_rotate(pending);
        Ok((chunk, false))
    }
}
