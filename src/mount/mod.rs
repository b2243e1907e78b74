//! Copy-on-write views of images: containers.
//!
//! A *container* is a writable (or read-only) view of an image's tree under a
//! name: the image's layers below, the container's own layer on top. How the
//! view is made is a [`MountBackend`]: `memory` (in-process, no target
//! directory), `copy` (the merged tree materialised in a directory, no
//! privilege needed), `overlay` (the kernel's overlayfs over extracted
//! layers), `fuse` (served straight from the store, nothing extracted). The lifecycle —
//! prepare, view, mount, unmount, commit, remove, stat, walk, usage — is the
//! same for every backend and lives in [`Containers`]; its state is in the
//! store, under `containers/<name>/`, so containers survive a restart.
//!
//! # The snapshotter model, mapped
//!
//! The lifecycle follows containerd's snapshotter, with one difference: a
//! *committed* snapshot is an [`Image`](crate::Image) (the parent's layers
//! plus the container's layer), not a further node of a snapshot graph.
//!
//! | containerd | here |
//! | --- | --- |
//! | `Prepare(key, parent)` | [`Containers::prepare`]`(key, parent image, …)` |
//! | `View(key, parent)` | [`Containers::view`] (read-only) |
//! | `Commit(name, key)` | [`Containers::commit`]`(key)` → an image id, tagged `name` if asked ([`CommitOptions::tag`]); the container stays, and may be committed again |
//! | `Remove(key)` of an active snapshot | [`Containers::remove`] |
//! | `Remove(name)` of a committed one | untag the image ([`Store::remove_tag`](crate::Store::remove_tag)); images never depend on each other (each lists all its layers), so nothing refuses it, and [`Store::gc`](crate::Store::gc) keeps whatever a container or tag still needs |
//! | `Stat`, `Walk`, `Usage`, `Update` | [`Containers::stat`], [`Containers::walk`], [`Containers::usage`], [`Containers::update_labels`] |
//! | mounts returned by `Prepare` | the backend mounts at the target itself; [`Containers::files`] gives file access to any backend's view |
//!
//! Each container's parent image, and the last image committed from it, are
//! recorded as refs (`refs/containers/<name>/…`), which garbage collection
//! keeps like tags.

mod base;
mod container;
pub(crate) mod copy;
mod files;
pub(crate) mod fuse;
pub(crate) mod memory;
mod mountinfo;
pub(crate) mod overlay;
mod rescan;

use std::path::Path;

use crate::error::Result;
use crate::id::ImageId;
use crate::store::Store;
use crate::tree::{Layer, Metadata, TreePath};

pub use self::{
    base::BaseTree,
    container::{CommitOptions, ContainerInfo, Containers, PrepareOptions, validate_name},
    copy::CopyBackend,
    files::DirFiles,
    fuse::{FuseBackend, FuseOptions, FuseView, ReadLog},
    memory::MemoryBackend,
    overlay::OverlayBackend,
};

/// The built-in backends, in order of preference: [`Containers::new`] uses
/// them, and a container made without naming a backend gets the first that
/// shows a directory and passes its [`check`](MountBackend::check) here
/// ([`Containers::pick_backend`]). `overlay`, where the kernel and the
/// process's privilege allow it, goes first; `copy` works everywhere;
/// `fuse` (lazy views served by the mounting process) and `memory`
/// (in-process only) are used when named.
#[must_use]
pub fn builtin_backends() -> Vec<std::sync::Arc<dyn MountBackend>> {
    vec![
        std::sync::Arc::new(OverlayBackend::new()),
        std::sync::Arc::new(CopyBackend::new()),
        std::sync::Arc::new(FuseBackend::new()),
        std::sync::Arc::new(MemoryBackend::new()),
    ]
}

/// One view, as a backend sees it: which container, where its state lives,
/// what it shows. Built by [`Containers`] for each backend call.
#[derive(Debug, Clone, Copy)]
pub struct ViewSpec<'a> {
    /// The container's name (validated: see [`validate_name`]).
    pub name: &'a str,
    /// The container's own directory, `<store>/containers/<name>/`. It exists
    /// before [`MountBackend::mount`] is first called. The lifecycle keeps
    /// its file `meta` there; everything else in it is the backend's (an
    /// upper directory, a work directory, a saved layer, …), and it is deleted
    /// with the container.
    pub state: &'a Path,
    /// Where the view is shown: an existing directory, for backends that
    /// [need one](MountBackend::needs_target); `None` for the others.
    pub target: Option<&'a Path>,
    /// The image the view is of.
    pub image: ImageId,
    /// That image's tree, read from the store when a backend first asks for
    /// it ([`BaseTree::get`]): a backend that can do without it (overlay's
    /// mount, every backend's `is_mounted`) makes the call cost the same
    /// whatever the image's size.
    pub base: &'a BaseTree<'a>,
    /// A read-only view: every write through it fails (`EROFS` where the
    /// backend can enforce it on the directory, a clear error otherwise).
    pub read_only: bool,
}

