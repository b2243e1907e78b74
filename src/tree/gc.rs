//! Garbage collection: [`Store::gc`] and its options. The tree's half marks
//! what the roots reach (`tree::reach`, shared with fsck); the store's half
//! (`store::gc`) deletes and rewrites packs given that live set.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::id::ChunkId;
use crate::store::{GcReport, GcSummary, KeyRoot, Store, SweepOptions, summary_key};
use crate::tree::reach::{Root, Walk, roots};

/// What [`Store::gc`](crate::Store::gc) keeps and how hard it works.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct GcOptions {
    /// A pack whose dead share (of its chunks' stored bytes, a chunk's share
    /// of a frame it shares counted pro rata) exceeds this is rewritten with
    /// only its live chunks. Default 0.10, the figure
    /// borg and restic use; `1.0` never rewrites, `0.0` rewrites every pack
    /// with any dead chunk.
    pub repack_dead_fraction: f64,
    /// How long to wait for another gc (or `fsck --repair`) to finish before
    /// giving up with [`Error::Locked`]. Default zero: one attempt. Other
    /// processes that merely have the store open do not make gc wait.
    pub lock_timeout: Duration,
    /// Further roots kept with everything they reach: an image, layer or
    /// snapshot id (as a `ChunkId`) keeps that object and what it names; any
    /// other chunk id keeps that chunk. For pinned objects (containers'
    /// bases, say) that no tag names.
    pub extra_roots: Vec<ChunkId>,
    /// Only work out what would be freed; change nothing.
    pub dry_run: bool,
    /// Told how far the walk and the rewriting got
    /// ([`ProgressStage::Gc`](crate::ProgressStage::Gc)).
    pub progress: crate::Progress,
}

impl Default for GcOptions {
    fn default() -> Self {
        Self {
            repack_dead_fraction: 0.10,
            lock_timeout: Duration::ZERO,
            extra_roots: Vec::new(),
            dry_run: false,
            progress: crate::Progress::none(),
        }
    }
}

impl GcOptions {
    /// Reports how far gc got to `progress`.
    #[must_use]
    pub fn progress(mut self, progress: crate::Progress) -> Self {
        self.progress = progress;
        self
    }

    /// Rewrites packs whose dead share exceeds `fraction`.
    #[must_use]
    pub fn repack_dead_fraction(mut self, fraction: f64) -> Self {
        self.repack_dead_fraction = fraction;
        self
    }

    /// Waits this long for another gc to finish.
    #[must_use]
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// Keeps these further roots and all they reach.
    #[must_use]
    pub fn extra_roots(mut self, roots: Vec<ChunkId>) -> Self {
        self.extra_roots = roots;
        self
    }

    /// Only works out what would be freed; changes nothing.
    #[must_use]
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }
}

/// The roots as the gc summary's key sees them (`store/gc_summary.rs`); the
/// error of a ref that does not parse.
fn key_roots(
    roots: &[(PathBuf, Result<Root, String>)],
    extra: &[ChunkId],
    leased: &HashSet<ChunkId>,
) -> Result<Vec<KeyRoot>> {
    let mut out: Vec<KeyRoot> = Vec::new();
    for (path, root) in roots {
        match root {
            Ok(Root::Tag(_, image)) => out.push((0, ChunkId::from(*image))),
            Ok(Root::Cache(id)) => out.push((1, *id)),
            Ok(Root::Pinned(ids)) => out.extend(ids.iter().map(|id| (2, *id))),
            Err(reason) => return Err(Error::corrupt(path, 0, reason.clone())),
        }
    }
    out.extend(extra.iter().map(|id| (2, *id)));
    out.extend(leased.iter().map(|id| (3, *id)));
    Ok(out)
}

