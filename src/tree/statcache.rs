//! The stat cache: what a scan learnt about each regular file, so that a
//! rescan of an unchanged file takes its chunk list without reading it.
//!
//! One file per scanned directory, in the store:
//! `<store>/cache/stat/<hex>`, where `<hex>` is the BLAKE3 of the directory's
//! canonical absolute path (its bytes). Written atomically (staged in
//! `<store>/tmp/`) at the end of each scan, replacing the previous one.
//!
//! ```text
//! offset 0  8 bytes  magic "LSSTATC\n"
//!        8  4 bytes  format version, little-endian (3)
//!       12  …        postcard body: CacheBody, to the end
//! ```
//!
//! # When a cached entry is used
//!
//! A file's cached chunk list is used only if all of these hold:
//! - its `lstat` now gives the cached device, inode, size, mtime and ctime,
//!   each to the nanosecond;
//! - the racy-timestamp rule (git's "racily clean" problem): its mtime *and*
//!   ctime are older than [`CacheFile::cutoff`], that is the *start* of the
//!   scan that wrote the cache, minus one second, rounded down to a whole
//!   second. A file whose timestamps are not that old could have been
//!   changed after the scan read it without any timestamp moving (the kernel
//!   stamps files from a coarse clock, a tick of up to 10 ms behind the real
//!   time, and some filesystems keep whole seconds only), so it is re-read.
//!   The start, not the end, of the scan is the reference because a file may
//!   be read at any moment in between; the second of margin covers both the
//!   coarse clock's lag and one-second granularity;
//! - every chunk of the list is still in the store (`Store::contains`), and
//!   the list's length is the size.
//!
//! The ctime is the strong check: no system call sets it, every change of
//! content, owner, mode or xattrs moves it to the current time, so restoring
//! a file's size and mtime after a change does not hide the change.
//!
//! A cache file that cannot be decoded, has an unknown version or belongs to
//! another directory is ignored (the scan reports a warning) and replaced.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::fsutil::durable;
use crate::store::Store;
use crate::store::chunk_list::ChunkList;
use crate::tree::entry::Timestamp;

/// The first bytes of every stat-cache file.
const MAGIC: [u8; 8] = *b"LSSTATC\n";
/// The format version this build writes and reads.
pub(crate) const VERSION: u32 = 3;
/// The most a cache body may decompress to (a million files take ~100 MiB).
const MAX_BODY: u64 = 512 << 20;
/// The header's length: magic and version.
const HEADER_LEN: usize = 12;
/// How much older than the scan's start a file's timestamps must be, in whole
/// seconds, before its cached chunks are trusted (see the module docs).
const MARGIN_SECS: i64 = 1;

/// What the cache knows of one regular file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CachedFile {
    /// The file's path in the scanned tree.
    pub(crate) path: Vec<u8>,
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    pub(crate) size: u64,
    pub(crate) mtime: Timestamp,
    pub(crate) ctime: Timestamp,
    /// The content's chunks, as stored when the file was read.
    pub(crate) chunks: ChunkList,
    /// Its extended attributes, sorted by name: a change of any moves the
    /// ctime, so a rescan takes them from here instead of listing them again.
    pub(crate) xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The stat of a file now, as the cache compares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStat {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    pub(crate) size: u64,
    pub(crate) mtime: Timestamp,
    pub(crate) ctime: Timestamp,
}

/// The body of a cache file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct CacheBody {
    /// The canonical absolute path of the scanned directory, as bytes.
    root: Vec<u8>,
    /// When the scan that wrote this cache started.
    scan_started: Timestamp,
    /// Every regular file whose content that scan knew, sorted by path.
    files: Vec<CachedFile>,
}

/// A loaded stat cache, looked up by path.
#[derive(Debug, Default)]
pub(crate) struct CacheFile {
    scan_started: Timestamp,
    files: HashMap<Vec<u8>, CachedFile>,
}

/// Why a cache file was ignored.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LoadError {
    /// Not a stat cache, or a damaged one.
    Corrupt(String),
    /// Written by a format this build does not read.
    UnknownVersion(u32),
    /// Written for another directory (a hash collision, or a copied file).
    OtherRoot,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Corrupt(reason) => write!(f, "corrupt: {reason}"),
            LoadError::UnknownVersion(v) => {
                write!(f, "format version {v}; this build reads version {VERSION}")
            }
            LoadError::OtherRoot => f.write_str("written for another directory"),
        }
    }
}

