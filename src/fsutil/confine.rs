//! Confined path resolution: every path is resolved beneath a root directory,
//! one component at a time, and no symbolic link is ever followed on the way.
//!
//! This is what checkout and the extraction of (possibly hostile) tars stand
//! on: whatever a layer or an archive names, a write lands beneath the root.
//!
//! Paths are bytes (Linux file names need not be UTF-8), relative to the root,
//! with components separated by `/` and no empty, `.` or `..` component.
//! Intermediate components must be directories; one that is a symbolic link is
//! refused ([`Error::SymlinkInPath`]) even if it points inside the root. The
//! final component is acted on with the `*at` calls that do not follow it
//! (`O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`, `unlinkat`, `mkdirat`, …).
//!
//! Directories are opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`
//! where the kernel has it (Linux 5.6+), else by walking the components with
//! `openat(O_NOFOLLOW | O_DIRECTORY)`; the walk also gives the precise error
//! when `openat2` refuses a path.
//!
//! Changing the mode of a final component and its extended attributes go
//! through `/proc/self/fd/<dir>/<name>` (Linux has no `lchmod`, and no
//! `*xattrat` calls before 6.13), so those two need `/proc` mounted.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{
    AtFlags, CWD, Dir, FileType, Mode, OFlags, ResolveFlags, Stat, Timespec, Timestamps,
};
use rustix::io::Errno;

use crate::error::{Error, Result};
use crate::fsutil::dir;
use crate::fsutil::xattr;

/// Cleared the first time `openat2` turns out to be missing (old kernel) or
/// forbidden (a seccomp filter); the component walk is used from then on.
static OPENAT2_AVAILABLE: AtomicBool = AtomicBool::new(true);

/// `path` for error messages, lossily when it is not UTF-8.
fn lossy(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

/// Checks that `path` is a relative `/`-separated path of normal components:
/// not empty, not absolute, no empty (`a//b`, `a/`), `.` or `..` component, no
/// NUL byte.
pub(crate) fn validate(path: &[u8]) -> Result<()> {
    let reason = if path.is_empty() {
        Some("empty path")
    } else if path.first() == Some(&b'/') {
        Some("absolute path")
    } else if path.contains(&0) {
        Some("contains a NUL byte")
    } else {
        path.split(|b| *b == b'/').find_map(|c| match c {
            b"" => Some("empty component ('//' or a trailing '/')"),
            b"." => Some("'.' component"),
            b".." => Some("'..' component"),
            _ => None,
        })
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(Error::InvalidPath {
            path: lossy(path),
            reason,
        }),
    }
}

/// Splits a validated path into its parent (empty for a top-level name) and
/// its final component.
fn split_last(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|b| *b == b'/') {
        Some(i) => (
            path.get(..i).unwrap_or_default(),
            path.get(i + 1..).unwrap_or_default(),
        ),
        None => (&[], path),
    }
}

/// The kinds of special file [`Root::mknod`] makes.
#[cfg_attr(
    not(test),
    allow(dead_code, reason = "used by tree::checkout, landing next")
)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NodeKind {
    /// A named pipe; needs no privilege.
    Fifo,
    /// A character device; needs `CAP_MKNOD`.
    CharDevice,
    /// A block device; needs `CAP_MKNOD`.
    BlockDevice,
}

