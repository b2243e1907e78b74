//! Every kind and every attribute, checked out and compared with `lstat`.

use std::os::unix::fs::MetadataExt;

use layerstore::{
    CheckoutOptions, ChunkList, Entry, EntryKind, Metadata, Snapshot, Store, Timestamp, TreePath,
};

use super::{
    assert_same, expected, make_removable, new_store, p, random_bytes, require_root, walk,
};

/// `security.capability`, version 2, effective, permitting `CAP_NET_RAW`.
const CAP_NET_RAW: [u8; 20] = [
    0x01, 0, 0, 0x02, 0x00, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// Builds metadata; owners are only honoured when the test runs as root,
/// else every entry belongs to the current user.
struct Owners {
    privileged: bool,
    uid: u32,
    gid: u32,
}

impl Owners {
    fn current(privileged: bool) -> Self {
        Owners {
            privileged,
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
        }
    }

    fn meta(&self, mode: u32, (secs, nanos): (i64, u32), (uid, gid): (u32, u32)) -> Metadata {
        let mut m = Metadata::new(mode);
        m.mtime = Timestamp::new(secs, nanos);
        (m.uid, m.gid) = if self.privileged {
            (uid, gid)
        } else {
            (self.uid, self.gid)
        };
        m
    }
}

fn xattr(mut m: Metadata, name: &[u8], value: &[u8]) -> Metadata {
    m.xattrs.insert(name.to_vec(), value.to_vec());
    m
}

fn file(store: &Store, path: impl Into<Vec<u8>>, content: &[u8], meta: Metadata) -> Entry {
    Entry::file(p(path), store.put_bytes(content).unwrap(), meta)
}

/// A tree with every kind and every attribute that the process can restore.
fn every_kind(store: &Store, o: &Owners, xattrs: bool) -> Snapshot {
    let t = |s, n| (s, n);
    let mut root = o.meta(0o2775, t(1_600_000_000, 123_456_789), (4321, 4322));
    let mut sh_meta = o.meta(0o755, t(-86_400, 7), (0, 0));
    let mut ping_meta = o.meta(0o6755, t(1_650_000_000, 1), (1000, 1001));
    let mut tagged = o.meta(0o640, t(1_700_000_001, 2), (1000, 1000));
    if xattrs {
        root = xattr(root, b"user.root", b"r");
        sh_meta = xattr(sh_meta, b"user.shell", b"yes");
        tagged = xattr(tagged, b"user.a", b"\x00\xffbinary");
        tagged = xattr(tagged, b"user.empty", b"");
        tagged = xattr(tagged, b"user.big", &[7u8; 3000]);
    }
    if o.privileged {
        // Set after the chown to 1000, which would remove it.
        ping_meta = xattr(ping_meta, b"security.capability", &CAP_NET_RAW);
    }
    let big = random_bytes(700_000, 1);
    let mut entries = vec![
        Entry::dir(TreePath::ROOT, root),
        Entry::dir(p("bin"), o.meta(0o755, t(1_500_000_000, 1), (0, 0))),
        file(store, "bin/ping", &random_bytes(5000, 2), ping_meta),
        file(store, "bin/sh", &big, sh_meta.clone()),
        Entry::hardlink(p("bin/sh-link"), p("bin/sh"), sh_meta.clone()),
        file(
            store,
            "empty",
            b"",
            o.meta(
                if o.privileged { 0 } else { 0o400 },
                t(1, 0),
                (65534, 65534),
            ),
        ),
        Entry::dir(p("links"), o.meta(0o750, t(1_400_000_000, 42), (0, 0))),
        Entry::symlink(
            p("links/abs"),
            "/etc/passwd",
            o.meta(0o777, t(1_300_000_000, 300), (5, 6)),
        ),
        Entry::symlink(
            p("links/dangling"),
            "nowhere/at/all",
            o.meta(0o777, t(1_300_000_001, 301), (0, 0)),
        ),
        Entry::hardlink(p("links/hard"), p("bin/sh"), sh_meta),
        Entry::symlink(
            p("links/rel"),
            "../bin/sh",
            o.meta(0o777, t(1_300_000_002, 302), (0, 0)),
        ),
        Entry::symlink(
            p("links/up"),
            "..",
            o.meta(0o777, t(1_300_000_003, 303), (0, 0)),
        ),
        Entry::dir(p("ro"), o.meta(0o555, t(1_100_000_000, 77), (0, 0))),
        file(
            store,
            "ro/inner",
            b"read only",
            o.meta(0o444, t(14, 14), (0, 0)),
        ),
        file(store, "tagged", b"xattrs", tagged),
        Entry::dir(
            p("tmp"),
            o.meta(0o1777, t(1_700_000_000, 999_999_999), (0, 0)),
        ),
        Entry::new(
            p("tmp/fifo"),
            EntryKind::Fifo,
            o.meta(0o620, t(1_000_000_000, 500), (0, 5)),
        ),
    ];
    entries.extend(names(store, o));
    if o.privileged {
        entries.extend(privileged_extras(o));
    }
    Snapshot::from_entries(entries).unwrap()
}

/// Names that are not UTF-8, or hold a newline or spaces.
fn names(store: &Store, o: &Owners) -> Vec<Entry> {
    let t = |s, n| (s, n);
    vec![
        Entry::dir(p("names"), o.meta(0o755, t(1_200_000_000, 5), (0, 0))),
        file(
            store,
            &b"names/ spaced name "[..],
            b"s",
            o.meta(0o644, t(10, 10), (0, 0)),
        ),
        file(
            store,
            &b"names/caf\xc3\xa9"[..],
            b"utf-8",
            o.meta(0o644, t(11, 11), (0, 0)),
        ),
        file(
            store,
            &b"names/line\nbreak"[..],
            b"newline",
            o.meta(0o644, t(12, 12), (0, 0)),
        ),
        file(
            store,
            &b"names/\xff\xfe"[..],
            b"not utf-8",
            o.meta(0o644, t(13, 13), (0, 0)),
        ),
    ]
}

/// Devices and `trusted.*` xattrs: only root can make them.
fn privileged_extras(o: &Owners) -> Vec<Entry> {
    let t = |s, n| (s, n);
    vec![
        Entry::dir(p("dev"), o.meta(0o755, t(900_000_000, 9), (0, 0))),
        Entry::new(
            p("dev/null"),
            EntryKind::CharDevice {
                rdev: rustix::fs::makedev(1, 3),
            },
            o.meta(0o666, t(900_000_001, 10), (0, 0)),
        ),
        Entry::new(
            p("dev/sda"),
            EntryKind::BlockDevice {
                rdev: rustix::fs::makedev(8, 300),
            },
            o.meta(0o660, t(900_000_002, 11), (0, 6)),
        ),
        Entry::new(
            p("dev/whiteout"),
            EntryKind::CharDevice { rdev: 0 },
            o.meta(0, t(900_000_003, 12), (0, 0)),
        ),
        Entry::dir(
            p("opaque"),
            xattr(
                o.meta(0o700, t(800_000_000, 8), (7, 7)),
                b"trusted.overlay.opaque",
                b"y",
            ),
        ),
    ]
}

#[test]
fn every_kind_and_attribute_round_trips() {
    let is_root = require_root("devices, foreign owners, trusted.* and security.capability");
    let tmp = tempfile::tempdir().unwrap();
    let store = new_store(tmp.path());
    let xattrs = super::user_xattrs_supported(tmp.path());
    let snapshot = every_kind(&store, &Owners::current(is_root), xattrs);
    let dest = tmp.path().join("out/nested");

    let outcome = store
        .checkout(&snapshot, &dest, &CheckoutOptions::default())
        .unwrap();

    let files: Vec<u64> = snapshot
        .iter()
        .filter_map(|e| match e.kind {
            EntryKind::File { size, .. } => Some(size),
            _ => None,
        })
        .collect();
    assert_eq!(outcome.files, files.len() as u64);
    assert_eq!(outcome.bytes, files.iter().sum::<u64>());
    assert!(outcome.skipped_devices.is_empty());

    let tree = walk(&dest);
    assert_same(&tree, &expected(&store, &snapshot, &[]));

    // Spot checks that do not go through the shared walker.
    let st = std::fs::symlink_metadata(dest.join("bin/ping")).unwrap();
    assert_eq!(st.mode() & 0o7777, 0o6755);
    let sh = std::fs::symlink_metadata(dest.join("bin/sh")).unwrap();
    let links = std::fs::symlink_metadata(dest.join("links/hard")).unwrap();
    assert_eq!((sh.ino(), sh.nlink()), (links.ino(), 3));
    assert_eq!(
        std::fs::read_link(dest.join("links/abs")).unwrap(),
        std::path::Path::new("/etc/passwd")
    );
    let root = std::fs::symlink_metadata(&dest).unwrap();
    assert_eq!(
        (root.mode() & 0o7777, root.mtime(), root.mtime_nsec()),
        (0o2775, 1_600_000_000, 123_456_789)
    );
    if is_root {
        assert_eq!((root.uid(), root.gid()), (4321, 4322));
        assert_eq!((st.uid(), st.gid()), (1000, 1001));
        let null = std::fs::symlink_metadata(dest.join("dev/null")).unwrap();
        assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
    }
    if xattrs {
        let mut value = vec![0u8; 4096];
        let n = rustix::fs::lgetxattr(dest.join("tagged"), "user.big", &mut value).unwrap();
        assert_eq!(value[..n], [7u8; 3000]);
        let n = rustix::fs::lgetxattr(&dest, "user.root", &mut value).unwrap();
        assert_eq!(&value[..n], b"r");
    }
    make_removable(&dest);
}

#[test]
fn an_existing_empty_directory_is_filled_and_gets_the_roots_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let store = new_store(tmp.path());
    let dest = tmp.path().join("empty");
    std::fs::create_dir(&dest).unwrap();
    let mut root = Metadata::new(0o711);
    root.uid = rustix::process::geteuid().as_raw();
    root.gid = rustix::process::getegid().as_raw();
    root.mtime = Timestamp::new(1_000_000_000, 999);
    let mut f = root.clone();
    f.mode = 0o600;
    let snapshot = Snapshot::from_sorted(vec![
        Entry::dir(TreePath::ROOT, root),
        Entry::file(p("a"), ChunkList::new(), f),
    ])
    .unwrap();
    let outcome = store
        .checkout(&snapshot, &dest, &CheckoutOptions::default())
        .unwrap();
    assert_eq!((outcome.files, outcome.bytes), (1, 0));
    assert_same(&walk(&dest), &expected(&store, &snapshot, &[]));
}

