//! An open directory whose children are looked at by name, never following a
//! symbolic link: what a walk stands on.
//!
//! A [`Dir`] comes from [`ConfinedDir::open_dir`](crate::fsutil::confine::ConfinedDir::open_dir),
//! so it lies beneath a root. Its methods take one *name* (a single component
//! as `readdir` returns it, never a path) and act on it relative to the open
//! descriptor with the calls that do not follow a link at the end
//! (`AT_SYMLINK_NOFOLLOW`, `O_NOFOLLOW`, `readlinkat`, the `l*xattr` calls
//! through `/proc/self/fd`): nothing a walk does can leave the directory, and
//! the walk costs one path resolution per directory, not one per entry.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Dir as DirReader, FileType, Mode, OFlags, Stat};

use crate::error::{Error, Result};
use crate::fsutil::{confine, xattr};

/// An open directory (a real descriptor, not `O_PATH`).
#[derive(Debug)]
pub(crate) struct Dir {
    fd: OwnedFd,
    /// The directory's full path, to name files in errors.
    path: PathBuf,
}

impl Dir {
    /// Wraps `fd`, an open directory whose full path is `path`.
    pub(crate) fn new(fd: OwnedFd, path: PathBuf) -> Self {
        Self { fd, path }
    }

    /// The directory's full path, as errors name it.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The full path of the child `name`, for error messages.
    pub(crate) fn child_path(&self, name: &[u8]) -> PathBuf {
        self.path.join(std::ffi::OsStr::from_bytes(name))
    }

    /// Checks that `name` is one normal component.
    fn check_name(name: &[u8]) -> Result<()> {
        let reason = match name {
            b"" => Some("empty name"),
            b"." | b".." => Some("'.' or '..' is not a child's name"),
            _ if name.contains(&b'/') => Some("a name may not contain '/'"),
            _ if name.contains(&0) => Some("contains a NUL byte"),
            _ => None,
        };
        match reason {
            None => Ok(()),
            Some(reason) => Err(Error::InvalidPath {
                path: String::from_utf8_lossy(name).into_owned(),
                reason,
            }),
        }
    }

    /// The `stat` of the directory itself.
    pub(crate) fn stat(&self) -> Result<Stat> {
        rustix::fs::fstat(&self.fd).map_err(|e| Error::io("stat", &self.path, e.into()))
    }

    /// The extended attributes of the directory itself, sorted by name.
    pub(crate) fn xattrs(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        xattr::list(xattr::Target::Fd(self.fd.as_fd()), &self.path)
    }

    /// The names of the children, unsorted, without `.` and `..`.
    pub(crate) fn names(&self) -> Result<Vec<Vec<u8>>> {
        names(&self.fd, &self.path)
    }

    /// The `lstat` of the child `name`: a link is described, not followed.
    pub(crate) fn lstat(&self, name: &[u8]) -> Result<Stat> {
        Self::check_name(name)?;
        rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| Error::io("stat", self.child_path(name), e.into()))
    }

    /// Opens the child `name` for reading if it is a regular file. A link in
    /// its place fails (`ELOOP`), anything else that is not a regular file
    /// fails with `InvalidInput`; a fifo cannot block the open.
    pub(crate) fn open_file(&self, name: &[u8]) -> Result<File> {
        Self::check_name(name)?;
        let path = || self.child_path(name);
        // O_NONBLOCK so that a fifo swapped in cannot hang the open; it has no
        // effect on the regular file that is accepted.
        let flags =
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&self.fd, name, flags, Mode::empty())
            .map_err(|e| Error::io("open", path(), e.into()))?;
        let st = rustix::fs::fstat(&fd).map_err(|e| Error::io("stat", path(), e.into()))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            let source = io::Error::new(io::ErrorKind::InvalidInput, "not a regular file");
            return Err(Error::io("open for reading", path(), source));
        }
        Ok(File::from(fd))
    }

    /// The target of the symbolic link `name`, as bytes.
    pub(crate) fn read_link(&self, name: &[u8]) -> Result<Vec<u8>> {
        Self::check_name(name)?;
        rustix::fs::readlinkat(&self.fd, name, Vec::new())
            .map(std::ffi::CString::into_bytes)
            .map_err(|e| Error::io("read symbolic link", self.child_path(name), e.into()))
    }

    /// The extended attributes of the child `name` (a link's own, not its
    /// target's), sorted by name.
    pub(crate) fn child_xattrs(&self, name: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        Self::check_name(name)?;
        let proc = confine::proc_path(self.fd.as_fd(), Some(name));
        xattr::list(xattr::Target::Path(&proc), &self.child_path(name))
    }
}

/// The names in the open directory `fd` (at `path`, for errors), unsorted,
/// without `.` and `..`.
pub(crate) fn names(fd: impl AsFd, path: &Path) -> Result<Vec<Vec<u8>>> {
    let err = |e: rustix::io::Errno| Error::io("read directory", path, e.into());
    let mut reader = DirReader::read_from(fd).map_err(err)?;
    let mut names = Vec::new();
    while let Some(entry) = reader.read() {
        let entry = entry.map_err(err)?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::confine::ConfinedDir;

    #[test]
    fn children_are_examined_without_following_links() {
        let tmp = tempfile::tempdir().unwrap();
        let root_path = tmp.path().join("root");
        std::fs::create_dir_all(root_path.join("sub")).unwrap();
        std::fs::write(root_path.join("sub/f"), b"hello").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root_path.join("sub/l")).unwrap();
        let root = ConfinedDir::open(&root_path).unwrap();
        let dir = root.open_dir(b"sub").unwrap();
        let mut names = dir.names().unwrap();
        names.sort();
        assert_eq!(names, [b"f".to_vec(), b"l".to_vec()]);
        assert_eq!(dir.lstat(b"f").unwrap().st_size, 5);
        let link = dir.lstat(b"l").unwrap();
        assert_eq!(FileType::from_raw_mode(link.st_mode), FileType::Symlink);
        assert_eq!(dir.read_link(b"l").unwrap(), b"/etc/passwd");
        let err = dir.open_file(b"l").unwrap_err();
        assert!(matches!(&err, Error::Io { op: "open", .. }), "{err}");
        assert!(dir.xattrs().is_ok());
        assert!(dir.child_xattrs(b"l").is_ok());
        for bad in [&b"../sub"[..], b"a/b", b"", b".."] {
            assert!(matches!(dir.lstat(bad), Err(Error::InvalidPath { .. })));
        }
        // A symbolic link to a directory is not opened as one.
        std::os::unix::fs::symlink("/etc", root_path.join("etc")).unwrap();
        assert!(root.open_dir(b"etc").is_err());
    }
}
