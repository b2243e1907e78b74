//! The lazy view's inodes: each path of the image becomes a node the first
//! time the kernel looks it up, built from the directory objects on its way
//! (each decoded once), never from the whole tree.
//!
//! Inode numbers are stable: a path's number is a hash of the path (the same
//! in every mount of the image, whatever the order of lookups), the root's is
//! 1, and a hard link has its target's number. Two paths whose hashes collide
//! (one pair in about 10¹⁹ for a million paths) get distinct numbers, the
//! later one from a counter above every hash. Nodes are kept for the life of
//! the view: the image never changes, so a number never changes meaning, and
//! what is kept is bounded by the image's size.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use crate::error::{Error, Result};
use crate::id::ChunkId;
use crate::store::Store;
use crate::store::chunk_list::ChunkList;
use crate::tree::directory::{Child, ChildNode, Directory};
use crate::tree::entry::{EntryKind, Metadata};
use crate::tree::path::TreePath;

/// The root's inode number (FUSE's).
pub(super) const ROOT_INO: u64 = 1;
/// Hashed numbers stay below this; collisions are numbered from it up.
const FALLBACK_BASE: u64 = 1 << 63;

/// One path of the view.
pub(super) struct Node {
    pub(super) ino: u64,
    /// The directory holding it (the root's is itself).
    pub(super) parent: u64,
    pub(super) path: TreePath,
    pub(super) what: What,
    /// For a regular file, where its last read ended (a read starting there
    /// is sequential, and its next chunks are loaded ahead); for a
    /// directory, how many of its entries have had their content loaded
    /// ahead (see `serve`).
    pub(super) ahead: AtomicU64,
}

/// What a node is, with what serving it needs.
pub(super) enum What {
    Dir(Arc<Directory>),
    File {
        size: u64,
        chunks: ChunkList,
        /// Offset of each chunk in the file.
        starts: Vec<u64>,
        meta: Metadata,
    },
    Symlink {
        target: Vec<u8>,
        meta: Metadata,
    },
    /// A device or a fifo.
    Special {
        kind: EntryKind,
        meta: Metadata,
    },
}

impl Node {
    pub(super) fn meta(&self) -> &Metadata {
        match &self.what {
            What::Dir(dir) => &dir.meta,
            What::File { meta, .. } | What::Symlink { meta, .. } | What::Special { meta, .. } => {
                meta
            }
        }
    }
}

/// The inode table of one view.
pub(super) struct Nodes {
    store: Arc<Store>,
    dirs: Mutex<HashMap<ChunkId, Arc<Directory>>>,
    by_ino: RwLock<HashMap<u64, Arc<Node>>>,
    /// Paths whose hashed number was taken, and the number they got.
    collided: Mutex<HashMap<TreePath, u64>>,
    next_fallback: AtomicU64,
    /// Names per regular file, for those that have hard links; computed when
    /// the first file is looked up in a tree that has any.
    links: OnceLock<HashMap<TreePath, u32>>,
    root: Arc<Node>,
}

impl Nodes {
    /// The table of the tree whose root directory object is `root`: decodes
    /// that one object.
    ///
    /// # Errors
    /// The store's errors reading the root directory.
    pub(super) fn new(store: Arc<Store>, root_id: ChunkId) -> Result<Self> {
        let dir = Arc::new(store.directory(&root_id)?);
        let root = Arc::new(Node {
            ino: ROOT_INO,
            parent: ROOT_INO,
            path: TreePath::ROOT,
            what: What::Dir(Arc::clone(&dir)),
            ahead: AtomicU64::new(0),
        });
        let nodes = Self {
            store,
            dirs: Mutex::new(HashMap::from([(root_id, dir)])),
            by_ino: RwLock::new(HashMap::from([(ROOT_INO, Arc::clone(&root))])),
            collided: Mutex::new(HashMap::new()),
            next_fallback: AtomicU64::new(FALLBACK_BASE),
            links: OnceLock::new(),
            root,
        };
        Ok(nodes)
    }

