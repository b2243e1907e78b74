//! Garbage collection frees what no tag reaches and keeps what tags reach.

use std::time::Duration;

use layerstore::{Error, FsckOptions, GcOptions, Store};

use super::{assert_image, files, make_image, new_store, packs_bytes, packs_with, put_image};

#[test]
fn gc_after_untagging_frees_the_unreachable_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = new_store(dir.path());
    let kept = files(1, 3, 20);
    let dropped = files(2, 12, 40);
    let kept_id = make_image(&store, "kept", &kept);
    // A second tag of another image that shares nothing with `kept`.
    make_image(&store, "dropped", &dropped);
    store.flush().unwrap();
    let before = packs_bytes(&path);

    // Nothing is garbage yet.
    let report = store.gc(&GcOptions::default()).unwrap();
    assert_eq!((report.packs_deleted, report.packs_repacked), (0, 0));
    assert_eq!(report.chunks_freed, 0);
    assert_eq!(packs_bytes(&path), before);

    // Measure what the dropped image alone costs: a store holding only it.
    let alone_dir = tempfile::tempdir().unwrap();
    let (alone, alone_path) = new_store(alone_dir.path());
    make_image(&alone, "dropped", &dropped);
    alone.flush().unwrap();
    let dropped_cost = packs_bytes(&alone_path);

    assert!(store.remove_tag(&"dropped".parse().unwrap()).unwrap());
    let report = store.gc(&GcOptions::default()).unwrap();
    let after = packs_bytes(&path);
    let freed = before - after;
    assert!(
        freed as f64 >= 0.95 * dropped_cost as f64,
        "freed {freed} of {dropped_cost} unreachable bytes: {report:?}"
    );
    assert_eq!(report.bytes_freed, freed, "{report:?}");
    assert!(report.chunks_freed > 0);
    assert_image(&store, &kept_id, &kept);
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_image(&store, &kept_id, &kept);
    assert!(store.fsck(&FsckOptions::default()).unwrap().is_clean());
}

#[test]
fn a_half_dead_pack_is_repacked() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = new_store(dir.path());
    // Interleave two images' files so that they share frames and one pack.
    let a = files(3, 4, 30);
    let b = files(4, 4, 30);
    let a_id = put_image(&store, &a);
    let b_id = put_image(&store, &b);
    store.set_tag(&"a".parse().unwrap(), &a_id).unwrap();
    store.set_tag(&"b".parse().unwrap(), &b_id).unwrap();
    assert_eq!(packs_with(&path, ".pack").len(), 1);
    let old_pack = packs_with(&path, ".pack").remove(0);
    store.remove_tag(&"b".parse().unwrap()).unwrap();

    // Under the threshold, nothing is rewritten.
    let lazy = GcOptions::default()
        .repack_dead_fraction(1.0)
        .dry_run(false);
    let report = store.gc(&lazy).unwrap();
    assert_eq!(
        (report.packs_repacked, report.packs_deleted),
        (0, 0),
        "{report:?}"
    );
    assert!(old_pack.exists());

    let dry = store.gc(&GcOptions::default().dry_run(true)).unwrap();
    assert_eq!(dry.packs_repacked, 1);
    assert!(old_pack.exists(), "a dry run changed the store");

    let report = store.gc(&GcOptions::default()).unwrap();
    assert_eq!(report.packs_repacked, 1, "{report:?}");
    assert_eq!(report.packs_written, 1, "{report:?}");
    assert!(!old_pack.exists());
    assert!(!old_pack.with_extension("idx").exists());
    assert!(report.bytes_freed > 0);
    assert!(
        report.bytes_freed.abs_diff(dry.bytes_freed) < dry.bytes_freed / 4,
        "estimate {} vs {}",
        dry.bytes_freed,
        report.bytes_freed
    );
    assert_image(&store, &a_id, &a);
    // A second gc finds nothing more to do.
    let again = store.gc(&GcOptions::default()).unwrap();
    assert_eq!(
        (
            again.packs_repacked,
            again.packs_deleted,
            again.chunks_freed
        ),
        (0, 0, 0)
    );
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_image(&store, &a_id, &a);
    let fsck = store.fsck(&FsckOptions::default()).unwrap();
    assert!(fsck.is_clean(), "{:?}", fsck.problems);
}

