//! What a scan takes from `stat`: an entry's metadata, what the stat cache
//! compares; loading and consulting the previous scan's stat cache; and the
//! clock probe that lets a seeded cache be trusted at once.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::path::Path;

use rustix::fs::Stat;

use super::statcache::{CacheFile, FileStat, Loaded};
use super::{Scan, ScanWarningKind};
use crate::error::{Error, Result};
use crate::fsutil::xattr::Xattrs;
use crate::tree::entry::{Entry, Metadata, Timestamp};
use crate::tree::path::TreePath;

/// The stat cache
impl Scan<'_> {
    pub(super) fn load_cache(&self, path: &Path, root: &[u8]) -> Option<Loaded> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                let detail = format!("cannot read '{}': {e}", path.display());
                self.warn(&TreePath::ROOT, ScanWarningKind::StatCacheIgnored, detail);
                return None;
            }
        };
        let cache = match CacheFile::decode(&bytes, root) {
            Ok(cache) => cache,
            Err(err) => {
                let detail = format!("'{}': {err}", path.display());
                self.warn(&TreePath::ROOT, ScanWarningKind::StatCacheIgnored, detail);
                return None;
            }
        };
        // Not in the store any more (never flushed, or collected): a miss,
        // like chunks gone; damaged: say so.
        let tree = match self.store.snapshot(&cache.snapshot_id()) {
            Ok(tree) => tree,
            Err(Error::ObjectNotFound { .. }) => return None,
            Err(err) => {
                let detail = format!("'{}': its snapshot: {err}", path.display());
                self.warn(&TreePath::ROOT, ScanWarningKind::StatCacheIgnored, detail);
                return None;
            }
        };
        let loaded = cache.with_tree(tree);
        if loaded.is_none() {
            let detail = format!(
                "'{}': its records do not match its snapshot",
                path.display()
            );
            self.warn(&TreePath::ROOT, ScanWarningKind::StatCacheIgnored, detail);
        }
        loaded
    }

    /// The previous scan's entry of the regular file at `path` whose `lstat`
    /// was `st` (its chunks and xattrs), from the stat cache, if it may be
    /// trusted for that file (see [`crate::tree::scan::statcache`]): then neither
    /// its content nor its xattrs are read.
    pub(super) fn lookup_cache(
        &self,
        path: &TreePath,
        st: &Stat,
        near: &Range<usize>,
    ) -> Option<&Entry> {
        let now = file_stat(st);
        self.cache.as_ref()?.lookup(path, near, &now, |id| {
            // Leased, so that no gc collects what the scan reuses; an
            // error reads the file again.
            self.store.hold_one(id).unwrap_or(false)
        })
    }
}

/// An entry's metadata from its `stat` and xattrs.
pub(super) fn metadata(st: &Stat, xattrs: Xattrs) -> Metadata {
    Metadata {
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        mtime: mtime(st),
        xattrs: xattrs.into_iter().collect(),
    }
}

// The widths of `struct stat`'s fields differ between architectures: what is a
// no-op cast on x86_64 is a widening one elsewhere.
#[allow(
    clippy::unnecessary_cast,
    reason = "field widths differ by architecture"
)]
pub(super) fn dev(st: &Stat) -> u64 {
    st.st_dev as u64
}

#[allow(
    clippy::unnecessary_cast,
    reason = "field widths differ by architecture"
)]
pub(super) fn ino(st: &Stat) -> u64 {
    st.st_ino as u64
}

#[allow(
    clippy::unnecessary_cast,
    reason = "field widths differ by architecture"
)]
pub(super) fn rdev(st: &Stat) -> u64 {
    st.st_rdev as u64
}

#[allow(
    clippy::unnecessary_cast,
    reason = "field widths differ by architecture"
)]
pub(super) fn mtime(st: &Stat) -> Timestamp {
    Timestamp::new(st.st_mtime as i64, st.st_mtime_nsec as u32)
}

#[allow(
    clippy::unnecessary_cast,
    reason = "field widths differ by architecture"
)]
pub(super) fn ctime(st: &Stat) -> Timestamp {
    Timestamp::new(st.st_ctime as i64, st.st_ctime_nsec as u32)
}

/// What the stat cache compares.
pub(super) fn file_stat(st: &Stat) -> FileStat {
    FileStat {
        dev: dev(st),
        ino: ino(st),
        // A regular file's size is never negative.
        size: u64::try_from(st.st_size).unwrap_or(0),
        mtime: mtime(st),
        ctime: ctime(st),
    }
}

/// Waits until a file created in `dir` gets a change time later than
/// `newest` (the filesystem's clock is coarse: a tick of up to 10 ms). The
/// probe is made in `dir` itself, whose filesystem's granularity counts;
/// `dir`'s times are put back afterwards.
pub(super) fn wait_for_clock_past(dir: &Path, newest: Timestamp) -> Result<()> {
    let before = rustix::fs::stat(dir).map_err(|e| Error::io("stat", dir, e.into()))?;
    let result = probe_clock(dir, newest);
    let times = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: before.st_atime,
            tv_nsec: i64::try_from(before.st_atime_nsec).unwrap_or(0),
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: before.st_mtime,
            tv_nsec: i64::try_from(before.st_mtime_nsec).unwrap_or(0),
        },
    };
    rustix::fs::utimensat(rustix::fs::CWD, dir, &times, rustix::fs::AtFlags::empty())
        .map_err(|e| Error::io("set times of", dir, e.into()))?;
    result
}

pub(super) fn probe_clock(dir: &Path, newest: Timestamp) -> Result<()> {
    let probe = dir.join(format!(".layerstore-clock-{}", std::process::id()));
    for _ in 0..2000 {
        let file = File::create(&probe).map_err(|e| Error::io("create", &probe, e))?;
        let st = rustix::fs::fstat(&file).map_err(|e| Error::io("stat", &probe, e.into()))?;
        drop(file);
        let _ = std::fs::remove_file(&probe);
        if ctime(&st) > newest {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    Err(Error::io(
        "wait for the clock of",
        dir,
        io::Error::other("the filesystem's clock did not move in two seconds"),
    ))
}
