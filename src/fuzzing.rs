//! Entry points for the fuzz targets in `fuzz/`: each feeds raw bytes to one
//! reader of on-disk data. Not part of the API; hidden from the docs, and
//! compiled only with the test-only feature `fuzzing`.
//!
//! Each function must return (never panic, never allocate without bound)
//! whatever the input. Each returns whether the reader accepted the input
//! (it parsed or decoded), so the replay of the seeds can tell a seed that
//! still exercises the reader from one a format change left stale.

pub use crate::store::fuzzing::{config, frame, index, pack};

/// Decodes a snapshot; what decodes re-encodes to the same bytes (one tree,
/// one encoding, one id).
#[must_use]
pub fn snapshot(bytes: &[u8]) -> bool {
    let decoded = crate::Snapshot::decode(bytes);
    if let Ok(snapshot) = &decoded {
        assert!(
            snapshot.encode() == bytes,
            "snapshot re-encodes differently"
        );
        // As the store holds it: one object per directory, read back whole.
        let objects: std::collections::HashMap<_, _> =
            crate::tree::directory::encode_tree(snapshot)
                .into_iter()
                .collect();
        let root = crate::ChunkId::from(snapshot.id());
        let load = |id: &crate::ChunkId| crate::tree::directory::Directory::decode(&objects[id]);
        let again = load(&root).and_then(|dir| crate::tree::directory::assemble(dir, &load));
        assert!(
            again.as_ref().ok() == Some(snapshot),
            "stored as directories, the snapshot reads back as {again:?}"
        );
    }
    decoded.is_ok()
}

/// Decodes a directory object; what decodes re-encodes to the same bytes.
/// Read as a tree whose subdirectories are all the empty directory, it
/// assembles to a snapshot or an error; and when the subdirectories it names
/// are that empty directory, the snapshot stores under this object's id.
#[must_use]
pub fn directory(bytes: &[u8]) -> bool {
    use crate::tree::codec::{ObjectKind, encode};
    use crate::tree::directory::{self, ChildNode, Directory};
    let Ok(dir) = Directory::decode(bytes) else {
        return false;
    };
    assert!(
        encode(ObjectKind::Directory, &dir) == bytes,
        "directory re-encodes differently"
    );
    let empty = Directory {
        meta: crate::Metadata::default(),
        children: Vec::new(),
    };
    let empty_id = crate::ChunkId::of(&encode(ObjectKind::Directory, &empty));
    let only_empty = dir
        .children
        .iter()
        .all(|c| !matches!(c.node, ChildNode::Dir(id, _) if id != *empty_id.as_bytes()));
    let load = |_: &crate::ChunkId| Ok(empty.clone());
    if let Ok(tree) = directory::assemble(dir, &load)
        && only_empty
    {
        assert!(
            *tree.id().as_bytes() == *crate::ChunkId::of(bytes).as_bytes(),
            "the directory's tree stores under another id"
        );
    }
    true
}

/// Decodes a layer, and a stored layer object; what decodes re-encodes to
/// the same bytes, and a stored object's id is the layer's.
#[must_use]
pub fn layer(bytes: &[u8]) -> bool {
    let decoded = crate::Layer::decode(bytes);
    if let Ok(layer) = &decoded {
        assert!(layer.encode() == bytes, "layer re-encodes differently");
    }
    let stored = crate::tree::layer::decode_stored(bytes);
    match stored {
        Ok(crate::tree::layer::StoredLayer::Flat(layer)) => {
            assert!(
                layer.id() == crate::LayerId::of(bytes),
                "a stored layer has another id"
            );
        }
        Ok(crate::tree::layer::StoredLayer::OfTree(tree)) => {
            assert!(
                crate::tree::layer::encode_of_tree(&tree) == bytes,
                "a layer of a tree re-encodes differently"
            );
        }
        Err(_) => return decoded.is_ok(),
    }
    true
}

/// Decodes an image; what decodes re-encodes to the same bytes.
#[must_use]
pub fn image(bytes: &[u8]) -> bool {
    let Ok(image) = crate::Image::decode(bytes) else {
        return false;
    };
    assert!(image.encode() == bytes, "image re-encodes differently");
    true
}

/// Parses a Containerfile: an error or instructions, never a panic; every
/// instruction parsed has a normalised form that starts with its keyword,
/// and parsing is deterministic.
#[must_use]
pub fn containerfile(bytes: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return false;
    };
    let parsed = crate::build::containerfile::parse(text, "Containerfile");
    if let Ok(instructions) = &parsed {
        for ins in instructions {
            let normal = ins.normalised();
            assert!(
                normal
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_uppercase()),
                "normalised form without its keyword: {normal:?}"
            );
            assert!(ins.line >= 1, "line 0");
        }
    }
    let again = crate::build::containerfile::parse(text, "Containerfile");
    assert!(
        format!("{parsed:?}") == format!("{again:?}"),
        "parsing is not deterministic"
    );
    parsed.is_ok()
}

