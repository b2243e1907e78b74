//! Checking the whole store: packs and indexes (`store::fsck`), then every
//! ref, and every image, layer and snapshot they reach, down to the presence
//! of every chunk of every file.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::Result;
use crate::id::{ChunkId, ImageId};
use crate::store::Store;
use crate::tree::TagName;
use crate::tree::reach::{Root, Walk, roots};

/// How [`Store::fsck`] works.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FsckOptions {
    /// Fix what can be fixed: rebuild missing or damaged indexes from their
    /// packs; copy the chunks that still verify out of a damaged pack, then
    /// move it (and its index) to `<store>/quarantine/`; move an index whose
    /// pack is missing there too; remove what dead writers left in `tmp/`.
    /// Nothing is ever deleted but `tmp/` leftovers. Needs the store alone,
    /// as garbage collection does.
    pub repair: bool,
    /// With `repair`: how long to wait for other processes to close the
    /// store before giving up with [`Error::Locked`](crate::Error::Locked).
    pub lock_timeout: Duration,
    /// Told how many packs and bytes are verified ([`ProgressStage::Fsck`](crate::ProgressStage::Fsck)).
    pub progress: crate::Progress,
}

impl FsckOptions {
    /// Fixes what can be fixed (see [`repair`](Self#structfield.repair)).
    #[must_use]
    pub fn repair(mut self, repair: bool) -> Self {
        self.repair = repair;
        self
    }

    /// With `repair`: waits this long for other processes to close the store.
    #[must_use]
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// Reports the packs verified to `progress`.
    #[must_use]
    pub fn progress(mut self, progress: crate::Progress) -> Self {
        self.progress = progress;
        self
    }
}

/// One thing wrong (or, in [`FsckReport::repaired`], one thing done).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file concerned: a pack, an index, a ref.
    pub path: PathBuf,
    /// What is wrong (or what was done).
    pub what: String,
}

/// A tagged image that does not read back whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AffectedImage {
    /// The tag.
    pub tag: TagName,
    /// The image it names.
    pub image: ImageId,
    /// How many chunk references of its layers and tree are missing or damaged
    /// (counting an unreadable object as one).
    pub missing: u64,
    /// The first problem found in it.
    pub what: String,
}

/// What [`Store::fsck`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FsckReport {
    /// Everything found wrong, each with its file. Empty: the store is sound.
    pub problems: Vec<Problem>,
    /// With `repair`: what was done.
    pub repaired: Vec<Problem>,
    /// Leftovers that lose nothing: packs without an index (a writer or gc
    /// killed mid-way) whose chunks are all indexed elsewhere or reached by
    /// no root. The next gc removes them.
    pub garbage: Vec<PathBuf>,
    /// Tagged images with missing or damaged content (after any repair).
    pub affected_images: Vec<AffectedImage>,
    /// Chunks decoded and verified against their ids.
    pub chunks_checked: u64,
    /// Bytes of packs and indexes read.
    pub bytes_checked: u64,
    /// Images walked (from tags).
    pub images_checked: u64,
    /// Images being fetched lazily ([`Store::mark_lazy`]) whose content is
    /// not all here yet: their absent chunks are still to come, not damage.
    pub fetching: Vec<ImageId>,
}

