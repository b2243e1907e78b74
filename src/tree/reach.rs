//! Reachability: the roots of a store (its tags, build-cache entries and
//! pins: `tree::refs`) and the walk from them through images, layers and
//! trees to every chunk of every file, marking what it reaches. Garbage
//! collection (`tree::gc`) keeps what it marks; fsck (`tree::fsck`) walks it
//! counting damage.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::id::{ChunkId, ImageId, LayerId, SnapshotId};
use crate::store::chunk_list::ChunkList;
use crate::store::{Store, layout};
use crate::tree::TagName;
use crate::tree::codec;
use crate::tree::directory::{ChildNode, MAX_DEPTH};
use crate::tree::entry::{Entry, EntryKind};
use crate::tree::layer::{self, StoredLayer};

/// What is wrong below an object: how many chunk references are missing or
/// unreadable, and the first problem met.
#[derive(Debug, Clone, Default)]
pub(crate) struct Damage {
    pub(crate) missing: u64,
    pub(crate) first: Option<String>,
}

impl Damage {
    fn add(&mut self, other: &Damage) {
        self.missing += other.missing;
        if self.first.is_none() {
            self.first.clone_from(&other.first);
        }
    }

    pub(crate) fn is_clean(&self) -> bool {
        self.missing == 0 && self.first.is_none()
    }
}

/// A walk from roots to chunks, marking what it reaches.
pub(crate) struct Walk<'a> {
    store: &'a Store,
    /// Every chunk reached, objects included.
    pub(crate) live: HashSet<ChunkId>,
    objects: HashMap<ChunkId, Damage>,
    /// The hard links found beneath each directory object walked.
    links: HashMap<ChunkId, u64>,
    /// `None` (gc): an object that does not read is an error, and file chunks
    /// are not looked up. `Some` (fsck): objects that do not read, and file
    /// chunks that are missing or in this set of unreadable ones, are counted
    /// as damage.
    checking: Option<&'a HashSet<ChunkId>>,
    /// When checking: file chunks the store does not hold yet that are not
    /// damage (those of images being fetched lazily).
    pending: HashSet<ChunkId>,
}

impl<'a> Walk<'a> {
    pub(crate) fn new(store: &'a Store, checking: Option<&'a HashSet<ChunkId>>) -> Self {
        Self {
            store,
            live: HashSet::new(),
            objects: HashMap::new(),
            links: HashMap::new(),
            checking,
            pending: HashSet::new(),
        }
    }

    /// When checking, `pending` chunks absent from the store are not damage.
    pub(crate) fn expecting(mut self, pending: HashSet<ChunkId>) -> Self {
        self.pending = pending;
        self
    }

    /// Reads an object, or turns its error into damage (when checking).
    fn read<T>(
        &mut self,
        id: ChunkId,
        kind: &str,
        read: impl FnOnce(&Store) -> Result<T>,
    ) -> Result<Result<T, Damage>> {
        self.live.insert(id);
        match read(self.store) {
            Ok(object) => Ok(Ok(object)),
            Err(err) if self.checking.is_some() => Ok(Err(Damage {
                missing: 1,
                first: Some(format!("{kind} {id}: {err}")),
            })),
            Err(err) => Err(err),
        }
    }

    /// Marks image `id` and everything it names.
    pub(crate) fn image(&mut self, id: ImageId) -> Result<Damage> {
        let key = ChunkId::from(id);
        if let Some(done) = self.objects.get(&key) {
            return Ok(done.clone());
        }
        let damage = match self.read(key, "image", |s| s.image(&id))? {
            Err(damage) => damage,
            Ok(image) => {
                let mut damage = Damage::default();
                for layer in image.layers() {
                    damage.add(&self.layer(*layer)?);
                }
                damage.add(&self.snapshot(image.rootfs())?);
                damage
            }
        };
        self.objects.insert(key, damage.clone());
        Ok(damage)
    }

