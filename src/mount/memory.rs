//! The `memory` backend: an in-process view with an in-memory upper layer.
//!
//! A live view is the image's tree as a map from path to entry; files that
//! were written hold their bytes in memory, the others their chunk lists in
//! the store. Nothing touches the disk until [`MountBackend::changes`] (which
//! stores the new content) or [`MountBackend::unmount`], which saves the
//! view's layer in the store (pinned in `refs/memory/<name>`) and its id in
//! the container's state, so that a later mount, in this process or
//! another, shows the changes again. Changes made since the last unmount
//! live only in this process: a crash loses them (the container itself
//! stays, as it was at the last unmount).

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use super::files::read_only_error;
use super::{MountBackend, Node, NodeKind, Usage, ViewFiles, ViewSpec};
use crate::error::{Error, Result};
use crate::fsutil::durable;
use crate::id::{ChunkId, LayerId};
use crate::store::Store;
use crate::store::chunk_list::ChunkList;
use crate::tree::{Entry, EntryKind, Layer, Metadata, Snapshot, Timestamp, TreePath};

/// The pin group keeping saved upper layers.
const PIN_GROUP: &str = "memory";
/// The file, in the container's state, naming its saved upper layer.
const UPPER: &str = "memory-upper";

/// What a path of a live view is.
#[derive(Debug, Clone)]
enum Kind {
    /// An entry as it came from the image (or the saved layer), content in
    /// the store. A hard link keeps the chunks of its target, so that it can
    /// become a file of its own if the target goes away.
    Stored(EntryKind, Option<ChunkList>),
    /// A file written in this view: its bytes.
    Bytes(Vec<u8>),
    Dir,
    Symlink(Vec<u8>),
}

#[derive(Debug, Clone)]
struct MemNode {
    kind: Kind,
    meta: Metadata,
}

/// One live view.
#[derive(Debug)]
struct Live {
    name: String,
    read_only: bool,
    tree: BTreeMap<TreePath, MemNode>,
}

/// Views held in this process, their changes in memory.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    live: Mutex<HashMap<PathBuf, Arc<Mutex<Live>>>>,
}

impl MemoryBackend {
    /// A backend with no views.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn views(&self) -> MutexGuard<'_, HashMap<PathBuf, Arc<Mutex<Live>>>> {
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get(&self, view: &ViewSpec<'_>) -> Option<Arc<Mutex<Live>>> {
        self.views().get(view.state).cloned()
    }
}

fn lock(live: &Mutex<Live>) -> MutexGuard<'_, Live> {
    live.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The saved upper layer of the view, if any.
fn saved(store: &Store, view: &ViewSpec<'_>) -> Result<Option<Layer>> {
    let path = view.state.join(UPPER);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read", &path, e)),
    };
    let id: LayerId = text
        .trim()
        .parse()
        .map_err(|_| Error::corrupt(&path, 0, "not a layer id"))?;
    store.layer(&id).map(Some)
}

fn load(tree: &Snapshot) -> BTreeMap<TreePath, MemNode> {
    let mut map = BTreeMap::new();
    for entry in tree.entries() {
        let chunks = match &entry.kind {
            EntryKind::Hardlink { target } => match tree.get(target).map(|t| &t.kind) {
                Some(EntryKind::File { chunks, .. }) => Some(chunks.clone()),
                _ => None,
            },
            _ => None,
        };
        map.insert(
            entry.path.clone(),
            MemNode {
                kind: Kind::Stored(entry.kind.clone(), chunks),
                meta: entry.meta.clone(),
            },
        );
    }
    map
}

/// The live view's tree as a snapshot, written content stored in `store`.
fn snapshot(store: &Store, live: &Live) -> Result<Snapshot> {
    let mut entries = Vec::with_capacity(live.tree.len());
    for (path, node) in &live.tree {
        let kind = match &node.kind {
            Kind::Dir => EntryKind::Dir,
            Kind::Symlink(target) => EntryKind::Symlink {
                target: target.clone(),
            },
            Kind::Bytes(bytes) => {
                let chunks = store.put_bytes(bytes)?;
                EntryKind::File {
                    size: chunks.content_len(),
                    chunks,
                }
            }
            Kind::Stored(EntryKind::Hardlink { target }, chunks) => {
                let intact = target < path
                    && matches!(
                        live.tree.get(target).map(|t| &t.kind),
                        Some(Kind::Stored(EntryKind::File { .. }, _))
                    );
                match (intact, chunks) {
                    (true, _) => EntryKind::Hardlink {
                        target: target.clone(),
                    },
                    (false, Some(chunks)) => EntryKind::File {
                        size: chunks.content_len(),
                        chunks: chunks.clone(),
                    },
                    (false, None) => {
                        return Err(Error::InvalidTree {
                            path: path.to_string(),
                            reason: "a hard link whose target was never a file".to_owned(),
                        });
                    }
                }
            }
            Kind::Stored(kind, _) => kind.clone(),
        };
        entries.push(Entry::new(path.clone(), kind, node.meta.clone()));
    }
    Snapshot::from_sorted(entries)
}

