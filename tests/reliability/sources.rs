//! Images committed from trees on disk, and checked out again to be compared
//! with those trees (`common::tree`'s lstat walk), for the tests that need
//! more than file contents to survive: the fault-injection tests of gc,
//! repair and checkout.

use std::path::{Path, PathBuf};

use layerstore::{CheckoutOptions, History, ImageId, ScanOptions, Snapshot, Store};

use super::common::tree::{assert_same, make_removable, walk};
use super::{files, random_bytes};

/// Writes a source tree for image number `seed` into the new directory
/// `dir`: random files (one of several chunks, some alone in their frames),
/// small text files (sharing frames), a subdirectory with a file and a
/// symbolic link.
pub(crate) fn write_source(dir: &Path, seed: u64) {
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    for (name, content) in files(seed, 1, 4) {
        std::fs::write(dir.join(name), content).unwrap();
    }
    std::fs::write(dir.join("sub/blob"), random_bytes(1 << 20, seed + 7000)).unwrap();
    std::fs::write(dir.join("sub/note"), format!("image {seed}\n").repeat(100)).unwrap();
    std::os::unix::fs::symlink("../small0", dir.join("sub/link")).unwrap();
}

/// Scans `dir` (no stat cache: nothing is written beside the packs) and
/// stores it as a one-layer image, not flushed, not tagged.
pub(crate) fn commit_dir(store: &Store, dir: &Path) -> ImageId {
    let options = ScanOptions::default().use_stat_cache(false);
    let scanned = store.scan(dir, &options).unwrap();
    let layer = Snapshot::empty().diff(&scanned.snapshot);
    store
        .put_child_image(None, &layer, &scanned.snapshot, None, History::default())
        .unwrap()
}

/// Asserts that image `id` checks out identical to the tree `src`.
pub(crate) fn assert_checks_out(store: &Store, id: &ImageId, src: &Path, when: &str) {
    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("out");
    let tree = store
        .image_tree(id)
        .unwrap_or_else(|e| panic!("{when}: image {id}: {e}"));
    store
        .checkout(&tree, &out, &CheckoutOptions::default())
        .unwrap_or_else(|e| panic!("{when}: checkout of {id}: {e}"));
    assert_same(&walk(&out), &walk(src));
    make_removable(&out);
}

/// Copies the directory `from` to the new path `to` (`cp -a`).
pub(crate) fn copy_dir(from: &Path, to: &Path) -> PathBuf {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "cp -a {} {}",
        from.display(),
        to.display()
    );
    to.to_owned()
}
