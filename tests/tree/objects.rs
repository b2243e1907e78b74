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
