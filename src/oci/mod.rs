//! OCI interchange: images as OCI image layouts and blobs, layers as tar, and
//! registries.
//!
//! [`Exchange`] is the entry point: `Exchange::new(&store)` borrows a store,
//! and its methods move the store's images in and out.
//!
//! - [`Exchange::export_blobs`] turns an image into its OCI blobs (config,
//!   manifest and one compressed tar per layer, each with its sha256 digest
//!   and size), and [`Exchange::import_blobs`] makes an image from them,
//!   verifying every digest while streaming. Registry push and pull build on
//!   these two.
//! - [`Exchange::export_layout`] and [`Exchange::import_layout`] do the same
//!   with an OCI image layout directory (`oci-layout`, `index.json`,
//!   `blobs/sha256/…`); [`Exchange::import_docker_archive`] reads a `docker
//!   save` archive.
//! - [`Exchange::write_layer_tar`] writes one layer as an OCI layer tar.
//! - `Exchange::push` and `Exchange::pull` (feature `registry`) move a
//!   store's image to and from a registry through a `Registry`, the
//!   connection to one OCI distribution registry, moving only the blobs the
//!   other side lacks. `Registry` alone moves blobs, manifests and whole
//!   layout directories (`push_layout`, `pull_layout`), touching no store.
//!
//! What takes no store is a free function: [`sha256_digest`] and
//! [`chain_ids`].
//!
//! ```no_run
//! use layerstore::oci::{Exchange, ExportOptions, ImportOptions};
//! use layerstore::Store;
//!
//! # fn main() -> layerstore::Result<()> {
//! let store = Store::open("/var/lib/layerstore")?;
//! let exchange = Exchange::new(&store);
//! let image = store.resolve_image("app")?;
//! let manifest = exchange.export_layout(
//!     &image,
//!     "/tmp/layout".as_ref(),
//!     Some("app"),
//!     &ExportOptions::default(),
//! )?;
//! println!("{}", manifest.digest()); // sha256:…
//!
//! let other = Store::open("/mnt/other-store")?;
//! let id = Exchange::new(&other).import_layout(
//!     "/tmp/layout".as_ref(),
//!     Some("app"),
//!     &ImportOptions::default(),
//! )?;
//! assert_eq!(id, image);
//! # Ok(())
//! # }
//! ```
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
mod exchange;
#[cfg(feature = "registry")]
mod image;
mod layout;
#[cfg(feature = "registry")]
mod registry;
pub(crate) mod seekable;
pub(crate) mod tar;
#[cfg(feature = "registry")]
mod transfer;

pub use oci_spec;

pub use self::{
    blobs::{ExportOptions, ExportedBlob, ImportOptions, OciExport},
    compress::Compression,
    digest::{chain_ids, sha256_digest},
    exchange::Exchange,
};

#[cfg(feature = "registry")]
pub use self::registry::{Credentials, Registry, RegistryOptions, RegistryRef};
#[cfg(feature = "registry")]
pub use self::seekable::lazy::{LazyImage, PrefetchOptions, PrefetchReport};
#[cfg(feature = "registry")]
pub use self::transfer::{PullReport, PushOptions, PushReport};
