//! An image as OCI blobs (config, manifest, compressed layer tars) and back.
//!
//! This is the part that the image layout, `docker save` import and registry
//! push/pull share: export writes each blob once into a directory, named by
//! its digest; import reads blobs from any [`Read`], verifying each digest
//! and size while streaming.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use oci_spec::image::{
    Descriptor, Digest, ImageConfiguration, ImageManifest, ImageManifestBuilder, MediaType,
};

use crate::error::{Error, Result};
use crate::fsutil::durable;
use crate::fsutil::reflink::reflink_or_copy;
use crate::id::{ImageId, LayerId};
use crate::oci::cache::{ExportRecord, OciCache, file_matches};
use crate::oci::compress::{Compression, ParallelCompressor};
use crate::oci::config;
use crate::oci::digest::{HashingReader, chain_ids, sha256_digest, sha256_hex};
use crate::oci::seekable::write::write_seekable_layer;
use crate::oci::seekable::{TOC_DIGEST, TOC_POSITION};
use crate::oci::tar::{read_layer_tar, write_layer_tar};
use crate::store::Store;
use crate::tree::{Image, Snapshot};

/// How to export an image.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ExportOptions {
    /// How layers are compressed (default gzip).
    pub compression: Compression,
    /// Compression level: gzip 0–9 (default 6), zstd 1–19 (default 3).
    pub level: Option<i32>,
    /// For seekable layers: the paths a lazy reader fetches first, in order
    /// (a [`ReadLog`](crate::mount::ReadLog) of a typical run); each layer's
    /// table of contents lists those of its files.
    pub prefetch: Vec<crate::TreePath>,
    /// Told how many layers (and their bytes of file content) are written
    /// ([`ProgressStage::Export`](crate::ProgressStage::Export)).
    pub progress: crate::Progress,
}

impl ExportOptions {
    /// Options with `compression` and its default level.
    #[must_use]
    pub fn new(compression: Compression) -> Self {
        Self {
            compression,
            level: None,
            prefetch: Vec::new(),
            progress: crate::Progress::none(),
        }
    }

    /// Compresses layers with `compression`.
    #[must_use]
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Reports the layers written to `progress`.
    #[must_use]
    pub fn progress(mut self, progress: crate::Progress) -> Self {
        self.progress = progress;
        self
    }

    /// Lists `paths` as the prefetch order of seekable layers.
    #[must_use]
    pub fn prefetch(mut self, paths: Vec<crate::TreePath>) -> Self {
        self.prefetch = paths;
        self
    }

    /// Compresses at `level` (gzip 0–9, zstd 1–19).
    #[must_use]
    pub fn level(mut self, level: i32) -> Self {
        self.level = Some(level);
        self
    }
}

/// Limits on what an import accepts, so that hostile input cannot exhaust
/// memory or disk.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ImportOptions {
    /// Largest manifest, config or index accepted, in bytes (default 8 MiB).
    pub max_json_size: u64,
    /// Largest uncompressed layer accepted, in bytes (default 1 TiB).
    pub max_layer_size: u64,
    /// Largest ratio of uncompressed to compressed size (default 200), plus
    /// [`expansion_slack`](Self::expansion_slack): past it a layer is refused
    /// as a compression bomb.
    pub max_expansion: u64,
    /// Bytes a layer may expand to beyond `max_expansion` times its
    /// compressed size (default 64 MiB), for small, very compressible layers.
    pub expansion_slack: u64,
    /// Told how many layers (and their compressed bytes) are read
    /// ([`ProgressStage::Import`](crate::ProgressStage::Import)).
    pub progress: crate::Progress,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            max_json_size: 8 << 20,
            max_layer_size: 1 << 40,
            max_expansion: 200,
            expansion_slack: 64 << 20,
            progress: crate::Progress::none(),
        }
    }
}

impl ImportOptions {
    /// Accepts manifests, configs and indexes of up to `bytes`.
    #[must_use]
    pub fn max_json_size(mut self, bytes: u64) -> Self {
        self.max_json_size = bytes;
        self
    }

