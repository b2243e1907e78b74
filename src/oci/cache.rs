//! What OCI exchange remembers, in `<store>/cache/oci/` (a cache only: safe
//! to delete; without it a pull fetches every layer, a push exports every
//! layer again):
//!
//! ```text
//! cache/oci/blobs/<sha256 hex>    the DiffID of the layer tar that blob
//!                                 decodes to (a blob an import verified, or
//!                                 one an export wrote)
//! cache/oci/chains/<sha256 hex>   the layer that a stack of layer tars with
//!                                 that ChainID ends with
//! cache/oci/exports/<layer hex>.<codec>-<level>.v1
//!                                 an export of that layer: its digest, size,
//!                                 DiffID and the file it was written to
//! cache/oci/pushed/<image hex>    the manifest last pushed for an image
//! ```
//!
//! Every OCI path records here: layout and `docker save` imports, pulls,
//! exports and pushes. A layer blob is recognised by its digest *and* its
//! `DiffID`: [`OciCache::known_layer`] answers only when the blob is known to
//! decode to the `DiffID` the image's config gives, and the `ChainID` (the
//! layers below included, as a layer's tar is read over the tree below it)
//! names a layer the store holds.
//!
//! Nothing here is trusted blindly: a layer is used only if the store holds
//! it, an export's file only if it still has its size and digest, and a
//! cached manifest only after the registry has confirmed (HEAD) every blob
//! it names.

use std::io::Read as _;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::fsutil::durable;
use crate::id::{ChunkId, LayerId};
use crate::oci::compress::Compression;
use crate::oci::digest::{chain_ids, sha256_hex};
use crate::store::{Store, layout};

/// The largest cache entry read back.
const MAX_ENTRY: u64 = 4 << 20;

/// Bumped whenever an export of the same layer would give other bytes (a
/// change of the tar writer or the compressor), so that older records are
/// not taken for what an export writes now.
const EXPORT_FORMAT: &str = "v1";

/// An earlier export of one layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExportRecord {
    /// `sha256:` of the compressed blob.
    pub(crate) digest: String,
    pub(crate) size: u64,
    /// `sha256:` of the uncompressed tar.
    pub(crate) diff_id: String,
    /// Where the blob was written (it may have gone since).
    pub(crate) path: PathBuf,
}

pub(crate) struct OciCache<'a> {
    store: &'a Store,
}

impl<'a> OciCache<'a> {
    pub(crate) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    fn dir(&self, kind: &str) -> PathBuf {
        layout::oci_cache(self.store.path()).join(kind)
    }

    fn write(&self, kind: &str, name: &str, bytes: &[u8]) -> Result<()> {
        if self.read(kind, name).as_deref() == Some(bytes) {
            return Ok(());
        }
        let dir = self.dir(kind);
        std::fs::create_dir_all(&dir).map_err(|e| crate::Error::io("create directory", &dir, e))?;
        durable::write_atomic(&layout::tmp(self.store.path()), &dir.join(name), bytes)
    }

    fn read(&self, kind: &str, name: &str) -> Option<Vec<u8>> {
        let file = std::fs::File::open(self.dir(kind).join(name)).ok()?;
        let mut bytes = Vec::new();
        file.take(MAX_ENTRY + 1).read_to_end(&mut bytes).ok()?;
        (bytes.len() as u64 <= MAX_ENTRY).then_some(bytes)
    }

    fn read_text(&self, kind: &str, name: &str) -> Option<String> {
        String::from_utf8(self.read(kind, name)?).ok()
    }

    fn holds(&self, layer: &LayerId) -> bool {
        self.store.contains(&ChunkId::from(*layer))
    }

    /// The stored layer that layer blob `digest` holds, when the blob is
    /// known to decode to `diff_id` and the stack of layers up to it
    /// (`chain_id`) to end with a layer the store holds.
    pub(crate) fn known_layer(
        &self,
        digest: &str,
        diff_id: &str,
        chain_id: &str,
    ) -> Option<LayerId> {
        let recorded = self.read_text("blobs", sha256_hex(digest)?)?;
        if recorded != diff_id {
            return None;
        }
        let id: LayerId = self
            .read_text("chains", sha256_hex(chain_id)?)?
            .trim()
            .parse()
            .ok()?;
        self.holds(&id).then_some(id)
    }

