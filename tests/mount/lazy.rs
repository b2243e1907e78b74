//! The lazy FUSE view beyond the conformance suite: concurrent random reads
//! compared with the store's bytes, damage that fails one file with `EIO`
//! and nothing else, and the kernel's permission checks. Each mounts a real
//! FUSE filesystem: it needs `/dev/fuse` and root (or `fusermount3`).

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use layerstore::mount::{FuseOptions, FuseView};
use layerstore::{Entry, Metadata, Snapshot, SnapshotId, Store, StoreOptions, TreePath};

use crate::common::{Rng, random_bytes, require_root, strict, test_seed};

/// Whether a FUSE view can be mounted here; says so loudly if not.
fn fuse_available() -> bool {
    if Path::new("/dev/fuse").exists() {
        return true;
    }
    assert!(
        !strict(),
        "LAYERSTORE_REQUIRE_PRIVILEGED=1 and /dev/fuse is missing"
    );
    eprintln!("SKIPPED: no /dev/fuse");
    false
}

fn p(path: &str) -> TreePath {
    TreePath::new(path).unwrap()
}

/// A store with `files` (path, content) under a few directories, flushed.
fn store_with(dir: &Path, files: &[(String, Vec<u8>)]) -> (Arc<Store>, SnapshotId) {
    let store = Store::create(dir.join("store"), &StoreOptions::default()).unwrap();
    let mut entries = vec![Entry::dir(TreePath::ROOT, Metadata::new(0o755))];
    let mut dirs = std::collections::BTreeSet::new();
    for (path, content) in files {
        let path = p(path);
        if let Some(parent) = path.parent().filter(|d| !d.is_root())
            && dirs.insert(parent.clone())
        {
            entries.push(Entry::dir(parent, Metadata::new(0o755)));
        }
        entries.push(Entry::file(
            path,
            store.put_bytes(content).unwrap(),
            Metadata::new(0o644),
        ));
    }
    let tree = store
        .put_snapshot(&Snapshot::from_entries(entries).unwrap())
        .unwrap();
    store.flush().unwrap();
    (Arc::new(store), tree)
}

fn mount_dir(dir: &Path) -> PathBuf {
    let target = dir.join("view");
    std::fs::create_dir(&target).unwrap();
    target
}