    /// Accepts uncompressed layers of up to `bytes`.
    #[must_use]
    pub fn max_layer_size(mut self, bytes: u64) -> Self {
        self.max_layer_size = bytes;
        self
    }

    /// Refuses layers that expand more than `ratio` times (plus the slack).
    #[must_use]
    pub fn max_expansion(mut self, ratio: u64) -> Self {
        self.max_expansion = ratio;
        self
    }

    /// Reports the layers read to `progress`.
    #[must_use]
    pub fn progress(mut self, progress: crate::Progress) -> Self {
        self.progress = progress;
        self
    }

    /// Lets a layer expand `bytes` beyond `max_expansion` times its size.
    #[must_use]
    pub fn expansion_slack(mut self, bytes: u64) -> Self {
        self.expansion_slack = bytes;
        self
    }
}

/// One blob written by [`Exchange::export_blobs`](super::Exchange::export_blobs): its descriptor and where it is.
#[derive(Debug, Clone)]
pub struct ExportedBlob {
    /// Media type, `sha256:` digest and size.
    pub descriptor: Descriptor,
    /// The file holding it: `<dir>/<hex digest>`.
    pub path: PathBuf,
}

/// An image as OCI blobs, as [`Exchange::export_blobs`](super::Exchange::export_blobs) wrote them.
#[derive(Debug, Clone)]
pub struct OciExport {
    /// The image manifest (`application/vnd.oci.image.manifest.v1+json`).
    pub manifest: ExportedBlob,
    /// The image configuration (`application/vnd.oci.image.config.v1+json`).
    pub config: ExportedBlob,
    /// The layers, bottom first, compressed as asked.
    pub layers: Vec<ExportedBlob>,
    /// The layers' `DiffIDs`: `sha256:` of each uncompressed tar, bottom first.
    pub diff_ids: Vec<String>,
}

/// [`Exchange::export_blobs`](super::Exchange::export_blobs) of `store`.
pub(crate) fn export_blobs(
    store: &Store,
    image: &ImageId,
    dir: &Path,
    options: &ExportOptions,
) -> Result<OciExport> {
    fs_err::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
    let img: Image = store.image(image)?;
    let mut layers = Vec::with_capacity(img.layers().len());
    let mut diff_ids = Vec::with_capacity(img.layers().len());
    let tracker = options.progress.track(crate::ProgressStage::Export);
    let content: Vec<u64> = if options.progress.is_set() {
        img.layers()
            .iter()
            .map(|id| Ok(content_bytes(&store.layer(id)?)))
            .collect::<Result<_>>()?
    } else {
        vec![0; img.layers().len()]
    };
    tracker.add_total(content.len() as u64, content.iter().sum());
    for (id, bytes) in img.layers().iter().zip(&content) {
        let record = export_layer(store, id, dir, options)?;
        tracker.add(1, *bytes);
        layers.push(ExportedBlob {
            descriptor: layer_descriptor(options.compression, &record)?,
            path: record.path,
        });
        diff_ids.push(record.diff_id);
    }
    // Best effort: a store that cannot be written to still exports.
    let _ = OciCache::new(store).record_layers(&diff_ids, img.layers());
    let (config, manifest) = write_config_and_manifest(dir, &img, &layers, diff_ids.clone())?;
    tracker.finish();
    Ok(OciExport {
        manifest,
        config,
        layers,
        diff_ids,
    })
}

/// The bytes of file content a layer adds.
fn content_bytes(layer: &crate::Layer) -> u64 {
    layer
        .upserts()
        .iter()
        .map(|e| match &e.kind {
            crate::EntryKind::File { size, .. } => *size,
            _ => 0,
        })
        .sum()
}

