//! Tests of the confined root: refused paths and links, and what each
//! operation creates, reads and sets beneath it.

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;

use super::*;
use crate::fsutil::device;

/// A root in a fresh temporary directory, next to an "outside" directory
/// that nothing may touch.
struct Fixture {
    _tmp: tempfile::TempDir,
    root_path: PathBuf,
    outside: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root_path = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&root_path).unwrap();
        std::fs::create_dir(&outside).unwrap();
        Fixture {
            _tmp: tmp,
            root_path,
            outside,
        }
    }

    /// The root, resolving with `openat2` or with the walk.
    fn root(&self, use_openat2: bool) -> ConfinedDir {
        let mut root = ConfinedDir::open(&self.root_path).unwrap();
        root.use_openat2 = use_openat2;
        root
    }

    fn assert_outside_untouched(&self) {
        let left: Vec<_> = std::fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            left.is_empty(),
            "something landed outside the root: {left:?}"
        );
    }
}

fn meta(mode: u32, sec: i64, nsec: u32) -> FileAttrs {
    FileAttrs {
        mode,
        uid: None,
        gid: None,
        mtime_sec: sec,
        mtime_nsec: nsec,
    }
}

#[test]
fn validate_refuses_what_is_not_a_plain_relative_path() {
    for bad in [
        &b""[..],
        b"/etc/passwd",
        b"..",
        b"../x",
        b"a/../../x",
        b"a/..",
        b".",
        b"./a",
        b"a/./b",
        b"a//b",
        b"a/",
        b"a\0b",
    ] {
        let err = validate(bad).unwrap_err();
        assert!(
            matches!(err, Error::InvalidPath { .. }),
            "{}: {err}",
            lossy(bad)
        );
    }
    for good in [
        &b"a"[..],
        b"a/b/c",
        b"..a",
        b"a..",
        b".hidden/x",
        b"...",
        b"\xff\xfe/\x80",
    ] {
        validate(good).unwrap();
    }
    let msg = validate(b"a/../b").unwrap_err().to_string();
    assert!(msg.contains("a/../b") && msg.contains("'..'"), "{msg}");
}

#[test]
fn absolute_and_dotdot_paths_are_refused_by_every_operation() {
    let fx = Fixture::new();
    let root = fx.root(true);
    for bad in [&b"/x"[..], b"../x", b"a/../../x"] {
        assert!(matches!(
            root.create_file(bad, 0o644),
            Err(Error::InvalidPath { .. })
        ));
        assert!(matches!(
            root.mkdir(bad, 0o755),
            Err(Error::InvalidPath { .. })
        ));
        assert!(matches!(
            root.create_dir_all(bad, 0o755),
            Err(Error::InvalidPath { .. })
        ));
        assert!(matches!(
            root.symlink(bad, b"t"),
            Err(Error::InvalidPath { .. })
        ));
        assert!(matches!(
            root.hardlink(b"x", bad),
            Err(Error::InvalidPath { .. })
        ));
        assert!(matches!(root.remove(bad), Err(Error::InvalidPath { .. })));
        assert!(matches!(root.lstat(bad), Err(Error::InvalidPath { .. })));
        assert!(matches!(
            root.open_read(bad),
            Err(Error::InvalidPath { .. })
        ));
    }
    fx.assert_outside_untouched();
}

/// Every writing operation through an intermediate symbolic link fails
/// with `SymlinkInPath`, and nothing appears outside.
fn refuses_writes_through(root: &ConfinedDir, link: &[u8]) {
    let under = |rest: &[u8]| [link, rest].concat();
    let refused = |res: Result<()>, what: &str| match res {
        Err(Error::SymlinkInPath { component, .. }) => {
            assert!(
                component.as_bytes().starts_with(link),
                "{what}: component {component}"
            );
        }
        other => panic!(
            "{what} through {}: expected SymlinkInPath, got {other:?}",
            lossy(link)
        ),
    };
    refused(
        root.create_file(&under(b"/file"), 0o644).map(drop),
        "create_file",
    );
    refused(
        root.create_file(&under(b"/b/file"), 0o644).map(drop),
        "create_file deeper",
    );
    // A parent descriptor kept for another directory is not reused.
    let mut parent = None;
    root.create_file_reusing(b"reused-a", 0o644, &mut parent)
        .expect("a file at the root");
    refused(
        root.create_file_reusing(&under(b"/file"), 0o644, &mut parent)
            .map(drop),
        "create_file_reusing",
    );
    std::fs::remove_file(root.path().join("reused-a")).expect("remove reused-a");
    refused(root.mkdir(&under(b"/d"), 0o755), "mkdir");
    refused(
        root.create_dir_all(&under(b"/d/e"), 0o755),
        "create_dir_all",
    );
    refused(root.symlink(&under(b"/s"), b"/etc/passwd"), "symlink");
    refused(
        root.mknod(&under(b"/p"), SpecialFile::Fifo, 0o644, 0),
        "mknod",
    );
    refused(
        root.hardlink(b"inside", &under(b"/victim")),
        "hardlink target",
    );
    refused(root.hardlink(&under(b"/l"), b"inside"), "hardlink name");
    refused(root.remove(&under(b"/victim")).map(drop), "remove");
    refused(
        root.set_metadata(&under(b"/victim"), &meta(0o777, 0, 0)),
        "set_metadata",
    );
    refused(
        root.set_xattr(&under(b"/victim"), b"user.x", b"1"),
        "set_xattr",
    );
    refused(root.open_read(&under(b"/victim")).map(drop), "open_read");
    refused(root.lstat(&under(b"/victim")).map(drop), "lstat");
}

