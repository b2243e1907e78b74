//! Garbage collection, the store's half: given the set of live chunk ids
//! (marked by `tree::gc` from the tree's roots, where [`Store::gc`] and its
//! options are), delete the packs that hold
//! no live chunk and rewrite those mostly dead.
//!
//! Once there are many small packs, those kept are rewritten together
//! (consolidated, as maintenance does online; see `maintain.rs`), with only
//! their live chunks.
//!
//! Crash safety, at every instant:
//! - a rewritten pack is durable, and then its index, and then a combined
//!   index over the packs that remain, before any pack it replaces loses its
//!   index; so every live chunk stays indexed throughout;
//! - an index is deleted (and the directory fsynced) before its pack, so no
//!   index ever names a missing pack. A pack left without an index by a crash
//!   is invisible to readers; the next gc deletes it (or indexes it, should
//!   it hold a live chunk no index names), and `fsck` counts it as garbage.
//!
//! Other processes read and write meanwhile: a pack is deleted only once
//! the gc has published its intent and read the leases again (the fence,
//! `store::lease`), under the `packs/` lock, so that nothing a live writer
//! put goes; a reader that had a deleted pack open keeps reading it (the
//! file lives while open), and one that had not misses, refreshes its view
//! and finds a live chunk in the pack that replaced it.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;

use super::index::Location;
use super::lease::{LeaseScan, OwnLease};
use super::lock::DirLock;
use super::maintain::{CONSOLIDATE_AT, Rewrite, SMALL_PACK};
use super::pack::{self, PackWriter, ScannedFrame};
use super::write::{GROUP_BELOW, GROUP_TARGET, PACK_TARGET};
use super::{Pack, PackSet, Store, combined_index, frame, index, layout};
use crate::error::{Error, Result};
use crate::fsutil::{durable, fault};
use crate::id::{ChunkId, PackId};

/// What garbage collection did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GcReport {
    /// Distinct chunks reachable from the roots (objects included).
    pub live_chunks: u64,
    /// Live chunks that no index names (damage for `fsck` to look at; gc
    /// never makes this worse).
    pub live_missing: u64,
    /// Packs deleted because they held no live chunk.
    pub packs_deleted: u64,
    /// Packs rewritten because their dead share exceeded the threshold.
    pub packs_repacked: u64,
    /// New packs written by the rewrites.
    pub packs_written: u64,
    /// Packs left alone although planned for rewriting, because a frame
    /// holding a live chunk did not decode; each with the reason.
    /// `fsck` says more; nothing of them was deleted.
    pub packs_skipped: Vec<(PathBuf, String)>,
    /// Packs left without an index by a crash, deleted.
    pub orphans_deleted: u64,
    /// Packs left without an index that held live chunks, indexed again.
    pub orphans_indexed: u64,
    /// Index records dropped: chunks no root reaches.
    pub chunks_freed: u64,
    /// Index records dropped because another pack holds the same live chunk.
    pub duplicates_dropped: u64,
    /// Bytes of packs and indexes on disk before.
    pub bytes_before: u64,
    /// Bytes freed on disk (in a dry run, what would be: exact when no
    /// pack is rewritten, a rewritten pack estimated by its dead share).
    pub bytes_freed: u64,
    /// Chunks that no root reaches, kept because a lease names them: a
    /// live process put them (and may yet tag them), or is reading them.
    pub leased_chunks_kept: u64,
    /// The stored bytes of those chunks.
    pub leased_bytes_kept: u64,
    /// Leases of live processes read (each protects what its process put).
    pub leases_live: u64,
    /// Stale leases (their process gone) removed.
    pub leases_removed: u64,
    /// Roots leased by live readers
    /// ([`Store::lease_root`](crate::Store::lease_root)), kept with all they
    /// reach.
    pub leased_roots: u64,
    /// Nothing had changed since the last gc that rewrote nothing (the same
    /// roots, the packs it left: `leases/gc.last`), so this one walked and
    /// planned nothing, and frees nothing; `live_chunks`, `live_missing` and
    /// `bytes_before` are that gc's figures (the last, what it left), and
    /// chunks leases name are not counted.
    pub walk_skipped: bool,
}

