//! Prepare, write, commit, view, remove, and the sharing of layers.

use std::io::ErrorKind;

use layerstore::mount::{CommitOptions, OverlayBackend};
use layerstore::{Error, GcOptions, TagName, TreePath};

use crate::{
    comparable, containers, image_of, new_store, no_cache, require_root, target_options, write_tree,
};

#[test]
fn a_commit_records_exactly_what_the_mounted_view_shows() {
    if !require_root("overlay commit") {
        return;
    }
    let tmp = crate::common::mounts::MountDir::new();
    let store = new_store(tmp.path());
    let (v1, v2) = (tmp.path().join("v1"), tmp.path().join("v2"));
    write_tree(
        &v1,
        &[
            ("etc/conf", "a"),
            ("bin/tool", "tool"),
            ("var/log/old", "x"),
            ("keep", "k"),
        ],
    );
    write_tree(
        &v2,
        &[
            ("etc/conf", "b"),
            ("bin/tool", "tool"),
            ("var/log/old", "x"),
            ("keep", "k"),
            ("new/file", "n"),
        ],
    );
    let image = image_of(&store, &[&v1, &v2]);
    let containers = containers(&store);
    let target = tmp.path().join("box");
    containers
        .prepare("box", &image, &target_options(&target))
        .unwrap();
    assert!(containers.stat("box").unwrap().mounted);

    std::fs::remove_dir_all(target.join("var")).unwrap();
    std::fs::write(target.join("etc/conf"), "c").unwrap();
    std::fs::create_dir(target.join("var")).unwrap();
    std::fs::write(target.join("var/fresh"), "f").unwrap();
    std::fs::remove_file(target.join("keep")).unwrap();
    let chmod = target.join("bin/tool");
    std::os::unix::fs::chown(&chmod, Some(1234), Some(99)).unwrap();
    let seen = store.scan(&target, &no_cache()).unwrap().snapshot;

    let child = containers.commit("box", &CommitOptions::default()).unwrap();
    let tree = store.image_tree(&child).unwrap();
    assert_eq!(comparable(&tree), comparable(&seen));
    let layer = store
        .layer(store.image(&child).unwrap().layers().last().unwrap())
        .unwrap();
    assert_eq!(layer.whiteouts(), [TreePath::new("keep").unwrap()]);
    assert_eq!(layer.opaque_dirs(), [TreePath::new("var").unwrap()]);
    // The chown stored no content: the lower file's chunks.
    let tool = TreePath::new("bin/tool").unwrap();
    let before = store.image_tree(&image).unwrap();
    let upsert = layer.upserts().iter().find(|e| e.path == tool).unwrap();
    assert_eq!(upsert.kind, before.get(&tool).unwrap().kind);
    assert_eq!((upsert.meta.uid, upsert.meta.gid), (1234, 99));

    // A container of the committed image shows the same tree.
    let again = tmp.path().join("again");
    containers
        .prepare("again", &child, &target_options(&again))
        .unwrap();
    let shown = store.scan(&again, &no_cache()).unwrap().snapshot;
    assert_eq!(comparable(&shown), comparable(&tree));
    assert_eq!(containers.usage("again").unwrap().inodes, 0);

    containers.remove("again").unwrap();
    containers.remove("box").unwrap();
    assert!(!store.path().join("containers/box").exists());
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0, "unmounted");
}

#[test]
fn a_view_is_read_only_for_real() {
    if !require_root("overlay view") {
        return;
    }
    let tmp = crate::common::mounts::MountDir::new();
    let store = new_store(tmp.path());
    let v1 = tmp.path().join("v1");
    write_tree(&v1, &[("f", "content")]);
    let image = image_of(&store, &[&v1]);
    let containers = containers(&store);
    let target = tmp.path().join("view");
    containers
        .view("ro", &image, &target_options(&target))
        .unwrap();
    assert_eq!(std::fs::read(target.join("f")).unwrap(), b"content");
    let err = std::fs::write(target.join("f"), "x").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ReadOnlyFilesystem);
    let err = std::fs::create_dir(target.join("d")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ReadOnlyFilesystem);
    let err = containers
        .files("ro")
        .unwrap()
        .write(&TreePath::new("g").unwrap(), b"x")
        .unwrap_err();
    assert!(
        matches!(&err, Error::Io { source, .. } if source.kind() == ErrorKind::ReadOnlyFilesystem),
        "{err}"
    );
    containers.remove("ro").unwrap();
}

