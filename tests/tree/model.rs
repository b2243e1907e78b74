//! A tiny in-memory filesystem with inodes, driven like containerd's `fstest`
//! appliers, whose `snapshot` plays the scanner: it turns link groups into one
//! `File` (the first path in sorted order) and `Hardlink`s to it.
//!
//! The model leaves a parent directory's mtime alone when its children change;
//! tests that want a directory touched say so.

use std::collections::BTreeMap;

use layerstore::{ChunkId, ChunkList, ChunkRef, Entry, Metadata, Snapshot, Timestamp, TreePath};

pub fn p(s: &str) -> TreePath {
    TreePath::new(s).unwrap()
}

/// The chunk list of `content`: one chunk (none when empty).
pub fn chunks_of(content: &[u8]) -> ChunkList {
    if content.is_empty() {
        return ChunkList::new();
    }
    vec![ChunkRef {
        id: ChunkId::of(content),
        len: u32::try_from(content.len()).unwrap(),
    }]
    .into()
}

#[derive(Clone, Debug)]
enum Node {
    Dir(Metadata),
    File(usize),
    Symlink(Vec<u8>, Metadata),
}

#[derive(Clone, Debug)]
struct Inode {
    content: Vec<u8>,
    meta: Metadata,
}

#[derive(Clone, Debug)]
pub struct Fs {
    nodes: BTreeMap<TreePath, Node>,
    inodes: Vec<Inode>,
}

impl Default for Fs {
    fn default() -> Self {
        Self::new()
    }
}

impl Fs {
    /// An empty root directory with the default metadata (0o755, 0:0, mtime 0).
    pub fn new() -> Self {
        let mut nodes = BTreeMap::new();
        nodes.insert(TreePath::ROOT, Node::Dir(Metadata::default()));
        Self {
            nodes,
            inodes: Vec::new(),
        }
    }

    fn meta_mut(&mut self, path: &str) -> &mut Metadata {
        match self
            .nodes
            .get_mut(&p(path))
            .unwrap_or_else(|| panic!("no {path}"))
        {
            Node::Dir(meta) | Node::Symlink(_, meta) => meta,
            Node::File(ino) => &mut self.inodes[*ino].meta,
        }
    }

    /// `mkdir -p` with `mode` on the directories it creates, then `chmod`.
    pub fn mkdir(&mut self, path: &str, mode: u32) -> &mut Self {
        let mut cur = TreePath::ROOT;
        for comp in p(path).components() {
            cur = cur.join(comp).unwrap();
            match self.nodes.get(&cur) {
                Some(Node::Dir(_)) => {}
                Some(_) => panic!("{cur} is not a directory"),
                None => {
                    self.nodes
                        .insert(cur.clone(), Node::Dir(Metadata::new(mode)));
                }
            }
        }
        self.chmod(path, mode)
    }

    /// Writes `content` (keeping the inode of an existing file), then `chmod`.
    pub fn write(&mut self, path: &str, content: &[u8], mode: u32) -> &mut Self {
        let path_ = p(path);
        assert!(matches!(
            self.nodes.get(&path_.parent().unwrap()),
            Some(Node::Dir(_))
        ));
        match self.nodes.get(&path_) {
            Some(Node::File(ino)) => self.inodes[*ino].content = content.to_vec(),
            Some(_) => panic!("{path} exists and is not a file"),
            None => {
                self.inodes.push(Inode {
                    content: content.to_vec(),
                    meta: Metadata::new(mode),
                });
                self.nodes.insert(path_, Node::File(self.inodes.len() - 1));
            }
        }
        self.chmod(path, mode)
    }

    pub fn chmod(&mut self, path: &str, mode: u32) -> &mut Self {
        self.meta_mut(path).mode = mode;
        self
    }

    pub fn chown(&mut self, path: &str, uid: u32, gid: u32) -> &mut Self {
        let meta = self.meta_mut(path);
        meta.uid = uid;
        meta.gid = gid;
        self
    }

    pub fn touch(&mut self, path: &str, secs: i64) -> &mut Self {
        self.meta_mut(path).mtime = Timestamp::new(secs, 0);
        self
    }

    pub fn setxattr(&mut self, path: &str, name: &[u8], value: &[u8]) -> &mut Self {
        self.meta_mut(path)
            .xattrs
            .insert(name.to_vec(), value.to_vec());
        self
    }