    /// Remembers that layer blob `digest` decodes to the tar `diff_id`.
    pub(crate) fn record_blob(&self, digest: &str, diff_id: &str) -> Result<()> {
        let Some(hex) = sha256_hex(digest) else {
            return Err(crate::Error::InvalidArgument(format!(
                "'{digest}' is not a sha256 digest"
            )));
        };
        self.write("blobs", hex, diff_id.as_bytes())
    }

    /// Remembers an image's layers: blob `digests[i]` decodes to
    /// `diff_ids[i]`, and the stack of the first `i + 1` of them ends with
    /// `layers[i]`.
    pub(crate) fn record_layers(
        &self,
        digests: &[String],
        diff_ids: &[String],
        layers: &[LayerId],
    ) -> Result<()> {
        for (digest, diff_id) in digests.iter().zip(diff_ids) {
            self.record_blob(digest, diff_id)?;
        }
        for (chain, layer) in chain_ids(diff_ids).iter().zip(layers) {
            if let Some(hex) = sha256_hex(chain) {
                self.write("chains", hex, layer.to_string().as_bytes())?;
            }
        }
        Ok(())
    }

    fn export_name(layer: &LayerId, compression: Compression, level: i32) -> String {
        let codec = match compression {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::None => "none",
        };
        format!("{}.{codec}-{level}.{EXPORT_FORMAT}", layer.to_hex())
    }

    /// The export of `layer` with `compression` at `level` recorded last.
    pub(crate) fn export_of(
        &self,
        layer: &LayerId,
        compression: Compression,
        level: i32,
    ) -> Option<ExportRecord> {
        let bytes = self.read("exports", &Self::export_name(layer, compression, level))?;
        let mut parts = bytes.splitn(4, |&b| b == b'\n');
        let mut text = || String::from_utf8(parts.next()?.to_vec()).ok();
        let digest = text()?;
        let size = text()?.parse().ok()?;
        let diff_id = text()?;
        let path = PathBuf::from(std::ffi::OsStr::from_bytes(parts.next()?));
        (sha256_hex(&digest).is_some() && sha256_hex(&diff_id).is_some()).then_some(ExportRecord {
            digest,
            size,
            diff_id,
            path,
        })
    }

    /// Remembers an export of `layer`.
    pub(crate) fn record_export(
        &self,
        layer: &LayerId,
        compression: Compression,
        level: i32,
        export: &ExportRecord,
    ) -> Result<()> {
        self.record_blob(&export.digest, &export.diff_id)?;
        let mut bytes =
            format!("{}\n{}\n{}\n", export.digest, export.size, export.diff_id).into_bytes();
        bytes.extend_from_slice(export.path.as_os_str().as_bytes());
        self.write(
            "exports",
            &Self::export_name(layer, compression, level),
            &bytes,
        )
    }

    /// The manifest last pushed for `image` (its bytes, checked against the
    /// digest stored beside them).
    #[cfg(feature = "registry")]
    pub(crate) fn pushed(&self, image: &crate::id::ImageId) -> Option<Vec<u8>> {
        let bytes = self.read("pushed", &image.to_hex())?;
        let (digest, manifest) = bytes.split_at(bytes.iter().position(|&b| b == b'\n')?);
        let manifest = manifest.get(1..)?;
        (crate::oci::digest::sha256_digest(manifest).as_bytes() == digest)
            .then(|| manifest.to_vec())
    }

    /// Remembers the manifest pushed for `image`.
    #[cfg(feature = "registry")]
    pub(crate) fn record_pushed(&self, image: &crate::id::ImageId, manifest: &[u8]) -> Result<()> {
        let mut bytes = crate::oci::digest::sha256_digest(manifest).into_bytes();
        bytes.push(b'\n');
        bytes.extend_from_slice(manifest);
        self.write("pushed", &image.to_hex(), &bytes)
    }
}

