//! Layers, snapshots and images stored as objects; images found by tag, id and
//! prefix.

use layerstore::{
    Entry, Error, History, Image, ImageConfig, ImageId, Layer, Metadata, Snapshot, Store,
    StoreOptions, TreePath,
};

fn tree(store: &Store, files: &[(&str, &[u8])]) -> Snapshot {
    let mut entries = vec![Entry::dir(TreePath::ROOT, Metadata::default())];
    for (path, content) in files {
        let chunks = store.put_bytes(content).unwrap();
        entries.push(Entry::file(
            TreePath::new(*path).unwrap(),
            chunks,
            Metadata::new(0o644),
        ));
    }
    Snapshot::from_entries(entries).unwrap()
}

#[test]
fn images_round_trip_and_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path().join("s"), &StoreOptions::default()).unwrap();
    let base = tree(&store, &[("a", b"one")]);
    let child = tree(&store, &[("a", b"one"), ("b", b"two")]);
    let history = |s: &str| History {
        created_by: s.into(),
        ..History::default()
    };
    let base_layer = Snapshot::empty().diff(&base);
    let base_id = store
        .put_child_image(
            None,
            &base_layer,
            &base,
            Some(ImageConfig::default()),
            history("base"),
        )
        .unwrap();
    let child_layer = base.diff(&child);
    let child_id = store
        .put_child_image(Some(&base_id), &child_layer, &child, None, history("child"))
        .unwrap();
    store.flush().unwrap();
    drop(store);

    let store = Store::open(dir.path().join("s")).unwrap();
    let image = store.image(&child_id).unwrap();
    assert_eq!(image.id(), child_id);
    assert_eq!(image.layers().len(), 2);
    assert_eq!(store.layer(&image.layers()[1]).unwrap(), child_layer);
    assert_eq!(store.image_tree(&child_id).unwrap(), child);
    let layers: Vec<Layer> = image
        .layers()
        .iter()
        .map(|l| store.layer(l).unwrap())
        .collect();
    assert_eq!(layerstore::flatten(&layers).unwrap(), child);

    store
        .set_tag(&"app:v1".parse().unwrap(), &child_id)
        .unwrap();
    assert_eq!(store.resolve_image("app:v1").unwrap(), child_id);
    assert_eq!(
        store.resolve_image(&child_id.to_string()).unwrap(),
        child_id
    );
    assert_eq!(
        store.resolve_image(&child_id.to_hex()[..12]).unwrap(),
        child_id
    );
    assert_eq!(
        store.resolve_image(&base_id.to_hex()[..16]).unwrap(),
        base_id
    );
    for missing in ["app:v2", "nope", "blake3:0123456789ab", "Bad Name"] {
        let err = store.resolve_image(missing).unwrap_err();
        assert!(
            matches!(err, Error::ImageNotFound { .. }),
            "{missing}: {err}"
        );
        assert!(err.to_string().contains(missing), "{err}");
    }
    // A layer's id prefix is not an image.
    let layer_prefix = &image.layers()[0].to_hex()[..14];
    assert!(store.resolve_image(layer_prefix).is_err());
}

#[test]
fn an_image_whose_layer_is_missing_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path().join("s"), &StoreOptions::default()).unwrap();
    let rootfs = store.put_snapshot(&Snapshot::empty()).unwrap();
    let image = Image::new(
        vec![layerstore::LayerId::of(b"never stored")],
        rootfs,
        ImageConfig::default(),
        vec![History::default()],
    )
    .unwrap();
    let err = store.put_image(&image).unwrap_err();
    assert!(
        matches!(err, Error::ObjectNotFound { kind: "layer", .. }),
        "{err}"
    );
    let err = store.image(&ImageId::of(b"nothing")).unwrap_err();
    assert!(
        matches!(err, Error::ObjectNotFound { kind: "image", .. }),
        "{err}"
    );
}

