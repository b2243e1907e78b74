//! Store-to-store sync: an image copied into another layerstore store, moving
//! only the chunks that store lacks. Docker moves whole layers; two stores
//! that share chunks (a base image, a file that two layers both hold) move
//! only what differs below the layer.
//!
//! The walk is image → layers and tree → the chunks of every file. The copy
//! runs bottom up so that the target is valid at every instant: file chunks,
//! flushed; then the layer and snapshot objects and the image, flushed; then
//! the tag. A sync killed midway leaves chunks (and perhaps objects) that no
//! tag names yet; running it again skips them and finishes.

use std::collections::{HashMap, HashSet};

use crate::error::Result;
use crate::id::{ChunkId, ImageId, SnapshotId};
use crate::store::CopyReport;
use crate::store::Store;
use crate::tree::TagName;
use crate::tree::entry::{Entry, EntryKind};
use crate::tree::layer::{self, StoredLayer};

/// How [`Store::sync_image`] works.
#[derive(Default, Clone, Copy)]
#[non_exhaustive]
pub struct SyncOptions<'a> {
    /// Point this tag at the image in the target once it is all there.
    pub tag: Option<&'a TagName>,
    /// Called now and then with the figures so far (file chunks only).
    pub progress: Option<&'a (dyn Fn(&SyncReport) + Sync)>,
}

impl<'a> SyncOptions<'a> {
    /// Points this tag at the image in the target once it is all there.
    #[must_use]
    pub fn tag(mut self, tag: &'a TagName) -> Self {
        self.tag = Some(tag);
        self
    }

    /// Calls `progress` now and then with the figures so far.
    #[must_use]
    pub fn progress(mut self, progress: &'a (dyn Fn(&SyncReport) + Sync)) -> Self {
        self.progress = Some(progress);
        self
    }
}

impl std::fmt::Debug for SyncOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncOptions")
            .field("tag", &self.tag)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// What [`Store::sync_image`] moved. Chunks are counted once however many
/// files hold them; bytes are uncompressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncReport {
    /// The image synced.
    pub image: ImageId,
    /// Distinct file chunks the image reaches.
    pub chunks_total: u64,
    /// File chunks the target lacked and received.
    pub chunks_moved: u64,
    /// Their bytes.
    pub bytes_moved: u64,
    /// File chunks the target already held.
    pub chunks_skipped: u64,
    /// Their bytes.
    pub bytes_skipped: u64,
    /// Metadata objects (image, layers, snapshots) the target lacked.
    pub objects_moved: u64,
    /// Their bytes.
    pub object_bytes_moved: u64,
    /// Metadata objects the target already held.
    pub objects_skipped: u64,
}

/// The objects and file chunks an image reaches, gathered bottom up.
#[derive(Default)]
struct Gather {
    objects: Vec<(ChunkId, Vec<u8>)>,
    chunks: HashMap<ChunkId, u32>,
    seen: HashSet<ChunkId>,
}

impl Gather {
    /// Object `id` (`bytes`), after the chunks of the files in `entries`.
    fn take(&mut self, id: ChunkId, entries: &[Entry], bytes: Vec<u8>) {
        for entry in entries {
            if let EntryKind::File { chunks: list, .. } = &entry.kind {
                for c in list.chunks() {
                    self.chunks.insert(c.id, c.len);
                }
            }
        }
        self.objects.push((id, bytes));
    }

    /// Tree `id`'s directory objects, children first, and its files'
    /// chunks, unless gathered already (a one-layer image's layer names the
    /// image's own tree). They are encoded again from the tree read whole
    /// (the encoding is canonical, so these are the stored objects); the
    /// target skips those it has.
    fn tree(&mut self, store: &Store, id: &SnapshotId) -> Result<()> {
        if self.seen.contains(&ChunkId::from(*id)) {
            return Ok(());
        }
        let tree = store.snapshot(id)?;
        let mut dirs = crate::tree::directory::encode_tree(&tree);
        dirs.retain(|(id, _)| self.seen.insert(*id));
        if let Some((root, bytes)) = dirs.pop() {
            for (id, bytes) in dirs {
                self.take(id, &[], bytes);
            }
            self.take(root, tree.entries(), bytes);
        }
        Ok(())
    }
}

