//! The one place that maps files into memory.
//!
//! Assumption: a file mapped here is never written after it was renamed into
//! place (indexes are written whole in `tmp/` and then renamed), so the
//! mapped bytes never change under a reader. Every number read from a mapping is
//! still bounds-checked by its reader, since the bytes on disk may be corrupt.
//! Truncating a mapped file from outside (which no layerstore code does) would
//! make the next access fault, as it would in every mmap-based store.

use std::fs::File;
use std::path::Path;

use memmap2::Mmap;

use crate::error::{Error, Result};

/// Maps all of `file` (at `path`, for messages) read-only. An empty file gives an
/// empty slice without mapping (mapping zero bytes is an error on Linux).
pub(crate) fn map(file: &File, path: &Path) -> Result<Mapped> {
    let len = file
        .metadata()
        .map_err(|e| Error::io("stat", path, e))?
        .len();
    if len == 0 {
        return Ok(Mapped(None));
    }
    #[expect(
        unsafe_code,
        reason = "memmap2::Mmap::map is unsafe: the file must not change while mapped"
    )]
    // SAFETY: the files mapped here are immutable once renamed into place (see
    // the module doc); readers bounds-check everything they read.
    let map = unsafe { Mmap::map(file) }.map_err(|e| Error::io("mmap", path, e))?;
    Ok(Mapped(Some(map)))
}

/// A read-only mapping (or nothing, for an empty file).
pub(crate) struct Mapped(Option<Mmap>);

impl std::ops::Deref for Mapped {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.0.as_deref().unwrap_or(&[])
    }
}
