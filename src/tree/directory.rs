//! How a tree is stored: one object per directory, holding the directory's
//! own metadata and its children by name, each subdirectory by the id of its
//! own object (a Merkle tree, as git's and ostree's trees are). A tree's id,
//! [`SnapshotId`], is its root directory's object id.
//!
//! So a tree that changes in a few places stores only the directories on the
//! paths to them (the rest are the objects it had), a path is found by
//! reading the directories along it, and a changed tree's new id is found by
//! rewriting those directories alone: see `tree::stored`.
//!
//! ```text
//! directory object = header (kind 4) + postcard of
//!   meta      the directory's Metadata
//!   children  sorted by name (bytes): name, then
//!               Dir(id of the child directory's object, hard links beneath it)
//!             | Leaf(EntryKind other than Dir, Metadata)
//! ```
//!
//! The count of hard links beneath each subdirectory lets the hard links of a
//! large tree be found by reading only the directories that have some, and a
//! changed directory be written without reading its unchanged children.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::{ChunkId, SnapshotId};
use crate::tree::codec::{self, ObjectKind};
use crate::tree::entry::{Entry, EntryKind, Metadata};
use crate::tree::path::TreePath;
use crate::tree::snapshot::Snapshot;

/// The most directories a tree may nest (a path of that depth is 8 KiB at
/// least, twice Linux's `PATH_MAX`): a rule of [`Snapshot`], and a bound on
/// any walk of stored directories, whatever the objects say.
pub(crate) const MAX_DEPTH: usize = 4096;

/// The most entries a stored tree may expand to. Subdirectories are named by
/// id, so a few small hostile objects could otherwise name one another
/// thousands of times over; no real tree comes near it.
pub(crate) const MAX_TREE_ENTRIES: usize = 1 << 24;

/// One directory of a stored tree, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Directory {
    /// The directory's own metadata.
    pub(crate) meta: Metadata,
    /// The entries directly in it, sorted by name.
    pub(crate) children: Vec<Child>,
}

/// One entry of a [`Directory`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Child {
    /// The entry's name: one path component.
    pub(crate) name: Vec<u8>,
    /// What it is.
    pub(crate) node: ChildNode,
}

/// A child directory by id, or any other entry in full.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ChildNode {
    /// A subdirectory: the id of its object, and how many hard-link entries
    /// lie beneath it at any depth.
    Dir([u8; 32], u64),
    /// Anything else: never [`EntryKind::Dir`].
    Leaf(EntryKind, Metadata),
}

impl ChildNode {
    /// The object id of a subdirectory.
    pub(crate) fn dir_id(&self) -> Option<ChunkId> {
        match self {
            ChildNode::Dir(id, _) => Some(ChunkId::from_bytes(*id)),
            ChildNode::Leaf(..) => None,
        }
    }

    /// How many hard links this is or holds.
    pub(crate) fn links(&self) -> u64 {
        match self {
            ChildNode::Dir(_, links) => *links,
            ChildNode::Leaf(EntryKind::Hardlink { .. }, _) => 1,
            ChildNode::Leaf(..) => 0,
        }
    }
}

/// [`Directory`] borrowed from a snapshot's entries, for encoding without
/// copying them. Encodes exactly as the owned form.
#[derive(Serialize)]
struct DirectoryRef<'a> {
    meta: &'a Metadata,
    children: Vec<ChildRef<'a>>,
}

#[derive(Serialize)]
struct ChildRef<'a> {
    name: &'a [u8],
    node: NodeRef<'a>,
}

#[derive(Serialize)]
enum NodeRef<'a> {
    Dir([u8; 32], u64),
    Leaf(&'a EntryKind, &'a Metadata),
}

