//! The `fuse` backend: images shown straight from the chunk store, nothing
//! extracted ([`FuseView`]).
//!
//! - **The view** ([`view`], [`serve`], [`nodes`], [`content`]) is a read-only FUSE
//!   filesystem served by threads of the mounting process: mounting decodes
//!   the image's root directory only, each directory is decoded when first
//!   looked into, and file content is read a chunk at a time, verified, when
//!   read. The kernel caches everything for good (the image cannot change).
//! - **A read-only container** is the view itself, at the target.
//! - **A writable container** stacks a copy-on-write layer over the view,
//!   mounted at `containers/<name>/lower/`: the kernel's overlayfs as root
//!   (its upper directory `upper/`, committed exactly as the `overlay`
//!   backend's), `fuse-overlayfs` (Debian's package) without root.
//! - **Process model**: the process that mounts serves; its pid is in
//!   `containers/<name>/server.pid`. If it dies, the view fails with
//!   `ENOTCONN` and the container is not mounted as far as the lifecycle is
//!   concerned: mounting it again (in any process) unmounts what is left
//!   and serves it anew, its changes intact; `unmount` and `remove` clean a
//!   dead mount up. The CLI runs the server as a detached process
//!   (`layerstore mount --backend fuse`), or in the foreground.
//!
//! The view is mounted `ro,nosuid,nodev` with `default_permissions` (the
//! kernel checks each access against the image's modes and owners) and,
//! unless [`FuseOptions::allow_other`], reachable by the mounting user only
//! (an overlay over it reaches it as its mounter).

pub(crate) mod content;
pub(crate) mod nodes;
pub(crate) mod serve;
pub(crate) mod view;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

pub use self::view::{FuseOptions, FuseView, ReadLog};
use super::mountinfo;
use super::overlay::{self, kernel};
use super::{MountBackend, Usage, ViewSpec};
use crate::error::{Error, Result};
use crate::store::Store;
use crate::tree::Layer;

/// Where a writable container's view is mounted, in its state directory.
const LOWER: &str = "lower";
/// The pid of the process serving a container's view.
const PID_FILE: &str = "server.pid";
/// Present in a container's state when `fuse-overlayfs` writes its upper
/// directory (which then records opaque directories in its own form).
const FUSE_OVERLAYFS_MARK: &str = "upper-by-fuse-overlayfs";
/// The decompressed frames the server's store handle keeps (the store's
/// default is 64 MiB): enough for the frames its loaders and readers are in
/// at once and for a frame whose files a reader going through the tree
/// reaches again a little later (a thread's frame may hold a directory's
/// files and those of a subdirectory it took up meanwhile). Reading the Linux
/// source decompressed 1.52–1.56 GB of frames with 16 MiB, 1.43–1.47 GB with
/// 32 MiB, 1.35–1.41 GB with 64 MiB (the tree is 1.36 GB; 8 MiB cost 15 %
/// more server time still), while each 16 MiB more adds as much to the
/// server's peak memory (which should stay well under 256 MiB).
const SERVER_FRAME_CACHE: usize = 32 << 20;

/// The `fuse` [`MountBackend`]: views served lazily from the store.
///
/// ```no_run
/// use std::sync::Arc;
/// use layerstore::Store;
/// use layerstore::mount::{Containers, FuseBackend, PrepareOptions};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = Store::open("/var/lib/layerstore")?;
/// let fuse = Arc::new(FuseBackend::new());
/// let containers = Containers::new(&store).with_backend(fuse.clone());
/// let image = store.resolve_image("debian:12")?;
/// let options = PrepareOptions::default().backend("fuse").target("/run/box");
/// containers.prepare("box", &image, &options)?; // shown at once, nothing extracted
/// std::fs::write("/run/box/etc/motd", "hello\n")?;
/// let child = containers.commit("box", &Default::default())?;
/// containers.remove("box")?;
/// # Ok(())
/// # }
/// ```
#[derive(Default)]
pub struct FuseBackend {
    options: FuseOptions,
    /// The views this process serves, by container state directory, with
    /// the overlay mounted over each (writable containers).
    views: Mutex<HashMap<PathBuf, Served>>,
}

/// A view this process serves for a container.
struct Served {
    view: FuseView,
    /// Where the container's overlay over the view is mounted, if writable.
    overlay: Option<PathBuf>,
}

impl Drop for FuseBackend {
    /// Unmounts every container this backend serves (their changes stay in
    /// their state, for a later mount): each overlay first, then its view.
    /// A container whose overlay is busy stays mounted, served by this
    /// process's threads until it exits.
    fn drop(&mut self) {
        for (_, served) in self.lock().drain() {
            if let Some(target) = &served.overlay
                && let Err(err) = unmount_point(target, false)
            {
                eprintln!("layerstore: {err}; its view is served until this process exits");
                std::mem::forget(served.view);
                continue;
            }
            drop(served.view);
        }
    }
}

