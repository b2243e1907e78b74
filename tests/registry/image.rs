//! Pushing and pulling a store's images: a push exports a layer only when
//! the registry lacks its blob and no intact earlier export is at hand, so an
//! unchanged re-push moves nothing; a pull fetches only the layers the store
//! lacks, whichever OCI path brought the others (counted from the registry's
//! own access log).

use std::path::Path;
use std::process::Command;

use layerstore::oci::{
    Compression, Exchange, ExportOptions, ImportOptions, PushOptions, PushReport, Registry,
    RegistryOptions, RegistryRef,
};
use layerstore::{ImageId, Store, StoreOptions};

use crate::layout::{run, tools_present};
use crate::server::Server;

fn registry(server: &Server) -> Registry {
    Registry::new(&server.host, &RegistryOptions::default().insecure(true)).unwrap()
}

fn reference(server: &Server, name: &str) -> RegistryRef {
    format!("{}/{name}", server.host).parse().unwrap()
}

/// A store holding `base` (a 2 MiB file) and `image` (base + a small file).
fn two_layer_image(dir: &Path) -> (Store, ImageId) {
    let tree = dir.join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("a"), crate::layout::noise(2 << 20, 3)).unwrap();
    let store = Store::create(dir.join("store"), &StoreOptions::default()).unwrap();
    let base = commit(&store, &tree, None);
    std::fs::write(tree.join("b"), b"second layer").unwrap();
    let image = commit(&store, &tree, Some(&base));
    store.flush().unwrap();
    (store, image)
}

fn counts(r: &PushReport) -> (u64, u64, u64, u64, u64) {
    (
        r.blobs_uploaded,
        r.layers_uploaded,
        r.blobs_present,
        r.layers_exported,
        r.layers_reused,
    )
}

#[test]
fn unchanged_repush_exports_nothing_and_uploads_nothing() {
    let Some(server) = Server::start("image push") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (store, image) = two_layer_image(dir.path());
    let push = |server: &Server| {
        Exchange::new(&store)
            .push(
                &registry(server),
                &image,
                &reference(server, "demo/app:v1"),
                &PushOptions::default(),
            )
            .unwrap()
    };
    // (uploaded, layers uploaded, present, layers exported, layers reused)
    let first = push(&server);
    assert_eq!(counts(&first), (3, 2, 0, 2, 0), "{first:?}");
    let blobs = server.stored_blobs();
    let again = push(&server);
    assert_eq!(counts(&again), (0, 0, 3, 0, 0), "{again:?}");
    assert_eq!(again.manifest_digest, first.manifest_digest);
    assert_eq!(server.stored_blobs(), blobs);
    // No tmp/ leftovers.
    assert_eq!(
        std::fs::read_dir(store.path().join("tmp")).unwrap().count(),
        0
    );

    // A registry that lost the blobs: the push's own files are gone, so the
    // layers are exported again, to the same bytes.
    drop(server);
    let Some(fresh) = Server::start("image push") else {
        return;
    };
    let third = push(&fresh);
    assert_eq!(counts(&third), (3, 2, 0, 2, 0), "{third:?}");
    assert_eq!(third.manifest_digest, first.manifest_digest);
}

