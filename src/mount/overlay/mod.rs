//! The `overlay` backend: the kernel's overlayfs.

pub(crate) mod extract;
pub(crate) mod kernel;
pub(crate) mod upper;
