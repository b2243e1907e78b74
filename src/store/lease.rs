//! Leases: what keeps the chunks a live process has put from an online
//! garbage collection, and the gc's side of the protocol (its generation and
//! its intent).
//!
//! Garbage collection runs while other processes read and write the store
//! (`tree::gc`). What no root (tag, cache entry, pin) reaches is garbage,
//! except what a live writer has put, flushed or not, tagged or not yet.
//! The protection is a *lease*, one file per handle that has put something,
//! `leases/<pid>-<n>.lease`: the 32-byte ids of the chunks (and objects) it
//! put, appended as it puts them. Its owner holds it locked (`flock`,
//! exclusive) from its creation (in `tmp/`, locked, then renamed into
//! `leases/`) until the handle is dropped, so a lease that gc can lock is
//! stale: its process is gone (or closed the store), and it protects nothing
//! from a gc that starts after that (everything the process tagged it tagged
//! before it went). Such a lease is removed by the next gc; a handle that is
//! dropped while no gc runs removes its own.
//!
//! What is recorded, and when, so that gc never misses an id it must keep:
//! - a chunk found already committed (deduplicated against) is recorded
//!   before the put that found it returns, and a put that finds a gc has
//!   changed phase meanwhile checks its finds again (below);
//! - a chunk written anew is recorded when its pack is committed, before the
//!   pack's index is written (no gc can see the pack before that);
//! - ids referenced without being put (a stat-cache hit, a chunk a copy
//!   skips) go through [`Store::hold`], which records them and then checks
//!   they are still stored outside what a gc may delete.
//!
//! The race that matters is a writer that finds chunk X already stored in
//! pack P and references it, while a gc that found X dead is about to delete
//! P. The gc publishes which packs it may delete (`leases/gc.intent`) and
//! then makes the generation odd (`leases/gc.gen`, a file one byte longer at
//! each change: its length is the generation, so a writer sees any change
//! with one `fstat` and no change is ever undone); it then reads every lease
//! again (the *fence*), keeps any pack of its intent that holds an id leased
//! meanwhile, deletes, and makes the generation even. A writer that found X
//! records it and then reads the generation:
//! - if its record precedes the gc's fence, the gc reads it and keeps P;
//! - if it follows, the writer's read of the generation follows the intent:
//!   either the generation it started with was already odd (its view then
//!   counted P's chunks as not stored, see `committed.rs`, and it wrote X
//!   anew), or it changed, and the writer checks each find again in a view
//!   that counts the intent's packs as not stored (or that no longer has P),
//!   storing X anew if need be, from the bytes it still holds.
//!
//! So what a live writer put is never collected; content that only a ref
//! written by a process that did not put it reaches, while a gc is between
//! its walk and its deletions, is not covered (`Store::hold` covers the
//! callers in this crate; see `docs/ARCHITECTURE.md`).

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use rustix::fs::FlockOperation;

use super::lock::{self, DirLock};
use super::{Store, layout};
use crate::error::{Error, Result};
use crate::fsutil::{durable, fault};
use crate::id::{ChunkId, PackId};

/// One handle's lease: created on its first record.
#[derive(Default)]
pub(crate) struct Lease {
    file: Mutex<Option<(File, PathBuf)>>,
    /// The ids already in the lease file (each is written once).
    leased: Mutex<HashSet<ChunkId>>,
    /// `leases/gc.gen`, once it exists.
    generation: OnceLock<File>,
}

/// Keeps a root and all it reaches from online garbage collection while it
/// lives: made by [`Store::lease_root`](crate::Store::lease_root). Dropping
/// it ends the protection (its file is removed, or, while a gc runs, left
/// for the next gc to remove); so does the death of its process.
#[derive(Debug)]
#[must_use = "the root is kept only while its lease lives"]
pub struct RootLease {
    id: ChunkId,
    /// Held locked while the lease lives.
    _file: File,
    path: PathBuf,
    /// `leases/`, whose lock a running gc holds.
    leases: PathBuf,
}

impl RootLease {
    /// The root it keeps.
    #[must_use]
    pub fn id(&self) -> ChunkId {
        self.id
    }
}

impl Drop for RootLease {
    fn drop(&mut self) {
        // As a handle's lease: removed unless a gc runs (which may count on
        // it; the next gc removes it once it is unlocked).
        if let Ok(Some(_gc)) = DirLock::try_exclusive(&self.leases) {
            let _ =
                fault::check("remove", &self.path).and_then(|()| std::fs::remove_file(&self.path));
        }
    }
}

/// What gc read from the leases.
#[derive(Debug, Default)]
pub(crate) struct LeaseScan {
    /// Every id leased (read only when asked for).
    pub(crate) ids: HashSet<ChunkId>,
    /// Every root leased (`*.root`): kept with what it reaches.
    pub(crate) roots: HashSet<ChunkId>,
    /// Put leases whose owner holds them.
    pub(crate) live: u64,
    /// Stale leases removed.
    pub(crate) removed: u64,
}