/// A way of making a copy-on-write view of an image.
///
/// Implementations are small: the lifecycle ([`Containers`]) validates names
/// and targets, keeps the container's state and refs, turns the layer
/// returned by [`changes`](MountBackend::changes) into an image, and calls
/// the backend for what only it knows. Every backend passes the conformance
/// suite in `tests/mount/` (one line adds a backend to it).
///
/// Errors name the container's target or state path. A backend never writes
/// outside [`ViewSpec::state`], [`ViewSpec::target`] and the store's public
/// API.
pub trait MountBackend: Send + Sync {
    /// The backend's name, recorded in each container's state and used on
    /// the command line (`overlay`, `copy`, `memory`: the built-in ones). Unique among
    /// the backends of one [`Containers`].
    fn name(&self) -> &'static str;

    /// Whether views need a target directory. `true` (the default) for
    /// backends that show the view as a directory; `false` for in-process
    /// ones (`memory`), which are reached through [`files`](Self::files) only.
    fn needs_target(&self) -> bool {
        true
    }

    /// Whether this process may use the backend with `store`: `Ok` if so,
    /// else an error saying why and what to use instead (for example
    /// [`Error::NeedsPrivilege`](crate::Error::NeedsPrivilege) from `overlay`
    /// without `CAP_SYS_ADMIN`, naming `copy`). Called before
    /// [`mount`](Self::mount) of a new container; the conformance suite calls
    /// it to decide whether to skip. The default accepts.
    ///
    /// # Errors
    /// Why the backend cannot be used here.
    fn check(&self, store: &Store) -> Result<()> {
        let _ = store;
        Ok(())
    }

    /// Makes the view live. Called once for a new container (its state
    /// directory holds only `meta`; the view shows exactly `view.base`), and
    /// again to remount one after [`unmount`](Self::unmount), a restart of the
    /// process or a crash: then the state holds the container's changes and
    /// the view must show them again, changing nothing of them. `view.target`,
    /// when the backend needs one, is an existing empty directory.
    ///
    /// A read-only view refuses writes. On error nothing stays mounted, and
    /// the container's earlier changes are intact.
    ///
    /// # Errors
    /// An I/O error naming the target or state path; the store's error if
    /// the base's content cannot be read.
    fn mount(&self, store: &Store, view: &ViewSpec<'_>) -> Result<()>;

    /// Takes the view down, keeping its changes in `view.state` for a later
    /// [`mount`](Self::mount) or [`changes`](Self::changes). A view that is
    /// not live (never mounted in this boot, or already unmounted) is left as
    /// it is, successfully. Afterwards the target (if any) is an empty
    /// directory again.
    ///
    /// # Errors
    /// [`Error::Io`](crate::Error::Io) with `EBUSY` naming the target if
    /// something still uses it; nothing is changed then.
    fn unmount(&self, store: &Store, view: &ViewSpec<'_>) -> Result<()>;

    /// Whether the view is live now, in this process (for in-process
    /// backends) or on this machine (for mounted ones).
    ///
    /// # Errors
    /// An I/O error naming what could not be examined.
    fn is_mounted(&self, view: &ViewSpec<'_>) -> Result<bool>;

    /// File access to a live view: reading and, unless read-only, writing.
    /// The default serves the target directory with [`DirFiles`], which is
    /// right for every backend that shows the view as a directory.
    ///
    /// # Errors
    /// An error saying the view is not live, or, from the default, that the
    /// backend has no target.
    fn files<'v>(
        &'v self,
        store: &'v Store,
        view: &ViewSpec<'_>,
    ) -> Result<Box<dyn ViewFiles + 'v>> {
        let _ = store;
        match view.target {
            Some(target) => Ok(Box::new(DirFiles::new(target, view.read_only)?)),
            None => Err(crate::Error::Container {
                name: view.name.to_owned(),
                reason: format!("the {} backend has no target directory", self.name()),
            }),
        }
    }

    /// The view's own layer: what it changed over `view.base`, with the
    /// content of every new or changed file stored in `store` (not flushed).
    /// Works whether the view is live or not (after a restart, say), and
    /// changes nothing of the view. The lifecycle applies it to the base to
    /// make the committed image's tree, so it must apply cleanly: whiteouts
    /// and opaque directories name only what is in the base or the layer.
    /// Metadata (mode, owner, mtime to the nanosecond, xattrs) of what changed
    /// is kept exactly.
    ///
    /// # Errors
    /// An I/O error naming the path that could not be read; the store's
    /// error if writing content fails.
    fn changes(&self, store: &Store, view: &ViewSpec<'_>) -> Result<Layer>;

    /// What the view's own layer uses: the bytes and inodes it adds over the
    /// image (for `copy`, what differs from the base; for `overlay`, the upper
    /// directory; for `memory`, the upper layer).
    ///
    /// # Errors
    /// As [`changes`](Self::changes).
    fn usage(&self, store: &Store, view: &ViewSpec<'_>) -> Result<Usage>;

    /// Deletes everything the backend keeps for the view, unmounting it first
    /// if it is live. The lifecycle deletes the state directory afterwards.
    /// Removing what is already gone (after a crash) succeeds.
    ///
    /// # Errors
    /// As [`unmount`](Self::unmount); an I/O error naming what could not be
    /// deleted.
    fn remove(&self, store: &Store, view: &ViewSpec<'_>) -> Result<()>;
}

/// What a view's own layer uses (see [`MountBackend::usage`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of file content the layer adds (new and changed files).
    pub size: u64,
    /// Entries the layer adds or changes (files, directories, links, …),
    /// whiteouts included.
    pub inodes: u64,
}

/// The [`Usage`] of a layer: the sizes of its files, and its entries and
/// whiteouts.
pub(crate) fn layer_usage(layer: &Layer) -> Usage {
    let size = layer
        .upserts()
        .iter()
        .map(|e| match &e.kind {
            crate::tree::EntryKind::File { size, .. } => *size,
            _ => 0,
        })
        .sum();
    Usage {
        size,
        inodes: (layer.upserts().len() + layer.whiteouts().len()) as u64,
    }
}

/// What a path in a view is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link to the bytes given.
    Symlink(Vec<u8>),
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A named pipe.
    Fifo,
}

/// One path of a view, as [`ViewFiles::metadata`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// What it is.
    pub kind: NodeKind,
    /// Its size in bytes (files; 0 otherwise).
    pub size: u64,
    /// Mode, owner, mtime, xattrs.
    pub meta: Metadata,
}

/// File access to a view, the same for every backend. Paths are relative to
/// the view's root ([`TreePath::ROOT`] is the root itself); symbolic links are
/// never followed, not even in the middle of a path (such a path is an
/// error). A read-only view fails every write with `EROFS`
/// ([`std::io::ErrorKind::ReadOnlyFilesystem`] inside [`Error::Io`](crate::Error::Io)).
///
/// Errors are [`Error::Io`](crate::Error::Io) naming the path (under the
/// target, or `<name>:/path` for in-process views) with the system's error
/// kind: `NotFound`, `AlreadyExists`, `DirectoryNotEmpty`, `NotADirectory`,
/// `IsADirectory`, `ReadOnlyFilesystem`.
pub trait ViewFiles {
    /// The content of the regular file `path`.
    ///
    /// # Errors
    /// `NotFound`; `IsADirectory` or `InvalidInput` if it is not a file.
    fn read(&self, path: &TreePath) -> Result<Vec<u8>>;

