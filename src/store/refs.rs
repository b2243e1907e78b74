//! Refs: small files naming objects, written atomically. They are the roots
//! that garbage collection keeps.
//!
//! - `refs/tags/<name>:<tag>` holds the image id a tag points at (`/` in a name
//!   is written `%2F`, so every tag is one file in one directory).
//! - `refs/cache/<key>` holds a build-cache entry.
//! - `refs/<group>/<name>` for any other group (`containers`, say) is a *pin*:
//!   one or more object or chunk ids, one a line, that garbage collection
//!   keeps with everything they reach (see [`Store::set_pins`]).
//!
//! Each tag and cache file holds one id, `blake3:<hex>`, and a newline.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::Store;
use crate::digest::{ChunkId, ImageId};
use crate::error::{Error, Result};
use crate::fsutil::durable;

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
    fn refs_dir(&self, kind: &str) -> PathBuf {
        super::layout::ref_group(&self.root, kind)
    }

    /// Writes `value` to the ref file `refs/<kind>/<file>` atomically.
    pub(crate) fn write_ref(&self, kind: &str, file: &str, value: &str) -> Result<()> {
        let dir = self.refs_dir(kind);
        fs_err::create_dir_all(&dir).map_err(|e| Error::io("create directory", &dir, e))?;
        durable::write_atomic(
            &self.tmp_dir(),
            &dir.join(file),
            format!("{value}\n").as_bytes(),
        )
    }

    /// Reads the ref file `refs/<kind>/<file>`, `None` if absent.
    pub(crate) fn read_ref(&self, kind: &str, file: &str) -> Result<Option<String>> {
        let path = self.refs_dir(kind).join(file);
        match std::fs::read(&path) {
            Ok(bytes) if bytes.len() <= 4096 => match String::from_utf8(bytes) {
                Ok(text) => Ok(Some(text.trim_end().to_owned())),
                Err(_) => Err(Error::corrupt(&path, 0, "ref is not UTF-8 text")),
            },
            Ok(_) => Err(Error::corrupt(&path, 0, "ref is longer than any id")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("read", &path, e)),
        }
    }

    /// Deletes the ref file `refs/<kind>/<file>`; whether it existed.
    pub(crate) fn delete_ref(&self, kind: &str, file: &str) -> Result<bool> {
        let dir = self.refs_dir(kind);
        let path = dir.join(file);
        match std::fs::remove_file(&path) {
            Ok(()) => {
                durable::sync_dir(&dir)?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io("remove", &path, e)),
        }
    }

    /// The file names in `refs/<kind>/`, sorted.
    pub(crate) fn list_refs(&self, kind: &str) -> Result<Vec<String>> {
        let dir = self.refs_dir(kind);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("read directory", &dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("read directory", &dir, e))?;
            if let Some(name) = entry.file_name().to_str() {
                out.push(name.to_owned());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Points `name` at `image`, replacing what it pointed at. If the image
    /// was stored through this handle and not yet flushed, it is flushed
    /// first: a ref is never durable before what it names.
    ///
    /// # Errors
    /// [`Error::Io`] naming the ref file if it cannot be written, or the pack
    /// if the flush fails.
    pub fn set_tag(&self, name: &TagName, image: &ImageId) -> Result<()> {
        if !self.is_committed(&crate::digest::ChunkId::from_bytes(*image.as_bytes())) {
            self.flush()?;
        }
        self.write_ref("tags", &name.file_name(), &image.to_string())
    }

    /// Removes the tag `name`; whether it existed.
    ///
    /// # Errors
    /// [`Error::Io`] naming the ref file if it cannot be removed.
    pub fn remove_tag(&self, name: &TagName) -> Result<bool> {
        self.delete_ref("tags", &name.file_name())
    }

    /// The image `name` points at, if the tag exists.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the ref file if it does not hold an id.
    pub fn tag(&self, name: &TagName) -> Result<Option<ImageId>> {
        let file = name.file_name();
        let Some(text) = self.read_ref("tags", &file)? else {
            return Ok(None);
        };
        text.parse().map(Some).map_err(|_| {
            Error::corrupt(
                self.refs_dir("tags").join(&file),
                0,
                "the tag does not hold an image id",
            )
        })
    }

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
        if !self.is_committed(&crate::digest::ChunkId::from_bytes(*image.as_bytes())) {
            self.flush()?;
        }
        self.write_ref("cache", key, &image.to_string())
    }

    /// The image recorded for the build-cache entry `key`, if there is one.
    ///
    /// # Errors
    /// As [`Store::set_cache_entry`]; [`Error::Corrupt`] naming the file if it
    /// does not hold an image id.
    pub fn cache_entry(&self, key: &str) -> Result<Option<ImageId>> {
        check_cache_key(key)?;
        let Some(text) = self.read_ref("cache", key)? else {
            return Ok(None);
        };
        text.parse().map(Some).map_err(|_| {
            Error::corrupt(
                self.refs_dir("cache").join(key),
                0,
                "the cache entry does not hold an image id",
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
        for file in self.list_refs("tags")? {
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

/// Pins: refs that keep objects alive for layers above the store (a
/// container keeps its parent image, say) without the store knowing what
/// they are for.
impl Store {
    fn pin_group(group: &str, name: &str) -> Result<()> {
        let ok = |s: &str| {
            !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\0']) && s.len() <= 255
        };
        if !ok(group) || matches!(group, "tags" | "cache") || !ok(name) {
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
        if ids.iter().any(|id| !self.is_committed(id)) {
            self.flush()?;
        }
        let text: Vec<String> = ids.iter().map(ToString::to_string).collect();
        self.write_ref(group, name, &text.join("\n"))
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
        parse_pins(&text)
            .map_err(|reason| Error::corrupt(self.refs_dir(group).join(name), 0, reason))
    }

    /// Deletes `refs/<group>/<name>`; whether it existed.
    ///
    /// # Errors
    /// As [`Store::set_pins`].
    pub fn remove_pins(&self, group: &str, name: &str) -> Result<bool> {
        Self::pin_group(group, name)?;
        self.delete_ref(group, name)
    }

    /// The ref groups other than `tags` and `cache` (directories under
    /// `refs/`), sorted.
    pub(crate) fn pin_groups(&self) -> Result<Vec<String>> {
        let dir = super::layout::refs(&self.root);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("read directory", &dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("read directory", &dir, e))?;
            if let Some(name) = entry.file_name().to_str()
                && !matches!(name, "tags" | "cache")
                && entry.file_type().is_ok_and(|t| t.is_dir())
            {
                out.push(name.to_owned());
            }
        }
        out.sort();
        Ok(out)
    }
}

/// The ids of a pin file, one a line.
pub(crate) fn parse_pins(text: &str) -> Result<Vec<ChunkId>, String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim().parse().map_err(|_| format!("'{l}' is not an id")))
        .collect()
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
