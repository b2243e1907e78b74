//! Pushing a store's image: the registry side of `push IMAGE` and
//! `pull … --tag`. The OCI export of a layer (tar, compression) is the `oci`
//! blobs code's; this part decides which layers need one at all, and moves
//! what they produced.
//!
//! A push exports a layer only when the registry lacks its blob and no
//! earlier export of it (same compression and level, its file intact) is at
//! hand: the store's OCI cache ([`OciCache`]) remembers each export's digest
//! and `DiffID`, so a layer exported before costs a HEAD when the registry has
//! it, and an upload of the earlier file when it does not. An unchanged
//! re-push puts the remembered manifest once the registry confirms (HEAD)
//! every blob it names.

use std::cell::RefCell;
use std::collections::HashSet;
use std::path::Path;

use super::blobs::{
    ExportOptions, ExportedBlob, ImportOptions, export_layer_now, import_manifest,
    layer_descriptor, write_config_and_manifest,
};
use super::cache::{ExportRecord, OciCache, file_matches};
use super::digest::chain_ids;
use super::registry::{Registry, RegistryRef};
use super::seekable::lazy::{LazyImage, LazyLayer};
use super::seekable::pull::{Partial, fetch_toc, pull_layer, refusal};
use super::transfer::{Layout, Manifest, PullReport, PushOptions, PushReport, sha256};
use crate::error::{Error, Result};
use crate::fsutil::durable;
use crate::id::{ImageId, LayerId};
use crate::store::{Store, layout};
use crate::tree::Image;
use crate::tree::TagName;

/// Pushing and pulling store images
impl Registry {
    /// [`Exchange::push`](super::Exchange::push) of an image of `store`.
    pub(crate) fn push_image(
        &self,
        store: &Store,
        image: &ImageId,
        dest: &RegistryRef,
        options: &PushOptions<'_>,
    ) -> Result<PushReport> {
        let cache = OciCache::new(store);
        if let Some(report) = self.repush_cached(&cache, image, dest)? {
            return Ok(report);
        }
        let img = store.image(image)?;
        let dir = durable::unique_tmp_path(&layout::tmp(store.path()), "oci-push");
        let result = std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io("create directory", &dir, e))
            .and_then(|()| {
                let push = ImagePush {
                    registry: self,
                    store,
                    cache: &cache,
                    dir: &dir,
                    repo: dest.repository.as_str(),
                    options,
                    report: PushReport::default(),
                    done: HashSet::new(),
                };
                push.push(&img, dest)
            })
            .and_then(|(report, manifest)| {
                cache.record_pushed(image, &manifest)?;
                Ok(report)
            });
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    /// [`Exchange::pull`](super::Exchange::pull) into `store`.
    pub(crate) fn pull_image(
        &self,
        store: &Store,
        src: &RegistryRef,
        tag: Option<&TagName>,
        progress: &dyn Fn(&PullReport),
    ) -> Result<(ImageId, PullReport)> {
        let pulled = self.pull_into(store, src, false, progress)?;
        if let Some(tag) = tag {
            store.set_tag(tag, &pulled.image)?;
        }
        Ok((pulled.image, pulled.report))
    }

    /// [`Exchange::pull_lazy`](super::Exchange::pull_lazy) into `store`.
    pub(crate) fn pull_lazy(
        self: &std::sync::Arc<Self>,
        store: &Store,
        src: &RegistryRef,
    ) -> Result<LazyImage> {
        let pulled = self.pull_into(store, src, true, &|_| {})?;
        let layers = store.image(&pulled.image)?.layers().to_vec();
        for layer in &pulled.lazy {
            layer.settle(store);
        }
        if !pulled.lazy.is_empty() {
            store.mark_lazy(&pulled.image)?;
        }
        Ok(LazyImage::new(
            pulled.image,
            layers,
            pulled.diff_ids,
            std::sync::Arc::clone(self),
            src.repository.clone(),
            pulled.lazy,
            pulled.report,
        ))
    }

