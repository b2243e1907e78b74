//! OCI interchange: images as OCI image layouts and blobs, layers as tar, and
//! registries.
//!
//! - [`export_blobs`] turns an image into its OCI blobs (config, manifest and
//!   one compressed tar per layer, each with its sha256 digest and size), and
//!   [`import_blobs`] makes an image from them, verifying every digest while
//!   streaming. Registry push and pull build on these two.
//! - [`export_layout`] and [`import_layout`] do the same with an OCI image
//!   layout directory (`oci-layout`, `index.json`, `blobs/sha256/…`);
//!   [`import_docker_archive`] reads a `docker save` archive.
//! - [`write_layer_tar`] writes one layer as an OCI layer tar.
//! - `Registry` (feature `registry`) pushes to and pulls from OCI
//!   distribution registries, moving only the blobs the other side lacks.
//!
//! Our layers map to OCI layers and back exactly: whiteouts `.wh.<name>`,
//! opaque directories `.wh..wh..opq`, hard links (also to files of lower
//! layers), xattrs, devices, nanosecond mtimes and long names (PAX). Types of
//! the OCI image spec are those of the [`oci_spec`] crate.

mod blobs;
mod cache;
mod compress;
mod config;
mod digest;
#[cfg(feature = "registry")]
mod image;
mod layout;
#[cfg(feature = "registry")]
mod registry;
pub(crate) mod tar;
#[cfg(feature = "registry")]
mod transfer;

pub use oci_spec;

pub use self::{
    blobs::{ExportOptions, ExportedBlob, ImportOptions, OciExport, export_blobs, import_blobs},
    compress::Compression,
    digest::{chain_ids, sha256_digest},
    layout::{export_layout, import_docker_archive, import_layout},
    tar::write_layer_tar,
};

#[cfg(feature = "registry")]
pub use self::registry::{Credentials, Registry, RegistryOptions, RegistryRef};
#[cfg(feature = "registry")]
pub use self::transfer::{PullReport, PushOptions, PushReport};