/// Writes the config and manifest blobs of `img` whose layer blobs are
/// `layers` (their `DiffIDs`: `diff_ids`) into `dir`.
pub(crate) fn write_config_and_manifest(
    dir: &Path,
    img: &Image,
    layers: &[ExportedBlob],
    diff_ids: Vec<String>,
) -> Result<(ExportedBlob, ExportedBlob)> {
    let config_bytes = config::to_oci(img.config(), img.history(), diff_ids)?;
    let config = write_blob(dir, MediaType::ImageConfig, &config_bytes)?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config.descriptor.clone())
        .layers(
            layers
                .iter()
                .map(|l| l.descriptor.clone())
                .collect::<Vec<_>>(),
        )
        .build()
        .map_err(|e| Error::InvalidArgument(format!("OCI manifest: {e}")))?;
    let manifest = write_blob(
        dir,
        MediaType::ImageManifest,
        &config::canonical_json(&manifest)?,
    )?;
    Ok((config, manifest))
}

/// Writes layer `id` of `store` as a compressed blob into `dir`, named by
/// its digest: a copy (a reflink where the filesystem can) of the blob an
/// earlier export of the layer with the same compression and level wrote,
/// when that file is still intact; else exported now ([`export_layer_now`]).
pub(crate) fn export_layer(
    store: &Store,
    id: &LayerId,
    dir: &Path,
    options: &ExportOptions,
) -> Result<ExportRecord> {
    if let Some(earlier) = OciCache::new(store).export_of(id, options)
        && let Some(path) = copy_blob(dir, &earlier)?
    {
        return Ok(ExportRecord { path, ..earlier });
    }
    export_layer_now(store, id, dir, options)
}

/// Writes layer `id` of `store` as a compressed blob into `dir`, named by
/// its digest, streamed from the store through a parallel compressor (no
/// layer is held in memory), hashing both the compressed blob (its digest)
/// and the tar (its `DiffID`). The export is remembered in the store's OCI
/// cache.
pub(crate) fn export_layer_now(
    store: &Store,
    id: &LayerId,
    dir: &Path,
    options: &ExportOptions,
) -> Result<ExportRecord> {
    let level = options.compression.level(options.level);
    let layer = store.layer(id)?;
    let tmp = durable::unique_tmp_path(dir, ".tmp-layer");
    let result = (|| {
        let file = File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
        let blob = BufWriter::with_capacity(1 << 20, file);
        let (blob, diff_id, digest, len, toc) = if options.compression == Compression::ZstdSeekable
        {
            let done = write_seekable_layer(store, &layer, blob, level, &options.prefetch)?;
            let toc = (done.toc.to_annotation(), done.toc_digest);
            (done.inner, done.diff_id, done.digest, done.len, Some(toc))
        } else {
            let compressor = ParallelCompressor::new(blob, options.compression, Some(level));
            let done = write_layer_tar(store, &layer, compressor)?
                .finish()
                .map_err(|e| Error::io("write", &tmp, e))?;
            (done.inner, done.plain_digest, done.digest, done.len, None)
        };
        let file = blob
            .into_inner()
            .map_err(|e| Error::io("write", &tmp, e.into_error()))?;
        durable::sync_file(&file, &tmp)?;
        Ok::<_, Error>((diff_id, digest, len, toc))
    })();
    let (diff_id, digest, size, toc) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    let path = place(dir, &tmp, &digest)?;
    let record = ExportRecord {
        digest,
        size,
        diff_id,
        path: std::path::absolute(&path).unwrap_or_else(|_| path.clone()),
        toc,
    };
    // Best effort, as in export_blobs.
    let _ = OciCache::new(store).record_export(id, options, &record);
    Ok(ExportRecord { path, ..record })
}

/// The blob of an earlier export copied into `dir` (a reflink where the
/// filesystem can), if its file is still there with its size and digest;
/// `None` otherwise.
fn copy_blob(dir: &Path, earlier: &ExportRecord) -> Result<Option<PathBuf>> {
    let Some(hex) = sha256_hex(&earlier.digest) else {
        return Ok(None);
    };
    let dest = dir.join(hex);
    if file_matches(&dest, earlier.size, &earlier.digest) {
        return Ok(Some(dest));
    }
    let Ok(src) = File::open(&earlier.path) else {
        return Ok(None);
    };
    let tmp = durable::unique_tmp_path(dir, ".tmp-layer");
    let copied = File::create(&tmp)
        .map_err(|e| Error::io("create", &tmp, e))
        .and_then(|file| {
            reflink_or_copy(&src, &earlier.path, &file, &tmp)?;
            Ok(file)
        });
    // Checked where it now is: the source may have changed since.
    match copied {
        Ok(file) if file_matches(&tmp, earlier.size, &earlier.digest) => {
            durable::sync_file(&file, &tmp)?;
            place(dir, &tmp, &earlier.digest).map(Some)
        }
        _ => {
            let _ = std::fs::remove_file(&tmp);
            Ok(None)
        }
    }
}

