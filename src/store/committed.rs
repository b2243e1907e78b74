//! The committed packs as one handle sees them, and lookups in them.
//!
//! A handle's view is the combined index (`combined_index.rs`, with the packs
//! it covers) plus the *recent* packs, those written since the combined index
//! was last rebuilt, each looked up through its own mapped index. A lookup
//! asks the combined index (one binary search, whatever the number of packs),
//! then the recent packs, of which maintenance keeps few (`maintain.rs`).
//!
//! [`Store::refresh`] rebuilds the view from `packs/`: it lists the indexes,
//! reloads the combined index if another one was renamed into place, and
//! drops the packs that consolidation or gc removed. A combined index that
//! names a pack whose index is gone is stale (after a crash, say) and is not
//! used; one that is damaged is not used either; the view then asks every
//! pack's own index until maintenance writes a new one. The combined index
//! is a cache: nothing depends on it being there or right.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use super::combined_index::CombinedIndex;
use super::index::{Index, Location};
use super::mmap::{self, Mapped};
use super::{Store, layout};
use crate::error::{Error, Result};
use crate::id::{ChunkId, PackId};

/// One committed pack: its index (mapped when first needed; at once for a
/// recent pack) and its file (opened on first read).
pub(crate) struct Pack {
    pub(crate) id: PackId,
    /// Number in this process, for frame-cache keys.
    pub(crate) seq: u64,
    pub(crate) path: PathBuf,
    pub(crate) idx_path: PathBuf,
    index: OnceLock<Index<Mapped>>,
    file: OnceLock<(File, u64)>,
}

impl Pack {
    /// The open pack file and its length.
    pub(crate) fn file(&self) -> Result<&(File, u64)> {
        if let Some(f) = self.file.get() {
            return Ok(f);
        }
        let file = File::open(&self.path).map_err(|e| Error::io("open pack", &self.path, e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io("stat", &self.path, e))?
            .len();
        Ok(self.file.get_or_init(|| (file, len)))
    }

    /// The pack's own index, mapped on first use.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Corrupt`] naming the index.
    pub(crate) fn index(&self) -> Result<&Index<Mapped>> {
        if let Some(index) = self.index.get() {
            return Ok(index);
        }
        let file =
            File::open(&self.idx_path).map_err(|e| Error::io("open index", &self.idx_path, e))?;
        let mapped = mmap::map(&file, &self.idx_path)?;
        let index =
            Index::new(mapped).map_err(|reason| Error::corrupt(&self.idx_path, 0, reason))?;
        Ok(self.index.get_or_init(|| index))
    }

    /// `id` in the pack's index, if it is mapped.
    fn find(&self, id: &ChunkId) -> Option<Result<Location>> {
        let index = self.index.get()?;
        let i = index.find(id)?;
        Some(index.location_at(i).ok_or_else(|| {
            Error::corrupt(
                &self.idx_path,
                0,
                format!("record {i} has an unknown codec"),
            )
        }))
    }
}

/// What identifies one version of the combined index file: it is only ever
/// replaced by a rename, which gives a new inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }
}

/// The combined index in use, and the packs it covers in its table's order.
pub(crate) struct Combined {
    pub(crate) index: CombinedIndex<Mapped>,
    pub(crate) packs: Vec<Arc<Pack>>,
    stamp: Stamp,
}

/// The packs whose indexes are on disk, as this handle sees them.
#[derive(Default)]
pub(crate) struct Committed {
    pub(crate) combined: Option<Arc<Combined>>,
    /// Packs not covered by `combined`, their indexes mapped.
    pub(crate) recent: Vec<Arc<Pack>>,
    /// Every pack of the view.
    pub(crate) names: HashSet<PackId>,
    /// Why the combined index on disk is not in use (damaged or stale), if
    /// there is one and it is not: maintenance then writes a new one.
    pub(crate) combined_unusable: Option<String>,
    /// A combined index file found wrong by a read that its packs' own
    /// indexes answered: not used again.
    distrusted: Option<Stamp>,
    /// The gc generation this view was built at (`lease.rs`).
    pub(crate) gc_generation: u64,
    /// The packs a running gc may delete (empty unless `gc_generation` is
    /// odd): their chunks count as not stored for deduplication, so that a
    /// writer stores its own copy rather than reference one that may go.
    /// Reads still use them while they are there.
    pub(crate) doomed: HashSet<PackId>,
}

impl Committed {
    /// Every pack of the view: those of the combined index, then the recent.
    pub(crate) fn packs(&self) -> impl Iterator<Item = &Arc<Pack>> {
        self.combined
            .iter()
            .flat_map(|c| c.packs.iter())
            .chain(self.recent.iter())
    }
}

