//! One path of a tree: its kind, content and metadata.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::chunk_list::ChunkList;
use crate::tree::path::TreePath;

/// A modification time: seconds and nanoseconds since the Unix epoch.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
pub struct Timestamp {
    /// Whole seconds since 1970-01-01T00:00:00Z (negative before it).
    pub secs: i64,
    /// Nanoseconds past `secs`; below 1 000 000 000 in a valid entry.
    pub nanos: u32,
}

impl Timestamp {
    /// The Unix epoch, 1970-01-01T00:00:00Z.
    pub const EPOCH: Timestamp = Timestamp { secs: 0, nanos: 0 };

    /// A timestamp of `secs` seconds and `nanos` nanoseconds.
    #[must_use]
    pub const fn new(secs: i64, nanos: u32) -> Self {
        Self { secs, nanos }
    }

    /// The system clock's time now; [`EPOCH`](Self::EPOCH) if the clock is
    /// set before it.
    #[must_use]
    pub fn now() -> Self {
        match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => Self::new(
                i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                d.subsec_nanos(),
            ),
            Err(_) => Self::EPOCH,
        }
    }
}

/// The metadata of an entry: what `stat` and the xattr calls report, minus the
/// file type (that is the [`EntryKind`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Metadata {
    /// Permission bits including setuid, setgid and sticky: `st_mode & 0o7777`.
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Modification time, to the nanosecond (directories included).
    pub mtime: Timestamp,
    /// Extended attributes, name to value.
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Default for Metadata {
    /// The metadata of the root of the empty tree: mode `0o755`, owned by 0:0,
    /// mtime 0, no xattrs.
    fn default() -> Self {
        Self::new(0o755)
    }
}

impl Metadata {
    /// Metadata with permission bits `mode`, owned by 0:0, mtime 0, no xattrs.
    #[must_use]
    pub const fn new(mode: u32) -> Self {
        Self {
            mode,
            uid: 0,
            gid: 0,
            mtime: Timestamp::EPOCH,
            xattrs: BTreeMap::new(),
        }
    }
}

/// What an entry is, with what only that kind has.
///
/// The variants' order is part of the encoding (and so of every id): new kinds
/// go at the end.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EntryKind {
    /// A regular file: `size` bytes, the concatenation of `chunks`.
    File {
        /// The length in bytes; equals `chunks.content_len()`.
        size: u64,
        /// The content's chunks, in order.
        chunks: ChunkList,
    },
    /// A directory.
    Dir,
    /// A symbolic link to `target` (bytes, never followed by this crate).
    Symlink {
        /// The link's content; not empty, no NUL byte.
        target: Vec<u8>,
    },
    /// A further name of a regular file: this path shares an inode with
    /// `target`, the first path of the link group in sorted order, which is a
    /// [`EntryKind::File`] that sorts before this entry. Content comes from the
    /// target; checkout makes a hard link to it.
    Hardlink {
        /// The first path of the link group.
        target: TreePath,
    },
    /// A character device.
    CharDevice {
        /// The device number (`st_rdev`).
        rdev: u64,
    },
    /// A block device.
    BlockDevice {
        /// The device number (`st_rdev`).
        rdev: u64,
    },
    /// A named pipe.
    Fifo,
}

/// One path of a tree: where it is, what it is, and its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entry {
    /// Where in the tree; the root directory is [`TreePath::ROOT`].
    pub path: TreePath,
    /// What it is.
    pub kind: EntryKind,
    /// Mode, owner, mtime, xattrs. For a [`EntryKind::Hardlink`] this is what
    /// was recorded for the path (normally the target's, as they share an
    /// inode); checkout takes the inode's metadata from the target.
    pub meta: Metadata,
}

impl Entry {
    /// An entry of any kind.
    #[must_use]
    pub const fn new(path: TreePath, kind: EntryKind, meta: Metadata) -> Self {
        Self { path, kind, meta }
    }

    /// A directory.
    #[must_use]
    pub const fn dir(path: TreePath, meta: Metadata) -> Self {
        Self::new(path, EntryKind::Dir, meta)
    }

    /// A regular file holding `chunks`; the size is their total length.
    #[must_use]
    pub fn file(path: TreePath, chunks: ChunkList, meta: Metadata) -> Self {
        let size = chunks.content_len();
        Self::new(path, EntryKind::File { size, chunks }, meta)
    }

