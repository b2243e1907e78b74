//! Fault injection (feature `fault-injection`) into maintenance: each write
//! site of `Store::maintain(true)` on a store of 17 small packs, 10 of them
//! in the combined index — the consolidated pack and its index written
//! durably, the combined index folded and renamed into place, the old
//! indexes then the old packs removed, the directory fsyncs — fails in turn
//! with `ENOSPC` and with `EIO`.
//!
//! Maintenance stops at the first error and returns it, naming the path.
//! After each failure the store is sound (`fsck` finds no problem), every
//! tagged image reads back, on the handle that saw the error and on a new
//! one, and maintenance run again without a fault succeeds and leaves a
//! store of few packs, all in the combined index.

use std::path::{Path, PathBuf};

use layerstore::{Store, fault};

use super::faults::{EIO, ENOSPC, assert_names_fault, fsck_clean};
use super::sources::copy_dir;
use super::{assert_image, files, make_image, new_store, packs_with};

type Files = Vec<(String, Vec<u8>)>;

/// The store to maintain, and its tagged images.
struct Fixture {
    _dir: tempfile::TempDir,
    template: PathBuf,
    tagged: Vec<(String, Files)>,
    scratch: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (store, template) = new_store(dir.path());
    store.set_auto_maintenance(false);
    let mut tagged = Vec::new();
    for n in 0..17 {
        let name = format!("i{n}");
        let content = files(200 + n, 0, 2);
        make_image(&store, &name, &content);
        tagged.push((name, content));
        if n == 9 {
            store.maintain(false).unwrap();
        }
    }
    drop(store);
    assert_eq!(packs_with(&template, ".idx").len(), 17);
    assert!(template.join("packs/combined.midx").exists());
    let scratch = dir.path().join("runs");
    std::fs::create_dir(&scratch).unwrap();
    Fixture {
        _dir: dir,
        template,
        tagged,
        scratch,
    }
}

impl Fixture {
    fn assert_images(&self, store: &Store, when: &str) {
        for (name, content) in &self.tagged {
            let id = store
                .tag(&name.parse().unwrap())
                .unwrap()
                .unwrap_or_else(|| panic!("{when}: tag {name} lost"));
            assert_image(store, &id, content);
        }
    }
}

fn every_write_site_of_maintenance_fails_cleanly(errno: i32, name: &str) {
    let fx = fixture();
    let mut sites = 0;
    for n in 1u64.. {
        assert!(n < 300, "maintenance never ran out of write sites");
        let run = copy_dir(&fx.template, &fx.scratch.join(format!("{name}-{n}")));
        let store = Store::open(&run).unwrap();
        store.set_auto_maintenance(false);
        fault::arm(&run, n, errno);
        let result = store.maintain(true);
        let (reached, hit) = fault::disarm(&run);
        let when = format!("maintenance, {name} at site {n} of {reached} ({hit:?})");
        let Some((_, hit_path)) = hit else {
            // Fewer than n sites: every one has been failed once.
            result.unwrap_or_else(|e| panic!("{when}: {e}"));
            assert_eq!(packs_with(&run, ".pack").len(), 1, "{when}");
            sites = n - 1;
            break;
        };
        let err = result.expect_err(&format!("{when}: the fault was swallowed"));
        assert_names_fault(&err, &hit_path, errno, &when);
        fx.assert_images(&store, &when);
        drop(store);
        fsck_clean(&run, &when);

        // Without the fault, maintenance finishes: every pack left indexed
        // is in the combined index, and nothing is lost.
        let store = Store::open(&run).unwrap();
        store
            .maintain(true)
            .unwrap_or_else(|e| panic!("{when}: maintain again: {e}"));
        fx.assert_images(&store, &when);
        drop(store);
        fsck_clean(&run, &when);
        assert_every_index_combined(&run, &when);
        std::fs::remove_dir_all(&run).unwrap();
    }
    assert!(sites >= 20, "only {sites} write sites in maintenance");
    eprintln!("{name}: failed each of {sites} write sites of maintenance");
}

/// Asserts that the combined index of `store` covers every pack with an
/// index (read from its header), and that fewer than 16 are left.
fn assert_every_index_combined(store: &Path, when: &str) {
    let bytes = std::fs::read(store.join("packs/combined.midx"))
        .unwrap_or_else(|e| panic!("{when}: no combined index: {e}"));
    let packs = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let indexed = packs_with(store, ".idx").len();
    assert_eq!(packs, indexed, "{when}: packs in the combined index");
    assert!(indexed < 16, "{when}: {indexed} indexed packs");
}

#[test]
fn every_write_site_of_maintenance_fails_cleanly_with_enospc() {
    every_write_site_of_maintenance_fails_cleanly(ENOSPC, "ENOSPC");
}

#[test]
fn every_write_site_of_maintenance_fails_cleanly_with_eio() {
    every_write_site_of_maintenance_fails_cleanly(EIO, "EIO");
}