impl Directory {
    /// Decodes a directory object, checking its names (sorted, unique, each
    /// one valid component) and that no leaf is a directory.
    ///
    /// # Errors
    /// [`Error::Malformed`] naming what is wrong.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self> {
        let dir: Directory = codec::decode(ObjectKind::Directory, bytes)?;
        let bad = |reason: String| Error::Malformed {
            what: "directory",
            reason,
        };
        let mut previous: Option<&[u8]> = None;
        for child in &dir.children {
            let name = child.name.as_slice();
            if name.is_empty()
                || name == b"."
                || name == b".."
                || name.contains(&b'/')
                || name.contains(&0)
            {
                return Err(bad(format!(
                    "'{}' is not a file name",
                    crate::tree::path::escape(name)
                )));
            }
            if previous.is_some_and(|p| p >= name) {
                return Err(bad(format!(
                    "'{}' is out of order or repeated",
                    crate::tree::path::escape(name)
                )));
            }
            previous = Some(name);
            if matches!(child.node, ChildNode::Leaf(EntryKind::Dir, _)) {
                return Err(bad(format!(
                    "'{}' is a directory without an object",
                    crate::tree::path::escape(name)
                )));
            }
        }
        Ok(dir)
    }

    /// The child called `name`, by binary search.
    pub(crate) fn child(&self, name: &[u8]) -> Option<&Child> {
        self.children
            .binary_search_by(|c| c.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.children[i])
    }
}

impl Child {
    /// The entry this child is at `path`, for a leaf; `None` for a
    /// subdirectory (its metadata is in its own object).
    ///
    /// # Errors
    /// As [`Entry::check`].
    pub(crate) fn leaf_entry(&self, path: TreePath) -> Result<Option<Entry>> {
        match &self.node {
            ChildNode::Dir(..) => Ok(None),
            ChildNode::Leaf(kind, meta) => {
                let entry = Entry::new(path, kind.clone(), meta.clone());
                entry.check()?;
                Ok(Some(entry))
            }
        }
    }
}

/// The encoded directory objects of `tree`, children before their parents,
/// with their ids: the root's comes last, and its id is the tree's.
pub(crate) fn encode_tree(tree: &Snapshot) -> Vec<(ChunkId, Vec<u8>)> {
    encode_entries(tree.entries())
}

/// [`encode_tree`] of the entries of a valid tree (as a snapshot's, checked
/// by the caller): the root first, then the rest in order.
pub(crate) fn encode_entries(entries: &[Entry]) -> Vec<(ChunkId, Vec<u8>)> {
    let mut out = Vec::new();
    if let Some((root, below)) = entries.split_first() {
        encode_subtree(root, below, 0, &mut out);
    }
    out
}

/// Encoded directory objects with their ids.
type Objects = Vec<(ChunkId, Vec<u8>)>;

/// Subtrees this many directories deep, or smaller than
/// [`PARALLEL_BELOW`] entries, are encoded on one thread.
const PARALLEL_DEPTH: usize = 4;
const PARALLEL_BELOW: usize = 2048;

/// Pushes to `out` the objects of the directory `dir` and of every directory
/// in `below` (its descendants, in order), children first; returns `dir`'s
/// object id and the count of hard links in `below`. Subdirectories of a
/// large directory near the top are encoded in parallel.
fn encode_subtree(
    dir: &Entry,
    below: &[Entry],
    depth: usize,
    out: &mut Vec<(ChunkId, Vec<u8>)>,
) -> ([u8; 32], u64) {
    if depth >= PARALLEL_DEPTH || below.len() < PARALLEL_BELOW {
        return encode_sequential(dir, below, out);
    }
    // Each child, with its descendants (contiguous after it).
    let mut kids = Vec::new();
    let mut rest = below;
    while let Some((child, after)) = rest.split_first() {
        let n = if child.is_dir() {
            after.partition_point(|e| child.path.is_ancestor_of(&e.path))
        } else {
            0
        };
        kids.push((child, &after[..n]));
        rest = &after[n..];
    }
    let encoded: Vec<Option<(Objects, [u8; 32], u64)>> = kids
        .par_iter()
        .map(|(child, sub)| {
            child.is_dir().then(|| {
                let mut objects = Vec::new();
                let (id, links) = encode_subtree(child, sub, depth + 1, &mut objects);
                (objects, id, links)
            })
        })
        .collect();
    let mut open = Open::new(dir);
    for ((child, _), encoded) in kids.iter().zip(encoded) {
        let name = child.path.file_name().unwrap_or_default();
        let node = if let Some((objects, id, links)) = encoded {
            out.extend(objects);
            open.links += links;
            NodeRef::Dir(id, links)
        } else {
            open.links += u64::from(matches!(child.kind, EntryKind::Hardlink { .. }));
            NodeRef::Leaf(&child.kind, &child.meta)
        };
        open.children.push(ChildRef { name, node });
    }
    let mut stack = vec![open];
    close(&mut stack, out)
}

