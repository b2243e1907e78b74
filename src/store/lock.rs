//! Advisory locks (`flock`), shared between threads of a process through the
//! open file they are taken on, and between processes.
//!
//! - `<store>/lock`: every open [`Store`](crate::Store) holds it shared;
//!   `fsck --repair` takes it exclusively (it needs the store alone), and so
//!   does, for a moment and only if it finds it free, whoever cleans `tmp/`
//!   (opening, gc). Garbage collection does not need it: it runs beside
//!   other processes, kept from what they put by their leases
//!   (`store::lease`).
//! - `<store>/packs/` (the directory itself): held exclusively while a writer
//!   renames its new pack into `packs/`, checks which of its chunks another
//!   process committed meanwhile and writes its index, so that two processes
//!   never both index the same chunk and a pack without an index, seen under
//!   the lock, is one a crash left; by maintenance while it rewrites the
//!   combined index or consolidates packs (`store::maintain`); and by gc
//!   while it fences and deletes (`store::gc`).
//! - `<store>/leases/` (the directory itself): the gc lock, held by the gc
//!   running (one at a time). A handle dropped while nobody holds it removes
//!   its own lease.
//! - `<store>/leases/<name>.lease`: held exclusively by the handle whose
//!   lease it is, for as long as it is open: a lease gc can lock is stale.

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
