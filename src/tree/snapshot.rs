//! A whole tree at one moment: every entry, sorted by path.

use std::cmp::Ordering;

use crate::error::{Error, Result};
use crate::id::SnapshotId;
use crate::tree::codec::{self, ObjectKind};
use crate::tree::directory::MAX_DEPTH;
use crate::tree::entry::{Entry, EntryKind, Metadata};
use crate::tree::path::TreePath;

/// A whole tree: every entry of a directory at one moment, sorted by
/// [`TreePath`] order, starting with the root directory (whose metadata is
/// part of the tree).
///
/// A `Snapshot` is always valid: paths are unique and sorted, every entry's
/// parent is a directory of the snapshot, and every hard link names a regular
/// file that sorts before it, and directories nest at most 4096 deep. Its
/// [`id`](Snapshot::id) depends only on the
/// entries, not on the order they were found in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Snapshot {
    entries: Vec<Entry>,
}

impl Default for Snapshot {
    /// The empty tree, see [`Snapshot::empty`].
    fn default() -> Self {
        Self::empty()
    }
}

/// Making
impl Snapshot {
    /// The empty tree: only the root directory, with [`Metadata::default`]
    /// (mode `0o755`, 0:0, mtime 0). Flattening starts from it.
    #[must_use]
    pub fn empty() -> Self {
        Self {
            entries: vec![Entry::dir(TreePath::ROOT, Metadata::default())],
        }
    }

    /// A snapshot of `entries`, which must already be sorted by path.
    ///
    /// # Errors
    /// [`Error::InvalidTree`] naming the first offending path: no root
    /// directory, a path out of order or repeated, a parent missing or not a
    /// directory, a hard link whose target is missing, not a regular file or
    /// not earlier, or an entry failing [`Entry::check`].
    pub fn from_sorted(entries: Vec<Entry>) -> Result<Self> {
        validate(&entries)?;
        Ok(Self { entries })
    }

    /// A snapshot of `entries` in any order (a parallel walk's output, say):
    /// sorts them, then checks them like [`Snapshot::from_sorted`].
    ///
    /// # Errors
    /// As [`Snapshot::from_sorted`]; two entries with one path are refused.
    pub fn from_entries(mut entries: Vec<Entry>) -> Result<Self> {
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Self::from_sorted(entries)
    }

    /// The flat canonical encoding: header (magic, kind, version) and a
    /// `postcard` body holding the entries in order; a tree in one buffer, for
    /// exchange. (The store holds trees one directory per object instead; see
    /// [`Snapshot::id`].)
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(ObjectKind::Snapshot, &self.entries)
    }

    /// Decodes what [`Snapshot::encode`] wrote, checking it like
    /// [`Snapshot::from_sorted`]. Never panics; memory use is bounded by a small
    /// multiple of `bytes.len()`.
    ///
    /// # Errors
    /// [`Error::Malformed`] if the bytes are not an encoded snapshot,
    /// [`Error::InvalidTree`] if they encode an invalid one.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        Self::from_sorted(codec::decode(ObjectKind::Snapshot, bytes)?)
    }

    /// The tree's id: the id of its root directory's object as the store
    /// holds it ([`Store::put_snapshot`](crate::Store::put_snapshot)), one
    /// object per directory, each naming its subdirectories by id. Equal
    /// trees have equal ids, whatever made them.
    #[must_use]
    pub fn id(&self) -> SnapshotId {
        crate::tree::directory::tree_id(self)
    }

    /// The entries, sorted by path; the root comes first.
    #[must_use]
    pub fn into_entries(self) -> Vec<Entry> {
        self.entries
    }
}

/// Reading
impl Snapshot {
    /// The entries, sorted by path; the root comes first.
    #[must_use]
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entries, sorted by path.
    pub fn iter(&self) -> std::slice::Iter<'_, Entry> {
        self.entries.iter()
    }

    /// The root directory's entry.
    #[must_use]
    pub fn root(&self) -> &Entry {
        // Validation guarantees a first entry; `Snapshot` has no empty state.
        &self.entries[0]
    }

    /// The entry at `path`, if there is one (binary search).
    #[must_use]
    pub fn get(&self, path: &TreePath) -> Option<&Entry> {
        find(&self.entries, path).map(|i| &self.entries[i])
    }

    /// Every entry strictly beneath `dir`, in order: one contiguous range of
    /// [`Snapshot::entries`]. Empty if `dir` is absent or not a directory.
    #[must_use]
    pub fn descendants_of(&self, dir: &TreePath) -> &[Entry] {
        self.descendants_at(dir).1
    }

    /// As [`Snapshot::descendants_of`], and the index of its first entry.
    fn descendants_at(&self, dir: &TreePath) -> (usize, &[Entry]) {
        let start = self.entries.partition_point(|e| e.path <= *dir);
        let rest = &self.entries[start..];
        let len = rest.partition_point(|e| dir.is_ancestor_of(&e.path));
        (start, &rest[..len])
    }

    /// The entries directly in `dir`, in order, skipping over the subtrees of
    /// subdirectories by binary search.
    #[must_use]
    pub fn children_of(&self, dir: &TreePath) -> Children<'_> {
        let (at, rest) = self.descendants_at(dir);
        Children { rest, at }
    }
}

