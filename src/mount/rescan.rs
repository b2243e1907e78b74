//! The copy backend's quick rescan: a walk of the target that `lstat`s every
//! entry and reuses, for each entry whose stat is what it was at the previous
//! walk, that walk's entry, without reading its content or listing its
//! xattrs. Any change of content, mode, owner, xattrs or name moves an inode's
//! change time, which no system call sets, so an entry whose device, inode,
//! size, mode, owner, link count, mtime and ctime are all unchanged is
//! unchanged.
//!
//! The racy case (git's): an entry changed in the same tick of the
//! filesystem's clock as the walk stat'ed it keeps its ctime. So the walk
//! notes the clock when it starts (the change time of a probe file made in
//! the container's state); entries whose ctime is not older are recorded as
//! racy and read again by the next walk.
//!
//! What this walk does not handle — a changed hard-linked file, a changed
//! device, fifo or socket, an entry that vanishes while walked, a record that
//! does not decode or names a tree the store lacks — makes it give up, and
//! the caller does a full [`Store::scan`](crate::Store::scan).

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use rayon::prelude::*;
use rustix::fs::{FileType, Stat};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil::confine::ConfinedDir;
use crate::id::SnapshotId;
use crate::store::Store;
use crate::tree::Children;
use crate::tree::snapshot;
use crate::tree::{Entry, EntryKind, Metadata, Snapshot, Timestamp, TreePath};

/// The file, in the container's state, holding the last walk's record.
const RECORD: &str = "copy-stat";
/// The first bytes of the record, with its version (a record of another
/// version does not decode, and the walk gives up once).
const MAGIC: &[u8] = b"layerstore-copy-stat 2\n";

/// What the walk compares of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Key {
    dev: u64,
    ino: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u64,
    size: u64,
    mtime: Timestamp,
    ctime: Timestamp,
}

#[allow(
    clippy::unnecessary_cast,
    reason = "the widths of struct stat's fields differ by architecture"
)]
impl Key {
    fn of(st: &Stat) -> Self {
        Self {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            mode: st.st_mode as u32,
            uid: st.st_uid,
            gid: st.st_gid,
            nlink: st.st_nlink as u64,
            size: u64::try_from(st.st_size).unwrap_or(0),
            mtime: Timestamp::new(st.st_mtime as i64, st.st_mtime_nsec as u32),
            ctime: Timestamp::new(st.st_ctime as i64, st.st_ctime_nsec as u32),
        }
    }
}

/// The last walk: the tree it found (stored) and the key of each of its
/// entries, in the tree's order; `racy` keys are not trusted.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    tree: SnapshotId,
    keys: Vec<(Key, bool)>,
}

/// The change time a new file gets now, in `dir`.
fn clock(dir: &Path) -> Result<Timestamp> {
    let probe = dir.join(".clock-probe");
    let file = std::fs::File::create(&probe).map_err(|e| Error::io("create", &probe, e))?;
    let st = rustix::fs::fstat(&file).map_err(|e| Error::io("stat", &probe, e.into()))?;
    drop(file);
    let _ = std::fs::remove_file(&probe);
    Ok(Key::of(&st).ctime)
}

fn load(state: &Path) -> Option<Record> {
    let bytes = std::fs::read(state.join(RECORD)).ok()?;
    postcard::from_bytes(bytes.strip_prefix(MAGIC)?).ok()
}

fn save(state: &Path, tree: SnapshotId, keys: Vec<(Key, bool)>) -> Result<()> {
    let record = Record { tree, keys };
    let mut bytes = MAGIC.to_vec();
    bytes
        .extend(postcard::to_allocvec(&record).map_err(|e| {
            Error::InvalidArgument(format!("cannot encode the walk's record: {e}"))
        })?);
    // A cache: not fsynced; a torn or lost one only makes the next walk give up.
    let tmp = state.join(format!("{RECORD}.tmp"));
    std::fs::write(&tmp, &bytes).map_err(|e| Error::io("write", &tmp, e))?;
    std::fs::rename(&tmp, state.join(RECORD)).map_err(|e| Error::io("rename into place", &tmp, e))
}

