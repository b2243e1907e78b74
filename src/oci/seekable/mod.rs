//! Seekable layers: a layer blob that every OCI client reads as an ordinary
//! `tar+zstd` layer, and that layerstore reads a piece at a time.
//!
//! ```text
//! zstd frame 0 | zstd frame 1 | … | TOC (skippable frame) | footer (skippable frame, 48 bytes)
//! ```
//!
//! The frames decompress, concatenated, to the layer's tar; they are cut
//! where chunks of file content begin, so each chunk lies whole in one
//! frame. The table of contents ([`toc::Toc`]) holds the objects that store
//! the layer (its whole tree metadata: enough to show the tree before any
//! content arrives) and, for every chunk, its id and where it lies; the
//! footer locates the TOC. The manifest's layer descriptor carries the TOC's
//! digest and position as annotations ([`TOC_DIGEST`], [`TOC_POSITION`]), so
//! the manifest's digest covers the TOC, and a reader finds it with one
//! range request.
//!
//! - `toc.rs`: the TOC and footer, both ways;
//! - `write.rs`: a layer written as a seekable blob (export and push);
//! - `pull.rs` (feature `registry`): a layer pulled by range requests,
//!   fetching only the frames of the chunks a store lacks;
//! - `lazy.rs` (feature `registry`): an image opened from its TOCs alone,
//!   its content fetched as it is read, prefetched in the background.
//!
//! `docs/FORMAT.md` ("Seekable layers") specifies the bytes.

#[cfg(feature = "registry")]
pub(crate) mod lazy;
#[cfg(feature = "registry")]
pub(crate) mod pull;
pub(crate) mod toc;
pub(crate) mod write;

/// The layer descriptor's annotation holding `sha256:` of the TOC's frame.
pub(crate) const TOC_DIGEST: &str = "dev.layerstore.seekable.toc.digest";
/// The layer descriptor's annotation holding the TOC frame's
/// `offset:length:raw-length`.
pub(crate) const TOC_POSITION: &str = "dev.layerstore.seekable.toc.position";
