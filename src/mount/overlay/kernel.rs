//! The kernel side of the overlay backend: mounting overlayfs through the new
//! mount API, unmounting, and telling whether a directory is a mount point.
//!
//! Mounts go through `fsopen("overlay")`, one `fsconfig` call per option and
//! `fsmount` + `move_mount`. Each lower layer is passed on its own with the
//! `lowerdir+` key (Linux 6.8+), so the number of layers is not bounded by
//! the size of one option string (a page, which the classic `mount(2)` data
//! argument holds: about 128 layers of store paths); overlayfs itself takes
//! up to 500 lower layers.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, StatxAttributes, StatxFlags};
use rustix::io::Errno;
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, UnmountFlags, fsconfig_create,
    fsconfig_set_string, fsmount, fsopen, move_mount, unmount,
};

use crate::error::{Error, Result};

/// The most lower layers one overlayfs mount takes (`OVL_MAX_STACK`).
pub(crate) const MAX_LOWER_LAYERS: usize = 500;

/// What to mount: lower directories (topmost first) and, for a writable
/// view, an upper and a work directory on one filesystem.
#[derive(Debug, Clone)]
pub(crate) struct OverlaySpec<'a> {
    /// Lower directories, the topmost first; at least two when there is no
    /// upper directory (the kernel's rule for a read-only overlay).
    pub(crate) lowers: &'a [PathBuf],
    /// Upper and work directory; `None` for a read-only mount.
    pub(crate) upper: Option<(&'a Path, &'a Path)>,
}

/// The error for a process that may not mount: it names the `copy` backend.
pub(crate) fn needs_privilege(target: &Path) -> Error {
    Error::io(
        "mount overlayfs at",
        target,
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the overlay backend needs CAP_SYS_ADMIN (run as root); \
             the `copy` backend works without privilege",
        ),
    )
}

/// Checks that this process may create overlayfs mounts (it has
/// `CAP_SYS_ADMIN` and the kernel has overlayfs), without mounting anything.
///
/// # Errors
/// [`needs_privilege`] naming `target`, or the kernel's error.
pub(crate) fn check_can_mount(target: &Path) -> Result<()> {
    open_overlay(target).map(drop)
}

fn open_overlay(target: &Path) -> Result<OwnedFd> {
    match fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC) {
        Ok(fd) => Ok(fd),
        Err(Errno::PERM | Errno::ACCESS) => Err(needs_privilege(target)),
        Err(Errno::NODEV) => Err(Error::io(
            "mount overlayfs at",
            target,
            io::Error::new(
                io::ErrorKind::Unsupported,
                "the kernel has no overlayfs (modprobe overlay); the `copy` backend needs none",
            ),
        )),
        Err(e) => Err(Error::io("open overlayfs context for", target, e.into())),
    }
}

/// The messages the kernel logged on a filesystem context (`e overlayfs: …`),
/// joined, to make a failed `fsconfig` explain itself.
fn kernel_messages(fs: BorrowedFd<'_>) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    // Each read returns one message; ENODATA once the log is empty.
    for _ in 0..16 {
        match rustix::io::read(fs, &mut buf) {
            Ok(n) if n > 0 => {
                out.push(String::from_utf8_lossy(buf.get(..n).unwrap_or_default()).into_owned());
            }
            _ => break,
        }
    }
    out.join("; ")
}