#[test]
fn the_empty_snapshot_gives_an_empty_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let store = new_store(tmp.path());
    let dest = tmp.path().join("out");
    let mut snapshot = Snapshot::empty().into_entries();
    snapshot[0].meta.uid = rustix::process::geteuid().as_raw();
    snapshot[0].meta.gid = rustix::process::getegid().as_raw();
    let snapshot = Snapshot::from_sorted(snapshot).unwrap();
    let outcome = store
        .checkout(&snapshot, &dest, &CheckoutOptions::default())
        .unwrap();
    assert_eq!(outcome, layerstore::CheckoutOutcome::default());
    assert_same(&walk(&dest), &expected(&store, &snapshot, &[]));
}

#[test]
fn skip_devices_skips_nothing_when_privileged() {
    if !require_root("making devices") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = new_store(tmp.path());
    let snapshot = Snapshot::from_sorted(vec![
        Entry::dir(TreePath::ROOT, Metadata::new(0o755)),
        Entry::new(
            p("tty"),
            EntryKind::CharDevice {
                rdev: rustix::fs::makedev(5, 0),
            },
            Metadata::new(0o666),
        ),
    ])
    .unwrap();
    let dest = tmp.path().join("out");
    let options = CheckoutOptions::default().skip_devices(true);
    let outcome = store.checkout(&snapshot, &dest, &options).unwrap();
    assert!(outcome.skipped_devices.is_empty());
    assert_same(&walk(&dest), &expected(&store, &snapshot, &[]));
}

