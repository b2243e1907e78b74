//! Flushing: sealing what is open, then committing each finished pack with
//! its index, durably.

use std::sync::atomic::Ordering;

use super::pending::{Group, PendingChunk};
use crate::error::{Error, Result};
use crate::fsutil::durable;
use crate::id::ChunkId;
use crate::store::lock::DirLock;
use crate::store::{Store, index, pack::PackWriter};

/// Flushing
impl Store {
    /// Makes everything put so far durable: seals the open groups, waits for
    /// compression in flight, fsyncs and renames the pack, then writes its
    /// index. Then, if a pack was committed, runs maintenance (see
    /// [`Store::set_auto_maintenance`]).
    ///
    /// # Errors
    /// [`Error::Io`] naming the pack or index that could not be written. After
    /// an error, content put since the last successful flush may be lost from
    /// the store and must be put again. When the error is that a write failed
    /// after the `put` of its chunks had returned, nothing put since the last
    /// successful flush is committed, then or later: it may refer to the lost
    /// chunks. An error of maintenance (a full disk, say) is reported too,
    /// though what was put is then committed: maintenance loses nothing.
    pub fn flush(&self) -> Result<()> {
        let mut pending = self.lock_pending();
        for lane in pending.open_lanes() {
            self.seal(pending, Group::Chunks(lane))?;
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
        if !pending.open_lanes().is_empty() || !pending.objects.is_empty() {
            drop(pending);
            return self.flush();
        }
        if let Some(mut lost) = pending.lost.take() {
            lost.chunks.retain(|id| !self.is_committed_to_stay(id));
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
            drop(pending);
            return self.maintain_if_due();
        };
        pending.in_flight += 1;
        drop(pending);
        let result = self.commit_pack(writer).map_err(|(err, _)| err);
        let mut pending = self.lock_pending();
        pending.in_flight -= 1;
        self.pending_changed.notify_all();
        drop(pending);
        result?;
        self.maintain_if_due()
    }

    /// Runs maintenance if a pack was committed since it last ran.
    fn maintain_if_due(&self) -> Result<()> {
        if self.maintenance_due.swap(false, Ordering::Relaxed)
            && let Err(err) = self.maintain_after_write()
        {
            self.maintenance_due.store(true, Ordering::Relaxed);
            return Err(err);
        }
        Ok(())
    }

    /// Finishes `writer`'s pack and writes its index, leaving out chunks that
    /// another process indexed meanwhile; then forgets its pending chunks. On
    /// failure, gives the chunks that were lost with the error.
    pub(super) fn commit_pack(&self, writer: PackWriter) -> Result<(), (Error, Vec<ChunkId>)> {
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

    pub(super) fn index_pack(&self, writer: PackWriter) -> Result<()> {
        let tmp_path = writer.tmp_path().to_path_buf();
        // The pack is renamed into `packs/` and indexed under the lock, so
        // that gc, holding it, sees no pack without an index but those a
        // crash left.
        let _guard = DirLock::exclusive(&self.packs_dir())?;
        let finished = writer.finish(&self.packs_dir());
        let (id, pack_path, mut records) = match finished {
            Ok(done) => done,
            Err(err) => {
                let _ = std::fs::remove_file(&tmp_path);
                return Err(err);
            }
        };
        // Leased before the view is refreshed (and so before the generation
        // is read): whichever of them are found committed, and the others
        // once the index below is written, are kept from any gc that had not
        // yet fenced (`store::lease`).
        self.lease_ids(records.iter().map(|(id, _)| *id))?;
        self.refresh()?;
        records.retain(|(id, _)| !self.is_committed_to_stay(id));
        if records.is_empty() {
            // Every chunk was indexed by another process meanwhile. The pack is
            // dead weight, unless it is byte for byte a pack someone indexed.
            let shared = self.read_committed().names.contains(&id);
            if !shared {
                let _ = std::fs::remove_file(&pack_path);
            }
            return Ok(());
        }
        let idx_bytes = index::encode(&mut records);
        let idx_path = self.packs_dir().join(crate::store::layout::index_file(&id));
        durable::write_atomic(&self.tmp_dir(), &idx_path, &idx_bytes)?;
        self.add_recent(self.load_pack(id)?);
        self.maintenance_due.store(true, Ordering::Relaxed);
        Ok(())
    }
}
