//! The lifecycle's bad input, crash recovery and garbage collection.

use std::os::unix::fs::MetadataExt as _;
use std::sync::Arc;

use layerstore::mount::{
    CommitOptions, Containers, CopyBackend, MemoryBackend, MountBackend, PrepareOptions,
};
use layerstore::{Error, GcOptions, ImageId, Store, StoreOptions, TreePath};

fn store() -> (crate::common::mounts::MountDir, Store) {
    let dir = crate::common::mounts::MountDir::new();
    let store = Store::create(dir.path().join("store"), &StoreOptions::default()).unwrap();
    (dir, store)
}

fn memory() -> PrepareOptions {
    PrepareOptions::default().backend("memory")
}

fn copy_at(target: &std::path::Path) -> PrepareOptions {
    PrepareOptions::default().backend("copy").target(target)
}

fn p(s: &str) -> TreePath {
    TreePath::new(s).unwrap()
}

/// An image with one file, tagged `base`.
fn base_image(c: &Containers<'_>) -> ImageId {
    let empty = c.empty_image().unwrap();
    c.prepare("maker", &empty, &memory()).unwrap();
    c.files("maker")
        .unwrap()
        .write(&p("base-file"), &b"base content ".repeat(10_000))
        .unwrap();
    let image = c
        .commit(
            "maker",
            &CommitOptions::default()
                .tag("base".parse().unwrap())
                .message("base"),
        )
        .unwrap();
    c.remove("maker").unwrap();
    image
}

#[test]
fn bad_names_are_refused_and_nothing_is_made() {
    let (_dir, store) = store();
    let c = Containers::new(&store);
    let empty = c.empty_image().unwrap();
    for bad in ["", "a/b", "..", "a..b", ".hidden", "a\0b", "/abs", "x\ny"] {
        let err = c.prepare(bad, &empty, &memory()).unwrap_err();
        assert!(
            matches!(&err, Error::Container { name, .. } if name == bad),
            "{bad:?}: {err}"
        );
        assert!(c.stat(bad).is_err());
        assert!(c.remove(bad).is_err());
    }
    assert!(c.walk(|_| true).unwrap().is_empty());
    let containers = store.path().join("containers");
    let left = std::fs::read_dir(&containers).map_or(0, Iterator::count);
    assert_eq!(left, 0, "nothing made in {}", containers.display());
}

#[test]
fn a_target_that_is_not_an_empty_directory_is_refused() {
    let (dir, store) = store();
    let c = Containers::new(&store);
    let empty = c.empty_image().unwrap();
    let full = dir.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("precious"), b"keep me").unwrap();
    let err = c.prepare("c", &empty, &copy_at(&full)).unwrap_err();
    assert!(
        matches!(&err, Error::DestinationNotEmpty { path } if path == &full),
        "{err}"
    );
    assert_eq!(std::fs::read(full.join("precious")).unwrap(), b"keep me");

    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let err = c.prepare("c", &empty, &copy_at(&file)).unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
    assert!(err.to_string().contains("a-file"), "{err}");

    let err = c
        .prepare("c", &empty, &PrepareOptions::default().backend("copy"))
        .unwrap_err();
    assert!(err.to_string().contains("target"), "{err}");
    let err = c
        .prepare("c", &empty, &PrepareOptions::default().backend("nonesuch"))
        .unwrap_err();
    assert!(
        err.to_string().contains("unknown backend 'nonesuch'"),
        "{err}"
    );
    assert!(
        c.walk(|_| true).unwrap().is_empty(),
        "no container was left behind"
    );
    // The name is still free.
    c.prepare("c", &empty, &copy_at(&dir.path().join("fresh")))
        .unwrap();
}

#[test]
fn gc_keeps_what_containers_need() {
    let (_dir, store) = store();
    let c = Containers::new(&store);
    let base = base_image(&c);
    c.prepare("work", &base, &memory()).unwrap();
    c.files("work")
        .unwrap()
        .write(&p("new-file"), &b"container content ".repeat(10_000))
        .unwrap();
    // Committed without a tag: the container's pin alone keeps it.
    let committed = c.commit("work", &CommitOptions::default()).unwrap();
    c.unmount("work").unwrap();
    assert!(store.remove_tag(&"base".parse().unwrap()).unwrap());
    store.gc(&GcOptions::default()).unwrap();

    let tree = store.image_tree(&base).unwrap();
    let base_file = tree.get(&p("base-file")).unwrap();
    let layerstore::EntryKind::File { chunks, .. } = &base_file.kind else {
        panic!("not a file")
    };
    assert_eq!(store.read_all(chunks).unwrap().len(), 130_000);
    let tree = store.image_tree(&committed).unwrap();
    assert!(tree.get(&p("new-file")).is_some());
    c.mount("work", None).unwrap();
    assert_eq!(
        c.files("work").unwrap().read(&p("new-file")).unwrap().len(),
        180_000
    );
    assert!(
        store
            .fsck(&layerstore::FsckOptions::default())
            .unwrap()
            .problems
            .is_empty()
    );

    // Once the container is gone, so is what only it kept.
    c.remove("work").unwrap();
    store.gc(&GcOptions::default()).unwrap();
    assert!(matches!(
        store.image(&committed),
        Err(Error::ObjectNotFound { .. })
    ));
    assert!(matches!(
        store.image(&base),
        Err(Error::ObjectNotFound { .. })
    ));
}

