//! What OCI exchange remembers, in `<store>/cache/oci/` (a cache only: safe
//! to delete; without it a pull fetches every layer, a push exports every
//! layer again):
//!
//! ```text
//! cache/oci/chains/<sha256 hex>   the layer that a stack of layer tars with
//!                                 that ChainID ends with
//! cache/oci/exports/<layer hex>.<codec>-<level>.v2
//!                                 an export of that layer: its digest, size,
//!                                 DiffID, a seekable blob's TOC position and
//!                                 digest (empty lines otherwise) and the file
//!                                 it was written to
//! cache/oci/pushed/<image hex>    the manifest last pushed for an image
//! ```
//!
//! Every OCI path records here: layout and `docker save` imports, pulls,
//! exports and pushes. A layer is recognised by its content, as Docker
//! recognises it: [`OciCache::known_layer`] answers when the `ChainID` of
//! the image's `DiffIDs` up to it (the layers below included, as a layer's
//! tar is read over the tree below it) names a layer the store holds,
//! whatever the blob's digest or compression.
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
use crate::oci::blobs::ExportOptions;
use crate::oci::compress::Compression;
use crate::oci::digest::{chain_ids, sha256_hex};
use crate::store::{Store, layout};

/// The largest cache entry read back.
const MAX_ENTRY: u64 = 4 << 20;

