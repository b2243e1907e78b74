//! The walk: a rayon task per directory lists it and examines its children;
//! the listings are joined depth first into path order.

use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use rayon::prelude::*;
use rustix::fs::FileType;

use super::links::Linked;
use super::read::file_kind;
use super::stat::{dev, file_stat, ino, metadata, rdev};
use super::statcache::FileStat;
use super::{Scan, ScanWarningKind, Stated};
use crate::error::{Error, Result};
use crate::fsutil::dir::Dir;
use crate::tree::entry::{Entry, EntryKind, Metadata};
use crate::tree::path::TreePath;

/// What the walk found so far, shared by its tasks.
#[derive(Default)]
struct Walked {
    dirs: Vec<Listed>,
    error: Option<Error>,
}

/// A directory as the walk listed it: its own entry, then what each of its
/// children is, in name order.
pub(super) struct Listed {
    pub(super) path: TreePath,
    pub(super) items: Vec<Found>,
}

/// A directory found by the walk, to be listed at the next level.
pub(super) struct PendingDir {
    pub(super) path: TreePath,
    /// The device and inode its parent's listing saw; `None` for the root.
    pub(super) expect: Option<(u64, u64)>,
}

/// What examining one name of a directory gives.
pub(super) enum Found {
    /// An entry; for a regular file, the stat of the file whose content it
    /// holds, for the next stat cache (`None` if it changed while read).
    Entry(Entry, Option<FileStat>),
    /// A subdirectory, listed by a task of its own.
    Dir(PendingDir),
    /// A file with several links, until its group is known.
    Linked(Linked),
    /// Nothing any more: a file with several links that vanished before its
    /// group was read.
    Gone,
}