    /// The node numbered `ino`, if the kernel has been told of it.
    pub(super) fn get(&self, ino: u64) -> Option<Arc<Node>> {
        self.by_ino
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&ino)
            .cloned()
    }

    /// The decoded directory object `id`, decoded once.
    fn directory(&self, id: &ChunkId) -> Result<Arc<Directory>> {
        let cached = self
            .dirs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .cloned();
        if let Some(dir) = cached {
            return Ok(dir);
        }
        let dir = Arc::new(self.store.directory(id)?);
        self.dirs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(*id, Arc::clone(&dir));
        Ok(dir)
    }

    /// The node of `child`, an entry of the directory `parent`: made (and its
    /// directory decoded) on first use. A hard link is its target's node.
    ///
    /// # Errors
    /// The store's errors reading a directory; [`Error::Malformed`] for a
    /// hard link whose target is not a regular file of the tree.
    pub(super) fn child(&self, parent: &Node, child: &Child) -> Result<Arc<Node>> {
        let path = parent.path.join_name(&child.name);
        if let ChildNode::Leaf(EntryKind::Hardlink { target }, _) = &child.node {
            return self.link_target(&path, target);
        }
        let ino = self.number(&path);
        if let Some(node) = self.get(ino).filter(|n| n.path == path) {
            return Ok(node);
        }
        let what = match &child.node {
            ChildNode::Dir(id, _) => What::Dir(self.directory(&ChunkId::from_bytes(*id))?),
            ChildNode::Leaf(kind, meta) => leaf(kind, meta),
        };
        Ok(self.insert(Node {
            ino,
            parent: parent.ino,
            path,
            what,
            ahead: AtomicU64::new(0),
        }))
    }

    /// The node of the regular file `target` that the hard link `link` names.
    fn link_target(&self, link: &TreePath, target: &TreePath) -> Result<Arc<Node>> {
        let bad = |reason: &str| Error::Malformed {
            what: "hard link",
            reason: format!("'{link}' links to '{target}', {reason}"),
        };
        let mut node = Arc::clone(&self.root);
        for name in target.components() {
            let What::Dir(dir) = &node.what else {
                return Err(bad("which is not in the tree"));
            };
            let Some(child) = dir.child(name) else {
                return Err(bad("which is not in the tree"));
            };
            if matches!(child.node, ChildNode::Leaf(EntryKind::Hardlink { .. }, _)) {
                return Err(bad("itself a hard link"));
            }
            node = self.child(&node, child)?;
        }
        match node.what {
            What::File { .. } => Ok(node),
            _ => Err(bad("which is not a regular file")),
        }
    }

    fn insert(&self, node: Node) -> Arc<Node> {
        let mut by_ino = self
            .by_ino
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match by_ino.get(&node.ino) {
            // Made meanwhile by another thread.
            Some(existing) if existing.path == node.path => Arc::clone(existing),
            Some(_) => {
                let ino = self.next_fallback.fetch_add(1, Ordering::Relaxed);
                self.collided
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(node.path.clone(), ino);
                let node = Arc::new(Node { ino, ..node });
                by_ino.insert(ino, Arc::clone(&node));
                node
            }
            None => {
                let node = Arc::new(node);
                by_ino.insert(node.ino, Arc::clone(&node));
                node
            }
        }
    }

    /// The inode number of the entry `name` of the directory `parent`, without
    /// making its node (a listing's, where a hard link is not one).
    pub(super) fn child_number(&self, parent: &TreePath, name: &[u8]) -> u64 {
        self.number(&parent.join_name(name))
    }

    /// The inode number of `path`.
    fn number(&self, path: &TreePath) -> u64 {
        if let Some(ino) = self
            .collided
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(path)
        {
            return *ino;
        }
        hashed_number(path)
    }

    /// How many names the regular file `node` has.
    pub(super) fn link_count(&self, node: &Node) -> u32 {
        let What::Dir(root) = &self.root.what else {
            return 1;
        };
        if root.children.iter().all(|c| c.node.links() == 0) {
            return 1;
        }
        let links = self.links.get_or_init(|| {
            let load = |id: &ChunkId| self.directory(id);
            match crate::tree::stored::hardlinks_beneath(Arc::clone(root), &load) {
                Ok(links) => {
                    let mut counts = HashMap::new();
                    for link in links {
                        if let EntryKind::Hardlink { target } = link.kind {
                            *counts.entry(target).or_insert(1u32) += 1;
                        }
                    }
                    counts
                }
                Err(err) => {
                    eprintln!("layerstore: the view's hard links cannot be counted: {err}");
                    HashMap::new()
                }
            }
        });
        links.get(&node.path).copied().unwrap_or(1)
    }
}

/// A node's content for a leaf of a directory object.
fn leaf(kind: &EntryKind, meta: &Metadata) -> What {
    match kind {
        EntryKind::File { size, chunks } => What::File {
            size: *size,
            chunks: chunks.clone(),
            starts: chunks.starts(),
            meta: meta.clone(),
        },
        EntryKind::Symlink { target } => What::Symlink {
            target: target.clone(),
            meta: meta.clone(),
        },
        other => What::Special {
            kind: other.clone(),
            meta: meta.clone(),
        },
    }
}

/// The number a path hashes to: 63 bits of its BLAKE3, never 0 or the root's.
fn hashed_number(path: &TreePath) -> u64 {
    let hash = blake3::hash(path.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&hash.as_bytes()[..8]);
    let n = u64::from_le_bytes(bytes) & (FALLBACK_BASE - 1);
    n.max(ROOT_INO + 1)
}
