//! [`Exchange`]: a store's images in and out as OCI — image layouts, `docker
//! save` archives, blobs, layer tars and (feature `registry`) registries.
//!
//! Every operation that reads or writes the store is a method of this one
//! entry type, as `mount::Containers` and `build::Builder` are for theirs;
//! the work is done in the modules beside it (`blobs`, `layout`, `tar`,
//! `image`), which these methods call.

use std::io::{Read, Write};
use std::path::Path;

use oci_spec::image::Descriptor;

use crate::error::Result;
use crate::id::ImageId;
use crate::oci::blobs::{self, ExportOptions, ImportOptions, OciExport};
use crate::oci::{layout, tar};
use crate::store::Store;
use crate::tree::Layer;
#[cfg(feature = "registry")]
use crate::{
    oci::registry::{Registry, RegistryRef},
    oci::transfer::{PullReport, PushOptions, PushReport},
    tree::TagName,
};

#[cfg(doc)]
use crate::Error;

/// The OCI interchange of a store: its images exported to and imported from
/// OCI image layouts, `docker save` archives, OCI blobs and registries.
///
/// It borrows the store and holds nothing else, so it is cheap to make and
/// to copy.
///
/// ```
/// use layerstore::oci::{Compression, Exchange, ExportOptions, ImportOptions};
/// use layerstore::{Store, StoreOptions};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let store = Store::create(dir.path().join("store"), &StoreOptions::default())?;
/// let image = store.put_empty_image()?;
///
/// let layout = dir.path().join("layout");
/// let options = ExportOptions::new(Compression::Zstd);
/// let manifest = Exchange::new(&store).export_layout(&image, &layout, Some("app"), &options)?;
/// assert!(manifest.digest().to_string().starts_with("sha256:"));
///
/// let other = Store::create(dir.path().join("other"), &StoreOptions::default())?;
/// let id = Exchange::new(&other).import_layout(&layout, Some("app"), &ImportOptions::default())?;
/// assert_eq!(id, image);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Exchange<'s> {
    store: &'s Store,
}

/// Construction
impl<'s> Exchange<'s> {
    /// The OCI interchange of `store`.
    #[must_use]
    pub const fn new(store: &'s Store) -> Self {
        Self { store }
    }

    /// The store.
    #[must_use]
    pub const fn store(&self) -> &'s Store {
        self.store
    }
}

