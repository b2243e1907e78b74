//! Export to an OCI image layout and import back: same image, same tree,
//! byte-identical blobs on every export.

use std::collections::BTreeMap;
use std::path::Path;

use layerstore::oci::oci_spec;
use layerstore::oci::{Compression, Exchange, ExportOptions, ImportOptions};
use layerstore::{CheckoutOptions, Error};

use crate::{make_image, new_store, tree};

fn files_of(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        out.insert(
            e.file_name().to_string_lossy().into_owned(),
            std::fs::read(e.path()).unwrap(),
        );
    }
    out.insert(
        "index.json".into(),
        std::fs::read(dir.join("index.json")).unwrap(),
    );
    out
}

#[test]
fn export_then_import_gives_the_same_image_and_tree() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path(), "a");
    let id = make_image(&store, dir.path());
    for (i, c) in [Compression::Gzip, Compression::Zstd, Compression::None]
        .into_iter()
        .enumerate()
    {
        let layout = dir.path().join(format!("layout-{i}"));
        let desc = Exchange::new(&store)
            .export_layout(&id, &layout, Some("img"), &ExportOptions::new(c))
            .unwrap();
        assert!(desc.digest().to_string().starts_with("sha256:"));
        let other = new_store(dir.path(), &format!("b{i}"));
        let back = Exchange::new(&other)
            .import_layout(&layout, Some("img"), &ImportOptions::default())
            .unwrap();
        assert_eq!(back, id, "{c:?}: the imported image has another id");
        assert_eq!(store.image(&id).unwrap(), other.image(&back).unwrap());
        // And the trees check out the same, attribute by attribute.
        let (a, b) = (
            dir.path().join(format!("co-a{i}")),
            dir.path().join(format!("co-b{i}")),
        );
        let opts = CheckoutOptions::default();
        store
            .checkout(&store.image_tree(&id).unwrap(), &a, &opts)
            .unwrap();
        other
            .checkout(&other.image_tree(&back).unwrap(), &b, &opts)
            .unwrap();
        tree::assert_same(&tree::walk(&b), &tree::walk(&a));
        tree::make_removable(&a);
        tree::make_removable(&b);
    }
}

#[test]
fn export_is_reproducible_whatever_the_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path(), "a");
    let id = make_image(&store, dir.path());
    for c in [Compression::Gzip, Compression::Zstd] {
        let opts = ExportOptions::new(c);
        let one = dir.path().join(format!("one-{c:?}"));
        let two = dir.path().join(format!("two-{c:?}"));
        Exchange::new(&store)
            .export_layout(&id, &one, None, &opts)
            .unwrap();
        // Without the store's record of the first export, the second one
        // compresses every layer again instead of linking the first's blobs.
        std::fs::remove_dir_all(store.path().join("cache/oci")).unwrap();
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| {
                Exchange::new(&store)
                    .export_layout(&id, &two, None, &opts)
                    .unwrap()
            });
        let (a, b) = (files_of(&one), files_of(&two));
        assert_eq!(a.len(), 3 + 3, "{c:?}: 3 layers, config, manifest, index");
        assert_eq!(a, b, "{c:?}: two exports differ");
    }
}

#[test]
fn a_re_export_takes_the_earlier_blobs_only_while_they_are_intact() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path(), "a");
    let id = make_image(&store, dir.path());
    let opts = ExportOptions::new(Compression::Gzip);
    let (one, two, three) = (
        dir.path().join("one"),
        dir.path().join("two"),
        dir.path().join("three"),
    );
    Exchange::new(&store)
        .export_layout(&id, &one, None, &opts)
        .unwrap();
    Exchange::new(&store)
        .export_layout(&id, &two, None, &opts)
        .unwrap();
    let first = files_of(&one);
    assert_eq!(files_of(&two), first);
    // A blob of the first layout changed in place: the next export does not
    // take it, and still writes the right bytes.
    let (name, _) = first
        .iter()
        .filter(|(n, _)| *n != "index.json")
        .max_by_key(|(_, b)| b.len())
        .unwrap();
    let damaged = one.join("blobs/sha256").join(name);
    let mut bytes = std::fs::read(&damaged).unwrap();
    let last = bytes.len() - 9;
    bytes[last] ^= 0xff;
    std::fs::write(&damaged, &bytes).unwrap();
    Exchange::new(&store)
        .export_layout(&id, &three, None, &opts)
        .unwrap();
    assert_eq!(files_of(&three), first);
    // The second layout's copy was its own: unchanged.
    assert_eq!(files_of(&two), first);
}