/// The metadata [`Root::set_metadata`] sets, in the order that keeps it:
/// owner first (a `chown` clears setuid and setgid), then mode, then times.
#[cfg_attr(
    not(test),
    allow(dead_code, reason = "used by tree::checkout, landing next")
)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Metadata {
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

/// A directory beneath which all paths are resolved.
///
/// Holds an `O_PATH` descriptor of the directory, so that the root itself
/// cannot be swapped for something else while it is in use; its path is kept
/// only to name files in errors.
#[derive(Debug)]
pub(crate) struct Root {
    fd: OwnedFd,
    path: PathBuf,
    /// Whether to try `openat2` before walking components (off in tests that
    /// exercise the walk).
    use_openat2: bool,
}

/// Opening
impl Root {
    /// Opens the directory `path` as a root. `path` itself is trusted: a
    /// symbolic link in it is followed.
    pub(crate) fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let fd = rustix::fs::open(
            &path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io("open directory", &path, e.into()))?;
        Ok(Root {
            fd,
            path,
            use_openat2: true,
        })
    }

    /// The root's path, as given to [`Root::open`].
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The root's `O_PATH` descriptor.
    #[cfg_attr(
        not(test),
        allow(dead_code, reason = "used by tree::checkout, landing next")
    )]
    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The full path of `rel` for error messages.
    fn full(&self, rel: &[u8]) -> PathBuf {
        if rel.is_empty() {
            self.path.clone()
        } else {
            self.path.join(OsStr::from_bytes(rel))
        }
    }

    /// The fault-injection hook (feature `fault-injection`, see
    /// [`crate::fsutil::fault`]) for the write `op` at `rel`: every call that
    /// changes something beneath the root asks it first.
    #[inline]
    #[cfg_attr(
        not(feature = "fault-injection"),
        allow(
            clippy::unused_self,
            clippy::unnecessary_wraps,
            reason = "the same signature as with the feature, where it can fail"
        )
    )]
    fn fault(&self, op: &'static str, rel: &[u8]) -> std::result::Result<(), Errno> {
        #[cfg(feature = "fault-injection")]
        {
            crate::fsutil::fault::check(op, &self.full(rel))
                .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))
        }
        #[cfg(not(feature = "fault-injection"))]
        {
            let _ = (op, rel);
            Ok(())
        }
    }

    fn dup_root(&self) -> Result<OwnedFd> {
        rustix::io::fcntl_dupfd_cloexec(&self.fd, 0)
            .map_err(|e| Error::io("duplicate descriptor of", &self.path, e.into()))
    }

    /// Opens the directory `path` (validated; empty for the root) beneath the
    /// root, `O_PATH`, refusing symbolic links. `whole` is the path being
    /// resolved, for errors. With `create`, missing directories are made with
    /// that mode (filtered by the umask).
    fn open_dir_beneath(&self, path: &[u8], whole: &[u8], create: Option<Mode>) -> Result<OwnedFd> {
        if path.is_empty() {
            return self.dup_root();
        }
        if self.use_openat2 && OPENAT2_AVAILABLE.load(Ordering::Relaxed) {
            let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let resolve =
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
            match rustix::fs::openat2(&self.fd, path, flags, Mode::empty(), resolve) {
                Ok(fd) => return Ok(fd),
                Err(Errno::NOSYS | Errno::PERM) => {
                    OPENAT2_AVAILABLE.store(false, Ordering::Relaxed);
                }
                // Refused, missing or raced (EAGAIN): the walk below decides,
                // and names the component at fault.
                Err(_) => {}
            }
        }
        self.walk(path, whole, create)
    }

    /// The component-by-component walk behind [`Root::open_dir_beneath`].
    fn walk(&self, path: &[u8], whole: &[u8], create: Option<Mode>) -> Result<OwnedFd> {
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut dir = self.dup_root()?;
        let mut end = 0;
        for component in path.split(|b| *b == b'/') {
            end += component.len();
            let prefix = path.get(..end).unwrap_or(path);
            end += 1;
            let mut opened = rustix::fs::openat(&dir, component, flags, Mode::empty());
            if let (Err(Errno::NOENT), Some(mode)) = (&opened, create) {
                match self
                    .fault("create directory", prefix)
                    .and_then(|()| rustix::fs::mkdirat(&dir, component, mode))
                {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => {
                        return Err(Error::io("create directory", self.full(prefix), e.into()));
                    }
                }
                opened = rustix::fs::openat(&dir, component, flags, Mode::empty());
            }
            dir = match opened {
                Ok(fd) => fd,
                Err(e @ (Errno::NOTDIR | Errno::LOOP)) => {
                    let is_link = rustix::fs::statat(&dir, component, AtFlags::SYMLINK_NOFOLLOW)
                        .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink);
                    return Err(if is_link {
                        Error::SymlinkInPath {
                            root: self.path.clone(),
                            path: lossy(whole),
                            component: lossy(prefix),
                        }
                    } else {
                        Error::io("open directory", self.full(prefix), e.into())
                    });
                }
                Err(e) => return Err(Error::io("open directory", self.full(prefix), e.into())),
            };
        }
        Ok(dir)
    }

    /// Opens the directory that holds `path` (beneath the root, no symbolic
    /// link followed) and returns it with the final component of `path`.
    pub(crate) fn open_parent<'p>(&self, path: &'p [u8]) -> Result<(OwnedFd, &'p [u8])> {
        validate(path)?;
        let (parent, name) = split_last(path);
        Ok((self.open_dir_beneath(parent, path, None)?, name))
    }

    /// Like [`Root::open_parent`], but the empty path stands for the root
    /// itself, returned as the root and `.`.
    fn open_parent_or_root<'p>(&self, path: &'p [u8]) -> Result<(OwnedFd, &'p [u8])> {
        if path.is_empty() {
            Ok((self.dup_root()?, b"."))
        } else {
            self.open_parent(path)
        }
    }

    /// Opens `path` (validated, or empty for the root) with `flags` plus
    /// `O_NOFOLLOW | O_CLOEXEC`.
    fn open_beneath(&self, path: &[u8], flags: OFlags, op: &'static str) -> Result<OwnedFd> {
        let (dir, name) = self.open_parent_or_root(path)?;
        rustix::fs::openat(
            &dir,
            name,
            flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io(op, self.full(path), e.into()))
    }
}