impl<'a> IntoIterator for &'a Snapshot {
    type Item = &'a Entry;
    type IntoIter = std::slice::Iter<'a, Entry>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter()
    }
}

/// The entries directly in one directory, from [`Snapshot::children_of`].
#[derive(Debug, Clone)]
pub struct Children<'a> {
    /// The remaining descendants of the directory; the first is a child.
    rest: &'a [Entry],
    /// The index of `rest[0]` in the snapshot's entries.
    at: usize,
}

impl<'a> Children<'a> {
    /// The next child and its index in [`Snapshot::entries`].
    pub(crate) fn next_indexed(&mut self) -> Option<(usize, &'a Entry)> {
        let (child, after) = self.rest.split_first()?;
        let skip = if child.is_dir() {
            after.partition_point(|e| child.path.is_ancestor_of(&e.path))
        } else {
            0
        };
        let index = self.at;
        self.rest = &after[skip..];
        self.at += 1 + skip;
        Some((index, child))
    }
}

impl<'a> Iterator for Children<'a> {
    type Item = &'a Entry;
    fn next(&mut self) -> Option<&'a Entry> {
        self.next_indexed().map(|(_, child)| child)
    }
}

/// The index of `path` in sorted `entries`.
pub(crate) fn find(entries: &[Entry], path: &TreePath) -> Option<usize> {
    entries.binary_search_by(|e| e.path.cmp(path)).ok()
}

