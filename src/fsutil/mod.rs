//! Filesystem helpers: durable writes, confined path resolution, xattrs, devices.
