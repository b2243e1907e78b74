//! Refused destinations and damaged stores: clear errors naming what is wrong.

use std::path::{Path, PathBuf};

use layerstore::{CheckoutOptions, ChunkList, Entry, Error, Metadata, Snapshot, Store, TreePath};

use super::{new_store, p, random_bytes};

fn one_file(path: &str, chunks: ChunkList) -> Snapshot {
    Snapshot::from_sorted(vec![
        Entry::dir(TreePath::ROOT, Metadata::new(0o755)),
        Entry::dir(p("dir"), Metadata::new(0o755)),
        Entry::file(p(path), chunks, Metadata::new(0o644)),
    ])
    .unwrap()
}

#[test]
fn a_non_empty_destination_is_refused_and_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let store = new_store(tmp.path());
    let dest = tmp.path().join("busy");
    std::fs::create_dir(&dest).unwrap();
    std::fs::write(dest.join("precious"), b"keep").unwrap();
    let snapshot = one_file("dir/f", store.put_bytes(b"x").unwrap());
    let err = store
        .checkout(&snapshot, &dest, &CheckoutOptions::default())
        .unwrap_err();
    assert!(
        matches!(&err, Error::DestinationNotEmpty { path } if *path == dest),
        "{err}"
    );
    assert!(err.to_string().contains(&*dest.to_string_lossy()), "{err}");
    let names: Vec<_> = std::fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["precious"]);

    // A destination that is a file is refused too, naming it.
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let err = store
        .checkout(&snapshot, &file, &CheckoutOptions::default())
        .unwrap_err();
    assert!(
        matches!(&err, Error::Io { path, .. } if *path == file),
        "{err}"
    );
}

fn packs(store_dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(store_dir.join("packs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pack"))
        .collect();
    out.sort();
    out
}

#[test]
fn a_corrupt_pack_is_an_error_naming_the_file_and_the_pack() {
    let tmp = tempfile::tempdir().unwrap();
    let content = random_bytes(100_000, 7);
    let snapshot = {
        let store = new_store(tmp.path());
        let chunks = store.put_bytes(&content).unwrap();
        store.flush().unwrap();
        one_file("dir/victim", chunks)
    };
    let store_dir = tmp.path().join("store");
    let pack = packs(&store_dir).remove(0);
    let mut bytes = std::fs::read(&pack).unwrap();
    // Random content is stored raw: the middle of the pack is payload.
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&pack, &bytes).unwrap();

    let store = Store::open(&store_dir).unwrap();
    let dest = tmp.path().join("out");
    let err = store
        .checkout(&snapshot, &dest, &CheckoutOptions::default())
        .unwrap_err();
    let Error::Checkout { path, source } = &err else {
        panic!("expected Error::Checkout, got {err}");
    };
    assert_eq!(*path, dest.join("dir/victim"));
    assert!(matches!(**source, Error::Corrupt { .. }), "{source}");
    let msg = err.to_string();
    assert!(
        msg.contains(&*dest.join("dir/victim").to_string_lossy())
            && msg.contains(&*pack.to_string_lossy()),
        "{msg}"
    );
    // The partial checkout is left for the caller; no corrupt byte was written.
    let written = std::fs::read(dest.join("dir/victim")).unwrap();
    assert!(written.len() <= content.len());
    assert!(written.iter().zip(&content).all(|(w, c)| w == c || *w == 0));
}

#[test]
fn a_missing_chunk_is_an_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let store = new_store(tmp.path());
    let snapshot = one_file("dir/ghost", ChunkList::of(b"never stored"));
    let dest = tmp.path().join("out");
    let err = store
        .checkout(&snapshot, &dest, &CheckoutOptions::default())
        .unwrap_err();
    assert!(
        matches!(&err, Error::Checkout { path, source }
            if *path == dest.join("dir/ghost") && matches!(**source, Error::ChunkNotFound { .. })),
        "{err}"
    );
}

#[test]
fn strict_owner_without_privilege_is_an_error_naming_the_path() {
    if !rustix::process::geteuid().is_root() {
        let tmp = tempfile::tempdir().unwrap();
        strict_owner_case(tmp.path());
        return;
    }
    // Root may give files away, so strict_owner cannot fail: as another user.
    let tmp = tempfile::tempdir().unwrap();
    crate::common::open_to_all(tmp.path());
    crate::common::run_unprivileged("bad_input::strict_owner_child", tmp.path());
}

/// The case above, in a child without privilege.
#[test]
#[ignore = "run by strict_owner_without_privilege_is_an_error_naming_the_path as another user"]
fn strict_owner_child() {
    let Some(dir) = crate::common::child_arg() else {
        return; // only meaningful as the child of the test above
    };
    strict_owner_case(Path::new(&dir));
}

fn strict_owner_case(dir: &Path) {
    assert!(!rustix::process::geteuid().is_root());
    let store = new_store(dir);
    let mut meta = Metadata::new(0o644);
    meta.uid = rustix::process::geteuid().as_raw().wrapping_add(1);
    let snapshot = Snapshot::from_sorted(vec![
        Entry::dir(TreePath::ROOT, Metadata::new(0o755)),
        Entry::file(p("given-away"), store.put_bytes(b"x").unwrap(), meta),
    ])
    .unwrap();
    let dest = dir.join("out");
    let options = CheckoutOptions::default().strict_owner(true);
    let err = store.checkout(&snapshot, &dest, &options).unwrap_err();
    assert!(
        matches!(&err, Error::Io { path, .. } if *path == dest.join("given-away")),
        "{err}"
    );
}
