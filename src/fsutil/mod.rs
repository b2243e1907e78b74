//! Filesystem helpers: durable writes, confined path resolution, xattrs, devices.
//!
//! Linux only. This is the bottom layer of the crate: it knows nothing of
//! stores or trees.

// Nothing outside tests calls these yet; `tree::scan`, `tree::checkout`,
// `oci::tar` and `mount::copy` will.
#[cfg_attr(
    not(test),
    allow(dead_code, reason = "used by tree::checkout, landing next")
)]
pub(crate) mod confine;
#[cfg_attr(
    not(test),
    allow(dead_code, reason = "used by tree::scan and checkout, landing next")
)]
pub(crate) mod device;
#[cfg_attr(not(test), allow(dead_code, reason = "used by tree::scan, landing next"))]
pub(crate) mod dir;
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
