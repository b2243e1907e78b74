//! Integration tests of `Store::checkout`, one binary: snapshots built by hand,
//! checked out, and compared attribute by attribute with an `lstat`-based walk
//! of the result (independent of the crate's own scanner).

mod bad_input;
#[path = "../common/mod.rs"]
mod common;
mod confinement;
mod roundtrip;
mod threads;
pub(crate) use common::tree::{assert_same, expected, make_removable, walk};
pub(crate) use common::{random_bytes, require_root, user_xattrs_supported};

use std::path::Path;

use layerstore::{Store, StoreOptions, TreePath};

pub(crate) fn new_store(dir: &Path) -> Store {
    Store::create(dir.join("store"), &StoreOptions::default()).expect("create store")
}

pub(crate) fn p(bytes: impl Into<Vec<u8>>) -> TreePath {
    TreePath::new(bytes).unwrap()
}