#[test]
fn symlinks_out_of_the_root_are_never_followed() {
    for use_openat2 in [true, false] {
        let fx = Fixture::new();
        let root = fx.root(use_openat2);
        std::fs::write(fx.root_path.join("inside"), b"in").unwrap();
        // An absolute link, a relative one climbing out, and `a` -> the
        // outside directory with `a/b` expected beneath.
        std::os::unix::fs::symlink(&fx.outside, fx.root_path.join("abs")).unwrap();
        std::os::unix::fs::symlink("../outside", fx.root_path.join("rel")).unwrap();
        std::os::unix::fs::symlink(&fx.outside, fx.root_path.join("a")).unwrap();
        // Even a link that stays inside is refused as an intermediate.
        std::fs::create_dir(fx.root_path.join("real")).unwrap();
        std::os::unix::fs::symlink("real", fx.root_path.join("inner")).unwrap();
        for link in [&b"abs"[..], b"rel", b"a", b"inner"] {
            refuses_writes_through(&root, link);
        }
        let err = root.create_file(b"a/b/file", 0o644).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("a/b/file") && msg.contains("'a'"), "{msg}");
        assert!(msg.contains(&*fx.root_path.to_string_lossy()), "{msg}");
        fx.assert_outside_untouched();
        assert!(
            std::fs::read_dir(fx.root_path.join("real"))
                .unwrap()
                .next()
                .is_none()
        );
    }
}

#[test]
fn a_symlink_as_final_component_is_acted_on_itself() {
    let fx = Fixture::new();
    let root = fx.root(true);
    let victim = fx.outside.join("victim");
    std::fs::write(&victim, b"keep").unwrap();
    std::fs::set_permissions(&victim, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let before = std::fs::metadata(&victim).unwrap();
    std::os::unix::fs::symlink(&victim, fx.root_path.join("l")).unwrap();

    // Creating a file or reading through it fails.
    assert!(root.create_file(b"l", 0o644).is_err());
    assert!(root.open_read(b"l").is_err());
    // Metadata lands on the link, not on its target.
    root.set_metadata(b"l", &meta(0o777, 1_000_000_000, 5))
        .unwrap();
    let after = std::fs::metadata(&victim).unwrap();
    assert_eq!(after.mode() & 0o7777, 0o600);
    assert_eq!(after.mtime(), before.mtime());
    let st = root.lstat(b"l").unwrap();
    assert_eq!((st.st_mtime, st.st_mtime_nsec), (1_000_000_000, 5));
    assert_eq!(root.read_link(b"l").unwrap(), victim.as_os_str().as_bytes());
    // Removing it removes the link only.
    assert!(root.remove(b"l").unwrap());
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
}

#[test]
fn files_directories_and_links_are_created_beneath_the_root() {
    for use_openat2 in [true, false] {
        let fx = Fixture::new();
        let root = fx.root(use_openat2);
        assert_eq!(root.path(), fx.root_path);
        let st = rustix::fs::fstat(&root.fd).unwrap();
        assert_eq!(FileType::from_raw_mode(st.st_mode), FileType::Directory);
        root.create_dir_all(b"usr/local/bin", 0o755).unwrap();
        root.create_dir_all(b"usr/local/bin", 0o755).unwrap();
        root.mkdir(b"etc", 0o755).unwrap();
        assert!(root.mkdir(b"etc", 0o755).is_err());
        let mut f = root.create_file(b"usr/local/bin/tool", 0o755).unwrap();
        f.write_all(b"#!/bin/sh\n").unwrap();
        drop(f);
        assert!(
            root.create_file(b"usr/local/bin/tool", 0o755).is_err(),
            "create_file must not replace"
        );
        root.symlink(b"usr/bin", b"local/bin").unwrap();
        root.hardlink(b"etc/tool", b"usr/local/bin/tool").unwrap();
        let mut text = String::new();
        root.open_read(b"etc/tool")
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "#!/bin/sh\n");
        assert_eq!(root.lstat(b"etc/tool").unwrap().st_nlink, 2);
        assert_eq!(root.read_link(b"usr/bin").unwrap(), b"local/bin");
        assert_eq!(
            root.read_dir(b"").unwrap(),
            [b"etc".to_vec(), b"usr".to_vec()]
        );
        assert_eq!(
            root.read_dir(b"usr").unwrap(),
            [b"bin".to_vec(), b"local".to_vec()]
        );
        // Reading through the link in the middle is refused too.
        assert!(matches!(
            root.open_read(b"usr/bin/tool"),
            Err(Error::SymlinkInPath { .. })
        ));
        assert!(
            root.open_read(b"usr").is_err(),
            "a directory is not a regular file"
        );
        // A missing parent is an error naming the path, not a creation.
        let err = root
            .create_file(b"nope/file", 0o644)
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope"), "{err}");
        fx.assert_outside_untouched();
    }
}

