//! Pushing a store's image: the export runs only when the registry lacks a
//! blob of the manifest last pushed, so an unchanged re-push moves nothing.

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use layerstore::oci::{
    Compression, ExportOptions, PushOptions, Registry, RegistryOptions, RegistryRef, export_layout,
};
use layerstore::{ImageId, Store, StoreOptions};

use crate::layout::{run, tools_present};
use crate::server::Server;

#[test]
fn unchanged_repush_skips_the_export_and_uploads_nothing() {
    if !tools_present("image push") {
        return;
    }
    let Some(server) = Server::start("image push") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("a"), crate::layout::noise(2 << 20, 3)).unwrap();
    let store = Store::create(dir.path().join("store"), &StoreOptions::default()).unwrap();
    let base = commit(&store, &tree, None);
    std::fs::write(tree.join("b"), b"second layer").unwrap();
    let image = commit(&store, &tree, Some(&base));
    store.flush().unwrap();
    let exports = AtomicU64::new(0);
    // The real export, counted.
    let export = |layout: &std::path::Path| {
        exports.fetch_add(1, Ordering::SeqCst);
        let options = ExportOptions::new(Compression::Gzip);
        export_layout(&store, &image, layout, None, &options).map(|_| ())
    };
    let push = |server: &Server| {
        let reg = Registry::new(
            &server.host,
            &RegistryOptions {
                insecure: true,
                ..RegistryOptions::default()
            },
        )
        .unwrap();
        let dest: RegistryRef = format!("{}/demo/app:v1", server.host).parse().unwrap();
        reg.push_image_with(&store, &image, &dest, &PushOptions::default(), &export)
            .unwrap()
    };
    let first = push(&server);
    assert_eq!(
        (first.blobs_uploaded, first.layers_uploaded),
        (3, 2),
        "{first:?}"
    );
    assert_eq!(exports.load(Ordering::SeqCst), 1);
    let blobs = server.stored_blobs();
    let again = push(&server);
    assert_eq!(
        (again.blobs_uploaded, again.blobs_present),
        (0, 3),
        "{again:?}"
    );
    assert_eq!(again.manifest_digest, first.manifest_digest);
    assert_eq!(
        exports.load(Ordering::SeqCst),
        1,
        "an unchanged re-push exported"
    );
    assert_eq!(server.stored_blobs(), blobs);
    // No tmp/ leftovers.
    assert_eq!(
        std::fs::read_dir(store.path().join("tmp")).unwrap().count(),
        0
    );

    // A registry that lost the blobs: the export runs again, everything moves.
    drop(server);
    let Some(fresh) = Server::start("image push") else {
        return;
    };
    let third = push(&fresh);
    assert_eq!(third.blobs_uploaded, 3, "{third:?}");
    assert_eq!(exports.load(Ordering::SeqCst), 2);
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

    let reg = Registry::new(
        &server.host,
        &RegistryOptions {
            insecure: true,
            ..RegistryOptions::default()
        },
    )
    .unwrap();
    let base_ref: RegistryRef = format!("{}/demo/app:base", server.host).parse().unwrap();
    let child_ref: RegistryRef = format!("{}/demo/app:v1", server.host).parse().unwrap();
    let first = reg
        .push_image(&src, &base, &base_ref, &PushOptions::default())
        .unwrap();
    assert_eq!(
        (first.layers_uploaded, first.blobs_uploaded),
        (1, 2),
        "{first:?}"
    );
    let pushed = reg
        .push_image(&src, &child, &child_ref, &PushOptions::default())
        .unwrap();
    assert_eq!(
        (pushed.layers_uploaded, pushed.blobs_present),
        (1, 1),
        "the base layer was there: {pushed:?}"
    );
    // A second push uploads no layer blob; the registry's storage agrees.
    let blobs = server.stored_blobs();
    let again = reg
        .push_image(&src, &child, &child_ref, &PushOptions::default())
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
    let (id, report) = reg
        .pull_image(&fresh, &child_ref, Some(&tag), &|_| {})
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
    let (got_base, _) = reg.pull_image(&third, &base_ref, None, &|_| {}).unwrap();
    assert_eq!(
        third.image(&got_base).unwrap().layers(),
        src.image(&base).unwrap().layers()
    );
    let (got, report) = reg.pull_image(&third, &child_ref, None, &|_| {}).unwrap();
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
