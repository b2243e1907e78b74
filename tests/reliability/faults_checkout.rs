//! Fault injection (feature `fault-injection`) into checkout: each write
//! site of a checkout — the creation of the destination, of each directory,
//! file, symbolic link, hard link, fifo and device, each chunk written, each
//! owner, mode, time and extended attribute set — fails in turn with
//! `ENOSPC` and with `EIO`. One checkout thread, so that the sites come in
//! the same order every time.
//!
//! The checkout fails with an error naming the path; what it leaves in the
//! destination can be removed by its owner (every directory has its owner's
//! read, write and search permission back, read-only directories of the
//! image included); nothing outside the destination changes, though the
//! image's symbolic links point there; and the same checkout into the same
//! destination, emptied, succeeds and is identical to the source tree.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use layerstore::{CheckoutOptions, Store, StoreOptions, fault};

use super::common::tree::{Kind, Tree, assert_same, make_removable, walk};
use super::common::{set_mtime, user_xattrs_supported};
use super::faults::{EIO, ENOSPC, assert_names_fault};
use super::sources::commit_dir;
use super::{files, random_bytes};

/// A source tree with every kind of entry checkout writes, and links that
/// point at `outside`.
fn write_source(src: &Path, outside: &Path) {
    std::fs::create_dir_all(src.join("d/e")).unwrap();
    std::fs::create_dir_all(src.join("ro")).unwrap();
    for (name, content) in files(21, 1, 3) {
        std::fs::write(src.join(name), content).unwrap();
    }
    std::fs::write(src.join("d/e/deep"), random_bytes(300_000, 22)).unwrap();
    std::fs::write(src.join("ro/inside"), b"read-only directory").unwrap();
    std::fs::write(src.join("d/setuid"), b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(src.join("d/setuid"), PermissionsExt::from_mode(0o4755)).unwrap();
    std::fs::hard_link(src.join("small0"), src.join("d/hard")).unwrap();
    std::os::unix::fs::symlink("../outside/sentinel", src.join("escape")).unwrap();
    std::os::unix::fs::symlink(outside, src.join("d/absolute")).unwrap();
    crate::common::mknod(&src.join("fifo"), rustix::fs::FileType::Fifo, 0o640, (0, 0));
    if rustix::process::geteuid().is_root() {
        crate::common::mknod(
            &src.join("d/null"),
            rustix::fs::FileType::CharacterDevice,
            0o666,
            (1, 3),
        );
    }
    if user_xattrs_supported(src) {
        for (path, value) in [("small1", &b"file"[..]), ("d", b"dir")] {
            rustix::fs::lsetxattr(
                src.join(path),
                "user.layerstore-test",
                value,
                rustix::fs::XattrFlags::empty(),
            )
            .unwrap();
        }
    }
    for (path, secs) in [
        ("small2", 1_600_000_000),
        ("d/e", 1_600_000_001),
        ("d/e/deep", 1_600_000_002),
        ("fifo", 1_600_000_003),
        ("escape", 1_600_000_004),
    ] {
        set_mtime(&src.join(path), secs, 123_456_789);
    }
    std::fs::set_permissions(src.join("ro"), PermissionsExt::from_mode(0o555)).unwrap();
    set_mtime(&src.join("d"), 1_500_000_000, 1);
    set_mtime(src, 1_400_000_000, 2);
}

/// Asserts that every directory of `tree` has its owner's rwx bits.
fn assert_removable(tree: &Tree, when: &str) {
    for (path, node) in tree {
        if node.kind == Kind::Dir {
            let mode = node.mode.unwrap_or_default();
            assert!(
                mode & 0o700 == 0o700,
                "{when}: directory '{}' left with mode {mode:o}",
                String::from_utf8_lossy(path)
            );
        }
    }
}

fn every_write_site_of_checkout_fails_cleanly(errno: i32, name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("sentinel"), b"must not change").unwrap();
    let src = dir.path().join("src");
    write_source(&src, &outside);
    let store = Store::create(dir.path().join("store"), &StoreOptions::default()).unwrap();
    let id = commit_dir(&store, &src);
    store.flush().unwrap();
    let tree = store.image_tree(&id).unwrap();
    let source = walk(&src);
    let outside_before = walk(&outside);
    let options = CheckoutOptions::default().threads(1);

    let mut sites = 0;
    for n in 1u64.. {
        assert!(n < 500, "the checkout never ran out of write sites");
        let dest = dir.path().join(format!("box/{name}-{n}"));
        fault::arm(&dest, n, errno);
        let result = store.checkout(&tree, &dest, &options);
        let (reached, hit) = fault::disarm(&dest);
        let when = format!("checkout, {name} at site {n} of {reached} ({hit:?})");
        let Some((_, hit_path)) = hit else {
            result.unwrap_or_else(|e| panic!("{when}: {e}"));
            assert_same(&walk(&dest), &source);
            sites = n - 1;
            break;
        };
        let err = result.expect_err(&format!("{when}: the fault was swallowed"));
        assert_names_fault(&err, &hit_path, errno, &when);
        assert_same(&walk(&outside), &outside_before);
        if dest.exists() {
            assert_removable(&walk(&dest), &when);
            std::fs::remove_dir_all(&dest).unwrap_or_else(|e| panic!("{when}: remove: {e}"));
        }
        // The caller's retry into the same (emptied) destination.
        store
            .checkout(&tree, &dest, &options)
            .unwrap_or_else(|e| panic!("{when}: retry: {e}"));
        assert_same(&walk(&dest), &source);
        assert_same(&walk(&outside), &outside_before);
        make_removable(&dest);
        std::fs::remove_dir_all(&dest).unwrap();
    }
    // Every entry is created, and most have metadata set after.
    assert!(sites >= 40, "only {sites} write sites in a checkout");
    eprintln!("{name}: failed each of {sites} write sites of a checkout");
}

#[test]
fn every_write_site_of_checkout_fails_cleanly_with_enospc() {
    every_write_site_of_checkout_fails_cleanly(ENOSPC, "ENOSPC");
}

#[test]
fn every_write_site_of_checkout_fails_cleanly_with_eio() {
    every_write_site_of_checkout_fails_cleanly(EIO, "EIO");
}