/// What `packs/` held when listed, and the combined index file then.
struct Listing {
    /// Packs with an index, sorted.
    indexed: Vec<PackId>,
    /// The combined index: its mapping checked, or why it cannot be used
    /// (`None` when there is none).
    combined: Option<std::result::Result<(CombinedIndex<Mapped>, Stamp), String>>,
    /// The stamp of the combined index file, whatever its state.
    stamp: Option<Stamp>,
}

/// The committed view
impl Store {
    /// Loads what other processes committed since this store was opened (or
    /// last refreshed), and forgets packs that consolidation removed (their
    /// chunks are in the packs that replaced them). Writers refresh by
    /// themselves when they flush, and a read that misses refreshes before
    /// it reports a chunk missing. An index whose header is damaged is
    /// skipped (its chunks read as missing) and remembered for
    /// [`Store::fsck`](crate::Store::fsck) to report.
    ///
    /// # Errors
    /// [`Error::Io`] if `packs/` cannot be listed or an index cannot be mapped.
    pub fn refresh(&self) -> Result<()> {
        let _serial = self
            .refreshing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let view = self.build_view(&self.read_committed())?;
        *self.write_committed() = view;
        Ok(())
    }

    /// Every index on disk loaded afresh, forgetting what was loaded before
    /// (after garbage collection or repair, packs may have gone or their
    /// indexes been rewritten).
    pub(crate) fn fresh_view(&self) -> Result<Committed> {
        self.bad_indexes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        self.build_view(&Committed::default())
    }

    /// The view of what `packs/` holds now, keeping what `old` had loaded of
    /// the packs that are still there.
    fn build_view(&self, old: &Committed) -> Result<Committed> {
        // The generation first: a gc that changes phase after it is read is
        // seen by the next sync (`Store::sync_gc_state`).
        let gc_generation = self.gc_generation()?;
        let doomed = self.gc_intent(gc_generation)?;
        let old_combined = old.combined.clone();
        let distrusted = old.distrusted;
        let old_packs: HashMap<PackId, Arc<Pack>> =
            old.packs().map(|p| (p.id, Arc::clone(p))).collect();
        let known = old_combined.as_ref().map(|c| c.stamp);
        let mut listing = self.list(known, distrusted)?;
        // A combined index naming a pack whose index is gone: another
        // process may be between renaming a new one and removing the packs
        // it replaced. Look again; if it is still so, it is stale.
        for _ in 0..2 {
            if !Self::is_stale(&listing, old_combined.as_deref()) {
                break;
            }
            listing = self.list(known, distrusted)?;
        }
        let stale = Self::is_stale(&listing, old_combined.as_deref());
        let (combined, unusable) = match listing.combined {
            _ if stale => (None, Some("it names packs that are gone".to_owned())),
            None if listing.stamp.is_some() && listing.stamp == known => (old_combined, None),
            None => (None, None),
            Some(Err(reason)) => (None, Some(reason)),
            Some(Ok((index, stamp))) => {
                let dir = self.packs_dir();
                let packs = (0..index.pack_count())
                    .map(|p| {
                        let id = index.pack_at(p).id;
                        old_packs
                            .get(&id)
                            .map_or_else(|| Arc::new(self.new_pack(&dir, id)), Arc::clone)
                    })
                    .collect();
                (
                    Some(Arc::new(Combined {
                        index,
                        packs,
                        stamp,
                    })),
                    None,
                )
            }
        };
        let covered: HashSet<PackId> = combined
            .iter()
            .flat_map(|c| c.packs.iter().map(|p| p.id))
            .collect();
        let mut recent = Vec::new();
        let mut to_load = Vec::new();
        for id in listing.indexed {
            if covered.contains(&id) {
                continue;
            }
            match old_packs.get(&id) {
                Some(pack) if pack.index.get().is_some() => recent.push(Arc::clone(pack)),
                _ => to_load.push(id),
            }
        }
        recent.extend(self.load_packs(to_load)?);
        let mut names = covered;
        names.extend(recent.iter().map(|p| p.id));
        Ok(Committed {
            combined,
            recent,
            names,
            combined_unusable: unusable,
            distrusted,
            gc_generation,
            doomed,
        })
    }