/// Mounts an overlay of `spec` at `target` (an existing directory).
/// A mount without an upper directory is read-only (writes fail with
/// `EROFS`); it is also mounted with `MOUNT_ATTR_RDONLY`.
///
/// # Errors
/// [`needs_privilege`] without `CAP_SYS_ADMIN`; [`Error::InvalidArgument`]
/// for more than [`MAX_LOWER_LAYERS`] lowers; [`Error::Io`] naming `target`
/// with the kernel's own explanation otherwise.
pub(crate) fn mount(target: &Path, spec: &OverlaySpec<'_>) -> Result<()> {
    if spec.lowers.len() > MAX_LOWER_LAYERS {
        return Err(Error::InvalidArgument(format!(
            "{} lower layers for '{}': overlayfs stacks at most {MAX_LOWER_LAYERS}",
            spec.lowers.len(),
            target.display()
        )));
    }
    let fs = open_overlay(target)?;
    let fail = |op: &'static str, e: Errno| {
        let messages = kernel_messages(fs.as_fd());
        let source = io::Error::from(e);
        let source = if messages.is_empty() {
            source
        } else {
            io::Error::new(source.kind(), format!("{source} ({messages})"))
        };
        Error::io(op, target, source)
    };
    let set = |key: &str, value: &Path| {
        fsconfig_set_string(&fs, key, value.as_os_str().as_bytes())
            .map_err(|e| fail("configure overlayfs for", e))
    };
    for lower in spec.lowers {
        set("lowerdir+", lower)?;
    }
    if let Some((upper, work)) = spec.upper {
        set("upperdir", upper)?;
        set("workdir", work)?;
    }
    // Renaming a lower directory records a redirect (`upper` reads it back);
    // no metadata-only copy-ups, whose data would stay below.
    for (key, value) in [("redirect_dir", "on"), ("metacopy", "off")] {
        fsconfig_set_string(&fs, key, value).map_err(|e| fail("configure overlayfs for", e))?;
    }
    fsconfig_create(&fs).map_err(|e| fail("create overlayfs for", e))?;
    let attrs = if spec.upper.is_some() {
        MountAttrFlags::empty()
    } else {
        MountAttrFlags::MOUNT_ATTR_RDONLY
    };
    let mnt = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs)
        .map_err(|e| fail("mount overlayfs for", e))?;
    move_mount(
        &mnt,
        "",
        CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| Error::io("attach overlayfs at", target, e.into()))
}

/// Unmounts `target`. A mount still in use (an open file, a process's
/// working directory) is refused with `EBUSY`, never detached lazily.
///
/// # Errors
/// [`Error::Io`] naming `target`: kind `ResourceBusy` when busy.
pub(crate) fn unmount_at(target: &Path) -> Result<()> {
    unmount(target, UnmountFlags::NOFOLLOW).map_err(|e| {
        let source = io::Error::from(e);
        let source = if e == Errno::BUSY {
            io::Error::new(
                io::ErrorKind::ResourceBusy,
                format!(
                    "{source}: a process has a file open or its working directory beneath it; \
                     close them and retry"
                ),
            )
        } else {
            source
        };
        Error::io("unmount", target, source)
    })
}

/// Whether `path` is the root of a mount (a missing path is not).
pub(crate) fn is_mount_point(path: &Path) -> bool {
    rustix::fs::statx(
        CWD,
        path,
        AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::BASIC_STATS,
    )
    .is_ok_and(|st| st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mount::overlay::extract::tests_support::privileged;

    #[test]
    fn a_busy_mount_is_refused_with_ebusy_naming_the_target_then_unmounts() {
        if !privileged("unmounting a busy overlay") {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dirs: Vec<PathBuf> = ["a", "b", "upper", "work", "mnt"]
            .iter()
            .map(|d| tmp.path().join(d))
            .collect();
        for d in &dirs {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::write(dirs[0].join("f"), b"lower").unwrap();
        let target = &dirs[4];
        assert!(!is_mount_point(target));
        mount(
            target,
            &OverlaySpec {
                lowers: &dirs[..2],
                upper: Some((&dirs[2], &dirs[3])),
            },
        )
        .unwrap();
        assert!(is_mount_point(target));
        let open = std::fs::File::open(target.join("f")).unwrap();
        let err = unmount_at(target).unwrap_err();
        assert!(
            matches!(&err, Error::Io { op: "unmount", path, source }
                if path == target && source.kind() == io::ErrorKind::ResourceBusy),
            "{err}"
        );
        assert!(err.to_string().contains("mnt"), "{err}");
        assert!(is_mount_point(target), "not detached lazily");
        drop(open);
        unmount_at(target).unwrap();
        assert!(!is_mount_point(target));
    }

    #[test]
    fn too_many_lowers_are_refused_before_mounting() {
        let lowers = vec![PathBuf::from("/nonexistent"); MAX_LOWER_LAYERS + 1];
        let err = mount(
            Path::new("/nonexistent-target"),
            &OverlaySpec {
                lowers: &lowers,
                upper: None,
            },
        )
        .unwrap_err();
        assert!(
            matches!(err, Error::InvalidArgument(ref m) if m.contains("500")),
            "{err}"
        );
    }
}