impl std::fmt::Debug for FuseBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FuseBackend")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// What a container's mounts are doing.
#[derive(Debug, PartialEq, Eq)]
enum State {
    /// Nothing mounted.
    Unmounted,
    /// Served.
    Live,
    /// Mounted, but the view's server is gone (`ENOTCONN`), or half mounted.
    Dead,
}

impl FuseBackend {
    /// The backend, serving with [`FuseOptions::default`].
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The backend, serving with `options`.
    #[must_use]
    pub fn with_options(options: FuseOptions) -> Self {
        Self {
            options,
            views: Mutex::default(),
        }
    }

    /// Serves every view this backend has mounted in this process until
    /// each is unmounted from outside (by `umount`, `fusermount3 -u` or
    /// another process's [`MountBackend::unmount`]): what a server in the
    /// foreground does after mounting.
    ///
    /// # Errors
    /// The first view's error that failed while serving.
    pub fn wait(&self) -> Result<()> {
        let views: Vec<FuseView> = self.lock().drain().map(|(_, s)| s.view).collect();
        let mut result = Ok(());
        for view in views {
            let done = view.wait();
            if result.is_ok() {
                result = done;
            }
        }
        result
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Served>> {
        self.views
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn target<'v>(view: &ViewSpec<'v>) -> Result<&'v Path> {
    view.target.ok_or_else(|| Error::Container {
        name: view.name.to_owned(),
        reason: "the fuse backend needs a target directory".to_owned(),
    })
}

/// Where the FUSE view itself is mounted: the target for a read-only
/// container, the lower directory under the overlay for a writable one.
fn view_point(view: &ViewSpec<'_>) -> Result<PathBuf> {
    if view.read_only {
        Ok(target(view)?.to_path_buf())
    } else {
        Ok(view.state.join(LOWER))
    }
}

/// `path` as mountinfo names it: its parent resolved, its last component
/// as is (resolving a dead FUSE mount point itself fails with `ENOTCONN`).
fn canonical(path: &Path) -> PathBuf {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => {
            std::fs::canonicalize(parent).map_or_else(|_| path.to_path_buf(), |p| p.join(name))
        }
        _ => path.to_path_buf(),
    }
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn state(view: &ViewSpec<'_>) -> Result<State> {
    let point = canonical(&view_point(view)?);
    let target = &canonical(target(view)?);
    let served = mountinfo::types_at(&point)?
        .iter()
        .any(|t| view::is_fuse_type(t));
    let on_target = !mountinfo::types_at(target)?.is_empty();
    if !served {
        return Ok(if on_target && !view.read_only {
            // An overlay whose view is gone: unmounted lazily, say.
            State::Dead
        } else {
            State::Unmounted
        });
    }
    if !on_target {
        return Ok(State::Dead);
    }
    // statfs always reaches the server (attributes are cached for good).
    // A dead server's mount answers ENOTCONN, or ECONNABORTED for what was
    // in flight when it died.
    Ok(match rustix::fs::statfs(&point) {
        Err(rustix::io::Errno::NOTCONN | rustix::io::Errno::CONNABORTED) => State::Dead,
        _ => State::Live,
    })
}

/// Unmounts whatever is mounted at `point`, if anything: with `umount(2)`
/// as root, else with `fusermount3 -u` (FUSE mounts only: a user cannot
/// unmount anything else). A busy mount is refused, unless `detach` (the
/// dead mounts of a killed server, which serve nothing any more: a file
/// still open on one would keep it busy for good), which detaches it
/// (`MNT_DETACH`, `fusermount3 -u -z`).
fn unmount_point(point: &Path, detach: bool) -> Result<()> {
    if mountinfo::types_at(&canonical(point))?.is_empty() {
        return Ok(());
    }
    if is_root() {
        if detach {
            let flags = rustix::mount::UnmountFlags::DETACH | rustix::mount::UnmountFlags::NOFOLLOW;
            return rustix::mount::unmount(point, flags)
                .map_err(|e| Error::io("unmount", point, e.into()));
        }
        return kernel::unmount_at(point);
    }
    let out = Command::new("fusermount3")
        .args(if detach { &["-u", "-z"][..] } else { &["-u"] })
        .arg(point)
        .output()
        .map_err(|e| Error::io("run fusermount3 -u on", point, e))?;
    if out.status.success() {
        Ok(())
    } else {
        let message = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        let kind = if message.contains("busy") {
            io::ErrorKind::ResourceBusy
        } else {
            io::ErrorKind::Other
        };
        Err(Error::io(
            "unmount",
            point,
            io::Error::new(kind, format!("fusermount3 -u: {message}")),
        ))
    }
}

/// Mounts a copy-on-write layer over the view at `lower` on `target`.
fn mount_upper(store: &Store, view: &ViewSpec<'_>, lower: &Path, target: &Path) -> Result<()> {
    overlay::create_upper(store, view, None)?;
    let upper = overlay::upper_dir(view);
    let work = view.state.join(overlay::WORK);
    if is_root() {
        return kernel::mount(
            target,
            &kernel::OverlaySpec {
                lowers: &[lower.to_path_buf()],
                upper: Some((&upper, &work)),
            },
        );
    }
    let mark = view.state.join(FUSE_OVERLAYFS_MARK);
    fs_err::write(&mark, b"").map_err(|e| Error::io("write", &mark, e))?;
    let mut options = std::ffi::OsString::from("lowerdir=");
    options.push(lower);
    options.push(",upperdir=");
    options.push(&upper);
    options.push(",workdir=");
    options.push(&work);
    let out = Command::new("fuse-overlayfs")
        .arg("-o")
        .arg(&options)
        .arg(target)
        .output()
        .map_err(|e| {
            let e = if e.kind() == io::ErrorKind::NotFound {
                io::Error::new(
                    e.kind(),
                    "a writable fuse container without root needs fuse-overlayfs \
                     (Debian's package fuse-overlayfs); a read-only one does not",
                )
            } else {
                e
            };
            Error::io("run fuse-overlayfs on", target, e)
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::io(
            "mount fuse-overlayfs at",
            target,
            io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
        ))
    }
}

impl MountBackend for FuseBackend {
    fn name(&self) -> &'static str {
        "fuse"
    }

