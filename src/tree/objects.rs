//! Tree objects in the store: layers, snapshots and images as metadata objects,
//! images resolved from tags, ids and id prefixes, images flattened and made.

use std::collections::HashMap;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::id::{ChunkId, ImageId, LayerId, SnapshotId};
use crate::store::Store;
use crate::tree::TagName;
use crate::tree::directory::{self, Directory};
use crate::tree::entry::Entry;
use crate::tree::image::{History, Image, ImageConfig};
use crate::tree::layer::{self, Layer, StoredLayer};
use crate::tree::snapshot::Snapshot;

/// Every object that stores `layer`, the layer object last (subdirectories
/// before their parents), and the layer's id: what [`Store::put_layer`]
/// writes, for carrying a layer elsewhere whole.
pub(crate) fn layer_objects(layer: &Layer) -> (LayerId, Vec<Vec<u8>>) {
    let mut objects = Vec::new();
    let top = match layer.whole_tree_entries() {
        Some(entries) => {
            let dirs = directory::encode_entries(&entries);
            let root = dirs
                .last()
                .map_or_else(|| unreachable!("every tree has a root"), |(id, _)| *id);
            objects.extend(dirs.into_iter().map(|(_, bytes)| bytes));
            layer::encode_of_tree(&SnapshotId::from(root))
        }
        None => layer.encode(),
    };
    let id = LayerId::from_bytes(*ChunkId::of(&top).as_bytes());
    objects.push(top);
    (id, objects)
}

/// The layer `id` from the objects that store it (as [`layer_objects`] gives
/// them), decoded without a store: every object checked as a read from a
/// store checks it.
///
/// # Errors
/// [`Error::ObjectNotFound`] (`store` empty) if the layer or a directory is
/// not among them; [`Error::Malformed`] if one does not decode.
#[cfg_attr(not(feature = "registry"), allow(dead_code))]
pub(crate) fn layer_from_objects(id: &LayerId, objects: &[Vec<u8>]) -> Result<Layer> {
    let by_id: HashMap<ChunkId, &[u8]> = objects
        .iter()
        .map(|o| (ChunkId::of(o), o.as_slice()))
        .collect();
    let get = |kind: &'static str, id: &ChunkId| {
        by_id.get(id).copied().ok_or_else(|| Error::ObjectNotFound {
            kind,
            id: id.to_string(),
            store: std::path::PathBuf::new(),
        })
    };
    match layer::decode_stored(get("layer", &ChunkId::from(*id))?)? {
        StoredLayer::Flat(layer) => Ok(layer),
        StoredLayer::OfTree(tree) => {
            let load = |id: &ChunkId| Directory::decode(get("directory", id)?);
            let root = load(&ChunkId::from(tree))?;
            Ok(Layer::of_tree(directory::assemble(root, &load)?))
        }
    }
}

/// Tree objects
impl Store {
    /// The bytes of metadata object `id`; a missing one is
    /// [`Error::ObjectNotFound`] naming `kind`.
    pub(crate) fn object(&self, kind: &'static str, id: [u8; 32]) -> Result<Vec<u8>> {
        match self.read_chunk(&ChunkId::from_bytes(id)) {
            Err(Error::ChunkNotFound { store, .. }) => Err(Error::ObjectNotFound {
                kind,
                id: format!("{}", ChunkId::from_bytes(id)),
                store,
            }),
            other => other,
        }
    }

    /// Stores a layer; returns its id.
    ///
    /// # Errors
    /// As [`Store::put_bytes`].
    pub fn put_layer(&self, layer: &Layer) -> Result<LayerId> {
        let id = match layer.whole_tree_entries() {
            // A layer of a whole tree is stored as the tree's id: the tree
            // first.
            Some(entries) => {
                let tree = self.put_tree_entries(&entries)?;
                self.put_object(&layer::encode_of_tree(&tree))?
            }
            None => self.put_object(&layer.encode())?,
        };
        Ok(LayerId::from_bytes(*id.as_bytes()))
    }

    /// Stores objects that [`layer_objects`] gave (from elsewhere: a
    /// seekable layer's table of contents, whose layer was decoded from them
    /// already), each verified by its id as any object is; those stored
    /// already are not written again.
    ///
    /// # Errors
    /// As [`Store::put_bytes`].
    #[cfg_attr(not(feature = "registry"), allow(dead_code))]
    pub(crate) fn put_layer_objects(&self, objects: &[Vec<u8>]) -> Result<()> {
        for bytes in objects {
            if !self.contains(&ChunkId::of(bytes)) {
                self.put_object(bytes)?;
            }
        }
        Ok(())
    }

    /// The layer `id`.
    ///
    /// # Errors
    /// [`Error::ObjectNotFound`] if it (or, for a layer of a whole tree, a
    /// directory of the tree) is not stored; [`Error::Corrupt`] or
    /// [`Error::Malformed`] if its bytes are damaged.
    pub fn layer(&self, id: &LayerId) -> Result<Layer> {
        match layer::decode_stored(&self.object("layer", *id.as_bytes())?)? {
            StoredLayer::Flat(layer) => Ok(layer),
            StoredLayer::OfTree(tree) => Ok(Layer::of_tree(self.snapshot(&tree)?)),
        }
    }

