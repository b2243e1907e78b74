//! The container lifecycle: prepare, view, mount, unmount, commit, remove,
//! stat, walk, usage; state in `<store>/containers/<name>/meta`, parents and
//! committed images pinned in `refs/containers/<name>`.
//!
//! Crash safety: the state directory is created (atomically, so a name is
//! taken once), then `meta` is written durably, then the parent is pinned,
//! then the backend mounts. A crash before `meta` leaves a directory that
//! [`Containers::remove`] deletes and [`Containers::walk`] skips; after it,
//! the container is listed and can be remounted, committed or removed.
//!
//! # Parts
//!
//! This file holds the public types ([`Containers`], its options and
//! [`ContainerInfo`]) and a container's state on disk: its `meta`, its pins,
//! the view a backend is handed. The operations of the lifecycle, built on
//! them, are in `lifecycle`.

mod lifecycle;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{BaseTree, MountBackend, ViewSpec};
use crate::error::{Error, Result};
use crate::fsutil::durable;
use crate::id::{ChunkId, ImageId};
use crate::store::{Store, layout};
use crate::tree::{TagName, Timestamp};

/// The pin group holding each container's parent and last committed image.
const PIN_GROUP: &str = layout::CONTAINER_PINS;
/// The file, in a container's directory, holding its state.
const META: &str = "meta";
/// The first bytes of `meta`: what it is and its format version.
const META_MAGIC: &[u8] = b"layerstore-container 1\n";

/// Checks a container name: 1 to 255 bytes, no `/`, no NUL, not `.` or `..`,
/// no `..` anywhere, not starting with `.` (names are directories of
/// `containers/`, and `.`-names are kept for the lifecycle's own use).
///
/// # Errors
/// [`Error::Container`] naming the name and saying what is wrong.
pub fn validate_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "a container name may not be empty"
    } else if name.len() > 255 {
        "a container name is at most 255 bytes"
    } else if name.contains('/') {
        "a container name may not contain '/'"
    } else if name.contains('\0') {
        "a container name may not contain NUL"
    } else if name.contains("..") {
        "a container name may not contain '..'"
    } else if name.starts_with('.') {
        "a container name may not start with '.'"
    } else if name.chars().any(char::is_control) {
        "a container name may not contain control characters"
    } else {
        return Ok(());
    };
    Err(Error::Container {
        name: name.to_owned(),
        reason: reason.to_owned(),
    })
}

/// How [`Containers::prepare`] makes a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PrepareOptions {
    /// The backend's name; `None` takes [`Containers::pick_backend`] when a
    /// target is given, else the first backend.
    pub backend: Option<String>,
    /// Where to show the view, for backends that need a directory: created
    /// if absent, else it must be an empty directory.
    pub target: Option<PathBuf>,
    /// A read-only view ([`Containers::view`] sets it).
    pub read_only: bool,
    /// Free labels, kept with the container ([`ContainerInfo::labels`]).
    pub labels: BTreeMap<String, String>,
}

impl PrepareOptions {
    /// Uses the backend of this name.
    #[must_use]
    pub fn backend(mut self, backend: impl Into<String>) -> Self {
        self.backend = Some(backend.into());
        self
    }

    /// Shows the view at `target`.
    #[must_use]
    pub fn target(mut self, target: impl Into<PathBuf>) -> Self {
        self.target = Some(target.into());
        self
    }

    /// Makes a read-only view.
    #[must_use]
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Keeps these labels with the container.
    #[must_use]
    pub fn labels(mut self, labels: BTreeMap<String, String>) -> Self {
        self.labels = labels;
        self
    }

    /// Adds one label.
    #[must_use]
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }
}

/// How [`Containers::commit`] records the new image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommitOptions {
    /// Tag the new image with this name.
    pub tag: Option<TagName>,
    /// The history record's comment.
    pub message: String,
}

impl CommitOptions {
    /// Tags the new image with `tag`.
    #[must_use]
    pub fn tag(mut self, tag: TagName) -> Self {
        self.tag = Some(tag);
        self
    }

    /// Records `message` as the history's comment.
    #[must_use]
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }
}

/// What is known of a container ([`Containers::stat`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ContainerInfo {
    /// Its name.
    pub name: String,
    /// The image it is a view of.
    pub image: ImageId,
    /// Its backend's name.
    pub backend: String,
    /// Where it was last mounted (backends with a target directory).
    pub target: Option<PathBuf>,
    /// A read-only view.
    pub read_only: bool,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// When it was made.
    pub created: Timestamp,
    /// The last image committed from it, if any.
    pub committed: Option<ImageId>,
    /// Whether it is mounted now (as its backend sees it).
    pub mounted: bool,
}

