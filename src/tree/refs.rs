//! The tree's refs: the roots that garbage collection keeps, each a file of
//! the store's ref namespace (`store::refs`), in the groups that
//! `store::layout` names.
//!
//! - `refs/tags/<name>:<tag>` holds the image id a tag points at (`/` in a name
//!   is written `%2F`, so every tag is one file in one directory).
//! - `refs/cache/<key>` holds a build-cache entry (written by `build`): a root
//!   that keeps what it names while that is there, and is no damage when it
//!   is gone.
//! - `refs/<group>/<name>` for any other group (`containers`, say) is a *pin*:
//!   one or more object or chunk ids, one a line, that garbage collection
//!   keeps with everything they reach (see [`Store::set_pins`]).
//!
//! Each tag and cache file holds one id, `blake3:<hex>`, and a newline.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::id::{ChunkId, ImageId};
use crate::store::{Store, is_ref_part, layout};

/// The ref groups that are not pins.
const RESERVED: [&str; 2] = [layout::TAGS, layout::CACHE_ENTRIES];

/// A normalised image name: `name:tag`, where a bare `name` means `name:latest`.
///
/// Names follow the OCI distribution rules loosely: path components of
/// lowercase letters, digits and `.`, `_`, `-`, separated by `/`, optionally
/// after a registry host (`localhost:5000/app`); tags are 1 to 128 of
/// letters, digits, `_`, `.`, `-`, not starting with `.` or `-`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TagName {
    name: String,
    tag: String,
}

impl TagName {
    /// The repository part (`library/debian`).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tag part (`latest` when none was given).
    #[must_use]
    pub fn tag(&self) -> &str {
        &self.tag
    }

    fn file_name(&self) -> String {
        format!("{}:{}", self.name.replace('/', "%2F"), self.tag)
    }

    pub(crate) fn from_file_name(file: &str) -> Option<Self> {
        file.replace("%2F", "/").parse().ok()
    }
}

impl fmt::Display for TagName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.tag)
    }
}

impl FromStr for TagName {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: &str| {
            Error::InvalidArgument(format!("'{s}' is not a valid image name: {reason}"))
        };
        // The tag is after the last ':' that follows the last '/'.
        let last_slash = s.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match s[last_slash..].rfind(':') {
            Some(i) => (&s[..last_slash + i], &s[last_slash + i + 1..]),
            None => (s, "latest"),
        };
        if name.is_empty() || name.len() > 255 {
            return Err(bad("the name must be 1 to 255 characters"));
        }
        let mut components = name.split('/').peekable();
        let mut first = true;
        while let Some(component) = components.next() {
            let is_host = first
                && components.peek().is_some()
                && (component.contains('.') || component.contains(':') || component == "localhost");
            first = false;
            let ok_char = |c: char| {
                c.is_ascii_lowercase()
                    || c.is_ascii_digit()
                    || matches!(c, '.' | '_' | '-')
                    || (is_host && (c == ':' || c.is_ascii_uppercase()))
            };
            if component.is_empty()
                || component == "."
                || component == ".."
                || !component.chars().all(ok_char)
            {
                return Err(bad(
                    "name components are lowercase letters, digits, '.', '_' or '-', separated by '/'",
                ));
            }
            if is_host
                && let Some((_, port)) = component.split_once(':')
                && (port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()))
            {
                return Err(bad("a registry port is digits"));
            }
            if component.starts_with(['.', '-', '_']) && !is_host {
                return Err(bad("a name component may not start with '.', '_' or '-'"));
            }
        }
        let tag_ok = !tag.is_empty()
            && tag.len() <= 128
            && !tag.starts_with(['.', '-'])
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !tag_ok {
            return Err(bad(
                "a tag is 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'",
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            tag: tag.to_owned(),
        })
    }
}

