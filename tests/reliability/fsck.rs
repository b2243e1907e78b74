//! fsck finds damage anywhere and repair fixes what it can.

use layerstore::{FsckOptions, Store};

use super::{assert_image, files, make_image, new_store, packs_with, read_image};

fn repair() -> FsckOptions {
    FsckOptions::default().repair(true)
}

#[test]
fn a_clean_store_is_clean() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = new_store(dir.path());
    make_image(&store, "a", &files(1, 2, 10));
    store.flush().unwrap();
    let report = store.fsck(&FsckOptions::default()).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert!(report.chunks_checked > 10);
    assert_eq!(report.images_checked, 1);
    let report = store.fsck(&repair()).unwrap();
    assert!(
        report.is_clean() && report.repaired.is_empty(),
        "{report:?}"
    );
}

#[test]
fn a_flipped_bit_anywhere_in_a_pack_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = new_store(dir.path());
    make_image(&store, "a", &files(2, 2, 10));
    store.flush().unwrap();
    drop(store);
    let pack = packs_with(&path, ".pack").remove(0);
    let original = std::fs::read(&pack).unwrap();
    // About 120 offsets spread over the pack, plus its first and last bytes.
    let step = (original.len() / 120).max(1);
    let mut offsets: Vec<usize> = (0..original.len()).step_by(step).collect();
    offsets.push(original.len() - 1);
    for at in offsets {
        let mut bytes = original.clone();
        bytes[at] ^= 1 << (at % 8);
        std::fs::write(&pack, &bytes).unwrap();
        let store = Store::open(&path).unwrap();
        let report = store.fsck(&FsckOptions::default()).unwrap();
        assert!(
            report.problems.iter().any(|p| p.path == pack),
            "flip at {at} not found: {:?}",
            report.problems
        );
    }
    std::fs::write(&pack, &original).unwrap();
    let store = Store::open(&path).unwrap();
    assert!(store.fsck(&FsckOptions::default()).unwrap().is_clean());
}

/// fsck reads a pack in pieces of a few MiB, in parallel, hashing each piece
/// and decoding the frames that start in it: in a pack of several pieces, a
/// flipped bit at every MiB boundary (and beside it), in a frame header, in a
/// raw frame's payload and in the last byte is found, and no read returns
/// wrong bytes.
#[test]
fn a_flipped_bit_in_a_pack_of_many_pieces_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = new_store(dir.path());
    let contents = files(7, 40, 400);
    let id = make_image(&store, "a", &contents);
    store.flush().unwrap();
    drop(store);
    let pack = packs_with(&path, ".pack").remove(0);
    let original = std::fs::read(&pack).unwrap();
    let len = original.len();
    assert!(len > 7 << 20, "the pack has {len} bytes");
    let mut offsets = vec![0, len - 1];
    for mib in (1 << 20..len).step_by(1 << 20) {
        offsets.extend([mib - 1, mib, mib + 1]);
    }
    // Frame headers: the codec, the chunk count and the table of a few frames.
    let headers: Vec<usize> = original
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == b"LSFR")
        .map(|(at, _)| at)
        .collect();
    assert!(headers.len() >= 6, "{} frames", headers.len());
    for &at in headers.iter().step_by(headers.len() / 6) {
        offsets.extend([at + 4, at + 16, at + 30]);
    }
    // Inside a large (raw, incompressible) file's bytes.
    let big = &contents[0].1;
    let raw_at = original
        .windows(64)
        .position(|w| w == &big[50_000..50_064])
        .expect("the file is stored raw");
    offsets.push(raw_at + 17);
    for at in offsets {
        let mut bytes = original.clone();
        bytes[at] ^= 1 << (at % 8);
        std::fs::write(&pack, &bytes).unwrap();
        let store = Store::open(&path).unwrap();
        let report = store.fsck(&FsckOptions::default()).unwrap();
        assert!(
            report.problems.iter().any(|p| p.path == pack),
            "flip at {at} not found: {:?}",
            report.problems
        );
        match read_image(&store, &id) {
            Ok(read) => {
                let mut read = read;
                read.sort();
                let mut expected = contents.clone();
                expected.sort();
                assert!(read == expected, "flip at {at}: wrong bytes read");
            }
            Err(err) => assert!(
                err.to_string().contains(&pack.display().to_string()),
                "flip at {at}: {err}"
            ),
        }
        if at == raw_at + 17 {
            assert!(
                report.affected_images.len() == 1
                    && report
                        .problems
                        .iter()
                        .any(|p| p.what.contains("does not match")),
                "{report:?}"
            );
        }
    }
    std::fs::write(&pack, &original).unwrap();
    let store = Store::open(&path).unwrap();
    assert!(store.fsck(&FsckOptions::default()).unwrap().is_clean());
}

#[test]
fn a_deleted_index_is_rebuilt_by_repair() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = new_store(dir.path());
    let a = files(3, 2, 10);
    let b = files(4, 1, 10);
    let a_id = make_image(&store, "a", &a);
    let b_id = make_image(&store, "b", &b);
    store.flush().unwrap();
    drop(store);
    for idx in packs_with(&path, ".idx") {
        std::fs::remove_file(idx).unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert!(read_image(&store, &a_id).is_err());
    let report = store.fsck(&FsckOptions::default()).unwrap();
    let pack = packs_with(&path, ".pack").remove(0);
    assert!(report.problems.iter().any(|p| p.path == pack), "{report:?}");
    assert_eq!(report.affected_images.len(), 2);

    let report = store.fsck(&repair()).unwrap();
    assert!(
        report
            .repaired
            .iter()
            .any(|p| p.path == pack.with_extension("idx")),
        "{report:?}"
    );
    assert!(report.affected_images.is_empty(), "{report:?}");
    // This handle sees the rebuilt index at once; so does a new one.
    assert_image(&store, &a_id, &a);
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_image(&store, &a_id, &a);
    assert_image(&store, &b_id, &b);
    let report = store.fsck(&FsckOptions::default()).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
}