/// What becomes of one pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    Keep,
    Delete,
    Repack,
}

/// A pack's fate, and the figures it was decided on.
struct PackPlan {
    plan: Plan,
    /// Bytes of the pack and its index on disk.
    size: u64,
    /// Stored (compressed) bytes of its indexed chunks, and of the dead ones.
    total: u64,
    dead: u64,
}

/// The bytes that chunk's record `loc` stands for on disk: its share of its
/// frame's stored bytes, in proportion to its raw length. Dead shares are
/// measured in these, not in raw bytes: a pack of well-compressed live text
/// and incompressible dead data is mostly dead on disk, which is what gc is
/// for.
fn stored_share(loc: &Location) -> u64 {
    let share = u128::from(loc.stored_len) * u128::from(loc.len) / u128::from(loc.raw_len.max(1));
    u64::try_from(share).unwrap_or(u64::MAX)
}

/// Decides each pack's fate: deleted if it keeps no live chunk, rewritten if
/// its dead share exceeds `threshold` or if it is small (below
/// [`SMALL_PACK`]) and [`CONSOLIDATE_AT`] small ones are kept (consolidated),
/// else kept.
fn plan(
    packs: &[Arc<Pack>],
    owner: &HashMap<ChunkId, usize>,
    threshold: f64,
) -> Result<Vec<PackPlan>> {
    let mut plans = Vec::with_capacity(packs.len());
    for (pi, pack) in packs.iter().enumerate() {
        let size = file_len(&pack.path)? + file_len(&pack.idx_path)?;
        let index = pack.index()?;
        let (mut total, mut dead, mut live_here) = (0u64, 0u64, 0u64);
        for i in 0..index.len() {
            let len = index.location_at(i).map_or(0, |l| stored_share(&l));
            total += len;
            if owner.get(&index.id_at(i)) == Some(&pi) {
                live_here += 1;
            } else {
                dead += len;
            }
        }
        let plan = if live_here == 0 {
            Plan::Delete
        } else if dead > 0 && dead as f64 > threshold * total as f64 {
            Plan::Repack
        } else {
            Plan::Keep
        };
        plans.push(PackPlan {
            plan,
            size,
            total,
            dead,
        });
    }
    // Consolidation: once there are many small packs, those kept are
    // rewritten together.
    let small = |p: &PackPlan| p.plan == Plan::Keep && p.size < SMALL_PACK;
    if plans.iter().filter(|p| small(p)).count() >= CONSOLIDATE_AT {
        for p in plans.iter_mut().filter(|p| small(p)) {
            p.plan = Plan::Repack;
        }
    }
    Ok(plans)
}

/// Walks roots leased after the gc read the leases first; returns what
/// they reach.
pub(crate) type WalkRoots<'a> = &'a dyn Fn(&[ChunkId]) -> Result<HashSet<ChunkId>>;

/// The packs a sweep keeps, if it rewrites none (each is kept or deleted
/// whole), meets no orphan and no lease kept a chunk no root reaches: once
/// the deleted packs are gone, what `gc_summary` records. A gc over the
/// packs kept would keep them all: deleting a pack that owned no kept chunk
/// changes no other pack's plan.
fn settled(packs: &[Arc<Pack>], plans: &[PackPlan], report: &GcReport) -> Option<PackSet> {
    let settled = plans.iter().all(|p| p.plan != Plan::Repack)
        && report.leased_chunks_kept == 0
        && report.orphans_deleted + report.orphans_indexed == 0;
    settled.then(|| {
        packs
            .iter()
            .zip(plans)
            .filter(|(_, plan)| plan.plan == Plan::Keep)
            .filter_map(|(p, _)| Some((p.id, p.index().ok()?.len() as u64)))
            .collect()
    })
}

