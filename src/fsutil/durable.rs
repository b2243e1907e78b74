//! Durable writes: write to a temporary file, fsync it, rename it into place,
//! fsync the directory. A reader sees the old file or the whole new one, and
//! after the call returns the new one survives a crash.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{self, SyncSender};
use std::thread::JoinHandle;

use super::fault;
use crate::error::{Error, Result};

/// Fsyncs the directory `dir`, so that renames into it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    if fault::omitted("fsync directory", dir) {
        return Ok(());
    }
    fault::check("fsync directory", dir).map_err(|e| Error::io("fsync directory", dir, e))?;
    let handle = std::fs::File::open(dir).map_err(|e| Error::io("open directory", dir, e))?;
    handle
        .sync_all()
        .map_err(|e| Error::io("fsync directory", dir, e))
}

/// Fsyncs the file `file` whose path is `path` (for the error message).
pub(crate) fn sync_file(file: &std::fs::File, path: &Path) -> Result<()> {
    if fault::omitted("fsync", path) {
        return Ok(());
    }
    fault::check("fsync", path)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io("fsync", path, e))
}

/// Renames `from` to `to` and fsyncs the destination's directory.
pub(crate) fn rename_durable(from: &Path, to: &Path) -> Result<()> {
    fault::check_rename(from, to)
        .and_then(|()| std::fs::rename(from, to))
        .map_err(|e| Error::io("rename into place", to, e))?;
    if let Some(dir) = to.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Creates the directory `dir` and its missing parents, fsyncing the parent
/// of each one created, so that a file later renamed into `dir` (and made
/// durable there) keeps its path after a crash: an fsync of `dir` makes its
/// entries durable, not `dir`'s own entry in its parent.
pub(crate) fn create_dir(dir: &Path) -> Result<()> {
    // One that exists is taken as durable. The case this misses: another
    // process made it a moment ago and has not yet fsynced its parent (a
    // window of one fsync), and a power loss comes before it does.
    if dir.is_dir() {
        return Ok(());
    }
    // A relative path's first component is made in the working directory.
    let parent = dir.parent().map(|p| {
        if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        }
    });
    if let Some(parent) = parent {
        create_dir(parent)?;
    }
    match fault::check("create directory", dir).and_then(|()| std::fs::create_dir(dir)) {
        Ok(()) => {}
        // Created meanwhile: fsync its parent all the same.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
        Err(e) => return Err(Error::io("create directory", dir, e)),
    }
    match parent {
        Some(parent) => sync_dir(parent),
        None => Ok(()),
    }
}

