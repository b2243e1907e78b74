//! What is written but not yet committed: the chunks pending in this
//! process, the open groups of small chunks and their sealing into frames,
//! the pack being written and its rotation, and what a failed write lost.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, MutexGuard};

use super::PACK_TARGET;
use crate::error::{Error, Result};
use crate::id::ChunkId;
use crate::store::frame;
use crate::store::index::Location;
use crate::store::{Store, pack::PackWriter};

/// Chunks written by this process but not yet in a committed index.
#[derive(Default)]
pub(crate) struct Pending {
    pub(in crate::store) chunks: HashMap<ChunkId, PendingChunk>,
    /// The open groups of small chunks, one per writing thread (its
    /// [`lane`]): a frame holds what one thread stored one after another
    /// (neighbouring files of one part of a scanned tree), not the
    /// interleaving of every thread's work, so that a reader going through
    /// the tree in order decompresses each frame about once.
    pub(super) groups: Vec<OpenGroup>,
    /// Metadata objects put since the last flush: one frame at the next
    /// flush (see [`Store::put_object`]).
    pub(super) objects: Vec<(ChunkId, u32)>,
    pub(super) object_bytes: Vec<u8>,
    pub(super) writer: Option<PackWriter>,
    /// Frame-cache number of the current writer.
    pub(super) writer_seq: u64,
    /// Seals and pack rotations running outside the lock.
    pub(super) in_flight: usize,
    /// Set when a write failed after some `put` had returned: the next `flush`
    /// reports it, since those puts' chunks were lost, unless every one of
    /// them has been put again meanwhile (a caller retrying its work), and
    /// commits nothing (see [`Pending::discard_all`]).
    pub(super) lost: Option<LostWrite>,
}

/// One open group of small chunks: their ids and lengths, and their bytes
/// one after another.
#[derive(Default)]
pub(super) struct OpenGroup {
    pub(super) chunks: Vec<(ChunkId, u32)>,
    pub(super) bytes: Vec<u8>,
}

/// The open group the calling thread fills: one per thread of the rayon
/// pool it runs on (by index), and one for every other thread.
pub(super) fn lane() -> usize {
    rayon::current_thread_index().map_or(0, |i| i + 1)
}

impl Pending {
    /// The calling thread's open group (created on first use).
    pub(super) fn group_mut(&mut self, lane: usize) -> &mut OpenGroup {
        if self.groups.len() <= lane {
            self.groups.resize_with(lane + 1, OpenGroup::default);
        }
        &mut self.groups[lane]
    }

    /// The lanes whose group holds chunks.
    pub(super) fn open_lanes(&self) -> Vec<usize> {
        (0..self.groups.len())
            .filter(|&lane| !self.groups[lane].chunks.is_empty())
            .collect()
    }
}

/// Chunks whose `put` returned but whose bytes a failed write took with it.
pub(crate) struct LostWrite {
    /// The lost chunks not put again since.
    pub(super) chunks: std::collections::HashSet<ChunkId>,
    /// The write that failed: its operation, path and error.
    pub(super) op: &'static str,
    pub(super) path: PathBuf,
    pub(super) errno: Option<i32>,
    pub(super) message: String,
}

impl Pending {
    /// Records that `ids` were lost by the failed write `err`.
    pub(super) fn lose(&mut self, ids: impl IntoIterator<Item = ChunkId>, err: &Error) {
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
    pub(super) fn found(&mut self, id: &ChunkId) {
        if let Some(lost) = &mut self.lost {
            lost.chunks.remove(id);
        }
    }

    /// Forgets everything pending, writer included. A flush that reports lost
    /// chunks does this: what was put after them (the directories of a tree
    /// whose files they hold, say) may name them, and must not be committed;
    /// the flush's error tells the caller to put it all again.
    pub(super) fn discard_all(&mut self) {
        if let Some(writer) = self.writer.take() {
            writer.discard();
        }
        self.chunks.clear();
        self.groups.clear();
        self.objects.clear();
        self.object_bytes.clear();
    }

    /// Abandons the pack being written after a write to it failed (it may end
    /// in a torn frame): deletes it and forgets its chunks, which are lost.
    pub(super) fn abandon_writer(&mut self, err: &Error) {
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
pub(super) enum Group {
    /// Small chunks of content: the open group of this lane.
    Chunks(usize),
    /// Metadata objects.
    Objects,
}

/// Where a pending chunk's bytes are.
#[derive(Clone)]
pub(crate) enum PendingChunk {
    /// In the open group of this lane, at this offset of its bytes.
    Grouped { lane: usize, offset: u32, len: u32 },
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
            state @ (PendingChunk::Grouped { offset, len, .. }
            | PendingChunk::Object { offset, len }) => {
                let from = match state {
                    PendingChunk::Grouped { lane, .. } => &self.groups.get(*lane)?.bytes,
                    _ => &self.object_bytes,
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

/// Pending frames and packs
impl Store {
    pub(in crate::store) fn lock_pending(&self) -> MutexGuard<'_, Pending> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Compresses the open group of chunks or objects outside the lock and
    /// appends it.
    pub(super) fn seal(&self, mut pending: MutexGuard<'_, Pending>, which: Group) -> Result<()> {
        let (ids, bytes) = match which {
            Group::Chunks(lane) => {
                let group = std::mem::take(pending.group_mut(lane));
                (group.chunks, group.bytes)
            }
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
                && let PendingChunk::Grouped { offset, len, .. }
                | PendingChunk::Object { offset, len } = *state
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
            Group::Chunks(_) => frame::encode(ids.clone(), &bytes, self.config.zstd_level),
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

    pub(super) fn append_frame(
        &self,
        pending: &mut Pending,
        encoded: &frame::EncodedFrame,
    ) -> Result<()> {
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
    pub(super) fn maybe_rotate(&self, mut pending: MutexGuard<'_, Pending>) {
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
}
