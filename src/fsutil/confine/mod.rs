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
//!
//! # Parts
//!
//! This file holds the [`ConfinedDir`] itself, how it opens what lies beneath it
//! (`openat2`, or the component walk) and the path rules every operation
//! checks first; the operations are split by direction:
//! - `write`: creating directories, files, links and special files
//!   ([`SpecialFile`]), removing, and setting [`FileAttrs`] and extended
//!   attributes;
//! - `read`: `lstat`, reading links, opening files and directories for
//!   reading, listing and reading extended attributes.

mod read;
mod write;

#[cfg(test)]
mod tests;

pub(crate) use self::write::{FileAttrs, SpecialFile};

use std::ffi::OsStr;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::error::{Error, Result};

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

/// A directory beneath which all paths are resolved.
///
/// Holds an `O_PATH` descriptor of the directory, so that the root itself
/// cannot be swapped for something else while it is in use; its path is kept
/// only to name files in errors.
#[derive(Debug)]
pub(crate) struct ConfinedDir {
    fd: OwnedFd,
    path: PathBuf,
    /// Whether to try `openat2` before walking components (off in tests that
    /// exercise the walk).
    use_openat2: bool,
}

/// Opening
impl ConfinedDir {
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
        Ok(ConfinedDir {
            fd,
            path,
            use_openat2: true,
        })
    }

    /// The root's path, as given to [`ConfinedDir::open`].
    pub(crate) fn path(&self) -> &Path {
        &self.path
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

    /// The component-by-component walk behind [`ConfinedDir::open_dir_beneath`].
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

    /// Like [`ConfinedDir::open_parent`], but the empty path stands for the root
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
