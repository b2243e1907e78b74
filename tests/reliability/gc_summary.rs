//! The gc summary (`leases/gc.last`): a gc that finds the roots and packs of
//! the last gc that changed nothing walks nothing; anything that could change
//! the outcome makes it walk again; a damaged summary only costs a walk.

use std::path::Path;

use layerstore::{FsckOptions, GcOptions, GcReport, Store};

use super::{assert_image, files, make_image, new_store, put_image};

fn gc(store: &Store, options: &GcOptions) -> GcReport {
    store.gc(options).unwrap()
}

fn summary(path: &Path) -> std::path::PathBuf {
    path.join("leases/gc.last")
}

#[test]
fn a_gc_that_finds_nothing_changed_walks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = new_store(dir.path());
    let options = GcOptions::default();
    let kept = make_image(&store, "kept", &files(100, 1, 4));
    store.flush().unwrap();
    let first = gc(&store, &options);
    assert!(!first.walk_skipped, "{first:?}");
    let second = gc(&store, &options);
    assert!(second.walk_skipped, "{second:?}");
    assert_eq!(
        (second.live_chunks, second.bytes_before, second.bytes_freed),
        (first.live_chunks, first.bytes_before, 0)
    );

    // A new tag and pack: walked.
    make_image(&store, "more", &files(101, 1, 4));
    store.flush().unwrap();
    let report = gc(&store, &options);
    assert!(!report.walk_skipped, "{report:?}");
    assert!(gc(&store, &options).walk_skipped);

    // Untagged: walked, and collected (its pack deleted whole); the packs
    // left are recorded, so the next gc skips.
    store.remove_tag(&"more".parse().unwrap()).unwrap();
    let report = gc(&store, &options);
    assert!(
        !report.walk_skipped && report.packs_deleted > 0,
        "{report:?}"
    );
    let report = gc(&store, &options);
    assert!(
        report.walk_skipped && report.chunks_freed == 0,
        "{report:?}"
    );

    // A rewrite records nothing: the next gc walks, and finds nothing to do.
    put_image(&store, &files(106, 1, 2));
    make_image(&store, "half", &files(107, 1, 2));
    store.flush().unwrap();
    let zero = GcOptions::default().repack_dead_fraction(0.0);
    let report = gc(&store, &zero);
    assert!(report.packs_repacked > 0, "{report:?}");
    let report = gc(&store, &zero);
    assert!(
        !report.walk_skipped && report.chunks_freed == 0,
        "{report:?}"
    );
    assert!(gc(&store, &zero).walk_skipped);

    // Other options: walked.
    let extra = GcOptions::default().extra_roots(vec![kept.into()]);
    assert!(!gc(&store, &extra).walk_skipped);
    assert!(gc(&store, &extra).walk_skipped);
    let threshold = GcOptions::default().repack_dead_fraction(0.5);
    assert!(!gc(&store, &threshold).walk_skipped);
    assert!(gc(&store, &threshold).walk_skipped);
    assert_image(&store, &kept, &files(100, 1, 4));
    assert!(store.fsck(&FsckOptions::default()).unwrap().is_clean());
}

#[test]
fn a_damaged_or_missing_summary_costs_a_walk_only() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = new_store(dir.path());
    let options = GcOptions::default();
    make_image(&store, "kept", &files(102, 1, 4));
    gc(&store, &options);
    let whole = std::fs::read(summary(&path)).unwrap();
    let mut flipped = whole.clone();
    flipped[20] ^= 1;
    for bad in [flipped, whole[..whole.len() - 1].to_vec(), b"junk".to_vec()] {
        std::fs::write(summary(&path), &bad).unwrap();
        let report = gc(&store, &options);
        assert!(!report.walk_skipped, "{report:?}");
        assert_eq!(std::fs::read(summary(&path)).unwrap(), whole);
    }
    std::fs::remove_file(summary(&path)).unwrap();
    assert!(!gc(&store, &options).walk_skipped);
    assert!(gc(&store, &options).walk_skipped);
}

/// A gc in which a live writer's lease kept garbage records nothing: once
/// the writer is gone, the next gc walks and collects.
#[test]
fn what_a_lease_kept_is_collected_once_the_lease_goes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = new_store(dir.path());
    let options = GcOptions::default().repack_dead_fraction(0.0);
    make_image(&store, "kept", &files(103, 1, 4));
    store.flush().unwrap();
    let writer = Store::open(&path).unwrap();
    put_image(&writer, &files(104, 1, 4));
    writer.flush().unwrap();
    for _ in 0..2 {
        let report = gc(&store, &options);
        assert!(!report.walk_skipped, "{report:?}");
        assert!(report.leased_chunks_kept > 0, "{report:?}");
        assert_eq!(report.chunks_freed, 0, "{report:?}");
    }
    drop(writer);
    let report = gc(&store, &options);
    assert!(
        !report.walk_skipped && report.chunks_freed > 0,
        "{report:?}"
    );
}

#[test]
fn a_dry_run_records_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = new_store(dir.path());
    make_image(&store, "kept", &files(105, 1, 4));
    let dry = GcOptions::default().dry_run(true);
    assert!(!gc(&store, &dry).walk_skipped);
    assert!(!summary(&path).exists());
    assert!(!gc(&store, &dry).walk_skipped);
    // A real gc records; a dry run may then skip (it would free nothing).
    gc(&store, &GcOptions::default());
    let report = gc(&store, &dry);
    assert!(report.walk_skipped && report.bytes_freed == 0, "{report:?}");
}
