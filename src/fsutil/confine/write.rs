//! Writing beneath a [`ConfinedDir`]: creating, removing, and setting metadata and
//! extended attributes, never through a symbolic link.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;

use super::{ConfinedDir, lossy, proc_path, split_last, validate};
use crate::error::{Error, Result};
use crate::fsutil::xattr;

/// The kinds of special file [`ConfinedDir::mknod`] makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SpecialFile {
    /// A named pipe; needs no privilege.
    Fifo,
    /// A character device; needs `CAP_MKNOD`.
    CharDevice,
    /// A block device; needs `CAP_MKNOD`.
    BlockDevice,
}

/// The metadata [`ConfinedDir::set_metadata`] sets, in the order that keeps it:
/// owner first (a `chown` clears setuid and setgid), then mode, then times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileAttrs {
    /// Permission bits with setuid, setgid and sticky (`0o7777`; the file-type
    /// bits are ignored). Not applied to symbolic links, which have no mode of
    /// their own on Linux.
    pub(crate) mode: u32,
    /// The owner to set, or `None` to leave it.
    pub(crate) uid: Option<u32>,
    /// The group to set, or `None` to leave it.
    pub(crate) gid: Option<u32>,
    /// Modification time, seconds since the epoch (access time is set to the same).
    pub(crate) mtime_sec: i64,
    /// Nanoseconds of the modification time, below 1 000 000 000.
    pub(crate) mtime_nsec: u32,
}

/// Writing
impl ConfinedDir {
    /// Creates the directory `path` and any missing parents (each with `mode`,
    /// filtered by the umask); existing directories are fine, symbolic links
    /// on the way are refused.
    pub(crate) fn create_dir_all(&self, path: &[u8], mode: u32) -> Result<()> {
        validate(path)?;
        self.open_dir_beneath(path, path, Some(Mode::from_raw_mode(mode & 0o7777)))
            .map(drop)
    }

    /// Creates the regular file `path`, which must not exist yet (anything in
    /// its place, a symbolic link included, is an error), open for writing.
    /// `mode` is filtered by the umask; [`ConfinedDir::set_metadata`] sets it exactly.
    pub(crate) fn create_file(&self, path: &[u8], mode: u32) -> Result<File> {
        let (dir, name) = self.open_parent(path)?;
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        self.fault("create", path)
            .and_then(|()| {
                rustix::fs::openat(&dir, name, flags, Mode::from_raw_mode(mode & 0o7777))
            })
            .map(File::from)
            .map_err(|e| Error::io("create", self.full(path), e.into()))
    }