#[test]
fn push_reuses_the_blobs_of_an_earlier_export() {
    let Some(server) = Server::start("push after export") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (store, image) = two_layer_image(dir.path());
    let layout = dir.path().join("layout");
    let exported = Exchange::new(&store)
        .export_layout(
            &image,
            &layout,
            None,
            &ExportOptions::new(Compression::ZstdSeekable),
        )
        .unwrap();
    let reg = registry(&server);
    let pushed = Exchange::new(&store)
        .push(
            &reg,
            &image,
            &reference(&server, "demo/app:v1"),
            &PushOptions::default(),
        )
        .unwrap();
    assert_eq!(counts(&pushed), (3, 2, 0, 0, 2), "{pushed:?}");
    assert_eq!(pushed.manifest_digest, exported.digest().to_string());

    // Another repository of the same registry holds nothing: the layers'
    // digests are known without exporting, and the files are reused again.
    let other = Exchange::new(&store)
        .push(
            &reg,
            &image,
            &reference(&server, "demo/other:v1"),
            &PushOptions::default(),
        )
        .unwrap();
    assert_eq!(counts(&other), (3, 2, 0, 0, 2), "{other:?}");

    // An exported blob changed since: it is not taken, the layer is
    // exported again (and the registry gets the right bytes).
    let blobs = layout.join("blobs/sha256");
    for entry in std::fs::read_dir(&blobs).unwrap() {
        let path = entry.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        if bytes.len() > 1 << 20 {
            let last = bytes.len() - 9;
            bytes[last] ^= 0xff;
            std::fs::write(&path, bytes).unwrap();
        }
    }
    drop(server);
    let Some(fresh) = Server::start("push after export") else {
        return;
    };
    let third = Exchange::new(&store)
        .push(
            &registry(&fresh),
            &image,
            &reference(&fresh, "demo/app:v1"),
            &PushOptions::default(),
        )
        .unwrap();
    assert_eq!(counts(&third), (3, 2, 0, 1, 1), "{third:?}");
    assert_eq!(third.manifest_digest, pushed.manifest_digest);
}

fn commit(store: &Store, dir: &std::path::Path, parent: Option<&ImageId>) -> ImageId {
    let tree = store
        .scan(dir, &layerstore::ScanOptions::default())
        .unwrap()
        .snapshot;
    let lower = match parent {
        Some(p) => store.image_tree(p).unwrap(),
        None => layerstore::Snapshot::empty(),
    };
    store
        .put_child_image(
            parent,
            &lower.diff(&tree),
            &tree,
            None,
            layerstore::History::default(),
        )
        .unwrap()
}

fn checkout(store: &Store, id: &ImageId, dest: &std::path::Path) -> Vec<String> {
    let tree = store.image_tree(id).unwrap();
    store
        .checkout(&tree, dest, &layerstore::CheckoutOptions::default())
        .unwrap();
    crate::layout::describe(dest)
}

