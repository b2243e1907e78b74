//! Build-cache keys: what makes two steps the same step.
//!
//! A step's key is the BLAKE3 of the parent step's key, the instruction in
//! its normalised form, and, for `COPY`, the digest of what it copies. The
//! first step of a stage is keyed on the image it starts from (by id) or on
//! the stage it continues. Keys are stored as `refs/cache/<key>` naming the
//! image the step made ([`Store::set_cache_entry`]); garbage collection keeps
//! them as roots (`tree::refs`).
//!
//! The `COPY` digest covers, per copied entry in path order, its destination
//! path, kind, mode, owner (after `--chown`), content (the chunk ids, which
//! the stat cache supplies without reading unchanged files), symlink target
//! and device number: not its mtime, as `BuildKit` does, so touching a file is
//! still a hit, and a chmod is a miss.

use crate::error::{Error, Result};
use crate::id::{ChunkId, ImageId};
use crate::store::{Store, layout};
use crate::tree::{Entry, EntryKind};

/// A step's cache key, as 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Key(pub(crate) String);

impl Key {
    /// The key of a stage starting from `image` (`None`: `scratch`).
    pub(crate) fn from_image(image: Option<&ImageId>) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(b"layerstore build v1\0FROM\0");
        if let Some(id) = image {
            h.update(id.as_bytes());
        }
        Self(h.finalize().to_hex().to_string())
    }

    /// The key of the step `instruction` (normalised) after `self`, with the
    /// digest of what it copies, if it copies.
    pub(crate) fn then(&self, instruction: &str, copied: Option<&[u8; 32]>) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(b"layerstore build v1\0step\0");
        h.update(self.0.as_bytes());
        h.update(&(instruction.len() as u64).to_le_bytes());
        h.update(instruction.as_bytes());
        if let Some(d) = copied {
            h.update(d);
        }
        Self(h.finalize().to_hex().to_string())
    }
}

/// The digest of the entries a `COPY` puts in place (see the module docs).
pub(crate) fn copy_digest(entries: &[Entry]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    let field = |h: &mut blake3::Hasher, bytes: &[u8]| {
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    for e in entries {
        field(&mut h, e.path.as_bytes());
        h.update(&e.meta.mode.to_le_bytes());
        h.update(&e.meta.uid.to_le_bytes());
        h.update(&e.meta.gid.to_le_bytes());
        for (name, value) in &e.meta.xattrs {
            field(&mut h, name);
            field(&mut h, value);
        }
        match &e.kind {
            EntryKind::File { size, chunks } => {
                h.update(b"f");
                h.update(&size.to_le_bytes());
                for c in chunks.chunks() {
                    h.update(c.id.as_bytes());
                }
            }
            EntryKind::Dir => {
                h.update(b"d");
            }
            EntryKind::Symlink { target } => {
                h.update(b"l");
                field(&mut h, target);
            }
            EntryKind::Hardlink { target } => {
                h.update(b"h");
                field(&mut h, target.as_bytes());
            }
            EntryKind::CharDevice { rdev } => {
                h.update(b"c");
                h.update(&rdev.to_le_bytes());
            }
            EntryKind::BlockDevice { rdev } => {
                h.update(b"b");
                h.update(&rdev.to_le_bytes());
            }
            EntryKind::Fifo => {
                h.update(b"p");
            }
        }
    }
    *h.finalize().as_bytes()
}

/// Build-cache entries
impl Store {
    /// Records the build-cache entry `key` (64 lowercase hex digits: a step's
    /// cache key) as made by `image`: `refs/cache/<key>`. Garbage collection
    /// keeps the image and all it reaches. Flushes first, like
    /// [`Store::set_tag`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `key` is not 64 lowercase hex digits;
    /// [`Error::Io`] naming the ref file.
    pub fn set_cache_entry(&self, key: &str, image: &ImageId) -> Result<()> {
        check_cache_key(key)?;
        let names = [ChunkId::from(*image)];
        self.write_ref(layout::CACHE_ENTRIES, key, &image.to_string(), &names)
    }

    /// The image recorded for the build-cache entry `key`, if there is one.
    ///
    /// # Errors
    /// As [`Store::set_cache_entry`]; [`Error::Corrupt`] naming the file if it
    /// does not hold an image id.
    pub fn cache_entry(&self, key: &str) -> Result<Option<ImageId>> {
        check_cache_key(key)?;
        let Some(text) = self.read_ref(layout::CACHE_ENTRIES, key)? else {
            return Ok(None);
        };
        text.parse().map(Some).map_err(|_| {
            Error::corrupt(
                self.ref_path(layout::CACHE_ENTRIES, key),
                0,
                "the cache entry does not hold an image id",
            )
        })
    }
}

/// A build-cache key is 64 lowercase hex digits.
fn check_cache_key(key: &str) -> Result<()> {
    if key.len() == 64 && key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "'{key}' is not a build-cache key (64 lowercase hex digits)"
        )))
    }
}

/// The image of cache entry `key`, if there is one and everything a step
/// needs of it is still in the store: a damaged or collected entry is a
/// miss, not an error.
pub(crate) fn lookup(store: &Store, key: &Key) -> Option<ImageId> {
    let id = store.cache_entry(&key.0).ok()??;
    let image = store.image(&id).ok()?;
    // Present is enough (objects are verified when read): decoding every
    // layer and the whole tree would cost more than the step it saves.
    let present = |bytes: &[u8; 32]| store.contains(&ChunkId::from_bytes(*bytes));
    let complete =
        image.layers().iter().all(|l| present(l.as_bytes())) && present(image.rootfs().as_bytes());
    complete.then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{Metadata, Timestamp, TreePath};

    fn file(mode: u32, mtime: i64) -> Entry {
        Entry::symlink(
            TreePath::new("a").unwrap(),
            "target",
            Metadata {
                mode,
                mtime: Timestamp::new(mtime, 0),
                ..Metadata::default()
            },
        )
    }

    #[test]
    fn the_digest_ignores_mtime_and_sees_mode() {
        let base = copy_digest(&[file(0o644, 1)]);
        assert_eq!(base, copy_digest(&[file(0o644, 2)]));
        assert_ne!(base, copy_digest(&[file(0o600, 1)]));
    }

    #[test]
    fn keys_chain() {
        let a = Key::from_image(None);
        assert_eq!(a.0.len(), 64);
        assert_ne!(a.then("RUN x", None), a.then("RUN y", None));
        assert_ne!(
            a.then("COPY", Some(&[1; 32])),
            a.then("COPY", Some(&[2; 32]))
        );
        assert_eq!(
            a.then("RUN x", None),
            Key::from_image(None).then("RUN x", None)
        );
    }
}
