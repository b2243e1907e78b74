//! Filesystem helpers: durable writes, confined path resolution, xattrs, devices.
pub(crate) mod durable;