/// The descriptor of an exported layer blob: a seekable one's carries its
/// TOC's digest and position as annotations, which the manifest's digest
/// then covers.
pub(crate) fn layer_descriptor(
    compression: Compression,
    record: &ExportRecord,
) -> Result<Descriptor> {
    let mut desc = descriptor(compression.media_type(), record.size, &record.digest)?;
    if let Some((position, digest)) = &record.toc {
        desc.set_annotations(Some(
            [
                (TOC_DIGEST.to_owned(), digest.clone()),
                (TOC_POSITION.to_owned(), position.clone()),
            ]
            .into(),
        ));
    }
    Ok(desc)
}

pub(crate) fn descriptor(media_type: MediaType, size: u64, digest: &str) -> Result<Descriptor> {
    let digest = Digest::from_str(digest)
        .map_err(|e| Error::InvalidArgument(format!("digest '{digest}': {e}")))?;
    Ok(Descriptor::new(media_type, size, digest))
}

/// Writes `bytes` as a blob into `dir`; returns its descriptor.
pub(crate) fn write_blob(dir: &Path, media_type: MediaType, bytes: &[u8]) -> Result<ExportedBlob> {
    let digest = sha256_digest(bytes);
    let hex = &digest["sha256:".len()..];
    let path = dir.join(hex);
    if !path.exists() {
        durable::write_atomic(dir, &path, bytes)?;
    }
    Ok(ExportedBlob {
        descriptor: descriptor(media_type, bytes.len() as u64, &digest)?,
        path,
    })
}

/// Renames the finished blob `tmp` to its name in `dir`, or drops it if a
/// blob of that digest is already there.
fn place(dir: &Path, tmp: &Path, digest: &str) -> Result<PathBuf> {
    let path = dir.join(&digest["sha256:".len()..]);
    if path.exists() {
        let _ = std::fs::remove_file(tmp);
    } else {
        durable::rename_durable(tmp, &path)?;
    }
    Ok(path)
}

/// Importing
///
/// [`Exchange::import_blobs`](super::Exchange::import_blobs) into `store`.
pub(crate) fn import_blobs<F, R>(
    store: &Store,
    manifest: &[u8],
    open_blob: F,
    options: &ImportOptions,
) -> Result<ImageId>
where
    F: FnMut(&Descriptor) -> Result<R>,
    R: Read,
{
    let manifest = ImageManifest::from_reader(manifest).map_err(|e| Error::Oci {
        what: "image manifest".into(),
        reason: e.to_string(),
    })?;
    import_manifest(store, &manifest, open_blob, options, &[]).map(|(id, _)| id)
}