/// What a sweep keeps besides the live set, and how.
pub(crate) struct SweepOptions<'a> {
    /// The leases read before the roots: every id in them is kept (their
    /// roots were walked into the live set).
    pub(crate) leases: &'a LeaseScan,
    /// Walks a root first leased at the fence.
    pub(crate) walk_roots: WalkRoots<'a>,
    /// What of the calling handle's own lease is not read at the fence.
    pub(crate) own: &'a OwnLease,
    pub(crate) repack_dead_fraction: f64,
    pub(crate) dry_run: bool,
    /// Told the bytes of the packs to rewrite, then each one rewritten.
    pub(crate) tracker: &'a crate::progress::Tracker,
}

/// Garbage collection (on a handle of its own, while the gc lock is held)
impl Store {
    /// Deletes and rewrites packs so that only chunks in `live` or a lease
    /// remain (plus the dead chunks of packs whose dead share is at most
    /// `repack_dead_fraction`). With `dry_run`, only works out what would be
    /// freed. Other processes may read and write meanwhile: see
    /// `store::lease` for the protocol that keeps what they put. With the
    /// report, the packs that remain (each with its number of index
    /// records) if it rewrote nothing and no lease kept anything, so that a
    /// gc over them with the same roots would do nothing: what `gc_summary`
    /// records (never after a dry run).
    pub(crate) fn sweep(
        &self,
        live: &HashSet<ChunkId>,
        options: &SweepOptions<'_>,
    ) -> Result<(GcReport, Option<PackSet>)> {
        let dry_run = options.dry_run;
        let mut report = GcReport {
            live_chunks: live.len() as u64,
            leases_live: options.leases.live,
            leases_removed: options.leases.removed,
            leased_roots: options.leases.roots.len() as u64,
            ..GcReport::default()
        };
        let leased = &options.leases.ids;
        let keep = |id: &ChunkId| live.contains(id) || leased.contains(id);
        self.adopt_orphans(&keep, dry_run, &mut report)?;
        self.refresh()?;
        // A pack whose index does not map is left alone (fsck's business).
        let packs: Vec<Arc<Pack>> = self
            .committed_packs()
            .into_iter()
            .filter(|p| p.index().is_ok())
            .collect();

        // Each kept chunk is kept in one pack; copies elsewhere are dead.
        let mut owner: HashMap<ChunkId, usize> = HashMap::with_capacity(live.len());
        for (pi, pack) in packs.iter().enumerate() {
            let index = pack.index()?;
            for i in 0..index.len() {
                let id = index.id_at(i);
                if keep(&id) && !owner.contains_key(&id) {
                    owner.insert(id, pi);
                    if !live.contains(&id) {
                        report.leased_chunks_kept += 1;
                        report.leased_bytes_kept +=
                            index.location_at(i).map_or(0, |l| stored_share(&l));
                    }
                }
            }
        }
        let live_found = owner.keys().filter(|id| live.contains(id)).count();
        report.live_missing = live.len().saturating_sub(live_found) as u64;

        let plans = plan(&packs, &owner, options.repack_dead_fraction)?;
        let settled = settled(&packs, &plans, &report);
        let combined_path = layout::combined_index(&self.root);
        let combined_before = file_len(&combined_path)?;
        report.bytes_before = plans.iter().map(|p| p.size).sum::<u64>() + combined_before;

        let mut doomed = Vec::new();
        let mut repacker = Repacker::new(self);
        let rewriting = plans
            .iter()
            .filter(|p| p.plan == Plan::Repack)
            .map(|p| p.size)
            .sum();
        options.tracker.add_total(0, rewriting);
        for (pi, pack) in packs.iter().enumerate() {
            match plans[pi].plan {
                Plan::Keep => continue,
                Plan::Delete => report.packs_deleted += 1,
                Plan::Repack => {
                    options.tracker.add(0, plans[pi].size);
                    if dry_run {
                        report.packs_repacked += 1;
                    } else {
                        match copy_live(&mut repacker, pack, pi, &owner)? {
                            Copied::Done => report.packs_repacked += 1,
                            // Consolidated by a writer meanwhile: its
                            // chunks are in a pack this gc does not touch.
                            Copied::Gone => continue,
                            Copied::Damaged(reason) => {
                                report.packs_skipped.push((pack.path.clone(), reason));
                                continue;
                            }
                        }
                    }
                }
            }
            doomed.push(pi);
        }

        if dry_run {
            let any = !doomed.is_empty();
            self.estimate(&packs, &plans, &owner, any, combined_before, &mut report)?;
            return Ok((report, None));
        }

        // The new packs and their indexes are durable before anything goes.
        let written = repacker.finish()?;
        report.packs_written = written.len() as u64;
        let new_ids: HashSet<PackId> = written.iter().map(|p| p.id).collect();
        let mut doomed: Vec<usize> = doomed
            .into_iter()
            .filter(|&pi| !new_ids.contains(&packs[pi].id))
            .collect();

        // The deletions, under the `packs/` lock (no writer indexes, no
        // maintenance consolidates meanwhile), fenced by the intent.
        let packs_dir = self.packs_dir();
        let _guard = DirLock::exclusive(&packs_dir)?;
        if !doomed.is_empty() {
            // A failed fence leaves the generation even, as a done gc does.
            self.fence(&packs, &plans, &mut doomed, &keep, options, &mut report)
                .inspect_err(|_| drop(self.end_deleting()))?;
        }
        let result = self.delete_doomed(
            &packs,
            &plans,
            &doomed,
            &written,
            combined_before,
            &owner,
            &mut report,
        );
        self.end_deleting()?;
        result?;
        // Unless a lease read at the fence kept a pack this gc meant to delete.
        let settled = settled.filter(|_| report.leased_chunks_kept == 0);
        Ok((report, settled))
    }

