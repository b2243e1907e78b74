//! Confinement and bad input: links are never followed, the root must be a
//! directory, unreadable files are errors naming them.

use std::os::unix::fs::symlink;

use layerstore::{EntryKind, Error, ScanOptions};

use crate::{Fixture, entry, p};

#[test]
fn a_symlink_to_etc_is_recorded_and_not_followed() {
    let fx = Fixture::new();
    symlink("/etc", fx.at(b"etc")).unwrap();
    std::fs::create_dir(fx.at(b"sub")).unwrap();
    symlink("../..", fx.at(b"sub/up")).unwrap();
    symlink("/etc/passwd", fx.at(b"sub/passwd")).unwrap();
    let out = fx.scan();
    assert_eq!(
        entry(&out, b"etc").kind,
        EntryKind::Symlink {
            target: b"/etc".to_vec()
        }
    );
    assert_eq!(
        entry(&out, b"sub/up").kind,
        EntryKind::Symlink {
            target: b"../..".to_vec()
        }
    );
    assert_eq!(
        entry(&out, b"sub/passwd").kind,
        EntryKind::Symlink {
            target: b"/etc/passwd".to_vec()
        }
    );
    // Nothing beneath the links, nothing read through them.
    assert_eq!(out.snapshot.entries().len(), 5);
    assert!(out.snapshot.descendants_of(&p(b"etc")).is_empty());
    assert_eq!(out.files_read, 0);
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
}

#[test]
fn the_root_must_be_a_directory() {
    let fx = Fixture::new();
    std::fs::write(fx.at(b"file"), b"x").unwrap();
    let err = fx
        .store
        .scan(fx.at(b"file"), &ScanOptions::default())
        .unwrap_err();
    assert!(matches!(err, Error::NoSuchDirectory { .. }), "{err:?}");
    assert_eq!(err.kind(), layerstore::ErrorKind::NotFound);
    let msg = err.to_string();
    assert!(
        msg.contains("not a directory") && msg.contains("file"),
        "{msg}"
    );

    let err = fx
        .store
        .scan(fx.at(b"missing"), &ScanOptions::default())
        .unwrap_err();
    assert!(matches!(err, Error::NoSuchDirectory { .. }), "{err:?}");
    assert!(err.to_string().contains("missing"), "{err}");

    let err = fx
        .store
        .scan(&fx.tree, &ScanOptions::default().threads(0))
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
}

#[test]
fn a_root_given_through_a_symlink_is_scanned_like_the_directory() {
    let fx = Fixture::new();
    std::fs::write(fx.at(b"f"), b"x").unwrap();
    let alias = fx.tree.parent().unwrap().join("alias");
    symlink(&fx.tree, &alias).unwrap();
    let direct = fx.scan().snapshot;
    let through = fx
        .store
        .scan(&alias, &ScanOptions::default())
        .unwrap()
        .snapshot;
    assert_eq!(direct.id(), through.id());
}

#[test]
fn an_unreadable_file_is_an_error_naming_it() {
    if !rustix::process::geteuid().is_root() {
        let tmp = tempfile::tempdir().unwrap();
        unreadable_file_case(tmp.path());
        return;
    }
    // Root reads a mode-000 file anyway: as another user.
    let tmp = tempfile::tempdir().unwrap();
    crate::common::open_to_all(tmp.path());
    crate::common::run_unprivileged("safety::unreadable_file_child", tmp.path());
}

/// The case above, in a child without privilege.
#[test]
#[ignore = "run by an_unreadable_file_is_an_error_naming_it as another user"]
fn unreadable_file_child() {
    let Some(dir) = crate::common::child_arg() else {
        return; // only meaningful as the child of the test above
    };
    unreadable_file_case(std::path::Path::new(&dir));
}

fn unreadable_file_case(dir: &std::path::Path) {
    assert!(!rustix::process::geteuid().is_root());
    let store =
        layerstore::Store::create(dir.join("store"), &layerstore::StoreOptions::default()).unwrap();
    let tree = dir.join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("secret"), b"x").unwrap();
    std::fs::set_permissions(
        tree.join("secret"),
        std::os::unix::fs::PermissionsExt::from_mode(0o000),
    )
    .unwrap();
    let err = store.scan(&tree, &ScanOptions::default()).unwrap_err();
    assert!(err.to_string().contains("secret"), "{err}");
}
