//! Copy-on-write views: one conformance suite run against every backend
//! (`conformance.rs`; adding a backend is one `conformance!` line below), the
//! lifecycle's bad input and crash recovery (`lifecycle.rs`), the lazy FUSE
//! view's reads, damage and permissions (`lazy.rs`), and the copy
//! backend's reflink path on a real XFS or Btrfs loop filesystem
//! (`reflink.rs`).
#![allow(
    clippy::unused_self,
    clippy::must_use_candidate,
    clippy::missing_panics_doc,
    reason = "test helpers: methods of the fixture for uniformity, results used or not"
)]

#[path = "../common/mod.rs"]
mod common;
#[macro_use]
mod conformance;
mod lazy;
mod lifecycle;
mod reflink;

use std::sync::Arc;

use layerstore::mount::{CopyBackend, FuseBackend, MemoryBackend, OverlayBackend};

pub use common::{require_root, require_tool};

// One line per backend: a module name and a factory. A backend whose `check`
// fails here (overlay without privilege, say) is skipped loudly, or fails
// under LAYERSTORE_REQUIRE_PRIVILEGED=1 (see `conformance::Fixture::new`).
conformance!(memory, || Arc::new(MemoryBackend::new()));
conformance!(copy, || Arc::new(CopyBackend::new()));
conformance!(overlay, || Arc::new(OverlayBackend::new()));
conformance!(fuse, || Arc::new(FuseBackend::new()));
// The same, run as user 65534 by `lazy::the_conformance_suite_passes_on_fuse_as_a_plain_user`.
conformance!(ignored fuse_as_a_plain_user, || Arc::new(FuseBackend::new()));

/// Says loudly that a test is skipped for a reason other than root or a tool
/// (those are `common`'s), or panics under `LAYERSTORE_REQUIRE_PRIVILEGED=1`.
pub fn skip(why: &str) {
    assert!(
        !common::strict(),
        "LAYERSTORE_REQUIRE_PRIVILEGED=1 and {why}"
    );
    eprintln!("SKIPPED: {why}");
}