    /// A dry run's figures: a rewritten pack shrinks by its dead share, a
    /// deleted one goes whole, and the combined index is rewritten over the
    /// packs that remain (`any`: some pack goes).
    fn estimate(
        &self,
        packs: &[Arc<Pack>],
        plans: &[PackPlan],
        owner: &HashMap<ChunkId, usize>,
        any: bool,
        combined_before: u64,
        report: &mut GcReport,
    ) -> Result<()> {
        let mut remaining: HashSet<ChunkId> = HashSet::new();
        let mut remaining_packs = 0usize;
        for (pi, pack) in packs.iter().enumerate() {
            let p = &plans[pi];
            let index = pack.index()?;
            match p.plan {
                Plan::Keep => {
                    remaining_packs += 1;
                    remaining.extend((0..index.len()).map(|i| index.id_at(i)));
                }
                Plan::Repack => {
                    remaining_packs += 1;
                    remaining.extend(
                        (0..index.len())
                            .map(|i| index.id_at(i))
                            .filter(|id| owner.get(id) == Some(&pi)),
                    );
                    let share =
                        u128::from(p.size) * u128::from(p.dead) / u128::from(p.total.max(1));
                    report.bytes_freed += u64::try_from(share).unwrap_or(p.size);
                }
                Plan::Delete => report.bytes_freed += p.size,
            }
            if p.plan != Plan::Keep {
                count_dropped(index, pi, owner, report);
            }
        }
        if any || self.combined_needed() {
            let after = combined_index::encoded_len(remaining_packs, remaining.len());
            report.bytes_freed = (report.bytes_freed + combined_before).saturating_sub(after);
        }
        Ok(())
    }

