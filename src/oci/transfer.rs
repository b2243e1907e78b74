//! Moving an OCI image layout to and from a registry: push uploads only the
//! blobs the registry lacks (HEAD first, then a cross-repository mount where
//! one is offered, else a streamed upload); pull fetches only the blobs the
//! caller lacks.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::Digest as _;

use super::compress::Compression;
use super::registry::{Registry, RegistryRef};
use crate::error::{Error, Result};
use crate::fsutil::durable;

/// The media types of a single-platform image manifest.
pub(crate) const MANIFEST_TYPES: [&str; 2] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];
/// The largest manifest or index read (from a file or the network).
const MAX_MANIFEST: u64 = 4 << 20;

/// How a push goes.
#[derive(Clone, Copy)]
#[non_exhaustive]
pub struct PushOptions<'a> {
    /// Repositories of the same registry to mount blobs from, tried in
    /// order for each blob the target repository lacks.
    pub mount_from: &'a [String],
    /// Called after each blob with the figures so far.
    pub progress: Option<&'a (dyn Fn(&PushReport) + Sync)>,
    /// How layers are compressed (default [`Compression::ZstdSeekable`]:
    /// every current client reads it as a zstd layer, and layerstore pulls
    /// it a chunk at a time; [`Compression::Gzip`] for the oldest clients).
    pub compression: Compression,
    /// For seekable layers: the files a lazy reader fetches first
    /// ([`ExportOptions::prefetch`](super::ExportOptions::prefetch)).
    pub prefetch: &'a [crate::TreePath],
}

impl Default for PushOptions<'_> {
    fn default() -> Self {
        Self {
            mount_from: &[],
            progress: None,
            compression: Compression::ZstdSeekable,
            prefetch: &[],
        }
    }
}

impl<'a> PushOptions<'a> {
    /// Compresses layers with `compression`.
    #[must_use]
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Lists `paths` as the prefetch order of the seekable layers pushed.
    #[must_use]
    pub fn prefetch(mut self, paths: &'a [crate::TreePath]) -> Self {
        self.prefetch = paths;
        self
    }

    /// Tries to mount missing blobs from these repositories of the same
    /// registry, in order.
    #[must_use]
    pub fn mount_from(mut self, repositories: &'a [String]) -> Self {
        self.mount_from = repositories;
        self
    }

    /// Calls `progress` after each blob with the figures so far.
    #[must_use]
    pub fn progress(mut self, progress: &'a (dyn Fn(&PushReport) + Sync)) -> Self {
        self.progress = Some(progress);
        self
    }
}

impl std::fmt::Debug for PushOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushOptions")
            .field("mount_from", &self.mount_from)
            .field("progress", &self.progress.is_some())
            .field("compression", &self.compression)
            .field("prefetch", &self.prefetch.len())
            .finish()
    }
}

/// What a push did. Blobs are the config and the layers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PushReport {
    /// Blobs uploaded.
    pub blobs_uploaded: u64,
    /// Their bytes.
    pub bytes_uploaded: u64,
    /// Layer blobs (not the config) among them.
    pub layers_uploaded: u64,
    /// Blobs the repository held already (found by a HEAD request).
    pub blobs_present: u64,
    /// Blobs mounted from another repository (no bytes moved).
    pub blobs_mounted: u64,
    /// Layers of a store image tarred and compressed for this push
    /// ([`Exchange::push`](super::Exchange::push); a layout push exports
    /// nothing).
    pub layers_exported: u64,
    /// Layers of a store image whose blob an earlier export had written, its
    /// file taken as it is instead of exporting again.
    pub layers_reused: u64,
    /// The digest of the manifest pushed (`sha256:…`).
    pub manifest_digest: String,
}

