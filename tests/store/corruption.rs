//! Damaged stores: reads fail with an error naming the file, never a panic and
//! never a wrong byte.

use std::path::{Path, PathBuf};

use layerstore::{Error, FsckOptions, Store};

use super::{new_store, random_bytes, text_bytes};

fn files_with(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(dir.join("store/packs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    out.sort();
    out
}

/// A store with one pack holding a large raw chunk, a large compressed chunk
/// and a group of small compressed chunks.
fn populated(dir: &Path) -> Vec<(Vec<u8>, layerstore::ChunkList)> {
    let store = new_store(dir);
    let contents = vec![
        random_bytes(100_000, 1),
        text_bytes(100_000, 2),
        text_bytes(3000, 3),
        text_bytes(4000, 4),
    ];
    let out = contents
        .into_iter()
        .map(|c| {
            let list = store.put_bytes(&c).unwrap();
            (c, list)
        })
        .collect();
    store.flush().unwrap();
    out
}

/// Every byte of a small pack flipped in turn: a read returns the right bytes
/// or fails naming the pack, and fsck reports every flip.
#[test]
fn every_flipped_byte_in_a_pack_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let contents: Vec<_> = [text_bytes(1500, 5), random_bytes(300, 6)]
        .into_iter()
        .map(|c| {
            let list = store.put_bytes(&c).unwrap();
            (c, list)
        })
        .collect();
    store.flush().unwrap();
    drop(store);
    let pack = files_with(dir.path(), ".pack").remove(0);
    let original = std::fs::read(&pack).unwrap();
    assert!(original.len() < 8192, "{} bytes", original.len());
    let mut failed_reads = 0;
    for at in 0..original.len() {
        let mut bytes = original.clone();
        bytes[at] ^= 0x01;
        std::fs::write(&pack, &bytes).unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        for (content, list) in &contents {
            match store.read_all(list) {
                Ok(read) => assert_eq!(&read, content, "wrong bytes returned after flip at {at}"),
                Err(err) => {
                    failed_reads += 1;
                    assert!(matches!(err, Error::Corrupt { .. }), "flip at {at}: {err}");
                    assert!(
                        err.to_string().contains(&pack.display().to_string()),
                        "{err}"
                    );
                }
            }
        }
        let report = store.fsck(&FsckOptions::default()).unwrap();
        assert!(!report.is_clean(), "fsck missed the flip at {at}");
    }
    // The payloads are read, and checked, by a plain read.
    assert!(failed_reads > 0);
}

/// A larger pack (raw and compressed chunks, a group of small ones), every
/// 97th byte flipped: a read returns the right bytes or fails naming the pack.
#[test]
fn a_flipped_byte_in_a_large_pack_never_returns_wrong_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let contents = populated(dir.path());
    let pack = files_with(dir.path(), ".pack").remove(0);
    let original = std::fs::read(&pack).unwrap();
    // Every 97th byte, so that headers, tables and payloads are all hit.
    for at in (0..original.len()).step_by(97) {
        let mut bytes = original.clone();
        bytes[at] ^= 0x01;
        std::fs::write(&pack, &bytes).unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        for (content, list) in &contents {
            match store.read_all(list) {
                Ok(read) => assert_eq!(&read, content, "wrong bytes returned after flip at {at}"),
                Err(err) => {
                    assert!(matches!(err, Error::Corrupt { .. }), "flip at {at}: {err}");
                    assert!(
                        err.to_string().contains(&pack.display().to_string()),
                        "{err}"
                    );
                }
            }
        }
    }
    // Flips in the payloads must be found (not all reads may succeed).
    let mut bytes = original.clone();
    let last = bytes.len() - 10;
    bytes[last] ^= 0xff;
    std::fs::write(&pack, &bytes).unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    assert!(contents.iter().any(|(_, l)| store.read_all(l).is_err()));
}

#[test]
fn a_truncated_pack_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let contents = populated(dir.path());
    let pack = files_with(dir.path(), ".pack").remove(0);
    let len = std::fs::metadata(&pack).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&pack)
        .unwrap()
        .set_len(len / 3)
        .unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let errors: Vec<_> = contents
        .iter()
        .filter_map(|(_, l)| store.read_all(l).err())
        .collect();
    assert!(!errors.is_empty());
    for err in errors {
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        assert!(
            err.to_string().contains(".idx") || err.to_string().contains(".pack"),
            "{err}"
        );
    }
}

#[test]
fn a_deleted_index_makes_chunks_missing() {
    let dir = tempfile::tempdir().unwrap();
    let contents = populated(dir.path());
    for idx in files_with(dir.path(), ".idx") {
        std::fs::remove_file(idx).unwrap();
    }
    let store = Store::open(dir.path().join("store")).unwrap();
    for (_, list) in &contents {
        let err = store.read_all(list).unwrap_err();
        assert!(matches!(err, Error::ChunkNotFound { .. }), "{err}");
        assert!(err.to_string().contains("store"), "{err}");
    }
}

#[test]
fn a_deleted_pack_names_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let contents = populated(dir.path());
    let pack = files_with(dir.path(), ".pack").remove(0);
    std::fs::remove_file(&pack).unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let err = store.read_all(&contents[0].1).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(
        err.to_string().contains(&pack.display().to_string()),
        "{err}"
    );
}

#[test]
fn a_damaged_index_header_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let contents = populated(dir.path());
    let idx = files_with(dir.path(), ".idx").remove(0);
    let mut bytes = std::fs::read(&idx).unwrap();
    bytes[20] ^= 0x7f; // the record count
    std::fs::write(&idx, &bytes).unwrap();
    // Opening skips the index (so that fsck can still run) and remembers it.
    let store = Store::open(dir.path().join("store")).unwrap();
    let damaged = store.damaged_indexes();
    assert_eq!(damaged.len(), 1);
    assert_eq!(damaged[0].0, idx);
    for (_, list) in &contents {
        let err = store.read_all(list).unwrap_err();
        assert!(matches!(err, Error::ChunkNotFound { .. }), "{err}");
    }
    let report = store.fsck(&FsckOptions::default()).unwrap();
    assert!(
        report.problems.iter().any(|p| p.path == idx),
        "{:?}",
        report.problems
    );
}

#[test]
fn index_offsets_past_the_end_are_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let contents = populated(dir.path());
    let idx = files_with(dir.path(), ".idx").remove(0);
    let mut bytes = std::fs::read(&idx).unwrap();
    // Point every record's payload offset far past the pack (the checksum is
    // not verified on open; fsck verifies it).
    let header = 8 + 4 + 4 + 8 + 256 * 4;
    let count = (bytes.len() - header - 32) / 64;
    for r in 0..count {
        let at = header + r * 64 + 32;
        bytes[at..at + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    }
    std::fs::write(&idx, &bytes).unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    for (_, list) in &contents {
        let err = store.read_all(list).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        assert!(
            err.to_string().contains(&idx.display().to_string()),
            "{err}"
        );
    }
}

#[test]
fn a_pack_of_garbage_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let contents = populated(dir.path());
    let pack = files_with(dir.path(), ".pack").remove(0);
    let len = std::fs::metadata(&pack).unwrap().len() as usize;
    std::fs::write(&pack, random_bytes(len, 77)).unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    for (_, list) in &contents {
        let err = store.read_all(list).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    }
}