    /// Publishes the intent to delete `doomed` (the generation goes odd),
    /// then reads the leases again (the fence): a doomed pack holding an id
    /// leased since the first reading, or reached from a root leased since,
    /// is kept. The caller holds the `packs/` lock, and ends the deleting
    /// phase (`end_deleting`).
    fn fence(
        &self,
        packs: &[Arc<Pack>],
        plans: &[PackPlan],
        doomed: &mut Vec<usize>,
        keep: &dyn Fn(&ChunkId) -> bool,
        options: &SweepOptions<'_>,
        report: &mut GcReport,
    ) -> Result<()> {
        let ids: Vec<PackId> = doomed.iter().map(|&pi| packs[pi].id).collect();
        self.begin_deleting(&ids)?;
        crate::fsutil::fault::pause("gc-intent");
        let mut fence = self.read_leases(false, true, options.own)?;
        crate::fsutil::fault::pause("gc-fenced");
        let new_roots: Vec<ChunkId> = fence
            .roots
            .difference(&options.leases.roots)
            .copied()
            .collect();
        if !new_roots.is_empty() {
            // Nothing is deleted yet: what they reach is all there to walk.
            report.leased_roots += new_roots.len() as u64;
            fence.ids.extend((options.walk_roots)(&new_roots)?);
        }
        let late: HashSet<&ChunkId> = fence.ids.iter().filter(|id| !keep(id)).collect();
        if late.is_empty() {
            return Ok(());
        }
        doomed.retain(|&pi| {
            let Ok(index) = packs[pi].index() else {
                return false;
            };
            let mut held = false;
            for i in 0..index.len() {
                if late.contains(&index.id_at(i)) {
                    held = true;
                    report.leased_chunks_kept += 1;
                    report.leased_bytes_kept +=
                        index.location_at(i).map_or(0, |l| stored_share(&l));
                }
            }
            if held {
                match plans[pi].plan {
                    Plan::Delete => report.packs_deleted -= 1,
                    _ => report.packs_repacked -= 1,
                }
            }
            !held
        });
        Ok(())
    }

    /// Rewrites the combined index over what remains, then deletes the
    /// indexes of `doomed`, then their packs. The caller holds the `packs/`
    /// lock.
    #[allow(clippy::too_many_arguments, reason = "the sweep's state, passed on")]
    fn delete_doomed(
        &self,
        packs: &[Arc<Pack>],
        plans: &[PackPlan],
        doomed: &[usize],
        written: &[NewPack],
        combined_before: u64,
        owner: &HashMap<ChunkId, usize>,
        report: &mut GcReport,
    ) -> Result<()> {
        let combined_path = layout::combined_index(&self.root);
        for &pi in doomed {
            report.bytes_freed += plans[pi].size;
            count_dropped(packs[pi].index()?, pi, owner, report);
        }
        report.bytes_freed = report
            .bytes_freed
            .saturating_sub(written.iter().map(|p| p.bytes_on_disk).sum());
        // The combined index over what remains, before anything goes.
        self.refresh()?;
        if !doomed.is_empty() || !written.is_empty() || self.combined_needed() {
            let gone: HashSet<PackId> = doomed.iter().map(|&pi| packs[pi].id).collect();
            self.rewrite_combined(Rewrite::Rebuild, &gone)?;
            report.bytes_freed =
                (report.bytes_freed + combined_before).saturating_sub(file_len(&combined_path)?);
        }
        let packs_dir = self.packs_dir();
        for &pi in doomed {
            remove_if_present(&packs[pi].idx_path)?;
        }
        durable::sync_dir(&packs_dir)?;
        for &pi in doomed {
            remove_if_present(&packs[pi].path)?;
        }
        durable::sync_dir(&packs_dir)?;
        Ok(())
    }