/// Tags
impl Store {
    /// Points `name` at `image`, replacing what it pointed at. If the image
    /// was stored through this handle and not yet flushed, it is flushed
    /// first: a ref is never durable before what it names.
    ///
    /// # Errors
    /// [`Error::Io`] naming the ref file if it cannot be written, or the pack
    /// if the flush fails.
    pub fn set_tag(&self, name: &TagName, image: &ImageId) -> Result<()> {
        let names = [ChunkId::from(*image)];
        self.write_ref(layout::TAGS, &name.file_name(), &image.to_string(), &names)
    }

    /// Removes the tag `name`; whether it existed.
    ///
    /// # Errors
    /// [`Error::Io`] naming the ref file if it cannot be removed.
    pub fn remove_tag(&self, name: &TagName) -> Result<bool> {
        self.delete_ref(layout::TAGS, &name.file_name())
    }

    /// The image `name` points at, if the tag exists.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the ref file if it does not hold an id.
    pub fn tag(&self, name: &TagName) -> Result<Option<ImageId>> {
        let file = name.file_name();
        let Some(text) = self.read_ref(layout::TAGS, &file)? else {
            return Ok(None);
        };
        text.parse().map(Some).map_err(|_| {
            Error::corrupt(
                self.ref_path(layout::TAGS, &file),
                0,
                "the tag does not hold an image id",
            )
        })
    }

    /// Every tag and its image, sorted by name. Files in `refs/tags` that are
    /// not tags are skipped.
    ///
    /// # Errors
    /// As [`Store::tag`].
    pub fn tags(&self) -> Result<Vec<(TagName, ImageId)>> {
        let mut out = Vec::new();
        for file in self.list_refs(layout::TAGS)? {
            let Some(name) = TagName::from_file_name(&file) else {
                continue;
            };
            if let Some(id) = self.tag(&name)? {
                out.push((name, id));
            }
        }
        Ok(out)
    }
}

/// Pins: refs that keep objects alive for layers above the tree (a
/// container keeps its parent image, say) without the tree knowing what
/// they are for.
impl Store {
    fn pin_group(group: &str, name: &str) -> Result<()> {
        if !is_ref_part(group) || RESERVED.contains(&group) || !is_ref_part(name) {
            return Err(Error::InvalidArgument(format!(
                "'{group}/{name}' is not a pin: a group other than tags and cache, and a name, \
                 each 1 to 255 bytes without '/' or NUL"
            )));
        }
        Ok(())
    }

    /// Records `refs/<group>/<name>` holding `ids` (replacing what it held):
    /// garbage collection keeps each id, and, for an image, layer or snapshot
    /// id, everything it reaches, like a tag. Objects stored through this
    /// handle and not yet flushed are flushed first.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `group` is `tags` or `cache`, or either
    /// is empty or holds `/` or NUL; [`Error::Io`] naming the ref file.
    pub fn set_pins(&self, group: &str, name: &str, ids: &[ChunkId]) -> Result<()> {
        Self::pin_group(group, name)?;
        let text: Vec<String> = ids.iter().map(ToString::to_string).collect();
        self.write_ref(group, name, &text.join("\n"), ids)
    }

    /// The ids that `refs/<group>/<name>` holds; empty if it does not exist.
    ///
    /// # Errors
    /// As [`Store::set_pins`]; [`Error::Corrupt`] naming the file if a line is
    /// not an id.
    pub fn pins(&self, group: &str, name: &str) -> Result<Vec<ChunkId>> {
        Self::pin_group(group, name)?;
        let Some(text) = self.read_ref(group, name)? else {
            return Ok(Vec::new());
        };
        parse_pins(&text).map_err(|reason| Error::corrupt(self.ref_path(group, name), 0, reason))
    }

    /// Deletes `refs/<group>/<name>`; whether it existed.
    ///
    /// # Errors
    /// As [`Store::set_pins`].
    pub fn remove_pins(&self, group: &str, name: &str) -> Result<bool> {
        Self::pin_group(group, name)?;
        self.delete_ref(group, name)
    }