/// The container's state as stored in `meta`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    image: ImageId,
    backend: String,
    target: Option<PathBuf>,
    read_only: bool,
    labels: BTreeMap<String, String>,
    created: Timestamp,
}

/// The containers of a store, with the backends that may make them.
///
/// ```
/// use layerstore::{Store, StoreOptions, TreePath};
/// use layerstore::mount::{Containers, PrepareOptions};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let store = Store::create(dir.path().join("store"), &StoreOptions::default())?;
/// let containers = Containers::new(&store);
/// let empty = containers.empty_image()?;
/// let options = PrepareOptions::default().backend("memory");
/// containers.prepare("work", &empty, &options)?;
/// containers.files("work")?.write(&TreePath::new("hello")?, b"world")?;
/// let image = containers.commit("work", &Default::default())?;
/// assert!(store.image_tree(&image)?.get(&TreePath::new("hello")?).is_some());
/// # Ok(())
/// # }
/// ```
pub struct Containers<'s> {
    store: &'s Store,
    backends: Vec<Arc<dyn MountBackend>>,
}

impl std::fmt::Debug for Containers<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.backends.iter().map(|b| b.name()).collect();
        f.debug_struct("Containers")
            .field("store", &self.store.path())
            .field("backends", &names)
            .finish()
    }
}

/// Construction
impl<'s> Containers<'s> {
    /// The containers of `store`, with the [built-in
    /// backends](super::builtin_backends). Add others with
    /// [`Containers::with_backend`].
    #[must_use]
    pub fn new(store: &'s Store) -> Self {
        Self::with_backends(store, super::builtin_backends())
    }

    /// The containers of `store` with exactly these backends, the first one
    /// the default.
    #[must_use]
    pub fn with_backends(store: &'s Store, backends: Vec<Arc<dyn MountBackend>>) -> Self {
        Self { store, backends }
    }

    /// Adds `backend`, in front (it becomes the default), replacing one of
    /// the same name.
    #[must_use]
    pub fn with_backend(mut self, backend: Arc<dyn MountBackend>) -> Self {
        self.backends.retain(|b| b.name() != backend.name());
        self.backends.insert(0, backend);
        self
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &'s Store {
        self.store
    }