/// What a pull did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PullReport {
    /// Blobs downloaded (the config and the layers not skipped).
    pub blobs_fetched: u64,
    /// Their bytes.
    pub bytes_fetched: u64,
    /// Layer blobs skipped because the caller has them.
    pub layers_skipped: u64,
    /// Seekable layers pulled a piece at a time: their table of contents,
    /// then only the frames holding chunks the store lacked (their bytes
    /// are in `bytes_fetched`).
    pub layers_partial: u64,
    /// Chunks fetched for them.
    pub chunks_fetched: u64,
    /// The compressed size of all the image's layers: what a pull of every
    /// whole blob would have fetched.
    pub layers_size: u64,
    /// Seekable layers fetched whole after all, each as `digest: why` (the
    /// registry serves no ranges, say).
    pub fetched_whole: Vec<String>,
    /// The digest of the manifest pulled.
    pub manifest_digest: String,
}

/// Decides which layers of a manifest a pull leaves out, from the manifest
/// and the config: one flag per layer (it may fetch some itself, counting
/// them in the report).
pub(crate) type SkipLayers<'a> =
    dyn Fn(&Manifest, &[u8], &mut PullReport) -> Result<Vec<bool>> + 'a;

/// A blob named by a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Descriptor {
    pub(crate) media_type: String,
    pub(crate) digest: String,
    pub(crate) size: u64,
    /// Its annotations with string values (a seekable layer's TOC).
    pub(crate) annotations: std::collections::BTreeMap<String, String>,
}

/// The parts of an image manifest that moving it needs.
#[derive(Debug, Clone)]
pub(crate) struct Manifest {
    pub(crate) media_type: String,
    pub(crate) config: Descriptor,
    pub(crate) layers: Vec<Descriptor>,
}

fn malformed(what: &str, reason: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("{what}: {reason}"))
}

/// The hex of a `sha256:<64 hex>` digest, refused otherwise (it becomes a
/// file name, so nothing else may pass).
pub(crate) fn digest_hex<'a>(digest: &'a str, what: &str) -> Result<&'a str> {
    match digest.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(hex)
        }
        _ => Err(malformed(
            what,
            format!("'{digest}' is not a sha256 digest"),
        )),
    }
}

/// `sha256:<hex>` of `bytes`.
pub(crate) fn sha256(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(71);
    out.push_str("sha256:");
    for b in sha2::Sha256::digest(bytes) {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn descriptor(value: &Value, what: &str) -> Result<Descriptor> {
    let media_type = value
        .get("mediaType")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let digest = value
        .get("digest")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed(what, "a descriptor has no digest"))?
        .to_owned();
    digest_hex(&digest, what)?;
    let size = value
        .get("size")
        .and_then(Value::as_u64)
        .ok_or_else(|| malformed(what, "a descriptor has no size"))?;
    let annotations = value
        .get("annotations")
        .and_then(Value::as_object)
        .map(|map| {
            map.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    Ok(Descriptor {
        media_type,
        digest,
        size,
        annotations,
    })
}

impl Manifest {
    /// Parses an image manifest; `what` names it in errors.
    pub(crate) fn parse(bytes: &[u8], what: &str) -> Result<Self> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| malformed(what, format!("not JSON: {e}")))?;
        let media_type = value
            .get("mediaType")
            .and_then(Value::as_str)
            .unwrap_or(MANIFEST_TYPES[0])
            .to_owned();
        if !MANIFEST_TYPES.contains(&media_type.as_str()) {
            return Err(malformed(
                what,
                format!("media type '{media_type}' is not a single-platform image manifest"),
            ));
        }
        let config = descriptor(
            value
                .get("config")
                .ok_or_else(|| malformed(what, "no config"))?,
            what,
        )?;
        let layers = value
            .get("layers")
            .and_then(Value::as_array)
            .ok_or_else(|| malformed(what, "no layers"))?
            .iter()
            .map(|l| descriptor(l, what))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            media_type,
            config,
            layers,
        })
    }
}

/// An OCI image layout directory.
pub(crate) struct Layout<'a> {
    pub(crate) root: &'a Path,
}