#[test]
fn non_utf8_names_work() {
    let fx = Fixture::new();
    let root = fx.root(true);
    root.mkdir(b"d\xff", 0o755).unwrap();
    root.create_file(b"d\xff/f\xfe\x80", 0o644)
        .unwrap()
        .write_all(b"bytes")
        .unwrap();
    root.symlink(b"d\xff/l\xc3", b"f\xfe\x80").unwrap();
    assert_eq!(
        root.read_dir(b"d\xff").unwrap(),
        [b"f\xfe\x80".to_vec(), b"l\xc3".to_vec()]
    );
    assert_eq!(root.read_link(b"d\xff/l\xc3").unwrap(), b"f\xfe\x80");
    assert_eq!(root.lstat(b"d\xff/f\xfe\x80").unwrap().st_size, 5);
    let on_disk = fx.root_path.join(OsStr::from_bytes(b"d\xff/f\xfe\x80"));
    assert_eq!(std::fs::read(on_disk).unwrap(), b"bytes");
    let err = root.mkdir(b"d\xff", 0o755).unwrap_err().to_string();
    assert!(err.contains("d\u{fffd}"), "{err}");
    assert!(root.remove(b"d\xff").unwrap());
    assert!(root.read_dir(b"").unwrap().is_empty());
}

#[test]
fn modes_owner_and_nanosecond_mtimes_round_trip() {
    let fx = Fixture::new();
    let root = fx.root(true);
    root.create_file(b"suid", 0o644).unwrap();
    root.create_file(b"sgid", 0o644).unwrap();
    root.mkdir(b"tmp", 0o755).unwrap();
    root.mkdir(b"shared", 0o755).unwrap();
    root.mknod(b"fifo", SpecialFile::Fifo, 0o600, 0).unwrap();
    let uid = rustix::process::geteuid().as_raw();
    let gid = rustix::process::getegid().as_raw();
    for (path, mode, nsec) in [
        (&b"suid"[..], 0o4755, 123_456_789),
        (b"sgid", 0o2755, 1),
        (b"tmp", 0o1777, 999_999_999),
        (b"shared", 0o2775, 0),
        (b"fifo", 0o640, 500),
        // The root's own metadata.
        (b"", 0o750, 42),
    ] {
        let m = FileAttrs {
            uid: Some(uid),
            gid: Some(gid),
            ..meta(mode, 1_700_000_000, nsec)
        };
        root.set_metadata(path, &m).unwrap();
        let st = root.lstat(path).unwrap();
        assert_eq!(st.st_mode & 0o7777, mode, "{}", lossy(path));
        assert_eq!((st.st_uid, st.st_gid), (uid, gid));
        assert_eq!(st.st_mtime, 1_700_000_000);
        assert_eq!(st.st_mtime_nsec, u64::from(nsec), "{}", lossy(path));
    }
    // Times before the epoch too.
    root.set_metadata(b"suid", &meta(0o4755, -86_400, 7))
        .unwrap();
    let st = root.lstat(b"suid").unwrap();
    assert_eq!((st.st_mtime, st.st_mtime_nsec), (-86_400, 7));
    assert_eq!(st.st_mode & 0o7777, 0o4755);
}

