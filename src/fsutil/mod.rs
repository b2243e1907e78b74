//! Filesystem helpers: durable writes, confined path resolution, xattrs, devices.
//!
//! Linux only. This is the bottom layer of the crate: it knows nothing of
//! stores or trees.

// `tree::checkout` uses part of `confine`; `tree::scan`, `oci::tar` and
// `mount::copy` will use the rest, and the other modules.
#[cfg_attr(
    not(test),
    allow(
        dead_code,
        reason = "reading and removal are for tree::scan and mount::copy, landing next"
    )
)]
pub(crate) mod confine;
#[cfg_attr(
    not(test),
    allow(dead_code, reason = "used by tree::scan and checkout, landing next")
)]
pub(crate) mod device;
pub(crate) mod durable;
#[cfg_attr(
    not(test),
    allow(dead_code, reason = "used by mount::copy, landing next")
)]
pub(crate) mod reflink;
#[cfg_attr(
    not(test),
    allow(dead_code, reason = "used by tree::scan and checkout, landing next")
)]
pub(crate) mod xattr;
