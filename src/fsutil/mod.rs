//! Filesystem helpers: durable writes, confined path resolution, xattrs, devices.
//!
//! Linux only. This is the bottom layer of the crate: it knows nothing of
//! stores or trees.

pub(crate) mod confine;
pub(crate) mod device;
pub(crate) mod dir;
pub(crate) mod durable;
#[cfg_attr(feature = "fault-injection", doc(hidden))]
pub mod fault;
pub(crate) mod reflink;
pub(crate) mod xattr;
