//! Reading beneath a [`ConfinedDir`]: `lstat`, links, files, directory listings and
//! extended attributes, never through a symbolic link.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{AtFlags, FileType, OFlags, Stat};

use super::{ConfinedDir, proc_path, validate};
use crate::error::{Error, Result};
use crate::fsutil::dir;
use crate::fsutil::xattr;

/// Reading
impl ConfinedDir {
    /// The `lstat` of `path` (the empty path: the root itself).
    pub(crate) fn lstat(&self, path: &[u8]) -> Result<Stat> {
        let (dir, name) = self.open_parent_or_root(path)?;
        rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| Error::io("stat", self.full(path), e.into()))
    }

    /// The target of the symbolic link `path`, as bytes.
    pub(crate) fn read_link(&self, path: &[u8]) -> Result<Vec<u8>> {
        let (dir, name) = self.open_parent(path)?;
        rustix::fs::readlinkat(&dir, name, Vec::new())
            .map(std::ffi::CString::into_bytes)
            .map_err(|e| Error::io("read symbolic link", self.full(path), e.into()))
    }

    /// Opens the regular file `path` for reading. Anything else (a link, a
    /// fifo, a device, a directory) is refused, and never blocks the open.
    pub(crate) fn open_read(&self, path: &[u8]) -> Result<File> {
        validate(path)?;
        // O_NONBLOCK so that a fifo in the file's place cannot hang the open;
        // it has no effect on the regular file that is accepted.
        let fd = self.open_beneath(
            path,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY,
            "open",
        )?;
        let st =
            rustix::fs::fstat(&fd).map_err(|e| Error::io("stat", self.full(path), e.into()))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            let source = io::Error::new(io::ErrorKind::InvalidInput, "not a regular file");
            return Err(Error::io("open for reading", self.full(path), source));
        }
        Ok(File::from(fd))
    }

    /// Opens the directory `path` (the empty path: the root) for reading its
    /// children by name; no symbolic link is followed on the way or at the end.
    pub(crate) fn open_dir(&self, path: &[u8]) -> Result<dir::Dir> {
        if !path.is_empty() {
            validate(path)?;
        }
        let fd = self.open_beneath(path, OFlags::RDONLY | OFlags::DIRECTORY, "open directory")?;
        Ok(dir::Dir::new(fd, self.full(path)))
    }

    /// The names in the directory `path` (the empty path: the root), sorted,
    /// without `.` and `..`.
    pub(crate) fn read_dir(&self, path: &[u8]) -> Result<Vec<Vec<u8>>> {
        if !path.is_empty() {
            validate(path)?;
        }
        let dir = self.open_beneath(path, OFlags::RDONLY | OFlags::DIRECTORY, "open directory")?;
        let mut names = self.list(&dir, path)?;
        names.sort_unstable();
        Ok(names)
    }

    /// The names in the open directory `dir` (at `path`), unsorted.
    pub(super) fn list(&self, dir: &OwnedFd, path: &[u8]) -> Result<Vec<Vec<u8>>> {
        dir::names(dir, &self.full(path))
    }

    /// The extended attributes of `path` (the empty path: the root) as
    /// `(name, value)`, sorted by name; none where the filesystem has none.
    pub(crate) fn xattrs(&self, path: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let (dir, last) = self.open_parent_or_root(path)?;
        let proc = proc_path(dir.as_fd(), Some(last));
        xattr::list(xattr::Target::Path(&proc), &self.full(path))
    }
}