impl Layout<'_> {
    pub(crate) fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        let hex = digest_hex(digest, &self.root.display().to_string())?;
        Ok(self.root.join("blobs/sha256").join(hex))
    }

    pub(crate) fn read_small(path: &Path) -> Result<Vec<u8>> {
        let file = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_MANIFEST + 1), &mut bytes)
            .map_err(|e| Error::io("read", path, e))?;
        if bytes.len() as u64 > MAX_MANIFEST {
            return Err(malformed(
                &path.display().to_string(),
                format!("larger than {MAX_MANIFEST} bytes"),
            ));
        }
        Ok(bytes)
    }

    /// The manifest (its bytes and digest) that `index.json` names: the one
    /// whose `org.opencontainers.image.ref.name` is `name`, or the only one.
    pub(crate) fn manifest(&self, name: Option<&str>) -> Result<(Vec<u8>, String)> {
        let index_path = self.root.join("index.json");
        let what = index_path.display().to_string();
        let index: Value = serde_json::from_slice(&Self::read_small(&index_path)?)
            .map_err(|e| malformed(&what, format!("not JSON: {e}")))?;
        let manifests = index
            .get("manifests")
            .and_then(Value::as_array)
            .ok_or_else(|| malformed(&what, "no manifests"))?;
        let named = |m: &&Value| {
            m.pointer("/annotations/org.opencontainers.image.ref.name")
                .and_then(Value::as_str)
                == name
        };
        let chosen: Vec<&Value> = match name {
            Some(_) => manifests.iter().filter(named).collect(),
            None => manifests.iter().collect(),
        };
        let [chosen] = chosen.as_slice() else {
            return Err(malformed(
                &what,
                match name {
                    Some(n) => format!("{} manifests are named '{n}'", chosen.len()),
                    None => format!("{} manifests; name one", chosen.len()),
                },
            ));
        };
        let desc = descriptor(chosen, &what)?;
        let path = self.blob_path(&desc.digest)?;
        let bytes = Self::read_small(&path)?;
        if sha256(&bytes) != desc.digest {
            return Err(Error::corrupt(
                &path,
                0,
                "the manifest does not match its digest",
            ));
        }
        Ok((bytes, desc.digest))
    }

    /// Writes a blob durably under its digest (verified).
    fn write_blob(&self, digest: &str, bytes: &[u8]) -> Result<()> {
        if sha256(bytes) != digest {
            return Err(malformed(digest, "the bytes do not match the digest"));
        }
        let path = self.blob_path(digest)?;
        durable::write_atomic(self.root, &path, bytes)
    }
}

/// Pushing and pulling image layouts
impl Registry {
    /// Pushes the image of the OCI layout at `layout` (the manifest named
    /// `name` in its `index.json`, or its only one) to `dest`: each blob the
    /// repository lacks is mounted from `options.mount_from` where the
    /// registry offers it, else uploaded, streamed from its file; then the
    /// manifest is put under `dest`'s tag.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the layout is malformed;
    /// [`Error::Io`] naming a blob file that cannot be read;
    /// [`Error::Registry`] if the registry refuses or fails.
    pub fn push_layout(
        &self,
        layout: &Path,
        name: Option<&str>,
        dest: &RegistryRef,
        options: &PushOptions<'_>,
    ) -> Result<PushReport> {
        let layout = Layout { root: layout };
        let (manifest_bytes, manifest_digest) = layout.manifest(name)?;
        let manifest = Manifest::parse(&manifest_bytes, &manifest_digest)?;
        let mut report = PushReport {
            manifest_digest,
            ..PushReport::default()
        };
        let repo = dest.repository.as_str();
        let mut done = HashSet::new();
        let blobs = manifest
            .layers
            .iter()
            .map(|l| (l, true))
            .chain(std::iter::once((&manifest.config, false)));
        for (blob, is_layer) in blobs {
            if !done.insert(blob.digest.clone()) {
                continue;
            }
            if self.has_blob(repo, &blob.digest)? {
                report.blobs_present += 1;
            } else if self.mount_any(repo, options.mount_from, &blob.digest)? {
                report.blobs_mounted += 1;
            } else {
                let path = layout.blob_path(&blob.digest)?;
                let file =
                    std::fs::File::open(&path).map_err(|e| Error::io("open blob", &path, e))?;
                let len = file
                    .metadata()
                    .map_err(|e| Error::io("stat", &path, e))?
                    .len();
                if len != blob.size {
                    return Err(Error::corrupt(
                        &path,
                        0,
                        format!("the blob is {len} bytes, its descriptor says {}", blob.size),
                    ));
                }
                self.push_blob(repo, &blob.digest, blob.size, file)?;
                report.blobs_uploaded += 1;
                report.bytes_uploaded += blob.size;
                report.layers_uploaded += u64::from(is_layer);
            }
            if let Some(progress) = options.progress {
                progress(&report);
            }
        }
        self.put_manifest(repo, &dest.reference, manifest_bytes, &manifest.media_type)?;
        Ok(report)
    }