    /// Packs in `packs/` without an index (left by a crash between a pack's
    /// rename and its index's write, or between gc deleting an index and its
    /// pack): indexed again if they hold a live chunk that no index names,
    /// else deleted.
    fn adopt_orphans(
        &self,
        keep: &dyn Fn(&ChunkId) -> bool,
        dry_run: bool,
        report: &mut GcReport,
    ) -> Result<()> {
        // Writers rename a pack into `packs/` and index it under this lock:
        // holding it, a pack without an index is one a crash left.
        let _guard = DirLock::exclusive(&self.packs_dir())?;
        self.refresh()?;
        for path in self.unindexed_packs()? {
            let bytes = fs_err::read(&path).map_err(|e| Error::io("read", &path, e))?;
            let (mut records, _) = pack::scan(&bytes);
            let needed = records
                .iter()
                .any(|(id, _)| keep(id) && !self.is_committed(id));
            if dry_run {
                if !needed {
                    report.orphans_deleted += 1;
                    report.bytes_freed += bytes.len() as u64;
                }
                continue;
            }
            if needed {
                let idx = index::encode(&mut records);
                durable::write_atomic(
                    &self.tmp_dir(),
                    &path.with_extension(layout::INDEX_EXT),
                    &idx,
                )?;
                report.orphans_indexed += 1;
            } else {
                remove_if_present(&path)?;
                report.orphans_deleted += 1;
                report.bytes_freed += bytes.len() as u64;
            }
        }
        if report.orphans_indexed > 0 {
            self.refresh()?;
        }
        Ok(())
    }

    /// `.pack` files in `packs/` that have no `.idx` beside them, sorted.
    pub(crate) fn unindexed_packs(&self) -> Result<Vec<PathBuf>> {
        let dir = self.packs_dir();
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::io("read directory", &dir, e))? {
            let entry = entry.map_err(|e| Error::io("read directory", &dir, e))?;
            let name = entry.file_name();
            let Some((_, false)) = name.to_str().and_then(layout::parse_pack_dir_name) else {
                continue;
            };
            let path = entry.path();
            if !path.with_extension(layout::INDEX_EXT).exists() {
                out.push(path);
            }
        }
        out.sort();
        Ok(out)
    }
}

/// Counts the records of doomed pack `pi` that go: freed, or dropped as
/// duplicates of a chunk kept elsewhere.
fn count_dropped(
    index: &index::Index<super::mmap::Mapped>,
    pi: usize,
    owner: &HashMap<ChunkId, usize>,
    report: &mut GcReport,
) {
    for i in 0..index.len() {
        match owner.get(&index.id_at(i)) {
            Some(&o) if o == pi => {}
            Some(_) => report.duplicates_dropped += 1,
            None => report.chunks_freed += 1,
        }
    }
}

/// What became of a pack gc meant to rewrite.
enum Copied {
    /// Its kept chunks are in the repacker.
    Done,
    /// It was gone (consolidated by another process) before it was read.
    Gone,
    /// A kept chunk could not be copied: why (the pack is left alone).
    Damaged(String),
}

/// Kept chunks of a frame, with their bytes.
type KeptChunks = Vec<(ChunkId, Vec<u8>)>;

/// How one frame's kept chunks are copied.
enum Copy<'f> {
    Whole(&'f ScannedFrame),
    Chunks(KeptChunks),
}