    /// Lists `packs/` and looks at the combined index, mapping it unless its
    /// stamp is `known` (then `combined` is `None` and `stamp` is `known`).
    fn list(&self, known: Option<Stamp>, distrusted: Option<Stamp>) -> Result<Listing> {
        let path = layout::combined_index(&self.root);
        let (combined, stamp) = match File::open(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, None),
            Err(e) => (Some(Err(format!("cannot be opened: {e}"))), None),
            Ok(file) => {
                let meta = file.metadata().map_err(|e| Error::io("stat", &path, e))?;
                let stamp = Stamp::of(&meta);
                if Some(stamp) == known {
                    (None, Some(stamp))
                } else if Some(stamp) == distrusted {
                    let why = "a read found it wrong".to_owned();
                    (Some(Err(why)), Some(stamp))
                } else {
                    let opened = mmap::map(&file, &path)
                        .map_err(|e| e.to_string())
                        .and_then(CombinedIndex::new)
                        .map(|index| (index, stamp));
                    (Some(opened), Some(stamp))
                }
            }
        };
        Ok(Listing {
            indexed: self.indexed_pack_ids()?,
            combined,
            stamp,
        })
    }

    /// Whether the combined index of `listing` (or `old`, if its file is
    /// unchanged) names a pack whose index is not in `packs/`.
    fn is_stale(listing: &Listing, old: Option<&Combined>) -> bool {
        let missing = |id: &PackId| listing.indexed.binary_search(id).is_err();
        match &listing.combined {
            Some(Ok((index, _))) => (0..index.pack_count()).any(|p| missing(&index.pack_at(p).id)),
            None if listing.stamp.is_some() => {
                old.is_some_and(|c| c.packs.iter().any(|p| missing(&p.id)))
            }
            _ => false,
        }
    }

    /// Every pack that has an `.idx` file in `packs/`, sorted.
    pub(crate) fn indexed_pack_ids(&self) -> Result<Vec<PackId>> {
        let dir = self.packs_dir();
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::io("read directory", &dir, e))? {
            let entry = entry.map_err(|e| Error::io("read directory", &dir, e))?;
            let name = entry.file_name();
            if let Some((id, true)) = name.to_str().and_then(layout::parse_pack_dir_name) {
                found.push(id);
            }
        }
        found.sort();
        Ok(found)
    }

    fn new_pack(&self, dir: &std::path::Path, id: PackId) -> Pack {
        Pack {
            id,
            seq: self.pack_seq.fetch_add(1, Ordering::Relaxed),
            path: dir.join(layout::pack_file(&id)),
            idx_path: dir.join(layout::index_file(&id)),
            index: OnceLock::new(),
            file: OnceLock::new(),
        }
    }

    /// Pack `id` with its index mapped.
    pub(crate) fn load_pack(&self, id: PackId) -> Result<Pack> {
        let pack = self.new_pack(&self.packs_dir(), id);
        pack.index()?;
        Ok(pack)
    }

    /// Loads the indexes of `ids`, skipping (and remembering) those whose
    /// header is damaged or that cannot be read (a failing disk, say), so
    /// that the store still opens and `fsck` can say what is wrong. Their
    /// chunks read as missing; gc leaves their packs alone (an index is
    /// there). An index removed since `packs/` was listed (consolidation
    /// replaced its pack) is skipped silently.
    fn load_packs(&self, ids: Vec<PackId>) -> Result<Vec<Arc<Pack>>> {
        let mut loaded = Vec::with_capacity(ids.len());
        for id in ids {
            let skipped = match self.load_pack(id) {
                Ok(pack) => {
                    loaded.push(Arc::new(pack));
                    continue;
                }
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                    continue;
                }
                Err(Error::Corrupt { path, reason, .. }) => (path, reason),
                // The process's own limits (open files, memory) say nothing
                // about the index: those fail the open.
                Err(Error::Io { path, source, .. })
                    if !matches!(
                        rustix::io::Errno::from_io_error(&source),
                        Some(
                            rustix::io::Errno::MFILE
                                | rustix::io::Errno::NFILE
                                | rustix::io::Errno::NOMEM
                        )
                    ) =>
                {
                    (path, format!("cannot be read: {source}"))
                }
                Err(other) => return Err(other),
            };
            let (path, reason) = skipped;
            let mut bad = self
                .bad_indexes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !bad.iter().any(|(p, _)| *p == path) {
                bad.push((path, reason));
            }
        }
        Ok(loaded)
    }

    pub(crate) fn read_committed(&self) -> std::sync::RwLockReadGuard<'_, Committed> {
        self.committed
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn write_committed(&self) -> std::sync::RwLockWriteGuard<'_, Committed> {
        self.committed
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds the pack this process has just indexed to the view.
    pub(crate) fn add_recent(&self, pack: Pack) {
        let _serial = self
            .refreshing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut committed = self.write_committed();
        if committed.names.insert(pack.id) {
            committed.recent.push(Arc::new(pack));
        }
    }

    /// Snapshot of the committed packs.
    pub(crate) fn committed_packs(&self) -> Vec<Arc<Pack>> {
        self.read_committed().packs().cloned().collect()
    }

    /// Stops using the combined index file in use (a read found it wrong):
    /// every pack is asked through its own index until a new one is written.
    pub(crate) fn distrust_combined(&self) {
        let _serial = self
            .refreshing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut committed = self.write_committed();
        let Some(combined) = committed.combined.take() else {
            return;
        };
        committed.distrusted = Some(combined.stamp);
        committed.combined_unusable = Some("a read found it wrong".into());
        let mut packs: Vec<Arc<Pack>> = combined
            .packs
            .iter()
            .filter(|p| p.index().is_ok())
            .cloned()
            .collect();
        packs.append(&mut committed.recent);
        committed.recent = packs;
    }
}

