//! Maintenance: what keeps lookups and `packs/` small as a store ages, run
//! after a flush that committed a pack (as `git maintenance` runs after a
//! commit) and by [`Store::maintain`].
//!
//! - **The combined index** (`combined_index.rs`) is rewritten once
//!   [`FOLD_AT`] packs are recent (written since it was last rewritten), or
//!   when the one on disk is stale or damaged. A fold reads the old one in
//!   order and merges the recent packs' records in, without reading the
//!   indexes of the packs it already covers; when the old one cannot be
//!   trusted, it is rebuilt from every pack's index.
//! - **Consolidation** merges small packs (below [`SMALL_PACK`]) into larger
//!   ones once there are [`CONSOLIDATE_AT`] of them, by size tiers (the
//!   compaction of LSM trees): a pack's tier grows with the log of its size,
//!   base [`TIER_BASE`], factor [`TIER_FANIN`]; the smallest tier holding
//!   `TIER_FANIN` packs is merged with every smaller one, copied frame by
//!   verified frame into a new pack. A byte is so rewritten once per tier,
//!   a handful of times in all, and `packs/` holds fewer than
//!   `CONSOLIDATE_AT` small packs (or `TIER_FANIN - 1` per tier) plus the
//!   large ones: the store's size bounds the number of files, not the number
//!   of commits.
//!   `gc` consolidates too (see `gc.rs`), copying only live chunks.
//!
//! Consolidation runs beside other processes that have the store open; it
//! holds the `packs/` lock (`store::lock`) throughout, so that no writer
//! indexes and no other maintenance runs meanwhile. Crash safety, at every
//! instant: the new packs and their indexes are durable, then the combined
//! index naming them and not the packs they replace, and only then are the
//! old indexes removed (the directory fsynced), then the old packs. Until
//! then both copies are indexed; a crash leaves duplicates, never a gap. A
//! reader that had an old pack open keeps reading it (the file lives while
//! open); one that had not yet opened it misses, refreshes its view and
//! finds the chunk in the new pack (`read_chunk`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rayon::prelude::*;

use super::combined_index::{self, CombinedIndex, Entry, PackEntry};
use super::committed::Pack;
use super::gc::{Repacker, remove_if_present};
use super::lock::DirLock;
use super::mmap::Mapped;
use super::{Store, layout, pack};
use crate::error::{Error, Result};
use crate::fsutil::durable;
use crate::id::{ChunkId, PackId};

/// Recent packs (not in the combined index) that make a flush fold them in.
pub(crate) const FOLD_AT: usize = 8;
/// Packs smaller than this are consolidated.
pub(crate) const SMALL_PACK: u64 = 32 << 20;
/// Small packs that make maintenance (and gc) consolidate: below this, the
/// packs cost nothing worth a rewrite (`git gc --auto` waits for 50).
pub(crate) const CONSOLIDATE_AT: usize = 16;
/// Packs smaller than this are in the first tier.
const TIER_BASE: u64 = 64 << 10;
/// Packs per tier that make consolidation merge the tier.
const TIER_FANIN: usize = 4;

/// How the combined index is written.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rewrite {
    /// The old one's records, merged with the recent packs' (the old one is
    /// verified first, and rebuilt instead if it is wrong).
    Fold,
    /// From every pack's own index.
    Rebuild,
}

/// Maintenance
impl Store {
    /// Whether a flush that commits a pack also runs maintenance: folds
    /// recent packs into the combined index and consolidates small packs
    /// (default on). Turn it off for a handle that must not pay for it (a
    /// benchmark building a store of many packs, say) and call
    /// [`Store::maintain`] later.
    pub fn set_auto_maintenance(&self, on: bool) {
        self.auto_maintenance.store(on, Ordering::Relaxed);
    }

    /// Brings the store to its best for lookups now: with `consolidate`,
    /// merges small packs as a flush would; then folds every recent pack into
    /// the combined index. Waits for other writers to finish indexing.
    ///
    /// # Errors
    /// [`Error::Io`] naming a pack or index that could not be read or written;
    /// nothing is lost then (the old packs are removed last).
    pub fn maintain(&self, consolidate: bool) -> Result<()> {
        self.flush()?;
        let _guard = DirLock::exclusive(&self.packs_dir())?;
        self.refresh()?;
        if consolidate {
            let plan = self.consolidation_plan()?;
            if !plan.is_empty() {
                self.consolidate(plan)?;
            }
        }
        let needed = {
            let view = self.read_committed();
            !view.recent.is_empty() || view.combined_unusable.is_some()
        };
        if needed {
            self.rewrite_combined(Rewrite::Fold, &HashSet::new())?;
        }
        Ok(())
    }