    /// The first backend's name.
    #[must_use]
    pub fn default_backend(&self) -> Option<&'static str> {
        self.backends.first().map(|b| b.name())
    }

    /// The backend a container gets when none is named and a target is
    /// given: the first that shows a directory and passes its
    /// [`check`](MountBackend::check) with this store (`overlay` where
    /// permitted, else `copy`, with the built-in backends).
    ///
    /// # Errors
    /// [`Error::Container`] naming `name` if no backend qualifies, with
    /// each one's reason.
    pub fn pick_backend(&self, name: &str) -> Result<&'static str> {
        let mut reasons = Vec::new();
        for backend in &self.backends {
            if !backend.needs_target() {
                continue;
            }
            match backend.check(self.store) {
                Ok(()) => return Ok(backend.name()),
                Err(err) => reasons.push(format!("{}: {err}", backend.name())),
            }
        }
        Err(Error::Container {
            name: name.to_owned(),
            reason: format!(
                "no backend can show a directory here ({})",
                reasons.join("; ")
            ),
        })
    }

    /// The backend named `name`.
    ///
    /// # Errors
    /// [`Error::Container`] naming `container` if there is none.
    fn backend(&self, container: &str, name: &str) -> Result<&Arc<dyn MountBackend>> {
        self.backends
            .iter()
            .find(|b| b.name() == name)
            .ok_or_else(|| Error::Container {
                name: container.to_owned(),
                reason: format!(
                    "unknown backend '{name}' (known: {})",
                    self.backends
                        .iter()
                        .map(|b| b.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
    }

    /// Stores the image of the empty tree (no layers), for containers built
    /// from nothing; returns its id.
    ///
    /// # Errors
    /// As [`Store::put_image`].
    pub fn empty_image(&self) -> Result<ImageId> {
        self.store.put_empty_image()
    }

    /// The directory where container `name` keeps its state
    /// (`<store>/containers/<name>/`: the lifecycle's `meta` and whatever
    /// its backend keeps, such as a `fuse` server's `server.log`). It exists
    /// while the container does.
    ///
    /// # Errors
    /// [`Error::Container`] for an invalid name (see [`validate_name`]).
    pub fn state_dir(&self, name: &str) -> Result<PathBuf> {
        self.dir(name)
    }
}

/// State
impl Containers<'_> {
    fn root(&self) -> PathBuf {
        layout::containers(self.store.path())
    }

    fn dir(&self, name: &str) -> Result<PathBuf> {
        validate_name(name)?;
        Ok(self.root().join(name))
    }

    fn read_meta(&self, name: &str) -> Result<Meta> {
        let dir = self.dir(name)?;
        let path = dir.join(META);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !dir.is_dir() {
                    return Err(Error::ContainerNotFound {
                        name: name.to_owned(),
                    });
                }
                return Err(Error::Container {
                    name: name.to_owned(),
                    reason: "its state is incomplete (made by a process that stopped); remove it"
                        .to_owned(),
                });
            }
            Err(e) => return Err(Error::io("read", &path, e)),
        };
        let body = bytes
            .strip_prefix(META_MAGIC)
            .ok_or_else(|| Error::corrupt(&path, 0, "not a container state file"))?;
        postcard::from_bytes(body)
            .map_err(|e| Error::corrupt(&path, META_MAGIC.len() as u64, format!("bad state: {e}")))
    }

    fn write_meta(&self, name: &str, meta: &Meta) -> Result<()> {
        let dir = self.dir(name)?;
        let mut bytes = META_MAGIC.to_vec();
        bytes.extend(
            postcard::to_allocvec(meta)
                .map_err(|e| Error::InvalidArgument(format!("cannot encode state: {e}")))?,
        );
        durable::write_atomic(&dir, &dir.join(META), &bytes)
    }

    /// Pins the container's parent and, if any, its last commit (which is
    /// known from this pin alone: `meta` is not rewritten by a commit).
    fn pin(&self, name: &str, meta: &Meta, committed: Option<ImageId>) -> Result<()> {
        let mut ids = vec![ChunkId::from(meta.image)];
        ids.extend(committed.map(ChunkId::from));
        self.store.set_pins(PIN_GROUP, name, &ids)
    }

    /// Runs `f` with the backend and view of container `name`.
    fn with_view<T>(
        &self,
        name: &str,
        meta: &Meta,
        f: impl FnOnce(&dyn MountBackend, &ViewSpec<'_>) -> Result<T>,
    ) -> Result<T> {
        let backend = self.backend(name, &meta.backend)?;
        let base = BaseTree::lazy(self.store, meta.image);
        let state = self.dir(name)?;
        f(backend.as_ref(), &view_spec(name, meta, &state, &base))
    }

    fn info(&self, name: &str, meta: Meta) -> Result<ContainerInfo> {
        let mounted = self.with_view(name, &meta, |b, v| b.is_mounted(v))?;
        Ok(ContainerInfo {
            name: name.to_owned(),
            image: meta.image,
            backend: meta.backend,
            target: meta.target,
            read_only: meta.read_only,
            labels: meta.labels,
            created: meta.created,
            committed: self
                .store
                .pins(PIN_GROUP, name)?
                .get(1)
                .map(|c| ImageId::from_bytes(*c.as_bytes())),
            mounted,
        })
    }
}

/// Checks that `target` is an empty directory, creating it if absent.
fn prepare_target(name: &str, target: &Path) -> Result<()> {
    match std::fs::symlink_metadata(target) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs_err::create_dir_all(target).map_err(|e| Error::io("create directory", target, e))
        }
        Err(e) => Err(Error::io("examine", target, e)),
        Ok(m) if !m.is_dir() => Err(Error::Container {
            name: name.to_owned(),
            reason: format!("the target '{}' is not a directory", target.display()),
        }),
        Ok(_) => {
            let mut entries =
                std::fs::read_dir(target).map_err(|e| Error::io("read directory", target, e))?;
            if entries.next().is_some() {
                return Err(Error::DestinationNotEmpty {
                    path: target.to_path_buf(),
                });
            }
            Ok(())
        }
    }
}

/// The view of container `name` (state `meta`, own directory `state`) over
/// the image tree `base`, as a backend is given it.
fn view_spec<'a>(
    name: &'a str,
    meta: &'a Meta,
    state: &'a Path,
    base: &'a BaseTree<'a>,
) -> ViewSpec<'a> {
    ViewSpec {
        name,
        state,
        target: meta.target.as_deref(),
        image: meta.image,
        base,
        read_only: meta.read_only,
    }
}
