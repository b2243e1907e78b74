//! The on-disk format (`docs/FORMAT.md`) pinned: the golden stores of earlier
//! formats, the chunker's cut points, object encodings and their ids,
//! should-fail vectors, and the second reader (`reader.py`, written from
//! the spec alone) agreeing with the crate. One binary.
//!
//! The fixtures live in `tests/fixtures/format/`. A missing one is written
//! by this build when `LAYERSTORE_WRITE_FIXTURES=1` is set; an existing one
//! is never rewritten: if a test here fails, the format changed, and the
//! change needs a new format version, not new fixtures.

#[path = "../common/mod.rs"]
mod common;
mod golden;
mod listing;
mod python;
#[cfg(feature = "registry")]
#[allow(dead_code)]
#[path = "../registry/server.rs"]
mod server;
mod stores;
mod vectors;

use std::path::{Path, PathBuf};

use layerstore::Store;

/// `tests/fixtures/format/`.
pub(crate) fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format")
}

/// The pseudo-random bytes of `docs/FORMAT.md` ("Test vectors"): xorshift64*
/// from `seed`, each step's output written little-endian, truncated to `len`.
pub(crate) fn pseudo_random(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        out.extend_from_slice(&seed.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Copies the store at `from` into a temporary directory (a store is opened
/// read-write: the fixture itself is never touched) with the `tmp/` and
/// `lock` that git does not keep, and opens it.
pub(crate) fn open_copy(from: &Path) -> (tempfile::TempDir, Store) {
    let tmp = tempfile::tempdir().unwrap();
    let to = tmp.path().join("store");
    copy_dir(from, &to);
    std::fs::create_dir_all(to.join("tmp")).unwrap();
    let store = Store::open(&to).unwrap_or_else(|e| panic!("open {}: {e}", from.display()));
    (tmp, store)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