/// Walking
impl Scan<'_> {
    /// Walks the tree: every directory, listed, in no particular order.
    pub(super) fn walk(&self) -> Result<Vec<Listed>> {
        let found = Mutex::new(Walked::default());
        // Each directory is a task that spawns its subdirectories' tasks:
        // the threads steal work from one another, with no wait for a whole
        // depth of the tree to finish before the next starts.
        rayon::scope(|scope| {
            let root = PendingDir {
                path: TreePath::ROOT,
                expect: None,
            };
            self.visit(scope, &root, &found);
        });
        let found = found
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match found.error {
            Some(err) => Err(err),
            None => Ok(found.dirs),
        }
    }

    /// Lists the directory `pending` into `found` and spawns a task for each
    /// of its subdirectories. After an error anywhere, nothing more is
    /// listed; the first error is kept.
    fn visit<'a>(
        &'a self,
        scope: &rayon::Scope<'a>,
        pending: &PendingDir,
        found: &'a Mutex<Walked>,
    ) {
        let lock = || {
            found
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if lock().error.is_some() {
            return;
        }
        let listed = match self.list(pending) {
            Ok(listed) => listed,
            Err(err) => {
                lock().error.get_or_insert(err);
                return;
            }
        };
        for item in &listed {
            if let Found::Dir(dir) = item {
                let dir = PendingDir {
                    path: dir.path.clone(),
                    expect: dir.expect,
                };
                scope.spawn(move |scope| self.visit(scope, &dir, found));
            }
        }
        lock().dirs.push(Listed {
            path: pending.path.clone(),
            items: listed,
        });
    }

    /// The directory `pending` itself and what its children are, in name
    /// order. Nothing if it vanished or was replaced since its parent was
    /// listed.
    pub(super) fn list(&self, pending: &PendingDir) -> Result<Vec<Found>> {
        let opened = self.root.open_dir(pending.path.as_bytes());
        let dir = if pending.expect.is_none() {
            opened? // the root: no race to tolerate
        } else {
            match self.tolerate(&pending.path, opened)? {
                Some(dir) => dir,
                None => return Ok(Vec::new()),
            }
        };
        let st = dir.stat()?;
        if let Some(expect) = pending.expect
            && expect != (dev(&st), ino(&st))
        {
            let detail = format!("'{}' is another directory now", dir.path().display());
            self.warn(&pending.path, ScanWarningKind::Replaced, detail);
            return Ok(Vec::new());
        }
        let own = Entry::dir(pending.path.clone(), metadata(&st, dir.xattrs()?));
        let mut names = dir.names()?;
        names.sort_unstable();
        // The root counts itself; every other directory was counted as its
        // parent's child.
        let root = u64::from(pending.expect.is_none());
        self.progress.add_entries_total(names.len() as u64 + root);
        self.progress.add(root, 0);
        // Where the directory's descendants were in the previous scan's tree:
        // its children are looked up there, not in the whole tree.
        let near = self
            .cache
            .as_ref()
            .map_or(0..0, |cache| cache.range_of(&pending.path));
        let children: Vec<Option<Found>> = names
            .par_iter()
            .map(|name| {
                let found = self.examine(&dir, &pending.path, name, &near);
                self.progress.add(1, 0);
                found
            })
            .collect::<Result<_>>()?;
        let mut out = Vec::with_capacity(children.len() + 1);
        out.push(Found::Entry(own, None));
        out.extend(children.into_iter().flatten());
        Ok(out)
    }

    /// What the child `name` of `dir` (at `parent`) is. `near`: the range of
    /// the stat cache's tree where `parent`'s descendants are.
    pub(super) fn examine(
        &self,
        dir: &Dir,
        parent: &TreePath,
        name: &[u8],
        near: &Range<usize>,
    ) -> Result<Option<Found>> {
        let path = parent.join(name)?;
        let Some(st) = self.tolerate(&path, dir.lstat(name))? else {
            return Ok(None);
        };
        let file_type = FileType::from_raw_mode(st.st_mode);
        match file_type {
            FileType::Directory => {
                return Ok(Some(Found::Dir(PendingDir {
                    path,
                    expect: Some((dev(&st), ino(&st))),
                })));
            }
            FileType::Socket | FileType::Unknown => {
                let kind = if file_type == FileType::Socket {
                    ScanWarningKind::Socket
                } else {
                    ScanWarningKind::Unsupported
                };
                let detail = format!(
                    "'{}' (mode {:#o})",
                    dir.child_path(name).display(),
                    st.st_mode
                );
                self.warn(&path, kind, detail);
                return Ok(None);
            }
            _ => {}
        }
        let cached = match file_type {
            FileType::RegularFile => self.lookup_cache(&path, &st, near),
            _ => None,
        };
        // A file with other links is grouped after the walk; one whose other
        // links are outside the tree (a `cp -al` copy of it, say) is a group
        // of one, and takes its chunks and xattrs from the cache all the same.
        if st.st_nlink > 1
            && let Some(old) = cached
            && let EntryKind::File { chunks, .. } = &old.kind
        {
            return Ok(Some(Found::Linked(Linked {
                cached: Some(chunks.clone()),
                xattrs: old.meta.xattrs.clone().into_iter().collect(),
                path,
                stat: st,
            })));
        }
        if st.st_nlink <= 1
            && let Some(old) = cached
        {
            self.files_from_cache.fetch_add(1, Ordering::Relaxed);
            if let EntryKind::File { size, .. } = &old.kind {
                self.progress.add(0, *size);
            }
            let meta = Metadata {
                xattrs: old.meta.xattrs.clone(),
                ..metadata(&st, Vec::new())
            };
            let kind = old.kind.clone();
            return Ok(Some(Found::Entry(
                Entry::new(path, kind, meta),
                Some(file_stat(&st)),
            )));
        }
        let Some(xattrs) = self.tolerate(&path, dir.child_xattrs(name))? else {
            return Ok(None);
        };
        let mut stat = None;
        let (kind, st) = match file_type {
            FileType::RegularFile if st.st_nlink > 1 => {
                return Ok(Some(Found::Linked(Linked {
                    path,
                    stat: st,
                    xattrs,
                    cached: None,
                })));
            }
            FileType::RegularFile => {
                let shown = dir.child_path(name);
                match self.read_content(&path, &st, &shown, || dir.open_file(name))? {
                    Some(read) => {
                        stat = read.stable.then(|| file_stat(&read.stat));
                        (file_kind(read.chunks), read.stat)
                    }
                    None => return Ok(None),
                }
            }
            FileType::Symlink => match self.tolerate(&path, dir.read_link(name))? {
                Some(target) => (EntryKind::Symlink { target }, st),
                None => return Ok(None),
            },
            FileType::CharacterDevice => (EntryKind::CharDevice { rdev: rdev(&st) }, st),
            FileType::BlockDevice => (EntryKind::BlockDevice { rdev: rdev(&st) }, st),
            _ => (EntryKind::Fifo, st),
        };
        Ok(Some(Found::Entry(
            Entry::new(path, kind, metadata(&st, xattrs)),
            stat,
        )))
    }
}

/// The entries of `dirs` (sorted by path; each one's items in name order) in
/// [`TreePath`] order: each directory's entry, then its children, a
/// subdirectory's own descendants right after it. Depth first with a stack
/// of its own, however deep the tree. Component-wise path order lists the
/// directories in the order this meets them, so the next one listed is the
/// next one met. (A subdirectory that vanished or was replaced before it was
/// listed has a listing with no items; one with no listing at all, which the
/// walk does not make, would be skipped.)
pub(super) fn depth_first(dirs: Vec<Listed>) -> Vec<Stated> {
    let total = dirs.iter().map(|dir| dir.items.len()).sum();
    let mut out = Vec::with_capacity(total);
    let mut dirs = dirs.into_iter().peekable();
    let mut open: Vec<std::vec::IntoIter<Found>> = Vec::new();
    open.extend(dirs.next().map(|root| root.items.into_iter()));
    while let Some(items) = open.last_mut() {
        match items.next() {
            None => {
                open.pop();
            }
            Some(Found::Entry(entry, stat)) => out.push((entry, stat)),
            Some(Found::Dir(dir)) => {
                if let Some(listed) = dirs.next_if(|listed| listed.path == dir.path) {
                    open.push(listed.items.into_iter());
                }
            }
            Some(Found::Linked(_) | Found::Gone) => {}
        }
    }
    debug_assert!(dirs.next().is_none(), "a listing no directory met");
    out
}
