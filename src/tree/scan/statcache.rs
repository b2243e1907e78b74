//! The stat cache: what a scan learnt about each regular file, so that a
//! rescan of an unchanged file takes its chunk list without reading it.
//!
//! One file per scanned directory, in the store:
//! `<store>/cache/stat/<hex>`, where `<hex>` is the BLAKE3 of the directory's
//! canonical absolute path (its bytes). Written atomically (staged in
//! `<store>/tmp/`) at the end of each scan, replacing the previous one.
//!
//! The cache does not repeat what the scan's snapshot holds (paths, sizes,
//! mtimes, chunk lists, xattrs): it names that snapshot, which the scan
//! stored, and adds one fixed-width record per entry of it, in the
//! snapshot's order, with what a snapshot does not keep: device, inode and
//! ctime. A rescan loads the snapshot, finds a path in it by binary search
//! and reads the record at the same index; nothing is allocated per entry.
//!
//! ```text
//! offset 0  8 bytes  magic "LSSTATC\n"
//!        8  4 bytes  format version, little-endian (4)
//!       12  …        zstd of the postcard body: CacheBody, to the end
//! record    28 bytes dev u64, ino u64, ctime seconds i64, ctime nanoseconds
//!                    u32 (u32::MAX: no record, the entry is not a file
//!                    whose stat the scan saw), little-endian
//! ```
//!
//! # When a cached entry is used
//!
//! A file's cached chunk list is used only if all of these hold:
//! - its `lstat` now gives the recorded device, inode and ctime, and the
//!   size and mtime of the snapshot's entry, each to the nanosecond;
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
//! One whose snapshot is no longer in the store (the scan's result was never
//! flushed, or was collected) is ignored without a warning: every file is
//! read, as when chunks are missing.

use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::fsutil::durable;
use crate::id::{ChunkId, SnapshotId};
use crate::store::{Store, layout};
use crate::tree::entry::{Entry, EntryKind, Timestamp};
use crate::tree::path::TreePath;
use crate::tree::snapshot::{self, Snapshot};

/// The first bytes of every stat-cache file.
const MAGIC: [u8; 8] = *b"LSSTATC\n";
/// The format version this build writes and reads.
pub(crate) const VERSION: u32 = 4;
/// The most a cache body may decompress to (28 bytes per entry: a million
/// entries take 27 MiB).
const MAX_BODY: u64 = 512 << 20;
/// The header's length: magic and version.
const HEADER_LEN: usize = 12;
/// The length of one record.
pub(crate) const RECORD_LEN: usize = 28;
/// The ctime nanoseconds of an entry without a record.
const NO_RECORD: u32 = u32::MAX;
/// How much older than the scan's start a file's timestamps must be, in whole
/// seconds, before its cached chunks are trusted (see the module docs).
const MARGIN_SECS: i64 = 1;

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
    /// The scan's snapshot, stored.
    snapshot: SnapshotId,
    /// [`RECORD_LEN`] bytes per entry of the snapshot, in its order.
    #[serde(with = "serde_bytes_vec")]
    records: Vec<u8>,
}

/// `Vec<u8>` as one byte string (postcard writes it as length and bytes
/// either way; this spares serde's element-by-element path).
mod serde_bytes_vec {
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }
        d.deserialize_byte_buf(Visitor)
    }
}

/// A decoded cache file, before its snapshot is loaded.
#[derive(Debug)]
pub(crate) struct CacheFile {
    scan_started: Timestamp,
    snapshot: SnapshotId,
    records: Vec<u8>,
}

/// A loaded stat cache: the previous scan's snapshot and its records.
#[derive(Debug)]
pub(crate) struct Loaded {
    cache: CacheFile,
    tree: Snapshot,
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
    layout::stat_cache(store.path()).join(blake3::hash(root).to_hex().as_str())
}

