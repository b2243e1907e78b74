//! Seeding the stat cache: recording a directory just checked out as if a
//! scan had read it.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::FileType;

use super::stat::{file_stat, wait_for_clock_past};
use super::statcache::{self, CacheFile, Records};
use crate::error::{Error, Result};
use crate::fsutil::confine::ConfinedDir;
use crate::store::Store;
use crate::tree::entry::{EntryKind, Timestamp};
use crate::tree::snapshot::Snapshot;

/// Seeding the stat cache
impl Store {
    /// Records, as the stat cache of `dir`, that its regular files hold the
    /// content of the files of `tree` at the same paths, so that the next
    /// [`Store::scan`] of `dir` reads only what changed since. For a
    /// directory just written from `tree` (by [`Store::checkout`] or a copy
    /// of a checkout) that nothing else has written to yet. A file whose size
    /// differs from `tree`'s, or that is not a regular file, is left out (and
    /// read by the next scan). Returns how many files were recorded.
    ///
    /// Before the cache is written, this waits (a few milliseconds) until the
    /// filesystem stamps files later than the newest change time it
    /// recorded: any later change of a file then moves its change time, and
    /// the cache does not match it any more. That is what lets the cache
    /// trust these files at once, where a scan's own cache trusts only files
    /// unchanged for a second (see the stat cache's racy-timestamp rule).
    ///
    /// # Errors
    /// [`Error::Io`] naming `dir` if it cannot be opened, or the cache file if
    /// it cannot be written.
    pub fn seed_stat_cache(&self, dir: impl AsRef<Path>, tree: &Snapshot) -> Result<u64> {
        let dir = dir.as_ref();
        let canonical = fs_err::canonicalize(dir).map_err(|e| Error::io("open", dir, e))?;
        let root = ConfinedDir::open(&canonical)?;
        let mut records = Records::new(tree.entries().len());
        let mut recorded = 0;
        let mut newest = Timestamp::EPOCH;
        for (index, entry) in tree.entries().iter().enumerate() {
            let EntryKind::File { size, .. } = &entry.kind else {
                continue;
            };
            let Ok(st) = root.lstat(entry.path.as_bytes()) else {
                continue;
            };
            let now = file_stat(&st);
            if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile
                || now.size != *size
                || now.mtime != entry.meta.mtime
            {
                continue;
            }
            // As on disk (a checkout may have left out privileged ones): the
            // cache gives the tree's, so a file whose differ is left out.
            let Ok(xattrs) = root.xattrs(entry.path.as_bytes()) else {
                continue;
            };
            if !xattrs
                .iter()
                .map(|(k, v)| (k, v))
                .eq(entry.meta.xattrs.iter())
            {
                continue;
            }
            newest = newest.max(now.mtime).max(now.ctime);
            records.set(index, &now);
            recorded += 1;
        }
        wait_for_clock_past(&canonical, newest)?;
        let tree_id = self.put_snapshot(tree)?;
        // The cache trusts timestamps older than its start less a margin
        // (statcache::cutoff); every recorded time is older than this start,
        // and the wait above made any later change distinguishable.
        let started = Timestamp::new(newest.secs.saturating_add(2), 0);
        let bytes = CacheFile::encode(canonical.as_os_str().as_bytes(), started, tree_id, records);
        let cache_path = statcache::cache_path(self, canonical.as_os_str().as_bytes());
        CacheFile::write(self, &cache_path, &bytes)?;
        Ok(recorded)
    }
}
