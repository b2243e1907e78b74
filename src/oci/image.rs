//! Pushing a store's image: the registry side of `push IMAGE`. The OCI
//! export of the image (layer tars, config, manifest) is the `oci` layout
//! code's; this part decides whether an export is needed at all, and moves
//! what it produced.
//!
//! An unchanged re-push must not re-export (compressing every layer again
//! costs seconds per hundred megabytes): the manifest last pushed for the
//! image is remembered in the store's transfer cache, and when the registry
//! confirms (HEAD) every blob it names, only the manifest is put.

use std::path::Path;

use super::blobs::{ExportOptions, ImportOptions, import_blobs_with};
use super::cache::TransferCache;
use super::compress::Compression;
use super::layout::export_layout;
use super::registry::{Registry, RegistryRef};
use super::transfer::{Layout, Manifest, PullReport, PushOptions, PushReport, sha256};
use crate::digest::ImageId;
use crate::error::{Error, Result};
use crate::fsutil::durable;
use crate::store::Store;
use crate::store::TagName;

/// Pushing and pulling store images
impl Registry {
    /// Pushes `image` of `store` to `dest` (layers gzip-compressed, as
    /// registries expect): each blob the repository lacks is mounted from
    /// `options.mount_from` where offered, else uploaded; an unchanged
    /// re-push exports nothing and uploads nothing (see
    /// [`Registry::push_image_with`]).
    ///
    /// # Errors
    /// [`Error::ObjectNotFound`] if the image is incomplete in the store; the
    /// export's errors; as [`Registry::push_layout`] otherwise.
    pub fn push_image(
        &self,
        store: &Store,
        image: &ImageId,
        dest: &RegistryRef,
        options: &PushOptions<'_>,
    ) -> Result<PushReport> {
        let export = |layout: &Path| {
            let options = ExportOptions::new(Compression::Gzip);
            export_layout(store, image, layout, None, &options).map(|_| ())
        };
        self.push_image_with(store, image, dest, options, &export)
    }

    /// Pulls image `src` into `store`, fetching only the layer blobs whose
    /// layers the store lacks (known from earlier pulls and pushes through
    /// this store), verifying every blob as it streams; tags it `tag` once it
    /// is durable. Returns the image id and what moved.
    ///
    /// # Errors
    /// [`Error::ImageNotFound`] if the registry has no such image;
    /// [`Error::Oci`] if a blob is malformed or does not match its
    /// descriptor; [`Error::Registry`] if the registry fails; the store's
    /// errors.
    pub fn pull_image(
        &self,
        store: &Store,
        src: &RegistryRef,
        tag: Option<&TagName>,
        progress: &dyn Fn(&PullReport),
    ) -> Result<(ImageId, PullReport)> {
        let cache = TransferCache::new(store);
        let layout = durable::unique_tmp_path(&store.path().join("tmp"), "oci-pull");
        let result = (|| {
            let have = |digest: &str| cache.layer_for(digest).is_some();
            let report = self.pull_layout(src, &layout, "pulled", &have, progress)?;
            let lay = Layout { root: &layout };
            let (manifest, digest) = lay.manifest(None)?;
            let open = |desc: &oci_spec::image::Descriptor| {
                let path = lay.blob_path(desc.digest().as_ref())?;
                std::fs::File::open(&path).map_err(|e| Error::io("open blob", &path, e))
            };
            let known = |digest: &str| cache.layer_for(digest);
            let id = import_blobs_with(store, &manifest, open, &known, &ImportOptions::default())?;
            let parsed = Manifest::parse(&manifest, &digest)?;
            let layers = store.image(&id)?.layers().to_vec();
            for (blob, layer) in parsed.layers.iter().zip(&layers) {
                cache.record_layer(&blob.digest, layer)?;
            }
            store.flush()?;
            if let Some(tag) = tag {
                store.set_tag(tag, &id)?;
            }
            Ok((id, report))
        })();
        let _ = std::fs::remove_dir_all(&layout);
        result
    }

    /// Pushes `image` of `store` to `dest`. `export` writes the image into
    /// the (absent) OCI layout directory it is given, as that layout's only
    /// manifest; it is called only when the registry lacks a blob of the
    /// manifest last pushed for this image (or none was), so an unchanged
    /// re-push costs a HEAD per blob and one manifest PUT. What was pushed
    /// is remembered in `<store>/cache/oci/`.
    ///
    /// # Errors
    /// What `export` returns; as [`Registry::push_layout`] otherwise.
    pub fn push_image_with(
        &self,
        store: &Store,
        image: &ImageId,
        dest: &RegistryRef,
        options: &PushOptions<'_>,
        export: &dyn Fn(&Path) -> Result<()>,
    ) -> Result<PushReport> {
        let cache = TransferCache::new(store);
        if let Some(report) = self.repush_cached(&cache, image, dest)? {
            return Ok(report);
        }
        let layout = durable::unique_tmp_path(&store.path().join("tmp"), "oci-push");
        let result = export(&layout).and_then(|()| {
            let report = self.push_layout(&layout, None, dest, options)?;
            let (manifest, digest) = Layout { root: &layout }.manifest(None)?;
            // Remember which blob holds which layer, so that pulling an image
            // that shares them fetches none of them.
            let parsed = Manifest::parse(&manifest, &digest)?;
            let layers = store.image(image)?.layers().to_vec();
            if layers.len() == parsed.layers.len() {
                for (blob, layer) in parsed.layers.iter().zip(&layers) {
                    cache.record_layer(&blob.digest, layer)?;
                }
            }
            cache.record_pushed(image, &manifest)?;
            Ok(report)
        });
        let _ = std::fs::remove_dir_all(&layout);
        result
    }

    /// The fast path of an unchanged re-push: the remembered manifest, put
    /// again if the registry holds every blob it names.
    fn repush_cached(
        &self,
        cache: &TransferCache<'_>,
        image: &ImageId,
        dest: &RegistryRef,
    ) -> Result<Option<PushReport>> {
        let Some(bytes) = cache.pushed(image) else {
            return Ok(None);
        };
        let Ok(manifest) = Manifest::parse(&bytes, "cached manifest") else {
            return Ok(None);
        };
        let repo = dest.repository.as_str();
        let mut present = 0;
        for blob in manifest.layers.iter().chain([&manifest.config]) {
            if !self.has_blob(repo, &blob.digest)? {
                return Ok(None);
            }
            present += 1;
        }
        let digest = sha256(&bytes);
        self.put_manifest(repo, &dest.reference, bytes, &manifest.media_type)
            .map_err(|e| match e {
                Error::Registry { registry, what } => Error::Registry {
                    registry,
                    what: format!("putting the manifest of {image}: {what}"),
                },
                other => other,
            })?;
        Ok(Some(PushReport {
            blobs_present: present,
            manifest_digest: digest,
            ..PushReport::default()
        }))
    }
}