#[test]
fn xattrs_round_trip_beneath_the_root() {
    let fx = Fixture::new();
    if !crate::testing::user_xattrs_supported(&fx.root_path) {
        return;
    }
    let root = fx.root(true);
    root.mkdir(b"d", 0o755).unwrap();
    root.create_file(b"d/f\xff", 0o644).unwrap();
    root.set_xattr(b"d/f\xff", b"user.b", b"2").unwrap();
    root.set_xattr(b"d/f\xff", b"user.a", b"\x00\x01").unwrap();
    root.set_xattr(b"d", b"user.dir", b"yes").unwrap();
    root.set_xattr(b"", b"user.root", b"r").unwrap();
    assert_eq!(
        root.xattrs(b"d/f\xff").unwrap(),
        [
            (b"user.a".to_vec(), b"\x00\x01".to_vec()),
            (b"user.b".to_vec(), b"2".to_vec())
        ]
    );
    assert_eq!(
        root.xattrs(b"d").unwrap(),
        [(b"user.dir".to_vec(), b"yes".to_vec())]
    );
    assert_eq!(
        root.xattrs(b"").unwrap(),
        [(b"user.root".to_vec(), b"r".to_vec())]
    );
    root.remove_xattr(b"d/f\xff", b"user.b").unwrap();
    assert_eq!(root.xattrs(b"d/f\xff").unwrap().len(), 1);
    // A link's own attributes, not its target's, are read.
    root.symlink(b"l", b"d").unwrap();
    assert!(root.xattrs(b"l").unwrap().is_empty());
    // Errors name the real path and the attribute, not /proc.
    let err = root
        .set_xattr(b"missing", b"user.z", b"1")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("user.z") && err.contains(&*fx.root_path.join("missing").to_string_lossy()),
        "{err}"
    );
}

#[test]
fn fifo_needs_no_privilege_and_open_read_refuses_it_without_blocking() {
    let fx = Fixture::new();
    let root = fx.root(true);
    root.mknod(b"p", SpecialFile::Fifo, 0o644, 0).unwrap();
    let st = root.lstat(b"p").unwrap();
    assert_eq!(FileType::from_raw_mode(st.st_mode), FileType::Fifo);
    assert!(root.open_read(b"p").is_err());
}

#[test]
fn devices_keep_their_numbers() {
    if !crate::testing::privileged("making device nodes (CAP_MKNOD)") {
        return;
    }
    let fx = Fixture::new();
    let root = fx.root(true);
    root.mknod(
        b"null",
        SpecialFile::CharDevice,
        0o666,
        device::makedev(1, 3),
    )
    .unwrap();
    root.mknod(
        b"sda",
        SpecialFile::BlockDevice,
        0o660,
        device::makedev(8, 300),
    )
    .unwrap();
    let st = root.lstat(b"null").unwrap();
    assert_eq!(
        FileType::from_raw_mode(st.st_mode),
        FileType::CharacterDevice
    );
    assert_eq!(
        (device::major(st.st_rdev), device::minor(st.st_rdev)),
        (1, 3)
    );
    let st = root.lstat(b"sda").unwrap();
    assert_eq!(FileType::from_raw_mode(st.st_mode), FileType::BlockDevice);
    assert_eq!(
        (device::major(st.st_rdev), device::minor(st.st_rdev)),
        (8, 300)
    );
    // A whiteout as overlayfs writes it: a 0:0 character device.
    root.mknod(b".wh.x", SpecialFile::CharDevice, 0, 0).unwrap();
    assert_eq!(root.lstat(b".wh.x").unwrap().st_rdev, 0);
}

#[test]
fn remove_takes_whole_trees_and_never_follows_links() {
    let fx = Fixture::new();
    let root = fx.root(true);
    std::fs::write(fx.outside.join("precious"), b"p").unwrap();
    root.create_dir_all(b"t/a/b/c", 0o755).unwrap();
    root.create_file(b"t/a/f", 0o644).unwrap();
    root.create_file(b"t/a/b/c/g", 0o644).unwrap();
    root.symlink(b"t/a/out", fx.outside.as_os_str().as_bytes())
        .unwrap();
    root.mknod(b"t/a/b/p", SpecialFile::Fifo, 0o644, 0).unwrap();
    // A deep chain, deeper than is comfortable for recursion.
    let mut deep = b"t/deep".to_vec();
    for _ in 0..300 {
        deep.extend_from_slice(b"/d");
    }
    root.create_dir_all(&deep, 0o755).unwrap();
    assert!(root.remove(b"t").unwrap());
    assert!(!root.remove(b"t").unwrap());
    assert!(root.read_dir(b"").unwrap().is_empty());
    assert_eq!(std::fs::read(fx.outside.join("precious")).unwrap(), b"p");
}