    /// A symbolic link to `target`.
    #[must_use]
    pub fn symlink(path: TreePath, target: impl Into<Vec<u8>>, meta: Metadata) -> Self {
        Self::new(
            path,
            EntryKind::Symlink {
                target: target.into(),
            },
            meta,
        )
    }

    /// A further name of the regular file at `target`.
    #[must_use]
    pub const fn hardlink(path: TreePath, target: TreePath, meta: Metadata) -> Self {
        Self::new(path, EntryKind::Hardlink { target }, meta)
    }

    /// Whether this is a directory.
    #[must_use]
    pub const fn is_dir(&self) -> bool {
        matches!(self.kind, EntryKind::Dir)
    }

    /// Whether this is a regular file (not a further hard link to one).
    #[must_use]
    pub const fn is_file(&self) -> bool {
        matches!(self.kind, EntryKind::File { .. })
    }

    /// Checks the rules that concern this entry alone: mode within `0o7777`,
    /// nanoseconds below one second, a file's size equal to its chunks' total,
    /// a symlink target neither empty nor holding NUL, a hard link's target
    /// sorting before it, xattr names neither empty nor holding NUL.
    ///
    /// # Errors
    /// [`Error::InvalidTree`] naming this entry's path.
    pub fn check(&self) -> Result<()> {
        let bad = |reason: String| {
            Err(Error::InvalidTree {
                path: self.path.to_string(),
                reason,
            })
        };
        if self.meta.mode & !0o7777 != 0 {
            return bad(format!(
                "mode {:#o} has bits outside 0o7777 (the file type belongs in the kind)",
                self.meta.mode
            ));
        }
        if self.meta.mtime.nanos >= 1_000_000_000 {
            return bad(format!("mtime has {} nanoseconds", self.meta.mtime.nanos));
        }
        if self
            .meta
            .xattrs
            .keys()
            .any(|k| k.is_empty() || k.contains(&0))
        {
            return bad("an xattr name is empty or holds a NUL byte".to_owned());
        }
        match &self.kind {
            EntryKind::File { size, chunks } if *size != chunks.content_len() => bad(format!(
                "size is {size} but the chunks hold {} bytes",
                chunks.content_len()
            )),
            EntryKind::Symlink { target } if target.is_empty() || target.contains(&0) => {
                bad("symlink target is empty or holds a NUL byte".to_owned())
            }
            EntryKind::Hardlink { target } if *target >= self.path => bad(format!(
                "hard link target '{target}' does not sort before the link"
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::ChunkId;
    use crate::store::chunk_list::ChunkRef;

    fn p(s: &str) -> TreePath {
        TreePath::new(s).unwrap()
    }

    #[test]
    fn file_size_follows_chunks() {
        let chunks: ChunkList = vec![ChunkRef {
            id: ChunkId::of(b"x"),
            len: 7,
        }]
        .into();
        let e = Entry::file(p("f"), chunks.clone(), Metadata::new(0o644));
        assert!(matches!(e.kind, EntryKind::File { size: 7, .. }));
        assert!(e.check().is_ok());
        let lying = Entry::new(
            p("f"),
            EntryKind::File { size: 8, chunks },
            Metadata::new(0o644),
        );
        assert!(matches!(lying.check(), Err(Error::InvalidTree { .. })));
    }

    #[test]
    fn entry_rules() {
        let ok = Entry::dir(p("d"), Metadata::new(0o7777));
        assert!(ok.check().is_ok());
        let bad_mode = Entry::dir(p("d"), Metadata::new(0o40755));
        assert!(bad_mode.check().is_err());
        let mut bad_time = Entry::dir(p("d"), Metadata::new(0o755));
        bad_time.meta.mtime.nanos = 1_000_000_000;
        assert!(bad_time.check().is_err());
        assert!(
            Entry::symlink(p("l"), "", Metadata::new(0o777))
                .check()
                .is_err()
        );
        assert!(
            Entry::hardlink(p("a"), p("b"), Metadata::new(0o644))
                .check()
                .is_err()
        );
        assert!(
            Entry::hardlink(p("b"), p("a"), Metadata::new(0o644))
                .check()
                .is_ok()
        );
        let mut bad_xattr = Entry::dir(p("d"), Metadata::new(0o755));
        bad_xattr.meta.xattrs.insert(Vec::new(), b"v".to_vec());
        assert!(bad_xattr.check().is_err());
    }
}
