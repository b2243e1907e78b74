//! A stored tree used without reading it whole: entries looked up by path a
//! directory at a time, and a layer applied by rewriting only the directories
//! it changes. Both cost in proportion to the paths concerned and their
//! depth, not to the size of the tree: what lets a container commit stay
//! fast on a large image.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::id::{ChunkId, SnapshotId};
use crate::store::Store;
use crate::tree::codec::{self, ObjectKind};
use crate::tree::diff::{self, Change};
use crate::tree::directory::{self, Child, ChildNode, Directory};
use crate::tree::entry::{Entry, EntryKind, Metadata};
use crate::tree::layer::Layer;
use crate::tree::path::TreePath;

/// A tree in the store, read one directory at a time as paths are asked
/// for; each directory is read once.
///
/// ```
/// use layerstore::{Entry, Metadata, Snapshot, Store, StoreOptions, TreePath};
/// use layerstore::StoredTree;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let store = Store::create(dir.path().join("store"), &StoreOptions::default())?;
/// let a = TreePath::new("a")?;
/// let tree = Snapshot::from_entries(vec![
///     Entry::dir(TreePath::ROOT, Metadata::default()),
///     Entry::dir(a.clone(), Metadata::new(0o700)),
/// ])?;
/// let stored = StoredTree::new(&store, store.put_snapshot(&tree)?);
/// assert_eq!(stored.get(&a)?.as_ref(), tree.get(&a));
/// assert!(stored.get(&TreePath::new("a/b")?)?.is_none());
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct StoredTree<'s> {
    store: &'s Store,
    root: SnapshotId,
    read: Mutex<HashMap<ChunkId, Arc<Directory>>>,
}

impl<'s> StoredTree<'s> {
    /// The tree `root` of `store`; nothing is read yet.
    #[must_use]
    pub fn new(store: &'s Store, root: SnapshotId) -> Self {
        Self {
            store,
            root,
            read: Mutex::new(HashMap::new()),
        }
    }

    /// The tree's id.
    #[must_use]
    pub fn id(&self) -> SnapshotId {
        self.root
    }

    fn load(&self, id: &ChunkId) -> Result<Arc<Directory>> {
        let read = || {
            self.read
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if let Some(dir) = read().get(id) {
            return Ok(Arc::clone(dir));
        }
        let dir = Arc::new(self.store.directory(id)?);
        read().insert(*id, Arc::clone(&dir));
        Ok(dir)
    }

    fn root_dir(&self) -> Result<Arc<Directory>> {
        self.load(&ChunkId::from(self.root))
    }

    /// The directory at `path`, if there is a directory there.
    fn dir_at(&self, path: &TreePath) -> Result<Option<Arc<Directory>>> {
        let mut dir = self.root_dir()?;
        for name in path.components() {
            match dir.child(name).and_then(|c| c.node.dir_id()) {
                Some(id) => dir = self.load(&id)?,
                None => return Ok(None),
            }
        }
        Ok(Some(dir))
    }

    /// The root directory's entry.
    ///
    /// # Errors
    /// [`Error::ObjectNotFound`] if the tree is not stored; [`Error::Corrupt`]
    /// or [`Error::Malformed`] if its root directory is damaged.
    pub fn root(&self) -> Result<Entry> {
        Ok(Entry::dir(TreePath::ROOT, self.root_dir()?.meta.clone()))
    }

    /// The entry at `path`, if there is one: reads the directories on the way.
    ///
    /// # Errors
    /// As [`StoredTree::root`], for any directory on the way.
    pub fn get(&self, path: &TreePath) -> Result<Option<Entry>> {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return self.root().map(Some);
        };
        let Some(dir) = self.dir_at(&parent)? else {
            return Ok(None);
        };
        let Some(child) = dir.child(name) else {
            return Ok(None);
        };
        self.entry(child, path.clone()).map(Some)
    }

    fn entry(&self, child: &Child, path: TreePath) -> Result<Entry> {
        match child.node.dir_id() {
            Some(id) => Ok(Entry::dir(path, self.load(&id)?.meta.clone())),
            None => Ok(child
                .leaf_entry(path)?
                .unwrap_or_else(|| unreachable!("not a directory"))),
        }
    }

    /// The entries directly in `dir`, in order; empty if `dir` is not a
    /// directory of the tree.
    ///
    /// # Errors
    /// As [`StoredTree::get`].
    pub fn children(&self, dir: &TreePath) -> Result<Vec<Entry>> {
        let Some(d) = self.dir_at(dir)? else {
            return Ok(Vec::new());
        };
        d.children
            .iter()
            .map(|c| self.entry(c, dir.join(&c.name)?))
            .collect()
    }