#[test]
fn pins_refuse_the_tag_and_cache_groups() {
    let (_dir, store) = store();
    let id = layerstore::ChunkId::of(b"x");
    for (group, name) in [
        ("tags", "a"),
        ("cache", "a"),
        ("", "a"),
        ("g", "a/b"),
        ("..", "a"),
    ] {
        assert!(
            store.set_pins(group, name, &[id]).is_err(),
            "{group}/{name} accepted"
        );
    }
    std::fs::create_dir_all(store.path().join("refs/containers")).unwrap();
    std::fs::write(store.path().join("refs/containers/bad"), b"not an id\n").unwrap();
    let err = store.gc(&GcOptions::default()).unwrap_err();
    assert!(err.to_string().contains("refs/containers/bad"), "{err}");
}

#[test]
fn a_crash_while_making_a_container_leaves_it_removable() {
    let (_dir, store) = store();
    let c = Containers::new(&store);
    let empty = c.empty_image().unwrap();
    // The state directory exists, its meta does not: the process died there.
    std::fs::create_dir_all(store.path().join("containers/half")).unwrap();
    assert!(c.walk(|_| true).unwrap().is_empty());
    let err = c.stat("half").unwrap_err();
    assert!(err.to_string().contains("incomplete"), "{err}");
    let err = c.prepare("half", &empty, &memory()).unwrap_err();
    assert!(err.to_string().contains("exists"), "{err}");
    c.remove("half").unwrap();
    c.prepare("half", &empty, &memory()).unwrap();
}

#[test]
fn damaged_state_is_named_and_removable() {
    let (_dir, store) = store();
    let c = Containers::new(&store);
    let empty = c.empty_image().unwrap();
    c.prepare("hurt", &empty, &memory()).unwrap();
    let meta = store.path().join("containers/hurt/meta");
    std::fs::write(&meta, b"garbage").unwrap();
    let err = c.stat("hurt").unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt { path, .. } if path == &meta),
        "{err}"
    );
    c.remove("hurt").unwrap();
    assert!(!store.path().join("containers/hurt").exists());
}

/// The child of the test below: prepares a copy container at `<dir>/target`
/// on the store `<dir>/store`, writes into it, says `ready` and waits to be
/// killed.
#[test]
#[ignore = "child process of a_copy_container_survives_its_process_dying_while_mounted"]
fn copy_container_child() {
    let Some(dir) = crate::common::child_arg() else {
        return;
    };
    let dir = std::path::Path::new(&dir);
    let store = Store::open(dir.join("store")).unwrap();
    let target = dir.join("target");
    let c = Containers::new(&store);
    let base = base_image(&c);
    c.prepare("box", &base, &copy_at(&target)).unwrap();
    std::fs::write(target.join("written"), b"before the crash").unwrap();
    println!("ready");
    std::thread::sleep(std::time::Duration::from_secs(60));
    panic!("not killed");
}

#[test]
fn a_copy_container_survives_its_process_dying_while_mounted() {
    use std::io::BufRead as _;
    let (dir, store) = store();
    let target = dir.path().join("target");
    drop(store);
    let mut child = crate::common::child(
        "lifecycle::copy_container_child",
        dir.path().to_str().unwrap(),
    )
    .stdout(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(
        // libtest may print the test's name on the same line first.
        lines.any(|l| l.is_ok_and(|l| l.ends_with("ready"))),
        "the child ended before it was ready"
    );
    // No unmount: the process dies here.
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "{status}"
    );
    let store = Store::open(dir.path().join("store")).unwrap();
    let c = Containers::new(&store);
    let info = c.stat("box").unwrap();
    assert!(info.mounted, "the tree is still in the target");
    let image = c.commit("box", &CommitOptions::default()).unwrap();
    let tree = store.image_tree(&image).unwrap();
    assert!(tree.get(&p("written")).is_some());
    assert!(tree.get(&p("base-file")).is_some());
    c.remove("box").unwrap();
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);
}