    /// Marks `image` as being fetched lazily (a [`LazyImage`](crate::oci::LazyImage)'s,
    /// whose tree is here and whose content arrives as it is read): a pin
    /// (`refs/lazy/<image hex>`), so garbage collection keeps it and what was
    /// fetched of it, and `fsck` reports its absent chunks as still to come
    /// ([`FsckReport::fetching`](crate::FsckReport::fetching)) rather than as
    /// damage, until [`Store::unmark_lazy`].
    ///
    /// # Errors
    /// [`Error::Io`] naming the ref file.
    pub fn mark_lazy(&self, image: &ImageId) -> Result<()> {
        self.set_pins(layout::LAZY, &image.to_hex(), &[ChunkId::from(*image)])
    }

    /// Removes the mark of [`Store::mark_lazy`] (once the image is all here,
    /// or abandoned); whether it was there.
    ///
    /// # Errors
    /// [`Error::Io`] naming the ref file.
    pub fn unmark_lazy(&self, image: &ImageId) -> Result<bool> {
        self.remove_pins(layout::LAZY, &image.to_hex())
    }

    /// The images marked by [`Store::mark_lazy`].
    ///
    /// # Errors
    /// [`Error::Io`] naming `refs/lazy/`; [`Error::Corrupt`] naming a mark
    /// that is not one.
    pub fn lazy_images(&self) -> Result<Vec<ImageId>> {
        let mut out = Vec::new();
        for name in self.list_refs(layout::LAZY)? {
            let ids = self.pins(layout::LAZY, &name)?;
            out.extend(
                ids.into_iter()
                    .map(|id| ImageId::from_bytes(*id.as_bytes())),
            );
        }
        Ok(out)
    }

    /// The ref groups other than `tags` and `cache` (directories under
    /// `refs/`), sorted.
    pub(crate) fn pin_groups(&self) -> Result<Vec<String>> {
        let mut groups = self.ref_groups()?;
        groups.retain(|g| !RESERVED.contains(&g.as_str()));
        Ok(groups)
    }
}

/// The ids of a pin file, one a line.
pub(crate) fn parse_pins(text: &str) -> Result<Vec<ChunkId>, String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim().parse().map_err(|_| format!("'{l}' is not an id")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_normalise() {
        let t: TagName = "debian".parse().unwrap();
        assert_eq!(t.to_string(), "debian:latest");
        let t: TagName = "localhost:5000/library/app:v1.2".parse().unwrap();
        assert_eq!((t.name(), t.tag()), ("localhost:5000/library/app", "v1.2"));
        for bad in [
            "", ":x", "Debian", "a//b", "a/../b", "a:", "a:-x", "a b", "/a", "a/", "a:b:c/d",
        ] {
            assert!(bad.parse::<TagName>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn tags_round_trip_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path().join("s"), &crate::StoreOptions::default()).unwrap();
        let a = ImageId::of(b"a");
        let b = ImageId::of(b"b");
        let name: TagName = "registry.example:5000/team/app:1".parse().unwrap();
        assert_eq!(store.tag(&name).unwrap(), None);
        store.set_tag(&name, &a).unwrap();
        store.set_tag(&"base".parse().unwrap(), &b).unwrap();
        store.set_tag(&name, &b).unwrap();
        assert_eq!(store.tag(&name).unwrap(), Some(b));
        let tags = store.tags().unwrap();
        assert_eq!(tags.len(), 2);
        assert_eq!(tags[0].0.to_string(), "base:latest");
        assert!(store.remove_tag(&name).unwrap());
        assert!(!store.remove_tag(&name).unwrap());
        std::fs::write(dir.path().join("s/refs/tags/base:latest"), b"garbage").unwrap();
        let err = store.tag(&"base".parse().unwrap()).unwrap_err();
        assert!(err.to_string().contains("base:latest"), "{err}");
    }
}