/// Where the calling handle's own lease ended when a gc started: what it put
/// before that is not protected from that gc (see [`Store::gc`](crate::Store::gc)).
#[derive(Debug, Clone, Default)]
pub(crate) struct OwnLease {
    path: Option<PathBuf>,
    len: u64,
}

/// Creates `leases/` (durably) and opens `leases/gc.gen` for appending,
/// creating it if need be (never truncating it).
fn open_generation(root: &std::path::Path) -> Result<File> {
    durable::create_dir(&layout::leases(root))?;
    let path = layout::gc_generation(root);
    let site = if path.exists() { "write" } else { "create" };
    fault::check(site, &path)
        .and_then(|()| File::options().append(true).create(true).open(&path))
        .map_err(|e| Error::io("open", &path, e))
}

fn parse_ids(bytes: &[u8], into: &mut HashSet<ChunkId>) {
    // A record being appended as the file is read may be cut short: it is
    // covered by its writer's check of the generation.
    for record in bytes.chunks_exact(32) {
        if let Ok(raw) = <[u8; 32]>::try_from(record) {
            into.insert(ChunkId::from_bytes(raw));
        }
    }
}

/// The lease: writers' side
impl Store {
    /// The gc generation: even while no gc is deleting, odd while one is
    /// (then `leases/gc.intent` names the packs it may delete).
    pub(crate) fn gc_generation(&self) -> Result<u64> {
        let path = layout::gc_generation(&self.root);
        if let Some(file) = self.lease.generation.get() {
            return file
                .metadata()
                .map(|m| m.len())
                .map_err(|e| Error::io("stat", &path, e));
        }
        match File::open(&path) {
            Ok(file) => {
                let len = file
                    .metadata()
                    .map_err(|e| Error::io("stat", &path, e))?
                    .len();
                let _ = self.lease.generation.set(file);
                Ok(len)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(Error::io("open", &path, e)),
        }
    }

    /// The packs the running gc may delete (empty if the generation is even).
    pub(crate) fn gc_intent(&self, generation: u64) -> Result<HashSet<PackId>> {
        let mut doomed = HashSet::new();
        if generation.is_multiple_of(2) {
            return Ok(doomed);
        }
        let path = layout::gc_intent(&self.root);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(doomed),
            Err(e) => return Err(Error::io("read", &path, e)),
        };
        for record in bytes.chunks_exact(32) {
            if let Ok(raw) = <[u8; 32]>::try_from(record) {
                doomed.insert(PackId::from_bytes(raw));
            }
        }
        Ok(doomed)
    }

    /// Brings the view up to the current gc generation (refreshing it if a gc
    /// changed phase since it was built); returns the generation the view is
    /// at.
    pub(crate) fn sync_gc_state(&self) -> Result<u64> {
        let generation = self.gc_generation()?;
        if self.read_committed().gc_generation == generation {
            return Ok(generation);
        }
        self.refresh()?;
        Ok(self.read_committed().gc_generation)
    }