/// Writes `bytes` to `dest` atomically and durably, staging the file in `tmp_dir`
/// (which must be on the same filesystem as `dest`).
pub(crate) fn write_atomic(tmp_dir: &Path, dest: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = unique_tmp_path(tmp_dir, "write");
    let result = (|| {
        let mut file = fault::check("create", &tmp)
            .and_then(|()| std::fs::File::create(&tmp))
            .map_err(|e| Error::io("create", &tmp, e))?;
        fault::check("write", &tmp)
            .and_then(|()| file.write_all(bytes))
            .map_err(|e| Error::io("write", &tmp, e))?;
        sync_file(&file, &tmp)?;
        drop(file);
        rename_durable(&tmp, dest)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes a file that keeps growing (a pack) to disk in the background as it
/// grows, so that its final fsync has little left to wait for: the disk works
/// while the caller computes, instead of after.
///
/// Each time the file has grown by `every` bytes, a thread of its own (started
/// the first time) runs `fdatasync`; a request made while one runs is merged
/// into the next. This is no durability promise: the caller still fsyncs the
/// file at the end, and [`Writeback::finish`] reports a failed background
/// flush (Linux reports a failed writeback to one fsync only, which may have
/// been the background one).
pub(crate) struct Writeback {
    file: Arc<File>,
    every: u64,
    /// The length at which to flush next.
    next: u64,
    worker: Option<Worker>,
}

struct Worker {
    wake: SyncSender<()>,
    done: JoinHandle<io::Result<()>>,
}

impl Writeback {
    /// Flushes `file` each time it grows by `every` bytes (a nonzero amount).
    pub(crate) fn new(file: Arc<File>, every: u64) -> Self {
        Self {
            file,
            every,
            next: every,
            worker: None,
        }
    }

    /// Notes that the file is `len` bytes long now.
    pub(crate) fn grown(&mut self, len: u64) {
        if len < self.next {
            return;
        }
        self.next = len.saturating_add(self.every);
        if self.worker.is_none() {
            let (wake, woken) = mpsc::sync_channel::<()>(1);
            let file = Arc::clone(&self.file);
            let spawned = std::thread::Builder::new()
                .name("layerstore-writeback".to_owned())
                .spawn(move || {
                    for () in woken {
                        file.sync_data()?;
                    }
                    Ok(())
                });
            // No thread to spare: the final fsync does all the work, as it
            // would without this.
            let Ok(done) = spawned else {
                self.next = u64::MAX;
                return;
            };
            self.worker = Some(Worker { wake, done });
        }
        if let Some(worker) = &self.worker {
            // Full: a flush is queued and will cover this growth too.
            // Disconnected: a flush failed; `finish` says so.
            let _ = worker.wake.try_send(());
        }
    }

    /// Waits for the background flushes to end.
    ///
    /// # Errors
    /// [`Error::Io`] naming `path` if one of them failed.
    pub(crate) fn finish(self, path: &Path) -> Result<()> {
        let Some(Worker { wake, done }) = self.worker else {
            return Ok(());
        };
        drop(wake);
        match done.join() {
            Ok(result) => result.map_err(|e| Error::io("fsync", path, e)),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

/// A path in `tmp_dir` that no other thread or process of this machine uses:
/// `<prefix>-<pid>-<counter>-<nanos>`.
pub(crate) fn unique_tmp_path(tmp_dir: &Path, prefix: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    tmp_dir.join(format!("{prefix}-{}-{n}-{nanos}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        let dest = dir.path().join("f");
        write_atomic(&tmp, &dest, b"one").unwrap();
        write_atomic(&tmp, &dest, b"two").unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
    }

    #[test]
    fn writeback_flushes_in_the_background_as_the_file_grows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("growing");
        let file = Arc::new(File::create(&path).unwrap());
        let mut writeback = Writeback::new(Arc::clone(&file), 4096);
        writeback.grown(4095);
        assert!(writeback.worker.is_none(), "nothing to flush yet");
        for len in 1..=8u64 {
            (&*file).write_all(&[7; 4096]).unwrap();
            writeback.grown(len * 4096);
        }
        assert!(writeback.worker.is_some());
        assert_eq!(writeback.next, 9 * 4096);
        writeback.finish(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 8 * 4096);
    }

    #[test]
    fn writeback_reports_a_failed_flush_naming_the_path() {
        // A pipe cannot be synced (EINVAL): a flush that fails.
        let (_read, write) = std::io::pipe().unwrap();
        let file = Arc::new(File::from(std::os::fd::OwnedFd::from(write)));
        let mut writeback = Writeback::new(file, 1);
        writeback.grown(1);
        let err = writeback.finish(Path::new("/x/pack")).unwrap_err();
        assert!(err.to_string().contains("/x/pack"), "{err}");
    }

    #[test]
    fn create_dir_makes_the_missing_parents() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c");
        create_dir(&deep).unwrap();
        assert!(deep.is_dir());
        create_dir(&deep).unwrap();
        std::fs::write(dir.path().join("file"), b"x").unwrap();
        // A file in the way: the error names it.
        let err = create_dir(&dir.path().join("file/sub")).unwrap_err();
        let file = dir.path().join("file").display().to_string();
        assert!(err.to_string().contains(&file), "{err}");
    }

    #[test]
    fn write_atomic_names_the_path_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-dir");
        let err = write_atomic(&missing, &dir.path().join("f"), b"x").unwrap_err();
        assert!(err.to_string().contains("no-such-dir"), "{err}");
    }
}
