//! [`ViewFiles`] over a directory: the file access of every backend that
//! shows its view as a directory (`copy`, `overlay`). Every path is
//! resolved beneath the directory without following a symbolic link.

use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use super::{Node, NodeKind, ViewFiles};
use crate::error::{Error, Result};
use crate::fsutil::confine::{self, ConfinedDir};
use crate::tree::{Metadata, Timestamp, TreePath};

/// A view's files in the directory it is shown in.
#[derive(Debug)]
pub struct DirFiles {
    root: ConfinedDir,
    read_only: bool,
}

impl DirFiles {
    /// The files beneath `dir`; with `read_only`, every write fails with
    /// `EROFS` (whether or not the directory itself is writable).
    ///
    /// # Errors
    /// An I/O error naming `dir` if it cannot be opened.
    pub fn new(dir: &Path, read_only: bool) -> Result<Self> {
        Ok(Self {
            root: ConfinedDir::open(dir)?,
            read_only,
        })
    }

    fn full(&self, path: &TreePath) -> std::path::PathBuf {
        if path.is_root() {
            self.root.path().to_path_buf()
        } else {
            self.root
                .path()
                .join(<std::ffi::OsStr as OsStrExt>::from_bytes(path.as_bytes()))
        }
    }

    fn writable(&self, op: &'static str, path: &TreePath) -> Result<()> {
        if self.read_only {
            return Err(read_only_error(op, self.full(path)));
        }
        Ok(())
    }
}

/// The error of a write to a read-only view: `EROFS`.
pub(crate) fn read_only_error(op: &'static str, path: impl Into<std::path::PathBuf>) -> Error {
    Error::io(
        op,
        path,
        io::Error::from_raw_os_error(rustix::io::Errno::ROFS.raw_os_error()),
    )
}

/// The bytes `ConfinedDir` takes for `path`: empty for the root.
fn rel(path: &TreePath) -> &[u8] {
    if path.is_root() { b"" } else { path.as_bytes() }
}

pub(crate) fn timestamp(secs: i64, nanos: u64) -> Timestamp {
    Timestamp::new(secs, u32::try_from(nanos).unwrap_or(0))
}

impl DirFiles {
    /// Moves the directory `from` to `to` by making `to` (replacing an empty
    /// directory there) and renaming each entry into it, then removing
    /// `from`; the directory's metadata is set last, so its mtime is kept.
    fn move_dir_by_parts(&self, from: &TreePath, to: &TreePath) -> Result<()> {
        let node = self.metadata(from)?;
        if node.kind != NodeKind::Dir {
            return Err(Error::io(
                "rename",
                self.full(from),
                io::Error::from(io::ErrorKind::CrossesDevices),
            ));
        }
        match self.metadata(to) {
            Ok(existing) if existing.kind == NodeKind::Dir => {
                if !self.list(to)?.is_empty() {
                    return Err(Error::io(
                        "rename",
                        self.full(to),
                        io::Error::from(io::ErrorKind::DirectoryNotEmpty),
                    ));
                }
                self.remove(to)?;
            }
            Ok(_) => {
                return Err(Error::io(
                    "rename",
                    self.full(to),
                    io::Error::from(io::ErrorKind::NotADirectory),
                ));
            }
            Err(_) => {}
        }
        self.create_dir(to, node.meta.mode)?;
        for name in self.list(from)? {
            self.rename(&from.join(&name)?, &to.join(&name)?)?;
        }
        self.remove(from)?;
        self.set_metadata(to, &node.meta)
    }
}

impl ViewFiles for DirFiles {
    fn read(&self, path: &TreePath) -> Result<Vec<u8>> {
        let mut file = self.root.open_read(rel(path))?;
        let mut out = Vec::new();
        io::Read::read_to_end(&mut file, &mut out)
            .map_err(|e| Error::io("read", self.full(path), e))?;
        Ok(out)
    }

    fn write(&self, path: &TreePath, content: &[u8]) -> Result<()> {
        self.writable("write", path)?;
        let (dir, name) = self.root.open_parent(rel(path))?;
        let flags = OFlags::WRONLY
            | OFlags::CREATE
            | OFlags::TRUNC
            | OFlags::NOFOLLOW
            | OFlags::CLOEXEC
            | OFlags::NONBLOCK;
        let fd = rustix::fs::openat(&dir, name, flags, Mode::from_raw_mode(0o644))
            .map_err(|e| Error::io("open for writing", self.full(path), e.into()))?;
        let mut file = std::fs::File::from(fd);
        file.write_all(content)
            .map_err(|e| Error::io("write", self.full(path), e))
    }

