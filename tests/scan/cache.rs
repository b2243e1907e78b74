//! The stat cache: a rescan of an unchanged tree reads nothing; any change,
//! even one that restores size and mtime, is seen.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use layerstore::{EntryKind, ScanOptions, ScanWarningKind, Store};

use crate::{Fixture, entry, require_root, set_mtime, wait_until_settled};

fn populate(fx: &Fixture) {
    std::fs::create_dir(fx.at(b"d")).unwrap();
    for i in 0..20 {
        std::fs::write(
            fx.at(format!("d/f{i}").as_bytes()),
            format!("content {i:04}"),
        )
        .unwrap();
    }
    std::fs::write(fx.at(b"top"), b"top-level file").unwrap();
    std::fs::write(fx.at(b"h1"), b"hard-linked").unwrap();
    std::fs::hard_link(fx.at(b"h1"), fx.at(b"h2")).unwrap();
}

/// The content recorded for `path`.
fn content(fx: &Fixture, out: &layerstore::ScanOutcome, path: &[u8]) -> Vec<u8> {
    match &entry(out, path).kind {
        EntryKind::File { chunks, .. } => fx.store.read_all(chunks).unwrap(),
        other => panic!("not a file: {other:?}"),
    }
}

/// Overwrites `path` with `bytes` of the same length and puts its mtime back.
fn rewrite_keeping_size_and_mtime(path: &std::path::Path, bytes: &[u8]) {
    let before = std::fs::symlink_metadata(path).unwrap();
    assert_eq!(before.len(), bytes.len() as u64);
    std::fs::write(path, bytes).unwrap();
    set_mtime(
        path,
        before.mtime(),
        u32::try_from(before.mtime_nsec()).unwrap(),
    );
    let after = std::fs::symlink_metadata(path).unwrap();
    assert_eq!(
        (after.len(), after.mtime(), after.mtime_nsec()),
        (before.len(), before.mtime(), before.mtime_nsec())
    );
}

#[test]
fn a_rescan_of_an_unchanged_tree_reads_nothing_and_changes_are_seen() {
    let fx = Fixture::new();
    populate(&fx);
    wait_until_settled();

    let first = fx.scan();
    assert_eq!(
        first.files_read, 22,
        "20 + top + one read for the link group"
    );
    assert_eq!(first.files_from_cache, 0);

    let second = fx.scan();
    assert_eq!((second.files_read, second.bytes_read), (0, 0));
    assert_eq!(second.files_from_cache, 22);
    assert_eq!(second.snapshot.id(), first.snapshot.id());
    assert!(second.warnings.is_empty(), "{:?}", second.warnings);

    // Same size, mtime restored to the nanosecond: the ctime still moved.
    rewrite_keeping_size_and_mtime(&fx.at(b"d/f7"), b"CONTENT 0007");
    // Only the mode, only the owner.
    std::fs::set_permissions(fx.at(b"d/f3"), std::fs::Permissions::from_mode(0o4750)).unwrap();
    let privileged = require_root("chown in the stat-cache test");
    if privileged {
        std::os::unix::fs::lchown(fx.at(b"d/f4"), Some(777), Some(888)).unwrap();
    }
    let third = fx.scan();
    assert_eq!(content(&fx, &third, b"d/f7"), b"CONTENT 0007");
    assert_eq!(entry(&third, b"d/f3").meta.mode, 0o4750);
    assert_eq!(content(&fx, &third, b"d/f3"), b"content 0003");
    if privileged {
        let f4 = &entry(&third, b"d/f4").meta;
        assert_eq!((f4.uid, f4.gid), (777, 888));
    }
    // The changed files were read again (ctime moved), no others.
    let changed = if privileged { 3 } else { 2 };
    assert_eq!(third.files_read, changed);
    assert_eq!(third.files_from_cache, 22 - changed);
    assert_ne!(third.snapshot.id(), first.snapshot.id());

    // Without the cache, everything is read, and the result is the same.
    let uncached = fx.scan_with(&ScanOptions::default().use_stat_cache(false));
    assert_eq!(uncached.files_read, 22);
    assert_eq!(uncached.snapshot.id(), third.snapshot.id());
}

#[test]
fn a_change_within_the_same_second_as_the_scan_is_seen() {
    // No waiting: the tree is written, scanned and rewritten within a second
    // or so, where the coarse timestamps may not move at all.
    let fx = Fixture::new();
    populate(&fx);
    let first = fx.scan();
    assert_eq!(content(&fx, &first, b"top"), b"top-level file");
    rewrite_keeping_size_and_mtime(&fx.at(b"top"), b"TOP-LEVEL FILE");
    rewrite_keeping_size_and_mtime(&fx.at(b"h2"), b"HARD-LINKED");
    let second = fx.scan();
    assert_eq!(content(&fx, &second, b"top"), b"TOP-LEVEL FILE");
    assert_eq!(content(&fx, &second, b"h1"), b"HARD-LINKED");
    // Racily clean files are read again, not trusted.
    assert!(second.files_read >= 2);
}

