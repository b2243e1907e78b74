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
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("not a directory") && msg.contains("file"),
        "{msg}"
    );

    let err = fx
        .store
        .scan(fx.at(b"missing"), &ScanOptions::default())
        .unwrap_err();
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
    if rustix::process::geteuid().is_root() {
        // Root reads a mode-000 file anyway; the crate's unit tests cover the
        // error path for root.
        eprintln!("skipping: root can read a mode-000 file");
        return;
    }
    let fx = Fixture::new();
    std::fs::write(fx.at(b"secret"), b"x").unwrap();
    std::fs::set_permissions(
        fx.at(b"secret"),
        std::os::unix::fs::PermissionsExt::from_mode(0o000),
    )
    .unwrap();
    let err = fx
        .store
        .scan(&fx.tree, &ScanOptions::default())
        .unwrap_err();
    assert!(err.to_string().contains("secret"), "{err}");
}