/// Lookups
impl Store {
    /// The committed pack and location of `id`.
    pub(crate) fn find_committed(&self, id: &ChunkId) -> Option<(Arc<Pack>, Result<Location>)> {
        let committed = self.read_committed();
        if let Some(combined) = &committed.combined
            && let Some(i) = combined.index.find(id)
        {
            let path = || layout::combined_index(&self.root);
            let p = combined.index.pack_of(i);
            let loc = combined.index.location_at(i).ok_or_else(|| {
                Error::corrupt(path(), 0, format!("record {i} has an unknown codec"))
            });
            return match combined.packs.get(p) {
                Some(pack) => Some((Arc::clone(pack), loc)),
                // Damaged: the packs' own indexes answer (see `read_chunk`).
                None => None,
            };
        }
        self.search_recent(&committed.recent, |pack| {
            pack.find(id).map(|loc| (Arc::clone(pack), loc))
        })
    }

    /// Whether `id` is committed (in any pack of the view).
    pub(crate) fn is_committed(&self, id: &ChunkId) -> bool {
        self.committed_where(id, false)
    }

    /// Whether `id` is committed in a pack that no running gc may delete:
    /// what a writer may deduplicate against (`store::lease`).
    pub(crate) fn is_committed_to_stay(&self, id: &ChunkId) -> bool {
        self.committed_where(id, true)
    }

    fn committed_where(&self, id: &ChunkId, to_stay: bool) -> bool {
        let committed = self.read_committed();
        let doomed = &committed.doomed;
        let doomed = (to_stay && !doomed.is_empty()).then_some(doomed);
        if let Some(combined) = &committed.combined
            && let Some(i) = combined.index.find(id)
        {
            let stays = |doomed: &HashSet<PackId>| {
                combined
                    .packs
                    .get(combined.index.pack_of(i))
                    .is_some_and(|p| !doomed.contains(&p.id))
            };
            if doomed.is_none_or(stays) {
                return true;
            }
            // The combined index names one copy, in a doomed pack: another
            // may be in a pack that stays (a slow path, while a gc deletes).
            if let Some(doomed) = doomed
                && committed.packs().any(|p| {
                    !doomed.contains(&p.id) && p.index().is_ok_and(|index| index.find(id).is_some())
                })
            {
                return true;
            }
        }
        self.search_recent(&committed.recent, |pack| {
            if doomed.is_some_and(|d| d.contains(&pack.id)) {
                return None;
            }
            pack.index.get().and_then(|index| index.find(id))
        })
        .is_some()
    }

    /// `id` looked up in every pack's own index, the combined index aside;
    /// the slow path of a read that the view could not serve.
    pub(crate) fn find_in_pack_indexes(
        &self,
        id: &ChunkId,
    ) -> Option<(Arc<Pack>, Result<Location>)> {
        let packs = self.committed_packs();
        packs.into_iter().find_map(|pack| {
            let index = pack.index().ok()?;
            let i = index.find(id)?;
            let loc = index.location_at(i).ok_or_else(|| {
                Error::corrupt(
                    &pack.idx_path,
                    0,
                    format!("record {i} has an unknown codec"),
                )
            });
            Some((pack, loc))
        })
    }

    /// The first answer of `find` among the recent packs: the pack that
    /// answered last is asked first (the chunks of one file or tree mostly
    /// sit in one pack), then the others, newest first.
    fn search_recent<T>(
        &self,
        recent: &[Arc<Pack>],
        find: impl Fn(&Arc<Pack>) -> Option<T>,
    ) -> Option<T> {
        let hint = self.last_hit.load(Ordering::Relaxed);
        if let Some(found) = recent.get(hint).and_then(&find) {
            return Some(found);
        }
        let (i, found) = recent
            .iter()
            .enumerate()
            .rev()
            .filter(|(i, _)| *i != hint)
            .find_map(|(i, pack)| find(pack).map(|found| (i, found)))?;
        self.last_hit.store(i, Ordering::Relaxed);
        Some(found)
    }
}