/// Checks every rule of [`Snapshot`] in one pass.
pub(crate) fn validate(entries: &[Entry]) -> Result<()> {
    let invalid = |path: &TreePath, reason: String| Error::InvalidTree {
        path: path.to_string(),
        reason,
    };
    let Some(root) = entries.first() else {
        return Err(invalid(
            &TreePath::ROOT,
            "the root directory is missing".to_owned(),
        ));
    };
    if !root.path.is_root() {
        return Err(invalid(
            &TreePath::ROOT,
            "the root directory is missing".to_owned(),
        ));
    }
    if !root.is_dir() {
        return Err(invalid(
            &TreePath::ROOT,
            "the root is not a directory".to_owned(),
        ));
    }
    root.check()?;
    // The directories enclosing the current entry, outermost first.
    let mut dirs: Vec<&TreePath> = vec![&root.path];
    for (i, pair) in entries.windows(2).enumerate() {
        let (prev, entry) = (&pair[0], &pair[1]);
        entry.check()?;
        match prev.path.cmp(&entry.path) {
            Ordering::Less => {}
            Ordering::Equal => return Err(invalid(&entry.path, "path occurs twice".to_owned())),
            Ordering::Greater => {
                return Err(invalid(
                    &entry.path,
                    format!("out of order: comes after '{}'", prev.path),
                ));
            }
        }
        while dirs.last().is_some_and(|d| !d.is_ancestor_of(&entry.path)) {
            dirs.pop();
        }
        // `entry` is not the root (the root sorts first and paths are unique).
        let parent = entry.path.parent_bytes().unwrap_or_default();
        if dirs.last().is_none_or(|d| d.as_bytes() != parent) {
            let parent = TreePath::from_trusted(parent.to_vec());
            let reason = if find(&entries[..=i], &parent).is_some() {
                format!("parent '{parent}' is not a directory")
            } else {
                format!("parent directory '{parent}' is missing")
            };
            return Err(invalid(&entry.path, reason));
        }
        if entry.is_dir() {
            if dirs.len() > MAX_DEPTH {
                return Err(invalid(
                    &entry.path,
                    format!("more than {MAX_DEPTH} directories deep"),
                ));
            }
            dirs.push(&entry.path);
        }
        if let EntryKind::Hardlink { target } = &entry.kind {
            // `check` made sure the target sorts before the link.
            match find(&entries[..=i], target).map(|t| &entries[t].kind) {
                Some(EntryKind::File { .. }) => {}
                Some(_) => {
                    return Err(invalid(
                        &entry.path,
                        format!("hard link target '{target}' is not a regular file"),
                    ));
                }
                None => {
                    return Err(invalid(
                        &entry.path,
                        format!("hard link target '{target}' is missing"),
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::chunk_list::ChunkList;

    fn p(s: &str) -> TreePath {
        TreePath::new(s).unwrap()
    }
    fn dir(s: &str) -> Entry {
        Entry::dir(p(s), Metadata::new(0o755))
    }
    fn file(s: &str) -> Entry {
        Entry::file(p(s), ChunkList::new(), Metadata::new(0o644))
    }

    fn reason(entries: Vec<Entry>) -> String {
        match Snapshot::from_sorted(entries) {
            Err(Error::InvalidTree { path, reason }) => format!("{path}: {reason}"),
            other => panic!("expected InvalidTree, got {other:?}"),
        }
    }

    #[test]
    fn validation_names_the_path() {
        assert_eq!(reason(vec![]), ".: the root directory is missing");
        assert_eq!(reason(vec![file("")]), ".: the root is not a directory");
        assert_eq!(reason(vec![dir("a")]), ".: the root directory is missing");
        assert_eq!(
            reason(vec![dir(""), file("a"), file("a")]),
            "a: path occurs twice"
        );
        assert_eq!(
            reason(vec![dir(""), file("b"), file("a")]),
            "a: out of order: comes after 'b'"
        );
        assert_eq!(
            reason(vec![dir(""), file("a/b")]),
            "a/b: parent directory 'a' is missing"
        );
        assert_eq!(
            reason(vec![dir(""), file("a"), file("a/b")]),
            "a/b: parent 'a' is not a directory"
        );
        assert_eq!(
            reason(vec![
                dir(""),
                dir("a"),
                Entry::hardlink(p("b"), p("a"), Metadata::new(0))
            ]),
            "b: hard link target 'a' is not a regular file"
        );
        assert_eq!(
            reason(vec![
                dir(""),
                Entry::hardlink(p("b"), p("a"), Metadata::new(0))
            ]),
            "b: hard link target 'a' is missing"
        );
        // `a.b` sorts after the whole subtree of `a`.
        assert!(Snapshot::from_sorted(vec![dir(""), dir("a"), file("a/x"), file("a.b")]).is_ok());
        assert!(Snapshot::from_sorted(vec![dir(""), dir("a"), file("a.b"), file("a/x")]).is_err());
    }

    #[test]
    fn lookups() {
        let s = Snapshot::from_entries(vec![
            dir("a"),
            file("a.b"),
            dir("a/d"),
            file("a/d/x"),
            file("a/e"),
            dir(""),
            file("a/c"),
            file("b"),
        ])
        .unwrap();
        assert_eq!(s.root().path, TreePath::ROOT);
        assert!(s.get(&p("a/d/x")).is_some());
        assert!(s.get(&p("a/d/y")).is_none());
        let names = |it: Vec<&Entry>| it.iter().map(|e| e.path.to_string()).collect::<Vec<_>>();
        assert_eq!(
            names(s.children_of(&p("a")).collect()),
            ["a/c", "a/d", "a/e"]
        );
        assert_eq!(
            names(s.children_of(&TreePath::ROOT).collect()),
            ["a", "a.b", "b"]
        );
        assert_eq!(
            names(s.descendants_of(&p("a")).iter().collect()),
            ["a/c", "a/d", "a/d/x", "a/e"]
        );
        assert!(s.children_of(&p("b")).next().is_none());
        assert!(s.children_of(&p("zz")).next().is_none());
        // The indexes are the children's places among all entries.
        let mut children = s.children_of(&p("a"));
        let mut indexed = Vec::new();
        while let Some((i, child)) = children.next_indexed() {
            assert_eq!(&s.entries()[i], child);
            indexed.push(i);
        }
        assert_eq!(indexed, [2, 3, 5]); // "", a, a/c, a/d, a/d/x, a/e, a.b, b
        assert_eq!(s.iter().count(), 8);
    }

    #[test]
    fn encoding_round_trips_and_refuses_garbage() {
        let s = Snapshot::from_entries(vec![dir(""), dir("a"), file("a/b")]).unwrap();
        let bytes = s.encode();
        assert_eq!(Snapshot::decode(&bytes).unwrap(), s);
        for cut in 0..bytes.len() {
            assert!(Snapshot::decode(&bytes[..cut]).is_err());
        }
        // A well-formed body that breaks a tree rule is refused too.
        let unsorted = codec::encode(ObjectKind::Snapshot, &vec![dir(""), file("b"), file("a")]);
        assert!(matches!(
            Snapshot::decode(&unsorted),
            Err(Error::InvalidTree { .. })
        ));
        // A huge claimed length does not allocate it.
        let mut huge = codec::encode(ObjectKind::Snapshot, &Vec::<Entry>::new());
        huge.truncate(codec::HEADER_LEN);
        huge.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(matches!(
            Snapshot::decode(&huge),
            Err(Error::Malformed { .. })
        ));
    }
}
