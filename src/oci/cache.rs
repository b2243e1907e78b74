//! What registry transfers remember, in `<store>/cache/oci/` (a cache only:
//! safe to delete; without it a pull fetches layers again and a re-push
//! exports again):
//!
//! ```text
//! cache/oci/layers/<sha256 hex>   the layer id a layer blob was imported as
//!                                 (or exported from)
//! cache/oci/pushed/<image hex>    the manifest last pushed for an image
//! ```
//!
//! Nothing here is trusted blindly: a layer id is used only if the store
//! holds that layer, and a cached manifest only after the registry has
//! confirmed (HEAD) every blob it names.

use std::path::PathBuf;

use crate::digest::{ChunkId, ImageId, LayerId};
use crate::error::Result;
use crate::fsutil::durable;
use crate::store::Store;

use super::transfer::{digest_hex, sha256};

/// The largest cached manifest read back.
const MAX_CACHED: u64 = 4 << 20;

pub(crate) struct TransferCache<'a> {
    store: &'a Store,
}

impl<'a> TransferCache<'a> {
    pub(crate) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    fn dir(&self, kind: &str) -> PathBuf {
        self.store.path().join("cache/oci").join(kind)
    }

    fn write(&self, kind: &str, name: &str, bytes: &[u8]) -> Result<()> {
        let dir = self.dir(kind);
        std::fs::create_dir_all(&dir).map_err(|e| crate::Error::io("create directory", &dir, e))?;
        durable::write_atomic(&self.store.path().join("tmp"), &dir.join(name), bytes)
    }

    fn read(&self, kind: &str, name: &str) -> Option<Vec<u8>> {
        use std::io::Read;
        let file = std::fs::File::open(self.dir(kind).join(name)).ok()?;
        let mut bytes = Vec::new();
        file.take(MAX_CACHED + 1).read_to_end(&mut bytes).ok()?;
        (bytes.len() as u64 <= MAX_CACHED).then_some(bytes)
    }

    /// The stored layer that blob `digest` holds, if known and present.
    pub(crate) fn layer_for(&self, digest: &str) -> Option<LayerId> {
        let hex = digest_hex(digest, "").ok()?;
        let text = String::from_utf8(self.read("layers", hex)?).ok()?;
        let id: LayerId = text.trim().parse().ok()?;
        self.store
            .contains(&ChunkId::from_bytes(*id.as_bytes()))
            .then_some(id)
    }

    /// Remembers that blob `digest` holds `layer`.
    pub(crate) fn record_layer(&self, digest: &str, layer: &LayerId) -> Result<()> {
        let hex = digest_hex(digest, "layer blob")?;
        self.write("layers", hex, layer.to_string().as_bytes())
    }

    /// The manifest last pushed for `image` (its bytes, checked against the
    /// digest stored beside them).
    pub(crate) fn pushed(&self, image: &ImageId) -> Option<Vec<u8>> {
        let bytes = self.read("pushed", &image.to_hex())?;
        let (digest, manifest) = bytes.split_at(bytes.iter().position(|&b| b == b'\n')?);
        let manifest = manifest.get(1..)?;
        (sha256(manifest).as_bytes() == digest).then(|| manifest.to_vec())
    }

    /// Remembers the manifest pushed for `image`.
    pub(crate) fn record_pushed(&self, image: &ImageId, manifest: &[u8]) -> Result<()> {
        let mut bytes = sha256(manifest).into_bytes();
        bytes.push(b'\n');
        bytes.extend_from_slice(manifest);
        self.write("pushed", &image.to_hex(), &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Layer, StoreOptions};

    #[test]
    fn entries_are_used_only_when_they_check_out() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path().join("s"), &StoreOptions::default()).unwrap();
        let cache = TransferCache::new(&store);
        let digest = sha256(b"a layer blob");
        let stored = store.put_layer(&Layer::empty()).unwrap();
        let absent = LayerId::of(b"not stored");
        assert_eq!(cache.layer_for(&digest), None);
        cache.record_layer(&digest, &absent).unwrap();
        assert_eq!(cache.layer_for(&digest), None, "a layer the store lacks");
        cache.record_layer(&digest, &stored).unwrap();
        assert_eq!(cache.layer_for(&digest), Some(stored));
        assert!(cache.record_layer("sha256:../../x", &stored).is_err());

        let image = ImageId::of(b"image");
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