impl FsckReport {
    /// Whether nothing is wrong.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

fn problem(path: PathBuf, what: impl Into<String>) -> Problem {
    Problem {
        path,
        what: what.into(),
    }
}

/// Checking
impl Store {
    /// Checks the whole store: every index (header, checksum, order, each
    /// record bounds-checked and compared with its pack), every pack (every
    /// frame decoded, every chunk rehashed), every ref (it parses and names an
    /// existing image or layer), and every image, layer and snapshot reached
    /// (each decodes, and every chunk it names exists and reads). Indexes that
    /// [`Store::open`] skipped for a damaged header are among the problems.
    ///
    /// Without `repair` this reads only, beside other readers and writers
    /// (a writer committing a pack at that moment may show as a pack without
    /// index). With `repair` see [`FsckOptions::repair`].
    ///
    /// # Errors
    /// [`Error::Locked`](crate::Error::Locked) if a repair cannot have the store
    /// alone; [`Error::Io`](crate::Error::Io) naming a file that cannot be read
    /// (or, repairing, written). Damage is reported, not returned as an error.
    pub fn fsck(&self, options: &FsckOptions) -> Result<FsckReport> {
        let tracker = options.progress.track(crate::ProgressStage::Fsck);
        let mut report = FsckReport::default();
        let exclusive;
        let repairing;
        let work: &Store = if options.repair {
            self.flush()?;
            exclusive = self.lock_exclusive(options.lock_timeout)?;
            for path in exclusive.clean_tmp()? {
                report.repaired.push(problem(
                    path,
                    "removed: left in tmp/ by a writer that is gone",
                ));
            }
            repairing = Store::open_unlocked(self.path())?;
            &repairing
        } else {
            self.refresh()?;
            self
        };
        let mut repaired_view = None;
        let (check, walked) = if options.repair {
            let check = work.check_packs(true, &tracker)?;
            // After a repair, a fresh handle sees the rebuilt and moved files;
            // what is still unreadable is in packs that could not be read.
            let view = repaired_view.insert(Store::open_unlocked(self.path())?);
            let walked = walk_roots(view, &check.unreadable)?;
            (check, walked)
        } else {
            // The walk from the refs runs beside the check of the packs,
            // counting the chunks no index names; only if the packs turn out
            // to hold damaged chunks must it be done again, counting those.
            let none = HashSet::new();
            let (check, walked) = rayon::join(
                || work.check_packs(false, &tracker),
                || walk_roots(work, &none),
            );
            let check = check?;
            let walked = if check.unreadable.is_empty() {
                walked?
            } else {
                walk_roots(work, &check.unreadable)?
            };
            (check, walked)
        };
        report.chunks_checked = check.chunks_checked;
        report.bytes_checked = check.bytes_checked;
        report
            .problems
            .extend(check.problems.into_iter().map(|(p, w)| problem(p, w)));
        report
            .repaired
            .extend(check.repaired.into_iter().map(|(p, w)| problem(p, w)));
        report.images_checked = walked.images_checked;
        report.fetching = walked.fetching;
        report.problems.extend(walked.problems);
        report.affected_images = walked.affected_images;
        sort_orphans(&walked.live, walked.complete, check.orphans, &mut report);
        let view = repaired_view.as_ref().unwrap_or(work);
        for (path, reason) in view.damaged_indexes() {
            if !report.problems.iter().any(|p| p.path == path) {
                report
                    .problems
                    .push(problem(path, format!("skipped on open: {reason}")));
            }
        }
        tracker.finish();
        Ok(report)
    }
}

/// What the walk from the refs found.
struct Walked {
    problems: Vec<Problem>,
    affected_images: Vec<AffectedImage>,
    images_checked: u64,
    fetching: Vec<ImageId>,
    /// Every chunk reached.
    live: HashSet<ChunkId>,
    /// Whether every ref parsed and everything it reaches read.
    complete: bool,
}

/// Walks every ref down to the chunks, reporting damage: objects that do not
/// read, and chunks that no index names or that are `unreadable`.
fn walk_roots(view: &Store, unreadable: &HashSet<ChunkId>) -> Result<Walked> {
    // Images being fetched lazily: the chunks they do not have yet are to
    // come, not lost, whichever root reaches them (a container's commit on
    // top of one, say).
    let mut pending = HashSet::new();
    let mut fetching = Vec::new();
    for image in view.lazy_images().unwrap_or_default() {
        let mut marks = Walk::new(view, None);
        if marks.image(image).is_ok() {
            let before = pending.len();
            pending.extend(marks.live.into_iter().filter(|c| !view.contains(c)));
            if pending.len() > before {
                fetching.push(image);
            }
        }
    }
    let mut walk = Walk::new(view, Some(unreadable)).expecting(pending);
    let mut complete = true;
    let mut report = FsckReport::default();
    for (path, root) in roots(view)? {
        match root {
            Err(reason) => {
                complete = false;
                report.problems.push(problem(path, reason));
            }
            Ok(Root::Tag(tag, image)) => {
                report.images_checked += 1;
                let damage = walk.image(image)?;
                if !damage.is_clean() {
                    complete = false;
                    let what = damage.first.unwrap_or_default();
                    report.problems.push(problem(
                        path,
                        format!(
                            "image {image}: {} missing or damaged; first: {what}",
                            damage.missing
                        ),
                    ));
                    report.affected_images.push(AffectedImage {
                        tag,
                        image,
                        missing: damage.missing,
                        what,
                    });
                }
            }
            Ok(Root::Pinned(ids)) => {
                for id in ids {
                    let damage = walk.pinned(id)?;
                    if !damage.is_clean() {
                        complete = false;
                        report.problems.push(problem(
                            path.clone(),
                            format!("pinned {id}: {}", damage.first.unwrap_or_default()),
                        ));
                    }
                }
            }
            Ok(Root::Cache(id)) => {
                let damage = walk.pinned(id)?;
                if !damage.is_clean() {
                    complete = false;
                    report.problems.push(problem(
                        path,
                        format!(
                            "build-cache entry {id}: {}",
                            damage.first.unwrap_or_default()
                        ),
                    ));
                }
            }
        }
    }
    Ok(Walked {
        problems: report.problems,
        affected_images: report.affected_images,
        images_checked: report.images_checked,
        fetching,
        live: walk.live,
        complete,
    })
}

/// Sorts the packs without index into problems and garbage: such a pack
/// loses something only if it holds a chunk that no index names and that a
/// root reaches (or might: when the walk was not `complete`, assume so).
fn sort_orphans(
    live: &HashSet<ChunkId>,
    complete: bool,
    orphans: Vec<(PathBuf, Vec<ChunkId>)>,
    report: &mut FsckReport,
) {
    for (path, unindexed) in orphans {
        let reached = unindexed.iter().filter(|c| live.contains(c)).count();
        if reached > 0 || (!complete && !unindexed.is_empty()) {
            report.problems.push(problem(
                path,
                format!(
                    "pack without index: {} chunks no index names ({reached} of them \
                     reached from a root); repair rebuilds its index",
                    unindexed.len()
                ),
            ));
        } else {
            report.garbage.push(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::id::ChunkId;
    use crate::store::Store;
    use crate::tree::TagName;
    use crate::tree::codec::{self, ObjectKind};
    use crate::tree::directory::{Child, ChildNode};
    use crate::tree::{
        Entry, FsckOptions, History, Image, ImageConfig, Metadata, Snapshot, TreePath,
    };

    /// A directory object whose count of hard links beneath a subdirectory is
    /// wrong (what would let a later change leave a link dangling unseen) is
    /// reported, naming the directory.
    #[test]
    fn a_wrong_count_of_hard_links_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::create(tmp.path().join("s"), &crate::StoreOptions::default()).unwrap();
        let p = |s: &str| TreePath::new(s).unwrap();
        let tree = Snapshot::from_entries(vec![
            Entry::dir(TreePath::ROOT, Metadata::default()),
            Entry::dir(p("z"), Metadata::new(0o755)),
            Entry::file(
                p("z/f"),
                store.put_bytes(b"x").unwrap(),
                Metadata::new(0o644),
            ),
            Entry::hardlink(p("z/l"), p("z/f"), Metadata::new(0o644)),
        ])
        .unwrap();
        let good = store.put_snapshot(&tree).unwrap();
        let root = store.directory(&ChunkId::from(good)).unwrap();
        let ChildNode::Dir(z, 1) = root.children[0].node else {
            panic!("z holds one link: {root:?}");
        };
        let mut bad = root.clone();
        bad.children = vec![Child {
            name: b"z".to_vec(),
            node: ChildNode::Dir(z, 0),
        }];
        let bad = store
            .put_object(&codec::encode(ObjectKind::Directory, &bad))
            .unwrap();
        let layer = store.put_layer(&Snapshot::empty().diff(&tree)).unwrap();
        for (name, rootfs) in [("good", good), ("bad", crate::SnapshotId::from(bad))] {
            let image = Image::new(
                vec![layer],
                rootfs,
                ImageConfig::default(),
                vec![History::default()],
            )
            .unwrap();
            let id = store.put_image(&image).unwrap();
            store
                .set_tag(&name.parse::<TagName>().unwrap(), &id)
                .unwrap();
        }
        store.flush().unwrap();
        let report = store.fsck(&FsckOptions::default()).unwrap();
        assert_eq!(report.affected_images.len(), 1, "{:?}", report.problems);
        assert_eq!(report.affected_images[0].tag.to_string(), "bad:latest");
        assert!(
            report.affected_images[0]
                .what
                .contains("is said to hold 0 hard links, holds 1"),
            "{}",
            report.affected_images[0].what
        );
    }

    /// fsck reports the packs it verifies, ending at every pack and byte.
    #[test]
    fn fsck_reports_its_progress_to_the_end() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::create(tmp.path().join("s"), &crate::StoreOptions::default()).unwrap();
        for i in 0..3u8 {
            store.put_bytes(&vec![i; 100_000]).unwrap();
            store.flush().unwrap();
        }
        let packs: Vec<u64> = std::fs::read_dir(tmp.path().join("s/packs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "pack"))
            .map(|p| std::fs::metadata(p).unwrap().len())
            .collect();
        let (progress, events) = crate::testing::recording_progress();
        let report = store
            .fsck(&FsckOptions::default().progress(progress))
            .unwrap();
        assert!(report.is_clean());
        let last = crate::testing::monotone_to_the_end(&events.lock().unwrap());
        assert_eq!(last.stage, crate::ProgressStage::Fsck);
        assert_eq!(
            (last.entries, last.entries_total),
            (packs.len() as u64, Some(packs.len() as u64))
        );
        assert_eq!(last.bytes, packs.iter().sum::<u64>());
    }
}