    /// Every entry strictly beneath `dir`, in order (as
    /// [`Snapshot::descendants_of`](crate::Snapshot::descendants_of)): reads
    /// the whole subtree, a level at a time, each level's directories in
    /// parallel. The subtree's directories are not kept: a later call reads
    /// them again.
    ///
    /// # Errors
    /// As [`StoredTree::get`].
    pub fn descendants(&self, dir: &TreePath) -> Result<Vec<Entry>> {
        let Some(d) = self.dir_at(dir)? else {
            return Ok(Vec::new());
        };
        self.read_beneath(&d)?;
        let mut out = Vec::new();
        // The subtree's directories are taken out of what was read, not
        // copied: each is expanded once (one met twice is read again).
        let load = |id: &ChunkId| {
            let taken = self
                .read
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(id);
            match taken {
                Some(d) => Ok(Arc::try_unwrap(d).unwrap_or_else(|d| (*d).clone())),
                None => self.store.directory(id),
            }
        };
        directory::expand((*d).clone(), dir, &load, &mut out)?;
        Ok(out)
    }

    /// Reads every directory beneath `dir` not read yet, a level at a time,
    /// each level's in parallel: a whole subtree is then expanded from
    /// memory.
    fn read_beneath(&self, dir: &Directory) -> Result<()> {
        let subdirs = |d: &Directory| -> Vec<ChunkId> {
            d.children.iter().filter_map(|c| c.node.dir_id()).collect()
        };
        let mut level = subdirs(dir);
        for _ in 0..=directory::MAX_DEPTH {
            level.sort_unstable();
            level.dedup();
            {
                let read = self
                    .read
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                level.retain(|id| !read.contains_key(id));
            }
            if level.is_empty() {
                break;
            }
            let dirs: Vec<Arc<Directory>> = level
                .par_iter()
                .map(|id| self.store.directory(id).map(Arc::new))
                .collect::<Result<_>>()?;
            let next = dirs.iter().flat_map(|d| subdirs(d)).collect();
            self.read
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend(level.drain(..).zip(dirs));
            level = next;
        }
        Ok(())
    }

    /// Every hard link of the tree, in order, reading only the directories
    /// that have some beneath them.
    ///
    /// # Errors
    /// As [`StoredTree::get`].
    pub fn hardlinks(&self) -> Result<Vec<Entry>> {
        hardlinks_beneath(self.root_dir()?, &|id| self.load(id))
    }
}