    /// Makes `path` a regular file holding `content`: created (mode `0o644`,
    /// owned by the process) if absent, replaced if a file. Its parent must
    /// be a directory.
    ///
    /// # Errors
    /// `NotFound` if the parent is missing; `IsADirectory`.
    fn write(&self, path: &TreePath, content: &[u8]) -> Result<()>;

    /// Creates the directory `path` with permission bits `mode`.
    ///
    /// # Errors
    /// `AlreadyExists`; `NotFound` if the parent is missing.
    fn create_dir(&self, path: &TreePath, mode: u32) -> Result<()>;

    /// Creates the symbolic link `path` pointing at `target`.
    ///
    /// # Errors
    /// `AlreadyExists`; `NotFound` if the parent is missing.
    fn symlink(&self, path: &TreePath, target: &[u8]) -> Result<()>;

    /// Removes `path`: a file, link or other non-directory, or a directory
    /// with everything beneath it.
    ///
    /// # Errors
    /// `NotFound`; `InvalidInput` for the root.
    fn remove(&self, path: &TreePath) -> Result<()>;

    /// Moves `from` to `to` (`rename(2)`: a file replaces a file, a directory
    /// an empty directory).
    ///
    /// # Errors
    /// `NotFound`; `DirectoryNotEmpty`; `InvalidInput` for the root or a move
    /// into the moved directory.
    fn rename(&self, from: &TreePath, to: &TreePath) -> Result<()>;

    /// The names in the directory `dir`, sorted (bytewise).
    ///
    /// # Errors
    /// `NotFound`; `NotADirectory`.
    fn list(&self, dir: &TreePath) -> Result<Vec<Vec<u8>>>;

    /// What `path` is, with its metadata (of the link itself for a symlink).
    ///
    /// # Errors
    /// `NotFound`.
    fn metadata(&self, path: &TreePath) -> Result<Node>;

    /// Sets the mode, owner, mtime and xattrs of `path` to `meta` (xattrs not
    /// in `meta` are removed). For a symbolic link only the owner, mtime and
    /// xattrs are set.
    ///
    /// # Errors
    /// `NotFound`; `PermissionDenied` for an owner or xattr the process may
    /// not set.
    fn set_metadata(&self, path: &TreePath, meta: &Metadata) -> Result<()>;
}
