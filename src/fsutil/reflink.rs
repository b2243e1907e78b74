//! Copying a file's content, sharing extents with the source where the
//! filesystem can (a reflink, `FICLONE`), copying the bytes where it cannot.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use rustix::io::Errno;

use crate::error::{Error, Result};

/// How [`reflink_or_copy`] got the bytes across.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CopyMethod {
    /// `FICLONE`: the destination shares the source's extents; no byte was
    /// copied.
    Reflink,
    /// `copy_file_range`: the kernel copied the bytes (and may itself have
    /// shared extents, on filesystems that do so for this call).
    CopyFileRange,
    /// Plain reads and writes through a buffer.
    ReadWrite,
}

/// Errors of `FICLONE` or `copy_file_range` that mean "not here" (another
/// filesystem, one that cannot clone, a file that is not regular, an old
/// kernel) rather than a failure of the files themselves.
fn unsupported(e: Errno) -> bool {
    matches!(
        e,
        Errno::XDEV
            | Errno::OPNOTSUPP
            | Errno::INVAL
            | Errno::NOTTY
            | Errno::NOSYS
            | Errno::PERM
            | Errno::BADF
    )
}

/// Makes the content of `dst` (opened for writing) equal to that of `src`
/// (opened for reading): by reflink where the filesystem supports it, else by
/// `copy_file_range`, else by reading and writing. Returns which was used.
///
/// Whatever `dst` held before is replaced; file positions are left alone.
/// The paths only name the files in errors.
pub(crate) fn reflink_or_copy(
    src: &File,
    src_path: &Path,
    dst: &File,
    dst_path: &Path,
) -> Result<CopyMethod> {
    match rustix::fs::ioctl_ficlone(dst, src) {
        Ok(()) => return Ok(CopyMethod::Reflink),
        Err(e) if unsupported(e) => {}
        Err(e) => return Err(Error::io("clone", dst_path, io::Error::from(e))),
    }
    let len = src
        .metadata()
        .map_err(|e| Error::io("stat", src_path, e))?
        .len();
    dst.set_len(0)
        .map_err(|e| Error::io("truncate", dst_path, e))?;
    let method = match copy_range(src, dst, len) {
        Ok(()) => CopyMethod::CopyFileRange,
        Err(Fallback::Unsupported) => {
            copy_read_write(src, src_path, dst, dst_path)?;
            CopyMethod::ReadWrite
        }
        Err(Fallback::Failed(e)) => return Err(Error::io("copy to", dst_path, io::Error::from(e))),
    };
    Ok(method)
}

/// Why `copy_file_range` did not do the whole copy.
enum Fallback {
    /// It does not work for these files; nothing was written.
    Unsupported,
    /// It failed.
    Failed(Errno),
}

/// Copies `len` bytes from the start of `src` to the start of `dst` with
/// `copy_file_range`, and on past `len` should the source have grown.
fn copy_range(src: &File, dst: &File, len: u64) -> Result<(), Fallback> {
    let mut off_in = 0u64;
    let mut off_out = 0u64;
    loop {
        let want = usize::try_from(len.saturating_sub(off_in))
            .unwrap_or(usize::MAX)
            .clamp(1 << 20, 1 << 30);
        match rustix::fs::copy_file_range(src, Some(&mut off_in), dst, Some(&mut off_out), want) {
            Ok(0) => return Ok(()),
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) if off_out == 0 && unsupported(e) => return Err(Fallback::Unsupported),
            Err(e) => return Err(Fallback::Failed(e)),
        }
    }
}

/// Copies all of `src` to the start of `dst` through a buffer.
fn copy_read_write(src: &File, src_path: &Path, dst: &File, dst_path: &Path) -> Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut off = 0u64;
    loop {
        let n = match src.read_at(&mut buf, off) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("read", src_path, e)),
        };
        let chunk = buf.get(..n).unwrap_or(&buf);
        dst.write_all_at(chunk, off)
            .map_err(|e| Error::io("write", dst_path, e))?;
        off += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    fn copy_and_check(len: usize) -> CopyMethod {
        let dir = tempfile::tempdir().unwrap();
        let (src_path, dst_path) = (dir.path().join("src"), dir.path().join("dst"));
        let data = pattern(len);
        std::fs::write(&src_path, &data).unwrap();
        // A longer old content must not survive.
        std::fs::write(&dst_path, vec![0xAAu8; len + 4096]).unwrap();
        let src = File::open(&src_path).unwrap();
        let dst = std::fs::OpenOptions::new()
            .write(true)
            .open(&dst_path)
            .unwrap();
        let method = reflink_or_copy(&src, &src_path, &dst, &dst_path).unwrap();
        drop(dst);
        assert_eq!(std::fs::read(&dst_path).unwrap(), data, "via {method:?}");
        method
    }

    #[test]
    fn copies_identical_bytes_whatever_the_method() {
        for len in [0, 1, 4095, 3 * 1024 * 1024 + 17] {
            let method = copy_and_check(len);
            eprintln!("{len} bytes copied by {method:?}");
        }
    }

    #[test]
    fn read_write_fallback_copies_identical_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (src_path, dst_path) = (dir.path().join("src"), dir.path().join("dst"));
        let data = pattern(600 * 1024 + 3);
        std::fs::write(&src_path, &data).unwrap();
        let src = File::open(&src_path).unwrap();
        let dst = File::create(&dst_path).unwrap();
        copy_read_write(&src, &src_path, &dst, &dst_path).unwrap();
        assert_eq!(std::fs::read(&dst_path).unwrap(), data);
    }

    #[test]
    fn a_destination_opened_read_only_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let (src_path, dst_path) = (dir.path().join("src"), dir.path().join("dst"));
        std::fs::write(&src_path, b"abc").unwrap();
        std::fs::write(&dst_path, b"").unwrap();
        let src = File::open(&src_path).unwrap();
        let dst = File::open(&dst_path).unwrap();
        let err = reflink_or_copy(&src, &src_path, &dst, &dst_path).unwrap_err();
        assert!(err.to_string().contains("dst"), "{err}");
    }
}