/// Deletes the stat cache of the scanned directory `dir`, if there is one:
/// for callers that delete a directory they had scanned. Best effort: a
/// cache left behind costs disk space, never a wrong answer.
pub(crate) fn forget(store: &Store, dir: &Path) {
    if let Ok(canonical) = std::fs::canonicalize(dir) {
        let _ = std::fs::remove_file(cache_path(store, canonical.as_os_str().as_bytes()));
    }
}

/// The records of a snapshot's entries, built in its order.
pub(crate) struct Records {
    bytes: Vec<u8>,
}

impl Records {
    /// Records for `entries` entries, none filled in.
    pub(crate) fn new(entries: usize) -> Self {
        let mut none = [0u8; RECORD_LEN];
        none[24..].copy_from_slice(&NO_RECORD.to_le_bytes());
        Self {
            bytes: none.repeat(entries),
        }
    }

    /// Records `stat` for the entry at `index`.
    pub(crate) fn set(&mut self, index: usize, stat: &FileStat) {
        let at = index * RECORD_LEN;
        let Some(record) = self.bytes.get_mut(at..at + RECORD_LEN) else {
            return;
        };
        record[..8].copy_from_slice(&stat.dev.to_le_bytes());
        record[8..16].copy_from_slice(&stat.ino.to_le_bytes());
        record[16..24].copy_from_slice(&stat.ctime.secs.to_le_bytes());
        record[24..].copy_from_slice(&stat.ctime.nanos.to_le_bytes());
    }
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
        if !body.records.len().is_multiple_of(RECORD_LEN) {
            return Err(LoadError::Corrupt(format!(
                "{} bytes of records is not a whole number of records",
                body.records.len()
            )));
        }
        Ok(Self {
            scan_started: body.scan_started,
            snapshot: body.snapshot,
            records: body.records,
        })
    }

    /// Encodes the cache of `root` written by a scan that started at
    /// `scan_started`, whose (stored) snapshot is `snapshot`, with `records`
    /// for its entries.
    pub(crate) fn encode(
        root: &[u8],
        scan_started: Timestamp,
        snapshot: SnapshotId,
        records: Records,
    ) -> Vec<u8> {
        let body = CacheBody {
            root: root.to_vec(),
            scan_started,
            snapshot,
            records: records.bytes,
        };
        // Writing to a Vec only fails if a Serialize impl fails; ours do not.
        let raw = postcard::to_stdvec(&body)
            .unwrap_or_else(|err| unreachable!("postcard encoding into a Vec failed: {err}"));
        let mut out = Vec::with_capacity(HEADER_LEN + raw.len() / 2);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        // Level 1: the cache is written on every scan.
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
        durable::write_atomic(&layout::tmp(store.path()), dest, bytes)
    }

    /// The snapshot the cache describes.
    pub(crate) fn snapshot_id(&self) -> SnapshotId {
        self.snapshot
    }

    /// The cache with its snapshot `tree` (loaded by the caller from the
    /// store, by [`CacheFile::snapshot_id`]); `None` if the records do not
    /// number its entries.
    pub(crate) fn with_tree(self, tree: Snapshot) -> Option<Loaded> {
        (self.records.len() == tree.entries().len() * RECORD_LEN)
            .then_some(Loaded { cache: self, tree })
    }

    /// The scan's start, snapshot and records, to rewrite a cache in tests.
    #[cfg(test)]
    pub(crate) fn into_parts(self) -> (Timestamp, SnapshotId, Vec<u8>) {
        (self.scan_started, self.snapshot, self.records)
    }

    /// A cache of these parts, for tests.
    #[cfg(test)]
    pub(crate) fn encode_parts(
        root: &[u8],
        scan_started: Timestamp,
        snapshot: SnapshotId,
        records: Vec<u8>,
    ) -> Vec<u8> {
        Self::encode(root, scan_started, snapshot, Records { bytes: records })
    }
}

impl Loaded {
    /// Timestamps strictly before this are old enough to trust: the start of
    /// the scan that wrote the cache, less [`MARGIN_SECS`], in whole seconds.
    pub(crate) fn cutoff(&self) -> Timestamp {
        Timestamp::new(self.cache.scan_started.secs.saturating_sub(MARGIN_SECS), 0)
    }