/// Writing
#[cfg_attr(
    not(test),
    allow(
        dead_code,
        reason = "the writing side is used by tree::checkout, landing next"
    )
)]
impl Root {
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
    /// `mode` is filtered by the umask; [`Root::set_metadata`] sets it exactly.
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

    /// Like [`Root::create_file`], reusing the parent directory descriptor in
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
    pub(crate) fn mknod(&self, path: &[u8], kind: NodeKind, mode: u32, rdev: u64) -> Result<()> {
        let (dir, name) = self.open_parent(path)?;
        let (file_type, rdev) = match kind {
            NodeKind::Fifo => (FileType::Fifo, 0),
            NodeKind::CharDevice => (FileType::CharacterDevice, rdev),
            NodeKind::BlockDevice => (FileType::BlockDevice, rdev),
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
    /// without following a symbolic link there; see [`Metadata`].
    pub(crate) fn set_metadata(&self, path: &[u8], meta: &Metadata) -> Result<()> {
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
        let time = Timespec {
            tv_sec: meta.mtime_sec,
            tv_nsec: meta.mtime_nsec.into(),
        };
        let times = Timestamps {
            last_access: time,
            last_modification: time,
        };
        self.fault("set times of", path)
            .and_then(|()| rustix::fs::utimensat(&dir, name, &times, AtFlags::SYMLINK_NOFOLLOW))
            .map_err(|e| Error::io("set times of", self.full(path), e.into()))
    }

    /// Sets owner, mode and times of the open file `file` (created at `path`
    /// by [`Root::create_file`]) through its descriptor: no path is looked up
    /// again, so nothing swapped in meanwhile can be met. Owner first, since
    /// `chown` clears setuid and setgid.
    pub(crate) fn set_file_metadata(
        &self,
        file: &File,
        path: &[u8],
        meta: &Metadata,
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
        let time = Timespec {
            tv_sec: meta.mtime_sec,
            tv_nsec: meta.mtime_nsec.into(),
        };
        let times = Timestamps {
            last_access: time,
            last_modification: time,
        };
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

/// Reading
impl Root {
    /// The `lstat` of `path` (the empty path: the root itself).
    #[cfg_attr(
        not(test),
        allow(
            dead_code,
            reason = "used by mount::copy and checkout; scan reads through fsutil::dir"
        )
    )]
    pub(crate) fn lstat(&self, path: &[u8]) -> Result<Stat> {
        let (dir, name) = self.open_parent_or_root(path)?;
        rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| Error::io("stat", self.full(path), e.into()))
    }

    /// The target of the symbolic link `path`, as bytes.
    #[cfg_attr(
        not(test),
        allow(
            dead_code,
            reason = "used by mount::copy and checkout; scan reads through fsutil::dir"
        )
    )]
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
    #[cfg_attr(
        not(test),
        allow(
            dead_code,
            reason = "used by mount::copy and checkout; scan reads through fsutil::dir"
        )
    )]
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
    #[cfg_attr(not(test), allow(dead_code, reason = "used by read_dir"))]
    fn list(&self, dir: &OwnedFd, path: &[u8]) -> Result<Vec<Vec<u8>>> {
        let err = |e: Errno| Error::io("read directory", self.full(path), e.into());
        let mut reader = Dir::read_from(dir).map_err(err)?;
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

    /// The extended attributes of `path` (the empty path: the root) as
    /// `(name, value)`, sorted by name; none where the filesystem has none.
    #[cfg_attr(
        not(test),
        allow(
            dead_code,
            reason = "used by mount::copy and checkout; scan reads through fsutil::dir"
        )
    )]
    pub(crate) fn xattrs(&self, path: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let (dir, last) = self.open_parent_or_root(path)?;
        let proc = proc_path(dir.as_fd(), Some(last));
        xattr::list(xattr::Target::Path(&proc), &self.full(path))
    }
}