/// Forgets the record (the tree was moved, or is gone).
pub(crate) fn forget(state: &Path) {
    let _ = std::fs::remove_file(state.join(RECORD));
}

/// Records `tree` as what `dir` holds now (just materialised from it), so
/// that the next [`rescan`] reads only what changes after this.
pub(crate) fn record(store: &Store, state: &Path, dir: &Path, tree: &Snapshot) -> Result<()> {
    if let Some(walked) = walk(store, state, dir, None, Some(tree))? {
        save(state, store.put_snapshot(&walked.tree)?, walked.keys)
    } else {
        forget(state);
        Ok(())
    }
}

/// The tree in `dir` now, by the quick walk, and its id (it is stored);
/// `None` if the walk gave up (or there is no usable record): then the
/// caller scans.
pub(crate) fn rescan(
    store: &Store,
    state: &Path,
    dir: &Path,
) -> Result<Option<(Snapshot, SnapshotId)>> {
    let Some(record) = load(state) else {
        return Ok(None);
    };
    let Ok(previous) = store.snapshot(&record.tree) else {
        return Ok(None);
    };
    if record.keys.len() != previous.entries().len() {
        return Ok(None);
    }
    if let Some(walked) = walk(store, state, dir, Some(&record.keys), Some(&previous))? {
        // Nothing changed: the tree and the record are the previous ones.
        if !walked.changed {
            return Ok(Some((previous, record.tree)));
        }
        let id = store.put_snapshot(&walked.tree)?;
        save(state, id, walked.keys)?;
        Ok(Some((walked.tree, id)))
    } else {
        forget(state);
        Ok(None)
    }
}

/// What a walk found: the tree, each entry's key in the tree's order, and
/// whether anything differs from the previous walk's tree and keys.
struct Walked {
    tree: Snapshot,
    keys: Vec<(Key, bool)>,
    changed: bool,
}

/// An entry found, with its key and whether the key is racy.
type Keyed = (Entry, Key, bool);

/// What one walk shares between its threads.
struct Walk<'a> {
    store: &'a Store,
    root: ConfinedDir,
    /// The previous walk's keys, in `previous`'s order.
    keys: Option<&'a [(Key, bool)]>,
    previous: Option<&'a Snapshot>,
    racy_from: Timestamp,
    /// Set when an entry is not the previous walk's (or its key differs).
    changed: AtomicBool,
}

/// What the walk's tasks have found so far.
#[derive(Default)]
struct Found {
    entries: Vec<Keyed>,
    /// A visit gave up: the caller scans.
    gave_up: bool,
    error: Option<Error>,
}

/// `Ok(None)` for "give up" from inside a visit.
macro_rules! or_give_up {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Ok(None);
            }
            Err(err) => return Err(err),
        }
    };
}

impl<'a> Walk<'a> {
    /// The previous walk's entry at `index`, if it may be reused for what has
    /// `key` now.
    fn reuse(&self, index: Option<usize>, key: &Key) -> Option<Entry> {
        let index = index?;
        let old = &self.previous?.entries()[index];
        if let Some(keys) = self.keys {
            let (was, racy) = keys.get(index)?;
            if *racy || was != key {
                return None;
            }
        }
        let kind_agrees = match (&old.kind, FileType::from_raw_mode(key.mode)) {
            (EntryKind::File { size, chunks }, FileType::RegularFile) => {
                key.nlink == 1
                    && *size == key.size
                    && chunks.chunks().iter().all(|c| self.store.contains(&c.id))
            }
            (EntryKind::Dir, FileType::Directory)
            | (EntryKind::Symlink { .. }, FileType::Symlink) => true,
            _ => false,
        };
        // Without keys (just materialised), what was written must show the
        // entry's metadata; xattrs were copied with it.
        let written = self.keys.is_some()
            || (old.meta.mtime == key.mtime
                && old.meta.mode == key.mode & 0o7777
                && old.meta.uid == key.uid
                && old.meta.gid == key.gid);
        (kind_agrees && written).then(|| old.clone())
    }

