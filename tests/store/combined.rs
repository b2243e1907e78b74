//! The combined index (`packs/combined.midx`) is a cache: deleted or
//! damaged, it is rebuilt from the packs' own indexes and nothing reads
//! wrong meanwhile; and a handle keeps reading after another one has
//! consolidated the packs under it.

use std::path::{Path, PathBuf};

use layerstore::{ChunkList, FsckOptions, Store};

use super::{new_store, random_bytes};

fn combined(store: &Path) -> PathBuf {
    store.join("packs").join("combined.midx")
}

/// `n` flushes, one small pack each (automatic maintenance as given);
/// returns what each stored.
fn small_packs(store: &Store, n: u64, seed: u64) -> Vec<(ChunkList, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let bytes = random_bytes(3000 + i as usize, seed + i);
            let list = store.put_bytes(&bytes).unwrap();
            store.flush().unwrap();
            (list, bytes)
        })
        .collect()
}

fn assert_reads(store: &Store, stored: &[(ChunkList, Vec<u8>)]) {
    for (list, bytes) in stored {
        assert_eq!(&store.read_all(list).unwrap(), bytes);
    }
}

fn fsck_problems(store: &Store) -> Vec<String> {
    let report = store.fsck(&FsckOptions::default()).unwrap();
    report
        .problems
        .iter()
        .map(|p| format!("{}: {}", p.path.display(), p.what))
        .collect()
}

#[test]
fn flushes_fold_packs_into_the_combined_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let stored = small_packs(&store, 7, 1);
    assert!(
        !combined(store.path()).exists(),
        "7 packs are looked up alone"
    );
    let stored = [stored, small_packs(&store, 1, 100)].concat();
    assert!(
        combined(store.path()).exists(),
        "the 8th pack folds them in"
    );
    assert_reads(&store, &stored);
    drop(store);
    let store = Store::open(dir.path().join("store")).unwrap();
    assert_reads(&store, &stored);
    assert!(fsck_problems(&store).is_empty());
}

#[test]
fn a_deleted_combined_index_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let stored = small_packs(&store, 10, 1);
    let path = store.path().to_path_buf();
    drop(store);
    std::fs::remove_file(combined(&path)).unwrap();
    let store = Store::open(&path).unwrap();
    assert!(combined(&path).exists(), "opening rebuilt it");
    assert_reads(&store, &stored);
    assert!(fsck_problems(&store).is_empty());
}

#[test]
fn a_combined_index_with_a_bad_header_is_rebuilt_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let stored = small_packs(&store, 10, 1);
    let path = store.path().to_path_buf();
    drop(store);
    let mut bytes = std::fs::read(combined(&path)).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(combined(&path), &bytes).unwrap();
    let store = Store::open(&path).unwrap();
    assert_eq!(std::fs::read(combined(&path)).unwrap()[..6], *b"LSMIDX");
    assert_reads(&store, &stored);
    assert!(fsck_problems(&store).is_empty());
}

#[test]
fn a_corrupted_combined_index_reads_right_and_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let stored = small_packs(&store, 10, 1);
    let path = store.path().to_path_buf();
    drop(store);
    // Damage every record's payload offset (the header stays sound, so the
    // file is used until a read finds it wrong): records are 64 bytes
    // before the 32-byte checksum, an offset at byte 32 of each.
    let mut bytes = std::fs::read(combined(&path)).unwrap();
    let records_end = bytes.len() - 32;
    let count = u64::from_le_bytes(bytes[16..24].try_into().unwrap()) as usize;
    for r in 0..count {
        bytes[records_end - (r + 1) * 64 + 32] ^= 0x55;
    }
    std::fs::write(combined(&path), &bytes).unwrap();

    let store = Store::open(&path).unwrap();
    assert_reads(&store, &stored);
    let problems = fsck_problems(&store);
    assert!(
        problems.iter().any(|p| p.contains("combined.midx")),
        "{problems:#?}"
    );
    let report = store.fsck(&FsckOptions::default().repair(true)).unwrap();
    assert!(
        report.repaired.iter().any(|p| p.path == combined(&path)),
        "{report:#?}"
    );
    drop(store);
    let store = Store::open(&path).unwrap();
    assert!(fsck_problems(&store).is_empty());
    assert_reads(&store, &stored);
}

#[test]
fn a_reader_keeps_reading_after_another_handle_consolidates() {
    let dir = tempfile::tempdir().unwrap();
    let writer = new_store(dir.path());
    writer.set_auto_maintenance(false);
    let stored = small_packs(&writer, 20, 1);
    // The reader's view names the 20 small packs; it has read from the
    // first half (those pack files are open, as a FUSE server's would be),
    // not from the others.
    let reader = Store::open(writer.path()).unwrap();
    assert_reads(&reader, &stored[..10]);
    let packs = |p: &Path| {
        std::fs::read_dir(p.join("packs"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension() == Some("pack".as_ref()))
            .count()
    };
    assert_eq!(packs(writer.path()), 20);
    writer.maintain(true).unwrap();
    assert!(packs(writer.path()) < 20, "consolidated");
    assert_reads(&reader, &stored);
    for (list, _) in &stored {
        assert!(list.chunks().iter().all(|c| reader.contains(&c.id)));
    }
    assert!(fsck_problems(&reader).is_empty());
}