/// [`encode_subtree`] on this thread: one pass over `below`, keeping the
/// directories that enclose the current entry open.
fn encode_sequential(
    dir: &Entry,
    below: &[Entry],
    out: &mut Vec<(ChunkId, Vec<u8>)>,
) -> ([u8; 32], u64) {
    let mut stack = vec![Open::new(dir)];
    for entry in below {
        while stack.len() > 1
            && !stack
                .last()
                .is_some_and(|d| d.entry.path.is_ancestor_of(&entry.path))
        {
            close(&mut stack, out);
        }
        if entry.is_dir() {
            stack.push(Open::new(entry));
        } else if let Some(top) = stack.last_mut() {
            top.links += u64::from(matches!(entry.kind, EntryKind::Hardlink { .. }));
            top.children.push(ChildRef {
                name: entry.path.file_name().unwrap_or_default(),
                node: NodeRef::Leaf(&entry.kind, &entry.meta),
            });
        }
    }
    loop {
        let closed = close(&mut stack, out);
        if stack.is_empty() {
            return closed;
        }
    }
}

/// A directory being gathered by [`encode_tree`].
struct Open<'a> {
    entry: &'a Entry,
    links: u64,
    children: Vec<ChildRef<'a>>,
}

impl<'a> Open<'a> {
    fn new(entry: &'a Entry) -> Self {
        Self {
            entry,
            links: 0,
            children: Vec::new(),
        }
    }
}

/// Encodes the innermost open directory and names it in its parent (the next
/// one out: a snapshot's parents precede their children); returns its id and
/// its count of hard links.
fn close(stack: &mut Vec<Open<'_>>, out: &mut Vec<(ChunkId, Vec<u8>)>) -> ([u8; 32], u64) {
    let Some(done) = stack.pop() else {
        unreachable!("closing a directory that is not open");
    };
    let bytes = codec::encode(
        ObjectKind::Directory,
        &DirectoryRef {
            meta: &done.entry.meta,
            children: done.children,
        },
    );
    let id = *ChunkId::of(&bytes).as_bytes();
    out.push((ChunkId::from_bytes(id), bytes));
    if let Some(parent) = stack.last_mut() {
        parent.links += done.links;
        parent.children.push(ChildRef {
            name: done.entry.path.file_name().unwrap_or_default(),
            node: NodeRef::Dir(id, done.links),
        });
    }
    (id, done.links)
}

/// The id of `tree` as stored: its root directory object's id.
pub(crate) fn tree_id(tree: &Snapshot) -> SnapshotId {
    entries_id(tree.entries())
}

/// [`tree_id`] of the entries of a valid tree, as [`encode_entries`] takes.
pub(crate) fn entries_id(entries: &[Entry]) -> SnapshotId {
    let objects = encode_entries(entries);
    let (root, _) = objects.last().unwrap_or_else(|| unreachable!("a root"));
    SnapshotId::from(*root)
}

/// Reassembles the whole tree whose root directory is `root`, reading
/// subdirectories with `load`, and checks it as [`Snapshot::from_sorted`]
/// does.
///
/// # Errors
/// As [`expand`]; [`Error::InvalidTree`].
pub(crate) fn assemble(
    root: Directory,
    load: &dyn Fn(&ChunkId) -> Result<Directory>,
) -> Result<Snapshot> {
    let mut entries = vec![Entry::dir(TreePath::ROOT, root.meta.clone())];
    expand(root, &TreePath::ROOT, load, &mut entries)?;
    Snapshot::from_sorted(entries)
}