/// Where the stat cache of the directory whose canonical path is `root` lives.
pub(crate) fn cache_path(store: &Store, root: &[u8]) -> PathBuf {
    store
        .path()
        .join("cache")
        .join("stat")
        .join(blake3::hash(root).to_hex().as_str())
}

impl CacheFile {
    /// Decodes a cache file written for the directory `root`.
    pub(crate) fn decode(bytes: &[u8], root: &[u8]) -> Result<Self, LoadError> {
        let (header, body) = bytes
            .split_at_checked(HEADER_LEN)
            .ok_or_else(|| LoadError::Corrupt(format!("{} bytes is too short", bytes.len())))?;
        if header.get(..8) != Some(&MAGIC[..]) {
            return Err(LoadError::Corrupt("bad magic".to_owned()));
        }
        let mut version = [0u8; 4];
        version.copy_from_slice(header.get(8..12).unwrap_or(&[0; 4]));
        let version = u32::from_le_bytes(version);
        if version != VERSION {
            return Err(LoadError::UnknownVersion(version));
        }
        let mut raw = Vec::new();
        zstd::stream::read::Decoder::new(body)
            .and_then(|decoder| {
                std::io::Read::read_to_end(
                    &mut std::io::Read::take(decoder, MAX_BODY + 1),
                    &mut raw,
                )
            })
            .map_err(|e| LoadError::Corrupt(format!("zstd: {e}")))?;
        if raw.len() as u64 > MAX_BODY {
            return Err(LoadError::Corrupt(
                "the body decompresses past the limit".to_owned(),
            ));
        }
        let body: CacheBody =
            postcard::from_bytes(&raw).map_err(|e| LoadError::Corrupt(e.to_string()))?;
        if body.root != root {
            return Err(LoadError::OtherRoot);
        }
        Ok(Self {
            scan_started: body.scan_started,
            files: body
                .files
                .into_iter()
                .map(|f| (f.path.clone(), f))
                .collect(),
        })
    }

    /// Encodes `files` (sorted here) as the cache of `root` written by a scan
    /// that started at `scan_started`.
    pub(crate) fn encode(
        root: &[u8],
        scan_started: Timestamp,
        mut files: Vec<CachedFile>,
    ) -> Vec<u8> {
        files.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        let body = CacheBody {
            root: root.to_vec(),
            scan_started,
            files,
        };
        // Writing to a Vec only fails if a Serialize impl fails; ours do not.
        let raw = postcard::to_stdvec(&body)
            .unwrap_or_else(|err| unreachable!("postcard encoding into a Vec failed: {err}"));
        let mut out = Vec::with_capacity(HEADER_LEN + raw.len() / 2);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        // Level 1: the cache is written on every scan; its paths compress well,
        // its chunk ids not at all. Compressing into a Vec cannot fail.
        match zstd::bulk::compress(&raw, 1) {
            Ok(compressed) => out.extend_from_slice(&compressed),
            Err(err) => unreachable!("zstd compression into memory failed: {err}"),
        }
        out
    }

    /// Writes the cache file `dest` atomically through the store's `tmp/`.
    pub(crate) fn write(store: &Store, dest: &Path, bytes: &[u8]) -> Result<()> {
        if let Some(dir) = dest.parent() {
            fs_err::create_dir_all(dir)
                .map_err(|e| crate::error::Error::io("create directory", dir, e))?;
        }
        durable::write_atomic(&store.path().join("tmp"), dest, bytes)
    }

    /// Timestamps strictly before this are old enough to trust: the start of
    /// the scan that wrote the cache, less [`MARGIN_SECS`], in whole seconds.
    pub(crate) fn cutoff(&self) -> Timestamp {
        Timestamp::new(self.scan_started.secs.saturating_sub(MARGIN_SECS), 0)
    }

    /// What the cache knows of the file at `path` (its chunks and xattrs), if
    /// the cache may be trusted for it (see the module docs); `contains` says
    /// whether the store still holds a chunk.
    pub(crate) fn lookup(
        &self,
        path: &[u8],
        now: &FileStat,
        contains: impl Fn(&crate::digest::ChunkId) -> bool,
    ) -> Option<&CachedFile> {
        let cached = self.files.get(path)?;
        let cutoff = self.cutoff();
        let same = cached.dev == now.dev
            && cached.ino == now.ino
            && cached.size == now.size
            && cached.mtime == now.mtime
            && cached.ctime == now.ctime;
        let settled = cached.mtime < cutoff && cached.ctime < cutoff;
        (same
            && settled
            && cached.chunks.content_len() == cached.size
            && cached.chunks.chunks().iter().all(|c| contains(&c.id)))
        .then_some(cached)
    }

