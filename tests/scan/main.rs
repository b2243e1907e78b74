//! Integration tests of `Store::scan`, one binary: every kind of entry and its
//! metadata, confinement, parallel == serial, and the stat cache.

mod cache;
#[path = "../common/mod.rs"]
mod common;
mod kinds;
mod parallel;
mod roundtrip;
mod safety;
pub(crate) use common::{require_root, set_mtime, user_xattrs_supported};

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use layerstore::{Entry, ScanOptions, ScanOutcome, Store, StoreOptions, TreePath};

/// A store and a tree to scan, side by side in one temporary directory.
pub(crate) struct Fixture {
    _tmp: tempfile::TempDir,
    pub(crate) store: Store,
    pub(crate) store_path: PathBuf,
    pub(crate) tree: PathBuf,
}

impl Fixture {
    pub(crate) fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store_path = tmp.path().join("store");
        let store = Store::create(&store_path, &StoreOptions::default()).expect("create store");
        let tree = tmp.path().join("tree");
        std::fs::create_dir(&tree).expect("create tree");
        Self {
            _tmp: tmp,
            store,
            store_path,
            tree,
        }
    }

    /// `rel` (bytes) beneath the tree.
    pub(crate) fn at(&self, rel: &[u8]) -> PathBuf {
        self.tree.join(OsStr::from_bytes(rel))
    }

    pub(crate) fn scan(&self) -> ScanOutcome {
        self.scan_with(&ScanOptions::default())
    }

    pub(crate) fn scan_with(&self, options: &ScanOptions) -> ScanOutcome {
        self.store.scan(&self.tree, options).expect("scan")
    }
}

pub(crate) fn p(bytes: &[u8]) -> TreePath {
    TreePath::new(bytes.to_vec()).expect("valid path")
}

/// The entry at `path`, which must exist.
pub(crate) fn entry<'a>(outcome: &'a ScanOutcome, path: &[u8]) -> &'a Entry {
    outcome
        .snapshot
        .get(&p(path))
        .unwrap_or_else(|| panic!("no entry '{}'", String::from_utf8_lossy(path)))
}

/// Sleeps until every file made before the call is older than the stat
/// cache's racy-timestamp cutoff of a scan started after the return: two whole
/// seconds past the current one. At most about two seconds.
pub(crate) fn wait_until_settled() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    let target = Duration::from_secs(now.as_secs() + 2) + Duration::from_millis(20);
    std::thread::sleep(target.saturating_sub(now));
}