/// Copies the chunks of `pack` (number `pi`) that `owner` assigns to it into
/// `repacker`: whole frames verbatim when every chunk of the frame is kept,
/// else the kept chunks re-encoded. Every copied chunk is decoded and verified
/// first. [`Copied::Damaged`] when a kept chunk cannot be copied (the pack is
/// then left as it is, and nothing of it was written).
fn copy_live(
    repacker: &mut Repacker<'_>,
    pack: &Pack,
    pi: usize,
    owner: &HashMap<ChunkId, usize>,
) -> Result<Copied> {
    let bytes = match std::fs::read(&pack.path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Copied::Gone),
        Err(e) => return Err(Error::io("read", &pack.path, e)),
    };
    let (frames, _) = pack::frames(&bytes);
    let keep = |id: &ChunkId| owner.get(id) == Some(&pi);
    let index = pack.index()?;
    let wanted: HashSet<ChunkId> = (0..index.len())
        .map(|i| index.id_at(i))
        .filter(|id| keep(id))
        .collect();
    // Decode and verify everything first (frames in parallel), so that a
    // damaged pack is left alone whole rather than half copied. A frame whose
    // chunks are all kept is copied as it is (its raw bytes are dropped once
    // verified); of the others, the kept chunks' bytes are kept.
    let decoded: Vec<Result<Option<KeptChunks>, String>> = frames
        .par_iter()
        .map(|frame| {
            let kept: Vec<bool> = frame.header.chunks.iter().map(|(id, _)| keep(id)).collect();
            if !kept.contains(&true) {
                return Ok(Some(Vec::new()));
            }
            let raw = frame.decode_verified(&bytes).map_err(|reason| {
                format!(
                    "frame at offset {} holds live chunks: {reason}",
                    frame.start
                )
            })?;
            if !kept.contains(&false) {
                return Ok(None);
            }
            let mut chunks = Vec::new();
            let mut at = 0usize;
            for (&(id, len), &k) in frame.header.chunks.iter().zip(&kept) {
                if k {
                    chunks.push((id, raw[at..at + len as usize].to_vec()));
                }
                at += len as usize;
            }
            Ok(Some(chunks))
        })
        .collect();
    let mut copies = Vec::new();
    let mut found = HashSet::new();
    for (frame, result) in frames.iter().zip(decoded) {
        let chunks = match result {
            Err(reason) => return Ok(Copied::Damaged(reason)),
            Ok(Some(chunks)) => chunks,
            Ok(None) => {
                let ids = || frame.header.chunks.iter().map(|(id, _)| *id);
                if ids().all(|id| !found.contains(&id)) {
                    found.extend(ids());
                    copies.push(Copy::Whole(frame));
                    continue;
                }
                // A chunk also in an earlier frame of this pack (rare): copy
                // the others alone.
                let raw = frame
                    .decode_verified(&bytes)
                    .map_err(|reason| Error::corrupt(&pack.path, frame.start, reason))?;
                let mut at = 0usize;
                let mut chunks = Vec::new();
                for &(id, len) in &frame.header.chunks {
                    chunks.push((id, raw[at..at + len as usize].to_vec()));
                    at += len as usize;
                }
                chunks
            }
        };
        let fresh: Vec<_> = chunks
            .into_iter()
            .filter(|(id, _)| found.insert(*id))
            .collect();
        if !fresh.is_empty() {
            copies.push(Copy::Chunks(fresh));
        }
    }
    if found.len() != wanted.len() {
        return Ok(Copied::Damaged(format!(
            "{} live chunks named by its index are not in its frames",
            wanted.len() - found.len()
        )));
    }
    for copy in copies {
        match copy {
            Copy::Whole(frame) => repacker.copy_frame(frame, &bytes)?,
            Copy::Chunks(chunks) => {
                for (id, data) in chunks {
                    repacker.add_chunk(id, &data)?;
                }
            }
        }
    }
    Ok(Copied::Done)
}

fn file_len(path: &Path) -> Result<u64> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(Error::io("stat", path, e)),
    }
}

pub(crate) fn remove_if_present(path: &Path) -> Result<()> {
    match fault::check("remove", path).and_then(|()| std::fs::remove_file(path)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", path, e)),
    }
}

/// A pack rewritten by gc or salvaged by repair.
pub(crate) struct NewPack {
    pub(crate) id: PackId,
    /// Its pack and index files' bytes.
    pub(crate) bytes_on_disk: u64,
    /// Chunks indexed in it.
    pub(crate) chunks: u64,
}

/// Writes chunks and frames into new packs, each finished (pack durable, then
/// its index) when it grows past the pack target and at the end.
pub(crate) struct Repacker<'a> {
    store: &'a Store,
    writer: Option<PackWriter>,
    group: Vec<(ChunkId, u32)>,
    group_bytes: Vec<u8>,
    written: Vec<NewPack>,
    /// If set, only these chunks are indexed, each once: frames copied
    /// whole may hold others, which another pack indexes.
    index_only: Option<HashSet<ChunkId>>,
}

