//! Fault injection (feature `fault-injection`) into `fsck --repair`: each
//! write site of a repair — the removal of a dead writer's temporary file,
//! the rebuild of a lost and of a damaged index, the salvage of a damaged
//! pack's good chunks into a new pack, the creation of `quarantine/` and the
//! moves into it, the directory fsyncs — fails in turn with `ENOSPC` and with
//! `EIO`.
//!
//! The repair fails with an error naming the path; nothing is lost by it (the
//! damaged pack is still in `packs/` or already in `quarantine/`); a repair
//! run again without the fault succeeds, after which `fsck` finds nothing
//! and every tagged image checks out identical to its source tree.

use std::path::{Path, PathBuf};
use std::time::Duration;

use layerstore::{FsckOptions, ImageId, Store, StoreOptions, fault};

use super::faults::{EIO, ENOSPC, assert_names_fault, fsck_clean, leave_dead_writers_file};
use super::sources::{assert_checks_out, commit_dir, copy_dir, write_source};
use super::{packs_with, random_bytes};

/// A damaged store: what it holds and which pack is damaged.
struct Fixture {
    _dir: tempfile::TempDir,
    template: PathBuf,
    /// The tagged images and their source trees.
    images: Vec<(ImageId, PathBuf)>,
    /// The file name of the damaged pack, which must end in `quarantine/`.
    damaged: String,
    scratch: PathBuf,
}

/// Commits `srcs` into `store` in one pack; returns their ids and the new
/// pack's path.
fn commit_pack(store: &Store, path: &Path, srcs: &[&Path]) -> (Vec<ImageId>, PathBuf) {
    let before = packs_with(path, ".pack");
    let ids = srcs.iter().map(|src| commit_dir(store, src)).collect();
    store.flush().unwrap();
    let new: Vec<_> = packs_with(path, ".pack")
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert_eq!(new.len(), 1, "one flush, one pack");
    (ids, new[0].clone())
}

/// A store in which: image a's pack has lost its index; image b's index is
/// damaged; the pack of images c and d has a flipped bit in c's first file
/// (c's content is also in a pack copied from another store, so that only
/// d's chunks need salvaging); untagged image y's pack is gone but its index
/// is left. Each run adds a dead writer's temporary file.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("store");
    let store = Store::create(&template, &StoreOptions::default()).unwrap();
    let src = |name: &str, seed| {
        let path = dir.path().join("src").join(name);
        write_source(&path, seed);
        path
    };
    let (a_src, b_src, c_src, d_src, y_src) = (
        src("a", 11),
        src("b", 12),
        src("c", 13),
        src("d", 14),
        src("y", 15),
    );
    // More of c than one shared frame holds (2 MiB): the pack's first frame
    // then holds c's chunks alone, which the other store also has.
    std::fs::write(c_src.join("sub/more"), random_bytes(5 << 19, 13_000)).unwrap();
    let (a, a_pack) = commit_pack(&store, &template, &[&a_src]);
    let (b, b_pack) = commit_pack(&store, &template, &[&b_src]);
    let (c, cc_pack) = commit_pack(&store, &template, &[&c_src, &d_src]);
    let (_, y_pack) = commit_pack(&store, &template, &[&y_src]);
    for (name, id) in [("a", &a[0]), ("b", &b[0]), ("c", &c[0]), ("d", &c[1])] {
        store.set_tag(&name.parse().unwrap(), id).unwrap();
    }
    drop(store);

    // c's content once more, in a pack of another store (with a chunk of
    // its own, so that the two packs differ).
    let other_path = dir.path().join("other");
    let other = Store::create(&other_path, &StoreOptions::default()).unwrap();
    other.put_bytes(b"only in the other store").unwrap();
    let (_, other_pack) = commit_pack(&other, &other_path, &[&c_src]);
    drop(other);
    for ext in ["pack", "idx"] {
        let from = other_pack.with_extension(ext);
        std::fs::copy(
            &from,
            template.join("packs").join(from.file_name().unwrap()),
        )
        .unwrap();
    }

    std::fs::remove_file(a_pack.with_extension("idx")).unwrap();
    let b_idx = b_pack.with_extension("idx");
    let mut bytes = std::fs::read(&b_idx).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&b_idx, bytes).unwrap();
    // Inside the payload of the first frame, which holds c's chunks alone.
    let mut bytes = std::fs::read(&cc_pack).unwrap();
    bytes[4000] ^= 0x01;
    std::fs::write(&cc_pack, bytes).unwrap();
    std::fs::remove_file(&y_pack).unwrap();

    let scratch = dir.path().join("runs");
    std::fs::create_dir(&scratch).unwrap();
    Fixture {
        _dir: dir,
        template,
        images: vec![(a[0], a_src), (b[0], b_src), (c[0], c_src), (c[1], d_src)],
        damaged: cc_pack.file_name().unwrap().to_string_lossy().into_owned(),
        scratch,
    }
}

