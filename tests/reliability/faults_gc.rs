//! Fault injection (feature `fault-injection`) into garbage collection: each
//! write site of a gc — the removal of stale temporary files and of a pack
//! left without index, the rewrite of a half-dead pack (pack and index
//! written durably), the removal of dead indexes and packs, the directory
//! fsyncs — fails in turn with `ENOSPC` and with `EIO`.
//!
//! No failure is tolerated: gc stops at the first error and returns it,
//! naming the path (nothing it skips would be safe to skip silently: a
//! rewritten pack must be durable before what it replaces goes, and an index
//! must go before its pack). After each failure the store is sound (`fsck`
//! finds no problem; a pack whose index is already gone is garbage), every
//! tagged image checks out identical to its source tree, and gc run again
//! without a fault succeeds and leaves exactly what a gc that never failed
//! leaves.

use std::path::{Path, PathBuf};
use std::time::Duration;

use layerstore::{GcOptions, ImageId, Store, StoreOptions, fault};

use super::faults::{EIO, ENOSPC, assert_names_fault, fsck_clean};
use super::packs_bytes;
use super::sources::{assert_checks_out, commit_dir, copy_dir, write_source};

/// A store to collect: what it holds and what gc should leave.
struct Fixture {
    _dir: tempfile::TempDir,
    /// The store before gc, copied for each run.
    template: PathBuf,
    /// The tagged images and their source trees.
    kept: Vec<(ImageId, PathBuf)>,
    /// Bytes of `packs/` after a gc without faults.
    collected_bytes: u64,
    scratch: PathBuf,
}

/// The `.idx` files of `packs/`, sorted.
fn indexes(store: &Path) -> Vec<PathBuf> {
    super::packs_with(store, ".idx")
}

/// A store with: image a (tagged, its own pack); b (untagged, its own pack:
/// deleted); c and d in one pack, d untagged (the pack is rewritten, its
/// shared frames re-encoded); e, untagged, whose index is gone (a pack left
/// without index, deleted); a stale temporary file of a dead writer.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("store");
    let store = Store::create(&template, &StoreOptions::default()).unwrap();
    let src = |name: &str, seed| {
        let path = dir.path().join("src").join(name);
        write_source(&path, seed);
        path
    };
    let tag = |name: &str, id: &ImageId| store.set_tag(&name.parse().unwrap(), id).unwrap();
    let (a_src, b_src, c_src, d_src, e_src) = (
        src("a", 1),
        src("b", 2),
        src("c", 3),
        src("d", 4),
        src("e", 5),
    );
    let a = commit_dir(&store, &a_src);
    store.flush().unwrap();
    tag("a", &a);
    let b = commit_dir(&store, &b_src);
    store.flush().unwrap();
    tag("b", &b);
    let c = commit_dir(&store, &c_src);
    let d = commit_dir(&store, &d_src);
    store.flush().unwrap();
    tag("c", &c);
    tag("d", &d);
    let before = indexes(&template);
    commit_dir(&store, &e_src);
    store.flush().unwrap();
    let e_idx: Vec<_> = indexes(&template)
        .into_iter()
        .filter(|i| !before.contains(i))
        .collect();
    assert_eq!(e_idx.len(), 1, "image e went into one pack");
    std::fs::remove_file(&e_idx[0]).unwrap();
    store.remove_tag(&"b".parse().unwrap()).unwrap();
    store.remove_tag(&"d".parse().unwrap()).unwrap();
    drop(store);
    std::fs::write(template.join("tmp").join("pack-999999999-0-0"), b"half").unwrap();
    fsck_clean(&template, "the fixture");

    let scratch = dir.path().join("runs");
    std::fs::create_dir(&scratch).unwrap();
    let reference = copy_dir(&template, &scratch.join("reference"));
    let report = Store::open(&reference).unwrap().gc(&gc_options()).unwrap();
    assert_eq!(
        (
            report.packs_deleted,
            report.packs_repacked,
            report.orphans_deleted
        ),
        (1, 1, 1),
        "{report:?}"
    );
    let collected_bytes = packs_bytes(&reference);
    std::fs::remove_dir_all(&reference).unwrap();
    Fixture {
        _dir: dir,
        template,
        kept: vec![(a, a_src), (c, c_src)],
        collected_bytes,
        scratch,
    }
}

/// gc, waiting for the lock a little: a test running in parallel may fork
/// `cp` while this one closes a handle, and the child holds the handle's lock
/// until it execs.
fn gc_options() -> GcOptions {
    GcOptions::default().lock_timeout(Duration::from_secs(10))
}

impl Fixture {
    fn assert_images(&self, store: &Path, when: &str) {
        let store = Store::open(store).unwrap_or_else(|e| panic!("{when}: reopen: {e}"));
        for (id, src) in &self.kept {
            assert_checks_out(&store, id, src, when);
        }
    }
}

fn every_write_site_of_gc_fails_cleanly(errno: i32, name: &str) {
    let fx = fixture();
    let mut sites = 0;
    for n in 1u64.. {
        assert!(n < 200, "gc never ran out of write sites");
        let run = copy_dir(&fx.template, &fx.scratch.join(format!("{name}-{n}")));
        let store = Store::open(&run).unwrap();
        fault::arm(&run, n, errno);
        let result = store.gc(&gc_options());
        let (reached, hit) = fault::disarm(&run);
        drop(store);
        let when = format!("gc, {name} at site {n} of {reached} ({hit:?})");
        let Some((_, hit_path)) = hit else {
            // Fewer than n sites: every one has been failed once.
            result.unwrap_or_else(|e| panic!("{when}: {e}"));
            assert_eq!(packs_bytes(&run), fx.collected_bytes, "{when}");
            sites = n - 1;
            break;
        };
        let err = result.expect_err(&format!("{when}: the fault was swallowed"));
        assert_names_fault(&err, &hit_path, errno, &when);
        fsck_clean(&run, &when);
        fx.assert_images(&run, &when);

        // Without the fault, gc finishes the job, and frees what it should.
        let store = Store::open(&run).unwrap();
        store
            .gc(&gc_options())
            .unwrap_or_else(|e| panic!("{when}: gc again: {e}"));
        let again = store.gc(&gc_options().dry_run(true)).unwrap();
        assert!(
            again.packs_deleted + again.packs_repacked + again.orphans_deleted + again.chunks_freed
                == 0,
            "{when}: a second gc would still free something: {again:?}"
        );
        drop(store);
        assert_eq!(
            packs_bytes(&run),
            fx.collected_bytes,
            "{when}: the packs differ from a gc that never failed"
        );
        fsck_clean(&run, &when);
        fx.assert_images(&run, &when);
        std::fs::remove_dir_all(&run).unwrap();
    }
    assert!(sites >= 10, "only {sites} write sites in a gc");
    eprintln!("{name}: failed each of {sites} write sites of a gc");
}

#[test]
fn every_write_site_of_gc_fails_cleanly_with_enospc() {
    every_write_site_of_gc_fails_cleanly(ENOSPC, "ENOSPC");
}

#[test]
fn every_write_site_of_gc_fails_cleanly_with_eio() {
    every_write_site_of_gc_fails_cleanly(EIO, "EIO");
}