#[test]
fn a_truncated_pack_is_quarantined_and_the_image_named() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = new_store(dir.path());
    let a = files(5, 2, 10);
    let a_id = make_image(&store, "a", &a);
    store.flush().unwrap();
    let first_pack = packs_with(&path, ".pack");
    let b_id = make_image(&store, "b", &files(6, 3, 10));
    store.flush().unwrap();
    drop(store);
    let b_pack = packs_with(&path, ".pack")
        .into_iter()
        .find(|p| !first_pack.contains(p))
        .unwrap();
    let len = std::fs::metadata(&b_pack).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&b_pack)
        .unwrap()
        .set_len(len / 2)
        .unwrap();

    let store = Store::open(&path).unwrap();
    let report = store.fsck(&FsckOptions::default()).unwrap();
    assert!(
        report.problems.iter().any(|p| p.path == b_pack),
        "{report:?}"
    );
    assert_eq!(report.affected_images.len(), 1, "{report:?}");
    assert_eq!(report.affected_images[0].tag.to_string(), "b:latest");

    let report = store.fsck(&repair()).unwrap();
    assert!(!b_pack.exists());
    let name = b_pack.file_name().unwrap();
    assert!(path.join("quarantine").join(name).exists());
    assert!(
        path.join("quarantine")
            .join(b_pack.with_extension("idx").file_name().unwrap())
            .exists()
    );
    assert_eq!(report.affected_images.len(), 1, "{report:?}");
    assert_eq!(report.affected_images[0].tag.to_string(), "b:latest");
    assert_eq!(report.affected_images[0].image, b_id);
    assert_image(&store, &a_id, &a);
    // What remains wrong is the image, not the packs.
    let report = store.fsck(&FsckOptions::default()).unwrap();
    assert!(
        report
            .problems
            .iter()
            .all(|p| p.path.to_string_lossy().contains("refs")),
        "{:?}",
        report.problems
    );
}

/// A pack or index that cannot be read at all (a failing disk; here a
/// directory where the file was, which reads as `EISDIR`) is a problem named
/// by its path, not the end of fsck: the other packs are still verified, the
/// images it holds are named, and repair leaves the pack where it is.
#[test]
fn a_pack_that_cannot_be_read_is_reported_and_the_rest_checked() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = new_store(dir.path());
    let a = files(7, 2, 10);
    let a_id = make_image(&store, "a", &a);
    store.flush().unwrap();
    let first_pack = packs_with(&path, ".pack");
    make_image(&store, "b", &files(8, 3, 10));
    store.flush().unwrap();
    drop(store);
    let b_pack = packs_with(&path, ".pack")
        .into_iter()
        .find(|p| !first_pack.contains(p))
        .unwrap();
    let b_idx = b_pack.with_extension("idx");
    let saved = dir.path().join("saved.pack");
    std::fs::rename(&b_pack, &saved).unwrap();
    std::fs::create_dir(&b_pack).unwrap();

    let store = Store::open(&path).unwrap();
    let report = store.fsck(&FsckOptions::default()).unwrap();
    let on_b: Vec<_> = report
        .problems
        .iter()
        .filter(|p| p.path == b_pack)
        .collect();
    assert!(
        on_b.iter().any(|p| p.what.contains("cannot be read")),
        "{report:?}"
    );
    assert!(report.chunks_checked > 0, "the other pack was not checked");
    let tags: Vec<_> = report
        .affected_images
        .iter()
        .map(|a| a.tag.to_string())
        .collect();
    assert_eq!(tags, ["b:latest"], "{report:?}");

    let report = store.fsck(&repair()).unwrap();
    assert!(
        b_pack.is_dir(),
        "repair moved or removed the unreadable pack"
    );
    assert!(b_idx.is_file());
    let tags: Vec<_> = report
        .affected_images
        .iter()
        .map(|a| a.tag.to_string())
        .collect();
    assert_eq!(tags, ["b:latest"], "{report:?}");
    assert_image(&store, &a_id, &a);

    // The disk recovers: everything is whole again.
    std::fs::remove_dir(&b_pack).unwrap();
    std::fs::rename(&saved, &b_pack).unwrap();
    let store = Store::open(&path).unwrap();
    let report = store.fsck(&FsckOptions::default()).unwrap();
    assert!(report.is_clean(), "{report:?}");
}

/// An index that cannot be read is reported, and repair rebuilds it from its
/// pack.
#[test]
fn an_index_that_cannot_be_read_is_rebuilt_by_repair() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = new_store(dir.path());
    let a = files(9, 2, 10);
    let a_id = make_image(&store, "a", &a);
    store.flush().unwrap();
    drop(store);
    let idx = packs_with(&path, ".idx").remove(0);
    std::fs::remove_file(&idx).unwrap();
    std::fs::create_dir(&idx).unwrap();

    let store = Store::open(&path).unwrap();
    let report = store.fsck(&FsckOptions::default()).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.path == idx && p.what.contains("cannot be read")),
        "{report:?}"
    );
    let report = store.fsck(&repair()).unwrap();
    assert!(idx.is_file(), "index not rebuilt: {report:?}");
    assert!(
        path.join("quarantine")
            .join(idx.file_name().unwrap())
            .is_dir(),
        "the unreadable index was not kept in quarantine/"
    );
    let store = Store::open(&path).unwrap();
    assert!(store.fsck(&FsckOptions::default()).unwrap().is_clean());
    assert_image(&store, &a_id, &a);
}