impl MountBackend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn needs_target(&self) -> bool {
        false
    }

    fn mount(&self, store: &Store, view: &ViewSpec<'_>) -> Result<()> {
        let tree = match saved(store, view)? {
            Some(layer) => layer.apply(view.base.get()?)?,
            None => view.base.get()?.clone(),
        };
        let live = Live {
            name: view.name.to_owned(),
            read_only: view.read_only,
            tree: load(&tree),
        };
        self.views()
            .insert(view.state.to_path_buf(), Arc::new(Mutex::new(live)));
        Ok(())
    }

    fn unmount(&self, store: &Store, view: &ViewSpec<'_>) -> Result<()> {
        let Some(live) = self.get(view) else {
            return Ok(());
        };
        if !view.read_only {
            let layer = self.changes(store, view)?;
            let id = store.put_layer(&layer)?;
            store.set_pins(PIN_GROUP, view.name, &[ChunkId::from(id)])?;
            durable::write_atomic(
                view.state,
                &view.state.join(UPPER),
                format!("{id}\n").as_bytes(),
            )?;
        }
        drop(live);
        self.views().remove(view.state);
        Ok(())
    }

    fn is_mounted(&self, view: &ViewSpec<'_>) -> Result<bool> {
        Ok(self.get(view).is_some())
    }

    fn files<'v>(
        &'v self,
        store: &'v Store,
        view: &ViewSpec<'_>,
    ) -> Result<Box<dyn ViewFiles + 'v>> {
        let live = self.get(view).ok_or_else(|| Error::Container {
            name: view.name.to_owned(),
            reason: "not mounted in this process".to_owned(),
        })?;
        Ok(Box::new(MemoryFiles { store, live }))
    }

    fn changes(&self, store: &Store, view: &ViewSpec<'_>) -> Result<Layer> {
        match self.get(view) {
            Some(live) => {
                let tree = snapshot(store, &lock(&live))?;
                Ok(view.base.get()?.diff(&tree))
            }
            None => Ok(saved(store, view)?.unwrap_or_else(Layer::empty)),
        }
    }

    fn usage(&self, store: &Store, view: &ViewSpec<'_>) -> Result<Usage> {
        let layer = self.changes(store, view)?;
        Ok(super::layer_usage(&layer))
    }

    fn remove(&self, store: &Store, view: &ViewSpec<'_>) -> Result<()> {
        self.views().remove(view.state);
        store.remove_pins(PIN_GROUP, view.name)?;
        Ok(())
    }
}

/// File access to a live memory view.
struct MemoryFiles<'v> {
    store: &'v Store,
    live: Arc<Mutex<Live>>,
}

fn shown(name: &str, path: &TreePath) -> PathBuf {
    PathBuf::from(format!("{name}:/{path}"))
}

fn err(live: &Live, op: &'static str, path: &TreePath, kind: io::ErrorKind) -> Error {
    Error::io(op, shown(&live.name, path), io::Error::from(kind))
}

fn new_meta(mode: u32) -> Metadata {
    Metadata {
        mode,
        uid: rustix::process::geteuid().as_raw(),
        gid: rustix::process::getegid().as_raw(),
        mtime: Timestamp::now(),
        xattrs: BTreeMap::new(),
    }
}

impl Live {
    fn writable(&self, op: &'static str, path: &TreePath) -> Result<()> {
        if self.read_only {
            return Err(read_only_error(op, shown(&self.name, path)));
        }
        Ok(())
    }

    /// Checks that `path`'s parent is a directory; touches its mtime.
    fn parent_dir(&mut self, op: &'static str, path: &TreePath) -> Result<()> {
        let Some(parent) = path.parent() else {
            return Err(err(self, op, path, io::ErrorKind::InvalidInput));
        };
        match self.tree.get_mut(&parent) {
            Some(MemNode {
                kind: Kind::Dir | Kind::Stored(EntryKind::Dir, _),
                meta,
            }) => {
                meta.mtime = Timestamp::now();
                Ok(())
            }
            Some(_) => Err(err(self, op, path, io::ErrorKind::NotADirectory)),
            None => Err(err(self, op, path, io::ErrorKind::NotFound)),
        }
    }