/// [`import_blobs`] of a parsed manifest; also returns how many layers were
/// known (not read). `given[i]`, where there is one, is layer `i`, in the
/// store but not yet checked against its `DiffID` (a lazy image's): then no
/// layer of the image is recorded as known.
pub(crate) fn import_manifest<F, R>(
    store: &Store,
    manifest: &ImageManifest,
    mut open_blob: F,
    options: &ImportOptions,
    given: &[Option<LayerId>],
) -> Result<(ImageId, u64)>
where
    F: FnMut(&Descriptor) -> Result<R>,
    R: Read,
{
    let config_desc = manifest.config();
    let config_bytes = read_json_blob(open_blob(config_desc)?, config_desc, options)?;
    let what_config = format!("config {}", config_desc.digest());
    let oci_config =
        ImageConfiguration::from_reader(&config_bytes[..]).map_err(|e| Error::Oci {
            what: what_config.clone(),
            reason: e.to_string(),
        })?;
    let diff_ids = oci_config.rootfs().diff_ids();
    if diff_ids.len() != manifest.layers().len() {
        return Err(Error::Oci {
            what: what_config,
            reason: format!(
                "{} diff_ids for {} layers in the manifest",
                diff_ids.len(),
                manifest.layers().len()
            ),
        });
    }
    let (image_config, history) = config::from_oci(&oci_config, diff_ids.len(), &what_config)?;
    let cache = OciCache::new(store);
    let chains = chain_ids(diff_ids);
    let mut tree = Snapshot::empty();
    let mut layer_ids = Vec::with_capacity(diff_ids.len());
    let mut known = 0;
    let tracker = options.progress.track(crate::ProgressStage::Import);
    tracker.add_total(
        manifest.layers().len() as u64,
        manifest.layers().iter().map(Descriptor::size).sum(),
    );
    for (i, ((desc, diff_id), chain)) in manifest
        .layers()
        .iter()
        .zip(diff_ids)
        .zip(&chains)
        .enumerate()
    {
        let given = given.get(i).copied().flatten();
        let layer = match given.or_else(|| cache.known_layer(chain)) {
            Some(id) => {
                known += 1;
                store.layer(&id)?
            }
            None => import_layer(store, open_blob(desc)?, desc, diff_id, &tree, options)?,
        };
        tree = layer.apply(&tree).map_err(|e| Error::Oci {
            what: format!("layer {}", desc.digest()),
            reason: e.to_string(),
        })?;
        layer_ids.push(store.put_layer(&layer)?);
        tracker.add(1, desc.size());
    }
    let rootfs = store.put_snapshot(&tree)?;
    let image = Image::new(layer_ids, rootfs, image_config, history)?;
    let id = store.put_image(&image)?;
    store.flush()?;
    if given.iter().all(Option::is_none) {
        cache.record_layers(diff_ids, image.layers())?;
    }
    tracker.finish();
    Ok((id, known))
}

fn check_digest(desc: &Descriptor, digest: &str, size: u64) -> Result<()> {
    let what = || format!("blob {}", desc.digest());
    if sha256_hex(desc.digest().as_ref()).is_none() {
        return Err(Error::Oci {
            what: what(),
            reason: "only sha256 digests are supported".into(),
        });
    }
    if size != desc.size() {
        return Err(Error::Oci {
            what: what(),
            reason: format!("{size} bytes but the descriptor says {}", desc.size()),
        });
    }
    if digest != desc.digest().to_string() {
        return Err(Error::Oci {
            what: what(),
            reason: format!("the content's digest is {digest}"),
        });
    }
    Ok(())
}

/// Reads a small JSON blob whole, verified.
pub(crate) fn read_json_blob(
    reader: impl Read,
    desc: &Descriptor,
    options: &ImportOptions,
) -> Result<Vec<u8>> {
    let what = || format!("blob {}", desc.digest());
    if desc.size() > options.max_json_size {
        return Err(Error::Oci {
            what: what(),
            reason: format!(
                "{} bytes is more than the {} accepted for JSON",
                desc.size(),
                options.max_json_size
            ),
        });
    }
    let mut bytes = Vec::new();
    reader
        .take(desc.size() + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::Oci {
            what: what(),
            reason: format!("reading: {e}"),
        })?;
    check_digest(desc, &sha256_digest(&bytes), bytes.len() as u64)?;
    Ok(bytes)
}