/// Pushes to `out` every entry beneath `dir`, which is at `path`, in tree
/// order, reading subdirectories with `load`; checks each subdirectory's
/// count of hard links against what lies beneath it.
///
/// # Errors
/// `load`'s errors; [`Error::Malformed`] for a wrong count, directories
/// nested more than [`MAX_DEPTH`] deep or a tree of more than
/// [`MAX_TREE_ENTRIES`] entries.
pub(crate) fn expand(
    dir: Directory,
    path: &TreePath,
    load: &dyn Fn(&ChunkId) -> Result<Directory>,
    out: &mut Vec<Entry>,
) -> Result<()> {
    struct Open {
        path: TreePath,
        children: std::vec::IntoIter<Child>,
        /// Hard links found beneath it so far, and what its parent says.
        links: u64,
        declared: u64,
    }
    let bad = |reason: String| Error::Malformed {
        what: "directory",
        reason,
    };
    let first_depth = path.depth();
    let mut stack = vec![Open {
        path: path.clone(),
        children: dir.children.into_iter(),
        links: 0,
        declared: 0,
    }];
    loop {
        let depth = first_depth + stack.len();
        let Some(top) = stack.last_mut() else {
            break;
        };
        let Some(child) = top.children.next() else {
            let done = stack.pop().unwrap_or_else(|| unreachable!("just seen"));
            if let Some(parent) = stack.last_mut() {
                if done.links != done.declared {
                    return Err(bad(format!(
                        "'{}' is said to hold {} hard links, holds {}",
                        done.path, done.declared, done.links
                    )));
                }
                parent.links += done.links;
            }
            continue;
        };
        if out.len() >= MAX_TREE_ENTRIES {
            return Err(bad(format!(
                "the tree has more than {MAX_TREE_ENTRIES} entries"
            )));
        }
        // `Directory::decode` checked that the name is one valid component.
        let path = top.path.join_name(&child.name);
        match child.node {
            ChildNode::Leaf(kind, meta) => {
                top.links += u64::from(matches!(kind, EntryKind::Hardlink { .. }));
                out.push(Entry::new(path, kind, meta));
            }
            ChildNode::Dir(id, declared) => {
                if depth > MAX_DEPTH {
                    return Err(bad(format!(
                        "'{path}' is more than {MAX_DEPTH} directories deep"
                    )));
                }
                let dir = load(&ChunkId::from_bytes(id))?;
                out.push(Entry::dir(path.clone(), dir.meta));
                stack.push(Open {
                    path,
                    children: dir.children.into_iter(),
                    links: 0,
                    declared,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::chunk_list::ChunkList;
    use crate::tree::entry::Timestamp;

    fn p(s: &str) -> TreePath {
        TreePath::new(s).unwrap()
    }

    /// A tree large enough for the parallel encoding: nested directories,
    /// files, and hard links across directories.
    fn wide_tree() -> Snapshot {
        let mut entries = vec![Entry::dir(TreePath::ROOT, Metadata::default())];
        for a in 0..6 {
            entries.push(Entry::dir(p(&format!("d{a}")), Metadata::new(0o755)));
            for b in 0..30 {
                let dir = format!("d{a}/s{b:02}");
                entries.push(Entry::dir(p(&dir), Metadata::new(0o750)));
                for f in 0..25 {
                    let mut meta = Metadata::new(0o644);
                    meta.mtime = Timestamp::new(i64::from(a * 1000 + b * 30 + f), 7);
                    entries.push(Entry::file(
                        p(&format!("{dir}/f{f:02}")),
                        ChunkList::new(),
                        meta,
                    ));
                }
                if b % 7 == 3 {
                    entries.push(Entry::hardlink(
                        p(&format!("{dir}/link")),
                        p(&format!("d0/s00/f{:02}", b % 25)),
                        Metadata::new(0o644),
                    ));
                }
            }
        }
        Snapshot::from_entries(entries).unwrap()
    }

    #[test]
    fn parallel_and_sequential_encodings_agree_and_read_back() {
        let tree = wide_tree();
        assert!(tree.entries().len() > PARALLEL_BELOW * 2);
        let parallel = encode_tree(&tree);
        let mut sequential = Vec::new();
        let (root, links) =
            encode_sequential(&tree.entries()[0], &tree.entries()[1..], &mut sequential);
        assert_eq!(links, 6 * 4); // b = 3, 10, 17, 24 in each of 6 directories
        assert_eq!(parallel.last().map(|(id, _)| *id.as_bytes()), Some(root));
        let mut a: Vec<_> = parallel.iter().map(|(id, _)| *id).collect();
        let mut b: Vec<_> = sequential.iter().map(|(id, _)| *id).collect();
        a.sort_unstable();
        b.sort_unstable();
        assert_eq!(a, b);
        // Children come before their parents.
        let position: std::collections::HashMap<ChunkId, usize> = parallel
            .iter()
            .enumerate()
            .map(|(i, (id, _))| (*id, i))
            .collect();
        for (i, (_, bytes)) in parallel.iter().enumerate() {
            for child in Directory::decode(bytes).unwrap().children {
                if let Some(id) = child.node.dir_id() {
                    assert!(position[&id] < i);
                }
            }
        }
        let objects: std::collections::HashMap<_, _> = parallel.into_iter().collect();
        let load = |id: &ChunkId| Directory::decode(&objects[id]);
        let root = load(&ChunkId::from_bytes(root)).unwrap();
        assert_eq!(assemble(root, &load).unwrap(), tree);
    }

    #[test]
    fn wrong_link_counts_and_bad_names_are_refused() {
        let tree = wide_tree();
        let objects: std::collections::HashMap<_, _> = encode_tree(&tree).into_iter().collect();
        let root_id = ChunkId::from(tree.id());
        let mut root = Directory::decode(&objects[&root_id]).unwrap();
        if let ChildNode::Dir(_, links) = &mut root.children[0].node {
            *links += 1;
        }
        let load = |id: &ChunkId| Directory::decode(&objects[id]);
        assert!(matches!(
            assemble(root, &load),
            Err(Error::Malformed {
                what: "directory",
                ..
            })
        ));
        for name in [&b""[..], b".", b"..", b"a/b", b"a\0"] {
            let dir = Directory {
                meta: Metadata::default(),
                children: vec![Child {
                    name: name.to_vec(),
                    node: ChildNode::Leaf(EntryKind::Fifo, Metadata::default()),
                }],
            };
            let bytes = codec::encode(ObjectKind::Directory, &dir);
            assert!(Directory::decode(&bytes).is_err(), "{name:?}");
        }
        let unsorted = Directory {
            meta: Metadata::default(),
            children: ["b", "a"]
                .iter()
                .map(|n| Child {
                    name: n.as_bytes().to_vec(),
                    node: ChildNode::Leaf(EntryKind::Fifo, Metadata::default()),
                })
                .collect(),
        };
        let bytes = codec::encode(ObjectKind::Directory, &unsorted);
        assert!(Directory::decode(&bytes).is_err());
        let leaf_dir = Directory {
            meta: Metadata::default(),
            children: vec![Child {
                name: b"d".to_vec(),
                node: ChildNode::Leaf(EntryKind::Dir, Metadata::default()),
            }],
        };
        let bytes = codec::encode(ObjectKind::Directory, &leaf_dir);
        assert!(Directory::decode(&bytes).is_err());
    }

    #[test]
    fn trees_nest_at_most_max_depth() {
        let mut entries = vec![Entry::dir(TreePath::ROOT, Metadata::default())];
        let mut path = Vec::new();
        for _ in 0..=MAX_DEPTH {
            if !path.is_empty() {
                path.push(b'/');
            }
            path.push(b'd');
            entries.push(Entry::dir(
                TreePath::new(path.clone()).unwrap(),
                Metadata::default(),
            ));
        }
        assert!(matches!(
            Snapshot::from_sorted(entries.clone()),
            Err(Error::InvalidTree { .. })
        ));
        entries.pop();
        let tree = Snapshot::from_sorted(entries).unwrap();
        let objects: std::collections::HashMap<_, _> = encode_tree(&tree).into_iter().collect();
        let load = |id: &ChunkId| Directory::decode(&objects[id]);
        let root = load(&ChunkId::from(tree.id())).unwrap();
        assert_eq!(assemble(root, &load).unwrap(), tree);
    }
}