/// Image layouts and `docker save` archives
impl Exchange<'_> {
    /// Writes image `image` into the OCI image layout at `layout` (created if
    /// absent, added to if present): its blobs into `blobs/sha256/`, and its
    /// manifest into `index.json`, annotated with `reference` as
    /// `org.opencontainers.image.ref.name` when given (replacing any manifest
    /// of that name). Returns the manifest's descriptor (its digest is what
    /// `layerstore export-oci` prints).
    ///
    /// # Errors
    /// As [`Exchange::export_blobs`]; [`Error::Oci`] if `layout` holds a
    /// malformed `oci-layout` or `index.json`.
    pub fn export_layout(
        &self,
        image: &ImageId,
        layout: &Path,
        reference: Option<&str>,
        options: &ExportOptions,
    ) -> Result<Descriptor> {
        layout::export_layout(self.store, image, layout, reference, options)
    }

    /// Imports an image from the OCI image layout at `layout` into the
    /// store: the manifest annotated `org.opencontainers.image.ref.name` =
    /// `reference`, or, without a reference, the only manifest of
    /// `index.json`. Returns the image id. Every blob is verified (see
    /// [`Exchange::import_blobs`]).
    ///
    /// # Errors
    /// [`Error::Oci`] if the layout is malformed, the reference matches
    /// nothing, or there are several manifests and no reference (the message
    /// lists them); as [`Exchange::import_blobs`] otherwise.
    pub fn import_layout(
        &self,
        layout: &Path,
        reference: Option<&str>,
        options: &ImportOptions,
    ) -> Result<ImageId> {
        layout::import_layout(self.store, layout, reference, options)
    }

    /// Imports an image from a `docker save` archive (a tar holding
    /// `manifest.json`, the config and one tar per layer; both the classic
    /// and the OCI-style archives of Docker 25+). `reference` picks an image
    /// by one of its `RepoTags` when the archive holds several. Returns the
    /// image id.
    ///
    /// # Errors
    /// [`Error::Oci`] naming the archive if it is malformed or the reference
    /// matches no image; as [`Exchange::import_blobs`] otherwise.
    pub fn import_docker_archive(
        &self,
        archive: &Path,
        reference: Option<&str>,
        options: &ImportOptions,
    ) -> Result<ImageId> {
        layout::import_docker_archive(self.store, archive, reference, options)
    }

    /// Writes image `image` into the file `archive` as a `docker save`
    /// archive (`manifest.json`, the config and one uncompressed tar per
    /// layer under `blobs/sha256/`, as Docker 25+ writes them), which
    /// `docker load`, `podman load` and [`Exchange::import_docker_archive`]
    /// read. `repo_tags` (`name:tag`, may be empty) are the names the
    /// loader gives the image. The file is replaced atomically: written
    /// beside it, then renamed.
    ///
    /// # Errors
    /// As [`Exchange::export_blobs`]; [`Error::Io`] naming the file if
    /// writing it fails.
    pub fn export_docker_archive(
        &self,
        image: &ImageId,
        archive: &Path,
        repo_tags: &[String],
    ) -> Result<()> {
        layout::export_docker_archive(self.store, image, archive, repo_tags)
    }
}

/// Blobs and layer tars
impl Exchange<'_> {
    /// Writes image `image` as OCI blobs into the directory `dir` (created if
    /// absent), each blob in the file named by its hex sha256 digest — the
    /// layout of an OCI image layout's `blobs/sha256/`. Returns their
    /// descriptors. Blobs already there are kept.
    ///
    /// Layers are written one at a time, each streamed from the store through
    /// a parallel compressor into its file (no layer is held in memory),
    /// hashing both the compressed blob (its digest) and the tar (its
    /// `DiffID`). The same image always gives byte-identical blobs.
    ///
    /// # Errors
    /// [`Error::ImageNotFound`]/[`Error::ObjectNotFound`] if the image or one
    /// of its layers is not stored, [`Error::Io`] naming the file if writing
    /// fails, the store's errors if content cannot be read.
    pub fn export_blobs(
        &self,
        image: &ImageId,
        dir: &Path,
        options: &ExportOptions,
    ) -> Result<OciExport> {
        blobs::export_blobs(self.store, image, dir, options)
    }

    /// Imports the image whose manifest is `manifest` (the JSON bytes) into
    /// the store, reading each blob the manifest names from `open_blob` (a
    /// file of an image layout, a registry download, …). Returns the new
    /// image's id.
    ///
    /// Every blob is checked against its descriptor while it streams: its
    /// sha256 digest and size, and for layers the `DiffID` of the
    /// uncompressed tar against the config's `rootfs.diff_ids`. Layers may be
    /// gzip, zstd or uncompressed (told by their first bytes, whatever the
    /// media type says); each is read once, file contents going straight into
    /// the store. Layer tars are read strictly (see [`Error::Oci`]).
    ///
    /// A layer the store already holds from any OCI import or export (the
    /// same blob digest, known to decode to the config's `DiffID`, over the
    /// same layers below) is neither opened nor read: that layer is used as
    /// it is.
    ///
    /// # Errors
    /// [`Error::Oci`] naming the blob for anything malformed, hostile or not
    /// matching its descriptor; `open_blob`'s errors; the store's errors.
    pub fn import_blobs<F, R>(
        &self,
        manifest: &[u8],
        open_blob: F,
        options: &ImportOptions,
    ) -> Result<ImageId>
    where
        F: FnMut(&Descriptor) -> Result<R>,
        R: Read,
    {
        blobs::import_blobs(self.store, manifest, open_blob, options)
    }

    /// Writes `layer` as an uncompressed OCI layer tar into `out`, reading
    /// file contents from the store as it goes (never a whole file in
    /// memory). Returns `out` after the end-of-archive blocks.
    ///
    /// # Errors
    /// [`Error::Io`] if writing fails; the store's errors
    /// ([`Error::Corrupt`], [`Error::ChunkNotFound`]) if a file's content
    /// cannot be read.
    pub fn write_layer_tar<W: Write>(&self, layer: &Layer, out: W) -> Result<W> {
        tar::write_layer_tar(self.store, layer, out)
    }
}