    /// Maintenance after a flush that committed a pack: skipped if another
    /// thread or process holds the `packs/` lock (it is indexing, and its
    /// own flush will do it).
    pub(crate) fn maintain_after_write(&self) -> Result<()> {
        if !self.auto_maintenance.load(Ordering::Relaxed) {
            return Ok(());
        }
        let Some(_guard) = DirLock::try_exclusive(&self.packs_dir())? else {
            return Ok(());
        };
        self.refresh()?;
        let plan = self.consolidation_plan()?;
        if !plan.is_empty() {
            return self.consolidate(plan);
        }
        if self.combined_needed() {
            self.rewrite_combined(Rewrite::Fold, &HashSet::new())?;
        }
        Ok(())
    }

    /// At open: writes the combined index if the view needs one and nobody
    /// holds the `packs/` lock.
    pub(crate) fn maintain_index_at_open(&self) -> Result<()> {
        if !self.combined_needed() {
            return Ok(());
        }
        let Some(_guard) = DirLock::try_exclusive(&self.packs_dir())? else {
            return Ok(());
        };
        self.refresh()?;
        if self.combined_needed() {
            self.rewrite_combined(Rewrite::Fold, &HashSet::new())?;
        }
        Ok(())
    }

    /// Whether the combined index should be rewritten: many recent packs, or
    /// the one on disk is not usable.
    pub(crate) fn combined_needed(&self) -> bool {
        let view = self.read_committed();
        view.recent.len() >= FOLD_AT || view.combined_unusable.is_some()
    }

    /// Writes a combined index over the packs of the view except `removed`
    /// (whose chunks, when folding, must all be in recent packs: the packs
    /// consolidation wrote), then loads it. The caller holds the `packs/`
    /// lock and has refreshed the view.
    pub(crate) fn rewrite_combined(&self, how: Rewrite, removed: &HashSet<PackId>) -> Result<()> {
        let (combined, recent) = {
            let view = self.read_committed();
            (view.combined.clone(), view.recent.clone())
        };
        let old = match (how, combined) {
            (Rewrite::Fold, Some(c)) if c.index.verify().is_ok() => Some(c),
            (_, c) => {
                // Everything from the packs' own indexes.
                let mut all: Vec<Arc<Pack>> = c.map(|c| c.packs.clone()).unwrap_or_default();
                all.extend(recent.iter().cloned());
                let bytes = encode_from(None, &all, removed, &self.root)?;
                return self.install_combined(&bytes);
            }
        };
        let bytes = encode_from(old.as_ref().map(|c| &c.index), &recent, removed, &self.root)?;
        self.install_combined(&bytes)
    }

    fn install_combined(&self, bytes: &[u8]) -> Result<()> {
        durable::write_atomic(&self.tmp_dir(), &layout::combined_index(&self.root), bytes)?;
        self.refresh()
    }

    /// The small packs to consolidate now (none if no tier is full).
    fn consolidation_plan(&self) -> Result<Vec<Arc<Pack>>> {
        let sized = self.pack_sizes()?;
        let tier = |len: u64| {
            let mut t = 0u32;
            let mut bound = TIER_BASE;
            while len >= bound {
                t += 1;
                bound = bound.saturating_mul(TIER_FANIN as u64);
            }
            t
        };
        let small = sized.iter().filter(|(_, len)| *len < SMALL_PACK).count();
        if small < CONSOLIDATE_AT {
            return Ok(Vec::new());
        }
        let mut per_tier: HashMap<u32, usize> = HashMap::new();
        for (_, len) in sized.iter().filter(|(_, len)| *len < SMALL_PACK) {
            *per_tier.entry(tier(*len)).or_default() += 1;
        }
        let Some(full) = per_tier
            .iter()
            .filter(|(_, n)| **n >= TIER_FANIN)
            .map(|(t, _)| *t)
            .min()
        else {
            return Ok(Vec::new());
        };
        Ok(sized
            .into_iter()
            .filter(|(_, len)| *len < SMALL_PACK && tier(*len) <= full)
            .map(|(pack, _)| pack)
            .collect())
    }

    /// Every pack of the view with its length (from the combined index, or
    /// the file); packs gone meanwhile are left out.
    pub(crate) fn pack_sizes(&self) -> Result<Vec<(Arc<Pack>, u64)>> {
        let (combined, recent) = {
            let view = self.read_committed();
            (view.combined.clone(), view.recent.clone())
        };
        let mut out = Vec::new();
        if let Some(c) = &combined {
            for (p, pack) in c.packs.iter().enumerate() {
                out.push((Arc::clone(pack), c.index.pack_at(p).len));
            }
        }
        for pack in recent {
            if let Some(len) = file_len(&pack.path)? {
                out.push((pack, len));
            }
        }
        Ok(out)
    }