#[test]
fn a_layout_gains_images_and_import_needs_a_ref_when_there_are_several() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path(), "a");
    let id = make_image(&store, dir.path());
    let layout = dir.path().join("layout");
    let opts = ExportOptions::new(Compression::Zstd);
    Exchange::new(&store)
        .export_layout(&id, &layout, Some("first"), &opts)
        .unwrap();
    Exchange::new(&store)
        .export_layout(&id, &layout, Some("second"), &ExportOptions::default())
        .unwrap();
    // Re-exporting under a name replaces that name's entry.
    Exchange::new(&store)
        .export_layout(&id, &layout, Some("second"), &ExportOptions::default())
        .unwrap();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
    let other = new_store(dir.path(), "b");
    let err = Exchange::new(&other)
        .import_layout(&layout, None, &ImportOptions::default())
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Oci { .. }), "{err:?}");
    assert!(text.contains("first") && text.contains("second"), "{text}");
    let err =
        Exchange::new(&other).import_layout(&layout, Some("third"), &ImportOptions::default());
    assert!(
        err.unwrap_err()
            .to_string()
            .contains("no manifest named 'third'")
    );
    for name in ["first", "second"] {
        let back = Exchange::new(&other)
            .import_layout(&layout, Some(name), &ImportOptions::default())
            .unwrap();
        assert_eq!(back, id);
    }
}

#[test]
fn chain_ids_follow_the_spec() {
    let ids = vec![
        layerstore::oci::sha256_digest(b"one"),
        layerstore::oci::sha256_digest(b"two"),
        layerstore::oci::sha256_digest(b"three"),
    ];
    let chain = layerstore::oci::chain_ids(&ids);
    assert_eq!(chain[0], ids[0]);
    let c1 = layerstore::oci::sha256_digest(format!("{} {}", ids[0], ids[1]).as_bytes());
    assert_eq!(chain[1], c1);
    let c2 = layerstore::oci::sha256_digest(format!("{c1} {}", ids[2]).as_bytes());
    assert_eq!(chain[2], c2);
}

#[test]
fn a_docker_save_archive_imports_to_the_same_image() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path(), "a");
    let id = make_image(&store, dir.path());
    let blobs = dir.path().join("blobs");
    let export = Exchange::new(&store)
        .export_blobs(&id, &blobs, &ExportOptions::new(Compression::None))
        .unwrap();
    // The classic `docker save` layout: <config hex>.json, <id>/layer.tar,
    // manifest.json.
    let hex = |d: &oci_spec::image::Descriptor| d.digest().to_string()[7..].to_owned();
    let config_name = format!("{}.json", hex(&export.config.descriptor));
    let layer_names: Vec<String> = export
        .layers
        .iter()
        .map(|l| format!("{}/layer.tar", hex(&l.descriptor)))
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": config_name,
        "RepoTags": ["example:1"],
        "Layers": layer_names,
    }]))
    .unwrap();
    let archive = dir.path().join("saved.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&archive).unwrap());
    let mut add = |name: &str, bytes: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, bytes).unwrap();
    };
    add(&config_name, &std::fs::read(&export.config.path).unwrap());
    for (name, l) in layer_names.iter().zip(&export.layers) {
        add(name, &std::fs::read(&l.path).unwrap());
    }
    add("manifest.json", &manifest);
    b.into_inner().unwrap();
    let other = new_store(dir.path(), "b");
    let opts = ImportOptions::default();
    assert_eq!(
        Exchange::new(&other)
            .import_docker_archive(&archive, None, &opts)
            .unwrap(),
        id
    );
    assert_eq!(
        Exchange::new(&other)
            .import_docker_archive(&archive, Some("example:1"), &opts)
            .unwrap(),
        id
    );
    let err = Exchange::new(&other)
        .import_docker_archive(&archive, Some("nope:1"), &opts)
        .unwrap_err();
    assert!(
        err.to_string().contains("no image tagged 'nope:1'"),
        "{err}"
    );
}
