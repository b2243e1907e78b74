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

use super::cache::TransferCache;
use super::registry::{Registry, RegistryRef};
use super::transfer::{Layout, Manifest, PushOptions, PushReport, sha256};
use crate::digest::ImageId;
use crate::error::{Error, Result};
use crate::fsutil::durable;
use crate::store::Store;

/// Pushing store images
impl Registry {
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
            let (manifest, _) = Layout { root: &layout }.manifest(None)?;
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