    /// `entry` with its key, noting whether it is the previous walk's.
    fn keyed(&self, entry: Entry, key: Key, reused: bool) -> Keyed {
        let racy = key.ctime >= self.racy_from;
        if !reused || racy {
            self.changed.store(true, Ordering::Relaxed);
        }
        (entry, key, racy)
    }

    /// Lists the directory `path` into `found` and spawns a task for each of
    /// its subdirectories, so no thread waits for a whole depth of the tree.
    /// After a give-up or an error anywhere, nothing more is listed.
    fn visit(&'a self, scope: &rayon::Scope<'a>, path: &TreePath, found: &'a Mutex<Found>) {
        let lock = || found.lock().unwrap_or_else(PoisonError::into_inner);
        {
            let found = lock();
            if found.gave_up || found.error.is_some() {
                return;
            }
        }
        match self.list(path) {
            Ok(Some((mut entries, dirs))) => {
                for dir in dirs {
                    scope.spawn(move |scope| self.visit(scope, &dir, found));
                }
                lock().entries.append(&mut entries);
            }
            Ok(None) => lock().gave_up = true,
            Err(err) => {
                lock().error.get_or_insert(err);
            }
        }
    }

    /// The directory `path`'s own entry and its children's that are not
    /// directories, with their keys, and its subdirectories. The previous
    /// walk's entries are found by merging its children with the sorted names
    /// (no search of the whole tree per entry).
    fn list(&self, path: &TreePath) -> Result<Option<(Vec<Keyed>, Vec<TreePath>)>> {
        let rel: &[u8] = if path.is_root() { b"" } else { path.as_bytes() };
        let opened = or_give_up!(self.root.open_dir(rel));
        let st = opened.stat()?;
        let key = Key::of(&st);
        let own_index = self
            .previous
            .and_then(|p| snapshot::find(p.entries(), path));
        let own = match self.reuse(own_index, &key) {
            Some(entry) => self.keyed(entry, key, true),
            None => self.keyed(
                Entry::dir(path.clone(), metadata(&st, opened.xattrs()?)),
                key,
                false,
            ),
        };
        // The previous walk's children of this directory, in order.
        let mut previous = match (self.previous, own_index) {
            (Some(p), Some(i)) if p.entries()[i].is_dir() => Some(p.children_of(path)),
            _ => None,
        };
        let mut candidate = previous.as_mut().and_then(Children::next_indexed);
        let mut names = opened.names()?;
        // Siblings sort by name bytes in tree order.
        names.sort_unstable();
        let mut entries = Vec::with_capacity(names.len() + 1);
        let mut dirs = Vec::new();
        entries.push(own);
        for name in names {
            let child = path.join(&name)?;
            let st = or_give_up!(opened.lstat(&name));
            let key = Key::of(&st);
            let file_type = FileType::from_raw_mode(st.st_mode);
            if file_type == FileType::Directory {
                dirs.push(child);
                continue;
            }
            while candidate.is_some_and(|(_, e)| e.path < child) {
                candidate = previous.as_mut().and_then(Children::next_indexed);
            }
            let index = candidate.filter(|(_, e)| e.path == child).map(|(i, _)| i);
            let entry = if let Some(entry) = self.reuse(index, &key) {
                self.keyed(entry, key, true)
            } else {
                let kind = match file_type {
                    FileType::RegularFile if st.st_nlink == 1 => {
                        let file = or_give_up!(opened.open_file(&name));
                        let shown = opened.child_path(&name);
                        let chunks = self.store.put_reader(&file, &shown)?;
                        let after = rustix::fs::fstat(&file)
                            .map_err(|e| Error::io("stat", &shown, e.into()))?;
                        if Key::of(&after) != key || chunks.content_len() != key.size {
                            // Changed while read: the full scan handles it.
                            return Ok(None);
                        }
                        EntryKind::File {
                            size: chunks.content_len(),
                            chunks,
                        }
                    }
                    FileType::Symlink => EntryKind::Symlink {
                        target: or_give_up!(opened.read_link(&name)),
                    },
                    _ => return Ok(None),
                };
                let xattrs = or_give_up!(opened.child_xattrs(&name));
                self.keyed(Entry::new(child, kind, metadata(&st, xattrs)), key, false)
            };
            entries.push(entry);
        }
        Ok(Some((entries, dirs)))
    }
}