#[test]
fn pinned_and_cached_objects_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = new_store(dir.path());
    let pinned = files(5, 1, 3);
    let pinned_id = make_image(&store, "pinned", &pinned);
    store.flush().unwrap();
    store.remove_tag(&"pinned".parse().unwrap()).unwrap();
    let options = GcOptions::default().extra_roots(vec![layerstore::ChunkId::from(pinned_id)]);
    let report = store.gc(&options).unwrap();
    assert_eq!(report.chunks_freed, 0, "{report:?}");
    assert_image(&store, &pinned_id, &pinned);
    // Unpinned, it goes.
    let report = store.gc(&GcOptions::default()).unwrap();
    assert!(report.chunks_freed > 0);
    assert!(store.image(&pinned_id).is_err());
}

#[test]
fn gc_runs_beside_other_handles_and_not_beside_another_gc() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = new_store(dir.path());
    let id = make_image(&store, "x", &files(6, 1, 1));
    // Another handle open (and writing): gc does not wait for it.
    let other = Store::open(&path).unwrap();
    let other_id = make_image(&other, "y", &files(7, 1, 1));
    let report = store.gc(&GcOptions::default()).unwrap();
    assert_eq!(report.chunks_freed, 0, "{report:?}");
    assert!(store.image(&id).is_ok());
    assert!(other.image(&other_id).is_ok());
    drop(other);

    // A second gc while one runs: refused at once without a wait; with one,
    // it goes ahead once the first is done. The gc lock is `leases/`
    // itself, held here as a running gc holds it.
    let leases = std::fs::File::open(path.join("leases")).unwrap();
    rustix::fs::flock(
        &leases,
        rustix::fs::FlockOperation::NonBlockingLockExclusive,
    )
    .expect("take the gc lock");
    let err = store.gc(&GcOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    let timeout = Duration::from_millis(400);
    let started = std::time::Instant::now();
    let err = store
        .gc(&GcOptions::default().lock_timeout(timeout))
        .unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    assert!(
        started.elapsed() >= timeout,
        "gave up after {:?}, before the {timeout:?} timeout",
        started.elapsed()
    );
    // Released within the timeout: gc goes ahead.
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        drop(leases);
    });
    let report = store
        .gc(&GcOptions::default().lock_timeout(Duration::from_secs(5)))
        .unwrap();
    releaser.join().unwrap();
    assert_eq!(report.chunks_freed, 0);
    assert!(store.image(&id).is_ok());
}

#[test]
fn the_dead_share_is_measured_on_disk_not_in_raw_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = new_store(dir.path());
    // One pack: 3 MB of live text (it compresses several times over) and
    // 250 kB of dead random bytes: under 10 % of the raw bytes, a fifth of
    // the pack on disk.
    let text = super::text_bytes(6_000_000, 7);
    assert!(text.len() >= 3_000_000, "text_bytes yields {}", text.len());
    let live = vec![("text".to_owned(), text)];
    let dead = vec![("noise".to_owned(), super::random_bytes(250_000, 8))];
    // Put by one thread, so that the frames are the same in every run: each
    // writing thread fills frames of its own, and threads sharing the work
    // would mix the noise into frames of text in a different measure each
    // time.
    let one_thread = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let live_id = one_thread.install(|| {
        let live_id = put_image(&store, &live);
        put_image(&store, &dead);
        live_id
    });
    store.set_tag(&"live".parse().unwrap(), &live_id).unwrap();
    store.flush().unwrap();
    let before = packs_bytes(&path);
    assert_eq!(packs_with(&path, ".pack").len(), 1);

    let report = store.gc(&GcOptions::default()).unwrap();
    assert_eq!(report.packs_repacked, 1, "{report:?}");
    let freed = before - packs_bytes(&path);
    assert!(freed >= 240_000, "freed {freed} bytes: {report:?}");
    assert_image(&store, &live_id, &live);
    assert!(store.fsck(&FsckOptions::default()).unwrap().is_clean());
}