/// Marks what the refs and `extra` roots reach.
fn walk_roots(
    walk: &mut Walk<'_>,
    roots: Vec<(PathBuf, Result<Root, String>)>,
    extra: &[ChunkId],
    tracker: &crate::progress::Tracker,
) -> Result<()> {
    for (path, root) in roots {
        tracker.add(1, 0);
        match root {
            Ok(Root::Tag(_, image)) => {
                walk.image(image)?;
            }
            Ok(Root::Cache(id)) => match walk.pinned(id) {
                // A cache entry whose object is gone keeps nothing.
                Ok(_) | Err(Error::ObjectNotFound { .. }) => {}
                Err(err) => return Err(err),
            },
            Ok(Root::Pinned(ids)) => {
                for id in ids {
                    walk.pinned(id)?;
                }
            }
            Err(reason) => return Err(Error::corrupt(path, 0, reason)),
        }
    }
    for id in extra {
        tracker.add(1, 0);
        walk.pinned(*id)?;
    }
    Ok(())
}

/// Walks roots leased by readers: one whose object is gone keeps nothing.
fn walk_leased(walk: &mut Walk<'_>, ids: impl Iterator<Item = ChunkId>) -> Result<()> {
    for id in ids {
        match walk.pinned(id) {
            Ok(_) | Err(Error::ObjectNotFound { .. } | Error::ChunkNotFound { .. }) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// Garbage collection
impl Store {
    /// Deletes what no root reaches. Roots are the tags, the build-cache
    /// entries (`refs/cache/*`: the images build steps made) and `options.extra_roots`; an image
    /// keeps its layers and its tree, layers and trees keep the chunks of
    /// their files. Packs with no live chunk are deleted; packs whose dead
    /// share exceeds `options.repack_dead_fraction` are rewritten with only
    /// their live chunks.
    ///
    /// Garbage collection runs while other processes (and other handles of
    /// this one) read and write the store. What a live process put through
    /// another handle, flushed or not, tagged or not yet, is kept: each
    /// handle leases what it puts (`leases/`, see `docs/ARCHITECTURE.md`),
    /// and the lease lapses when the handle is dropped or its process dies.
    /// What this handle put before the gc began and no root reaches is
    /// garbage (tag images before collecting); what its other threads put
    /// while the gc runs is kept. A reader keeps reading an image that a
    /// repack moves: packs it has open stay readable, and a chunk it misses
    /// is found in the new pack once its view is refreshed. Only one gc runs
    /// at a time: a second waits for `options.lock_timeout`. When no other
    /// process has the store open, gc also empties `tmp/`.
    ///
    /// Killed at any moment, gc leaves a valid store: rewritten packs and
    /// their indexes are durable before the packs they replace are deleted,
    /// and an index is deleted before its pack.
    ///
    /// # Errors
    /// [`Error::Locked`] if another gc (or `fsck --repair`) keeps the store
    /// for longer than `options.lock_timeout`; the error of
    /// a tag that does not parse or an object that does not read (nothing is
    /// deleted then: run [`Store::fsck`]); [`Error::Io`] naming a file that
    /// could not be read, written or removed.
    pub fn gc(&self, options: &GcOptions) -> Result<GcReport> {
        self.flush()?;
        // What this handle leased so far is not protected from this gc.
        let own = self.own_lease();
        let Some(_gc) = self.gc_lock(options.lock_timeout)? else {
            return Err(Error::Locked {
                path: crate::store::layout::leases(self.path()),
                reason: "another gc is running",
            });
        };
        if !options.dry_run {
            // Alone with the store (a moment only): what is in tmp/ was left
            // by processes that are gone.
            if let Ok(exclusive) = self.lock_exclusive(Duration::ZERO) {
                exclusive.clean_tmp()?;
            }
        }
        let work = Store::open_unlocked(self.path())?;
        // The leases before the roots: a process that tags and goes after
        // this reading tagged what it put before the roots are read. The ids
        // writers leased are read below, if the walk is not skipped: no
        // lease goes while this gc holds the gc lock but those removed here.
        let mut leases = work.read_leases(!options.dry_run, false, &own)?;
        let tracker = options.progress.track(crate::ProgressStage::Gc);
        let roots = roots(&work)?;
        let key_roots = key_roots(&roots, &options.extra_roots, &leases.roots)?;
        let key = |packs: &[(crate::PackId, u64)]| {
            summary_key(&key_roots, packs, options.repack_dead_fraction)
        };
        if let Some(last) = work.gc_summary()
            && last.key == key(&work.gc_pack_set())
            && work.unindexed_packs()?.is_empty()
            && !work.combined_needed()
        {
            // Nothing changed since a gc that left every pack it kept as it
            // was: this one would keep them all (`store/gc_summary.rs`).
            tracker.finish();
            return Ok(GcReport {
                live_chunks: last.live_chunks,
                live_missing: last.live_missing,
                bytes_before: last.bytes_before,
                leases_live: leases.live,
                leases_removed: leases.removed,
                leased_roots: leases.roots.len() as u64,
                walk_skipped: true,
                ..GcReport::default()
            });
        }
        leases.ids = work.read_leases(false, true, &own)?.ids;
        tracker.add_entries_total((roots.len() + options.extra_roots.len()) as u64);
        let mut walk = Walk::new(&work, None);
        walk_roots(&mut walk, roots, &options.extra_roots, &tracker)?;
        walk_leased(&mut walk, leases.roots.iter().copied())?;
        // Writers go on between the walk and the sweep (the soak pauses here
        // to widen the window): the leases keep what they put.
        crate::fsutil::fault::pause("gc-walked");
        let walk_late = |ids: &[ChunkId]| {
            let mut walk = Walk::new(&work, None);
            walk_leased(&mut walk, ids.iter().copied())?;
            Ok(walk.live)
        };
        let (report, idle) = work.sweep(
            &walk.live,
            &SweepOptions {
                leases: &leases,
                walk_roots: &walk_late,
                own: &own,
                repack_dead_fraction: options.repack_dead_fraction,
                dry_run: options.dry_run,
                tracker: &tracker,
            },
        )?;
        if let Some(packs) = idle
            && !options.dry_run
        {
            work.record_gc_summary(&GcSummary {
                key: key(&packs),
                live_chunks: report.live_chunks,
                live_missing: report.live_missing,
                // What it left.
                bytes_before: report.bytes_before.saturating_sub(report.bytes_freed),
            });
        }
        tracker.finish();
        drop(work);
        // This handle's view may name deleted packs.
        self.refresh()?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{Entry, History, Metadata, Snapshot, TagName, TreePath};

    /// gc reports the roots it walks, then the bytes of the packs it
    /// rewrites, ending at both totals.
    #[test]
    fn gc_reports_its_progress_to_the_end() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::create(tmp.path().join("s"), &crate::StoreOptions::default()).unwrap();
        // Two images in one pack; one untagged, so its pack is half dead.
        let mut ids = Vec::new();
        for i in 0..2u8 {
            let tree = Snapshot::from_entries(vec![
                Entry::dir(TreePath::ROOT, Metadata::default()),
                Entry::file(
                    TreePath::new("f").unwrap(),
                    store.put_bytes(&vec![i; 200_000]).unwrap(),
                    Metadata::new(0o644),
                ),
            ])
            .unwrap();
            let image = store
                .put_child_image(
                    None,
                    &Snapshot::empty().diff(&tree),
                    &tree,
                    None,
                    History::default(),
                )
                .unwrap();
            ids.push(image);
        }
        store.flush().unwrap();
        let tag: TagName = "kept".parse().unwrap();
        store.set_tag(&tag, &ids[0]).unwrap();
        let (progress, events) = crate::testing::recording_progress();
        let report = store
            .gc(&GcOptions::default()
                .repack_dead_fraction(0.0)
                .progress(progress))
            .unwrap();
        assert!(report.packs_repacked >= 1, "{report:?}");
        let last = crate::testing::monotone_to_the_end(&events.lock().unwrap());
        assert_eq!(last.stage, crate::ProgressStage::Gc);
        assert_eq!(
            (last.entries, last.entries_total),
            (1, Some(1)),
            "one root: the tag"
        );
        assert!(
            last.bytes > 0 && Some(last.bytes) == last.bytes_total,
            "{last:?}"
        );
    }
}
