//! Checking the store, its half: every index and every pack, byte by byte.
//! `tree::fsck` adds the refs and objects and assembles the public report.
//!
//! The combined index is checked against the packs' indexes it caches.
//!
//! Repair (with the store's lock held exclusively) never deletes data: a
//! missing or damaged index is rebuilt from its pack, and the combined index
//! from the packs' indexes; a damaged pack has the
//! chunks that still verify copied into a new pack, and is then moved, with
//! its index, to `<store>/quarantine/`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::combined_index::CombinedIndex;
use super::gc::Repacker;
use super::index::{Index, Location};
use super::maintain::Rewrite;
use super::verify::{self, PackPass};
use super::{Store, index, layout, pack};
use crate::error::{Error, Result};
use crate::fsutil::durable;
use crate::id::{ChunkId, PackId};

/// What checking the packs and indexes found (and repaired).
#[derive(Debug, Default)]
pub(crate) struct PackCheck {
    /// Problems, each with the file concerned.
    pub(crate) problems: Vec<(PathBuf, String)>,
    /// Repairs made, each with the file concerned.
    pub(crate) repaired: Vec<(PathBuf, String)>,
    /// Chunks decoded and verified.
    pub(crate) chunks_checked: u64,
    /// Bytes of packs and indexes read.
    pub(crate) bytes_checked: u64,
    /// Chunks that an index names but that do not read back (their frame is
    /// damaged or missing, or their pack cannot be read); after a repair,
    /// which unindexes damaged frames, only those of packs that cannot be read.
    pub(crate) unreadable: HashSet<ChunkId>,
    /// Without repair: packs with no index, and the chunks in them that no
    /// index names (whether that loses anything depends on reachability).
    pub(crate) orphans: Vec<(PathBuf, Vec<ChunkId>)>,
}

/// An index file as found.
enum IdxState {
    Good(Index<Vec<u8>>),
    Bad,
    /// Reading it failed: repair moves it to `quarantine/` before writing a
    /// new one, as it never deletes what it could not look at.
    Unreadable,
}

/// What a pack's bytes hold.
struct Scanned {
    len: u64,
    /// Every chunk of every frame whose header parsed, once, sorted by id.
    chunks: Vec<Found>,
    damaged: bool,
}

/// Every pack's [`verify::pass`], in one parallel pass (pieces of all packs
/// share the threads), counted in `tracker`.
fn verify_all(
    pack_ids: &[PackId],
    pack_path: &(dyn Fn(&PackId) -> PathBuf + Sync),
    tracker: &crate::progress::Tracker,
) -> Vec<Result<PackPass>> {
    let sizes: Vec<u64> = pack_ids
        .iter()
        .map(|id| std::fs::metadata(pack_path(id)).map_or(0, |m| m.len()))
        .collect();
    tracker.add_total(pack_ids.len() as u64, sizes.iter().sum());
    pack_ids
        .par_iter()
        .zip(&sizes)
        .map(|(id, size)| {
            let pass = verify::pass(&pack_path(id));
            tracker.add(1, *size);
            pass
        })
        .collect()
}

/// A chunk found in a pack.
struct Found {
    id: ChunkId,
    /// Where it is (the first place, if the pack holds it twice).
    loc: Location,
    /// Whether a frame holding it decoded and its bytes match its id.
    verified: bool,
}