    /// Marks layer `id` and the chunks of its files.
    pub(crate) fn layer(&mut self, id: LayerId) -> Result<Damage> {
        let key = ChunkId::from(id);
        if let Some(done) = self.objects.get(&key) {
            return Ok(done.clone());
        }
        let read = |s: &Store| layer::decode_stored(&s.object("layer", *id.as_bytes())?);
        let damage = match self.read(key, "layer", read)? {
            Err(damage) => damage,
            Ok(StoredLayer::Flat(layer)) => self.entries(layer.upserts(), "layer", key),
            // A layer of a whole tree keeps the tree.
            Ok(StoredLayer::OfTree(tree)) => self.snapshot(tree)?,
        };
        self.objects.insert(key, damage.clone());
        Ok(damage)
    }

    /// Marks snapshot `id`: its directory objects and the chunks of its
    /// files.
    pub(crate) fn snapshot(&mut self, id: SnapshotId) -> Result<Damage> {
        self.directory(ChunkId::from(id), 0)
    }

    /// Marks directory object `key`, `depth` directories below a root, and
    /// everything beneath it; a directory met again (in another tree, or
    /// twice in one) is not read again.
    fn directory(&mut self, key: ChunkId, depth: usize) -> Result<Damage> {
        if let Some(done) = self.objects.get(&key) {
            return Ok(done.clone());
        }
        if depth > MAX_DEPTH {
            let reason = format!("directory {key}: more than {MAX_DEPTH} directories deep");
            return match self.checking {
                Some(_) => Ok(Damage {
                    missing: 1,
                    first: Some(reason),
                }),
                None => Err(Error::Malformed {
                    what: "directory",
                    reason,
                }),
            };
        }
        let damage = match self.read(key, "directory", |s| s.directory(&key))? {
            Err(damage) => damage,
            Ok(dir) => {
                let mut damage = Damage::default();
                let mut links = 0u64;
                for child in &dir.children {
                    // Only a message needs it.
                    let name = || crate::tree::path::escape(&child.name);
                    match &child.node {
                        ChildNode::Dir(id, declared) => {
                            let id = ChunkId::from_bytes(*id);
                            damage.add(&self.directory(id, depth + 1)?);
                            let Some(&found) = self.links.get(&id) else {
                                continue;
                            };
                            links = links.saturating_add(found);
                            // A wrong count would let a change elsewhere
                            // leave a link dangling unseen.
                            if found != *declared && self.checking.is_some() {
                                damage.missing += 1;
                                damage.first.get_or_insert_with(|| {
                                    format!(
                                        "directory {key}: '{}' is said to hold {declared} \
                                         hard links, holds {found}",
                                        name()
                                    )
                                });
                            }
                        }
                        ChildNode::Leaf(EntryKind::File { chunks, .. }, _) => {
                            self.chunks(chunks, &name, "directory", key, &mut damage);
                        }
                        ChildNode::Leaf(kind, _) => {
                            links += u64::from(matches!(kind, EntryKind::Hardlink { .. }));
                        }
                    }
                }
                self.links.insert(key, links);
                damage
            }
        };
        self.objects.insert(key, damage.clone());
        Ok(damage)
    }

    fn entries(&mut self, entries: &[Entry], kind: &str, object: ChunkId) -> Damage {
        let mut damage = Damage::default();
        for entry in entries {
            if let EntryKind::File { chunks, .. } = &entry.kind {
                let path = || entry.path.to_string();
                self.chunks(chunks, &path, kind, object, &mut damage);
            }
        }
        damage
    }

    /// Marks the chunks of the file at `path()` of `object` (when checking,
    /// a missing or unreadable one is damage).
    fn chunks(
        &mut self,
        chunks: &ChunkList,
        path: &dyn Fn() -> String,
        kind: &str,
        object: ChunkId,
        damage: &mut Damage,
    ) {
        for chunk in chunks.chunks() {
            self.live.insert(chunk.id);
            if let Some(unreadable) = self.checking
                && (unreadable.contains(&chunk.id) || !self.store.contains(&chunk.id))
            {
                if !unreadable.contains(&chunk.id) && self.pending.contains(&chunk.id) {
                    // Not here yet: an image being fetched lazily needs it.
                    continue;
                }
                damage.missing += 1;
                if damage.first.is_none() {
                    damage.first = Some(format!(
                        "file '{}' of {kind} {object}: chunk {} is missing or damaged",
                        path(),
                        chunk.id
                    ));
                }
            }
        }
    }

