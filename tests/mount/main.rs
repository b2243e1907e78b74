//! Copy-on-write views: one conformance suite run against every backend
//! (`conformance.rs`; adding a backend is one `conformance!` line below), the
//! lifecycle's bad input and crash recovery (`lifecycle.rs`), and the copy
//! backend's reflink path on a real XFS or Btrfs loop filesystem
//! (`reflink.rs`).
#![allow(
    clippy::unused_self,
    clippy::must_use_candidate,
    clippy::missing_panics_doc,
    reason = "test helpers: methods of the fixture for uniformity, results used or not"
)]

#[macro_use]
mod conformance;
mod lifecycle;
mod reflink;

use std::sync::Arc;

use layerstore::mount::{CopyBackend, MemoryBackend, OverlayBackend};

// One line per backend: a module name, a factory, and whether the backend
// may need privilege (its `check` decides; see `conformance::Fixture::new`).
conformance!(memory, || Arc::new(MemoryBackend::new()));
conformance!(copy, || Arc::new(CopyBackend::new()));
conformance!(overlay, || Arc::new(OverlayBackend::new()));

/// Whether the process is root. When it is not, prints why the caller skips,
/// and fails instead when `LAYERSTORE_REQUIRE_PRIVILEGED=1` (CI sets it).
pub fn require_root(what: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    skip(&format!("{what} needs root"));
    false
}

/// Says loudly that a test is skipped, or panics under
/// `LAYERSTORE_REQUIRE_PRIVILEGED=1`.
pub fn skip(why: &str) {
    assert!(
        std::env::var("LAYERSTORE_REQUIRE_PRIVILEGED").as_deref() != Ok("1"),
        "LAYERSTORE_REQUIRE_PRIVILEGED=1 and {why}"
    );
    eprintln!("SKIPPED: {why}");
}

/// Whether the tool `name` is on the PATH; skips loudly (or fails) if not.
pub fn require_tool(name: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()));
    if !found {
        skip(&format!("the tool '{name}' is not installed"));
    }
    found
}
