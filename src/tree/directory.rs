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

use serde::{Deserialize, Serialize};

use crate::digest::{ChunkId, SnapshotId};
use crate::error::{Error, Result};
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
    pub(crate) node: Node,
}

/// A child directory by id, or any other entry in full.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Node {
    /// A subdirectory: the id of its object, and how many hard-link entries
    /// lie beneath it at any depth.
    Dir([u8; 32], u64),
    /// Anything else: never [`EntryKind::Dir`].
    Leaf(EntryKind, Metadata),
}

impl Node {
    /// The object id of a subdirectory.
    pub(crate) fn dir_id(&self) -> Option<ChunkId> {
        match self {
            Node::Dir(id, _) => Some(ChunkId::from_bytes(*id)),
            Node::Leaf(..) => None,
        }
    }

    /// How many hard links this is or holds.
    pub(crate) fn links(&self) -> u64 {
        match self {
            Node::Dir(_, links) => *links,
            Node::Leaf(EntryKind::Hardlink { .. }, _) => 1,
            Node::Leaf(..) => 0,
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
            if matches!(child.node, Node::Leaf(EntryKind::Dir, _)) {
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
            Node::Dir(..) => Ok(None),
            Node::Leaf(kind, meta) => {
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
    let entries = tree.entries();
    let mut out = Vec::new();
    // The directories enclosing the current entry, the root first.
    let mut stack = vec![Open::new(&entries[0])];
    for entry in &entries[1..] {
        while !stack
            .last()
            .is_some_and(|d| d.entry.path.is_ancestor_of(&entry.path))
        {
            close(&mut stack, &mut out);
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
    while !stack.is_empty() {
        close(&mut stack, &mut out);
    }
    out
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
/// one out: a snapshot's parents precede their children).
fn close(stack: &mut Vec<Open<'_>>, out: &mut Vec<(ChunkId, Vec<u8>)>) {
    let Some(done) = stack.pop() else {
        return;
    };
    let bytes = codec::encode(
        ObjectKind::Directory,
        &DirectoryRef {
            meta: &done.entry.meta,
            children: done.children,
        },
    );
    let id = ChunkId::of(&bytes);
    out.push((id, bytes));
    if let Some(parent) = stack.last_mut() {
        parent.links += done.links;
        parent.children.push(ChildRef {
            name: done.entry.path.file_name().unwrap_or_default(),
            node: NodeRef::Dir(*id.as_bytes(), done.links),
        });
    }
}

/// The id of `tree` as stored: its root directory object's id.
pub(crate) fn tree_id(tree: &Snapshot) -> SnapshotId {
    let objects = encode_tree(tree);
    let (root, _) = objects.last().unwrap_or_else(|| unreachable!("a root"));
    SnapshotId::from_bytes(*root.as_bytes())
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
            Node::Leaf(kind, meta) => {
                top.links += u64::from(matches!(kind, EntryKind::Hardlink { .. }));
                out.push(Entry::new(path, kind, meta));
            }
            Node::Dir(id, declared) => {
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