    fn is_dir(&self, path: &TreePath) -> Option<bool> {
        self.tree
            .get(path)
            .map(|n| matches!(n.kind, Kind::Dir | Kind::Stored(EntryKind::Dir, _)))
    }

    /// The paths strictly beneath `dir`.
    fn descendants(&self, dir: &TreePath) -> Vec<TreePath> {
        self.tree
            .range((Bound::Excluded(dir.clone()), Bound::Unbounded))
            .map(|(p, _)| p)
            .take_while(|p| dir.is_ancestor_of(p))
            .cloned()
            .collect()
    }

    fn content(&self, store: &Store, path: &TreePath) -> Result<Vec<u8>> {
        let node = self
            .tree
            .get(path)
            .ok_or_else(|| err(self, "read", path, io::ErrorKind::NotFound))?;
        match &node.kind {
            Kind::Bytes(bytes) => Ok(bytes.clone()),
            Kind::Stored(EntryKind::File { chunks, .. }, _)
            | Kind::Stored(EntryKind::Hardlink { .. }, Some(chunks)) => store.read_all(chunks),
            Kind::Dir | Kind::Stored(EntryKind::Dir, _) => {
                Err(err(self, "read", path, io::ErrorKind::IsADirectory))
            }
            _ => Err(err(self, "read", path, io::ErrorKind::InvalidInput)),
        }
    }
}

impl MemoryFiles<'_> {
    fn live(&self) -> MutexGuard<'_, Live> {
        lock(&self.live)
    }
}

