//! The tree a view is of, decoded from the store only when a backend asks for
//! it: mounting over extracted layers (`overlay`), checking whether a view is
//! live, or reading its files never needs the whole tree of the image, and
//! decoding it costs time in proportion to the image's size. Single paths
//! (what an overlay commit compares its upper directory against) are read a
//! directory at a time ([`StoredTree`]).

use std::sync::OnceLock;

use crate::error::Result;
use crate::id::{ImageId, SnapshotId};
use crate::store::Store;
use crate::tree::{Entry, EntryKind, Snapshot, StoredTree, TreePath};

/// The flattened tree of a view's image, as [`ViewSpec::base`](super::ViewSpec::base)
/// gives it: decoded once, on the first call of [`BaseTree::get`], or given
/// up front.
///
/// ```
/// use layerstore::{Store, StoreOptions};
/// use layerstore::mount::BaseTree;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let store = Store::create(dir.path().join("store"), &StoreOptions::default())?;
/// let image = store.put_empty_image()?;
/// let base = BaseTree::lazy(&store, image);
/// assert_eq!(base.id()?, store.image(&image)?.rootfs()); // nothing decoded yet
/// assert_eq!(base.get()?.entries().len(), 1); // now the tree is read
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct BaseTree<'s> {
    source: Source<'s>,
    tree: OnceLock<Snapshot>,
    /// The image's tree read by path, when the whole tree is not needed.
    stored: OnceLock<StoredTree<'s>>,
}

#[derive(Debug)]
enum Source<'s> {
    /// The tree of this image in this store, not read yet.
    Image(&'s Store, ImageId),
    /// Given: [`BaseTree::get`] returns it.
    Given,
}

impl<'s> BaseTree<'s> {
    /// The tree of `image` in `store`, read when first asked for.
    #[must_use]
    pub fn lazy(store: &'s Store, image: ImageId) -> Self {
        Self {
            source: Source::Image(store, image),
            tree: OnceLock::new(),
            stored: OnceLock::new(),
        }
    }

    /// `tree`, known already.
    #[must_use]
    pub fn given(tree: Snapshot) -> Self {
        Self {
            source: Source::Given,
            tree: OnceLock::from(tree),
            stored: OnceLock::new(),
        }
    }

    /// The tree, read from the store on the first call.
    ///
    /// # Errors
    /// As [`Store::image_tree`]: the image or its tree is missing or damaged.
    pub fn get(&self) -> Result<&Snapshot> {
        if let Some(tree) = self.tree.get() {
            return Ok(tree);
        }
        let tree = match &self.source {
            Source::Image(store, image) => store.image_tree(image)?,
            Source::Given => unreachable!("a given tree is set when made"),
        };
        // Another thread may have set it meanwhile: the same tree.
        Ok(self.tree.get_or_init(|| tree))
    }

    /// Whether the tree has been read (or was given).
    #[must_use]
    pub fn is_loaded(&self) -> bool {
        self.tree.get().is_some()
    }

    /// The tree's id, without reading the tree when it is an image's (the
    /// image records it).
    ///
    /// # Errors
    /// As [`Store::image`].
    pub fn id(&self) -> Result<SnapshotId> {
        match (&self.source, self.tree.get()) {
            (Source::Image(store, image), _) => Ok(store.image(image)?.rootfs()),
            (Source::Given, Some(tree)) => Ok(tree.id()),
            (Source::Given, None) => unreachable!("a given tree is set when made"),
        }
    }

    /// The tree read by path, when it is an image's and was not read whole.
    fn stored(&self) -> Result<Option<&StoredTree<'s>>> {
        if self.tree.get().is_some() {
            return Ok(None);
        }
        if let Some(stored) = self.stored.get() {
            return Ok(Some(stored));
        }
        let Source::Image(store, image) = &self.source else {
            return Ok(None);
        };
        let stored = StoredTree::new(store, store.image(image)?.rootfs());
        Ok(Some(self.stored.get_or_init(|| stored)))
    }

    /// The root directory's entry, reading only the root directory of an
    /// image's tree (or the whole tree, if it was read).
    ///
    /// # Errors
    /// As [`StoredTree::root`].
    pub fn root(&self) -> Result<Entry> {
        match self.stored()? {
            Some(stored) => stored.root(),
            None => Ok(self.get()?.root().clone()),
        }
    }

    /// The entry at `path`, reading only the directories on the way.
    ///
    /// # Errors
    /// As [`StoredTree::get`].
    pub fn entry(&self, path: &TreePath) -> Result<Option<Entry>> {
        match self.stored()? {
            Some(stored) => stored.get(path),
            None => Ok(self.get()?.get(path).cloned()),
        }
    }

    /// The entries directly in `dir`, in order.
    ///
    /// # Errors
    /// As [`StoredTree::children`].
    pub fn children(&self, dir: &TreePath) -> Result<Vec<Entry>> {
        match self.stored()? {
            Some(stored) => stored.children(dir),
            None => Ok(self.get()?.children_of(dir).cloned().collect()),
        }
    }

    /// Every entry strictly beneath `dir`, in order.
    ///
    /// # Errors
    /// As [`StoredTree::descendants`].
    pub fn descendants(&self, dir: &TreePath) -> Result<Vec<Entry>> {
        match self.stored()? {
            Some(stored) => stored.descendants(dir),
            None => Ok(self.get()?.descendants_of(dir).to_vec()),
        }
    }

    /// Every hard link of the tree, in order.
    ///
    /// # Errors
    /// As [`StoredTree::hardlinks`].
    pub fn hardlinks(&self) -> Result<Vec<Entry>> {
        match self.stored()? {
            Some(stored) => stored.hardlinks(),
            None => Ok(self
                .get()?
                .iter()
                .filter(|e| matches!(e.kind, EntryKind::Hardlink { .. }))
                .cloned()
                .collect()),
        }
    }
}