    /// Stores a snapshot, one object per directory (those already stored,
    /// as in an earlier version of the tree, are not written again); returns
    /// its id, [`Snapshot::id`].
    ///
    /// # Errors
    /// As [`Store::put_bytes`].
    pub fn put_snapshot(&self, snapshot: &Snapshot) -> Result<SnapshotId> {
        self.put_tree_entries(snapshot.entries())
    }

    /// [`Store::put_snapshot`] of the entries of a valid tree.
    fn put_tree_entries(&self, entries: &[Entry]) -> Result<SnapshotId> {
        let objects = directory::encode_entries(entries);
        let root = objects
            .last()
            .map_or_else(|| unreachable!("every tree has a root"), |(id, _)| *id);
        // New directories are compressed a frame at a time on each thread;
        // those already stored are leased (`Store::put_object`).
        objects
            .par_iter()
            .try_for_each(|(_, bytes)| self.put_object(bytes).map(drop))?;
        Ok(SnapshotId::from(root))
    }

    /// The snapshot `id`, read whole.
    ///
    /// # Errors
    /// As [`Store::layer`], for any of its directories.
    pub fn snapshot(&self, id: &SnapshotId) -> Result<Snapshot> {
        let root = self.directory(&ChunkId::from(*id))?;
        let read = std::sync::Mutex::new(self.directories_beneath(&root)?);
        directory::assemble(root, &|id| {
            let taken = read
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(id);
            // A directory met twice (equal subtrees) is read again.
            taken.map_or_else(|| self.directory(id), Ok)
        })
    }

    /// Every directory object beneath `root`, read a level at a time, each
    /// level's in parallel.
    fn directories_beneath(&self, root: &Directory) -> Result<HashMap<ChunkId, Directory>> {
        let mut read = HashMap::new();
        let mut level: Vec<ChunkId> = root
            .children
            .iter()
            .filter_map(|c| c.node.dir_id())
            .collect();
        for _ in 0..=directory::MAX_DEPTH {
            level.sort_unstable();
            level.dedup();
            level.retain(|id| !read.contains_key(id));
            if level.is_empty() {
                break;
            }
            let dirs: Vec<Directory> = level
                .par_iter()
                .map(|id| self.directory(id))
                .collect::<Result<_>>()?;
            let next = dirs
                .iter()
                .flat_map(|d| d.children.iter().filter_map(|c| c.node.dir_id()))
                .collect();
            read.extend(level.drain(..).zip(dirs));
            level = next;
        }
        Ok(read)
    }

    /// The directory object `id` of a stored tree.
    pub(crate) fn directory(&self, id: &ChunkId) -> Result<Directory> {
        Directory::decode(&self.object("directory", *id.as_bytes())?)
    }

    /// Stores an image, after checking that its layers and its tree are stored.
    ///
    /// # Errors
    /// [`Error::ObjectNotFound`] naming a missing layer or tree; as
    /// [`Store::put_bytes`] otherwise.
    pub fn put_image(&self, image: &Image) -> Result<ImageId> {
        for layer in image.layers() {
            if !self.hold_one(&ChunkId::from(*layer))? {
                return Err(Error::ObjectNotFound {
                    kind: "layer",
                    id: layer.to_string(),
                    store: self.path().to_path_buf(),
                });
            }
        }
        if !self.hold_one(&ChunkId::from(image.rootfs()))? {
            return Err(Error::ObjectNotFound {
                kind: "snapshot",
                id: image.rootfs().to_string(),
                store: self.path().to_path_buf(),
            });
        }
        let id = self.put_object(&image.encode())?;
        Ok(ImageId::from_bytes(*id.as_bytes()))
    }

    /// The image `id`.
    ///
    /// # Errors
    /// As [`Store::layer`].
    pub fn image(&self, id: &ImageId) -> Result<Image> {
        Image::decode(&self.object("image", *id.as_bytes())?)
    }

    /// The tree of image `id` (stored with it, so no layer is applied).
    ///
    /// # Errors
    /// As [`Store::layer`].
    pub fn image_tree(&self, id: &ImageId) -> Result<Snapshot> {
        self.snapshot(&self.image(id)?.rootfs())
    }