/// Whether the file at `path` is `size` bytes whose sha256 is `digest` (read
/// whole to check).
pub(crate) fn file_matches(path: &Path, size: u64, digest: &str) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    if file.metadata().map(|m| m.len()).ok() != Some(size) {
        return false;
    }
    let mut hashing = crate::oci::digest::HashingReader::new(file, size, "blob");
    hashing.drain().is_ok() && hashing.finish() == (digest.to_owned(), size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::digest::sha256_digest;
    use crate::{Layer, StoreOptions};

    #[test]
    fn layers_are_known_by_digest_diff_id_and_chain() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path().join("s"), &StoreOptions::default()).unwrap();
        let cache = OciCache::new(&store);
        let stored = store.put_layer(&Layer::empty()).unwrap();
        let absent = LayerId::of(b"not stored");
        let (blob, tar) = (sha256_digest(b"blob"), sha256_digest(b"tar"));
        let (blob2, tar2) = (sha256_digest(b"blob2"), sha256_digest(b"tar2"));
        let chains = chain_ids(&[tar.clone(), tar2.clone()]);
        assert_eq!(cache.known_layer(&blob, &tar, &chains[0]), None);
        cache
            .record_layers(
                &[blob.clone(), blob2.clone()],
                &[tar.clone(), tar2.clone()],
                &[stored, absent],
            )
            .unwrap();
        assert_eq!(cache.known_layer(&blob, &tar, &chains[0]), Some(stored));
        assert_eq!(
            cache.known_layer(&blob2, &tar2, &chains[1]),
            None,
            "a layer the store lacks"
        );
        assert_eq!(
            cache.known_layer(&blob, &tar2, &chains[0]),
            None,
            "a config whose DiffID is not what the blob holds"
        );
        assert_eq!(
            cache.known_layer(&blob, &tar, &sha256_digest(b"other base")),
            None,
            "the same tar over other layers"
        );
        assert!(cache.record_blob("sha256:../../x", &tar).is_err());
        assert_eq!(cache.known_layer("sha256:../../x", &tar, &chains[0]), None);
    }

    #[test]
    fn export_records_round_trip_and_files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path().join("s"), &StoreOptions::default()).unwrap();
        let cache = OciCache::new(&store);
        let layer = LayerId::of(b"layer");
        let file = dir.path().join("odd\nname");
        std::fs::write(&file, b"compressed").unwrap();
        let record = ExportRecord {
            digest: sha256_digest(b"compressed"),
            size: 10,
            diff_id: sha256_digest(b"tar"),
            path: file.clone(),
        };
        assert_eq!(cache.export_of(&layer, Compression::Gzip, 6), None);
        cache
            .record_export(&layer, Compression::Gzip, 6, &record)
            .unwrap();
        assert_eq!(
            cache.export_of(&layer, Compression::Gzip, 6),
            Some(record.clone())
        );
        assert_eq!(cache.export_of(&layer, Compression::Gzip, 9), None);
        assert_eq!(cache.export_of(&layer, Compression::Zstd, 6), None);
        assert!(file_matches(&file, record.size, &record.digest));
        std::fs::write(&file, b"compresseD").unwrap();
        assert!(!file_matches(&file, record.size, &record.digest));
        std::fs::remove_file(&file).unwrap();
        assert!(!file_matches(&file, record.size, &record.digest));
    }

    #[cfg(feature = "registry")]
    #[test]
    fn a_damaged_pushed_manifest_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path().join("s"), &StoreOptions::default()).unwrap();
        let cache = OciCache::new(&store);
        let image = crate::id::ImageId::of(b"image");
        assert_eq!(cache.pushed(&image), None);
        cache.record_pushed(&image, b"{\"manifest\":1}").unwrap();
        assert_eq!(cache.pushed(&image).unwrap(), b"{\"manifest\":1}");
        let path = cache.dir("pushed").join(image.to_hex());
        let mut bytes = std::fs::read(&path).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(cache.pushed(&image), None, "a damaged entry is ignored");
    }
}