/// Bumped whenever an export of the same layer would give other bytes (a
/// change of the tar writer or the compressor), so that older records are
/// not taken for what an export writes now.
const EXPORT_FORMAT: &str = "v2";

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
    /// A seekable blob's TOC: its position (`offset:length:raw`) and the
    /// `sha256:` of its frame, as the descriptor's annotations give them.
    pub(crate) toc: Option<(String, String)>,
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

    /// The stored layer that a stack of layer tars with `ChainID`
    /// `chain_id` ends with, if the store holds it: whatever blobs (of
    /// whatever compression) carry those tars, as Docker knows layers. A
    /// chain is recorded only for tars whose `DiffIDs` were computed from
    /// the bytes (an import, an export, a partial pull's check).
    pub(crate) fn known_layer(&self, chain_id: &str) -> Option<LayerId> {
        let id: LayerId = self
            .read_text("chains", sha256_hex(chain_id)?)?
            .trim()
            .parse()
            .ok()?;
        self.holds(&id).then_some(id)
    }

    /// Remembers that the stack of layer tars with `ChainID` `chain_id`
    /// ends with `layer`.
    pub(crate) fn record_chain(&self, chain_id: &str, layer: &LayerId) -> Result<()> {
        match sha256_hex(chain_id) {
            Some(hex) => self.write("chains", hex, layer.to_string().as_bytes()),
            None => Err(crate::Error::InvalidArgument(format!(
                "'{chain_id}' is not a sha256 digest"
            ))),
        }
    }

    /// Remembers an image's layers: the stack of the tars `diff_ids[..=i]`
    /// ends with `layers[i]`.
    pub(crate) fn record_layers(&self, diff_ids: &[String], layers: &[LayerId]) -> Result<()> {
        for (chain, layer) in chain_ids(diff_ids).iter().zip(layers) {
            self.record_chain(chain, layer)?;
        }
        Ok(())
    }

    /// The record's name: the layer, the codec and level, and for a
    /// seekable export with a prefetch list, the list's hash (the list is
    /// in the blob).
    fn export_name(layer: &LayerId, options: &ExportOptions) -> String {
        let codec = match options.compression {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::ZstdSeekable => "zstd-seekable",
            Compression::None => "none",
        };
        let level = options.compression.level(options.level);
        let prefetch =
            if options.compression == Compression::ZstdSeekable && !options.prefetch.is_empty() {
                let mut hasher = blake3::Hasher::new();
                for path in &options.prefetch {
                    hasher.update(path.as_bytes());
                    hasher.update(b"\0");
                }
                format!("-p{}", &hasher.finalize().to_hex()[..16])
            } else {
                String::new()
            };
        format!(
            "{}.{codec}-{level}{prefetch}.{EXPORT_FORMAT}",
            layer.to_hex()
        )
    }

    /// The export of `layer` with `options` recorded last.
    pub(crate) fn export_of(
        &self,
        layer: &LayerId,
        options: &ExportOptions,
    ) -> Option<ExportRecord> {
        let bytes = self.read("exports", &Self::export_name(layer, options))?;
        let mut parts = bytes.splitn(6, |&b| b == b'\n');
        let mut text = || String::from_utf8(parts.next()?.to_vec()).ok();
        let digest = text()?;
        let size = text()?.parse().ok()?;
        let diff_id = text()?;
        let toc = (text()?, text()?);
        let toc = (toc != (String::new(), String::new())).then_some(toc);
        let path = PathBuf::from(std::ffi::OsStr::from_bytes(parts.next()?));
        (sha256_hex(&digest).is_some() && sha256_hex(&diff_id).is_some()).then_some(ExportRecord {
            digest,
            size,
            diff_id,
            path,
            toc,
        })
    }

    /// Remembers an export of `layer` with `options`.
    pub(crate) fn record_export(
        &self,
        layer: &LayerId,
        options: &ExportOptions,
        export: &ExportRecord,
    ) -> Result<()> {
        let (position, toc_digest) = export.toc.clone().unwrap_or_default();
        let mut bytes = format!(
            "{}\n{}\n{}\n{position}\n{toc_digest}\n",
            export.digest, export.size, export.diff_id
        )
        .into_bytes();
        bytes.extend_from_slice(export.path.as_os_str().as_bytes());
        self.write("exports", &Self::export_name(layer, options), &bytes)
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
    fn layers_are_known_by_chain() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path().join("s"), &StoreOptions::default()).unwrap();
        let cache = OciCache::new(&store);
        let stored = store.put_layer(&Layer::empty()).unwrap();
        let absent = LayerId::of(b"not stored");
        let (tar, tar2) = (sha256_digest(b"tar"), sha256_digest(b"tar2"));
        let chains = chain_ids(&[tar.clone(), tar2.clone()]);
        assert_eq!(cache.known_layer(&chains[0]), None);
        cache
            .record_layers(&[tar.clone(), tar2.clone()], &[stored, absent])
            .unwrap();
        // Whatever blob carries it (another compression: another digest).
        assert_eq!(cache.known_layer(&chains[0]), Some(stored));
        assert_eq!(
            cache.known_layer(&chains[1]),
            None,
            "a layer the store lacks"
        );
        assert_eq!(
            cache.known_layer(&chain_ids(std::slice::from_ref(&tar2))[0]),
            None,
            "another tar"
        );
        assert_eq!(
            cache.known_layer(&chain_ids(&[sha256_digest(b"other base"), tar.clone()])[1]),
            None,
            "the same tar over other layers"
        );
        assert!(cache.record_chain("sha256:../x", &stored).is_err());
        assert_eq!(cache.known_layer("sha256:../../x"), None);
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
            toc: None,
        };
        let gzip = ExportOptions::new(Compression::Gzip);
        assert_eq!(cache.export_of(&layer, &gzip), None);
        cache.record_export(&layer, &gzip, &record).unwrap();
        assert_eq!(cache.export_of(&layer, &gzip), Some(record.clone()));
        assert_eq!(cache.export_of(&layer, &gzip.clone().level(9)), None);
        assert_eq!(
            cache.export_of(&layer, &ExportOptions::new(Compression::Zstd)),
            None
        );
        // A seekable export remembers its TOC, and one with a prefetch list
        // is another export.
        let seekable = ExportOptions::new(Compression::ZstdSeekable);
        let with_toc = ExportRecord {
            toc: Some(("1:2:3".into(), sha256_digest(b"toc"))),
            ..record.clone()
        };
        cache.record_export(&layer, &seekable, &with_toc).unwrap();
        assert_eq!(cache.export_of(&layer, &seekable), Some(with_toc));
        let listed = seekable.prefetch(vec![crate::TreePath::new("etc/hosts").unwrap()]);
        assert_eq!(cache.export_of(&layer, &listed), None);
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