#[test]
fn a_corrupt_cache_is_ignored_with_a_warning() {
    let fx = Fixture::new();
    populate(&fx);
    wait_until_settled();
    let first = fx.scan();
    let stat_dir = fx.store_path.join("cache/stat");
    let caches: Vec<_> = std::fs::read_dir(&stat_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(caches.len(), 1);
    let good = std::fs::read(&caches[0]).unwrap();

    for bad in [
        good[..good.len() / 2].to_vec(),
        b"garbage".to_vec(),
        // Same magic, version 99.
        [&good[..8], &99u32.to_le_bytes()[..], &good[12..]].concat(),
    ] {
        std::fs::write(&caches[0], &bad).unwrap();
        let out = fx.scan();
        assert_eq!(out.snapshot.id(), first.snapshot.id());
        assert_eq!(out.files_read, 22);
        assert_eq!(out.warnings.len(), 1, "{:?}", out.warnings);
        assert_eq!(out.warnings[0].kind, ScanWarningKind::StatCacheIgnored);
        // And replaced by a good one.
        assert_eq!(fx.scan().files_read, 0);
    }
}

#[test]
fn cached_chunks_missing_from_the_store_are_read_again() {
    let fx = Fixture::new();
    populate(&fx);
    wait_until_settled();
    let first = fx.scan();
    fx.store.flush().unwrap();
    assert_eq!(fx.scan().files_read, 0);

    // Lose every pack (as if collected): the cache names chunks no longer there.
    let Fixture {
        _tmp,
        store,
        store_path,
        tree,
    } = fx;
    drop(store);
    for e in std::fs::read_dir(store_path.join("packs")).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    let store = Store::open(&store_path).unwrap();
    let out = store.scan(&tree, &ScanOptions::default()).unwrap();
    assert_eq!(out.files_read, 22);
    assert_eq!(out.snapshot.id(), first.snapshot.id());
    let EntryKind::File { chunks, .. } = &out.snapshot.get(&crate::p(b"top")).unwrap().kind else {
        panic!("top is a file")
    };
    assert_eq!(store.read_all(chunks).unwrap(), b"top-level file");
}

#[test]
fn xattrs_come_from_the_cache_and_an_xattr_change_is_seen() {
    let fx = Fixture::new();
    if !crate::user_xattrs_supported(&fx.tree) {
        return;
    }
    populate(&fx);
    let set = |path: &[u8], value: &[u8]| {
        rustix::fs::lsetxattr(
            fx.at(path),
            "user.note",
            value,
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
    };
    set(b"d/f1", b"one");
    set(b"d/f2", b"two");
    wait_until_settled();
    let note = |out: &layerstore::ScanOutcome, path: &[u8]| {
        entry(out, path).meta.xattrs.get(&b"user.note"[..]).cloned()
    };

    let first = fx.scan();
    let second = fx.scan();
    assert_eq!(second.files_read, 0, "everything came from the cache");
    assert_eq!(note(&second, b"d/f1").as_deref(), Some(&b"one"[..]));
    assert_eq!(note(&second, b"d/f2").as_deref(), Some(&b"two"[..]));
    assert_eq!(second.snapshot.id(), first.snapshot.id());

    // Changing only an xattr moves the ctime: that file is examined again.
    set(b"d/f2", b"TWO");
    let third = fx.scan();
    assert_eq!(note(&third, b"d/f2").as_deref(), Some(&b"TWO"[..]));
    assert_eq!(note(&third, b"d/f1").as_deref(), Some(&b"one"[..]));
    assert_eq!(third.files_read, 1);
    assert_ne!(third.snapshot.id(), first.snapshot.id());
}

/// Files whose other links are outside the tree (a `cp -al` copy of it, a
/// package manager's shared store) take the stat cache like any other: a
/// rescan reads none of them and takes their xattrs from the cache; a change
/// made through the outside link is seen.
#[test]
fn files_linked_from_outside_the_tree_take_the_cache() {
    let fx = Fixture::new();
    populate(&fx);
    let outside = fx.tree.parent().unwrap().join("outside");
    std::fs::create_dir(&outside).unwrap();
    for i in 0..20 {
        std::fs::hard_link(
            fx.at(format!("d/f{i}").as_bytes()),
            outside.join(format!("f{i}")),
        )
        .unwrap();
    }
    let xattrs = crate::user_xattrs_supported(&fx.tree);
    let set = |path: &std::path::Path, value: &[u8]| {
        rustix::fs::lsetxattr(path, "user.note", value, rustix::fs::XattrFlags::empty()).unwrap();
    };
    let note = |out: &layerstore::ScanOutcome| {
        entry(out, b"d/f5")
            .meta
            .xattrs
            .get(&b"user.note"[..])
            .cloned()
    };
    if xattrs {
        set(&fx.at(b"d/f5"), b"inside");
    }
    wait_until_settled();

    let first = fx.scan();
    assert_eq!(first.files_read, 22, "20 + top + one read for h1/h2");
    let second = fx.scan();
    assert_eq!((second.files_read, second.bytes_read), (0, 0));
    assert_eq!(second.files_from_cache, 22);
    assert_eq!(second.snapshot, first.snapshot);
    if xattrs {
        assert_eq!(note(&second), Some(b"inside".to_vec()));
    }

    // Through the outside links: same-size content with the mtime put back,
    // and an xattr.
    rewrite_keeping_size_and_mtime(&outside.join("f7"), b"CONTENT 0007");
    if xattrs {
        set(&outside.join("f5"), b"outside");
    }
    let third = fx.scan();
    assert_eq!(content(&fx, &third, b"d/f7"), b"CONTENT 0007");
    let changed = if xattrs {
        assert_eq!(note(&third), Some(b"outside".to_vec()));
        2
    } else {
        1
    };
    assert_eq!(third.files_read, changed);
    assert_eq!(third.files_from_cache, 22 - changed);
    let uncached = fx.scan_with(&ScanOptions::default().use_stat_cache(false));
    assert_eq!(uncached.snapshot, third.snapshot);
}