/// A layer that makes a whole tree (a commit without a parent) is stored as
/// the tree's id. When only a child image is kept, gc must keep the base
/// layer's tree (no image has it as its own tree any more), sync must move
/// it, and both stores read every layer back whole.
#[test]
fn a_base_layer_keeps_its_tree_through_gc_and_sync() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path().join("s"), &StoreOptions::default()).unwrap();
    let base = tree(&store, &[("a", b"one"), ("b", b"base only")]);
    let child = tree(&store, &[("a", b"one"), ("c", b"two")]);
    let base_layer = Layer::of_tree(base.clone());
    let base_id = store
        .put_child_image(None, &base_layer, &base, None, History::default())
        .unwrap();
    let child_layer = base.diff(&child);
    let child_id = store
        .put_child_image(
            Some(&base_id),
            &child_layer,
            &child,
            None,
            History::default(),
        )
        .unwrap();
    store.set_tag(&"child".parse().unwrap(), &child_id).unwrap();
    // The base image goes (untagged); its layer, and so its tree, stay.
    let every_dead_chunk = layerstore::GcOptions::default().repack_dead_fraction(0.0);
    let report = store.gc(&every_dead_chunk).unwrap();
    assert!(report.chunks_freed > 0, "{report:?}");
    assert!(
        matches!(store.image(&base_id), Err(Error::ObjectNotFound { .. })),
        "the base image was collected"
    );
    let layers = store.image(&child_id).unwrap().layers().to_vec();
    assert_eq!(layers[0], base_layer.id());
    assert_eq!(store.layer(&layers[0]).unwrap(), base_layer);
    assert_eq!(store.layer(&layers[1]).unwrap(), child_layer);
    assert_eq!(
        store.snapshot(&base.id()).unwrap(),
        base,
        "gc kept the base layer's tree"
    );
    let fsck = store.fsck(&layerstore::FsckOptions::default()).unwrap();
    assert!(fsck.problems.is_empty(), "{:?}", fsck.problems);

    let target = Store::create(dir.path().join("t"), &StoreOptions::default()).unwrap();
    store
        .sync_image(&child_id, &target, &layerstore::SyncOptions::default())
        .unwrap();
    assert_eq!(target.layer(&layers[0]).unwrap(), base_layer);
    assert_eq!(target.image_tree(&child_id).unwrap(), child);
    let fsck = target.fsck(&layerstore::FsckOptions::default()).unwrap();
    assert!(fsck.problems.is_empty(), "{:?}", fsck.problems);
}

/// `put_tree_image` (what a commit without a parent uses) makes the image
/// that `put_child_image` of `Layer::of_tree` makes, for any tree: the
/// empty one (whose layer is the empty layer), one under the empty tree's
/// root, and one with a root of its own.
#[test]
fn a_tree_image_is_the_child_image_of_the_whole_tree() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path().join("s"), &StoreOptions::default()).unwrap();
    let default_root = tree(&store, &[("a", b"one"), ("b", b"two")]);
    let mut own = default_root.clone().into_entries();
    own[0] = Entry::dir(TreePath::ROOT, Metadata::new(0o700));
    let own_root = Snapshot::from_sorted(own).unwrap();
    for t in [Snapshot::empty(), default_root, own_root] {
        let history = History {
            created_by: "commit".into(),
            ..History::default()
        };
        let config = ImageConfig::default();
        let expected = store
            .put_child_image(
                None,
                &Layer::of_tree(t.clone()),
                &t,
                Some(config.clone()),
                history.clone(),
            )
            .unwrap();
        let tree_id = store.put_snapshot(&t).unwrap();
        let made = store.put_tree_image(tree_id, config, history).unwrap();
        assert_eq!(made, expected);
        let image = store.image(&made).unwrap();
        assert_eq!(image.layers(), [Layer::of_tree(t.clone()).id()]);
        assert_eq!(store.layer(&image.layers()[0]).unwrap(), Layer::of_tree(t));
    }
    let missing = Snapshot::from_sorted(vec![Entry::dir(TreePath::ROOT, Metadata::new(0o711))])
        .unwrap()
        .id();
    assert!(matches!(
        store.put_tree_image(missing, ImageConfig::default(), History::default()),
        Err(Error::ObjectNotFound {
            kind: "snapshot",
            ..
        })
    ));
}