/// Checking
impl Store {
    /// Verifies every index (header, checksum, order, each record against its
    /// pack) and every pack (every frame decoded, every chunk rehashed); with
    /// `repair`, which needs the lock held exclusively, fixes what it can.
    pub(crate) fn check_packs(
        &self,
        repair: bool,
        tracker: &crate::progress::Tracker,
    ) -> Result<PackCheck> {
        let mut check = PackCheck::default();
        let dir = self.packs_dir();
        let (pack_ids, idx_ids) = list_packs(&dir)?;
        let pack_path = |id: &PackId| dir.join(layout::pack_file(id));
        let idx_path = |id: &PackId| dir.join(layout::index_file(id));

        let indexes = self.check_indexes(&idx_ids, &pack_ids, repair, &mut check)?;
        // Which pack's good index names each chunk: needed to repair, and to
        // judge a pack without index.
        let mut indexed_in: HashMap<ChunkId, PackId> = HashMap::new();
        if repair || pack_ids.iter().any(|id| !indexes.contains_key(id)) {
            for (id, state) in &indexes {
                if let IdxState::Good(index) = state {
                    for i in 0..index.len() {
                        indexed_in.entry(index.id_at(i)).or_insert(*id);
                    }
                }
            }
        }
        let elsewhere =
            |chunk: &ChunkId, pack: &PackId| indexed_in.get(chunk).is_some_and(|p| p != pack);

        // Every pack in one parallel pass (pieces of all packs share the
        // threads); what each found is then sorted out in order.
        let passes = verify_all(&pack_ids, &pack_path, tracker);
        let mut left_unreadable = HashSet::new();
        for (id, pass) in pack_ids.iter().zip(passes) {
            let path = pack_path(id);
            let pass = match pass {
                Ok(pass) => pass,
                // Consolidated by another process since `packs/` was listed:
                // its chunks are in a newer pack.
                Err(Error::Io { source, .. })
                    if !repair && source.kind() == std::io::ErrorKind::NotFound =>
                {
                    continue;
                }
                Err(err) => {
                    // A failing disk, say: reported, and the other packs are
                    // still checked. Nothing of it can be copied out, and it
                    // may read again later: repair leaves it where it is.
                    check
                        .problems
                        .push((path, format!("cannot be read: {err}")));
                    if let Some(IdxState::Good(index)) = indexes.get(id) {
                        left_unreadable.extend((0..index.len()).map(|i| index.id_at(i)));
                    }
                    continue;
                }
            };
            check.bytes_checked += pass.len;
            // A pack is named by the hash of its bytes: this catches a change
            // anywhere, even one the frames' own checks let through (a flip in
            // a zstd header field that does not alter the output, say).
            let named = pass.hash;
            let mut scanned = Scanned::new(&path, pass, &mut check.problems);
            if named != *id && !scanned.damaged {
                scanned.damaged = true;
                check.problems.push((
                    path.clone(),
                    "the pack's bytes do not hash to its name, though every frame verifies".into(),
                ));
            }
            check.chunks_checked += scanned.chunks.iter().filter(|f| f.verified).count() as u64;
            let state = indexes.get(id);
            let mut index_wrong = matches!(state, Some(IdxState::Bad | IdxState::Unreadable));
            if let Some(IdxState::Good(index)) = state {
                index_wrong = check_records(index, &scanned, &idx_path(id), &mut check);
            }
            if !repair {
                if state.is_none() {
                    let unindexed = scanned
                        .chunks
                        .iter()
                        .map(|f| f.id)
                        .filter(|c| !indexed_in.contains_key(c))
                        .collect();
                    check.orphans.push((path, unindexed));
                }
                continue;
            }
            if scanned.damaged {
                let bytes = fs_err::read(&path).map_err(|e| Error::io("read", &path, e))?;
                self.salvage(&path, &bytes, &scanned, |c| elsewhere(c, id), &mut check)?;
            } else if index_wrong || state.is_none() {
                let mut records: Vec<_> = scanned.chunks.iter().map(|f| (f.id, f.loc)).collect();
                let idx = idx_path(id);
                let moved = if matches!(state, Some(IdxState::Unreadable)) {
                    let to = quarantine(&self.root, &idx)?;
                    format!("; the unreadable one moved to '{}'", to.display())
                } else {
                    String::new()
                };
                durable::write_atomic(&self.tmp_dir(), &idx, &index::encode(&mut records))?;
                check.repaired.push((
                    idx,
                    format!(
                        "index rebuilt from its pack ({} chunks){moved}",
                        records.len()
                    ),
                ));
            }
        }
        self.finish_combined(&indexes, repair, &mut check)?;
        check.unreadable.extend(left_unreadable);
        Ok(check)
    }