    /// Copies every frame that holds an indexed chunk of `packs` (each frame
    /// verified first) into new packs, writes the combined index, then
    /// removes the old indexes and packs. A pack that does not verify whole,
    /// or that is gone, is left as it is.
    fn consolidate(&self, packs: Vec<Arc<Pack>>) -> Result<()> {
        let mut copied = Vec::new();
        let mut indexed = HashSet::new();
        for pack in packs {
            let bytes = match std::fs::read(&pack.path) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("read", &pack.path, e)),
            };
            let Some(frames) = frames_to_copy(&pack, &bytes)? else {
                continue;
            };
            let index = pack.index()?;
            indexed.extend((0..index.len()).map(|i| index.id_at(i)));
            copied.push((pack.id, bytes, frames));
        }
        if copied.is_empty() {
            return Ok(());
        }
        // The new packs index what the old ones did, each chunk once.
        let mut repacker = Repacker::new(self).index_only(indexed);
        let mut merged = Vec::new();
        for (id, bytes, frames) in copied {
            for frame in &frames {
                repacker.copy_frame(frame, &bytes)?;
            }
            merged.push(id);
        }
        let written: HashSet<PackId> = repacker.finish()?.into_iter().map(|p| p.id).collect();
        // A pack copied alone, frame for frame, is its own copy: kept.
        let removed: HashSet<PackId> = merged
            .into_iter()
            .filter(|id| !written.contains(id))
            .collect();
        self.refresh()?;
        self.rewrite_combined(Rewrite::Fold, &removed)?;
        let dir = self.packs_dir();
        for id in &removed {
            remove_if_present(&dir.join(layout::index_file(id)))?;
        }
        durable::sync_dir(&dir)?;
        for id in &removed {
            remove_if_present(&dir.join(layout::pack_file(id)))?;
        }
        durable::sync_dir(&dir)?;
        self.refresh()
    }
}

/// The frames of `pack` (whose bytes are `bytes`) that hold a chunk its index
/// names, each decoded and verified; `None` if the pack is damaged or its
/// index names a chunk that no frame holds (consolidation leaves it alone:
/// fsck's business).
fn frames_to_copy(pack: &Pack, bytes: &[u8]) -> Result<Option<Vec<pack::ScannedFrame>>> {
    let (frames, end) = pack::frames(bytes);
    if end.is_err() {
        return Ok(None);
    }
    let index = pack.index()?;
    let indexed: HashSet<ChunkId> = (0..index.len()).map(|i| index.id_at(i)).collect();
    let wanted: Vec<pack::ScannedFrame> = frames
        .into_iter()
        .filter(|f| f.header.chunks.iter().any(|(id, _)| indexed.contains(id)))
        .collect();
    let held: HashSet<ChunkId> = wanted
        .iter()
        .flat_map(|f| f.header.chunks.iter().map(|(id, _)| *id))
        .collect();
    if !indexed.is_subset(&held) {
        return Ok(None);
    }
    let sound = wanted
        .par_iter()
        .all(|frame| frame.decode_verified(bytes).is_ok());
    Ok(sound.then_some(wanted))
}

/// A combined index over the packs of `old` and `packs`, except `removed`:
/// `old`'s records as they are (renumbered), then every record of each of
/// `packs`' own indexes; a chunk recorded twice keeps its first record.
fn encode_from(
    old: Option<&CombinedIndex<Mapped>>,
    packs: &[Arc<Pack>],
    removed: &HashSet<PackId>,
    root: &std::path::Path,
) -> Result<Vec<u8>> {
    let mut table: Vec<PackEntry> = Vec::new();
    if let Some(old) = old {
        table.extend(
            (0..old.pack_count())
                .map(|p| old.pack_at(p))
                .filter(|p| !removed.contains(&p.id)),
        );
    }
    let mut reading = Vec::new();
    for pack in packs.iter().filter(|p| !removed.contains(&p.id)) {
        let Some(len) = file_len(&pack.path)? else {
            continue;
        };
        // Gone meanwhile, or damaged (fsck's business): not covered, it
        // stays a recent pack.
        let Ok(index) = pack.index() else { continue };
        table.push(PackEntry {
            id: pack.id,
            len,
            records: u32::try_from(index.len()).unwrap_or(u32::MAX),
        });
        reading.push((pack.id, index));
    }
    table.sort_by_key(|p| p.id);
    table.dedup_by_key(|p| p.id);
    let number: HashMap<PackId, u32> = table
        .iter()
        .enumerate()
        .map(|(n, p)| (p.id, n as u32))
        .collect();
    let mut records: Vec<Entry> = Vec::new();
    if let Some(old) = old {
        let path = layout::combined_index(root);
        records.reserve(old.len());
        for i in 0..old.len() {
            let p = old.pack_of(i);
            if p >= old.pack_count() {
                return Err(Error::corrupt(
                    &path,
                    0,
                    format!("record {i} names no pack"),
                ));
            }
            let Some(&n) = number.get(&old.pack_at(p).id) else {
                continue;
            };
            let loc = old.location_at(i).ok_or_else(|| {
                Error::corrupt(&path, 0, format!("record {i} has an unknown codec"))
            })?;
            records.push((old.id_at(i), n, loc));
        }
    }
    let mut fresh: Vec<Entry> = Vec::new();
    for (id, index) in reading {
        let n = number[&id];
        for i in 0..index.len() {
            if let Some(loc) = index.location_at(i) {
                fresh.push((index.id_at(i), n, loc));
            }
        }
    }
    fresh.sort_by_key(|r| r.0);
    // Two sorted runs: the stable sort merges them, the old records first.
    records.append(&mut fresh);
    combined_index::sort_records(&mut records);
    Ok(combined_index::encode(&table, &records))
}

