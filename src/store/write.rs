//! Writing: chunk, hash, deduplicate, compress and pack content, in parallel.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, MutexGuard};

use rayon::prelude::*;

use super::{Pack, Store, index, pack::PackWriter};
use crate::digest::ChunkId;
use crate::error::{Error, Result};
use crate::fsutil::durable;
use crate::store::chunk_list::{ChunkList, ChunkRef};
use crate::store::frame;
use crate::store::index::Location;
use crate::store::lock::DirLock;

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

/// Chunks written by this process but not yet in a committed index.
#[derive(Default)]
pub(crate) struct Pending {
    pub(super) chunks: HashMap<ChunkId, PendingChunk>,
    group: Vec<(ChunkId, u32)>,
    group_bytes: Vec<u8>,
    /// Metadata objects put since the last flush: one frame at the next
    /// flush (see [`Store::put_object`]).
    objects: Vec<(ChunkId, u32)>,
    object_bytes: Vec<u8>,
    writer: Option<PackWriter>,
    /// Frame-cache number of the current writer.
    writer_seq: u64,
    /// Seals and pack rotations running outside the lock.
    in_flight: usize,
    /// Set when a write failed after some `put` had returned: the next `flush`
    /// reports it, since those puts' chunks were lost, unless every one of
    /// them has been put again meanwhile (a caller retrying its work), and
    /// commits nothing (see [`Pending::discard_all`]).
    lost: Option<LostWrite>,
}

/// Chunks whose `put` returned but whose bytes a failed write took with it.
pub(crate) struct LostWrite {
    /// The lost chunks not put again since.
    chunks: std::collections::HashSet<ChunkId>,
    /// The write that failed: its operation, path and error.
    op: &'static str,
    path: PathBuf,
    errno: Option<i32>,
    message: String,
}

impl Pending {
    /// Records that `ids` were lost by the failed write `err`.
    fn lose(&mut self, ids: impl IntoIterator<Item = ChunkId>, err: &Error) {
        let lost = self.lost.get_or_insert_with(|| {
            let (op, path, errno) = match err {
                Error::Io { op, path, source } => (*op, path.clone(), source.raw_os_error()),
                _ => ("write", PathBuf::new(), None),
            };
            LostWrite {
                chunks: std::collections::HashSet::new(),
                op,
                path,
                errno,
                message: err.to_string(),
            }
        });
        lost.chunks.extend(ids);
    }

    /// Notes that `id` was put again (or found stored): it is no longer lost.
    fn found(&mut self, id: &ChunkId) {
        if let Some(lost) = &mut self.lost {
            lost.chunks.remove(id);
        }
    }

    /// Forgets everything pending, writer included. A flush that reports lost
    /// chunks does this: what was put after them (the directories of a tree
    /// whose files they hold, say) may name them, and must not be committed;
    /// the flush's error tells the caller to put it all again.
    fn discard_all(&mut self) {
        if let Some(writer) = self.writer.take() {
            writer.discard();
        }
        self.chunks.clear();
        self.group.clear();
        self.group_bytes.clear();
        self.objects.clear();
        self.object_bytes.clear();
    }

    /// Abandons the pack being written after a write to it failed (it may end
    /// in a torn frame): deletes it and forgets its chunks, which are lost.
    fn abandon_writer(&mut self, err: &Error) {
        let Some(writer) = self.writer.take() else {
            return;
        };
        let tmp = writer.tmp_path().to_path_buf();
        let mut ids = Vec::new();
        self.chunks.retain(|id, state| {
            let keep = !matches!(state, PendingChunk::Written { path, .. } if **path == tmp);
            if !keep {
                ids.push(*id);
            }
            keep
        });
        self.lose(ids, err);
        writer.discard();
    }
}

/// Which open group [`Store::seal`] seals.
#[derive(Clone, Copy)]
enum Group {
    /// Small chunks of content.
    Chunks,
    /// Metadata objects.
    Objects,
}

/// Where a pending chunk's bytes are.
#[derive(Clone)]
pub(crate) enum PendingChunk {
    /// In the open group, at this offset of `group_bytes`.
    Grouped { offset: u32, len: u32 },
    /// A metadata object in the open object group, at this offset of
    /// `object_bytes`.
    Object { offset: u32, len: u32 },
    /// In a group being compressed.
    Sealing {
        bytes: Arc<Vec<u8>>,
        offset: u32,
        len: u32,
    },
    /// In a pack being written (or finished and about to be indexed).
    Written {
        file: Arc<File>,
        path: Arc<PathBuf>,
        seq: u64,
        loc: Location,
    },
}