    /// Appends `ids` to this handle's lease (creating it on first use).
    pub(crate) fn lease_ids(&self, ids: impl IntoIterator<Item = ChunkId>) -> Result<()> {
        let mut bytes = Vec::new();
        {
            let mut leased = self
                .lease
                .leased
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for id in ids {
                if leased.insert(id) {
                    bytes.extend_from_slice(id.as_bytes());
                }
            }
        }
        if bytes.is_empty() {
            return Ok(());
        }
        let mut slot = self
            .lease
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(self.create_lease()?);
        }
        let Some((file, path)) = slot.as_mut() else {
            return Ok(());
        };
        fault::check("write", path)
            .and_then(|()| file.write_all(&bytes))
            .map_err(|e| Error::io("write", path.as_path(), e))
    }

    /// A new lease file, locked, renamed into `leases/`; creates `leases/`
    /// and `leases/gc.gen` if need be.
    fn create_lease(&self) -> Result<(File, PathBuf)> {
        self.create_lease_file(layout::LEASE_EXT, &[])
    }

    /// A new lease file `leases/<name>.<ext>` holding `ids` (written before
    /// it is renamed into place), locked by the returned file.
    fn create_lease_file(&self, ext: &str, ids: &[u8]) -> Result<(File, PathBuf)> {
        let dir = layout::leases(&self.root);
        if self.lease.generation.get().is_none() {
            let _ = self.lease.generation.set(open_generation(&self.root)?);
        }
        let tmp = durable::unique_tmp_path(&self.tmp_dir(), "lease");
        let file = fault::check("create", &tmp)
            .and_then(|()| {
                File::options()
                    .append(true)
                    .read(true)
                    .create_new(true)
                    .open(&tmp)
            })
            .map_err(|e| Error::io("create", &tmp, e))?;
        lock::take(&file, &tmp, FlockOperation::LockExclusive)?;
        if !ids.is_empty()
            && let Err(e) = fault::check("write", &tmp).and_then(|()| (&file).write_all(ids))
        {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::io("write", &tmp, e));
        }
        let name = tmp
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let path = dir.join(format!("{name}.{ext}"));
        if let Err(e) = fault::check_rename(&tmp, &path).and_then(|()| std::fs::rename(&tmp, &path))
        {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::io("rename into place", &path, e));
        }
        Ok((file, path))
    }

    /// Records in this handle's lease those of `ids` that are stored, then
    /// checks that each is still stored outside the packs a running gc may
    /// delete (waiting for that gc's deletions if need be); returns those
    /// that are not (the caller stores them again, or reports them missing). The others the caller may reference: no gc
    /// collects them while this handle is open.
    pub(crate) fn hold(&self, ids: &[ChunkId]) -> Result<Vec<ChunkId>> {
        self.lease_ids(ids.iter().copied().filter(|id| self.contains(id)))?;
        self.sync_gc_state()?;
        let not_held = |id: &ChunkId| {
            !self.is_committed_to_stay(id) && !self.lock_pending().chunks.contains_key(id)
        };
        let mut out: Vec<ChunkId> = ids.iter().copied().filter(not_held).collect();
        if !out.is_empty() && !self.read_committed().gc_generation.is_multiple_of(2) {
            // In a pack a gc may delete, which it keeps if it read the lease
            // at its fence: wait for its deletions (it holds the `packs/`
            // lock until they are done) and look again.
            drop(DirLock::exclusive(&self.packs_dir())?);
            self.sync_gc_state()?;
            out.retain(not_held);
        }
        if !out.is_empty() && !self.read_committed().gc_generation.is_multiple_of(2) {
            // Still odd: that gc has not ended its deleting phase yet, or
            // was killed in it, and its intent would stand until the next
            // gc. Once no gc runs (its lock taken), a phase still open is a
            // killed gc's: end it as the next gc would, and look again.
            let _gc = DirLock::exclusive(&layout::leases(&self.root))?;
            if !self.gc_generation()?.is_multiple_of(2) {
                self.end_deleting()?;
            }
            self.sync_gc_state()?;
            out.retain(not_held);
        }
        Ok(out)
    }

    /// Keeps `id` and everything it reaches from online garbage collection
    /// for as long as the returned [`RootLease`] lives: an image, layer or
    /// snapshot id keeps that object and all it names (layers, trees, the
    /// chunks of their files), any other chunk id keeps that chunk. For a
    /// program that reads an image no tag names (by id, say) while gc may
    /// run beside it. Like the leases of writers, it is a file in `leases/`
    /// that its process holds locked: it lapses when the lease is dropped or
    /// the process dies, and the next gc removes it.
    ///
    /// Take it while the root is still stored whole (before removing the
    /// tag that named it, or as soon as you have its id): what a gc deleted
    /// before the lease is not brought back. Once it returns, no gc collects
    /// anything the root reaches that is stored then; a gc that was deleting
    /// as the lease was taken is waited for.
    ///
    /// # Errors
    /// [`Error::ChunkNotFound`] if the store does not hold `id` (any more);
    /// [`Error::Io`] naming the lease file that could not be written.
    pub fn lease_root(&self, id: impl Into<ChunkId>) -> Result<RootLease> {
        let id = id.into();
        let before = self.gc_generation()?;
        let (file, path) = self.create_lease_file(layout::ROOT_LEASE_EXT, id.as_bytes())?;
        let lease = RootLease {
            id,
            _file: file,
            path,
            leases: layout::leases(&self.root),
        };
        if before != self.gc_generation()? || !before.is_multiple_of(2) {
            // A gc was deleting as the lease was taken, and may have read
            // the leases for the last time (its fence) before it: wait for
            // its deletions (it holds the `packs/` lock until they are done).
            // Every gc after it reads the lease before it deletes.
            drop(DirLock::exclusive(&self.packs_dir())?);
            self.refresh()?;
        }
        if !self.contains(&id) {
            return Err(Error::ChunkNotFound {
                id,
                store: self.root.clone(),
            });
        }
        Ok(lease)
    }

    /// [`Store::hold`] of one id: whether it is held.
    pub(crate) fn hold_one(&self, id: &ChunkId) -> Result<bool> {
        Ok(self.hold(std::slice::from_ref(id))?.is_empty())
    }

    /// Where this handle's lease ends now.
    pub(crate) fn own_lease(&self) -> OwnLease {
        let slot = self
            .lease
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match slot.as_ref() {
            Some((file, path)) => OwnLease {
                path: Some(path.clone()),
                len: file.metadata().map_or(0, |m| m.len()),
            },
            None => OwnLease::default(),
        }
    }

    /// At drop: removes this handle's lease unless a gc is running (which
    /// may count on it; the next gc removes it then).
    pub(crate) fn release_lease(&self) {
        let taken = self
            .lease
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let Some((file, path)) = taken else {
            return;
        };
        if let Ok(Some(_gc)) = DirLock::try_exclusive(&layout::leases(&self.root)) {
            let _ = fault::check("remove", &path).and_then(|()| std::fs::remove_file(&path));
        }
        drop(file);
    }
}