    /// Pulls `src` into `store`: layers it holds skipped, seekable ones a
    /// piece at a time (or, `lazy`, their TOCs only), the rest whole.
    fn pull_into(
        &self,
        store: &Store,
        src: &RegistryRef,
        open_lazily: bool,
        progress: &dyn Fn(&PullReport),
    ) -> Result<Pulled> {
        let layout = durable::unique_tmp_path(&layout::tmp(store.path()), "oci-pull");
        let opened = RefCell::new(Vec::new());
        let diff_ids = RefCell::new(Vec::new());
        let result = (|| {
            let skip = |manifest: &Manifest, config: &[u8], report: &mut PullReport| {
                *diff_ids.borrow_mut() = diff_ids_of(manifest, config);
                let how = PullHow {
                    lazy: open_lazily.then_some(&opened),
                    progress,
                };
                self.known_or_partial(store, &src.repository, manifest, config, report, &how)
            };
            let report = self.pull_layout_with(src, &layout, "pulled", &skip, progress)?;
            let lay = Layout { root: &layout };
            let (manifest, _) = lay.manifest(None)?;
            let manifest =
                oci_spec::image::ImageManifest::from_reader(&manifest[..]).map_err(|e| {
                    Error::Oci {
                        what: format!("image manifest of {src}"),
                        reason: e.to_string(),
                    }
                })?;
            let mut given = vec![None; manifest.layers().len()];
            for layer in opened.borrow().iter() {
                if let Some(slot) = given.get_mut(layer.index) {
                    *slot = Some(LayerId::from_bytes(layer.toc.layer));
                }
            }
            let open = |desc: &oci_spec::image::Descriptor| {
                let path = lay.blob_path(desc.digest().as_ref())?;
                std::fs::File::open(&path).map_err(|e| Error::io("open blob", &path, e))
            };
            let (image, _) =
                import_manifest(store, &manifest, open, &ImportOptions::default(), &given)?;
            Ok((image, report))
        })();
        let _ = std::fs::remove_dir_all(&layout);
        let (image, report) = result?;
        Ok(Pulled {
            image,
            report,
            lazy: opened.into_inner(),
            diff_ids: diff_ids.into_inner(),
        })
    }