    /// Checks the combined index; with `repair`, rebuilds it if it is wrong
    /// or anything else was repaired.
    fn finish_combined(
        &self,
        indexes: &HashMap<PackId, IdxState>,
        repair: bool,
        check: &mut PackCheck,
    ) -> Result<()> {
        let combined_wrong = self.check_combined(indexes, check);
        if repair {
            check.unreadable.clear();
            if combined_wrong || !check.repaired.is_empty() {
                // Packs and indexes may have been rewritten or moved: the
                // combined index is rebuilt from what is there now.
                *self.write_committed() = self.fresh_view()?;
                self.rewrite_combined(Rewrite::Rebuild, &HashSet::new())?;
                check.repaired.push((
                    layout::combined_index(&self.root),
                    "combined index rebuilt from the packs' indexes".into(),
                ));
            }
        }
        Ok(())
    }

    /// Checks the combined index, if there is one: its checksum and order,
    /// and that it agrees with the good indexes of the packs it covers (each
    /// of its records is theirs, each of their chunks is in it). Packs it
    /// names that are not in `indexes` are not judged (written or removed by
    /// another process since `packs/` was listed). Returns whether it is
    /// wrong.
    fn check_combined(&self, indexes: &HashMap<PackId, IdxState>, check: &mut PackCheck) -> bool {
        let path = layout::combined_index(&self.root);
        let bytes = match std::fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return false,
            Err(e) => {
                check.problems.push((path, format!("cannot be read: {e}")));
                return true;
            }
            Ok(bytes) => bytes,
        };
        check.bytes_checked += bytes.len() as u64;
        let combined = match CombinedIndex::new(bytes) {
            Ok(combined) => combined,
            Err(reason) => {
                check.problems.push((path, reason));
                return true;
            }
        };
        if let Err(reason) = combined.verify() {
            check.problems.push((path, reason));
            return true;
        }
        let good = |p: usize| match indexes.get(&combined.pack_at(p).id) {
            Some(IdxState::Good(index)) => Some(index),
            _ => None,
        };
        let mut wrong = Vec::new();
        for i in 0..combined.len() {
            let id = combined.id_at(i);
            let Some(index) = good(combined.pack_of(i)) else {
                continue;
            };
            let agrees = index
                .find(&id)
                .is_some_and(|at| index.location_at(at) == combined.location_at(i));
            if !agrees {
                wrong.push(format!(
                    "record {i} ({id}) disagrees with the index of pack {}",
                    combined.pack_at(combined.pack_of(i)).id
                ));
            }
        }
        for p in 0..combined.pack_count() {
            let Some(index) = good(p) else { continue };
            let missing = (0..index.len())
                .filter(|&i| combined.find(&index.id_at(i)).is_none())
                .count();
            if missing > 0 {
                wrong.push(format!(
                    "{missing} chunks of pack {} are not in it",
                    combined.pack_at(p).id
                ));
            }
        }
        let any = !wrong.is_empty();
        let shown = wrong.len().min(5);
        for reason in wrong.drain(..shown) {
            check.problems.push((path.clone(), reason));
        }
        if !wrong.is_empty() {
            check
                .problems
                .push((path, format!("and {} more disagreements", wrong.len())));
        }
        any
    }

    /// Reads and verifies every index; an index whose pack is missing is
    /// reported (and with `repair` quarantined) and left out of the result.
    fn check_indexes(
        &self,
        idx_ids: &[PackId],
        pack_ids: &[PackId],
        repair: bool,
        check: &mut PackCheck,
    ) -> Result<HashMap<PackId, IdxState>> {
        let idx_path = |id: &PackId| self.packs_dir().join(layout::index_file(id));
        let mut indexes = HashMap::new();
        for id in idx_ids {
            let path = idx_path(id);
            let state = match std::fs::read(&path) {
                // Consolidated by another process since `packs/` was listed.
                Err(err) if !repair && err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(err) => {
                    // A failing disk, say: repair rebuilds it from its pack.
                    check
                        .problems
                        .push((path.clone(), format!("cannot be read: {err}")));
                    IdxState::Unreadable
                }
                Ok(bytes) => {
                    check.bytes_checked += bytes.len() as u64;
                    match Index::new(bytes) {
                        Err(reason) => {
                            check
                                .problems
                                .push((path.clone(), format!("bad index header: {reason}")));
                            IdxState::Bad
                        }
                        Ok(index) => match index.verify() {
                            Err(reason) => {
                                check.problems.push((path.clone(), reason));
                                IdxState::Bad
                            }
                            Ok(()) => IdxState::Good(index),
                        },
                    }
                }
            };
            if pack_ids.binary_search(id).is_err() {
                check.problems.push((
                    path.clone(),
                    "index without its pack: the chunks it names are lost".into(),
                ));
                if repair {
                    let to = quarantine(&self.root, &path)?;
                    check
                        .repaired
                        .push((path, format!("moved to '{}'", to.display())));
                }
                continue;
            }
            indexes.insert(*id, state);
        }
        Ok(indexes)
    }

    /// Copies the chunks of the damaged pack at `path` that still verify (and
    /// that no other pack indexes) into a new pack, then moves the damaged
    /// pack and its index to `quarantine/`.
    fn salvage(
        &self,
        path: &Path,
        bytes: &[u8],
        scanned: &Scanned,
        elsewhere: impl Fn(&ChunkId) -> bool,
        check: &mut PackCheck,
    ) -> Result<()> {
        let (frames, _) = pack::frames(bytes);
        let mut repacker = Repacker::new(self);
        let mut copied = HashSet::new();
        for frame in &frames {
            let Ok(raw) = frame.decode_verified(bytes) else {
                continue;
            };
            let mut at = 0usize;
            for &(chunk, len) in &frame.header.chunks {
                let data = raw.get(at..at + len as usize).unwrap_or_default();
                at += len as usize;
                if !elsewhere(&chunk) && copied.insert(chunk) {
                    repacker.add_chunk(chunk, data)?;
                }
            }
        }
        let written = repacker.finish()?;
        let lost = scanned
            .chunks
            .iter()
            .filter(|f| !f.verified && !elsewhere(&f.id))
            .count();
        let idx = path.with_extension(layout::INDEX_EXT);
        if idx.exists() {
            let to = quarantine(&self.root, &idx)?;
            check
                .repaired
                .push((idx, format!("moved to '{}'", to.display())));
        }
        let to = quarantine(&self.root, path)?;
        let into = written
            .iter()
            .map(|p| layout::pack_file(&p.id))
            .collect::<Vec<_>>()
            .join(", ");
        check.repaired.push((
            path.to_path_buf(),
            format!(
                "damaged pack moved to '{}'; {} chunks that verify copied to [{into}]; \
                 {lost} chunks of its frame tables lost (and any after the damage)",
                to.display(),
                written.iter().map(|p| p.chunks).sum::<u64>(),
            ),
        ));
        Ok(())
    }
}

