//! The `overlay` backend: the kernel's overlayfs.
//!
//! - **Layers** are extracted once, into `<store>/mounts/layers/<stack key>/`
//!   ([`extract`]), and shared by every container and view that stacks them;
//!   they are never written after they are renamed into place.
//! - **A container** keeps its changes in `containers/<name>/upper/` (with
//!   overlayfs's `work/` beside it); mounting stacks the image's layer
//!   directories below it with the new mount API ([`kernel`]), so an image of
//!   any number of layers mounts (more than 500: the bottom ones are merged).
//!   A read-only view has no upper directory: the kernel refuses every
//!   write with `EROFS`.
//! - **Commit** reads the upper directory back as a layer ([`upper`]):
//!   whiteouts and opaque directories in overlayfs's form become the layer's.
//! - **Crashes**: the upper directory is the container's whole state beside
//!   the lifecycle's `meta`; a mount left behind by a killed process is still
//!   live and can be used, committed or unmounted, and after a reboot the
//!   container mounts again with its changes.
//!
//! The backend needs `CAP_SYS_ADMIN` (root); without it
//! [`MountBackend::check`] fails with an error naming the `copy` backend.
//! Limits: a renamed lower directory cannot be recorded in a layer on its
//! own, so overlayfs is mounted without `redirect_dir` and renaming a
//! directory that comes from the image fails with `EXDEV` (`mv` and most tools
//! then copy it); xattrs named `trusted.overlay.*` in an image are reserved
//! by overlayfs and not shown.

pub(crate) mod extract;
pub(crate) mod kernel;
pub(crate) mod upper;

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use self::extract::{LayerCache, remove_tree, stack_keys};
use self::kernel::OverlaySpec;
use super::{MountBackend, Usage, ViewSpec};
use crate::error::{Error, Result};
use crate::fsutil::confine::ConfinedDir;
use crate::fsutil::durable::sync_dir;
use crate::id::ImageId;
use crate::store::Store;
use crate::tree::{CheckoutOptions, Entry, Layer, Metadata, Snapshot, Timestamp, TreePath};

/// The upper directory in a container's state directory.
const UPPER: &str = "upper";
/// overlayfs's work directory, beside it.
pub(crate) const WORK: &str = "work";

/// The kernel's overlayfs as a [`MountBackend`]: layers extracted once and
/// shared, the container's changes in its upper directory. Needs
/// `CAP_SYS_ADMIN`.
///
/// ```no_run
/// use std::sync::Arc;
/// use layerstore::{Store, TreePath};
/// use layerstore::mount::{Containers, OverlayBackend, PrepareOptions};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = Store::open("/var/lib/layerstore")?;
/// let containers = Containers::new(&store).with_backend(Arc::new(OverlayBackend::new()));
/// let image = store.resolve_image("debian:12")?;
/// let options = PrepareOptions::default().target("/run/box");
/// containers.prepare("box", &image, &options)?; // overlayfs mounted at /run/box
/// std::fs::write("/run/box/etc/motd", "hello\n")?;
/// let child = containers.commit("box", &Default::default())?;
/// containers.remove("box")?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Default)]
pub struct OverlayBackend {}

impl OverlayBackend {
    /// The backend.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Extracts the layers of image `id` that are not extracted yet (the
    /// first mount of a container of it does the same), so that mounting is
    /// quick; returns the lower directories, bottom first.
    ///
    /// # Errors
    /// The store's errors reading the image and its layers;
    /// [`Store::checkout`]'s errors (which name the path).
    pub fn extract(store: &Store, id: &ImageId) -> Result<Vec<PathBuf>> {
        LayerCache::new(store).ensure(store, &store.image(id)?)
    }

    /// Deletes the extracted layers (`<store>/mounts/layers/`) that no live
    /// image stacks: live images are those tagged or pinned (by a container,
    /// as its parent or last commit). What interrupted extractions left is
    /// deleted too, unless the process that writes it still runs. Returns the
    /// directories deleted. `layerstore gc` runs it after [`Store::gc`].
    ///
    /// # Errors
    /// The store's errors reading refs and images; [`Error::Io`] naming a
    /// directory that cannot be deleted.
    pub fn prune(store: &Store) -> Result<Vec<PathBuf>> {
        // Nothing ever extracted: no image needs reading to decide.
        if !crate::store::layout::layer_cache(store.path()).exists() {
            return Ok(Vec::new());
        }
        let mut images: Vec<ImageId> = store.tags()?.into_iter().map(|(_, id)| id).collect();
        for group in store.pin_groups()? {
            for name in store.list_refs(&group)? {
                for id in store.pins(&group, &name)? {
                    images.push(ImageId::from_bytes(*id.as_bytes()));
                }
            }
        }
        let mut keep = HashSet::new();
        for id in images {
            match store.image(&id) {
                Ok(image) => keep.extend(stack_keys(&image)),
                // A pin of something else than an image, or a dangling one.
                Err(Error::ObjectNotFound { .. } | Error::Malformed { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        LayerCache::new(store).prune(&keep)
    }
}

/// The paths of a view's state.
pub(crate) fn upper_dir(view: &ViewSpec<'_>) -> PathBuf {
    view.state.join(UPPER)
}

fn target<'v>(view: &ViewSpec<'v>) -> Result<&'v Path> {
    view.target.ok_or_else(|| Error::Container {
        name: view.name.to_owned(),
        reason: "the overlay backend needs a target directory".to_owned(),
    })
}

/// Makes the upper and work directories of a new container: the upper one
/// with the base's root metadata (overlayfs shows the root with the upper
/// directory's), through a temporary name so that it appears whole. `top` is
/// the topmost lower directory of the image's layers, if it has any.
pub(crate) fn create_upper(store: &Store, view: &ViewSpec<'_>, top: Option<&Path>) -> Result<()> {
    let upper = upper_dir(view);
    let work = view.state.join(WORK);
    if !upper.is_dir() {
        let tmp = view.state.join(".upper-tmp");
        remove_tree(&tmp)?;
        let root = match top {
            Some(top) => Entry::dir(TreePath::ROOT, root_metadata(top)?),
            None => view.base.root()?,
        };
        let root_only = Snapshot::from_sorted(vec![root])?;
        store.checkout(&root_only, &tmp, &CheckoutOptions::default())?;
        std::fs::rename(&tmp, &upper).map_err(|e| Error::io("rename into place", &upper, e))?;
        sync_dir(view.state)?;
    }
    match std::fs::create_dir(&work) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::io("create directory", &work, e)),
    }
}