    /// Marks a pinned id: an object (followed) or a plain chunk.
    pub(crate) fn pinned(&mut self, id: ChunkId) -> Result<Damage> {
        let bytes = match self.read(id, "pinned chunk", |s| s.read_chunk(&id))? {
            Ok(bytes) => bytes,
            Err(damage) => return Ok(damage),
        };
        let kind = match bytes.get(..5) {
            Some(head) if head[..4] == codec::MAGIC => head[4],
            _ => return Ok(Damage::default()),
        };
        let raw = *id.as_bytes();
        match kind {
            k if k == codec::ObjectKind::Image as u8 => self.image(ImageId::from_bytes(raw)),
            k if k == codec::ObjectKind::Layer as u8
                || k == codec::ObjectKind::LayerOfTree as u8 =>
            {
                self.layer(LayerId::from_bytes(raw))
            }
            k if k == codec::ObjectKind::Directory as u8 => {
                self.snapshot(SnapshotId::from_bytes(raw))
            }
            _ => Ok(Damage::default()),
        }
    }
}

/// A root: a ref file and what it names.
pub(crate) enum Root {
    Tag(TagName, ImageId),
    /// A build-cache entry: the image (or, in stores of earlier builds, the
    /// layer) a step made.
    Cache(ChunkId),
    /// A pin (`refs/<group>/<name>`): ids kept with what they reach.
    Pinned(Vec<ChunkId>),
}

/// The refs of the store: every tag and build-cache entry, each with its
/// file; refs that do not parse come back as `Err` with the reason. A ref
/// removed between the listing and its reading (an untag beside an online
/// gc) is no root, and left out.
pub(crate) fn roots(store: &Store) -> Result<Vec<(PathBuf, Result<Root, String>)>> {
    let mut out = Vec::new();
    let tags_dir = layout::ref_group(store.path(), layout::TAGS);
    for file in store.list_refs(layout::TAGS)? {
        let path = tags_dir.join(&file);
        let root = match TagName::from_file_name(&file) {
            None => Err("the file name is not a tag".to_owned()),
            Some(name) => match parse_ref(store, layout::TAGS, &file) {
                Ok(None) => continue,
                Ok(Some(id)) => Ok(Root::Tag(name, id)),
                Err(reason) => Err(reason),
            },
        };
        out.push((path, root));
    }
    let cache_dir = layout::ref_group(store.path(), layout::CACHE_ENTRIES);
    for file in store.list_refs(layout::CACHE_ENTRIES)? {
        let root = match parse_ref(store, layout::CACHE_ENTRIES, &file) {
            Ok(None) => continue,
            Ok(Some(id)) => Ok(Root::Cache(id)),
            Err(reason) => Err(reason),
        };
        out.push((cache_dir.join(&file), root));
    }
    for group in store.pin_groups()? {
        let dir = layout::ref_group(store.path(), &group);
        for file in store.list_refs(&group)? {
            let root = match store.read_ref(&group, &file) {
                Ok(Some(text)) => crate::tree::refs::parse_pins(&text).map(Root::Pinned),
                Ok(None) => continue,
                Err(err) => Err(err.to_string()),
            };
            out.push((dir.join(&file), root));
        }
    }
    Ok(out)
}

/// The id ref `kind`/`file` names; `None` if it is gone.
fn parse_ref<T: std::str::FromStr>(
    store: &Store,
    kind: &str,
    file: &str,
) -> Result<Option<T>, String> {
    match store.read_ref(kind, file) {
        Ok(Some(text)) => text
            .parse()
            .map(Some)
            .map_err(|_| format!("'{text}' is not an id")),
        Ok(None) => Ok(None),
        Err(err) => Err(err.to_string()),
    }
}
