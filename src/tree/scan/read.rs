//! Reading one regular file's content into the store, again if it changed
//! while read.

use std::fs::File;
use std::io::Seek;
use std::path::Path;
use std::sync::atomic::Ordering;

use rustix::fs::Stat;

use super::stat::{dev, file_stat, ino};
use super::{Scan, ScanWarningKind};
use crate::error::{Error, Result};
use crate::store::chunk_list::ChunkList;
use crate::tree::entry::EntryKind;
use crate::tree::path::TreePath;

/// A regular file's content, read (or taken from the stat cache).
#[derive(Debug)]
pub(super) struct ReadFile {
    pub(super) chunks: ChunkList,
    /// Its stat once read.
    pub(super) stat: Stat,
    /// Whether it did not change while read: then the content is that of the
    /// file with this stat, and the next stat cache may record it.
    pub(super) stable: bool,
}

/// Reading
impl Scan<'_> {
    /// The chunks of the regular file at `path` whose `lstat` was `st` and
    /// whose xattrs are `xattrs`, and its `stat` once read: read through `open`
    /// and stored. `None` (after a warning) if it vanished or was replaced.
    pub(super) fn read_content(
        &self,
        path: &TreePath,
        st: &Stat,
        shown: &Path,
        open: impl FnOnce() -> Result<File>,
    ) -> Result<Option<ReadFile>> {
        let Some(mut file) = self.tolerate(path, open())? else {
            return Ok(None);
        };
        let fstat =
            |file: &File| rustix::fs::fstat(file).map_err(|e| Error::io("stat", shown, e.into()));
        let mut before = fstat(&file)?;
        if (dev(&before), ino(&before)) != (dev(st), ino(st)) {
            let detail = format!("'{}' is another file now", shown.display());
            self.warn(path, ScanWarningKind::Replaced, detail);
            return Ok(None);
        }
        let mut second = false;
        loop {
            let chunks = self.store.put_reader(&file, shown)?;
            self.files_read.fetch_add(1, Ordering::Relaxed);
            self.bytes_read
                .fetch_add(chunks.content_len(), Ordering::Relaxed);
            self.progress.add(0, chunks.content_len());
            let after = fstat(&file)?;
            let stable = file_stat(&before) == file_stat(&after)
                && chunks.content_len() == file_stat(&after).size;
            if stable {
                return Ok(Some(ReadFile {
                    chunks,
                    stat: after,
                    stable: true,
                }));
            }
            if second {
                let detail = format!(
                    "'{}' changed while read twice; kept {} bytes",
                    shown.display(),
                    chunks.content_len()
                );
                self.warn(path, ScanWarningKind::ChangedWhileRead, detail);
                return Ok(Some(ReadFile {
                    chunks,
                    stat: after,
                    stable: false,
                }));
            }
            second = true;
            before = after;
            file.rewind().map_err(|e| Error::io("seek", shown, e))?;
        }
    }
}

pub(super) fn file_kind(chunks: ChunkList) -> EntryKind {
    EntryKind::File {
        size: chunks.content_len(),
        chunks,
    }
}
