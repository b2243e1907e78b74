//! Directories that are not stores, configs from the future, full disks.

use layerstore::{Error, Store, StoreOptions};

use super::{new_store, random_bytes, require_root};

#[test]
fn a_directory_that_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, Error::NotAStore { .. }), "{err}");
    assert!(err.to_string().contains(&dir.path().display().to_string()));
    let err = Store::open(dir.path().join("absent")).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(err.to_string().contains("absent"));
    std::fs::write(dir.path().join("somefile"), b"x").unwrap();
    let err = Store::create(dir.path(), &StoreOptions::default()).unwrap_err();
    assert!(err.to_string().contains("somefile"), "{err}");
}

#[test]
fn a_config_from_a_newer_version_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    drop(new_store(dir.path()));
    let config = dir.path().join("store/config");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("version = 3", "version = 4")).unwrap();
    let err = Store::open(dir.path().join("store")).unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnsupportedVersion {
                found: 4,
                supported: 3,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("config"));
    std::fs::write(&config, b"\x00\xffgarbage").unwrap();
    let err = Store::open(dir.path().join("store")).unwrap_err();
    assert!(matches!(err, Error::BadConfig { .. }), "{err}");
}

#[test]
fn create_is_idempotent_and_options_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let list = store.put_bytes(b"kept").unwrap();
    store.flush().unwrap();
    drop(store);
    let store = new_store(dir.path());
    assert_eq!(store.read_all(&list).unwrap(), b"kept");
    let err = Store::create(
        dir.path().join("other"),
        &StoreOptions::default().zstd_level(99),
    )
    .unwrap_err();
    assert!(matches!(err, Error::BadConfig { .. }), "{err}");
}

/// Unmounts on drop, also when the test fails.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_fails_cleanly_and_keeps_what_was_stored() {
    if !require_root("mounts a small tmpfs to fill it") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(status.success(), "mount tmpfs failed");
    let _unmount = Unmount(mnt.clone());

    let store = Store::create(mnt.join("store"), &StoreOptions::default()).unwrap();
    let kept = random_bytes(1 << 20, 1);
    let kept_list = store.put_bytes(&kept).unwrap();
    store.flush().unwrap();
    let result = store
        .put_bytes(&random_bytes(8 << 20, 2))
        .and_then(|_| store.flush());
    let err = result.unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(
        err.to_string().contains(&mnt.display().to_string()),
        "{err}"
    );
    let raw = match &err {
        Error::Io { source, .. } => source.raw_os_error(),
        _ => None,
    };
    assert_eq!(raw, Some(rustix::io::Errno::NOSPC.raw_os_error()), "{err}");
    drop(store);
    let store = Store::open(mnt.join("store")).unwrap();
    assert_eq!(store.read_all(&kept_list).unwrap(), kept);
    assert_sound(&store, "after the failed write");

    // Fill what is left, so that even a small write finds no space.
    let filler = mnt.join("filler");
    fill(&filler);
    let small = random_bytes(100_000, 3);
    let err = store
        .put_bytes(&small)
        .and_then(|_| store.flush())
        .unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert_sound(&store, "with the disk full");

    // Once space is back, writing works again.
    std::fs::remove_file(&filler).unwrap();
    let again = store.put_bytes(&small).unwrap();
    store.flush().unwrap();
    assert_eq!(store.read_all(&again).unwrap(), small);
    assert_eq!(store.read_all(&kept_list).unwrap(), kept);
    assert_sound(&store, "once space is back");
}

/// Asserts that fsck finds no problem in `store`.
fn assert_sound(store: &Store, when: &str) {
    let report = store.fsck(&layerstore::FsckOptions::default()).unwrap();
    assert!(report.is_clean(), "{when}: {:#?}", report.problems);
}

/// Writes zeros to `path` until the filesystem is full.
fn fill(path: &std::path::Path) {
    use std::io::Write as _;
    let mut file = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 64 << 10];
    loop {
        match file.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                assert_eq!(
                    e.raw_os_error(),
                    Some(rustix::io::Errno::NOSPC.raw_os_error())
                );
                break;
            }
        }
    }
}
