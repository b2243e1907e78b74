//! Readers of untagged images and online gc: a root leased with
//! `Store::lease_root` keeps all it reaches for as long as the lease lives,
//! also when it is leased while a gc deletes; a dead reader's lease lapses.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use layerstore::{Error, FsckOptions, GcOptions, ImageId, Store};

use super::{assert_image, child, child_arg, files, make_image, new_store, put_image, read_image};

/// The files of the untagged image the reader reads.
fn read_files() -> Vec<(String, Vec<u8>)> {
    files(70, 2, 6)
}

/// A store with a tagged image and an untagged one (in a pack of its own,
/// put through a handle that is gone, so no put lease keeps it); returns the
/// store's path, the kept image and the untagged one.
fn store_with_untagged(dir: &Path) -> (std::path::PathBuf, ImageId, ImageId) {
    let (store, path) = new_store(dir);
    let kept = make_image(&store, "kept", &files(71, 1, 4));
    store.flush().unwrap();
    let untagged = put_image(&store, &read_files());
    store.flush().unwrap();
    drop(store);
    (path, kept, untagged)
}

fn zero_threshold() -> GcOptions {
    GcOptions::default().repack_dead_fraction(0.0)
}

#[test]
fn a_leased_untagged_image_survives_gc_and_goes_once_the_lease_drops() {
    let dir = tempfile::tempdir().unwrap();
    let (path, kept, untagged) = store_with_untagged(dir.path());
    let reader = Store::open(&path).unwrap();
    let lease = reader.lease_root(untagged).unwrap();
    assert_eq!(lease.id(), untagged.into());
    // gc through the reader's own handle and through another.
    let gc = Store::open(&path).unwrap();
    for store in [&reader, &gc] {
        let report = store.gc(&zero_threshold()).unwrap();
        assert_eq!(report.leased_roots, 1, "{report:?}");
        assert_eq!(report.chunks_freed, 0, "{report:?}");
        assert_image(store, &untagged, &read_files());
    }
    assert_image(&Store::open(&path).unwrap(), &untagged, &read_files());
    drop(lease);
    let report = gc.gc(&zero_threshold()).unwrap();
    assert_eq!(report.leased_roots, 0, "{report:?}");
    assert!(report.chunks_freed > 0, "{report:?}");
    assert!(read_image(&Store::open(&path).unwrap(), &untagged).is_err());
    assert_image(&gc, &kept, &files(71, 1, 4));
    assert!(gc.fsck(&FsckOptions::default()).unwrap().is_clean());
}

#[test]
fn leasing_a_root_the_store_does_not_hold_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = new_store(dir.path());
    let missing = layerstore::ChunkId::from_bytes([7; 32]);
    assert!(matches!(
        store.lease_root(missing),
        Err(Error::ChunkNotFound { id, .. }) if id == missing
    ));
}

/// Waits until a gc is deleting (`leases/gc.gen` of odd length).
fn wait_until_deleting(path: &Path) {
    let generation = path.join("leases/gc.gen");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&generation)
        .map_or(0, |m| m.len())
        .is_multiple_of(2)
    {
        assert!(
            Instant::now() < deadline,
            "no gc deleted anything for a minute"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A root leased while a gc that found it dead is deleting: before the gc
/// reads the leases again (`gc-intent`), the gc walks it then and keeps all
/// it reaches; after (`gc-fenced`), the lease waits for the deletions and
/// says the root is gone, never that a half-deleted image is kept.
#[test]
fn a_root_leased_while_gc_deletes_is_kept_whole_or_reported_gone() {
    for point in ["gc-intent", "gc-fenced"] {
        let dir = tempfile::tempdir().unwrap();
        let (path, kept, untagged) = store_with_untagged(dir.path());
        // Something else for the gc to delete, so that it has an intent even
        // once the untagged image is kept.
        let other = Store::open(&path).unwrap();
        put_image(&other, &files(72, 1, 3));
        other.flush().unwrap();
        drop(other);
        let reader = Store::open(&path).unwrap();
        layerstore::fault::arm_pause(point, Duration::from_millis(1500));
        let gc = {
            let path = path.clone();
            std::thread::spawn(move || Store::open(&path).unwrap().gc(&zero_threshold()).unwrap())
        };
        wait_until_deleting(&path);
        if point == "gc-fenced" {
            // The fence is read right after the generation goes odd.
            std::thread::sleep(Duration::from_millis(300));
        }
        let lease = reader.lease_root(untagged);
        let report = gc.join().unwrap();
        layerstore::fault::arm_pause(point, Duration::ZERO);
        eprintln!("{point}: {report:?}");
        if point == "gc-intent" {
            let _lease = lease.unwrap();
            assert_eq!(report.leased_roots, 1, "{report:?}");
            assert_image(&reader, &untagged, &read_files());
            assert_image(&Store::open(&path).unwrap(), &untagged, &read_files());
        } else {
            assert!(
                matches!(lease, Err(Error::ChunkNotFound { .. })),
                "{lease:?}"
            );
        }
        let store = Store::open(&path).unwrap();
        assert_image(&store, &kept, &files(71, 1, 4));
        assert!(store.fsck(&FsckOptions::default()).unwrap().is_clean());
    }
}

/// Child: leases the root given, reads the image whole, says `READY`, then
/// sleeps until killed.
#[test]
#[ignore = "child process of the root lease tests"]
fn child_reader() {
    let Some(arg) = child_arg() else { return };
    let (dir, id) = arg.split_once('|').unwrap();
    println!();
    let store = Store::open(dir).unwrap();
    let id: ImageId = id.parse().unwrap();
    let _lease = store.lease_root(id).unwrap();
    assert_image(&store, &id, &read_files());
    println!("READY");
    std::io::stdout().flush().unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

#[test]
fn a_killed_readers_root_lease_lapses() {
    let dir = tempfile::tempdir().unwrap();
    let (path, kept, untagged) = store_with_untagged(dir.path());
    let mut reader = child(
        "root_lease::child_reader",
        &format!("{}|{untagged}", path.display()),
    )
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let mut out = BufReader::new(reader.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("READY") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the reader ended");
    }
    let store = Store::open(&path).unwrap();
    let report = store.gc(&zero_threshold()).unwrap();
    assert_eq!(
        (report.leased_roots, report.chunks_freed),
        (1, 0),
        "{report:?}"
    );
    assert_image(&store, &untagged, &read_files());
    reader.kill().unwrap();
    reader.wait().unwrap();
    let report = store.gc(&zero_threshold()).unwrap();
    assert_eq!(
        (report.leased_roots, report.leases_removed),
        (0, 1),
        "{report:?}"
    );
    assert!(report.chunks_freed > 0, "{report:?}");
    assert!(read_image(&Store::open(&path).unwrap(), &untagged).is_err());
    assert_image(&store, &kept, &files(71, 1, 4));
    let roots: Vec<_> = std::fs::read_dir(path.join("leases"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".root"))
        .collect();
    assert!(roots.is_empty(), "{roots:?}");
}