    fn mount_any(&self, repo: &str, from: &[String], digest: &str) -> Result<bool> {
        for source in from.iter().filter(|s| *s != repo) {
            if self.mount_blob(repo, source, digest)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Pulls image `src` into an OCI layout at `layout` (created), its
    /// manifest named `name` in `index.json`: the manifest, the config and
    /// every layer blob for which `have` says no (those it says yes to are
    /// left out of the layout: the caller has them). Each blob is verified
    /// against its digest as it streams into a temporary file, and renamed
    /// into place only when whole.
    ///
    /// # Errors
    /// [`Error::ImageNotFound`] if the registry has no such image;
    /// [`Error::InvalidArgument`] if its manifest is malformed;
    /// [`Error::Registry`] if a blob cannot be fetched or does not verify;
    /// [`Error::Io`] naming the layout if writing fails.
    pub fn pull_layout(
        &self,
        src: &RegistryRef,
        layout: &Path,
        name: &str,
        have: &dyn Fn(&str) -> bool,
        progress: &dyn Fn(&PullReport),
    ) -> Result<PullReport> {
        let skip = |manifest: &Manifest, _config: &[u8], _report: &mut PullReport| {
            Ok(manifest.layers.iter().map(|l| have(&l.digest)).collect())
        };
        self.pull_layout_with(src, layout, name, &skip, progress)
    }

    /// [`Registry::pull_layout`], the layers to leave out decided by `skip`
    /// from the manifest and the config (fetched and verified first): one
    /// flag per layer of the manifest. (`skip` may fetch layers itself, a
    /// piece at a time, and count them in the report.)
    pub(crate) fn pull_layout_with(
        &self,
        src: &RegistryRef,
        layout: &Path,
        name: &str,
        skip: &SkipLayers<'_>,
        progress: &dyn Fn(&PullReport),
    ) -> Result<PullReport> {
        let repo = src.repository.as_str();
        let (manifest_bytes, digest) = self.manifest(repo, &src.reference)?;
        if manifest_bytes.len() as u64 > MAX_MANIFEST {
            return Err(malformed(&src.to_string(), "the manifest is too large"));
        }
        let digest = if digest.is_empty() {
            sha256(&manifest_bytes)
        } else {
            digest
        };
        if sha256(&manifest_bytes) != digest
            || (src.reference.starts_with("sha256:") && digest != src.reference)
        {
            return Err(self.refusal(
                repo,
                format!("the manifest of {src} does not match its digest"),
            ));
        }
        let manifest = Manifest::parse(&manifest_bytes, &src.to_string())?;
        let blobs_dir = layout.join("blobs/sha256");
        std::fs::create_dir_all(&blobs_dir)
            .map_err(|e| Error::io("create directory", &blobs_dir, e))?;
        let tmp = layout.join("tmp");
        std::fs::create_dir_all(&tmp).map_err(|e| Error::io("create directory", &tmp, e))?;
        let lay = Layout { root: layout };
        let mut report = PullReport {
            manifest_digest: digest.clone(),
            ..PullReport::default()
        };
        let fetch = |blob: &Descriptor, report: &mut PullReport| -> Result<PathBuf> {
            let path = lay.blob_path(&blob.digest)?;
            if !path.exists() {
                self.fetch_to(repo, blob, &tmp, &path)?;
            }
            report.blobs_fetched += 1;
            report.bytes_fetched += blob.size;
            progress(report);
            Ok(path)
        };
        // The config first: what to skip may depend on its DiffIDs.
        let config_path = fetch(&manifest.config, &mut report)?;
        let config = Layout::read_small(&config_path)?;
        if sha256(&config) != manifest.config.digest {
            return Err(Error::corrupt(
                &config_path,
                0,
                "the config does not match its digest",
            ));
        }
        report.layers_size = manifest.layers.iter().map(|l| l.size).sum();
        let skipped = skip(&manifest, &config, &mut report)?;
        for (i, blob) in manifest.layers.iter().enumerate() {
            if skipped.get(i).copied().unwrap_or(false) {
                report.layers_skipped += 1;
                progress(&report);
                continue;
            }
            fetch(blob, &mut report)?;
        }
        // Those `skip` pulled a piece at a time were not skipped.
        report.layers_skipped = report.layers_skipped.saturating_sub(report.layers_partial);
        std::fs::remove_dir(&tmp).map_err(|e| Error::io("remove", &tmp, e))?;
        lay.write_blob(&digest, &manifest_bytes)?;
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{
                "mediaType": manifest.media_type,
                "digest": digest,
                "size": manifest_bytes.len(),
                "annotations": { "org.opencontainers.image.ref.name": name },
            }],
        });
        durable::write_atomic(
            layout,
            &layout.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )?;
        durable::write_atomic(
            layout,
            &layout.join("index.json"),
            index.to_string().as_bytes(),
        )?;
        Ok(report)
    }

    /// Streams blob `blob` into a temporary file in `tmp`, checks its size,
    /// and renames it to `dest`.
    fn fetch_to(&self, repo: &str, blob: &Descriptor, tmp: &Path, dest: &Path) -> Result<()> {
        let part = tmp.join(format!("{}.part", &blob.digest["sha256:".len()..]));
        let file = std::fs::File::create(&part).map_err(|e| Error::io("create", &part, e))?;
        let mut counted = Counted {
            inner: std::io::BufWriter::with_capacity(1 << 20, file),
            written: 0,
            limit: blob.size,
        };
        let pulled = self.pull_blob(repo, &blob.digest, &mut counted);
        let written = counted.written;
        let flushed = counted
            .inner
            .into_inner()
            .map_err(|e| Error::io("write", &part, e.into_error()));
        let file = match pulled.and(flushed) {
            Ok(file) => file,
            Err(err) => {
                let _ = std::fs::remove_file(&part);
                return Err(err);
            }
        };
        if written != blob.size {
            let _ = std::fs::remove_file(&part);
            return Err(self.refusal(
                repo,
                format!(
                    "blob {} is {written} bytes, the manifest says {}",
                    blob.digest, blob.size
                ),
            ));
        }
        durable::sync_file(&file, &part)?;
        durable::rename_durable(&part, dest)
    }

    fn refusal(&self, repo: &str, what: String) -> Error {
        Error::Registry {
            registry: format!("{}/{repo}", self.host()),
            what,
        }
    }
}

/// A writer that counts, and refuses to grow past the size the manifest gave
/// (a registry sending more is not believed, nor allowed to fill the disk).
struct Counted<W> {
    inner: W,
    written: u64,
    limit: u64,
}

impl<W: std::io::Write> std::io::Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.written + buf.len() as u64 > self.limit {
            return Err(std::io::Error::other(format!(
                "the blob is longer than the {} bytes its descriptor gives",
                self.limit
            )));
        }
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
