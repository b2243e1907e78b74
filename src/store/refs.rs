//! Refs: a namespace of small text files, `refs/<group>/<name>`, each
//! written atomically and durable only after what it names.
//!
//! The store gives refs no meaning: which groups there are and what their
//! files hold belong to the strata that write them (tags, build-cache entries
//! and pins are the tree's roots for garbage collection: `tree::refs`). The
//! groups in use are named in [`layout`](super::layout).

use std::path::PathBuf;

use super::{Store, layout};
use crate::error::{Error, Result};
use crate::fsutil::{durable, fault};
use crate::id::ChunkId;

/// The longest ref file read: longer ones are corrupt.
const MAX_REF_LEN: usize = 4096;

/// Whether `part` may be a ref group or name: 1 to 255 bytes, no `/` or NUL,
/// not `.` or `..`.
pub(crate) fn is_ref_part(part: &str) -> bool {
    !part.is_empty()
        && part != "."
        && part != ".."
        && !part.contains(['/', '\0'])
        && part.len() <= 255
}

/// Refs
impl Store {
    /// The file of ref `group`/`name`.
    pub(crate) fn ref_path(&self, group: &str, name: &str) -> PathBuf {
        layout::ref_group(&self.root, group).join(name)
    }

    /// Writes `value` and a newline to the ref file `refs/<group>/<name>`
    /// atomically. If any of `names` (the ids `value` names) was stored
    /// through this handle and not yet flushed, it is flushed first: a ref is
    /// never durable before what it names.
    pub(crate) fn write_ref(
        &self,
        group: &str,
        name: &str,
        value: &str,
        names: &[ChunkId],
    ) -> Result<()> {
        if names.iter().any(|id| !self.is_committed(id)) {
            self.flush()?;
        }
        let dir = layout::ref_group(&self.root, group);
        durable::create_dir(&dir)?;
        durable::write_atomic(
            &self.tmp_dir(),
            &dir.join(name),
            format!("{value}\n").as_bytes(),
        )
    }

    /// Reads the ref file `refs/<group>/<name>` (without its final newline),
    /// `None` if absent.
    pub(crate) fn read_ref(&self, group: &str, name: &str) -> Result<Option<String>> {
        let path = self.ref_path(group, name);
        match std::fs::read(&path) {
            Ok(bytes) if bytes.len() <= MAX_REF_LEN => match String::from_utf8(bytes) {
                Ok(text) => Ok(Some(text.trim_end().to_owned())),
                Err(_) => Err(Error::corrupt(&path, 0, "ref is not UTF-8 text")),
            },
            Ok(_) => Err(Error::corrupt(&path, 0, "ref is longer than any id")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("read", &path, e)),
        }
    }

    /// Deletes the ref file `refs/<group>/<name>`; whether it existed.
    pub(crate) fn delete_ref(&self, group: &str, name: &str) -> Result<bool> {
        let dir = layout::ref_group(&self.root, group);
        let path = dir.join(name);
        match fault::check("remove", &path).and_then(|()| std::fs::remove_file(&path)) {
            Ok(()) => {
                durable::sync_dir(&dir)?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io("remove", &path, e)),
        }
    }

    /// The file names in `refs/<group>/`, sorted.
    pub(crate) fn list_refs(&self, group: &str) -> Result<Vec<String>> {
        let dir = layout::ref_group(&self.root, group);
        list(&dir, |_| true)
    }

    /// The ref groups (directories under `refs/`), sorted.
    pub(crate) fn ref_groups(&self) -> Result<Vec<String>> {
        list(&layout::refs(&self.root), |entry| {
            entry.file_type().is_ok_and(|t| t.is_dir())
        })
    }
}

/// The UTF-8 names of the entries of `dir` that `keep` keeps, sorted; none
/// if `dir` does not exist.
fn list(dir: &std::path::Path, keep: impl Fn(&std::fs::DirEntry) -> bool) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read directory", dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read directory", dir, e))?;
        if let Some(name) = entry.file_name().to_str()
            && keep(&entry)
        {
            out.push(name.to_owned());
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_round_trip_and_list() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path().join("s"), &crate::StoreOptions::default()).unwrap();
        assert_eq!(store.read_ref("g", "a").unwrap(), None);
        assert!(store.ref_groups().unwrap().is_empty());
        store.write_ref("g", "b", "two\nlines", &[]).unwrap();
        store.write_ref("g", "a", "one", &[]).unwrap();
        assert_eq!(store.read_ref("g", "a").unwrap().as_deref(), Some("one"));
        assert_eq!(
            store.read_ref("g", "b").unwrap().as_deref(),
            Some("two\nlines")
        );
        assert_eq!(store.list_refs("g").unwrap(), ["a", "b"]);
        assert_eq!(store.ref_groups().unwrap(), ["g"]);
        assert!(store.delete_ref("g", "a").unwrap());
        assert!(!store.delete_ref("g", "a").unwrap());
        std::fs::write(store.ref_path("g", "big"), vec![b'x'; MAX_REF_LEN + 1]).unwrap();
        assert!(store.read_ref("g", "big").is_err());
        assert!(is_ref_part("containers") && !is_ref_part("..") && !is_ref_part("a/b"));
    }
}