    fn check(&self, _store: &Store) -> Result<()> {
        let dev = Path::new("/dev/fuse");
        if !dev.exists() {
            return Err(Error::io(
                "open",
                dev,
                io::Error::new(
                    io::ErrorKind::NotFound,
                    "the kernel offers no FUSE here (load the fuse module); use the copy backend",
                ),
            ));
        }
        Ok(())
    }

    fn mount(&self, store: &Store, view: &ViewSpec<'_>) -> Result<()> {
        let target = target(view)?;
        let point = view_point(view)?;
        if state(view)? == State::Dead {
            self.unmount(store, view)?;
        }
        if !view.read_only {
            fs_err::create_dir_all(&point).map_err(|e| Error::io("create directory", &point, e))?;
        }
        let mut served = Store::open(store.path())?;
        served.limit_frame_cache(SERVER_FRAME_CACHE);
        // A lazy image's: FuseView sets the source on the store it serves.
        let served = Arc::new(served);
        let fuse = FuseView::mount(served, &view.image, &point, &self.options)?;
        if !view.read_only
            && let Err(err) = mount_upper(store, view, &point, target)
        {
            drop(fuse);
            return Err(err);
        }
        let pid = view.state.join(PID_FILE);
        fs_err::write(&pid, format!("{}\n", std::process::id()))
            .map_err(|e| Error::io("write", &pid, e))?;
        let overlay = (!view.read_only).then(|| target.to_path_buf());
        self.lock().insert(
            view.state.to_path_buf(),
            Served {
                view: fuse,
                overlay,
            },
        );
        Ok(())
    }

    fn unmount(&self, _store: &Store, view: &ViewSpec<'_>) -> Result<()> {
        let target = target(view)?;
        let point = view_point(view)?;
        let dead = state(view)? == State::Dead;
        if !view.read_only {
            unmount_point(target, dead)?;
        }
        let served = self.lock().remove(view.state);
        match served {
            Some(served) => served.view.unmount()?,
            // Served by another process (which then ends), or dead.
            None => unmount_point(&point, dead)?,
        }
        let pid = view.state.join(PID_FILE);
        match std::fs::remove_file(&pid) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", &pid, e)),
        }
    }

    fn is_mounted(&self, view: &ViewSpec<'_>) -> Result<bool> {
        Ok(state(view)? == State::Live)
    }

    fn changes(&self, store: &Store, view: &ViewSpec<'_>) -> Result<Layer> {
        let upper = overlay::upper_dir(view);
        if view.read_only || !upper.is_dir() {
            return Ok(Layer::empty());
        }
        let writer = if view.state.join(FUSE_OVERLAYFS_MARK).exists() {
            overlay::upper::Writer::FuseOverlayfs
        } else {
            overlay::upper::Writer::Kernel
        };
        overlay::upper::layer_from_upper(store, &upper, view.base, writer)
    }

    fn usage(&self, _store: &Store, view: &ViewSpec<'_>) -> Result<Usage> {
        overlay::upper_usage(view)
    }

    fn remove(&self, store: &Store, view: &ViewSpec<'_>) -> Result<()> {
        self.unmount(store, view)?;
        let upper = overlay::upper_dir(view);
        crate::tree::forget_stat_cache(store, &upper);
        for dir in [
            upper,
            view.state.join(overlay::WORK),
            view.state.join(LOWER),
            view.state.join(".upper-tmp"),
        ] {
            overlay::extract::remove_tree(&dir)?;
        }
        Ok(())
    }
}