/// Registries
#[cfg(feature = "registry")]
impl Exchange<'_> {
    /// Pushes `image` of the store to `dest` through `registry`, layers
    /// gzip-compressed (level 6) as registries expect. For each layer:
    /// nothing moves if the repository has its blob (known without exporting
    /// when the layer was exported or pushed before); else it is mounted from
    /// `options.mount_from` where offered, else uploaded — from the file an
    /// earlier export wrote when that is intact, else exported now. An
    /// unchanged re-push exports nothing and uploads nothing. The report says
    /// how many layers were exported and how many reused an earlier export.
    ///
    /// # Errors
    /// [`Error::ObjectNotFound`] if the image is incomplete in the store; the
    /// export's errors; [`Error::Registry`] if the registry refuses or fails;
    /// [`Error::Io`] naming the file if a blob cannot be written or read.
    pub fn push(
        &self,
        registry: &Registry,
        image: &ImageId,
        dest: &RegistryRef,
        options: &PushOptions<'_>,
    ) -> Result<PushReport> {
        registry.push_image(self.store, image, dest, options)
    }

    /// Pulls image `src` from `registry` into the store, fetching only the
    /// layer blobs whose layers the store lacks: a layer it holds from any
    /// OCI path (imported from a layout or a `docker save` archive, pulled,
    /// exported, pushed) is recognised by its blob digest and the `DiffID`
    /// the config gives, over the same layers below (`ChainID`). Every
    /// fetched blob is verified as it streams; the image is tagged `tag` once
    /// it is durable. `progress` sees the report as blobs arrive. Returns the
    /// image id and what moved.
    ///
    /// # Errors
    /// [`Error::ImageNotFound`] if the registry has no such image;
    /// [`Error::Oci`] if a blob is malformed or does not match its
    /// descriptor; [`Error::Registry`] if the registry fails; the store's
    /// errors.
    pub fn pull(
        &self,
        registry: &Registry,
        src: &RegistryRef,
        tag: Option<&TagName>,
        progress: &dyn Fn(&PullReport),
    ) -> Result<(ImageId, PullReport)> {
        registry.pull_image(self.store, src, tag, progress)
    }

    /// Opens image `src` lazily: fetches its manifest, config and the table
    /// of contents of each seekable layer (layers without one, or from a
    /// registry that serves no ranges, are pulled whole; layers the store
    /// holds are skipped), and puts the image's whole tree into the store,
    /// but not its content. Read it through a store whose chunk source is
    /// [`LazyImage::source`](super::LazyImage::source) (a [`FuseView`](crate::mount::FuseView) of
    /// [`LazyImage::image`](super::LazyImage::image), say): each read fetches what it lacks.
    /// [`LazyImage::prefetch`](super::LazyImage::prefetch) fetches the rest, [`LazyImage::complete`](super::LazyImage::complete)
    /// makes it an ordinary image. The image is not tagged until then.
    ///
    /// # Errors
    /// As [`Exchange::pull`].
    pub fn pull_lazy(
        &self,
        registry: &std::sync::Arc<Registry>,
        src: &RegistryRef,
    ) -> Result<super::LazyImage> {
        registry.pull_lazy(self.store, src)
    }
}
