//! Every kind of entry, with its metadata, recorded as it is.

use std::os::unix::fs::{PermissionsExt, symlink};

use layerstore::{EntryKind, ScanWarningKind, Timestamp};

use crate::{Fixture, entry, require_root, set_mtime, user_xattrs_supported};

fn chmod(path: &std::path::Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// 700 KB that the chunker cuts into several chunks.
fn big_content() -> Vec<u8> {
    (0..700_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// Makes one of each kind of entry, with metadata worth checking; says
/// whether owners and devices could be set, and whether user xattrs were.
fn build_tree(fx: &Fixture) -> (bool, bool) {
    let root = fx.tree.clone();
    std::fs::create_dir(fx.at(b"dir")).unwrap();
    std::fs::create_dir(fx.at(b"tmp")).unwrap();
    std::fs::write(fx.at(b"dir/plain"), b"plain content").unwrap();
    std::fs::write(fx.at(b"setuid"), b"#!/bin/sh\n").unwrap();
    std::fs::write(fx.at(b"setgid"), b"").unwrap();
    std::fs::write(fx.at(b"empty"), b"").unwrap();
    std::fs::write(fx.at(b"big"), big_content()).unwrap();
    symlink("dir/plain", fx.at(b"link")).unwrap();
    symlink("/nonexistent/dangling", fx.at(b"dangling")).unwrap();
    // Bytes that are not UTF-8, and a newline, in names.
    std::fs::write(fx.at(b"caf\xe9"), b"latin-1").unwrap();
    std::fs::write(fx.at(b"two\nlines"), b"newline").unwrap();
    std::fs::create_dir(fx.at(b"\xff\xfe dir")).unwrap();
    std::fs::write(fx.at(b"\xff\xfe dir/x"), b"x").unwrap();
    crate::common::mknod(&fx.at(b"pipe"), rustix::fs::FileType::Fifo, 0o640, (0, 0));

    let privileged = require_root("owners and devices in the scan test");
    if privileged {
        std::os::unix::fs::lchown(fx.at(b"setuid"), Some(1234), Some(5678)).unwrap();
        std::os::unix::fs::lchown(fx.at(b"link"), Some(42), Some(43)).unwrap();
        for (name, file_type, rdev) in [
            (&b"null"[..], rustix::fs::FileType::CharacterDevice, (1, 3)),
            (b"loop", rustix::fs::FileType::BlockDevice, (7, 1234)),
        ] {
            crate::common::mknod(&fx.at(name), file_type, 0o600, rdev);
        }
    }
    // Modes after owners: a chown clears setuid and setgid.
    chmod(&fx.at(b"setuid"), 0o4755);
    chmod(&fx.at(b"setgid"), 0o2711);
    chmod(&fx.at(b"tmp"), 0o1777);
    chmod(&fx.at(b"dir/plain"), 0o600);
    let xattrs = user_xattrs_supported(&root);
    if xattrs {
        for (path, name, value) in [
            (fx.at(b"dir/plain"), &b"user.zeta"[..], &b"last"[..]),
            (fx.at(b"dir/plain"), b"user.alpha", b"\x00\xff binary"),
            (fx.at(b"dir"), b"user.on-a-dir", b""),
            (root.clone(), b"user.on-the-root", b"root"),
        ] {
            rustix::fs::lsetxattr(&path, name, value, rustix::fs::XattrFlags::empty()).unwrap();
        }
    }
    // Times last (children first), to the nanosecond, the root's too.
    set_mtime(&fx.at(b"dir/plain"), 1_600_000_000, 123_456_789);
    set_mtime(&fx.at(b"link"), 1_500_000_000, 1);
    set_mtime(&fx.at(b"dir"), 1_400_000_000, 999_999_999);
    set_mtime(&root, 1_300_000_000, 42);
    (privileged, xattrs)
}

#[test]
fn files_dirs_links_and_metadata_are_recorded_exactly() {
    let fx = Fixture::new();
    let (privileged, xattrs) = build_tree(&fx);
    let big = big_content();
    let out = fx.scan();
    let snap = &out.snapshot;

    let root_entry = snap.root();
    assert_eq!(root_entry.meta.mtime, Timestamp::new(1_300_000_000, 42));
    assert_eq!(
        entry(&out, b"dir").meta.mtime,
        Timestamp::new(1_400_000_000, 999_999_999)
    );
    assert!(entry(&out, b"dir").is_dir());

    let plain = entry(&out, b"dir/plain");
    assert_eq!(plain.meta.mode, 0o600);
    assert_eq!(plain.meta.mtime, Timestamp::new(1_600_000_000, 123_456_789));
    let EntryKind::File { size, chunks } = &plain.kind else {
        panic!("dir/plain is {:?}", plain.kind)
    };
    assert_eq!(*size, 13);
    assert_eq!(fx.store.read_all(chunks).unwrap(), b"plain content");

    let EntryKind::File { size, chunks } = &entry(&out, b"big").kind else {
        panic!("big is not a file")
    };
    assert_eq!(*size, big.len() as u64);
    assert!(
        chunks.chunks().len() > 1,
        "700 KB is cut into several chunks"
    );
    assert_eq!(fx.store.read_all(chunks).unwrap(), big);
    assert!(matches!(
        entry(&out, b"empty").kind,
        EntryKind::File { size: 0, .. }
    ));

    assert_eq!(entry(&out, b"setuid").meta.mode, 0o4755);
    assert_eq!(entry(&out, b"setgid").meta.mode, 0o2711);
    assert_eq!(entry(&out, b"tmp").meta.mode, 0o1777);

    let link = entry(&out, b"link");
    assert_eq!(
        link.kind,
        EntryKind::Symlink {
            target: b"dir/plain".to_vec()
        }
    );
    assert_eq!(link.meta.mtime, Timestamp::new(1_500_000_000, 1));
    assert_eq!(
        entry(&out, b"dangling").kind,
        EntryKind::Symlink {
            target: b"/nonexistent/dangling".to_vec()
        }
    );
    assert_eq!(entry(&out, b"pipe").kind, EntryKind::Fifo);
    assert_eq!(entry(&out, b"pipe").meta.mode, 0o640);

    for (name, content) in [
        (&b"caf\xe9"[..], &b"latin-1"[..]),
        (b"two\nlines", b"newline"),
    ] {
        let EntryKind::File { chunks, .. } = &entry(&out, name).kind else {
            panic!("not a file")
        };
        assert_eq!(fx.store.read_all(chunks).unwrap(), content);
    }
    assert!(entry(&out, b"\xff\xfe dir").is_dir());
    assert!(entry(&out, b"\xff\xfe dir/x").is_file());

    if privileged {
        let setuid = entry(&out, b"setuid");
        assert_eq!((setuid.meta.uid, setuid.meta.gid), (1234, 5678));
        assert_eq!(
            (link.meta.uid, link.meta.gid),
            (42, 43),
            "a link's own owner"
        );
        assert_eq!(
            entry(&out, b"null").kind,
            EntryKind::CharDevice {
                rdev: rustix::fs::makedev(1, 3)
            }
        );
        assert_eq!(
            entry(&out, b"loop").kind,
            EntryKind::BlockDevice {
                rdev: rustix::fs::makedev(7, 1234)
            }
        );
        assert_eq!(entry(&out, b"null").meta.mode, 0o600);
    }
    if xattrs {
        let names: Vec<&[u8]> = plain.meta.xattrs.keys().map(Vec::as_slice).collect();
        // Sorted by name, whatever order they were set in; `security.*` may
        // come along on some systems, so only the user ones are checked.
        let user: Vec<&[u8]> = names
            .into_iter()
            .filter(|n| n.starts_with(b"user."))
            .collect();
        assert_eq!(user, [&b"user.alpha"[..], b"user.zeta"]);
        assert_eq!(plain.meta.xattrs[&b"user.alpha"[..]], b"\x00\xff binary");
        assert_eq!(entry(&out, b"dir").meta.xattrs[&b"user.on-a-dir"[..]], b"");
        assert_eq!(root_entry.meta.xattrs[&b"user.on-the-root"[..]], b"root");
    }
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    // Every entry found, nothing more: 15 without privilege, 17 with.
    assert_eq!(snap.entries().len(), if privileged { 17 } else { 15 });
}

#[test]
fn hard_links_are_grouped_and_the_first_path_is_the_file() {
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.at(b"a/deep")).unwrap();
    std::fs::write(fx.at(b"m"), b"shared bytes").unwrap();
    std::fs::hard_link(fx.at(b"m"), fx.at(b"a/deep/l1")).unwrap();
    std::fs::hard_link(fx.at(b"m"), fx.at(b"z")).unwrap();
    std::fs::hard_link(fx.at(b"m"), fx.at(b"a.b")).unwrap();
    // A second group, and a file whose other name is outside the tree.
    std::fs::write(fx.at(b"b1"), b"other").unwrap();
    std::fs::hard_link(fx.at(b"b1"), fx.at(b"b2")).unwrap();
    let outside = fx.tree.parent().unwrap().join("outside-name");
    std::fs::write(fx.at(b"lonely"), b"one name inside").unwrap();
    std::fs::hard_link(fx.at(b"lonely"), &outside).unwrap();

    let out = fx.scan();
    // TreePath order: a < a/deep < a/deep/l1 < a.b < … < m < z.
    let first = entry(&out, b"a/deep/l1");
    let EntryKind::File { chunks, .. } = &first.kind else {
        panic!("the first path of the group is the file: {:?}", first.kind)
    };
    assert_eq!(fx.store.read_all(chunks).unwrap(), b"shared bytes");
    for later in [&b"a.b"[..], b"m", b"z"] {
        assert_eq!(
            entry(&out, later).kind,
            EntryKind::Hardlink {
                target: crate::p(b"a/deep/l1")
            },
            "{}",
            String::from_utf8_lossy(later)
        );
    }
    assert!(entry(&out, b"b1").is_file());
    assert_eq!(
        entry(&out, b"b2").kind,
        EntryKind::Hardlink {
            target: crate::p(b"b1")
        }
    );
    assert!(entry(&out, b"lonely").is_file());
    // Each inode was read once.
    assert_eq!(out.files_read, 3);
}

#[test]
fn sockets_are_skipped_with_a_warning() {
    let fx = Fixture::new();
    std::fs::create_dir(fx.at(b"run")).unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(fx.at(b"run/sock")).unwrap();
    std::fs::write(fx.at(b"run/file"), b"kept").unwrap();
    let out = fx.scan();
    assert!(out.snapshot.get(&crate::p(b"run/sock")).is_none());
    assert!(out.snapshot.get(&crate::p(b"run/file")).is_some());
    assert_eq!(out.warnings.len(), 1, "{:?}", out.warnings);
    assert_eq!(out.warnings[0].kind, ScanWarningKind::Socket);
    assert_eq!(out.warnings[0].path, crate::p(b"run/sock"));
    assert!(out.warnings[0].to_string().contains("run/sock"));
}