#[test]
fn store_images_push_pull_and_read_back_with_skopeo_and_umoci() {
    if !tools_present("image push and pull") {
        return;
    }
    let Some(server) = Server::start("image push and pull") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let tree = root.join("tree");
    std::fs::create_dir_all(tree.join("usr/lib")).unwrap();
    std::fs::write(
        tree.join("usr/lib/base.so"),
        crate::layout::noise(3 << 20, 5),
    )
    .unwrap();
    std::fs::write(tree.join("etc-motd"), b"hello\n").unwrap();
    std::os::unix::fs::symlink("usr/lib/base.so", tree.join("link")).unwrap();
    let src = Store::create(root.join("src"), &StoreOptions::default()).unwrap();
    let base = commit(&src, &tree, None);
    std::fs::write(tree.join("app.bin"), crate::layout::noise(1 << 20, 6)).unwrap();
    std::fs::remove_file(tree.join("etc-motd")).unwrap();
    let child = commit(&src, &tree, Some(&base));
    src.flush().unwrap();

    let reg = Registry::new(&server.host, &RegistryOptions::default().insecure(true)).unwrap();
    // gzip: Debian's umoci (0.4.7) reads no zstd layer at all.
    let gzip = PushOptions::default().compression(Compression::Gzip);
    let base_ref: RegistryRef = format!("{}/demo/app:base", server.host).parse().unwrap();
    let child_ref: RegistryRef = format!("{}/demo/app:v1", server.host).parse().unwrap();
    let first = Exchange::new(&src)
        .push(&reg, &base, &base_ref, &gzip)
        .unwrap();
    assert_eq!(
        (first.layers_uploaded, first.blobs_uploaded),
        (1, 2),
        "{first:?}"
    );
    let pushed = Exchange::new(&src)
        .push(&reg, &child, &child_ref, &gzip)
        .unwrap();
    assert_eq!(
        (pushed.layers_uploaded, pushed.blobs_present),
        (1, 1),
        "the base layer was there: {pushed:?}"
    );
    // A second push uploads no layer blob; the registry's storage agrees.
    let blobs = server.stored_blobs();
    let again = Exchange::new(&src)
        .push(&reg, &child, &child_ref, &gzip)
        .unwrap();
    assert_eq!(
        (again.blobs_uploaded, again.layers_uploaded),
        (0, 0),
        "{again:?}"
    );
    assert_eq!(server.stored_blobs(), blobs);

    // Pull into a fresh store: the same tree checks out.
    let expected = checkout(&src, &child, &root.join("out-src"));
    assert!(expected.iter().any(|l| l.starts_with("app.bin ")));
    let fresh = Store::create(root.join("fresh"), &StoreOptions::default()).unwrap();
    let tag: layerstore::TagName = "pulled".parse().unwrap();
    let (id, report) = Exchange::new(&fresh)
        .pull(&reg, &child_ref, Some(&tag), &|_| {})
        .unwrap();
    assert_eq!(
        (report.blobs_fetched, report.layers_skipped),
        (3, 0),
        "{report:?}"
    );
    assert_eq!(fresh.tag(&tag).unwrap(), Some(id));
    assert_eq!(checkout(&fresh, &id, &root.join("out-fresh")), expected);

    // skopeo copies it out of the registry, umoci unpacks the same tree.
    let copied = root.join("copied");
    run(Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{child_ref}"))
        .arg(format!("oci:{}:v1", copied.display())));
    let unpacked = crate::layout::unpack(&format!("{}:v1", copied.display()), &root.join("u"));
    assert_eq!(crate::layout::describe(&unpacked), expected);

    // A store that has the base pulls the child fetching only its own layer.
    let third = Store::create(root.join("third"), &StoreOptions::default()).unwrap();
    let (got_base, _) = Exchange::new(&third)
        .pull(&reg, &base_ref, None, &|_| {})
        .unwrap();
    assert_eq!(
        third.image(&got_base).unwrap().layers(),
        src.image(&base).unwrap().layers()
    );
    let (got, report) = Exchange::new(&third)
        .pull(&reg, &child_ref, None, &|_| {})
        .unwrap();
    assert_eq!(
        (report.blobs_fetched, report.layers_skipped),
        (2, 1),
        "{report:?}"
    );
    assert_eq!(checkout(&third, &got, &root.join("out-third")), expected);
    assert!(
        third
            .fsck(&layerstore::FsckOptions::default())
            .unwrap()
            .is_clean()
    );
}

/// What the registry served for one pull: the blob GETs in its access log.
fn pull_counting(
    server: &Server,
    store: &Store,
    src: &RegistryRef,
) -> (ImageId, layerstore::oci::PullReport, Vec<String>) {
    let before = server.blob_gets().len();
    let (id, report) = Exchange::new(store)
        .pull(&registry(server), src, None, &|_| {})
        .unwrap();
    (id, report, server.blob_gets()[before..].to_vec())
}