impl ViewFiles for MemoryFiles<'_> {
    fn read(&self, path: &TreePath) -> Result<Vec<u8>> {
        self.live().content(self.store, path)
    }

    fn write(&self, path: &TreePath, content: &[u8]) -> Result<()> {
        let mut live = self.live();
        live.writable("write", path)?;
        live.parent_dir("write", path)?;
        let meta = match live.tree.get(path) {
            Some(_) if live.is_dir(path) == Some(true) => {
                return Err(err(&live, "write", path, io::ErrorKind::IsADirectory));
            }
            Some(MemNode {
                kind: Kind::Symlink(_) | Kind::Stored(EntryKind::Symlink { .. }, _),
                ..
            }) => return Err(err(&live, "write", path, io::ErrorKind::InvalidInput)),
            Some(n) => Metadata {
                mtime: Timestamp::now(),
                ..n.meta.clone()
            },
            None => new_meta(0o644),
        };
        live.tree.insert(
            path.clone(),
            MemNode {
                kind: Kind::Bytes(content.to_vec()),
                meta,
            },
        );
        Ok(())
    }

    fn create_dir(&self, path: &TreePath, mode: u32) -> Result<()> {
        let mut live = self.live();
        live.writable("create directory", path)?;
        if live.tree.contains_key(path) {
            return Err(err(
                &live,
                "create directory",
                path,
                io::ErrorKind::AlreadyExists,
            ));
        }
        live.parent_dir("create directory", path)?;
        live.tree.insert(
            path.clone(),
            MemNode {
                kind: Kind::Dir,
                meta: new_meta(mode & 0o7777),
            },
        );
        Ok(())
    }

    fn symlink(&self, path: &TreePath, target: &[u8]) -> Result<()> {
        let mut live = self.live();
        live.writable("create symbolic link", path)?;
        if target.is_empty() || target.contains(&0) {
            return Err(err(
                &live,
                "create symbolic link",
                path,
                io::ErrorKind::InvalidInput,
            ));
        }
        if live.tree.contains_key(path) {
            return Err(err(
                &live,
                "create symbolic link",
                path,
                io::ErrorKind::AlreadyExists,
            ));
        }
        live.parent_dir("create symbolic link", path)?;
        live.tree.insert(
            path.clone(),
            MemNode {
                kind: Kind::Symlink(target.to_vec()),
                meta: new_meta(0o777),
            },
        );
        Ok(())
    }

    fn remove(&self, path: &TreePath) -> Result<()> {
        let mut live = self.live();
        live.writable("remove", path)?;
        if path.is_root() {
            return Err(err(&live, "remove", path, io::ErrorKind::InvalidInput));
        }
        if !live.tree.contains_key(path) {
            return Err(err(&live, "remove", path, io::ErrorKind::NotFound));
        }
        live.parent_dir("remove", path)?;
        for p in live.descendants(path) {
            live.tree.remove(&p);
        }
        live.tree.remove(path);
        Ok(())
    }

    fn rename(&self, from: &TreePath, to: &TreePath) -> Result<()> {
        let mut live = self.live();
        live.writable("rename", from)?;
        if from.is_root() || to.is_root() || from.is_ancestor_of(to) {
            return Err(err(&live, "rename", from, io::ErrorKind::InvalidInput));
        }
        let Some(from_dir) = live.is_dir(from) else {
            return Err(err(&live, "rename", from, io::ErrorKind::NotFound));
        };
        if from == to {
            return Ok(());
        }
        match live.is_dir(to) {
            Some(true) if !from_dir => {
                return Err(err(&live, "rename", to, io::ErrorKind::IsADirectory));
            }
            Some(false) if from_dir => {
                return Err(err(&live, "rename", to, io::ErrorKind::NotADirectory));
            }
            Some(true) if !live.descendants(to).is_empty() => {
                return Err(err(&live, "rename", to, io::ErrorKind::DirectoryNotEmpty));
            }
            _ => {}
        }
        live.parent_dir("rename", to)?;
        live.parent_dir("rename", from)?;
        let mut moved = Vec::new();
        for p in live.descendants(from) {
            if let Some(node) = live.tree.remove(&p) {
                let rest = &p.as_bytes()[from.as_bytes().len() + 1..];
                moved.push((to.join(rest)?, node));
            }
        }
        if let Some(node) = live.tree.remove(from) {
            moved.push((to.clone(), node));
        }
        for (p, node) in moved {
            live.tree.insert(p, node);
        }
        Ok(())
    }

    fn list(&self, dir: &TreePath) -> Result<Vec<Vec<u8>>> {
        let live = self.live();
        match live.is_dir(dir) {
            None => return Err(err(&live, "read directory", dir, io::ErrorKind::NotFound)),
            Some(false) => {
                return Err(err(
                    &live,
                    "read directory",
                    dir,
                    io::ErrorKind::NotADirectory,
                ));
            }
            Some(true) => {}
        }
        let depth = dir.depth() + 1;
        let mut names: Vec<Vec<u8>> = live
            .descendants(dir)
            .into_iter()
            .filter(|p| p.depth() == depth)
            .filter_map(|p| p.file_name().map(<[u8]>::to_vec))
            .collect();
        names.sort();
        Ok(names)
    }

    fn metadata(&self, path: &TreePath) -> Result<Node> {
        let live = self.live();
        let node = live
            .tree
            .get(path)
            .ok_or_else(|| err(&live, "stat", path, io::ErrorKind::NotFound))?;
        let (kind, size) = match &node.kind {
            Kind::Dir | Kind::Stored(EntryKind::Dir, _) => (NodeKind::Dir, 0),
            Kind::Bytes(b) => (NodeKind::File, b.len() as u64),
            Kind::Symlink(t) | Kind::Stored(EntryKind::Symlink { target: t }, _) => {
                (NodeKind::Symlink(t.clone()), 0)
            }
            Kind::Stored(EntryKind::File { size, .. }, _) => (NodeKind::File, *size),
            Kind::Stored(EntryKind::Hardlink { .. }, chunks) => (
                NodeKind::File,
                chunks.as_ref().map_or(0, ChunkList::content_len),
            ),
            Kind::Stored(EntryKind::CharDevice { .. }, _) => (NodeKind::CharDevice, 0),
            Kind::Stored(EntryKind::BlockDevice { .. }, _) => (NodeKind::BlockDevice, 0),
            Kind::Stored(EntryKind::Fifo, _) => (NodeKind::Fifo, 0),
        };
        Ok(Node {
            kind,
            size,
            meta: node.meta.clone(),
        })
    }

    fn set_metadata(&self, path: &TreePath, meta: &Metadata) -> Result<()> {
        let mut live = self.live();
        live.writable("set metadata of", path)?;
        if meta.mode & !0o7777 != 0 || meta.mtime.nanos >= 1_000_000_000 {
            return Err(err(
                &live,
                "set metadata of",
                path,
                io::ErrorKind::InvalidInput,
            ));
        }
        let Some(node) = live.tree.get_mut(path) else {
            return Err(err(&live, "set metadata of", path, io::ErrorKind::NotFound));
        };
        node.meta = meta.clone();
        Ok(())
    }
}