    /// Finds an image by tag (`name` or `name:tag`), full id (`blake3:<hex>`)
    /// or a unique prefix of at least 12 hex digits (with or without `blake3:`).
    ///
    /// # Errors
    /// [`Error::ImageNotFound`] naming `reference` when nothing matches or a
    /// prefix is ambiguous.
    pub fn resolve_image(&self, reference: &str) -> Result<ImageId> {
        let not_found = |reason: &str| Error::ImageNotFound {
            reference: reference.to_owned(),
            reason: reason.to_owned(),
        };
        let digits = reference
            .strip_prefix(crate::id::ID_PREFIX)
            .unwrap_or(reference);
        let is_hex = digits.len() >= 12
            && digits.len() <= 64
            && digits.bytes().all(|b| b.is_ascii_hexdigit());
        if is_hex {
            let digits = digits.to_ascii_lowercase();
            let mut found = Vec::new();
            for id in self.chunk_ids_with_prefix(&digits) {
                let Ok(bytes) = self.read_chunk(&id) else {
                    continue;
                };
                if Image::decode(&bytes).is_ok() {
                    found.push(ImageId::from_bytes(*id.as_bytes()));
                }
            }
            match found.len() {
                1 => return Ok(found[0]),
                0 if reference.starts_with(crate::id::ID_PREFIX) => {
                    return Err(not_found("no image has this id"));
                }
                0 => {}
                _ => return Err(not_found("the prefix is ambiguous")),
            }
        }
        let name: TagName = reference
            .parse()
            .map_err(|_| not_found("neither a tag nor an image id"))?;
        self.tag(&name)?.ok_or_else(|| not_found("no such tag"))
    }

    /// Stores the image of the empty tree (no layers, default config): what
    /// `FROM scratch` and containers built from nothing start from.
    ///
    /// # Errors
    /// As [`Store::put_image`].
    pub fn put_empty_image(&self) -> Result<ImageId> {
        let tree = self.put_snapshot(&Snapshot::empty())?;
        let image = Image::new(Vec::new(), tree, ImageConfig::default(), Vec::new())?;
        self.put_image(&image)
    }

    /// Makes and stores the image of one layer that makes the stored tree
    /// `tree` of the empty tree: what a commit without a parent makes, equal
    /// to `put_child_image(None, &Layer::of_tree(t), &t, Some(config),
    /// history)` for the tree `t` stored as `tree`. Such a layer is stored
    /// as the tree's id, so nothing of the tree is read or encoded again.
    ///
    /// # Errors
    /// [`Error::ObjectNotFound`] if `tree` is not stored; as
    /// [`Store::put_image`] otherwise.
    pub fn put_tree_image(
        &self,
        tree: SnapshotId,
        config: ImageConfig,
        history: History,
    ) -> Result<ImageId> {
        if !self.hold_one(&ChunkId::from(tree))? {
            return Err(Error::ObjectNotFound {
                kind: "snapshot",
                id: tree.to_string(),
                store: self.path().to_path_buf(),
            });
        }
        // Of the empty tree, the layer of the whole tree is the empty layer,
        // which is stored entry by entry (it has none); of any other valid
        // tree, it is stored as the tree's id (`Layer::whole_tree_entries`).
        let layer = if tree == Snapshot::empty().id() {
            self.put_layer(&Layer::empty())?
        } else {
            let id = self.put_object(&layer::encode_of_tree(&tree))?;
            LayerId::from_bytes(*id.as_bytes())
        };
        let history = History {
            empty_layer: false,
            ..history
        };
        let image = Image::new(vec![layer], tree, config, vec![history])?;
        self.put_image(&image)
    }

    /// Makes and stores an image of `parent`'s layers plus `layer` (stored too),
    /// whose tree is `tree`; a `history` record is appended for the new layer
    /// and the parent's config is kept unless `config` is given.
    ///
    /// # Errors
    /// As [`Store::put_image`].
    pub fn put_child_image(
        &self,
        parent: Option<&ImageId>,
        layer: &Layer,
        tree: &Snapshot,
        config: Option<ImageConfig>,
        history: History,
    ) -> Result<ImageId> {
        let rootfs = self.put_snapshot(tree)?;
        self.put_child_image_of(parent, layer, rootfs, config, history)
    }

    /// As [`Store::put_child_image`], with the image's tree given by the id
    /// of a stored tree: what [`Store::apply_layer`] returns for `parent`'s
    /// tree and `layer`, so that the new image is made without reading the
    /// parent's tree whole.
    ///
    /// # Errors
    /// As [`Store::put_image`] (a `rootfs` not stored is an error).
    pub fn put_child_image_of(
        &self,
        parent: Option<&ImageId>,
        layer: &Layer,
        rootfs: SnapshotId,
        config: Option<ImageConfig>,
        history: History,
    ) -> Result<ImageId> {
        let (mut layers, mut records, parent_config) = match parent {
            Some(id) => {
                let image = self.image(id)?;
                (
                    image.layers().to_vec(),
                    image.history().to_vec(),
                    image.config().clone(),
                )
            }
            None => (Vec::new(), Vec::new(), ImageConfig::default()),
        };
        layers.push(self.put_layer(layer)?);
        records.push(History {
            empty_layer: false,
            ..history
        });
        let image = Image::new(layers, rootfs, config.unwrap_or(parent_config), records)?;
        self.put_image(&image)
    }
}