    /// The fast path of an unchanged re-push: the remembered manifest, put
    /// again if the registry holds every blob it names.
    fn repush_cached(
        &self,
        cache: &OciCache<'_>,
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

/// The config's `DiffIDs` if it has one per layer of `manifest` (none
/// otherwise: then no layer is known).
fn diff_ids_of(manifest: &Manifest, config: &[u8]) -> Vec<String> {
    let diff_ids: Vec<String> = serde_json::from_slice::<serde_json::Value>(config)
        .ok()
        .and_then(|v| {
            v.pointer("/rootfs/diff_ids")?
                .as_array()?
                .iter()
                .map(|d| d.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if diff_ids.len() == manifest.layers.len() {
        diff_ids
    } else {
        Vec::new()
    }
}

impl Registry {
    /// Which layers of `manifest` need no download of their whole blob: those
    /// the store holds already (by `ChainID`, whatever the blob), and those
    /// pulled now a piece at a time (seekable blobs: only the chunks the
    /// store lacks are fetched).
    fn known_or_partial(
        &self,
        store: &Store,
        repo: &str,
        manifest: &Manifest,
        config: &[u8],
        report: &mut PullReport,
        how: &PullHow<'_>,
    ) -> Result<Vec<bool>> {
        let cache = OciCache::new(store);
        let diff_ids = diff_ids_of(manifest, config);
        if diff_ids.is_empty() {
            return Ok(vec![false; manifest.layers.len()]);
        }
        let chains = chain_ids(&diff_ids);
        let mut skip = Vec::with_capacity(manifest.layers.len());
        for (i, ((blob, diff_id), chain)) in manifest
            .layers
            .iter()
            .zip(&diff_ids)
            .zip(&chains)
            .enumerate()
        {
            if cache.known_layer(chain).is_some() {
                skip.push(true);
                continue;
            }
            let partial = match how.lazy {
                // The TOC alone: the tree is here, the content is not.
                Some(opened) => match fetch_toc(self, repo, blob, report)? {
                    Ok(toc) => {
                        store.put_layer_objects(&toc.objects).map_err(|e| {
                            refusal(self, repo, blob, format_args!("its table of contents: {e}"))
                        })?;
                        opened
                            .borrow_mut()
                            .push(LazyLayer::new(i, blob.clone(), toc));
                        skip.push(true);
                        continue;
                    }
                    Err(why) => Partial::Whole(why),
                },
                None => pull_layer(self, store, repo, blob, diff_id, report)?,
            };
            (how.progress)(report);
            match partial {
                Partial::Pulled(layer) => {
                    cache.record_chain(chain, &layer)?;
                    skip.push(true);
                }
                // Fetched whole, as any other blob.
                Partial::Whole(why) => {
                    if blob.annotations.contains_key(super::seekable::TOC_DIGEST) {
                        report.fetched_whole.push(format!("{}: {why}", blob.digest));
                    }
                    skip.push(false);
                }
            }
        }
        Ok(skip)
    }
}

/// How [`Registry::known_or_partial`] goes: seekable layers opened lazily
/// (into `lazy`) or pulled a piece at a time, the report shown to `progress`
/// after each.
struct PullHow<'a> {
    lazy: Option<&'a RefCell<Vec<LazyLayer>>>,
    progress: &'a dyn Fn(&PullReport),
}

/// What [`Registry::pull_into`] made.
struct Pulled {
    image: ImageId,
    report: PullReport,
    /// The layers opened lazily (their TOCs only).
    lazy: Vec<LazyLayer>,
    /// The config's `DiffIDs`.
    diff_ids: Vec<String>,
}

/// One push of a store image.
struct ImagePush<'a> {
    registry: &'a Registry,
    store: &'a Store,
    cache: &'a OciCache<'a>,
    /// Where blobs exported (or linked) for this push go.
    dir: &'a Path,
    repo: &'a str,
    options: &'a PushOptions<'a>,
    report: PushReport,
    /// Blobs dealt with (an image may name one twice).
    done: HashSet<String>,
}

impl ImagePush<'_> {
    /// Pushes every layer, then the config and the manifest; returns the
    /// report and the manifest's bytes.
    fn push(mut self, img: &Image, dest: &RegistryRef) -> Result<(PushReport, Vec<u8>)> {
        let export =
            ExportOptions::new(self.options.compression).prefetch(self.options.prefetch.to_vec());
        let mut layers = Vec::with_capacity(img.layers().len());
        let mut diff_ids = Vec::with_capacity(img.layers().len());
        for id in img.layers() {
            let record = self.push_layer(id, &export)?;
            layers.push(ExportedBlob {
                descriptor: layer_descriptor(export.compression, &record)?,
                path: record.path,
            });
            diff_ids.push(record.diff_id);
        }
        self.cache.record_layers(&diff_ids, img.layers())?;
        let (config, manifest) = write_config_and_manifest(self.dir, img, &layers, diff_ids)?;
        let config_digest = config.descriptor.digest().to_string();
        if !self.settled(&config_digest)? {
            self.upload(
                &config_digest,
                &config.path,
                config.descriptor.size(),
                false,
            )?;
        }
        let manifest_bytes =
            fs_err::read(&manifest.path).map_err(|e| Error::io("read", &manifest.path, e))?;
        self.registry.put_manifest(
            self.repo,
            &dest.reference,
            manifest_bytes.clone(),
            manifest.descriptor.media_type().as_ref(),
        )?;
        self.report.manifest_digest = manifest.descriptor.digest().to_string();
        Ok((self.report, manifest_bytes))
    }

    /// One layer: its blob's descriptor, and the blob moved if the
    /// repository lacks it.
    fn push_layer(&mut self, id: &LayerId, export: &ExportOptions) -> Result<ExportRecord> {
        // Exported before: the digest is known, so the registry can be asked
        // before anything is compressed, and the earlier file uploaded if it
        // is intact.
        let earlier = self.cache.export_of(id, export);
        if let Some(earlier) = &earlier {
            if self.settled(&earlier.digest)? {
                return Ok(earlier.clone());
            }
            if file_matches(&earlier.path, earlier.size, &earlier.digest) {
                self.report.layers_reused += 1;
                self.upload(&earlier.digest, &earlier.path, earlier.size, true)?;
                return Ok(earlier.clone());
            }
        }
        let record = export_layer_now(self.store, id, self.dir, export)?;
        self.report.layers_exported += 1;
        // Same bytes as the earlier export: the registry was asked already.
        let asked = earlier.is_some_and(|e| e.digest == record.digest);
        if asked || !self.settled(&record.digest)? {
            self.upload(&record.digest, &record.path, record.size, true)?;
        }
        Ok(record)
    }

    /// Whether blob `digest` needs no upload: dealt with already in this
    /// push, present in the repository, or mounted from another one.
    fn settled(&mut self, digest: &str) -> Result<bool> {
        if self.done.contains(digest) {
            return Ok(true);
        }
        let settled = if self.registry.has_blob(self.repo, digest)? {
            self.report.blobs_present += 1;
            true
        } else if self.mount_any(digest)? {
            self.report.blobs_mounted += 1;
            true
        } else {
            false
        };
        if settled {
            self.done.insert(digest.to_owned());
            self.progress();
        }
        Ok(settled)
    }

    fn mount_any(&self, digest: &str) -> Result<bool> {
        for source in self.options.mount_from.iter().filter(|s| *s != self.repo) {
            if self.registry.mount_blob(self.repo, source, digest)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn upload(&mut self, digest: &str, path: &Path, size: u64, is_layer: bool) -> Result<()> {
        let file = std::fs::File::open(path).map_err(|e| Error::io("open blob", path, e))?;
        self.registry.push_blob(self.repo, digest, size, file)?;
        self.report.blobs_uploaded += 1;
        self.report.bytes_uploaded += size;
        self.report.layers_uploaded += u64::from(is_layer);
        self.done.insert(digest.to_owned());
        self.progress();
        Ok(())
    }

    fn progress(&self) {
        if let Some(progress) = self.options.progress {
            progress(&self.report);
        }
    }
}