impl Scanned {
    /// Sorts out what one pass over the pack at `path` found, noting each
    /// problem in pack order.
    fn new(path: &Path, pass: PackPass, problems: &mut Vec<(PathBuf, String)>) -> Self {
        let mut damaged = false;
        if let Err((offset, reason)) = pass.end {
            damaged = true;
            problems.push((
                path.to_path_buf(),
                format!("at offset {offset}: {reason}; whatever follows is unreadable"),
            ));
        }
        let count = pass.frames.iter().map(|f| f.header.chunks.len()).sum();
        let mut chunks = Vec::with_capacity(count);
        for (frame, result) in pass.frames.iter().zip(pass.results) {
            let ok = match result {
                Ok(()) => true,
                Err(reason) => {
                    damaged = true;
                    problems.push((
                        path.to_path_buf(),
                        format!("frame at offset {}: {reason}", frame.start),
                    ));
                    false
                }
            };
            chunks.extend(frame.locations().map(|(id, loc)| Found {
                id,
                loc,
                verified: ok,
            }));
        }
        // Stable: of a chunk found twice, the first place comes first.
        chunks.par_sort_by(|a, b| a.id.cmp(&b.id));
        chunks.dedup_by(|later, first| {
            let same = later.id == first.id;
            if same {
                first.verified |= later.verified;
            }
            same
        });
        Self {
            len: pass.len,
            chunks,
            damaged,
        }
    }
}