/// The length of the file at `path`; `None` if it is gone.
fn file_len(path: &std::path::Path) -> Result<Option<u64>> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(Some(meta.len())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("stat", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use quickcheck::{QuickCheck, TestResult};

    use super::*;
    use crate::store::StoreOptions;

    /// What the view answers for `id` agrees with the packs' own indexes:
    /// found exactly when some pack's index names it, at the place that
    /// pack's index gives.
    fn agrees(store: &Store, id: &ChunkId) -> bool {
        let in_packs: Vec<(PackId, crate::store::index::Location)> = store
            .committed_packs()
            .iter()
            .filter_map(|pack| {
                let index = pack.index().ok()?;
                let i = index.find(id)?;
                Some((pack.id, index.location_at(i)?))
            })
            .collect();
        let via_view = store
            .find_committed(id)
            .map(|(pack, loc)| (pack.id, loc.unwrap()));
        store.is_committed(id) == via_view.is_some()
            && match via_view {
                None => in_packs.is_empty(),
                Some(found) => in_packs.contains(&found),
            }
    }

    /// Lookups through the combined index (and the recent packs) equal
    /// lookups through each pack's own index, over random stores: packs
    /// added one flush at a time, the combined index folded, packs
    /// consolidated, a handle reopened, in any order.
    #[test]
    #[expect(
        clippy::needless_pass_by_value,
        reason = "quickcheck properties take their arguments by value"
    )]
    fn lookups_through_the_combined_index_equal_those_through_each_pack() {
        fn prop(ops: Vec<(u8, u16)>) -> TestResult {
            if ops.len() > 48 {
                return TestResult::discard();
            }
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("store");
            let mut store = Store::create(&path, &StoreOptions::default()).unwrap();
            store.set_auto_maintenance(false);
            let mut ids = vec![ChunkId::of(b"never stored")];
            for (step, &(op, seed)) in ops.iter().enumerate() {
                match op % 8 {
                    // A new pack of a few small chunks, some already stored.
                    0..=4 => {
                        for n in 0..=u64::from(seed % 4) {
                            let bytes = format!("chunk {} {}", seed % 64, step as u64 * 8 + n);
                            let list = store.put_bytes(bytes.as_bytes()).unwrap();
                            ids.extend(list.chunks().iter().map(|c| c.id));
                        }
                        store.flush().unwrap();
                    }
                    5 => store.maintain(false).unwrap(),
                    6 => store.maintain(true).unwrap(),
                    _ => {
                        drop(store);
                        store = Store::open(&path).unwrap();
                        store.set_auto_maintenance(false);
                    }
                }
                if let Some(id) = ids.iter().find(|id| !agrees(&store, id)) {
                    return TestResult::error(format!("step {step}: {id} disagrees"));
                }
            }
            let read_back = ids[1..].iter().all(|id| store.read_chunk(id).is_ok());
            TestResult::from_bool(read_back)
        }
        QuickCheck::new()
            .tests(30)
            .rng(quickcheck::Gen::new(48))
            .quickcheck(prop as fn(Vec<(u8, u16)>) -> TestResult);
    }

    /// Consolidation leaves fewer packs, each chunk still found.
    #[test]
    fn consolidation_merges_small_packs_and_keeps_every_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path().join("store"), &StoreOptions::default()).unwrap();
        store.set_auto_maintenance(false);
        let mut lists = Vec::new();
        for n in 0..CONSOLIDATE_AT as u64 + 3 {
            let bytes = format!("pack {n}").repeat(100);
            lists.push((store.put_bytes(bytes.as_bytes()).unwrap(), bytes));
            store.flush().unwrap();
        }
        assert_eq!(store.committed_packs().len(), CONSOLIDATE_AT + 3);
        store.maintain(true).unwrap();
        let view = store.read_committed();
        assert!(view.recent.is_empty(), "every pack folded in");
        assert_eq!(view.combined.as_ref().unwrap().packs.len(), 1);
        drop(view);
        for (list, bytes) in &lists {
            assert_eq!(store.read_all(list).unwrap(), bytes.as_bytes());
        }
    }
}