/// The image's root metadata, read from the root of its topmost extracted
/// layer (each layer's directory has the root as the tree has it at that
/// layer, see [`extract`]) rather than from the image's tree, which would
/// cost time in proportion to the image's size. overlayfs's own xattrs are
/// left out, as everywhere in a layer's directory.
#[allow(
    clippy::unnecessary_cast,
    reason = "the widths of struct stat's fields differ by architecture"
)]
fn root_metadata(top: &Path) -> Result<Metadata> {
    let dir = ConfinedDir::open(top)?.open_dir(b"")?;
    let st = dir.stat()?;
    let xattrs = dir
        .xattrs()?
        .into_iter()
        .filter(|(name, _)| !name.starts_with(extract::OVERLAY_XATTR_PREFIX))
        .collect();
    Ok(Metadata {
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        mtime: Timestamp::new(st.st_mtime as i64, st.st_mtime_nsec as u32),
        xattrs,
    })
}

/// What a container's upper directory adds over its image: every entry in
/// it (the root when changed), and the bytes of its files, each inode once.
/// The `overlay` backend's usage, and the writable `fuse` one's.
pub(crate) fn upper_usage(view: &ViewSpec<'_>) -> Result<Usage> {
    let upper = upper_dir(view);
    let mut usage = Usage::default();
    if !upper.is_dir() {
        return Ok(usage);
    }
    // The root is always in the upper directory; it counts when changed.
    let root = std::fs::symlink_metadata(&upper).map_err(|e| Error::io("stat", &upper, e))?;
    let base = view.base.root()?.meta;
    let mtime = (root.mtime(), u32::try_from(root.mtime_nsec()).unwrap_or(0));
    if (root.mode() & 0o7777, root.uid(), root.gid(), mtime)
        != (
            base.mode,
            base.uid,
            base.gid,
            (base.mtime.secs, base.mtime.nanos),
        )
    {
        usage.inodes += 1;
    }
    let mut seen = HashSet::new();
    let mut pending = vec![upper];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::io("read directory", &dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("read directory", &dir, e))?;
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).map_err(|e| Error::io("stat", &path, e))?;
            usage.inodes += 1;
            if meta.is_dir() {
                pending.push(path);
            } else if meta.is_file() && seen.insert(meta.ino()) {
                usage.size += meta.len();
            }
        }
    }
    Ok(usage)
}

impl MountBackend for OverlayBackend {
    fn name(&self) -> &'static str {
        "overlay"
    }

    fn check(&self, store: &Store) -> Result<()> {
        kernel::check_can_mount(store.path())
    }

    fn mount(&self, store: &Store, view: &ViewSpec<'_>) -> Result<()> {
        let target = target(view)?;
        let image = store.image(&view.image)?;
        let cache = LayerCache::new(store);
        let mut lowers = cache.ensure(store, &image)?;
        lowers.reverse();
        if view.read_only {
            // The kernel wants two lowers when there is no upper.
            while lowers.len() < 2 {
                lowers.push(cache.empty_dir(lowers.len())?);
            }
            kernel::mount(
                target,
                &OverlaySpec {
                    lowers: &lowers,
                    upper: None,
                },
            )
        } else {
            let top = lowers.first().cloned();
            if lowers.is_empty() {
                lowers.push(cache.empty_dir(0)?);
            }
            create_upper(store, view, top.as_deref())?;
            let (upper, work) = (upper_dir(view), view.state.join(WORK));
            kernel::mount(
                target,
                &OverlaySpec {
                    lowers: &lowers,
                    upper: Some((&upper, &work)),
                },
            )
        }
    }

    fn unmount(&self, _store: &Store, view: &ViewSpec<'_>) -> Result<()> {
        match view.target {
            Some(target) if kernel::is_mount_point(target) => kernel::unmount_at(target),
            _ => Ok(()),
        }
    }

    fn is_mounted(&self, view: &ViewSpec<'_>) -> Result<bool> {
        Ok(view.target.is_some_and(kernel::is_mount_point))
    }

    fn changes(&self, store: &Store, view: &ViewSpec<'_>) -> Result<Layer> {
        let upper = upper_dir(view);
        if view.read_only || !upper.is_dir() {
            return Ok(Layer::empty());
        }
        upper::layer_from_upper(store, &upper, view.base, upper::Writer::Kernel)
    }

    fn usage(&self, _store: &Store, view: &ViewSpec<'_>) -> Result<Usage> {
        upper_usage(view)
    }

    fn remove(&self, store: &Store, view: &ViewSpec<'_>) -> Result<()> {
        self.unmount(store, view)?;
        let upper = upper_dir(view);
        // The scan's stat cache of the upper directory goes with it.
        crate::tree::forget_stat_cache(store, &upper);
        for dir in [upper, view.state.join(WORK), view.state.join(".upper-tmp")] {
            remove_tree(&dir)?;
        }
        Ok(())
    }
}
