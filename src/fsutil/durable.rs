//! Durable writes: write to a temporary file, fsync it, rename it into place,
//! fsync the directory. A reader sees the old file or the whole new one, and
//! after the call returns the new one survives a crash.

use std::io::Write;
use std::path::Path;

use super::fault;
use crate::error::{Error, Result};

/// Fsyncs the directory `dir`, so that renames into it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    fault::check("fsync directory", dir).map_err(|e| Error::io("fsync directory", dir, e))?;
    let handle = std::fs::File::open(dir).map_err(|e| Error::io("open directory", dir, e))?;
    handle
        .sync_all()
        .map_err(|e| Error::io("fsync directory", dir, e))
}

/// Fsyncs the file `file` whose path is `path` (for the error message).
pub(crate) fn sync_file(file: &std::fs::File, path: &Path) -> Result<()> {
    fault::check("fsync", path)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io("fsync", path, e))
}

/// Renames `from` to `to` and fsyncs the destination's directory.
pub(crate) fn rename_durable(from: &Path, to: &Path) -> Result<()> {
    fault::check("rename into place", to)
        .and_then(|()| std::fs::rename(from, to))
        .map_err(|e| Error::io("rename into place", to, e))?;
    if let Some(dir) = to.parent() {
        sync_dir(dir)?;
    }
    Ok(())
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
    fn write_atomic_names_the_path_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-dir");
        let err = write_atomic(&missing, &dir.path().join("f"), b"x").unwrap_err();
        assert!(err.to_string().contains("no-such-dir"), "{err}");
    }
}
