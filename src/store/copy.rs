//! Copying chunks from another store: only those this store lacks, each read
//! verified from the source and written through the normal put path.

use std::collections::HashSet;

use rayon::prelude::*;

use super::Store;
use crate::error::{Error, Result};
use crate::id::ChunkId;

/// What [`Store::copy_chunks_from`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Chunks this store lacked, read from the source and stored.
    pub chunks_moved: u64,
    /// Their uncompressed bytes.
    pub bytes_moved: u64,
    /// Chunks this store already held (not read from the source).
    pub chunks_skipped: u64,
}

impl CopyReport {
    /// Adds `other`'s figures to these.
    pub fn add(&mut self, other: &CopyReport) {
        self.chunks_moved += other.chunks_moved;
        self.bytes_moved += other.bytes_moved;
        self.chunks_skipped += other.chunks_skipped;
    }
}

/// Chunks copied per parallel batch: large enough to keep the pool busy, small
/// enough that progress is reported often.
const BATCH: usize = 256;

/// Copying between stores
impl Store {
    /// Copies the chunks `ids` that this store lacks from `source`, in the
    /// order they lie in the source (so a shared frame is decompressed once),
    /// each verified against its id when read. Chunks already here are
    /// skipped without being read. `progress` is called once those are
    /// counted and after each batch, with the figures so far (the last call's
    /// are the report's). Like every put, the copies are durable once
    /// [`Store::flush`] returns.
    ///
    /// # Errors
    /// [`Error::ChunkNotFound`] or [`Error::Corrupt`] naming the source store
    /// if a chunk is missing there or does not verify; [`Error::Io`] naming the
    /// pack if writing here fails; [`Error::InvalidArgument`] if both handles
    /// are the same store.
    pub fn copy_chunks_from(
        &self,
        source: &Store,
        ids: &[ChunkId],
        progress: &(dyn Fn(&CopyReport) + Sync),
    ) -> Result<CopyReport> {
        if same_dir(self.path(), source.path()) {
            return Err(Error::InvalidArgument(format!(
                "cannot copy chunks from '{}' into itself",
                self.path().display()
            )));
        }
        let mut report = CopyReport::default();
        let mut wanted: Vec<ChunkId> = Vec::with_capacity(ids.len());
        let mut seen = HashSet::with_capacity(ids.len());
        let unique: Vec<ChunkId> = ids.iter().copied().filter(|id| seen.insert(*id)).collect();
        // What is here is leased (kept from a running gc) and skipped.
        let missing: HashSet<ChunkId> = self.hold(&unique)?.into_iter().collect();
        for id in unique {
            if missing.contains(&id) {
                wanted.push(id);
            } else {
                report.chunks_skipped += 1;
            }
        }
        wanted.sort_by_cached_key(|id| source.locality(id));
        // The chunks already here are done: said at once, so that a copy
        // with nothing to move still reports its end.
        progress(&report);
        for batch in wanted.chunks(BATCH) {
            let bytes = batch
                .par_iter()
                .map(|id| {
                    let data = source.read_chunk(id)?;
                    self.put_chunk(&data)?;
                    Ok(data.len() as u64)
                })
                .collect::<Result<Vec<u64>>>()?;
            report.chunks_moved += batch.len() as u64;
            report.bytes_moved += bytes.iter().sum::<u64>();
            progress(&report);
        }
        Ok(report)
    }
}

/// Whether two paths name the same directory (by device and inode).
fn same_dir(a: &std::path::Path, b: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreOptions;

    #[test]
    fn copies_only_what_is_missing_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let a = Store::create(dir.path().join("a"), &StoreOptions::default()).unwrap();
        let b = Store::create(dir.path().join("b"), &StoreOptions::default()).unwrap();
        let shared: Vec<u8> = (0..400_000u32).flat_map(u32::to_le_bytes).collect();
        let own: Vec<u8> = (0..300_000u32)
            .flat_map(|i| (i ^ 0x4d).to_be_bytes())
            .collect();
        let shared_list = a.put_bytes(&shared).unwrap();
        let own_list = a.put_bytes(&own).unwrap();
        b.put_bytes(&shared).unwrap();
        let ids: Vec<ChunkId> = shared_list
            .chunks()
            .iter()
            .chain(own_list.chunks())
            .map(|c| c.id)
            .collect();
        let calls = std::sync::atomic::AtomicU64::new(0);
        let report = b
            .copy_chunks_from(&a, &ids, &|_| {
                calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            })
            .unwrap();
        assert_eq!(report.chunks_moved, own_list.chunks().len() as u64);
        assert_eq!(report.bytes_moved, own.len() as u64);
        assert_eq!(report.chunks_skipped, shared_list.chunks().len() as u64);
        assert!(calls.into_inner() >= 1);
        b.flush().unwrap();
        assert_eq!(b.read_all(&own_list).unwrap(), own);
        // Again: nothing to move.
        let again = b.copy_chunks_from(&a, &ids, &|_| {}).unwrap();
        assert_eq!(again.chunks_moved, 0);
        assert_eq!(again.chunks_skipped, ids.len() as u64);
        // A missing chunk is an error naming the source store.
        let err = b
            .copy_chunks_from(&a, &[ChunkId::of(b"nowhere")], &|_| {})
            .unwrap_err();
        assert!(matches!(err, Error::ChunkNotFound { .. }), "{err}");
        assert!(err.to_string().contains(&a.path().display().to_string()));
        let err = a.copy_chunks_from(&a, &ids, &|_| {}).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    }
}