/// `/proc/self/fd/<fd>` or `/proc/self/fd/<fd>/<name>`: a path that reaches
/// what `fd` (or `name` in the directory `fd`) is, with no lookup by name
/// above it.
pub(crate) fn proc_path(fd: BorrowedFd<'_>, name: Option<&[u8]>) -> PathBuf {
    let mut bytes = format!("/proc/self/fd/{}", fd.as_raw_fd()).into_bytes();
    if let Some(name) = name {
        bytes.push(b'/');
        bytes.extend_from_slice(name);
    }
    PathBuf::from(OsStr::from_bytes(&bytes))
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::unix::fs::MetadataExt;

    use super::*;
    use crate::fsutil::device;

    /// A root in a fresh temporary directory, next to an "outside" directory
    /// that nothing may touch.
    struct Fixture {
        _tmp: tempfile::TempDir,
        root_path: PathBuf,
        outside: PathBuf,
    }

    impl Fixture {
        fn new() -> Self {
            let tmp = tempfile::tempdir().unwrap();
            let root_path = tmp.path().join("root");
            let outside = tmp.path().join("outside");
            std::fs::create_dir(&root_path).unwrap();
            std::fs::create_dir(&outside).unwrap();
            Fixture {
                _tmp: tmp,
                root_path,
                outside,
            }
        }

        /// The root, resolving with `openat2` or with the walk.
        fn root(&self, use_openat2: bool) -> Root {
            let mut root = Root::open(&self.root_path).unwrap();
            root.use_openat2 = use_openat2;
            root
        }

        fn assert_outside_untouched(&self) {
            let left: Vec<_> = std::fs::read_dir(&self.outside)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert!(
                left.is_empty(),
                "something landed outside the root: {left:?}"
            );
        }
    }

    /// Whether we may make device nodes. Without root this prints why and
    /// says no, unless `LAYERSTORE_REQUIRE_PRIVILEGED=1` makes that a failure.
    fn privileged(what: &str) -> bool {
        if rustix::process::geteuid().is_root() {
            return true;
        }
        assert!(
            std::env::var_os("LAYERSTORE_REQUIRE_PRIVILEGED").is_none_or(|v| v != "1"),
            "{what} needs root, and LAYERSTORE_REQUIRE_PRIVILEGED=1 is set"
        );
        eprintln!("skipping {what}: needs root (CAP_MKNOD)");
        false
    }

    fn meta(mode: u32, sec: i64, nsec: u32) -> Metadata {
        Metadata {
            mode,
            uid: None,
            gid: None,
            mtime_sec: sec,
            mtime_nsec: nsec,
        }
    }

    #[test]
    fn validate_refuses_what_is_not_a_plain_relative_path() {
        for bad in [
            &b""[..],
            b"/etc/passwd",
            b"..",
            b"../x",
            b"a/../../x",
            b"a/..",
            b".",
            b"./a",
            b"a/./b",
            b"a//b",
            b"a/",
            b"a\0b",
        ] {
            let err = validate(bad).unwrap_err();
            assert!(
                matches!(err, Error::InvalidPath { .. }),
                "{}: {err}",
                lossy(bad)
            );
        }
        for good in [
            &b"a"[..],
            b"a/b/c",
            b"..a",
            b"a..",
            b".hidden/x",
            b"...",
            b"\xff\xfe/\x80",
        ] {
            validate(good).unwrap();
        }
        let msg = validate(b"a/../b").unwrap_err().to_string();
        assert!(msg.contains("a/../b") && msg.contains("'..'"), "{msg}");
    }

    #[test]
    fn absolute_and_dotdot_paths_are_refused_by_every_operation() {
        let fx = Fixture::new();
        let root = fx.root(true);
        for bad in [&b"/x"[..], b"../x", b"a/../../x"] {
            assert!(matches!(
                root.create_file(bad, 0o644),
                Err(Error::InvalidPath { .. })
            ));
            assert!(matches!(
                root.mkdir(bad, 0o755),
                Err(Error::InvalidPath { .. })
            ));
            assert!(matches!(
                root.create_dir_all(bad, 0o755),
                Err(Error::InvalidPath { .. })
            ));
            assert!(matches!(
                root.symlink(bad, b"t"),
                Err(Error::InvalidPath { .. })
            ));
            assert!(matches!(
                root.hardlink(b"x", bad),
                Err(Error::InvalidPath { .. })
            ));
            assert!(matches!(root.remove(bad), Err(Error::InvalidPath { .. })));
            assert!(matches!(root.lstat(bad), Err(Error::InvalidPath { .. })));
            assert!(matches!(
                root.open_read(bad),
                Err(Error::InvalidPath { .. })
            ));
        }
        fx.assert_outside_untouched();
    }

    /// Every writing operation through an intermediate symbolic link fails
    /// with `SymlinkInPath`, and nothing appears outside.
    fn refuses_writes_through(root: &Root, link: &[u8]) {
        let under = |rest: &[u8]| [link, rest].concat();
        let refused = |res: Result<()>, what: &str| match res {
            Err(Error::SymlinkInPath { component, .. }) => {
                assert!(
                    component.as_bytes().starts_with(link),
                    "{what}: component {component}"
                );
            }
            other => panic!(
                "{what} through {}: expected SymlinkInPath, got {other:?}",
                lossy(link)
            ),
        };
        refused(
            root.create_file(&under(b"/file"), 0o644).map(drop),
            "create_file",
        );
        refused(
            root.create_file(&under(b"/b/file"), 0o644).map(drop),
            "create_file deeper",
        );
        // A parent descriptor kept for another directory is not reused.
        let mut parent = None;
        root.create_file_reusing(b"reused-a", 0o644, &mut parent)
            .expect("a file at the root");
        refused(
            root.create_file_reusing(&under(b"/file"), 0o644, &mut parent)
                .map(drop),
            "create_file_reusing",
        );
        std::fs::remove_file(root.path().join("reused-a")).expect("remove reused-a");
        refused(root.mkdir(&under(b"/d"), 0o755), "mkdir");
        refused(
            root.create_dir_all(&under(b"/d/e"), 0o755),
            "create_dir_all",
        );
        refused(root.symlink(&under(b"/s"), b"/etc/passwd"), "symlink");
        refused(root.mknod(&under(b"/p"), NodeKind::Fifo, 0o644, 0), "mknod");
        refused(
            root.hardlink(b"inside", &under(b"/victim")),
            "hardlink target",
        );
        refused(root.hardlink(&under(b"/l"), b"inside"), "hardlink name");
        refused(root.remove(&under(b"/victim")).map(drop), "remove");
        refused(
            root.set_metadata(&under(b"/victim"), &meta(0o777, 0, 0)),
            "set_metadata",
        );
        refused(
            root.set_xattr(&under(b"/victim"), b"user.x", b"1"),
            "set_xattr",
        );
        refused(root.open_read(&under(b"/victim")).map(drop), "open_read");
        refused(root.lstat(&under(b"/victim")).map(drop), "lstat");
    }

    #[test]
    fn symlinks_out_of_the_root_are_never_followed() {
        for use_openat2 in [true, false] {
            let fx = Fixture::new();
            let root = fx.root(use_openat2);
            std::fs::write(fx.root_path.join("inside"), b"in").unwrap();
            // An absolute link, a relative one climbing out, and `a` -> the
            // outside directory with `a/b` expected beneath.
            std::os::unix::fs::symlink(&fx.outside, fx.root_path.join("abs")).unwrap();
            std::os::unix::fs::symlink("../outside", fx.root_path.join("rel")).unwrap();
            std::os::unix::fs::symlink(&fx.outside, fx.root_path.join("a")).unwrap();
            // Even a link that stays inside is refused as an intermediate.
            std::fs::create_dir(fx.root_path.join("real")).unwrap();
            std::os::unix::fs::symlink("real", fx.root_path.join("inner")).unwrap();
            for link in [&b"abs"[..], b"rel", b"a", b"inner"] {
                refuses_writes_through(&root, link);
            }
            let err = root.create_file(b"a/b/file", 0o644).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("a/b/file") && msg.contains("'a'"), "{msg}");
            assert!(msg.contains(&*fx.root_path.to_string_lossy()), "{msg}");
            fx.assert_outside_untouched();
            assert!(
                std::fs::read_dir(fx.root_path.join("real"))
                    .unwrap()
                    .next()
                    .is_none()
            );
        }
    }

    #[test]
    fn a_symlink_as_final_component_is_acted_on_itself() {
        let fx = Fixture::new();
        let root = fx.root(true);
        let victim = fx.outside.join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        std::fs::set_permissions(&victim, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let before = std::fs::metadata(&victim).unwrap();
        std::os::unix::fs::symlink(&victim, fx.root_path.join("l")).unwrap();

        // Creating a file or reading through it fails.
        assert!(root.create_file(b"l", 0o644).is_err());
        assert!(root.open_read(b"l").is_err());
        // Metadata lands on the link, not on its target.
        root.set_metadata(b"l", &meta(0o777, 1_000_000_000, 5))
            .unwrap();
        let after = std::fs::metadata(&victim).unwrap();
        assert_eq!(after.mode() & 0o7777, 0o600);
        assert_eq!(after.mtime(), before.mtime());
        let st = root.lstat(b"l").unwrap();
        assert_eq!((st.st_mtime, st.st_mtime_nsec), (1_000_000_000, 5));
        assert_eq!(root.read_link(b"l").unwrap(), victim.as_os_str().as_bytes());
        // Removing it removes the link only.
        assert!(root.remove(b"l").unwrap());
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
    }

    #[test]
    fn files_directories_and_links_are_created_beneath_the_root() {
        for use_openat2 in [true, false] {
            let fx = Fixture::new();
            let root = fx.root(use_openat2);
            assert_eq!(root.path(), fx.root_path);
            let st = rustix::fs::fstat(root.as_fd()).unwrap();
            assert_eq!(FileType::from_raw_mode(st.st_mode), FileType::Directory);
            root.create_dir_all(b"usr/local/bin", 0o755).unwrap();
            root.create_dir_all(b"usr/local/bin", 0o755).unwrap();
            root.mkdir(b"etc", 0o755).unwrap();
            assert!(root.mkdir(b"etc", 0o755).is_err());
            let mut f = root.create_file(b"usr/local/bin/tool", 0o755).unwrap();
            f.write_all(b"#!/bin/sh\n").unwrap();
            drop(f);
            assert!(
                root.create_file(b"usr/local/bin/tool", 0o755).is_err(),
                "create_file must not replace"
            );
            root.symlink(b"usr/bin", b"local/bin").unwrap();
            root.hardlink(b"etc/tool", b"usr/local/bin/tool").unwrap();
            let mut text = String::new();
            root.open_read(b"etc/tool")
                .unwrap()
                .read_to_string(&mut text)
                .unwrap();
            assert_eq!(text, "#!/bin/sh\n");
            assert_eq!(root.lstat(b"etc/tool").unwrap().st_nlink, 2);
            assert_eq!(root.read_link(b"usr/bin").unwrap(), b"local/bin");
            assert_eq!(
                root.read_dir(b"").unwrap(),
                [b"etc".to_vec(), b"usr".to_vec()]
            );
            assert_eq!(
                root.read_dir(b"usr").unwrap(),
                [b"bin".to_vec(), b"local".to_vec()]
            );
            // Reading through the link in the middle is refused too.
            assert!(matches!(
                root.open_read(b"usr/bin/tool"),
                Err(Error::SymlinkInPath { .. })
            ));
            assert!(
                root.open_read(b"usr").is_err(),
                "a directory is not a regular file"
            );
            // A missing parent is an error naming the path, not a creation.
            let err = root
                .create_file(b"nope/file", 0o644)
                .unwrap_err()
                .to_string();
            assert!(err.contains("nope"), "{err}");
            fx.assert_outside_untouched();
        }
    }

    #[test]
    fn non_utf8_names_work() {
        let fx = Fixture::new();
        let root = fx.root(true);
        root.mkdir(b"d\xff", 0o755).unwrap();
        root.create_file(b"d\xff/f\xfe\x80", 0o644)
            .unwrap()
            .write_all(b"bytes")
            .unwrap();
        root.symlink(b"d\xff/l\xc3", b"f\xfe\x80").unwrap();
        assert_eq!(
            root.read_dir(b"d\xff").unwrap(),
            [b"f\xfe\x80".to_vec(), b"l\xc3".to_vec()]
        );
        assert_eq!(root.read_link(b"d\xff/l\xc3").unwrap(), b"f\xfe\x80");
        assert_eq!(root.lstat(b"d\xff/f\xfe\x80").unwrap().st_size, 5);
        let on_disk = fx.root_path.join(OsStr::from_bytes(b"d\xff/f\xfe\x80"));
        assert_eq!(std::fs::read(on_disk).unwrap(), b"bytes");
        let err = root.mkdir(b"d\xff", 0o755).unwrap_err().to_string();
        assert!(err.contains("d\u{fffd}"), "{err}");
        assert!(root.remove(b"d\xff").unwrap());
        assert!(root.read_dir(b"").unwrap().is_empty());
    }

    #[test]
    fn modes_owner_and_nanosecond_mtimes_round_trip() {
        let fx = Fixture::new();
        let root = fx.root(true);
        root.create_file(b"suid", 0o644).unwrap();
        root.create_file(b"sgid", 0o644).unwrap();
        root.mkdir(b"tmp", 0o755).unwrap();
        root.mkdir(b"shared", 0o755).unwrap();
        root.mknod(b"fifo", NodeKind::Fifo, 0o600, 0).unwrap();
        let uid = rustix::process::geteuid().as_raw();
        let gid = rustix::process::getegid().as_raw();
        for (path, mode, nsec) in [
            (&b"suid"[..], 0o4755, 123_456_789),
            (b"sgid", 0o2755, 1),
            (b"tmp", 0o1777, 999_999_999),
            (b"shared", 0o2775, 0),
            (b"fifo", 0o640, 500),
            // The root's own metadata.
            (b"", 0o750, 42),
        ] {
            let m = Metadata {
                uid: Some(uid),
                gid: Some(gid),
                ..meta(mode, 1_700_000_000, nsec)
            };
            root.set_metadata(path, &m).unwrap();
            let st = root.lstat(path).unwrap();
            assert_eq!(st.st_mode & 0o7777, mode, "{}", lossy(path));
            assert_eq!((st.st_uid, st.st_gid), (uid, gid));
            assert_eq!(st.st_mtime, 1_700_000_000);
            assert_eq!(st.st_mtime_nsec, u64::from(nsec), "{}", lossy(path));
        }
        // Times before the epoch too.
        root.set_metadata(b"suid", &meta(0o4755, -86_400, 7))
            .unwrap();
        let st = root.lstat(b"suid").unwrap();
        assert_eq!((st.st_mtime, st.st_mtime_nsec), (-86_400, 7));
        assert_eq!(st.st_mode & 0o7777, 0o4755);
    }

    #[test]
    fn xattrs_round_trip_beneath_the_root() {
        let fx = Fixture::new();
        if !crate::fsutil::xattr::tests::user_xattrs_supported(&fx.root_path) {
            return;
        }
        let root = fx.root(true);
        root.mkdir(b"d", 0o755).unwrap();
        root.create_file(b"d/f\xff", 0o644).unwrap();
        root.set_xattr(b"d/f\xff", b"user.b", b"2").unwrap();
        root.set_xattr(b"d/f\xff", b"user.a", b"\x00\x01").unwrap();
        root.set_xattr(b"d", b"user.dir", b"yes").unwrap();
        root.set_xattr(b"", b"user.root", b"r").unwrap();
        assert_eq!(
            root.xattrs(b"d/f\xff").unwrap(),
            [
                (b"user.a".to_vec(), b"\x00\x01".to_vec()),
                (b"user.b".to_vec(), b"2".to_vec())
            ]
        );
        assert_eq!(
            root.xattrs(b"d").unwrap(),
            [(b"user.dir".to_vec(), b"yes".to_vec())]
        );
        assert_eq!(
            root.xattrs(b"").unwrap(),
            [(b"user.root".to_vec(), b"r".to_vec())]
        );
        root.remove_xattr(b"d/f\xff", b"user.b").unwrap();
        assert_eq!(root.xattrs(b"d/f\xff").unwrap().len(), 1);
        // A link's own attributes, not its target's, are read.
        root.symlink(b"l", b"d").unwrap();
        assert!(root.xattrs(b"l").unwrap().is_empty());
        // Errors name the real path and the attribute, not /proc.
        let err = root
            .set_xattr(b"missing", b"user.z", b"1")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("user.z")
                && err.contains(&*fx.root_path.join("missing").to_string_lossy()),
            "{err}"
        );
    }

    #[test]
    fn fifo_needs_no_privilege_and_open_read_refuses_it_without_blocking() {
        let fx = Fixture::new();
        let root = fx.root(true);
        root.mknod(b"p", NodeKind::Fifo, 0o644, 0).unwrap();
        let st = root.lstat(b"p").unwrap();
        assert_eq!(FileType::from_raw_mode(st.st_mode), FileType::Fifo);
        assert!(root.open_read(b"p").is_err());
    }

    #[test]
    fn devices_keep_their_numbers() {
        if !privileged("making device nodes") {
            return;
        }
        let fx = Fixture::new();
        let root = fx.root(true);
        root.mknod(b"null", NodeKind::CharDevice, 0o666, device::makedev(1, 3))
            .unwrap();
        root.mknod(
            b"sda",
            NodeKind::BlockDevice,
            0o660,
            device::makedev(8, 300),
        )
        .unwrap();
        let st = root.lstat(b"null").unwrap();
        assert_eq!(
            FileType::from_raw_mode(st.st_mode),
            FileType::CharacterDevice
        );
        assert_eq!(
            (device::major(st.st_rdev), device::minor(st.st_rdev)),
            (1, 3)
        );
        let st = root.lstat(b"sda").unwrap();
        assert_eq!(FileType::from_raw_mode(st.st_mode), FileType::BlockDevice);
        assert_eq!(
            (device::major(st.st_rdev), device::minor(st.st_rdev)),
            (8, 300)
        );
        // A whiteout as overlayfs writes it: a 0:0 character device.
        root.mknod(b".wh.x", NodeKind::CharDevice, 0, 0).unwrap();
        assert_eq!(root.lstat(b".wh.x").unwrap().st_rdev, 0);
    }

    #[test]
    fn remove_takes_whole_trees_and_never_follows_links() {
        let fx = Fixture::new();
        let root = fx.root(true);
        std::fs::write(fx.outside.join("precious"), b"p").unwrap();
        root.create_dir_all(b"t/a/b/c", 0o755).unwrap();
        root.create_file(b"t/a/f", 0o644).unwrap();
        root.create_file(b"t/a/b/c/g", 0o644).unwrap();
        root.symlink(b"t/a/out", fx.outside.as_os_str().as_bytes())
            .unwrap();
        root.mknod(b"t/a/b/p", NodeKind::Fifo, 0o644, 0).unwrap();
        // A deep chain, deeper than is comfortable for recursion.
        let mut deep = b"t/deep".to_vec();
        for _ in 0..300 {
            deep.extend_from_slice(b"/d");
        }
        root.create_dir_all(&deep, 0o755).unwrap();
        assert!(root.remove(b"t").unwrap());
        assert!(!root.remove(b"t").unwrap());
        assert!(root.read_dir(b"").unwrap().is_empty());
        assert_eq!(std::fs::read(fx.outside.join("precious")).unwrap(), b"p");
    }
}
