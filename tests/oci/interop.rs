//! Interop with the real `skopeo` and `umoci`, both ways: what layerstore
//! exports they read and unpack to the tree `checkout` gives; what umoci
//! makes (whiteouts from a repack included) layerstore imports to the tree
//! umoci unpacks.

use std::path::Path;
use std::process::Command;

use layerstore::CheckoutOptions;
use layerstore::oci::{Compression, Exchange, ExportOptions, ImportOptions};

use crate::{is_root, make_fixture, make_image, new_store, require_tool, tree};

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn umoci(args: &[&str], paths: &[&Path]) -> Vec<u8> {
    let mut cmd = Command::new("umoci");
    cmd.args(args);
    if !is_root() && matches!(args.first(), Some(&"unpack" | &"repack")) {
        cmd.arg("--rootless");
    }
    cmd.args(paths);
    run(&mut cmd)
}

/// umoci unpack gives the rootfs directory the mode and owner of a bundle, not
/// of the image's root entry; compare everything beneath it.
fn without_root(mut t: tree::Tree) -> tree::Tree {
    t.remove(&Vec::new());
    t
}

#[test]
fn a_layerstore_export_is_read_by_skopeo_and_unpacked_by_umoci_to_the_checkout_tree() {
    if !require_tool("skopeo") || !require_tool("umoci") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path(), "store");
    let id = make_image(&store, dir.path());
    let expected = dir.path().join("checkout");
    store
        .checkout(
            &store.image_tree(&id).unwrap(),
            &expected,
            &CheckoutOptions::default(),
        )
        .unwrap();
    let want = tree::walk(&expected);
    for c in [Compression::Gzip, Compression::None, Compression::Zstd] {
        let layout = dir.path().join(format!("layout-{c:?}"));
        Exchange::new(&store)
            .export_layout(&id, &layout, Some("t"), &ExportOptions::new(c))
            .unwrap();
        let reference = format!("oci:{}:t", layout.display());
        let inspect = run(Command::new("skopeo").args(["inspect", &reference]));
        let inspect: serde_json::Value = serde_json::from_slice(&inspect).unwrap();
        let manifest_layers: Vec<String> = {
            let index: serde_json::Value =
                serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
            let digest = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
            let m: serde_json::Value = serde_json::from_slice(
                &std::fs::read(layout.join("blobs/sha256").join(&digest[7..])).unwrap(),
            )
            .unwrap();
            m["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["digest"].as_str().unwrap().to_owned())
                .collect()
        };
        let seen: Vec<String> = inspect["Layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(seen, manifest_layers, "{c:?}: skopeo sees other layers");
        assert_eq!(inspect["Labels"]["org.example"], "yes");
        assert_eq!(inspect["Env"][1], "A=1");
        // skopeo copies it (reading every blob, checking digests).
        let copy = dir.path().join(format!("copy-{c:?}"));
        run(Command::new("skopeo").args([
            "copy",
            &reference,
            &format!("oci:{}:t", copy.display()),
        ]));
        if c == Compression::Zstd {
            continue; // Debian's umoci may predate zstd layers; skopeo read them.
        }
        let bundle = dir.path().join(format!("bundle-{c:?}"));
        umoci(
            &["unpack", "--image", &format!("{}:t", layout.display())],
            &[&bundle],
        );
        tree::assert_same(
            &without_root(tree::walk(&bundle.join("rootfs"))),
            &without_root(want.clone()),
        );
        tree::make_removable(&bundle);
    }
    tree::make_removable(&expected);
}

#[test]
fn an_image_made_by_umoci_imports_to_the_tree_umoci_unpacks() {
    if !require_tool("umoci") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let image = format!("{}:img", layout.display());
    umoci(&["init", "--layout"], &[&layout]);
    umoci(&["new", "--image", &image], &[]);
    let b1 = dir.path().join("b1");
    umoci(&["unpack", "--image", &image], &[&b1]);
    make_fixture(&b1.join("rootfs/data"));
    umoci(&["repack", "--image", &image], &[&b1]);
    // A second layer with deletions: umoci writes whiteouts for them.
    let b2 = dir.path().join("b2");
    umoci(&["unpack", "--image", &image], &[&b2]);
    let root = b2.join("rootfs/data");
    std::fs::remove_dir_all(root.join("gone")).unwrap();
    std::fs::remove_file(root.join("etc/hosts-link")).unwrap();
    std::fs::remove_dir_all(root.join("opaque")).unwrap();
    std::fs::create_dir(root.join("opaque")).unwrap();
    std::fs::write(root.join("opaque/fresh"), b"fresh").unwrap();
    std::fs::write(root.join("etc/hosts"), b"changed\n").unwrap();
    umoci(&["repack", "--image", &image], &[&b2]);
    let b3 = dir.path().join("b3");
    umoci(&["unpack", "--image", &image], &[&b3]);

    let store = new_store(dir.path(), "store");
    let id = Exchange::new(&store)
        .import_layout(&layout, Some("img"), &ImportOptions::default())
        .unwrap();
    let image_obj = store.image(&id).unwrap();
    assert_eq!(image_obj.layers().len(), 2);
    let whiteouts: usize = image_obj
        .layers()
        .iter()
        .map(|l| store.layer(l).unwrap().whiteouts().len())
        .sum();
    assert!(
        whiteouts >= 2,
        "umoci's whiteouts were not read as whiteouts"
    );
    let out = dir.path().join("checkout");
    store
        .checkout(
            &store.image_tree(&id).unwrap(),
            &out,
            &CheckoutOptions::default(),
        )
        .unwrap();
    tree::assert_same(
        &without_root(tree::walk(&out)),
        &without_root(tree::walk(&b3.join("rootfs"))),
    );
    for d in [&b1, &b2, &b3, &out] {
        tree::make_removable(d);
    }
}