    /// The scan's start and the files, to rewrite a cache in tests.
    #[cfg(test)]
    pub(crate) fn into_parts(self) -> (Timestamp, Vec<CachedFile>) {
        (self.scan_started, self.files.into_values().collect())
    }

    /// How many files the cache describes.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.files.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::ChunkId;
    use crate::store::chunk_list::ChunkRef;

    fn file(path: &str, mtime: i64, ctime: i64) -> CachedFile {
        CachedFile {
            path: path.as_bytes().to_vec(),
            dev: 1,
            ino: 2,
            size: 3,
            mtime: Timestamp::new(mtime, 5),
            ctime: Timestamp::new(ctime, 7),
            chunks: vec![ChunkRef {
                id: ChunkId::of(b"abc"),
                len: 3,
            }]
            .into(),
            xattrs: vec![(b"user.k".to_vec(), b"v".to_vec())],
        }
    }

    fn stat_of(f: &CachedFile) -> FileStat {
        FileStat {
            dev: f.dev,
            ino: f.ino,
            size: f.size,
            mtime: f.mtime,
            ctime: f.ctime,
        }
    }

    #[test]
    fn round_trips_and_refuses_other_roots_versions_and_garbage() {
        let bytes = CacheFile::encode(
            b"/r",
            Timestamp::new(100, 0),
            vec![file("b", 1, 1), file("a", 1, 1)],
        );
        let cache = CacheFile::decode(&bytes, b"/r").unwrap();
        assert_eq!(cache.len(), 2);
        assert_eq!(
            CacheFile::decode(&bytes, b"/other").unwrap_err(),
            LoadError::OtherRoot
        );
        let mut newer = bytes.clone();
        newer[8] = 9;
        assert_eq!(
            CacheFile::decode(&newer, b"/r").unwrap_err(),
            LoadError::UnknownVersion(9)
        );
        for cut in 0..bytes.len() {
            assert!(
                CacheFile::decode(&bytes[..cut], b"/r").is_err(),
                "cut at {cut}"
            );
        }
        let mut flipped = bytes.clone();
        flipped[0] ^= 1;
        assert!(matches!(
            CacheFile::decode(&flipped, b"/r"),
            Err(LoadError::Corrupt(_))
        ));
    }

    #[test]
    fn an_entry_is_used_only_when_everything_matches_and_it_is_settled() {
        let started = Timestamp::new(1000, 500);
        let old = file("old", 900, 900);
        let recently_modified = file("racy-m", 999, 900);
        let recently_changed = file("racy-c", 900, 999);
        let same_second = file("same", 1000, 1000);
        let bytes = CacheFile::encode(
            b"/r",
            started,
            vec![
                old.clone(),
                recently_modified.clone(),
                recently_changed.clone(),
                same_second.clone(),
            ],
        );
        let cache = CacheFile::decode(&bytes, b"/r").unwrap();
        assert_eq!(cache.cutoff(), Timestamp::new(999, 0));
        let yes = |_: &ChunkId| true;
        assert!(cache.lookup(b"old", &stat_of(&old), yes).is_some());
        // Within a second of the scan's start: re-read, even if nothing moved.
        for racy in [&recently_modified, &recently_changed, &same_second] {
            assert!(cache.lookup(&racy.path, &stat_of(racy), yes).is_none());
        }
        // Any field that differs, to the nanosecond, means a re-read.
        let now = stat_of(&old);
        for changed in [
            FileStat { dev: 9, ..now },
            FileStat { ino: 9, ..now },
            FileStat { size: 9, ..now },
            FileStat {
                mtime: Timestamp::new(900, 6),
                ..now
            },
            FileStat {
                ctime: Timestamp::new(900, 8),
                ..now
            },
        ] {
            assert!(cache.lookup(b"old", &changed, yes).is_none(), "{changed:?}");
        }
        // A chunk gone from the store (collected, never flushed) means a re-read.
        assert!(cache.lookup(b"old", &now, |_| false).is_none());
        assert!(cache.lookup(b"missing", &now, yes).is_none());
    }
}