#[test]
fn eight_threads_reading_random_ranges_see_the_stores_bytes() {
    if !fuse_available() {
        return;
    }
    let tmp = crate::common::mounts::MountDir::new();
    let seed = test_seed("fuse random reads", 18);
    let mut rng = Rng::new(seed);
    // Sizes around chunk and request boundaries, and a few MiB.
    let files: Vec<(String, Vec<u8>)> = (0..24)
        .map(|i| {
            let len = match i % 4 {
                0 => rng.below(4096) as usize,
                1 => 65_536 + rng.below(300_000) as usize,
                2 => (1 << 20) + rng.below(3 << 20) as usize,
                _ => 1 + rng.below(200) as usize,
            };
            (format!("d{}/f{i}", i % 5), random_bytes(len, seed + i))
        })
        .collect();
    let (store, tree) = store_with(tmp.path(), &files);
    let target = mount_dir(tmp.path());
    let view = FuseView::mount_tree(
        Arc::clone(&store),
        tree,
        &target,
        &FuseOptions::default().threads(4),
    )
    .unwrap();
    let files = Arc::new(files);
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let (files, target) = (Arc::clone(&files), target.clone());
            std::thread::spawn(move || {
                let mut rng = Rng::new(seed ^ ((t + 1) * 0x9e37_79b9));
                for _ in 0..150 {
                    let (path, want) = &files[rng.below(files.len() as u64) as usize];
                    let mut f = std::fs::File::open(target.join(path)).unwrap();
                    let start = rng.below(want.len() as u64 + 1);
                    let len = rng.below(2 << 20).min(want.len() as u64 - start);
                    f.seek(SeekFrom::Start(start)).unwrap();
                    let mut got = vec![0; len as usize];
                    f.read_exact(&mut got).unwrap();
                    assert!(
                        got == want[start as usize..(start + len) as usize],
                        "{path} [{start}, +{len}) differs (seed {seed})"
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // Whole files, once more, against what the store itself reads.
    for (path, want) in files.iter() {
        assert_eq!(&std::fs::read(target.join(path)).unwrap(), want, "{path}");
    }
    view.unmount().unwrap();
    assert!(
        std::fs::read_dir(&target).unwrap().next().is_none(),
        "the target is empty again"
    );
}

#[test]
fn a_flipped_bit_in_a_pack_fails_that_file_with_eio_and_nothing_else() {
    if !fuse_available() {
        return;
    }
    let tmp = crate::common::mounts::MountDir::new();
    let root = tmp.path().join("store");
    let store = Store::create(&root, &StoreOptions::default()).unwrap();
    let damaged_content = random_bytes(400_000, 7);
    let damaged = store.put_bytes(&damaged_content).unwrap();
    store.flush().unwrap();
    // The pack that holds that file's chunks, and nothing else.
    let packs: Vec<PathBuf> = packs(&root);
    assert_eq!(packs.len(), 1, "{packs:?}");
    let healthy = random_bytes(300_000, 8);
    let entries = vec![
        Entry::dir(TreePath::ROOT, Metadata::new(0o755)),
        Entry::file(p("damaged"), damaged, Metadata::new(0o644)),
        Entry::file(
            p("healthy"),
            store.put_bytes(&healthy).unwrap(),
            Metadata::new(0o644),
        ),
    ];
    let tree = store
        .put_snapshot(&Snapshot::from_entries(entries).unwrap())
        .unwrap();
    store.flush().unwrap();
    drop(store);
    let mut bytes = std::fs::read(&packs[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&packs[0], &bytes).unwrap();

    let store = Arc::new(Store::open(&root).unwrap());
    let target = mount_dir(tmp.path());
    let view = FuseView::mount_tree(store, tree, &target, &FuseOptions::default()).unwrap();
    let err = std::fs::read(target.join("damaged")).unwrap_err();
    assert_eq!(
        err.raw_os_error(),
        Some(rustix::io::Errno::IO.raw_os_error()),
        "{err}"
    );
    // Its metadata, the rest of the tree and the server are fine.
    assert_eq!(
        std::fs::metadata(target.join("damaged")).unwrap().len(),
        damaged_content.len() as u64
    );
    assert_eq!(std::fs::read(target.join("healthy")).unwrap(), healthy);
    let err = std::fs::read(target.join("damaged")).unwrap_err();
    assert_eq!(
        err.raw_os_error(),
        Some(rustix::io::Errno::IO.raw_os_error()),
        "{err}"
    );
    assert_eq!(std::fs::read(target.join("healthy")).unwrap(), healthy);
    view.unmount().unwrap();
}

fn packs(store: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(store.join("packs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pack"))
        .collect();
    out.sort();
    out
}

/// The child half of the next test: user 65534 reads through a view mounted
/// by root with `allow_other`, the image's modes deciding.
#[test]
#[ignore = "run by the_kernel_checks_the_images_modes_for_other_users as user 65534"]
fn other_user_reads_a_view() {
    let dir = crate::common::child_arg().expect("started by the parent test");
    let view = Path::new(&dir).join("view");
    assert_eq!(std::fs::read(view.join("open")).unwrap(), b"anyone");
    let err = std::fs::read(view.join("private")).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
    let err = std::fs::read_dir(view.join("locked")).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
}

#[test]
fn the_kernel_checks_the_images_modes_for_other_users() {
    if !fuse_available() || !require_root("mounting a view that another user reads") {
        return;
    }
    let tmp = crate::common::mounts::MountDir::new();
    crate::common::open_to_all(tmp.path());
    let store = Store::create(tmp.path().join("store"), &StoreOptions::default()).unwrap();
    let owned = |mode| {
        let mut m = Metadata::new(mode);
        (m.uid, m.gid) = (0, 0);
        m
    };
    let entries = vec![
        Entry::dir(TreePath::ROOT, owned(0o755)),
        Entry::dir(p("locked"), owned(0o700)),
        Entry::file(
            p("locked/inner"),
            store.put_bytes(b"x").unwrap(),
            owned(0o644),
        ),
        Entry::file(p("open"), store.put_bytes(b"anyone").unwrap(), owned(0o644)),
        Entry::file(
            p("private"),
            store.put_bytes(b"root's").unwrap(),
            owned(0o600),
        ),
    ];
    let tree = store
        .put_snapshot(&Snapshot::from_entries(entries).unwrap())
        .unwrap();
    let target = mount_dir(tmp.path());
    let view = FuseView::mount_tree(
        Arc::new(store),
        tree,
        &target,
        &FuseOptions::default().allow_other(true),
    )
    .unwrap();
    let ran = crate::common::run_unprivileged("lazy::other_user_reads_a_view", tmp.path());
    view.unmount().unwrap();
    assert!(ran || !strict());
}

#[test]
fn hard_links_share_an_inode_and_numbers_are_stable_across_mounts() {
    if !fuse_available() {
        return;
    }
    let tmp = crate::common::mounts::MountDir::new();
    let store = Store::create(tmp.path().join("store"), &StoreOptions::default()).unwrap();
    let meta = Metadata::new(0o644);
    let entries = vec![
        Entry::dir(TreePath::ROOT, Metadata::new(0o755)),
        Entry::dir(p("a"), Metadata::new(0o755)),
        Entry::file(p("a/f"), store.put_bytes(b"shared").unwrap(), meta.clone()),
        Entry::hardlink(p("a/g"), p("a/f"), meta.clone()),
        Entry::dir(p("b"), Metadata::new(0o755)),
        Entry::hardlink(p("b/h"), p("a/f"), meta.clone()),
        Entry::file(p("single"), store.put_bytes(b"one").unwrap(), meta),
    ];
    let tree = store
        .put_snapshot(&Snapshot::from_entries(entries).unwrap())
        .unwrap();
    let store = Arc::new(store);
    let target = mount_dir(tmp.path());
    let inodes = |first: &str| {
        use std::os::unix::fs::MetadataExt;
        let view = FuseView::mount_tree(Arc::clone(&store), tree, &target, &FuseOptions::default())
            .unwrap();
        // A different order of first lookups in each mount.
        let order: Vec<&str> = if first == "b" {
            vec!["b/h", "single", "a/g", "a/f", "a", "b"]
        } else {
            vec!["a", "a/f", "b", "a/g", "single", "b/h"]
        };
        let found: BTreeMap<&str, (u64, u64)> = order
            .into_iter()
            .map(|path| {
                let st = std::fs::symlink_metadata(target.join(path)).unwrap();
                (path, (st.ino(), st.nlink()))
            })
            .collect();
        assert_eq!(std::fs::read(target.join("b/h")).unwrap(), b"shared");
        view.unmount().unwrap();
        found
    };
    let first = inodes("a");
    assert_eq!(first["a/f"], first["a/g"]);
    assert_eq!(first["a/f"], first["b/h"]);
    assert_eq!(first["a/f"].1, 3, "three names");
    assert_eq!(first["single"].1, 1);
    assert_eq!(first["a"].1, 2, "a directory without subdirectories");
    assert_ne!(first["a/f"].0, first["single"].0);
    assert_eq!(inodes("b"), first, "the same numbers whatever the order");
}

#[test]
fn the_conformance_suite_passes_on_fuse_as_a_plain_user() {
    if !fuse_available()
        || !crate::common::require_tool("fusermount3")
        || !crate::common::require_tool("fuse-overlayfs")
    {
        return;
    }
    let tmp = crate::common::mounts::MountDir::new();
    crate::common::open_to_all(tmp.path());
    // Read-only views through fusermount3, writable ones through
    // fuse-overlayfs over the view: every case of the suite.
    crate::common::run_many_as_plain_user("fuse_as_a_plain_user::", tmp.path(), 24);
}

#[test]
fn files_read_in_order_are_handed_ahead_to_the_page_cache_intact() {
    if !fuse_available() {
        return;
    }
    let tmp = crate::common::mounts::MountDir::new();
    let seed = test_seed("fuse read in order", 21);
    let mut rng = Rng::new(seed);
    // Sizes at page and chunk edges among small and middling files, so that
    // what is handed ahead ends mid-page, at a page, and past a chunk.
    let edges = [0usize, 1, 4095, 4096, 4097, 8191, 65_536, 300_001];
    let files: Vec<(String, Vec<u8>)> = (0..240u64)
        .map(|i| {
            let len = if i % 3 == 0 {
                edges[(i / 3) as usize % edges.len()]
            } else {
                rng.below(20_000) as usize
            };
            (format!("d{}/f{i:03}", i % 3), random_bytes(len, seed + i))
        })
        .collect();
    let (store, tree) = store_with(tmp.path(), &files);
    let target = mount_dir(tmp.path());
    let view = FuseView::mount_tree(store, tree, &target, &FuseOptions::default()).unwrap();
    // As tar does: list a directory (the kernel learns its entries), then
    // read its files in that order.
    let by_path: BTreeMap<&str, &Vec<u8>> = files.iter().map(|(p, c)| (p.as_str(), c)).collect();
    for d in 0..3 {
        let dir = target.join(format!("d{d}"));
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        for name in names {
            let path = format!("d{d}/{name}");
            let got = std::fs::read(dir.join(&name)).unwrap();
            assert!(
                got == *by_path[path.as_str()],
                "{path} differs (seed {seed})"
            );
        }
    }
    view.unmount().unwrap();
}