/// Every hard link beneath the directory `root` (the tree's root), in order,
/// reading through `load` only the directories that have some beneath them:
/// the one walk of [`StoredTree::hardlinks`] and of the lazy view's link
/// counts (`mount::fuse`), which keeps its own decoded directories.
///
/// # Errors
/// `load`'s errors; [`Error::Malformed`] for a name that is no path component.
pub(crate) fn hardlinks_beneath(
    root: Arc<Directory>,
    load: &dyn Fn(&ChunkId) -> Result<Arc<Directory>>,
) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    let mut stack = vec![(TreePath::ROOT, root)];
    while let Some((path, dir)) = stack.pop() {
        // Pushed in reverse, so popped (and found) in order.
        for child in dir.children.iter().rev() {
            if child.node.links() == 0 {
                continue;
            }
            let child_path = path.join(&child.name)?;
            match child.node.dir_id() {
                Some(id) => stack.push((child_path, load(&id)?)),
                None => out.extend(child.leaf_entry(child_path)?),
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Layers applied to stored trees
impl Store {
    /// Stores the tree that `layer` makes of the stored tree `tree`, and
    /// returns its id: the same as
    /// `put_snapshot(&layer.apply(&snapshot(tree)?)?)`, but reading and
    /// writing only the directories on the paths the layer names (their
    /// parents up to the root), so it costs in proportion to the layer, not
    /// to the tree.
    ///
    /// # Errors
    /// As [`Layer::apply`] ([`Error::InvalidTree`] if the result is not a
    /// valid tree); as [`StoredTree::get`] for the directories read; as
    /// [`Store::put_bytes`].
    pub fn apply_layer(&self, tree: &SnapshotId, layer: &Layer) -> Result<SnapshotId> {
        let stored = StoredTree::new(self, *tree);
        let mut root = Edit::of(&*stored.root_dir()?);
        let mut lost_files = false;
        for path in layer.whiteouts() {
            let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
                continue;
            };
            if let Some(dir) = root.open(&stored, &parent)?
                && let Some(gone) = dir.children.remove(name)
            {
                lost_files |= gone.may_hold_files();
            }
        }
        for path in layer.opaque_dirs() {
            if let Some(dir) = root.open(&stored, path)?
                && !dir.children.is_empty()
            {
                dir.children.clear();
                lost_files = true;
            }
        }
        for entry in layer.upserts() {
            entry.check()?;
            let (Some(parent), Some(name)) = (entry.path.parent(), entry.path.file_name()) else {
                root.meta = entry.meta.clone();
                continue;
            };
            let Some(dir) = root.open(&stored, &parent)? else {
                let reason = match root.lookup(&stored, &parent)? {
                    Some(_) => format!("parent '{parent}' is not a directory"),
                    None => format!("parent directory '{parent}' is missing"),
                };
                return Err(Error::InvalidTree {
                    path: entry.path.to_string(),
                    reason,
                });
            };
            let old = dir.children.remove(name);
            if entry.is_dir() {
                let mut edit = match old {
                    Some(Slot::Stored(ChildNode::Dir(id, _))) => {
                        Edit::of(&*stored.load(&ChunkId::from_bytes(id))?)
                    }
                    Some(Slot::Edited(edit)) => *edit,
                    Some(Slot::Stored(ChildNode::Leaf(kind, _))) => {
                        lost_files |= matches!(kind, EntryKind::File { .. });
                        Edit::empty()
                    }
                    None => Edit::empty(),
                };
                edit.meta = entry.meta.clone();
                dir.children
                    .insert(name.to_vec(), Slot::Edited(Box::new(edit)));
            } else {
                // A file replaced by a file still is one; anything else
                // replaced may take files with it.
                let file_for_file = entry.is_file()
                    && matches!(
                        old,
                        Some(Slot::Stored(ChildNode::Leaf(EntryKind::File { .. }, _)))
                    );
                lost_files |= !file_for_file && old.as_ref().is_some_and(Slot::may_hold_files);
                dir.children.insert(
                    name.to_vec(),
                    Slot::Stored(ChildNode::Leaf(entry.kind.clone(), entry.meta.clone())),
                );
            }
        }
        // Hard links: the new ones must name a regular file of the result;
        // the old ones too, when a file may have gone.
        let mut links: Vec<Entry> = layer
            .upserts()
            .iter()
            .filter(|e| matches!(e.kind, EntryKind::Hardlink { .. }))
            .cloned()
            .collect();
        if lost_files {
            links.extend(root.hardlinks(&stored)?);
        }
        for link in &links {
            let EntryKind::Hardlink { target } = &link.kind else {
                continue;
            };
            match root.lookup(&stored, target)? {
                Some(Found::File) => {}
                Some(_) => {
                    return Err(Error::InvalidTree {
                        path: link.path.to_string(),
                        reason: format!("hard link target '{target}' is not a regular file"),
                    });
                }
                None => {
                    return Err(Error::InvalidTree {
                        path: link.path.to_string(),
                        reason: format!("hard link target '{target}' is missing"),
                    });
                }
            }
        }
        let (id, _) = root.write(self, 0)?;
        Ok(SnapshotId::from_bytes(id))
    }
}

/// A directory being changed: its metadata and children, each as stored or
/// itself being changed.
#[derive(Debug)]
struct Edit {
    meta: Metadata,
    children: BTreeMap<Vec<u8>, Slot>,
}

#[derive(Debug)]
enum Slot {
    Stored(ChildNode),
    Edited(Box<Edit>),
}

/// What a path of a tree being changed is.
enum Found {
    File,
    Dir,
    Other,
}

impl Slot {
    /// Whether a regular file is, or may be beneath, this.
    fn may_hold_files(&self) -> bool {
        !matches!(self, Slot::Stored(ChildNode::Leaf(kind, _)) if !matches!(kind, EntryKind::File { .. }))
    }
}

impl Edit {
    fn empty() -> Self {
        Self {
            meta: Metadata::default(),
            children: BTreeMap::new(),
        }
    }

    fn of(dir: &Directory) -> Self {
        Self {
            meta: dir.meta.clone(),
            children: dir
                .children
                .iter()
                .map(|c| (c.name.clone(), Slot::Stored(c.node.clone())))
                .collect(),
        }
    }

    /// The directory at `path`, made editable (read from the store on the
    /// way), or `None` if there is no directory there.
    fn open(&mut self, stored: &StoredTree<'_>, path: &TreePath) -> Result<Option<&mut Edit>> {
        let mut dir = self;
        for name in path.components() {
            let Some(slot) = dir.children.get_mut(name) else {
                return Ok(None);
            };
            if let Slot::Stored(ChildNode::Dir(id, _)) = slot {
                let edit = Edit::of(&*stored.load(&ChunkId::from_bytes(*id))?);
                *slot = Slot::Edited(Box::new(edit));
            }
            match slot {
                Slot::Edited(edit) => dir = edit,
                Slot::Stored(_) => return Ok(None),
            }
        }
        Ok(Some(dir))
    }

    /// What is at `path`, without making anything editable.
    fn lookup(&self, stored: &StoredTree<'_>, path: &TreePath) -> Result<Option<Found>> {
        let mut names = path.components().peekable();
        let mut edit = self;
        loop {
            let Some(name) = names.next() else {
                return Ok(Some(Found::Dir));
            };
            match edit.children.get(name) {
                None => return Ok(None),
                Some(Slot::Edited(e)) => edit = e,
                Some(Slot::Stored(node)) => {
                    let mut node = node.clone();
                    for name in names.by_ref() {
                        let Some(id) = node.dir_id() else {
                            return Ok(None);
                        };
                        match stored.load(&id)?.child(name) {
                            Some(child) => node = child.node.clone(),
                            None => return Ok(None),
                        }
                    }
                    return Ok(Some(match node {
                        ChildNode::Dir(..) => Found::Dir,
                        ChildNode::Leaf(EntryKind::File { .. }, _) => Found::File,
                        ChildNode::Leaf(..) => Found::Other,
                    }));
                }
            }
        }
    }

    /// Every hard link of the tree being changed, reading only stored
    /// directories that have some beneath them.
    fn hardlinks(&self, stored: &StoredTree<'_>) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        let mut edits = vec![(TreePath::ROOT, self)];
        while let Some((path, edit)) = edits.pop() {
            for (name, slot) in &edit.children {
                let child_path = path.join(name)?;
                match slot {
                    Slot::Edited(e) => edits.push((child_path, e)),
                    Slot::Stored(ChildNode::Leaf(kind @ EntryKind::Hardlink { .. }, meta)) => {
                        out.push(Entry::new(child_path, kind.clone(), meta.clone()));
                    }
                    Slot::Stored(ChildNode::Dir(id, links)) if *links > 0 => {
                        let dir = stored.load(&ChunkId::from_bytes(*id))?;
                        let mut below = Vec::new();
                        let load = |id: &ChunkId| stored.load(id).map(|d| (*d).clone());
                        directory::expand((*dir).clone(), &child_path, &load, &mut below)?;
                        out.extend(
                            below
                                .into_iter()
                                .filter(|e| matches!(e.kind, EntryKind::Hardlink { .. })),
                        );
                    }
                    Slot::Stored(_) => {}
                }
            }
        }
        Ok(out)
    }

    /// Stores this directory and every changed one beneath it (those not
    /// stored already); returns its id and its count of hard links.
    fn write(self, store: &Store, depth: usize) -> Result<([u8; 32], u64)> {
        if depth > directory::MAX_DEPTH {
            return Err(Error::InvalidTree {
                path: TreePath::ROOT.to_string(),
                reason: format!("more than {} directories deep", directory::MAX_DEPTH),
            });
        }
        let mut children = Vec::with_capacity(self.children.len());
        let mut links = 0;
        for (name, slot) in self.children {
            let node = match slot {
                Slot::Stored(node) => node,
                Slot::Edited(edit) => {
                    let (id, links) = edit.write(store, depth + 1)?;
                    ChildNode::Dir(id, links)
                }
            };
            links = node.links().saturating_add(links);
            children.push(Child { name, node });
        }
        let dir = Directory {
            meta: self.meta,
            children,
        };
        let bytes = codec::encode(ObjectKind::Directory, &dir);
        let id = ChunkId::of(&bytes);
        if !store.contains(&id) {
            store.put_object(&bytes)?;
        }
        Ok((*id.as_bytes(), links))
    }
}

/// Stored trees compared
impl Store {
    /// The layer that turns the stored tree `old` into the stored tree `new`:
    /// [`Snapshot::diff`](crate::Snapshot::diff) of the two, reading only the
    /// directories that differ (equal subtrees have equal ids) and those with
    /// hard links beneath them.
    ///
    /// # Errors
    /// As [`StoredTree::get`], for the directories read.
    pub fn diff_stored(&self, old: &SnapshotId, new: &SnapshotId) -> Result<Layer> {
        let (a, b) = self.differing_entries(old, new)?;
        Ok(diff::diff_entries(&a, &b))
    }

    /// The paths that differ between the stored trees `old` and `new`:
    /// [`Snapshot::changes`](crate::Snapshot::changes) of the two, read as
    /// [`Store::diff_stored`] reads them.
    ///
    /// # Errors
    /// As [`Store::diff_stored`].
    pub fn changes_stored(&self, old: &SnapshotId, new: &SnapshotId) -> Result<Vec<Change>> {
        let (a, b) = self.differing_entries(old, new)?;
        Ok(diff::changes_of_entries(&a, &b))
    }

    /// The entries of `old` and of `new` that a diff of the two can tell
    /// apart, each list sorted: equal subtrees without hard links are left
    /// out of both, and a subtree that only `old` has is its top alone.
    fn differing_entries(
        &self,
        old: &SnapshotId,
        new: &SnapshotId,
    ) -> Result<(Vec<Entry>, Vec<Entry>)> {
        let trees = [StoredTree::new(self, *old), StoredTree::new(self, *new)];
        let (old_root, new_root) = (trees[0].root_dir()?, trees[1].root_dir()?);
        let mut out = (
            vec![Entry::dir(TreePath::ROOT, old_root.meta.clone())],
            vec![Entry::dir(TreePath::ROOT, new_root.meta.clone())],
        );
        if old != new || old_root.children.iter().any(|c| c.node.links() > 0) {
            compare(&trees, &TreePath::ROOT, &old_root, &new_root, &mut out, 0)?;
        }
        Ok(out)
    }
}

/// Pushes the entries beneath `path` that [`Store::differing_entries`]
/// keeps, merging the children of `old` and `new` (the directory at `path`
/// in each tree) by name.
fn compare(
    trees: &[StoredTree<'_>; 2],
    path: &TreePath,
    old: &Directory,
    new: &Directory,
    out: &mut (Vec<Entry>, Vec<Entry>),
    depth: usize,
) -> Result<()> {
    use std::cmp::Ordering;
    if depth > directory::MAX_DEPTH {
        return Err(Error::Malformed {
            what: "directory",
            reason: format!(
                "'{path}' is more than {} directories deep",
                directory::MAX_DEPTH
            ),
        });
    }
    let (mut i, mut j) = (0, 0);
    loop {
        let (a, b) = (old.children.get(i), new.children.get(j));
        let order = match (a, b) {
            (None, None) => return Ok(()),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(a), Some(b)) => a.name.cmp(&b.name),
        };
        match (order, a, b) {
            (Ordering::Less, Some(a), _) => {
                i += 1;
                // Gone: its descendants go with it unlisted.
                out.0.push(trees[0].entry(a, path.join_name(&a.name))?);
            }
            (Ordering::Greater, _, Some(b)) => {
                j += 1;
                push_subtree(&trees[1], path.join_name(&b.name), b, &mut out.1)?;
            }
            (Ordering::Equal, Some(a), Some(b)) => {
                i += 1;
                j += 1;
                let child = path.join_name(&a.name);
                if a.node == b.node {
                    // Equal: only hard links beneath can be told apart (one
                    // whose target file changed elsewhere is listed again).
                    if a.node.links() > 0 {
                        push_subtree(&trees[0], child.clone(), a, &mut out.0)?;
                        push_subtree(&trees[1], child, b, &mut out.1)?;
                    }
                    continue;
                }
                if let (Some(da), Some(db)) = (a.node.dir_id(), b.node.dir_id()) {
                    let (da, db) = (trees[0].load(&da)?, trees[1].load(&db)?);
                    out.0.push(Entry::dir(child.clone(), da.meta.clone()));
                    out.1.push(Entry::dir(child.clone(), db.meta.clone()));
                    compare(trees, &child, &da, &db, out, depth + 1)?;
                } else {
                    // Replaced (a directory's old descendants go with it
                    // unlisted), or a changed entry.
                    out.0.push(trees[0].entry(a, child.clone())?);
                    push_subtree(&trees[1], child, b, &mut out.1)?;
                }
            }
            _ => unreachable!("the order follows from which child there is"),
        }
    }
}

/// Pushes `child` at `path` and, for a directory, everything beneath it.
fn push_subtree(
    tree: &StoredTree<'_>,
    path: TreePath,
    child: &Child,
    out: &mut Vec<Entry>,
) -> Result<()> {
    let Some(id) = child.node.dir_id() else {
        out.push(tree.entry(child, path)?);
        return Ok(());
    };
    let dir = tree.load(&id)?;
    out.push(Entry::dir(path.clone(), dir.meta.clone()));
    let load = |id: &ChunkId| tree.load(id).map(|d| (*d).clone());
    directory::expand((*dir).clone(), &path, &load, out)
}