impl<'a> Repacker<'a> {
    pub(crate) fn new(store: &'a Store) -> Self {
        Self {
            store,
            writer: None,
            group: Vec::new(),
            group_bytes: Vec::new(),
            written: Vec::new(),
            index_only: None,
        }
    }

    /// Indexes only `chunks` (each in the first pack written that holds it).
    pub(crate) fn index_only(mut self, chunks: HashSet<ChunkId>) -> Self {
        self.index_only = Some(chunks);
        self
    }

    /// Copies a frame of `pack_bytes` as it is (its chunks already verified).
    pub(crate) fn copy_frame(&mut self, frame: &ScannedFrame, pack_bytes: &[u8]) -> Result<()> {
        let encoded = frame::EncodedFrame {
            bytes: frame.bytes(pack_bytes).to_vec(),
            payload_start: (frame.payload_offset - frame.start) as usize,
            header: frame.header.clone(),
        };
        self.append(&encoded)
    }

    /// Adds one (verified) chunk: alone in a frame if large, else grouped.
    pub(crate) fn add_chunk(&mut self, id: ChunkId, data: &[u8]) -> Result<()> {
        if data.len() >= GROUP_BELOW {
            let encoded = frame::encode(
                vec![(id, data.len() as u32)],
                data,
                self.store.config.zstd_level,
            )
            .map_err(|e| Error::io("compress", self.store.tmp_dir(), e))?;
            return self.append(&encoded);
        }
        self.group.push((id, data.len() as u32));
        self.group_bytes.extend_from_slice(data);
        if self.group_bytes.len() >= GROUP_TARGET {
            self.seal()?;
        }
        Ok(())
    }

    fn seal(&mut self) -> Result<()> {
        if self.group.is_empty() {
            return Ok(());
        }
        let chunks = std::mem::take(&mut self.group);
        let bytes = std::mem::take(&mut self.group_bytes);
        let encoded = frame::encode(chunks, &bytes, self.store.config.zstd_level)
            .map_err(|e| Error::io("compress", self.store.tmp_dir(), e))?;
        self.append(&encoded)
    }

    fn append(&mut self, encoded: &frame::EncodedFrame) -> Result<()> {
        let writer = match &mut self.writer {
            Some(writer) => writer,
            slot @ None => slot.insert(PackWriter::create(&self.store.tmp_dir())?),
        };
        writer.append(encoded)?;
        if writer.len() >= PACK_TARGET {
            self.finish_pack()?;
        }
        Ok(())
    }

    fn finish_pack(&mut self) -> Result<()> {
        let Some(writer) = self.writer.take() else {
            return Ok(());
        };
        if writer.is_empty() {
            writer.discard();
            return Ok(());
        }
        let pack_len = writer.len();
        let (id, _, mut records) = writer.finish(&self.store.packs_dir())?;
        if let Some(only) = &mut self.index_only {
            records.retain(|(id, _)| only.remove(id));
        }
        let idx = index::encode(&mut records);
        let idx_path = self.store.packs_dir().join(layout::index_file(&id));
        durable::write_atomic(&self.store.tmp_dir(), &idx_path, &idx)?;
        self.written.push(NewPack {
            id,
            bytes_on_disk: pack_len + idx.len() as u64,
            chunks: records.len() as u64,
        });
        Ok(())
    }

    /// Finishes the last pack; returns every pack written.
    pub(crate) fn finish(mut self) -> Result<Vec<NewPack>> {
        self.seal()?;
        self.finish_pack()?;
        Ok(std::mem::take(&mut self.written))
    }
}

impl Drop for Repacker<'_> {
    fn drop(&mut self) {
        // After an error: the unfinished pack in tmp/ is of no use.
        if let Some(writer) = self.writer.take() {
            writer.discard();
        }
    }
}
