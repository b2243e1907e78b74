//! Integration tests of the tree algebra: properties over random trees, and
//! ports of containerd's and moby's layering cases.

mod arbitrary;
mod containerd;
mod moby;
mod model;
mod objects;
mod oci;
mod properties;
mod stored;