/// Walks `dir`, a task per directory. With `keys`, an entry whose key is
/// trusted and unchanged is taken from `previous`; without, every entry is
/// taken from `previous` (`record` after a materialisation) when its kind and
/// metadata agree. Others are read.
fn walk(
    store: &Store,
    state: &Path,
    dir: &Path,
    keys: Option<&[(Key, bool)]>,
    previous: Option<&Snapshot>,
) -> Result<Option<Walked>> {
    if previous.is_some_and(|p| {
        p.entries()
            .iter()
            .any(|e| matches!(e.kind, EntryKind::Hardlink { .. }))
    }) {
        return Ok(None);
    }
    let same_device = std::fs::metadata(state)
        .ok()
        .zip(std::fs::metadata(dir).ok())
        .is_some_and(|(a, b)| {
            std::os::unix::fs::MetadataExt::dev(&a) == std::os::unix::fs::MetadataExt::dev(&b)
        });
    let mut racy_from = clock(state)?;
    if !same_device {
        // Another filesystem may stamp with a coarser clock: a second of margin.
        racy_from = Timestamp::new(racy_from.secs.saturating_sub(1), 0);
    }
    let walk = Walk {
        store,
        root: ConfinedDir::open(dir)?,
        keys,
        previous,
        racy_from,
        changed: AtomicBool::new(false),
    };
    let found = Mutex::new(Found::default());
    rayon::scope(|scope| walk.visit(scope, &TreePath::ROOT, &found));
    let Found {
        mut entries,
        gave_up,
        error,
    } = found.into_inner().unwrap_or_else(PoisonError::into_inner);
    if let Some(err) = error {
        return Err(err);
    }
    if gave_up {
        return Ok(None);
    }
    entries.par_sort_unstable_by(|a, b| a.0.path.cmp(&b.0.path));
    // An entry gone since: fewer entries, each the previous walk's.
    let changed =
        walk.changed.into_inner() || previous.is_none_or(|p| p.entries().len() != entries.len());
    let (entries, keys): (Vec<Entry>, Vec<(Key, bool)>) = entries
        .into_iter()
        .map(|(entry, key, racy)| (entry, (key, racy)))
        .unzip();
    Ok(Some(Walked {
        tree: Snapshot::from_sorted(entries)?,
        keys,
        changed,
    }))
}