/// Checks every record of `index` (at `idx`) against the pack it indexes,
/// noting each problem, and every chunk it names that does not read back;
/// returns whether any record is wrong.
fn check_records(
    index: &Index<Vec<u8>>,
    scanned: &Scanned,
    idx: &Path,
    check: &mut PackCheck,
) -> bool {
    let mut wrong = false;
    // Both are sorted by id (a good index is in strict order): walk them
    // side by side.
    let mut found = scanned.chunks.iter().peekable();
    for i in 0..index.len() {
        let chunk = index.id_at(i);
        while found.next_if(|f| f.id < chunk).is_some() {}
        let here = found.peek().filter(|f| f.id == chunk);
        if let Some(reason) = record_problem(index, i, scanned.len, here.map(|f| &f.loc)) {
            check.problems.push((idx.to_path_buf(), reason));
            wrong = true;
        }
        if !here.is_some_and(|f| f.verified) {
            check.unreadable.insert(chunk);
        }
    }
    wrong
}

/// What is wrong with record `i` of `index`, checked against its pack of
/// `pack_len` bytes, which holds the chunk at `found` (if it does).
fn record_problem(
    index: &Index<Vec<u8>>,
    i: usize,
    pack_len: u64,
    found: Option<&Location>,
) -> Option<String> {
    let chunk = index.id_at(i);
    let Some(loc) = index.location_at(i) else {
        return Some(format!("record {i} ({chunk}) has an unknown codec"));
    };
    if let Err(reason) = loc.check(pack_len) {
        return Some(format!("record {i} ({chunk}): {reason}"));
    }
    match found {
        Some(found) if *found == loc => None,
        Some(found) => Some(format!(
            "record {i} places {chunk} at payload offset {}, the pack holds it at {}",
            loc.payload_offset, found.payload_offset
        )),
        None => Some(format!(
            "record {i} names {chunk}, which no readable frame of the pack holds"
        )),
    }
}

/// The ids of the packs and of the indexes in `dir`, each sorted.
fn list_packs(dir: &Path) -> Result<(Vec<PackId>, Vec<PackId>)> {
    let (mut pack_ids, mut idx_ids) = (Vec::new(), Vec::new());
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io("read directory", dir, e))? {
        let entry = entry.map_err(|e| Error::io("read directory", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        match layout::parse_pack_dir_name(name) {
            Some((id, false)) => pack_ids.push(id),
            Some((id, true)) => idx_ids.push(id),
            None => {}
        }
    }
    pack_ids.sort();
    idx_ids.sort();
    Ok((pack_ids, idx_ids))
}

/// Moves `path` into `<root>/quarantine/` (under a new name if taken);
/// returns where it went.
fn quarantine(root: &Path, path: &Path) -> Result<PathBuf> {
    let dir = layout::quarantine(root);
    durable::create_dir(&dir)?;
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let mut to = dir.join(&name);
    let mut n = 1;
    while to.exists() {
        to = dir.join(format!("{name}.{n}"));
        n += 1;
    }
    durable::rename_durable(path, &to)?;
    if let Some(from_dir) = path.parent() {
        durable::sync_dir(from_dir)?;
    }
    Ok(to)
}