impl Pending {
    /// Where a pending chunk is; the bytes of one still in the open group are
    /// copied out (they move when the group is sealed), as `Sealing`.
    pub(crate) fn lookup(&self, id: &ChunkId) -> Option<PendingChunk> {
        match self.chunks.get(id)? {
            state @ (PendingChunk::Grouped { offset, len }
            | PendingChunk::Object { offset, len }) => {
                let from = if matches!(state, PendingChunk::Object { .. }) {
                    &self.object_bytes
                } else {
                    &self.group_bytes
                };
                let bytes = from
                    .get(*offset as usize..*offset as usize + *len as usize)?
                    .to_vec();
                Some(PendingChunk::Sealing {
                    bytes: Arc::new(bytes),
                    offset: 0,
                    len: *len,
                })
            }
            other => Some(other.clone()),
        }
    }
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
        let refs = if ranges.len() > 1 {
            ranges
                .par_iter()
                .map(|r| self.put_chunk(&bytes[r.clone()]))
                .collect::<Result<Vec<_>>>()?
        } else {
            ranges
                .iter()
                .map(|r| self.put_chunk(&bytes[r.clone()]))
                .collect::<Result<Vec<_>>>()?
        };
        Ok(ChunkList::from(refs))
    }

    pub(super) fn lock_pending(&self) -> MutexGuard<'_, Pending> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
        if self.is_committed(&id) {
            return Ok(id);
        }
        let mut pending = self.lock_pending();
        if pending.chunks.contains_key(&id) || self.is_committed(&id) {
            return Ok(id);
        }
        if !pending.object_bytes.is_empty()
            && pending.object_bytes.len() + bytes.len() > OBJECT_FRAME_TARGET
        {
            self.seal(pending, Group::Objects)?;
            pending = self.lock_pending();
            if pending.chunks.contains_key(&id) || self.is_committed(&id) {
                return Ok(id);
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
        Ok(id)
    }

    /// Stores one chunk unless it is already stored.
    pub(crate) fn put_chunk(&self, data: &[u8]) -> Result<ChunkRef> {
        let id = ChunkId::of(data);
        let chunk = ChunkRef {
            id,
            len: data.len() as u32,
        };
        if self.is_committed(&id) {
            return Ok(chunk);
        }
        if data.len() < GROUP_BELOW {
            let mut pending = self.lock_pending();
            if pending.chunks.contains_key(&id) || self.is_committed(&id) {
                return Ok(chunk);
            }
            pending.found(&id);
            if pending.group_bytes.is_empty() {
                // Room for the whole group: growing it by doubling would copy
                // every chunk again.
                pending.group_bytes.reserve(GROUP_TARGET + GROUP_BELOW);
            }
            let offset = pending.group_bytes.len() as u32;
            pending.group_bytes.extend_from_slice(data);
            pending.group.push((id, chunk.len));
            pending.chunks.insert(
                id,
                PendingChunk::Grouped {
                    offset,
                    len: chunk.len,
                },
            );
            if pending.group_bytes.len() >= GROUP_TARGET {
                self.seal(pending, Group::Chunks)?;
            }
            return Ok(chunk);
        }
        if self.lock_pending().chunks.contains_key(&id) {
            return Ok(chunk);
        }
        let encoded = frame::encode(vec![(id, chunk.len)], data, self.config.zstd_level)
            .map_err(|e| Error::io("compress", self.tmp_dir(), e))?;
        let mut pending = self.lock_pending();
        if pending.chunks.contains_key(&id) || self.is_committed(&id) {
            return Ok(chunk);
        }
        pending.found(&id);
        self.append_frame(&mut pending, &encoded)?;
        self.maybe_rotate(pending);
        Ok(chunk)
    }

    /// Compresses the open group of chunks or objects outside the lock and
    /// appends it.
    fn seal(&self, mut pending: MutexGuard<'_, Pending>, which: Group) -> Result<()> {
        let (ids, bytes) = match which {
            Group::Chunks => (
                std::mem::take(&mut pending.group),
                std::mem::take(&mut pending.group_bytes),
            ),
            Group::Objects => (
                std::mem::take(&mut pending.objects),
                std::mem::take(&mut pending.object_bytes),
            ),
        };
        if ids.is_empty() {
            return Ok(());
        }
        let bytes = Arc::new(bytes);
        for (id, _) in &ids {
            if let Some(state) = pending.chunks.get_mut(id)
                && let PendingChunk::Grouped { offset, len } | PendingChunk::Object { offset, len } =
                    *state
            {
                *state = PendingChunk::Sealing {
                    bytes: Arc::clone(&bytes),
                    offset,
                    len,
                };
            }
        }
        pending.in_flight += 1;
        drop(pending);
        let encoded = match which {
            Group::Chunks => frame::encode(ids.clone(), &bytes, self.config.zstd_level),
            Group::Objects => frame::encode_objects(ids.clone(), &bytes, self.config.zstd_level),
        };
        let mut pending = self.lock_pending();
        pending.in_flight -= 1;
        let result = encoded
            .map_err(|e| Error::io("compress", self.tmp_dir(), e))
            .and_then(|encoded| self.append_frame(&mut pending, &encoded));
        if let Err(err) = result {
            for (id, _) in &ids {
                pending.chunks.remove(id);
            }
            pending.lose(ids.iter().map(|(id, _)| *id), &err);
            self.pending_changed.notify_all();
            return Err(err);
        }
        self.pending_changed.notify_all();
        self.maybe_rotate(pending);
        Ok(())
    }

    fn append_frame(&self, pending: &mut Pending, encoded: &frame::EncodedFrame) -> Result<()> {
        if pending.writer.is_none() {
            pending.writer = Some(PackWriter::create(&self.tmp_dir())?);
            pending.writer_seq = self
                .pack_seq
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let seq = pending.writer_seq;
        let Some(writer) = pending.writer.as_mut() else {
            unreachable!("the writer was just created")
        };
        let records = match writer.append(encoded) {
            Ok(records) => records,
            Err(err) => {
                pending.abandon_writer(&err);
                return Err(err);
            }
        };
        let file = Arc::clone(writer.file());
        let path = Arc::new(writer.tmp_path().to_path_buf());
        for (id, loc) in records {
            pending.chunks.insert(
                id,
                PendingChunk::Written {
                    file: Arc::clone(&file),
                    path: Arc::clone(&path),
                    seq,
                    loc,
                },
            );
        }
        Ok(())
    }

    /// Finishes the current pack if it has grown past the target size.
    fn maybe_rotate(&self, mut pending: MutexGuard<'_, Pending>) {
        if pending
            .writer
            .as_ref()
            .is_some_and(|w| w.len() >= PACK_TARGET)
        {
            let writer = pending.writer.take();
            pending.in_flight += 1;
            drop(pending);
            let result = writer.map_or(Ok(()), |w| self.commit_pack(w));
            let mut pending = self.lock_pending();
            pending.in_flight -= 1;
            if let Err((err, ids)) = result {
                pending.lose(ids, &err);
            }
            self.pending_changed.notify_all();
        }
    }

    /// Makes everything put so far durable: seals the open group, waits for
    /// compression in flight, fsyncs and renames the pack, then writes its index.
    ///
    /// # Errors
    /// [`Error::Io`] naming the pack or index that could not be written. After
    /// an error, content put since the last successful flush may be lost from
    /// the store and must be put again. When the error is that a write failed
    /// after the `put` of its chunks had returned, nothing put since the last
    /// successful flush is committed, then or later: it may refer to the lost
    /// chunks.
    pub fn flush(&self) -> Result<()> {
        let mut pending = self.lock_pending();
        if !pending.group.is_empty() {
            self.seal(pending, Group::Chunks)?;
            pending = self.lock_pending();
        }
        if !pending.objects.is_empty() {
            self.seal(pending, Group::Objects)?;
            pending = self.lock_pending();
        }
        while pending.in_flight > 0 {
            pending = self
                .pending_changed
                .wait(pending)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        if !pending.group.is_empty() || !pending.objects.is_empty() {
            drop(pending);
            return self.flush();
        }
        if let Some(mut lost) = pending.lost.take() {
            lost.chunks.retain(|id| !self.is_committed(id));
            if !lost.chunks.is_empty() {
                let source = match lost.errno {
                    Some(errno) => std::io::Error::from_raw_os_error(errno),
                    None => std::io::Error::other(lost.message),
                };
                pending.discard_all();
                return Err(Error::io(
                    if lost.op == "write" {
                        "write (an earlier write failed, so content put since the last flush was not stored)"
                    } else {
                        lost.op
                    },
                    lost.path,
                    source,
                ));
            }
        }
        let Some(writer) = pending.writer.take() else {
            return Ok(());
        };
        pending.in_flight += 1;
        drop(pending);
        let result = self.commit_pack(writer).map_err(|(err, _)| err);
        let mut pending = self.lock_pending();
        pending.in_flight -= 1;
        self.pending_changed.notify_all();
        drop(pending);
        result
    }

    /// Finishes `writer`'s pack and writes its index, leaving out chunks that
    /// another process indexed meanwhile; then forgets its pending chunks. On
    /// failure, gives the chunks that were lost with the error.
    fn commit_pack(&self, writer: PackWriter) -> Result<(), (Error, Vec<ChunkId>)> {
        if writer.is_empty() {
            writer.discard();
            return Ok(());
        }
        let tmp_path = writer.tmp_path().to_path_buf();
        let result = self.index_pack(writer);
        // Whether it worked or not, these chunks are no longer pending: they are
        // committed, or lost (and then put again by whoever needs them).
        let mut pending = self.lock_pending();
        let mut ids = Vec::new();
        pending.chunks.retain(|id, state| {
            let keep = !matches!(state, PendingChunk::Written { path, .. } if **path == tmp_path);
            if !keep {
                ids.push(*id);
            }
            keep
        });
        result.map_err(|err| (err, ids))
    }

    fn index_pack(&self, writer: PackWriter) -> Result<()> {
        let tmp_path = writer.tmp_path().to_path_buf();
        let finished = writer.finish(&self.packs_dir());
        let (id, pack_path, mut records) = match finished {
            Ok(done) => done,
            Err(err) => {
                let _ = std::fs::remove_file(&tmp_path);
                return Err(err);
            }
        };
        let _guard = DirLock::exclusive(&self.packs_dir())?;
        self.refresh()?;
        records.retain(|(id, _)| !self.is_committed(id));
        if records.is_empty() {
            // Every chunk was indexed by another process meanwhile. The pack is
            // dead weight, unless it is byte for byte a pack someone indexed.
            let shared = self
                .committed
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .names
                .contains(&id);
            if !shared {
                let _ = std::fs::remove_file(&pack_path);
            }
            return Ok(());
        }
        let idx_bytes = index::encode(&mut records);
        let idx_path = self.packs_dir().join(super::layout::index_file(&id));
        durable::write_atomic(&self.tmp_dir(), &idx_path, &idx_bytes)?;
        let pack: Pack = self.load_pack(id)?;
        let mut committed = self
            .committed
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if committed.names.insert(id) {
            committed.packs.push(Arc::new(pack));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flush_that_reports_lost_chunks_commits_nothing_put_since() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let store = Store::create(&path, &crate::StoreOptions::default()).unwrap();
        let before = store.put_bytes(b"put before the loss").unwrap();
        let lost = b"a chunk whose write failed after its put returned";
        let id = ChunkId::of(lost);
        let err = Error::io(
            "write",
            "/s/tmp/pack-1",
            std::io::Error::from_raw_os_error(28),
        );
        store.lock_pending().lose([id], &err);
        // An object put after the loss, which might name the lost chunk.
        let object = store.put_object(id.as_bytes()).unwrap();
        let err = store.flush().unwrap_err();
        assert!(err.to_string().contains("/s/tmp/pack-1"), "{err}");
        // Reported once; and nothing of it is committed, then or later.
        store.flush().unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        assert!(!store.contains(&object));
        assert!(!store.contains(&before.chunks()[0].id));
        assert!(!store.contains(&id));
        // Put again, all of it is stored.
        store.put_bytes(b"put before the loss").unwrap();
        store.put_bytes(lost).unwrap();
        store.put_object(id.as_bytes()).unwrap();
        store.flush().unwrap();
        let store = Store::open(&path).unwrap();
        assert!(store.contains(&object) && store.contains(&id));
        assert!(store.contains(&before.chunks()[0].id));
    }

    #[test]
    fn an_object_larger_than_a_frame_is_too_large() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path().join("s"), &crate::StoreOptions::default()).unwrap();
        let big = vec![0u8; frame::MAX_FRAME_RAW as usize + 1];
        let err = store.put_object(&big).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::TooLarge, "{err}");
        let err = store.put_object(&[]).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidInput, "{err}");
    }
}
