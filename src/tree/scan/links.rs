//! Hard links: the files with several links, grouped by (device, inode)
//! once the walk is done; the first path of each group is read, once, and
//! the others link to it.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use rayon::prelude::*;
use rustix::fs::Stat;

use super::read::{ReadFile, file_kind};
use super::stat::{dev, file_stat, ino, metadata};
use super::walk::{Found, Listed};
use super::{Scan, Stated};
use crate::error::Result;
use crate::fsutil::xattr::Xattrs;
use crate::store::chunk_list::ChunkList;
use crate::tree::entry::Entry;
use crate::tree::path::TreePath;

/// Where a child sits in the walk's output: the index of its directory among
/// the [`Listed`] (sorted by path) and its own among that directory's items.
pub(super) type Slot = (usize, usize);

/// A regular file with more than one link, read once its group is known.
pub(super) struct Linked {
    pub(super) path: TreePath,
    pub(super) stat: Stat,
    pub(super) xattrs: Xattrs,
    /// Its chunks from the stat cache, if the cache may be trusted for it
    /// (then its xattrs came from there too).
    pub(super) cached: Option<ChunkList>,
}

/// Takes the files with several links out of `dirs`, each with its slot
/// (left [`Found::Gone`] until its group is read).
pub(super) fn take_linked(dirs: &mut [Listed]) -> Vec<(Slot, Linked)> {
    let mut linked = Vec::new();
    for (d, dir) in dirs.iter_mut().enumerate() {
        for (i, item) in dir.items.iter_mut().enumerate() {
            if matches!(item, Found::Linked(_))
                && let Found::Linked(file) = std::mem::replace(item, Found::Gone)
            {
                linked.push(((d, i), file));
            }
        }
    }
    linked
}

/// Hard links
impl Scan<'_> {
    /// The entries of the files with several links: per (device, inode), the
    /// first path in order is the file, read once; the others link to it.
    pub(super) fn link_groups(&self, linked: Vec<(Slot, Linked)>) -> Result<Vec<(Slot, Stated)>> {
        // Sorted by inode as indices: the files themselves are large to move.
        let mut order: Vec<(u64, u64, usize)> = linked
            .iter()
            .enumerate()
            .map(|(i, (_, file))| (dev(&file.stat), ino(&file.stat), i))
            .collect();
        order.par_sort_unstable();
        let mut files: Vec<Option<(Slot, Linked)>> = linked.into_iter().map(Some).collect();
        // Runs of one inode. A run of one (a file whose other links are
        // outside the tree, as in a `cp -al` copy) is the common case and
        // needs no group of its own.
        let mut lone = Vec::new();
        let mut groups = Vec::new();
        for run in order.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)) {
            if let [(_, _, i)] = run {
                lone.extend(files[*i].take());
            } else {
                groups.push(
                    run.iter()
                        .filter_map(|&(_, _, i)| files[i].take())
                        .collect::<Vec<_>>(),
                );
            }
        }
        let mut out: Vec<(Slot, Stated)> = lone
            .into_par_iter()
            .map(|(slot, file)| Ok(self.lead(file)?.map(|stated| (slot, stated))))
            .filter_map(Result::transpose)
            .collect::<Result<_>>()?;
        let grouped: Vec<Vec<(Slot, Stated)>> = groups
            .into_par_iter()
            .map(|group| self.link_group(group))
            .collect::<Result<_>>()?;
        out.extend(grouped.into_iter().flatten());
        Ok(out)
    }

    fn link_group(&self, mut group: Vec<(Slot, Linked)>) -> Result<Vec<(Slot, Stated)>> {
        group.sort_unstable_by(|(_, a), (_, b)| a.path.cmp(&b.path));
        let mut members = group.into_iter();
        // If the first path vanished or was replaced, the next one leads.
        while let Some((slot, first)) = members.next() {
            let target = first.path.clone();
            let Some(lead) = self.lead(first)? else {
                continue;
            };
            let mut out = vec![(slot, lead)];
            out.extend(members.map(|(slot, m)| {
                let meta = metadata(&m.stat, m.xattrs);
                (slot, (Entry::hardlink(m.path, target.clone(), meta), None))
            }));
            return Ok(out);
        }
        Ok(Vec::new())
    }

    /// The entry of the file that a group of links leads with: its content
    /// read, or taken from the stat cache; `None` (after a warning) if it
    /// vanished or was replaced.
    fn lead(&self, first: Linked) -> Result<Option<Stated>> {
        // The walk looked the file up in the stat cache already.
        let found = if let Some(chunks) = first.cached {
            self.files_from_cache.fetch_add(1, Ordering::Relaxed);
            self.progress.add(0, chunks.content_len());
            Some(ReadFile {
                chunks,
                stat: first.stat,
                stable: true,
            })
        } else {
            let shown = self.full(&first.path);
            let open = || self.root.open_read(first.path.as_bytes());
            self.read_content(&first.path, &first.stat, &shown, open)?
        };
        Ok(found.map(|read| {
            let stat = read.stable.then(|| file_stat(&read.stat));
            let entry = Entry::new(
                first.path,
                file_kind(read.chunks),
                metadata(&read.stat, first.xattrs),
            );
            (entry, stat)
        }))
    }

    /// The full path of `path`, for messages.
    fn full(&self, path: &TreePath) -> PathBuf {
        if path.is_root() {
            self.root.path().to_path_buf()
        } else {
            self.root.path().join(OsStr::from_bytes(path.as_bytes()))
        }
    }
}