/// Reads one layer blob into a [`Layer`](crate::Layer) over `lower`,
/// verifying digest, size and `DiffID`.
fn import_layer(
    store: &Store,
    reader: impl Read,
    desc: &Descriptor,
    diff_id: &str,
    lower: &Snapshot,
    options: &ImportOptions,
) -> Result<crate::Layer> {
    let what = format!("layer {}", desc.digest());
    let io_err = |e: io::Error| Error::Oci {
        what: what.clone(),
        reason: e.to_string(),
    };
    // One byte past the declared size is enough to know it lies.
    let mut raw = HashingReader::new(reader, desc.size(), "the blob (longer than its descriptor)");
    let mut buffered = BufReader::with_capacity(1 << 18, &mut raw);
    let magic = buffered.fill_buf().map_err(io_err)?.to_vec();
    let cap = desc
        .size()
        .saturating_mul(options.max_expansion)
        .saturating_add(options.expansion_slack)
        .min(options.max_layer_size);
    let decoded: Box<dyn Read + '_> = if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(&mut buffered))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(&mut buffered).map_err(io_err)?)
    } else {
        Box::new(&mut buffered)
    };
    let mut plain = HashingReader::new(decoded, cap, "the uncompressed layer");
    let mut put = |r: &mut dyn Read, name: &Path| store.put_reader(r, name);
    let layer = read_layer_tar(&mut plain, lower, &mut put, &what)?;
    plain.drain().map_err(io_err)?;
    let (got_diff_id, _) = plain.finish();
    io::copy(&mut buffered, &mut io::sink()).map_err(io_err)?;
    drop(buffered);
    let (digest, size) = raw.finish();
    check_digest(desc, &digest, size)?;
    if got_diff_id != diff_id {
        return Err(Error::Oci {
            what,
            reason: format!(
                "the uncompressed tar's digest is {got_diff_id} but the config's diff_id is {diff_id}"
            ),
        });
    }
    Ok(layer)
}

pub(crate) fn blob_file(dir: &Path, desc: &Descriptor) -> Result<PathBuf> {
    let digest = desc.digest().to_string();
    let hex = sha256_hex(&digest).ok_or_else(|| Error::Oci {
        what: format!("blob {digest}"),
        reason: "not a sha256 digest".into(),
    })?;
    Ok(dir.join(hex))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{Entry, History, Metadata, Snapshot, TreePath};

    /// Export and import report their layers, ending at all of them: export
    /// with the bytes of file content, import with the blobs' bytes.
    #[test]
    fn export_and_import_report_their_progress_to_the_end() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::create(tmp.path().join("s"), &crate::StoreOptions::default()).unwrap();
        let mut parent = None;
        let mut tree = Snapshot::empty();
        for i in 0..3u8 {
            let mut entries = tree.entries().to_vec();
            entries.push(Entry::file(
                TreePath::new(format!("f{i}")).unwrap(),
                store.put_bytes(&vec![i; 50_000 + usize::from(i)]).unwrap(),
                Metadata::new(0o644),
            ));
            let next = Snapshot::from_entries(entries).unwrap();
            let id = store
                .put_child_image(
                    parent.as_ref(),
                    &tree.diff(&next),
                    &next,
                    None,
                    History::default(),
                )
                .unwrap();
            (parent, tree) = (Some(id), next);
        }
        let image = parent.unwrap();
        let (progress, events) = crate::testing::recording_progress();
        let export = export_blobs(
            &store,
            &image,
            &tmp.path().join("blobs"),
            &ExportOptions::new(Compression::Zstd).progress(progress),
        )
        .unwrap();
        let last = crate::testing::monotone_to_the_end(&events.lock().unwrap());
        assert_eq!(last.stage, crate::ProgressStage::Export);
        assert_eq!((last.entries, last.bytes), (3, 150_003));
        assert_eq!(last.bytes_total, Some(150_003));

        let other = Store::create(tmp.path().join("o"), &crate::StoreOptions::default()).unwrap();
        let (progress, events) = crate::testing::recording_progress();
        let manifest = std::fs::read(&export.manifest.path).unwrap();
        let blob_dir = tmp.path().join("blobs");
        let open = |d: &Descriptor| {
            let path = blob_file(&blob_dir, d)?;
            File::open(&path).map_err(|e| Error::io("open", &path, e))
        };
        let id = import_blobs(
            &other,
            &manifest,
            open,
            &ImportOptions::default().progress(progress),
        )
        .unwrap();
        assert_eq!(id, image);
        let last = crate::testing::monotone_to_the_end(&events.lock().unwrap());
        assert_eq!(last.stage, crate::ProgressStage::Import);
        let sizes: u64 = export.layers.iter().map(|l| l.descriptor.size()).sum();
        assert_eq!((last.entries, last.bytes), (3, sizes));
    }
}