    /// Its id.
    pub(crate) fn tree_id(&self) -> SnapshotId {
        self.cache.snapshot
    }

    /// Whether `records` are this cache's, byte for byte: a scan that found
    /// the same tree with the same records need not write the cache again
    /// (the older scan start it keeps only makes the racy rule stricter).
    pub(crate) fn has_records(&self, records: &Records) -> bool {
        self.cache.records == records.bytes
    }

    /// The record of entry `index`: device, inode, ctime.
    fn record(&self, index: usize) -> Option<(u64, u64, Timestamp)> {
        let at = index.checked_mul(RECORD_LEN)?;
        let r = self.cache.records.get(at..at + RECORD_LEN)?;
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&r[i..i + 8]);
            u64::from_le_bytes(b)
        };
        let nanos = u32::from_le_bytes([r[24], r[25], r[26], r[27]]);
        if nanos == NO_RECORD {
            return None;
        }
        let secs = i64::from_le_bytes(u64_at(16).to_le_bytes());
        Some((u64_at(0), u64_at(8), Timestamp::new(secs, nanos)))
    }

    /// Where the descendants of `dir` are among the tree's entries (empty
    /// if it has none there).
    pub(crate) fn range_of(&self, dir: &TreePath) -> Range<usize> {
        let entries = self.tree.entries();
        let start = entries.partition_point(|e| e.path <= *dir);
        let len = entries[start..].partition_point(|e| dir.is_ancestor_of(&e.path));
        start..start + len
    }

    /// The previous scan's entry of the regular file at `path` (its chunks and
    /// xattrs), if the cache may be trusted for it (see the module docs).
    /// `near`: where to look first (from [`Loaded::range_of`] of its parent;
    /// the whole tree is searched if it is not there). `contains` says
    /// whether the store still holds a chunk.
    pub(crate) fn lookup(
        &self,
        path: &TreePath,
        near: &Range<usize>,
        now: &FileStat,
        contains: impl Fn(&ChunkId) -> bool,
    ) -> Option<&Entry> {
        let entries = self.tree.entries();
        let index = entries
            .get(near.clone())
            .and_then(|slice| snapshot::find(slice, path))
            .map(|i| i + near.start)
            .or_else(|| snapshot::find(entries, path))?;
        let entry = &entries[index];
        let EntryKind::File { size, chunks } = &entry.kind else {
            return None;
        };
        let (dev, ino, ctime) = self.record(index)?;
        let cutoff = self.cutoff();
        let mtime = entry.meta.mtime;
        let same = dev == now.dev
            && ino == now.ino
            && *size == now.size
            && mtime == now.mtime
            && ctime == now.ctime;
        let settled = mtime < cutoff && ctime < cutoff;
        (same
            && settled
            && chunks.content_len() == *size
            && chunks.chunks().iter().all(|c| contains(&c.id)))
        .then_some(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::chunk_list::{ChunkList, ChunkRef};
    use crate::tree::entry::Metadata;

    fn tree(files: &[(&str, i64)]) -> Snapshot {
        let mut entries = vec![Entry::dir(TreePath::ROOT, Metadata::default())];
        for (path, mtime) in files {
            let chunks: ChunkList = vec![ChunkRef {
                id: ChunkId::of(b"abc"),
                len: 3,
            }]
            .into();
            let mut meta = Metadata::new(0o644);
            meta.mtime = Timestamp::new(*mtime, 5);
            entries.push(Entry::new(
                TreePath::new(*path).unwrap(),
                EntryKind::File { size: 3, chunks },
                meta,
            ));
        }
        Snapshot::from_entries(entries).unwrap()
    }

    fn stat(mtime: i64, ctime: i64) -> FileStat {
        FileStat {
            dev: 1,
            ino: 2,
            size: 3,
            mtime: Timestamp::new(mtime, 5),
            ctime: Timestamp::new(ctime, 7),
        }
    }

    fn loaded(tree: &Snapshot, started: Timestamp, stats: &[FileStat]) -> Loaded {
        let mut records = Records::new(tree.entries().len());
        for (i, st) in stats.iter().enumerate() {
            records.set(i + 1, st);
        }
        let bytes = CacheFile::encode(b"/r", started, tree.id(), records);
        let cache = CacheFile::decode(&bytes, b"/r").unwrap();
        assert_eq!(cache.snapshot_id(), tree.id());
        cache.with_tree(tree.clone()).unwrap()
    }

    #[test]
    fn round_trips_and_refuses_other_roots_versions_and_garbage() {
        let t = tree(&[("a", 1), ("b", 1)]);
        let records = Records::new(t.entries().len());
        let bytes = CacheFile::encode(b"/r", Timestamp::new(100, 0), t.id(), records);
        let cache = CacheFile::decode(&bytes, b"/r").unwrap();
        assert_eq!(cache.records.len(), 3 * RECORD_LEN);
        // Records that do not number the snapshot's entries are refused.
        assert!(
            CacheFile::decode(&bytes, b"/r")
                .unwrap()
                .with_tree(tree(&[("a", 1)]))
                .is_none()
        );
        assert!(cache.with_tree(t.clone()).is_some());
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
        let odd = CacheFile::encode_parts(b"/r", Timestamp::new(1, 0), t.id(), vec![0; 5]);
        assert!(matches!(
            CacheFile::decode(&odd, b"/r"),
            Err(LoadError::Corrupt(_))
        ));
    }

    #[test]
    fn an_entry_is_used_only_when_everything_matches_and_it_is_settled() {
        let started = Timestamp::new(1000, 500);
        // Entries sort: old, racy-c, racy-m, same, unrecorded.
        let t = tree(&[
            ("old", 900),
            ("racy-c", 900),
            ("racy-m", 999),
            ("same", 1000),
            ("unrecorded", 900),
        ]);
        let stats = [
            stat(900, 900),
            stat(900, 999),
            stat(999, 900),
            stat(1000, 1000),
        ];
        let cache = loaded(&t, started, &stats);
        assert_eq!(cache.cutoff(), Timestamp::new(999, 0));
        let yes = |_: &ChunkId| true;
        let p = |s: &str| TreePath::new(s).unwrap();
        assert!(cache.lookup(&p("old"), &(0..0), &stats[0], yes).is_some());
        assert!(cache.lookup(&p("old"), &(1..3), &stats[0], yes).is_some());
        assert_eq!(cache.range_of(&TreePath::ROOT), 1..6);
        assert_eq!(cache.range_of(&p("old")), 2..2);
        // Within a second of the scan's start: re-read, even if nothing moved.
        for (path, st) in [
            ("racy-c", &stats[1]),
            ("racy-m", &stats[2]),
            ("same", &stats[3]),
        ] {
            assert!(
                cache
                    .lookup(&p(path), &cache.range_of(&TreePath::ROOT), st, yes)
                    .is_none(),
                "{path}"
            );
        }
        // No record, no use.
        assert!(
            cache
                .lookup(&p("unrecorded"), &(0..0), &stats[0], yes)
                .is_none()
        );
        // Any field that differs, to the nanosecond, means a re-read.
        let now = stats[0];
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
            assert!(
                cache.lookup(&p("old"), &(1..2), &changed, yes).is_none(),
                "{changed:?}"
            );
        }
        // A chunk gone from the store (collected, never flushed) means a re-read.
        assert!(cache.lookup(&p("old"), &(0..0), &now, |_| false).is_none());
        assert!(cache.lookup(&p("missing"), &(0..9), &now, yes).is_none());
        // The root is a directory: never a file's entry.
        assert!(cache.lookup(&TreePath::ROOT, &(0..0), &now, yes).is_none());
    }
}