/// A repair; waiting for the lock a little, because a test running in
/// parallel may fork `cp` while this one closes a handle, and the child holds
/// the handle's lock until it execs.
fn repair() -> FsckOptions {
    FsckOptions::default()
        .repair(true)
        .lock_timeout(Duration::from_secs(10))
}

impl Fixture {
    /// After a repair: nothing wrong, every image whole, the damaged pack kept.
    fn assert_repaired(&self, store: &Path, when: &str) {
        fsck_clean(store, when);
        let opened = Store::open(store).unwrap();
        for (id, src) in &self.images {
            assert_checks_out(&opened, id, src, when);
        }
        let kept = store.join("quarantine").join(&self.damaged);
        assert!(
            kept.exists(),
            "{when}: the damaged pack is not in quarantine/"
        );
    }
}

fn every_write_site_of_repair_fails_cleanly(errno: i32, name: &str) {
    let fx = fixture();
    let mut sites = 0;
    for n in 1u64.. {
        assert!(n < 300, "the repair never ran out of write sites");
        let run = copy_dir(&fx.template, &fx.scratch.join(format!("{name}-{n}")));
        let store = Store::open(&run).unwrap();
        leave_dead_writers_file(&run);
        fault::arm(&run, n, errno);
        let result = store.fsck(&repair());
        let (reached, hit) = fault::disarm(&run);
        drop(store);
        let when = format!("repair, {name} at site {n} of {reached} ({hit:?})");
        let Some((_, hit_path)) = hit else {
            let report = result.unwrap_or_else(|e| panic!("{when}: {e}"));
            assert!(!report.repaired.is_empty(), "{when}: nothing repaired");
            fx.assert_repaired(&run, &when);
            sites = n - 1;
            break;
        };
        let err = result.expect_err(&format!("{when}: the fault was swallowed"));
        assert_names_fault(&err, &hit_path, errno, &when);
        let damaged_kept = [run.join("packs"), run.join("quarantine")]
            .iter()
            .any(|d| d.join(&fx.damaged).exists());
        assert!(damaged_kept, "{when}: the damaged pack was deleted");

        Store::open(&run)
            .unwrap()
            .fsck(&repair())
            .unwrap_or_else(|e| panic!("{when}: repair again: {e}"));
        fx.assert_repaired(&run, &when);
        std::fs::remove_dir_all(&run).unwrap();
    }
    assert!(sites >= 20, "only {sites} write sites in the repair");
    eprintln!("{name}: failed each of {sites} write sites of a repair");
}

#[test]
fn every_write_site_of_repair_fails_cleanly_with_enospc() {
    every_write_site_of_repair_fails_cleanly(ENOSPC, "ENOSPC");
}

#[test]
fn every_write_site_of_repair_fails_cleanly_with_eio() {
    every_write_site_of_repair_fails_cleanly(EIO, "EIO");
}