    /// Like [`ConfinedDir::create_file`], reusing the parent directory descriptor in
    /// `parent` when it holds the same directory (a checkout writes runs of
    /// files of one directory), and leaving this file's parent there.
    pub(crate) fn create_file_reusing(
        &self,
        path: &[u8],
        mode: u32,
        parent: &mut Option<(Vec<u8>, OwnedFd)>,
    ) -> Result<File> {
        validate(path)?;
        let (dir_path, name) = split_last(path);
        let reuse = parent
            .as_ref()
            .is_some_and(|(p, _)| p.as_slice() == dir_path);
        if !reuse {
            let fd = self.open_dir_beneath(dir_path, path, None)?;
            *parent = Some((dir_path.to_vec(), fd));
        }
        let Some((_, dir)) = parent.as_ref() else {
            unreachable!("the parent was just opened")
        };
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        self.fault("create", path)
            .and_then(|()| rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(mode & 0o7777)))
            .map(File::from)
            .map_err(|e| Error::io("create", self.full(path), e.into()))
    }

    /// Creates the directory `path` (its parent must exist).
    pub(crate) fn mkdir(&self, path: &[u8], mode: u32) -> Result<()> {
        let (dir, name) = self.open_parent(path)?;
        self.fault("create directory", path)
            .and_then(|()| rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(mode & 0o7777)))
            .map_err(|e| Error::io("create directory", self.full(path), e.into()))
    }

    /// Creates the symbolic link `path` pointing at `target`. The target is
    /// data, stored as given (absolute or with `..`); it is never followed here.
    pub(crate) fn symlink(&self, path: &[u8], target: &[u8]) -> Result<()> {
        if target.is_empty() || target.contains(&0) {
            return Err(Error::InvalidPath {
                path: lossy(target),
                reason: "symbolic-link target is empty or contains a NUL byte",
            });
        }
        let (dir, name) = self.open_parent(path)?;
        self.fault("create symbolic link", path)
            .and_then(|()| rustix::fs::symlinkat(target, &dir, name))
            .map_err(|e| Error::io("create symbolic link", self.full(path), e.into()))
    }

    /// Creates `path` as a new name for the existing `target`, both beneath
    /// the root; a symbolic link at `target` is linked itself, not followed.
    pub(crate) fn hardlink(&self, path: &[u8], target: &[u8]) -> Result<()> {
        let (target_dir, target_name) = self.open_parent(target)?;
        let (dir, name) = self.open_parent(path)?;
        let linked = self.fault("create hard link", path).and_then(|()| {
            rustix::fs::linkat(&target_dir, target_name, &dir, name, AtFlags::empty())
        });
        linked.map_err(|e| {
            let source = io::Error::from(e);
            let source = io::Error::new(
                source.kind(),
                format!("to '{}': {source}", self.full(target).display()),
            );
            Error::io("create hard link", self.full(path), source)
        })
    }

    /// Creates the special file `path`: a fifo, or a device with number `rdev`
    /// (see [`crate::fsutil::device`]; ignored for fifos).
    pub(crate) fn mknod(&self, path: &[u8], kind: SpecialFile, mode: u32, rdev: u64) -> Result<()> {
        let (dir, name) = self.open_parent(path)?;
        let (file_type, rdev) = match kind {
            SpecialFile::Fifo => (FileType::Fifo, 0),
            SpecialFile::CharDevice => (FileType::CharacterDevice, rdev),
            SpecialFile::BlockDevice => (FileType::BlockDevice, rdev),
        };
        self.fault("create special file", path)
            .and_then(|()| {
                rustix::fs::mknodat(
                    &dir,
                    name,
                    file_type,
                    Mode::from_raw_mode(mode & 0o7777),
                    rdev,
                )
            })
            .map_err(|e| Error::io("create special file", self.full(path), e.into()))
    }

    /// Removes `path`: a file, link or special file, or a directory with
    /// everything in it (symbolic links inside are removed, never followed).
    /// Returns whether there was anything to remove.
    pub(crate) fn remove(&self, path: &[u8]) -> Result<bool> {
        let (dir, name) = self.open_parent(path)?;
        match rustix::fs::unlinkat(&dir, name, AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(Errno::ISDIR) => self.remove_tree(&dir, name, path).map(|()| true),
            Err(e) => Err(Error::io("remove", self.full(path), e.into())),
        }
    }

    /// Removes the directory `name` in `parent` (at `path`) and its contents,
    /// depth first, with an explicit stack: a hostile tree can be deeper than
    /// any call stack.
    fn remove_tree(&self, parent: &OwnedFd, name: &[u8], path: &[u8]) -> Result<()> {
        struct Frame {
            dir: OwnedFd,
            name: Vec<u8>,
            path: Vec<u8>,
            pending: Vec<Vec<u8>>,
        }
        let open = |parent: BorrowedFd<'_>, name: &[u8], path: Vec<u8>| -> Result<Frame> {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let dir = rustix::fs::openat(parent, name, flags, Mode::empty())
                .map_err(|e| Error::io("open directory", self.full(&path), e.into()))?;
            let pending = self.list(&dir, &path)?;
            Ok(Frame {
                dir,
                name: name.to_vec(),
                path,
                pending,
            })
        };
        let mut stack = vec![open(parent.as_fd(), name, path.to_vec())?];
        while let Some(top) = stack.last_mut() {
            if let Some(child) = top.pending.pop() {
                let child_path = [top.path.as_slice(), b"/", &child].concat();
                match rustix::fs::unlinkat(&top.dir, child.as_slice(), AtFlags::empty()) {
                    Ok(()) | Err(Errno::NOENT) => {}
                    Err(Errno::ISDIR) => {
                        let frame = open(top.dir.as_fd(), &child, child_path)?;
                        stack.push(frame);
                    }
                    Err(e) => return Err(Error::io("remove", self.full(&child_path), e.into())),
                }
            } else if let Some(done) = stack.pop() {
                let parent = stack.last().map_or(parent.as_fd(), |f| f.dir.as_fd());
                rustix::fs::unlinkat(parent, done.name.as_slice(), AtFlags::REMOVEDIR)
                    .map_err(|e| Error::io("remove directory", self.full(&done.path), e.into()))?;
            }
        }
        Ok(())
    }

    /// Best effort, for cleaning up after a failure: if `path` (the empty
    /// path: the root) is a directory, adds read, write and search permission
    /// for its owner, so that what is in it can be removed. Errors are
    /// ignored; a symbolic link is left alone.
    pub(crate) fn make_traversable(&self, path: &[u8]) {
        let Ok((dir, name)) = self.open_parent_or_root(path) else {
            return;
        };
        let Ok(fd) = rustix::fs::openat(
            &dir,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) else {
            return;
        };
        let Ok(st) = rustix::fs::fstat(&fd) else {
            return;
        };
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory && st.st_mode & 0o700 != 0o700
        {
            let mode = Mode::from_raw_mode((st.st_mode | 0o700) & 0o7777);
            let _ = rustix::fs::chmodat(CWD, proc_path(fd.as_fd(), None), mode, AtFlags::empty());
        }
    }

    /// Sets owner, mode and times of `path` (the empty path: the root itself)
    /// without following a symbolic link there; see [`FileAttrs`].
    pub(crate) fn set_metadata(&self, path: &[u8], meta: &FileAttrs) -> Result<()> {
        let (dir, name) = self.open_parent_or_root(path)?;
        if meta.uid.is_some() || meta.gid.is_some() {
            self.fault("change owner of", path)
                .and_then(|()| {
                    rustix::fs::chownat(
                        &dir,
                        name,
                        meta.uid.map(rustix::fs::Uid::from_raw),
                        meta.gid.map(rustix::fs::Gid::from_raw),
                        AtFlags::SYMLINK_NOFOLLOW,
                    )
                })
                .map_err(|e| Error::io("change owner of", self.full(path), e.into()))?;
        }
        // Linux has no lchmod: pin the inode with an O_PATH descriptor, skip
        // it if it is a link, and change the mode through /proc (a path
        // lookup by name could meet a link swapped in meanwhile).
        let fd = rustix::fs::openat(
            &dir,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io("open", self.full(path), e.into()))?;
        let st =
            rustix::fs::fstat(&fd).map_err(|e| Error::io("stat", self.full(path), e.into()))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::Symlink {
            self.fault("change mode of", path)
                .and_then(|()| {
                    rustix::fs::chmodat(
                        CWD,
                        proc_path(fd.as_fd(), None),
                        Mode::from_raw_mode(meta.mode & 0o7777),
                        AtFlags::empty(),
                    )
                })
                .map_err(|e| Error::io("change mode of", self.full(path), e.into()))?;
        }
        let times = mtime_as_both(meta);
        self.fault("set times of", path)
            .and_then(|()| rustix::fs::utimensat(&dir, name, &times, AtFlags::SYMLINK_NOFOLLOW))
            .map_err(|e| Error::io("set times of", self.full(path), e.into()))
    }

    /// Sets owner, mode and times of the open file `file` (created at `path`
    /// by [`ConfinedDir::create_file`]) through its descriptor: no path is looked up
    /// again, so nothing swapped in meanwhile can be met. Owner first, since
    /// `chown` clears setuid and setgid.
    pub(crate) fn set_file_metadata(
        &self,
        file: &File,
        path: &[u8],
        meta: &FileAttrs,
    ) -> Result<()> {
        if meta.uid.is_some() || meta.gid.is_some() {
            self.fault("change owner of", path)
                .and_then(|()| {
                    rustix::fs::fchown(
                        file,
                        meta.uid.map(rustix::fs::Uid::from_raw),
                        meta.gid.map(rustix::fs::Gid::from_raw),
                    )
                })
                .map_err(|e| Error::io("change owner of", self.full(path), e.into()))?;
        }
        self.fault("change mode of", path)
            .and_then(|()| rustix::fs::fchmod(file, Mode::from_raw_mode(meta.mode & 0o7777)))
            .map_err(|e| Error::io("change mode of", self.full(path), e.into()))?;
        let times = mtime_as_both(meta);
        self.fault("set times of", path)
            .and_then(|()| rustix::fs::futimens(file, &times))
            .map_err(|e| Error::io("set times of", self.full(path), e.into()))
    }

    /// Sets the extended attribute `name` of the open file `file` (at `path`).
    pub(crate) fn set_file_xattr(
        &self,
        file: &File,
        path: &[u8],
        name: &[u8],
        value: &[u8],
    ) -> Result<()> {
        xattr::set(
            xattr::Target::Fd(file.as_fd()),
            &self.full(path),
            name,
            value,
        )
    }

    /// Sets the extended attribute `name` of `path` (the empty path: the
    /// root), not following a symbolic link there.
    pub(crate) fn set_xattr(&self, path: &[u8], name: &[u8], value: &[u8]) -> Result<()> {
        let (dir, last) = self.open_parent_or_root(path)?;
        let proc = proc_path(dir.as_fd(), Some(last));
        xattr::set(xattr::Target::Path(&proc), &self.full(path), name, value)
    }

    /// Removes the extended attribute `name` of `path` (the empty path: the
    /// root); it is not an error if there is none.
    pub(crate) fn remove_xattr(&self, path: &[u8], name: &[u8]) -> Result<()> {
        let (dir, last) = self.open_parent_or_root(path)?;
        let proc = proc_path(dir.as_fd(), Some(last));
        xattr::remove(xattr::Target::Path(&proc), &self.full(path), name)
    }
}

/// `meta`'s mtime as both the access and the modification time, as every
/// metadata setter writes them.
fn mtime_as_both(meta: &FileAttrs) -> Timestamps {
    let time = Timespec {
        tv_sec: meta.mtime_sec,
        tv_nsec: meta.mtime_nsec.into(),
    };
    Timestamps {
        last_access: time,
        last_modification: time,
    }
}
