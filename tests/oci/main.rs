//! Integration tests of `layerstore::oci`, one binary: round trips through
//! OCI image layouts, hostile layer tars, and interop with the real `skopeo`
//! and `umoci` on both sides.

#[path = "../common/mod.rs"]
mod common;
mod hostile;
mod interop;
mod roundtrip;
pub(crate) use common::{require_tool, tree};

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use layerstore::{History, ImageId, Layer, ScanOptions, Snapshot, Store, StoreOptions, Timestamp};

pub(crate) fn new_store(dir: &Path, name: &str) -> Store {
    Store::create(dir.join(name), &StoreOptions::default()).expect("create store")
}

pub(crate) fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A tree with every kind of entry the OCI mapping must carry: files (one of
/// 3 MiB), an empty file, a long name and a long path, a non-UTF-8 name,
/// symlinks (one with a long target), a hard-link group, a fifo, setuid and
/// sticky modes, xattrs, nanosecond mtimes everywhere; as root also devices
/// and odd owners (one past ustar's 8-digit octal).
pub(crate) fn make_fixture(root: &Path) {
    use std::fs;
    fs::create_dir_all(root.join("etc/conf.d")).unwrap();
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::create_dir_all(root.join("gone/deep")).unwrap();
    fs::create_dir_all(root.join("opaque/old")).unwrap();
    fs::write(root.join("etc/hosts"), b"127.0.0.1 localhost\n").unwrap();
    fs::write(root.join("etc/conf.d/empty"), b"").unwrap();
    fs::write(root.join("gone/deep/file"), b"deleted later").unwrap();
    fs::write(root.join("opaque/old/x"), b"hidden later").unwrap();
    fs::write(root.join("opaque/kept"), b"hidden later too").unwrap();
    fs::write(root.join("usr/bin/big"), common::random_bytes(3 << 20, 7)).unwrap();
    fs::write(root.join("usr/bin/tool"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::hard_link(root.join("usr/bin/tool"), root.join("usr/bin/tool-alias")).unwrap();
    fs::hard_link(root.join("usr/bin/tool"), root.join("etc/a-tool-link")).unwrap();
    let long_dir = root.join("l".repeat(120)).join("m".repeat(140));
    fs::create_dir_all(&long_dir).unwrap();
    fs::write(long_dir.join("n".repeat(200)), b"long path").unwrap();
    fs::write(
        root.join(std::ffi::OsStr::from_bytes(b"latin1-\xe9t\xe9")),
        b"not utf-8",
    )
    .unwrap();
    std::os::unix::fs::symlink("hosts", root.join("etc/hosts-link")).unwrap();
    std::os::unix::fs::symlink("t".repeat(180), root.join("etc/long-link")).unwrap();
    common::mknod(
        &root.join("fifo"),
        rustix::fs::FileType::Fifo,
        0o640,
        (0, 0),
    );
    let chmod = |p: &str, mode: u32| {
        rustix::fs::chmod(root.join(p), rustix::fs::Mode::from_raw_mode(mode)).unwrap();
    };
    chmod("usr/bin/tool", 0o4755);
    chmod("usr/bin", 0o1777);
    if common::user_xattrs_supported(root) {
        for (p, v) in [("etc/hosts", &b"v1"[..]), ("usr/bin", b"\x00\xffbinary")] {
            rustix::fs::lsetxattr(
                root.join(p),
                "user.test",
                v,
                rustix::fs::XattrFlags::empty(),
            )
            .unwrap();
        }
    }
    if is_root() {
        common::mknod(
            &root.join("null"),
            rustix::fs::FileType::CharacterDevice,
            0o666,
            (1, 3),
        );
        common::mknod(
            &root.join("loop9"),
            rustix::fs::FileType::BlockDevice,
            0o660,
            (7, 9),
        );
        let own = |p: &str, uid: u32, gid: u32| {
            rustix::fs::chownat(
                rustix::fs::CWD,
                root.join(p),
                Some(rustix::process::Uid::from_raw(uid)),
                Some(rustix::process::Gid::from_raw(gid)),
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )
            .unwrap();
        };
        own("etc/hosts", 1000, 1000);
        own("etc/hosts-link", 1001, 1002);
        own("usr/bin/big", 3_000_000, 2_500_000);
    }
    // Nanosecond mtimes, children before parents.
    let mut all: Vec<_> = walkdir(root);
    all.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for (i, p) in (0i64..).zip(&all) {
        common::set_mtime(
            p,
            1_600_000_000 + i,
            u32::try_from(123_456_789 + i).unwrap(),
        );
    }
    common::set_mtime(root, 1_500_000_000, 5);
}

fn walkdir(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

/// An image of three layers: the fixture; then some of it deleted, a file
/// changed, one added; then `opaque/` made opaque with one new child.
pub(crate) fn make_image(store: &Store, dir: &Path) -> ImageId {
    let src = dir.join("src");
    make_fixture(&src);
    let first = store.scan(&src, &ScanOptions::default()).unwrap().snapshot;
    let history = |s: &str| History {
        created_by: s.to_owned(),
        created: Some(Timestamp::new(1_700_000_000, 42)),
        ..History::default()
    };
    let config = layerstore::ImageConfig {
        env: vec!["PATH=/usr/bin".into(), "A=1".into()],
        cmd: vec!["/usr/bin/tool".into(), "--flag".into()],
        entrypoint: vec!["/bin/sh".into(), "-c".into()],
        workdir: "/etc".into(),
        user: "1000:1000".into(),
        labels: [("org.example".to_owned(), "yes".to_owned())].into(),
        created: Some(Timestamp::new(1_700_000_001, 999_999_999)),
        author: "tests".into(),
    };
    let one = store
        .put_child_image(
            None,
            &Snapshot::empty().diff(&first),
            &first,
            Some(config),
            history("layer 1"),
        )
        .unwrap();
    std::fs::remove_dir_all(src.join("gone")).unwrap();
    std::fs::remove_file(src.join("etc/hosts-link")).unwrap();
    std::fs::write(src.join("etc/hosts"), b"changed\n").unwrap();
    std::fs::write(src.join("etc/new"), b"new\n").unwrap();
    let second = store.scan(&src, &ScanOptions::default()).unwrap().snapshot;
    let two = store
        .put_child_image(
            Some(&one),
            &first.diff(&second),
            &second,
            None,
            history("layer 2"),
        )
        .unwrap();
    let opaque_dir = second.get(&"opaque".parse().unwrap()).unwrap().clone();
    let new_child = layerstore::Entry::file(
        "opaque/fresh".parse().unwrap(),
        store.put_bytes(b"fresh").unwrap(),
        layerstore::Metadata::new(0o600),
    );
    let third = Layer::new(
        vec![opaque_dir, new_child],
        vec![],
        vec!["opaque".parse().unwrap()],
    )
    .unwrap();
    let tree = third.apply(&second).unwrap();
    assert!(tree.get(&"opaque/kept".parse().unwrap()).is_none());
    let id = store
        .put_child_image(Some(&two), &third, &tree, None, history("layer 3"))
        .unwrap();
    store.flush().unwrap();
    id
}