pub use model::store_model;

/// The model-based target: a store and a plain in-memory model side by side.
mod model {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    use crate::{
        Entry, EntryKind, GcOptions, History, ImageId, Metadata, Snapshot, Store, StoreOptions,
        TagName, TreePath,
    };

    /// Files by name.
    type Files = BTreeMap<String, Vec<u8>>;

    /// Bytes of the input, read one at a time (zeros once it runs out).
    struct Input<'a>(&'a [u8]);

    impl Input<'_> {
        fn byte(&mut self) -> u8 {
            let (first, rest) = self.0.split_first().unwrap_or((&0, &[]));
            self.0 = rest;
            *first
        }

        fn below(&mut self, n: usize) -> usize {
            usize::from(self.byte()) % n.max(1)
        }
    }

    /// Content from two bytes of input: a length (up to ~300 KB, so large
    /// chunks, small grouped ones and several frames all occur) and a seed;
    /// text-like when the seed is even, so frames compress.
    fn content(input: &mut Input<'_>) -> Vec<u8> {
        let shape = input.byte();
        let seed = input.byte();
        let len = match shape % 4 {
            0 => usize::from(shape),
            1 => usize::from(shape) * 97,
            2 => usize::from(shape) * 1201,
            _ => 20_000 + usize::from(shape) * 1100,
        };
        let mut out = vec![0u8; len];
        blake3::Hasher::new()
            .update(&[seed, shape])
            .finalize_xof()
            .fill(&mut out);
        if seed.is_multiple_of(2) {
            for b in &mut out {
                *b = b"ab \n"[usize::from(*b % 4)];
            }
        }
        out
    }

    /// A fresh directory for the store: in `/dev/shm` when there is one (an
    /// fsync there costs nothing), else the system's temporary directory.
    fn scratch_dir() -> PathBuf {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let base = Path::new("/dev/shm");
        let base = if base.is_dir() {
            base.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        base.join(format!(
            "layerstore-fuzz-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ))
    }

    /// Removes the directory when dropped (also when a check panics).
    struct Cleanup(PathBuf);

    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn read_files(store: &Store, id: &ImageId) -> crate::Result<Files> {
        let tree = store.image_tree(id)?;
        let mut out = Files::new();
        for entry in tree.entries() {
            if let EntryKind::File { chunks, .. } = &entry.kind {
                out.insert(entry.path.to_string(), store.read_all(chunks)?);
            }
        }
        Ok(out)
    }

    fn snapshot_of(store: &Store, files: &Files) -> Snapshot {
        let mut entries = vec![Entry::dir(TreePath::ROOT, Metadata::default())];
        for (name, bytes) in files {
            let chunks = store.put_bytes(bytes).expect("put");
            let path = TreePath::new(name.as_bytes()).expect("a valid name");
            entries.push(Entry::file(path, chunks, Metadata::new(0o644)));
        }
        Snapshot::from_entries(entries).expect("a valid tree")
    }

    /// The tags of the model: tag → its image and the image's files.
    type Tags = BTreeMap<&'static str, (ImageId, Files)>;

    /// Stores an image of some new files on a tagged parent or none, some of
    /// the parent's files removed; returns it and its files.
    fn commit(store: &Store, input: &mut Input<'_>, tags: &Tags) -> (ImageId, Files) {
        let parent = if input.byte().is_multiple_of(2) {
            tags.get(TAGS[input.below(TAGS.len())]).cloned()
        } else {
            None
        };
        let (parent_id, mut files) = match parent {
            Some((id, files)) => (Some(id), files),
            None => (None, Files::new()),
        };
        let base = snapshot_of(store, &files);
        for _ in 0..input.below(3) {
            let at = input.below(files.len());
            if let Some(name) = files.keys().nth(at).cloned() {
                files.remove(&name);
            }
        }
        for _ in 0..=input.below(3) {
            let name = format!("f{}", input.below(8));
            files.insert(name, content(input));
        }
        let tree = snapshot_of(store, &files);
        let layer = base.diff(&tree);
        let id = store
            .put_child_image(parent_id.as_ref(), &layer, &tree, None, History::default())
            .expect("put_child_image");
        (id, files)
    }

    /// Every tag of the model points at its image, which reads back as its files.
    fn check_tags(store: &Store, tags: &Tags, step: usize) {
        for (tag, (id, files)) in tags {
            let name: TagName = tag.parse().expect("a valid tag");
            assert_eq!(
                store.tag(&name).expect("tag"),
                Some(*id),
                "step {step}: {tag}"
            );
            let read = read_files(store, id)
                .unwrap_or_else(|e| panic!("step {step}: {tag} does not read back: {e}"));
            assert!(read == *files, "step {step}: {tag} reads back differently");
        }
    }

    const TAGS: [&str; 4] = ["a", "b:1", "reg.example/c:x", "d"];

    /// Runs the operations the input encodes against a store and a model: a
    /// map from tag to the files of its image, and the images made since the
    /// last gc (which may be tagged later). After each operation every tagged
    /// image must read back as the model says.
    ///
    /// Operations (first byte mod 8): put bytes and read them back; commit
    /// an image of some new files on a tagged parent or none (with
    /// `put_child_image`), removing some of the parent's files; tag an image
    /// made earlier; untag; gc; flush; reopen the store.
    ///
    /// # Panics
    /// When the store disagrees with the model: that is a bug.
    pub fn store_model(bytes: &[u8]) {
        let mut input = Input(bytes.get(..512).unwrap_or(bytes));
        let dir = scratch_dir();
        let _cleanup = Cleanup(dir.clone());
        let mut store = Store::create(&dir, &StoreOptions::default()).expect("create");
        let mut tags = Tags::new();
        let mut made: Vec<(ImageId, Files)> = Vec::new();
        for step in 0..24 {
            if input.0.is_empty() {
                break;
            }
            match input.byte() % 8 {
                0 => {
                    let data = content(&mut input);
                    let list = store.put_bytes(&data).expect("put");
                    assert!(
                        store.read_all(&list).expect("read") == data,
                        "step {step}: put"
                    );
                }
                1 | 2 => {
                    let (id, files) = commit(&store, &mut input, &tags);
                    let read = read_files(&store, &id).expect("read the new image");
                    assert!(
                        read == files,
                        "step {step}: a new image reads back differently"
                    );
                    made.push((id, files));
                }
                3 | 4 => {
                    if !made.is_empty() {
                        let (id, files) = made[input.below(made.len())].clone();
                        let tag = TAGS[input.below(TAGS.len())];
                        let name: TagName = tag.parse().expect("a valid tag");
                        store.set_tag(&name, &id).expect("set_tag");
                        tags.insert(tag, (id, files));
                    }
                }
                5 => {
                    let tag = TAGS[input.below(TAGS.len())];
                    let name: TagName = tag.parse().expect("a valid tag");
                    let existed = store.remove_tag(&name).expect("remove_tag");
                    assert_eq!(existed, tags.remove(tag).is_some(), "step {step}: untag");
                }
                6 => {
                    let options = GcOptions::default()
                        .repack_dead_fraction(f64::from(input.byte() % 3) * 0.25);
                    store.gc(&options).expect("gc");
                    // Untagged images may be gone now.
                    made = tags.values().cloned().collect();
                }
                _ => {
                    if input.byte() % 2 == 0 {
                        store.flush().expect("flush");
                    } else {
                        store.flush().expect("flush before reopening");
                        drop(store);
                        store = Store::open(&dir).expect("reopen");
                    }
                }
            }
            check_tags(&store, &tags, step);
        }
        drop(store);
        let store = Store::open(&dir).expect("reopen at the end");
        let report = store.fsck(&crate::FsckOptions::default()).expect("fsck");
        assert!(report.is_clean(), "fsck: {:?}", report.problems);
        for (tag, (id, files)) in &tags {
            let read = read_files(&store, id).expect("read after reopening");
            assert!(
                read == *files,
                "{tag} reads back differently after reopening"
            );
        }
    }
}

/// Reads an OCI layer tar (over the empty tree, contents hashed, not
/// stored), as import does with data from the network: it must return,
/// never panic; what reads as a layer is a valid one.
#[must_use]
pub fn layer_tar(bytes: &[u8]) -> bool {
    let Ok(layer) = crate::oci::tar::fuzz_read_layer_tar(bytes) else {
        return false;
    };
    let decoded = crate::tree::Layer::decode(&layer.encode());
    assert_eq!(decoded.ok().as_ref(), Some(&layer));
    true
}

/// Reads raw bytes as a whole seekable layer blob: its footer, then the
/// table of contents it locates (as a partial pull reads them from a
/// registry): it must return, never panic.
#[must_use]
pub fn seekable_toc(bytes: &[u8]) -> bool {
    crate::oci::seekable::toc::fuzz_decode(bytes).is_ok()
}