    pub fn symlink(&mut self, target: &str, path: &str) -> &mut Self {
        let prev = self.nodes.insert(
            p(path),
            Node::Symlink(target.as_bytes().to_vec(), Metadata::new(0o777)),
        );
        assert!(prev.is_none(), "{path} exists");
        self
    }

    /// `rm -rf`; a missing path is fine.
    pub fn remove_all(&mut self, path: &str) -> &mut Self {
        let path = p(path);
        self.nodes
            .retain(|k, _| *k != path && !path.is_ancestor_of(k));
        self
    }

    /// `rename(2)`: moves the subtree, replacing what was at `to`.
    pub fn rename(&mut self, from: &str, to: &str) -> &mut Self {
        let (from, to_) = (p(from), p(to));
        let moved: Vec<(TreePath, Node)> = self
            .nodes
            .iter()
            .filter(|(k, _)| **k == from || from.is_ancestor_of(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert!(!moved.is_empty(), "no {from}");
        self.remove_all(to);
        for (k, v) in moved {
            self.nodes.remove(&k);
            let rest = &k.as_bytes()[from.as_bytes().len()..];
            let mut new = to_.as_bytes().to_vec();
            new.extend_from_slice(rest);
            self.nodes.insert(TreePath::new(new).unwrap(), v);
        }
        self
    }

    /// `link(2)`: `new` becomes a further name of the file at `old`.
    pub fn link(&mut self, old: &str, new: &str) -> &mut Self {
        let Some(Node::File(ino)) = self.nodes.get(&p(old)) else {
            panic!("{old} is not a file")
        };
        let ino = *ino;
        assert!(
            self.nodes.insert(p(new), Node::File(ino)).is_none(),
            "{new} exists"
        );
        self
    }

    /// What a scan of this filesystem gives.
    pub fn snapshot(&self) -> Snapshot {
        let mut first_of_inode: BTreeMap<usize, TreePath> = BTreeMap::new();
        let mut entries = Vec::new();
        // BTreeMap order is TreePath order, so the first name of an inode is
        // met first.
        for (path, node) in &self.nodes {
            entries.push(match node {
                Node::Dir(meta) => Entry::dir(path.clone(), meta.clone()),
                Node::Symlink(target, meta) => {
                    Entry::symlink(path.clone(), target.clone(), meta.clone())
                }
                Node::File(ino) => {
                    let inode = &self.inodes[*ino];
                    if let Some(first) = first_of_inode.get(ino) {
                        Entry::hardlink(path.clone(), first.clone(), inode.meta.clone())
                    } else {
                        first_of_inode.insert(*ino, path.clone());
                        Entry::file(path.clone(), chunks_of(&inode.content), inode.meta.clone())
                    }
                }
            });
        }
        Snapshot::from_sorted(entries).unwrap()
    }
}

/// Runs each step on one filesystem, committing a layer after each (the diff
/// from the previous state), and checks at every step that flattening the
/// layers so far — also after an encode/decode round trip — gives the state.
/// Returns the layers and the states.
pub fn commit_steps(steps: &[&dyn Fn(&mut Fs)]) -> (Vec<layerstore::Layer>, Vec<Snapshot>) {
    let mut fs = Fs::new();
    let mut prev = fs.snapshot();
    let (mut layers, mut states) = (Vec::new(), Vec::new());
    for (i, step) in steps.iter().enumerate() {
        step(&mut fs);
        let state = fs.snapshot();
        let layer = prev.diff(&state);
        let decoded = layerstore::Layer::decode(&layer.encode()).unwrap();
        assert_eq!(decoded, layer);
        layers.push(decoded);
        let flat = layerstore::flatten(&layers).unwrap();
        assert_eq!(
            flat, state,
            "layer {i}: flattened tree differs from the committed state"
        );
        assert_eq!(flat.id(), state.id());
        states.push(state.clone());
        prev = state;
    }
    (layers, states)
}

/// The entries' paths as text, root left out.
pub fn paths(s: &Snapshot) -> Vec<String> {
    s.iter().skip(1).map(|e| e.path.to_string()).collect()
}

/// The content chunk list of the file at `path` (following a hard link).
pub fn content(s: &Snapshot, path: &str) -> ChunkList {
    match &s.get(&p(path)).unwrap_or_else(|| panic!("no {path}")).kind {
        layerstore::EntryKind::File { chunks, .. } => chunks.clone(),
        layerstore::EntryKind::Hardlink { target } => content(s, &target.to_string()),
        other => panic!("{path} is {other:?}"),
    }
}