/// An entry's metadata from its `stat` and xattrs, as `Store::scan` records it.
#[allow(
    clippy::unnecessary_cast,
    reason = "the widths of struct stat's fields differ by architecture"
)]
fn metadata(st: &Stat, xattrs: Vec<(Vec<u8>, Vec<u8>)>) -> Metadata {
    Metadata {
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        mtime: Timestamp::new(st.st_mtime as i64, st.st_mtime_nsec as u32),
        xattrs: xattrs.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{CheckoutOptions, ScanOptions};

    /// A store, a tree checked out into `dir`, recorded; returns the tree.
    fn setup(tmp: &Path) -> (Store, std::path::PathBuf, std::path::PathBuf, Snapshot) {
        let store = Store::create(tmp.join("store"), &crate::StoreOptions::default()).unwrap();
        let src = tmp.join("src");
        std::fs::create_dir_all(src.join("d/e")).unwrap();
        for (name, body) in [
            ("a", "alpha"),
            ("b", "bravo"),
            ("d/c", "charlie"),
            ("d/e/f", "fox"),
        ] {
            std::fs::write(src.join(name), body).unwrap();
        }
        std::os::unix::fs::symlink("a", src.join("link")).unwrap();
        let tree = store.scan(&src, &ScanOptions::default()).unwrap().snapshot;
        let dir = tmp.join("dir");
        store
            .checkout(&tree, &dir, &CheckoutOptions::default())
            .unwrap();
        let state = tmp.join("state");
        std::fs::create_dir(&state).unwrap();
        record(&store, &state, &dir, &tree).unwrap();
        (store, dir, state, tree)
    }

    fn full_scan(store: &Store, dir: &Path) -> Snapshot {
        let options = ScanOptions::default().use_stat_cache(false);
        store.scan(dir, &options).unwrap().snapshot
    }

    #[test]
    fn the_quick_walk_finds_what_a_full_scan_finds() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, dir, state, tree) = setup(tmp.path());
        // Unchanged: the same tree, nothing read.
        let again = rescan(&store, &state, &dir).unwrap().unwrap().0;
        assert_eq!(again.id(), tree.id());
        assert_eq!(again.id(), full_scan(&store, &dir).id());
        // Every kind of change, including same-size content with the old
        // mtime put back (only the ctime tells).
        let old = std::fs::metadata(dir.join("a"))
            .unwrap()
            .modified()
            .unwrap();
        std::fs::write(dir.join("a"), "ALPHA").unwrap();
        std::fs::File::options()
            .write(true)
            .open(dir.join("a"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        std::fs::set_permissions(
            dir.join("b"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        std::fs::rename(dir.join("d/c"), dir.join("d/e/c2")).unwrap();
        std::fs::remove_file(dir.join("d/e/f")).unwrap();
        std::fs::write(dir.join("new"), "november").unwrap();
        std::fs::remove_file(dir.join("link")).unwrap();
        std::os::unix::fs::symlink("b", dir.join("link")).unwrap();
        let xattrs = crate::testing::user_xattrs_supported(&dir);
        if xattrs {
            rustix::fs::setxattr(
                dir.join("d"),
                "user.k",
                b"v",
                rustix::fs::XattrFlags::empty(),
            )
            .unwrap();
        }
        let quick = rescan(&store, &state, &dir).unwrap().unwrap().0;
        assert_eq!(quick, full_scan(&store, &dir));
        if xattrs {
            // Seen by the quick walk itself, not only by both walks alike.
            let d = quick.get(&TreePath::new("d").unwrap()).unwrap();
            assert_eq!(
                d.meta.xattrs.get(&b"user.k"[..]).map(Vec::as_slice),
                Some(&b"v"[..])
            );
        }
        assert_ne!(quick.id(), tree.id());
        // And again right away (everything just written is racy).
        std::fs::write(dir.join("new"), "NOVEMBER").unwrap();
        let quick = rescan(&store, &state, &dir).unwrap().unwrap().0;
        assert_eq!(quick, full_scan(&store, &dir));
    }

    /// An unchanged tree is the previous walk's, and its record is not
    /// written again (nor the tree stored again).
    #[test]
    fn an_unchanged_walk_rewrites_nothing() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        let (store, dir, state, tree) = setup(tmp.path());
        // What was just written is racy: past the clock's tick, one walk
        // reads it again and records it as settled.
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(
            rescan(&store, &state, &dir).unwrap().unwrap().0.id(),
            tree.id()
        );
        let before = std::fs::metadata(state.join(RECORD)).unwrap();
        let again = rescan(&store, &state, &dir).unwrap().unwrap().0;
        assert_eq!(again.id(), tree.id());
        let after = std::fs::metadata(state.join(RECORD)).unwrap();
        assert_eq!(before.ino(), after.ino(), "the record was written again");
        // A deletion alone is seen, and recorded.
        std::fs::remove_file(dir.join("d/e/f")).unwrap();
        let quick = rescan(&store, &state, &dir).unwrap().unwrap().0;
        assert_eq!(quick, full_scan(&store, &dir));
        assert!(quick.get(&TreePath::new("d/e/f").unwrap()).is_none());
        let after = std::fs::metadata(state.join(RECORD)).unwrap();
        assert_ne!(before.ino(), after.ino());
    }

    #[test]
    fn it_gives_up_on_what_it_does_not_handle() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, dir, state, _) = setup(tmp.path());
        std::fs::write(dir.join("h"), "linked").unwrap();
        std::fs::hard_link(dir.join("h"), dir.join("h2")).unwrap();
        assert!(rescan(&store, &state, &dir).unwrap().is_none());
        // The record is forgotten: the next one gives up at once too.
        assert!(rescan(&store, &state, &dir).unwrap().is_none());
        std::fs::write(state.join(RECORD), b"garbage").unwrap();
        assert!(rescan(&store, &state, &dir).unwrap().is_none());
    }
}