#[test]
fn an_unmount_of_something_busy_is_refused_and_nothing_is_lost() {
    if !crate::require_root("mounting a tmpfs beneath a copy target") {
        return;
    }
    let (dir, store) = store();
    let target = dir.path().join("target");
    let c = Containers::new(&store);
    let empty = c.empty_image().unwrap();
    c.prepare("busy", &empty, &copy_at(&target)).unwrap();
    std::fs::write(target.join("mine"), b"data").unwrap();
    std::fs::create_dir(target.join("mnt")).unwrap();
    rustix::mount::mount(
        "tmpfs",
        target.join("mnt"),
        "tmpfs",
        rustix::mount::MountFlags::empty(),
        None::<&std::ffi::CStr>,
    )
    .unwrap();
    std::fs::write(target.join("mnt/other-fs"), b"not ours").unwrap();
    for result in [c.unmount("busy"), c.remove("busy")] {
        let err = result.unwrap_err();
        assert!(err.to_string().contains("busy"), "{err}");
        assert!(err.to_string().contains("target"), "{err}");
    }
    assert_eq!(std::fs::read(target.join("mine")).unwrap(), b"data");
    assert_eq!(
        std::fs::read(target.join("mnt/other-fs")).unwrap(),
        b"not ours"
    );
    rustix::mount::unmount(target.join("mnt"), rustix::mount::UnmountFlags::empty()).unwrap();
    c.unmount("busy").unwrap();
    c.mount("busy", None).unwrap();
    assert_eq!(std::fs::read(target.join("mine")).unwrap(), b"data");
}

#[test]
fn many_backends_one_store() {
    // Containers of different backends live side by side in one store, and a
    // memory container made by one `Containers` is unknown to another
    // process's until unmounted (its changes live in its process).
    let (dir, store) = store();
    let backends: Vec<Arc<dyn MountBackend>> =
        vec![Arc::new(MemoryBackend::new()), Arc::new(CopyBackend::new())];
    let c = Containers::with_backends(&store, backends);
    assert_eq!(c.default_backend(), Some("memory"));
    let empty = c.empty_image().unwrap();
    c.prepare("m", &empty, &PrepareOptions::default()).unwrap();
    c.prepare("k", &empty, &copy_at(&dir.path().join("k")))
        .unwrap();
    let listed: Vec<_> = c
        .walk(|_| true)
        .unwrap()
        .into_iter()
        .map(|i| (i.name, i.backend))
        .collect();
    assert_eq!(
        listed,
        [
            ("k".to_owned(), "copy".to_owned()),
            ("m".to_owned(), "memory".to_owned())
        ]
    );
    assert_eq!(
        c.by_target(&dir.path().join("k")).unwrap().as_deref(),
        Some("k")
    );
}

#[test]
fn the_shared_base_checkout_goes_with_its_last_container() {
    let (dir, store) = store();
    let c = Containers::new(&store);
    let base = base_image(&c);
    let bases = store.path().join("containers/.base");
    let checkouts = || {
        std::fs::read_dir(&bases).map_or(0, |d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter(|e| !e.file_name().to_string_lossy().ends_with(".users"))
                .count()
        })
    };
    c.prepare("one", &base, &copy_at(&dir.path().join("one")))
        .unwrap();
    c.prepare("two", &base, &copy_at(&dir.path().join("two")))
        .unwrap();
    assert_eq!(checkouts(), 1, "one checkout per image");
    c.remove("one").unwrap();
    assert_eq!(checkouts(), 1, "still used by two");
    assert!(dir.path().join("two/base-file").is_file());
    c.remove("two").unwrap();
    assert_eq!(checkouts(), 0, "gone with its last user");
}

/// The copy backend's quick walk keeps a record in the container's state;
/// when that record is lost or unreadable, a commit scans the whole target
/// and writes a new record, so the next commit is quick again.
#[test]
fn a_copy_commit_without_its_walk_record_writes_a_new_one() {
    let (dir, store) = store();
    let target = dir.path().join("target");
    let c = Containers::new(&store);
    let base = base_image(&c);
    c.prepare("box", &base, &copy_at(&target)).unwrap();
    let record = store.path().join("containers/box/copy-stat");
    assert!(record.is_file(), "no walk record after prepare");
    std::fs::write(&record, b"garbage").unwrap();
    std::fs::write(target.join("one"), b"1").unwrap();
    let first = c.commit("box", &CommitOptions::default()).unwrap();
    assert!(store.image_tree(&first).unwrap().get(&p("one")).is_some());
    let written = std::fs::read(&record).unwrap();
    assert_ne!(written, b"garbage", "no new record after a full scan");
    std::fs::remove_file(target.join("one")).unwrap();
    let second = c.commit("box", &CommitOptions::default()).unwrap();
    let tree = store.image_tree(&second).unwrap();
    assert!(tree.get(&p("one")).is_none());
    assert!(tree.get(&p("base-file")).is_some());
    // Quick again: past the clock's tick (what was just written is racy and
    // read once more), a commit of an unchanged target takes the quick walk,
    // which leaves its record alone; a full scan (or a walk that gave up)
    // would write a new record, as a new file.
    std::thread::sleep(std::time::Duration::from_millis(50));
    c.commit("box", &CommitOptions::default()).unwrap();
    let before = std::fs::metadata(&record).unwrap().ino();
    let third = c.commit("box", &CommitOptions::default()).unwrap();
    assert_eq!(
        std::fs::metadata(&record).unwrap().ino(),
        before,
        "the commit did not take the quick walk"
    );
    assert_eq!(
        store.image_tree(&third).unwrap().id(),
        store.image_tree(&second).unwrap().id()
    );
    c.remove("box").unwrap();
}
