//! Pushing a store's image: the export runs only when the registry lacks a
//! blob of the manifest last pushed, so an unchanged re-push moves nothing.

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use layerstore::oci::{PushOptions, Registry, RegistryOptions, RegistryRef};
use layerstore::{ImageId, Store, StoreOptions};

use crate::layout::{run, tools_present, umoci_layout};
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
    let source = umoci_layout(dir.path());
    let store = Store::create(dir.path().join("store"), &StoreOptions::default()).unwrap();
    let image = ImageId::of(b"stands for the image the export writes");
    let exports = AtomicU64::new(0);
    // Stands in for the OCI export of the image: skopeo writes the umoci
    // image into the layout as its only manifest.
    let export = |layout: &std::path::Path| {
        exports.fetch_add(1, Ordering::SeqCst);
        run(Command::new("skopeo")
            .arg("copy")
            .arg(format!("oci:{}:child", source.display()))
            .arg(format!("oci:{}:latest", layout.display())));
        Ok(())
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