/// The lease protocol: gc's side
impl Store {
    /// Takes the gc lock (`leases/`, the directory itself, exclusively),
    /// trying every 50 ms for up to `wait`; `None` if another gc holds it
    /// then. Creates `leases/` and `leases/gc.gen` if need be.
    pub(crate) fn gc_lock(&self, wait: std::time::Duration) -> Result<Option<DirLock>> {
        let dir = layout::leases(&self.root);
        if !layout::gc_generation(&self.root).exists() {
            open_generation(&self.root)?;
        }
        let deadline = std::time::Instant::now() + wait;
        loop {
            if let Some(lock) = DirLock::try_exclusive(&dir)? {
                return Ok(Some(lock));
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            std::thread::sleep(std::time::Duration::from_millis(50).min(deadline - now));
        }
    }

    /// Reads every lease in `leases/`, except what `own` says of this
    /// handle's. With `remove_stale`, a lease whose owner is gone is removed
    /// instead of read (at the start of a gc: its process tagged what it
    /// tagged before the gc read the roots). The ids of put leases are read
    /// only `with_ids` (root leases always are). The caller holds the gc
    /// lock, so no lease goes meanwhile but those it removes.
    pub(crate) fn read_leases(
        &self,
        remove_stale: bool,
        with_ids: bool,
        own: &OwnLease,
    ) -> Result<LeaseScan> {
        let dir = layout::leases(&self.root);
        let mut scan = LeaseScan::default();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(scan),
            Err(e) => return Err(Error::io("read directory", &dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("read directory", &dir, e))?;
            let path = entry.path();
            let ext = path.extension().and_then(|e| e.to_str());
            let is_root = ext == Some(layout::ROOT_LEASE_EXT);
            if ext != Some(layout::LEASE_EXT) && !is_root {
                continue;
            }
            let mut file = match File::open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("open", &path, e)),
            };
            let stale = lock::take(&file, &path, FlockOperation::NonBlockingLockShared)?;
            if stale && remove_stale {
                fault::check("remove", &path)
                    .and_then(|()| std::fs::remove_file(&path))
                    .or_else(|e| {
                        if e.kind() == std::io::ErrorKind::NotFound {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    })
                    .map_err(|e| Error::io("remove", &path, e))?;
                scan.removed += 1;
                continue;
            }
            if !stale && !is_root {
                scan.live += 1;
            }
            if !with_ids && !is_root {
                continue;
            }
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)
                .map_err(|e| Error::io("read", &path, e))?;
            let skip = if own.path.as_deref() == Some(path.as_path()) {
                usize::try_from(own.len)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len())
            } else {
                0
            };
            let into = if is_root {
                &mut scan.roots
            } else {
                &mut scan.ids
            };
            parse_ids(bytes.get(skip..).unwrap_or_default(), into);
        }
        Ok(scan)
    }

    /// Publishes the packs this gc may delete and makes the generation odd:
    /// from now on writers count them as not stored. An odd generation left
    /// by a gc that was killed is made even first.
    pub(crate) fn begin_deleting(&self, doomed: &[PackId]) -> Result<()> {
        if !self.gc_generation()?.is_multiple_of(2) {
            self.bump_generation()?;
        }
        let mut bytes = Vec::with_capacity(doomed.len() * 32);
        for id in doomed {
            bytes.extend_from_slice(id.as_bytes());
        }
        durable::write_atomic(&self.tmp_dir(), &layout::gc_intent(&self.root), &bytes)?;
        self.bump_generation()
    }

    /// Makes the generation even again once this gc's deletions are done.
    pub(crate) fn end_deleting(&self) -> Result<()> {
        if !self.gc_generation()?.is_multiple_of(2) {
            self.bump_generation()?;
        }
        let intent = layout::gc_intent(&self.root);
        match fault::check("remove", &intent).and_then(|()| std::fs::remove_file(&intent)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", &intent, e)),
        }
    }

    fn bump_generation(&self) -> Result<()> {
        let path = layout::gc_generation(&self.root);
        let mut file = open_generation(&self.root)?;
        fault::check("write", &path)
            .and_then(|()| file.write_all(b"."))
            .map_err(|e| Error::io("write", &path, e))
    }
}