#[test]
fn ten_containers_share_the_layers_and_a_busy_one_is_not_unmounted() {
    if !require_root("overlay sharing") {
        return;
    }
    let tmp = crate::common::mounts::MountDir::new();
    let store = new_store(tmp.path());
    let (v1, v2) = (tmp.path().join("v1"), tmp.path().join("v2"));
    write_tree(&v1, &[("a", "1")]);
    write_tree(&v2, &[("a", "1"), ("b", "2")]);
    let image = image_of(&store, &[&v1, &v2]);
    let containers = containers(&store);
    for i in 0..10 {
        let target = tmp.path().join(format!("c{i}"));
        containers
            .prepare(&format!("c{i}"), &image, &target_options(&target))
            .unwrap();
        std::fs::write(target.join("own"), format!("{i}")).unwrap();
    }
    let layers = store.path().join("mounts/layers");
    let extracted: Vec<_> = std::fs::read_dir(&layers)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "empty")
        .collect();
    assert_eq!(extracted.len(), 2, "{extracted:?}");
    for i in 0..10 {
        let own = tmp.path().join(format!("c{i}/own"));
        assert_eq!(std::fs::read_to_string(own).unwrap(), format!("{i}"));
    }

    // Busy: a file open in the view. Clear error, nothing changed.
    let busy = std::fs::File::open(tmp.path().join("c3/a")).unwrap();
    let err = containers.unmount("c3").unwrap_err();
    assert!(
        matches!(&err, Error::Io { op: "unmount", path, source }
            if path.ends_with("c3") && source.kind() == ErrorKind::ResourceBusy),
        "{err}"
    );
    assert!(containers.stat("c3").unwrap().mounted);
    let err = containers.remove("c3").unwrap_err();
    assert!(err.to_string().contains("c3"), "{err}");
    assert!(containers.stat("c3").is_ok(), "nothing deleted");
    drop(busy);
    containers.unmount("c3").unwrap();
    containers.mount("c3", None).unwrap();
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("c3/own")).unwrap(),
        "3"
    );

    // Extractions are kept while a container or tag needs them, pruned after.
    let tag: TagName = "img".parse().unwrap();
    store.set_tag(&tag, &image).unwrap();
    for i in 0..10 {
        containers.remove(&format!("c{i}")).unwrap();
    }
    store.gc(&GcOptions::default()).unwrap();
    assert!(OverlayBackend::prune(&store).unwrap().is_empty());
    store.remove_tag(&tag).unwrap();
    store.gc(&GcOptions::default()).unwrap();
    assert_eq!(OverlayBackend::prune(&store).unwrap().len(), 2);
    assert!(
        std::fs::read_dir(&layers)
            .unwrap()
            .all(|e| e.unwrap().file_name() == "empty")
    );
}

/// Extraction does not wait for the disk: a layer extracted in this boot is
/// `<chain>.unsynced-<boot id>` until gc syncs it and renames it to `<chain>`,
/// which it does also while a container stacks it: the container goes on
/// reading, writing and committing, and mounts again over the new names.
#[test]
fn gc_syncs_and_renames_the_layers_a_mounted_container_stacks() {
    if !require_root("overlay extraction") {
        return;
    }
    let tmp = crate::common::mounts::MountDir::new();
    let store = new_store(tmp.path());
    let (v1, v2) = (tmp.path().join("v1"), tmp.path().join("v2"));
    write_tree(&v1, &[("a", "1")]);
    write_tree(&v2, &[("a", "1"), ("b", "2")]);
    let image = image_of(&store, &[&v1, &v2]);
    let containers = containers(&store);
    let target = tmp.path().join("c");
    containers
        .prepare("c", &image, &target_options(&target))
        .unwrap();
    let layers = store.path().join("mounts/layers");
    let names = || {
        let mut names: Vec<String> = std::fs::read_dir(&layers)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n != "empty")
            .collect();
        names.sort();
        names
    };
    let before = names();
    assert_eq!(before.len(), 2, "{before:?}");
    assert!(
        before.iter().all(|n| n.contains(".unsynced-")),
        "{before:?}"
    );

    store.gc(&GcOptions::default()).unwrap();
    assert!(OverlayBackend::prune(&store).unwrap().is_empty());
    let after = names();
    let expected: Vec<String> = before
        .iter()
        .map(|n| n.split(".unsynced-").next().unwrap().to_owned())
        .collect();
    assert_eq!(after, expected);

    assert_eq!(std::fs::read_to_string(target.join("b")).unwrap(), "2");
    std::fs::write(target.join("c"), "3").unwrap();
    let child = containers.commit("c", &CommitOptions::default()).unwrap();
    containers.unmount("c").unwrap();
    containers.mount("c", None).unwrap();
    assert_eq!(std::fs::read_to_string(target.join("a")).unwrap(), "1");
    assert_eq!(std::fs::read_to_string(target.join("c")).unwrap(), "3");
    assert_eq!(names()[..2], expected[..], "nothing extracted again");
    let tree = store.image_tree(&child).unwrap();
    assert!(tree.get(&TreePath::new("c").unwrap()).is_some());
    containers.remove("c").unwrap();
}
