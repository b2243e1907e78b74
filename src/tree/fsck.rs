//! Checking the whole store: packs and indexes (`store::fsck`), then every
//! ref, and every image, layer and snapshot they reach, down to the presence
//! of every chunk of every file.

use std::path::PathBuf;
use std::time::Duration;

use crate::digest::ImageId;
use crate::error::Result;
use crate::store::{Store, TagName};
use crate::tree::gc::{Root, Walk, roots};

/// How [`Store::fsck`] works.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
        let check = work.check_packs(options.repair)?;
        report.chunks_checked = check.chunks_checked;
        report.bytes_checked = check.bytes_checked;
        report
            .problems
            .extend(check.problems.into_iter().map(|(p, w)| problem(p, w)));
        report
            .repaired
            .extend(check.repaired.into_iter().map(|(p, w)| problem(p, w)));
        // After a repair, a fresh handle sees the rebuilt and moved files.
        let repaired_view;
        let view: &Store = if options.repair {
            repaired_view = Store::open_unlocked(self.path())?;
            &repaired_view
        } else {
            work
        };

        walk_roots(view, &check.unreadable, check.orphans, &mut report)?;
        for (path, reason) in view.damaged_indexes() {
            if !report.problems.iter().any(|p| p.path == path) {
                report
                    .problems
                    .push(problem(path, format!("skipped on open: {reason}")));
            }
        }
        Ok(report)
    }
}

/// Walks every ref down to the chunks, reporting damage; then sorts the packs
/// without index into problems and garbage.
fn walk_roots(
    view: &Store,
    unreadable: &std::collections::HashSet<crate::digest::ChunkId>,
    orphans: Vec<(PathBuf, Vec<crate::digest::ChunkId>)>,
    report: &mut FsckReport,
) -> Result<()> {
    let mut walk = Walk::new(view, Some(unreadable));
    let mut complete = true;
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
    // A pack without an index loses something only if it holds a chunk
    // that no index names and that a root reaches (or might: when the
    // walk was incomplete, assume so).
    for (path, unindexed) in orphans {
        let reached = unindexed.iter().filter(|c| walk.live.contains(c)).count();
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
    Ok(())
}