/// Store-to-store sync
impl Store {
    /// Copies image `image` from this store into `target`, moving only the
    /// chunks and objects `target` lacks, and tags it there if asked. The
    /// target is flushed (durable) before the tag is written, and the tag is
    /// the last thing written.
    ///
    /// # Errors
    /// [`Error::ObjectNotFound`](crate::Error::ObjectNotFound) or
    /// [`Error::ChunkNotFound`](crate::Error::ChunkNotFound) naming this store
    /// if the image is incomplete here; [`Error::Corrupt`](crate::Error::Corrupt)
    /// if a chunk does not verify; [`Error::Io`](crate::Error::Io) naming the
    /// target's pack or ref if writing fails;
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) if `target` is
    /// this store.
    pub fn sync_image(
        &self,
        image: &ImageId,
        target: &Store,
        options: &SyncOptions<'_>,
    ) -> Result<SyncReport> {
        let img = self.image(image)?;
        // Objects bottom up: layers and tree before the image that names them.
        let mut gather = Gather::default();
        for layer in img.layers() {
            let id = ChunkId::from(*layer);
            if !gather.seen.insert(id) {
                continue;
            }
            let bytes = self.read_chunk(&id)?;
            match layer::decode_stored(&bytes)? {
                StoredLayer::Flat(layer) => gather.take(id, layer.upserts(), bytes),
                // The tree a layer of a whole tree names comes before it.
                StoredLayer::OfTree(tree) => {
                    gather.tree(self, &tree)?;
                    gather.take(id, &[], bytes);
                }
            }
        }
        gather.tree(self, &img.rootfs())?;
        let Gather {
            mut objects,
            chunks,
            ..
        } = gather;
        let image_chunk = ChunkId::from(*image);
        objects.push((image_chunk, self.read_chunk(&image_chunk)?));

        let mut report = SyncReport {
            image: *image,
            chunks_total: chunks.len() as u64,
            chunks_moved: 0,
            bytes_moved: 0,
            chunks_skipped: 0,
            bytes_skipped: 0,
            objects_moved: 0,
            object_bytes_moved: 0,
            objects_skipped: 0,
        };
        let ids: Vec<ChunkId> = chunks.keys().copied().collect();
        let base = report;
        let copied = target.copy_chunks_from(self, &ids, &|so_far: &CopyReport| {
            if let Some(progress) = options.progress {
                progress(&SyncReport {
                    chunks_moved: so_far.chunks_moved,
                    bytes_moved: so_far.bytes_moved,
                    chunks_skipped: so_far.chunks_skipped,
                    ..base
                });
            }
        })?;
        report.chunks_moved = copied.chunks_moved;
        report.bytes_moved = copied.bytes_moved;
        report.chunks_skipped = copied.chunks_skipped;
        let total_bytes: u64 = chunks.values().map(|&len| u64::from(len)).sum();
        report.bytes_skipped = total_bytes - copied.bytes_moved;
        // The file chunks are durable before any object that names them.
        target.flush()?;
        for (id, bytes) in &objects {
            if target.hold_one(id)? {
                report.objects_skipped += 1;
            } else {
                target.put_object(bytes)?;
                report.objects_moved += 1;
                report.object_bytes_moved += bytes.len() as u64;
            }
        }
        target.flush()?;
        if let Some(tag) = options.tag {
            target.set_tag(tag, image)?;
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::store::StoreOptions;
    use crate::tree::ScanOptions;
    use crate::tree::image::{History, ImageConfig};

    #[test]
    fn a_sync_reports_monotone_progress_ending_at_the_total() {
        let tmp = tempfile::tempdir().unwrap();
        let a = Store::create(tmp.path().join("a"), &StoreOptions::default()).unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir(&src).unwrap();
        crate::testing::progress_tree(&src, 4, 5);
        let rootfs = a
            .put_snapshot(&a.scan(&src, &ScanOptions::default()).unwrap().snapshot)
            .unwrap();
        let image = a
            .put_tree_image(rootfs, ImageConfig::default(), History::default())
            .unwrap();
        a.flush().unwrap();

        for round in ["into an empty store", "into one that has it all"] {
            let b = Store::create(tmp.path().join("b"), &StoreOptions::default()).unwrap();
            let seen = Mutex::new(Vec::new());
            let record = |r: &SyncReport| seen.lock().unwrap().push(*r);
            let report = a
                .sync_image(&image, &b, &SyncOptions::default().progress(&record))
                .unwrap();
            let seen = seen.into_inner().unwrap();
            let last = seen
                .last()
                .unwrap_or_else(|| panic!("{round}: no progress"));
            for pair in seen.windows(2) {
                let (x, y) = (pair[0], pair[1]);
                assert!(
                    x.chunks_moved + x.chunks_skipped <= y.chunks_moved + y.chunks_skipped
                        && x.bytes_moved <= y.bytes_moved,
                    "{round}: {x:?} then {y:?}"
                );
            }
            assert_eq!(
                last.chunks_moved + last.chunks_skipped,
                report.chunks_total,
                "{round}"
            );
            assert_eq!(
                (last.chunks_moved, last.bytes_moved),
                (report.chunks_moved, report.bytes_moved),
                "{round}"
            );
            assert!(report.chunks_total > 0);
        }
    }
}
