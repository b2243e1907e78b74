//! Advisory locks (`flock`), shared between threads of a process through the
//! open file they are taken on, and between processes.
//!
//! - `<store>/lock`: every open [`Store`](crate::Store) holds it shared; garbage
//!   collection and cleanup of `tmp/` take it exclusively.
//! - `<store>/packs/` (the directory itself): held exclusively for the few
//!   milliseconds in which a writer checks which of its chunks another process
//!   committed meanwhile and writes its index, so that two processes never both
//!   index the same chunk; and by maintenance while it rewrites the combined
//!   index or consolidates packs (`store::maintain`).

use std::fs::File;
use std::path::Path;

use rustix::fs::{FlockOperation, flock};

use crate::error::{Error, Result};

/// Takes `op` on `file` (at `path`, for messages). Non-blocking operations that
/// find the lock taken return `Ok(false)`.
pub(crate) fn take(file: &File, path: &Path, op: FlockOperation) -> Result<bool> {
    match flock(file, op) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        Err(e) => Err(Error::io("lock", path, e.into())),
    }
}

/// An exclusive lock on a directory, released on drop.
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    /// Blocks until the directory `path` is locked exclusively.
    pub(crate) fn exclusive(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io("open directory", path, e))?;
        take(&file, path, FlockOperation::LockExclusive)?;
        Ok(Self { _file: file })
    }

    /// Locks the directory `path` exclusively if nobody holds it; `None` if
    /// someone does.
    pub(crate) fn try_exclusive(path: &Path) -> Result<Option<Self>> {
        let file = File::open(path).map_err(|e| Error::io("open directory", path, e))?;
        let taken = take(&file, path, FlockOperation::NonBlockingLockExclusive)?;
        Ok(taken.then_some(Self { _file: file }))
    }
}
