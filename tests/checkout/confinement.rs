//! No symlink in a snapshot, wherever it points, makes a write land outside
//! the destination: links are created as links and never followed.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use layerstore::{
    CheckoutOptions, ChunkList, Entry, Error, Metadata, Snapshot, Timestamp, TreePath,
};

use super::{assert_same, expected, new_store, p, walk};

/// A directory beside the destination holding one file that nothing may touch.
struct Outside {
    dir: PathBuf,
    victim: PathBuf,
}

impl Outside {
    fn new(tmp: &Path) -> Self {
        let dir = tmp.join("outside");
        std::fs::create_dir(&dir).unwrap();
        let victim = dir.join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        rustix::fs::chmod(&victim, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
        let times = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: 1_000,
                tv_nsec: 1,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: 1_000,
                tv_nsec: 1,
            },
        };
        rustix::fs::utimensat(
            rustix::fs::CWD,
            &victim,
            &times,
            rustix::fs::AtFlags::empty(),
        )
        .unwrap();
        Outside { dir, victim }
    }

    fn assert_untouched(&self) {
        let names: Vec<_> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["victim"], "something was created outside");
        let st = std::fs::symlink_metadata(&self.victim).unwrap();
        assert_eq!(std::fs::read(&self.victim).unwrap(), b"precious");
        assert_eq!(
            (st.mode() & 0o7777, st.mtime(), st.mtime_nsec(), st.nlink()),
            (0o600, 1_000, 1, 1)
        );
        assert_eq!(
            (st.uid(), st.gid()),
            (
                rustix::process::geteuid().as_raw(),
                rustix::process::getegid().as_raw()
            )
        );
        assert_eq!(
            rustix::fs::llistxattr_query(&self.victim).unwrap(),
            0,
            "an xattr was set outside"
        );
    }
}

fn mine(mode: u32) -> Metadata {
    let mut m = Metadata::new(mode);
    m.uid = rustix::process::geteuid().as_raw();
    m.gid = rustix::process::getegid().as_raw();
    m
}

fn link_meta(secs: i64) -> Metadata {
    let mut m = mine(0o777);
    m.mtime = Timestamp::new(secs, 123);
    if rustix::process::geteuid().is_root() {
        (m.uid, m.gid) = (4242, 4243);
    }
    m
}

#[test]
fn entries_beneath_a_symlink_are_refused_by_the_snapshot() {
    let root = || Entry::dir(TreePath::ROOT, Metadata::new(0o755));
    let f = |s: &str| Entry::file(p(s), ChunkList::new(), Metadata::new(0o644));
    for target in ["/etc", "..", "../..", "sub"] {
        let entries = vec![
            root(),
            Entry::symlink(p("a"), target, Metadata::new(0o777)),
            f("a/passwd"),
        ];
        let err = Snapshot::from_sorted(entries).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidTree { path, .. } if path == "a/passwd"),
            "{err}"
        );
    }
    // A hard link cannot reach through a symlink either.
    let err = Snapshot::from_sorted(vec![
        root(),
        Entry::symlink(p("a"), "/etc", Metadata::new(0o777)),
        Entry::hardlink(p("b"), p("a/passwd"), Metadata::new(0o644)),
    ])
    .unwrap_err();
    assert!(matches!(err, Error::InvalidTree { .. }), "{err}");
    // Nor a directory shadowing a symlink of the same name.
    let err = Snapshot::from_sorted(vec![
        root(),
        Entry::symlink(p("a"), "/etc", Metadata::new(0o777)),
        Entry::dir(p("a"), Metadata::new(0o755)),
    ])
    .unwrap_err();
    assert!(matches!(err, Error::InvalidTree { .. }), "{err}");
}

#[test]
fn escaping_symlinks_are_created_as_links_and_never_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let store = new_store(tmp.path());
    let outside = Outside::new(tmp.path());
    let dest = tmp.path().join("dest");
    let abs = outside.victim.as_os_str().as_bytes().to_vec();
    let snapshot = Snapshot::from_sorted(vec![
        Entry::dir(TreePath::ROOT, mine(0o755)),
        Entry::symlink(p("abs"), abs.clone(), link_meta(1)),
        Entry::symlink(
            p("abs-dir"),
            outside.dir.as_os_str().as_bytes(),
            link_meta(2),
        ),
        Entry::dir(p("d"), mine(0o755)),
        Entry::symlink(p("d/esc"), "../../outside/victim", link_meta(3)),
        Entry::symlink(p("d/up"), "..", link_meta(4)),
        Entry::file(p("d/z"), store.put_bytes(b"inside").unwrap(), mine(0o644)),
        Entry::symlink(p("self"), "self", link_meta(5)),
        Entry::symlink(p("up"), "..", link_meta(6)),
    ])
    .unwrap();
    store
        .checkout(&snapshot, &dest, &CheckoutOptions::default())
        .unwrap();
    assert_same(&walk(&dest), &expected(&store, &snapshot, &[]));
    outside.assert_untouched();
}

#[test]
fn an_xattr_on_a_symlink_to_outside_never_lands_on_its_target() {
    let tmp = tempfile::tempdir().unwrap();
    if !super::user_xattrs_supported(tmp.path()) {
        return;
    }
    let store = new_store(tmp.path());
    let outside = Outside::new(tmp.path());
    let mut meta = link_meta(1);
    meta.xattrs.insert(b"user.evil".to_vec(), b"1".to_vec());
    let snapshot = Snapshot::from_sorted(vec![
        Entry::dir(TreePath::ROOT, mine(0o755)),
        Entry::symlink(p("abs"), outside.victim.as_os_str().as_bytes(), meta),
    ])
    .unwrap();
    let dest = tmp.path().join("dest");
    // Linux allows no user.* xattr on a link itself: an error naming the link.
    let err = store
        .checkout(&snapshot, &dest, &CheckoutOptions::default())
        .unwrap_err();
    assert!(
        matches!(&err, Error::Xattr { path, .. } if *path == dest.join("abs")),
        "{err}"
    );
    outside.assert_untouched();
}