#[test]
fn pull_fetches_only_the_layers_the_store_lacks_whichever_oci_path_brought_the_others() {
    let Some(server) = Server::start("pull of an image whose base is present") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // `base`: a big file; `child`: base plus a file, from a copy of the base
    // tree (cp -a keeps the times, so every store that commits the base tree
    // gets the same layer).
    let base_tree = root.join("base-tree");
    std::fs::create_dir_all(base_tree.join("usr/lib")).unwrap();
    std::fs::write(
        base_tree.join("usr/lib/base.so"),
        crate::layout::noise(3 << 20, 7),
    )
    .unwrap();
    let child_tree = root.join("child-tree");
    run(Command::new("cp")
        .arg("-a")
        .arg(&base_tree)
        .arg(&child_tree));
    std::fs::write(child_tree.join("app.bin"), crate::layout::noise(1 << 20, 8)).unwrap();
    let src = Store::create(root.join("src"), &StoreOptions::default()).unwrap();
    let base = commit(&src, &base_tree, None);
    let child = commit(&src, &child_tree, Some(&base));
    src.flush().unwrap();
    let reg = registry(&server);
    // Whole blobs (seekable ones are pulled a piece at a time: seekable.rs).
    let gzip = PushOptions::default().compression(Compression::Gzip);
    let (base_ref, child_ref) = (
        reference(&server, "demo/app:base"),
        reference(&server, "demo/app:v1"),
    );
    for (image, dest) in [(&base, &base_ref), (&child, &child_ref)] {
        Exchange::new(&src).push(&reg, image, dest, &gzip).unwrap();
    }
    let layers = src.image(&child).unwrap().layers().to_vec();
    let expected = checkout(&src, &child, &root.join("out-src"));

    // A fresh store fetches the config and both layers.
    let fresh = Store::create(root.join("fresh"), &StoreOptions::default()).unwrap();
    let (id, report, gets) = pull_counting(&server, &fresh, &child_ref);
    assert_eq!(
        (report.blobs_fetched, report.layers_skipped),
        (3, 0),
        "{report:?}"
    );
    assert_eq!(gets.len(), 3, "{gets:?}");
    assert_eq!(checkout(&fresh, &id, &root.join("out-fresh")), expected);
    let all_gets = gets;

    let holders = stores_holding(&src, &base, &base_tree, &server, root);
    for (how, store) in &holders {
        let (id, report, gets) = pull_counting(&server, store, &child_ref);
        assert_eq!(
            (report.blobs_fetched, report.layers_skipped),
            (2, 1),
            "{how}: {report:?}"
        );
        // The registry served the config and the new layer, nothing else
        // (a fresh pull got the config, then the layers bottom first).
        assert_eq!(
            gets,
            [all_gets[0].clone(), all_gets[2].clone()],
            "{how}: the registry served {gets:?}"
        );
        assert_eq!(store.image(&id).unwrap().layers(), &layers[..], "{how}");
        let out = root.join(format!("out-{}", how.replace(' ', "-")));
        assert_eq!(checkout(store, &id, &out), expected, "{how}");
        assert!(
            store
                .fsck(&layerstore::FsckOptions::default())
                .unwrap()
                .is_clean(),
            "{how}"
        );
    }

    // A store that pushed the child itself fetches only the config.
    let (_, report, gets) = pull_counting(&server, &src, &child_ref);
    assert_eq!(
        (report.blobs_fetched, report.layers_skipped),
        (1, 2),
        "{report:?}"
    );
    assert_eq!(gets, vec![all_gets[0].clone()]);
}

/// Stores that hold image `base` of `src` (committed from `base_tree`), each
/// from another OCI path, named by it.
fn stores_holding(
    src: &Store,
    base: &ImageId,
    base_tree: &Path,
    server: &Server,
    root: &Path,
) -> Vec<(&'static str, Store)> {
    let reg = registry(server);
    let new = |name: &str| Store::create(root.join(name), &StoreOptions::default()).unwrap();
    let base_layout = root.join("base-layout");
    Exchange::new(src)
        .export_layout(base, &base_layout, None, &ExportOptions::default())
        .unwrap();
    let imported = new("imported");
    Exchange::new(&imported)
        .import_layout(&base_layout, None, &ImportOptions::default())
        .unwrap();
    let pulled = new("pulled");
    Exchange::new(&pulled)
        .pull(&reg, &reference(server, "demo/app:base"), None, &|_| {})
        .unwrap();
    let exported = new("exported");
    let own_base = commit(&exported, base_tree, None);
    Exchange::new(&exported)
        .export_layout(
            &own_base,
            &root.join("own-layout"),
            None,
            &ExportOptions::default(),
        )
        .unwrap();
    let pushed = new("pushed");
    let own_base = commit(&pushed, base_tree, None);
    Exchange::new(&pushed)
        .push(
            &reg,
            &own_base,
            &reference(server, "demo/elsewhere:base"),
            &PushOptions::default().compression(Compression::Gzip),
        )
        .unwrap();
    vec![
        ("imported from a layout", imported),
        ("pulled", pulled),
        ("exported", exported),
        ("pushed", pushed),
    ]
}