    fn create_dir(&self, path: &TreePath, mode: u32) -> Result<()> {
        self.writable("create directory", path)?;
        self.root.mkdir(rel(path), mode)?;
        // mkdir filters the mode through the umask; set it exactly.
        let (dir, name) = self.root.open_parent(rel(path))?;
        rustix::fs::chmodat(
            &dir,
            name,
            Mode::from_raw_mode(mode & 0o7777),
            AtFlags::empty(),
        )
        .map_err(|e| Error::io("change mode of", self.full(path), e.into()))
    }

    fn symlink(&self, path: &TreePath, target: &[u8]) -> Result<()> {
        self.writable("create symbolic link", path)?;
        self.root.symlink(rel(path), target)
    }

    fn remove(&self, path: &TreePath) -> Result<()> {
        self.writable("remove", path)?;
        if path.is_root() {
            return Err(Error::io(
                "remove",
                self.full(path),
                io::Error::new(io::ErrorKind::InvalidInput, "the root cannot be removed"),
            ));
        }
        if self.root.remove(rel(path))? {
            Ok(())
        } else {
            Err(Error::io(
                "remove",
                self.full(path),
                io::Error::from(io::ErrorKind::NotFound),
            ))
        }
    }

    fn rename(&self, from: &TreePath, to: &TreePath) -> Result<()> {
        self.writable("rename", from)?;
        if from.is_root() || to.is_root() || from.is_ancestor_of(to) {
            return Err(Error::io(
                "rename",
                self.full(from),
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("cannot move to '{to}'"),
                ),
            ));
        }
        let (from_dir, from_name) = self.root.open_parent(rel(from))?;
        let (to_dir, to_name) = self.root.open_parent(rel(to))?;
        match rustix::fs::renameat(&from_dir, from_name, &to_dir, to_name) {
            // An overlay that cannot record a moved lower directory
            // (overlayfs without redirect_dir, fuse-overlayfs without
            // privilege) refuses to move it: move it as `mv` does, a new
            // directory and its entries moved into it one by one.
            Err(rustix::io::Errno::XDEV) => self.move_dir_by_parts(from, to),
            other => other.map_err(|e| Error::io("rename", self.full(from), e.into())),
        }
    }

    fn list(&self, dir: &TreePath) -> Result<Vec<Vec<u8>>> {
        self.root.read_dir(rel(dir))
    }

    fn metadata(&self, path: &TreePath) -> Result<Node> {
        let st = self.root.lstat(rel(path))?;
        let kind = match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => NodeKind::File,
            FileType::Directory => NodeKind::Dir,
            FileType::Symlink => NodeKind::Symlink(self.root.read_link(rel(path))?),
            FileType::CharacterDevice => NodeKind::CharDevice,
            FileType::BlockDevice => NodeKind::BlockDevice,
            FileType::Fifo => NodeKind::Fifo,
            _ => {
                return Err(Error::io(
                    "stat",
                    self.full(path),
                    io::Error::new(io::ErrorKind::Unsupported, "a socket or unknown file type"),
                ));
            }
        };
        let xattrs = if matches!(kind, NodeKind::Symlink(_)) {
            std::collections::BTreeMap::new()
        } else {
            self.root.xattrs(rel(path))?.into_iter().collect()
        };
        Ok(Node {
            size: if kind == NodeKind::File {
                u64::try_from(st.st_size).unwrap_or(0)
            } else {
                0
            },
            kind,
            meta: Metadata {
                mode: st.st_mode & 0o7777,
                uid: st.st_uid,
                gid: st.st_gid,
                mtime: timestamp(st.st_mtime, st.st_mtime_nsec),
                xattrs,
            },
        })
    }

    fn set_metadata(&self, path: &TreePath, meta: &Metadata) -> Result<()> {
        self.writable("set metadata of", path)?;
        let is_link = self
            .root
            .lstat(rel(path))
            .map(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink)?;
        if !is_link {
            let old = self.root.xattrs(rel(path))?;
            for (name, _) in &old {
                if !meta.xattrs.contains_key(name) {
                    self.root.remove_xattr(rel(path), name)?;
                }
            }
            for (name, value) in &meta.xattrs {
                self.root.set_xattr(rel(path), name, value)?;
            }
        }
        self.root.set_metadata(
            rel(path),
            &confine::FileAttrs {
                mode: meta.mode,
                uid: Some(meta.uid),
                gid: Some(meta.gid),
                mtime_sec: meta.mtime.secs,
                mtime_nsec: meta.mtime.nanos,
            },
        )?;
        Ok(())
    }
}