/// The lazy FUSE view of a tree shows exactly what its checkout writes:
/// every kind and every attribute, hard links as one inode.
#[test]
fn a_fuse_view_shows_every_kind_and_attribute_as_checkout_writes_them() {
    use layerstore::mount::{FuseOptions, FuseView};
    if !std::path::Path::new("/dev/fuse").exists() {
        assert!(
            !super::common::strict(),
            "LAYERSTORE_REQUIRE_PRIVILEGED=1 and /dev/fuse is missing"
        );
        eprintln!("SKIPPED: no /dev/fuse");
        return;
    }
    let is_root = require_root("devices, foreign owners, trusted.* and security.capability");
    let tmp = crate::common::mounts::MountDir::new();
    let store = new_store(tmp.path());
    let xattrs = super::user_xattrs_supported(tmp.path());
    let snapshot = every_kind(&store, &Owners::current(is_root), xattrs);
    let tree = store.put_snapshot(&snapshot).unwrap();
    let dest = tmp.path().join("out");
    store
        .checkout(&snapshot, &dest, &CheckoutOptions::default())
        .unwrap();
    let checked_out = walk(&dest);

    let store = std::sync::Arc::new(store);
    let target = tmp.path().join("view");
    std::fs::create_dir(&target).unwrap();
    let view = FuseView::mount_tree(
        std::sync::Arc::clone(&store),
        tree,
        &target,
        &FuseOptions::default(),
    )
    .unwrap();
    let seen = walk(&target);
    let sh = std::fs::symlink_metadata(target.join("bin/sh")).unwrap();
    let hard = std::fs::symlink_metadata(target.join("links/hard")).unwrap();
    view.unmount().unwrap();

    assert_same(&seen, &checked_out);
    assert_same(&seen, &expected(&store, &snapshot, &[]));
    assert_eq!((sh.ino(), sh.nlink()), (hard.ino(), 3));
    make_removable(tmp.path());
}
