//! The container lifecycle's operations: prepare, view, mount, unmount,
//! commit, remove, stat, walk, labels, usage and files.

use std::collections::BTreeMap;
use std::path::Path;

use super::{
    CommitOptions, ContainerInfo, Containers, META, Meta, PIN_GROUP, PrepareOptions,
    prepare_target, validate_name, view_spec,
};
use crate::error::{Error, Result};
use crate::fsutil::durable;
use crate::id::ImageId;
use crate::mount::{BaseTree, Usage, ViewFiles};
use crate::tree::{History, TagName, Timestamp};

/// The lifecycle
impl Containers<'_> {
    /// Makes a writable container `name`, a view of `image`, and mounts it
    /// (at `options.target`, for backends that need one).
    ///
    /// # Errors
    /// [`Error::ContainerExists`] if the name is taken; [`Error::Container`]
    /// if it is invalid, the backend is unknown, or a target is needed and
    /// not given;
    /// [`Error::DestinationNotEmpty`] if the target holds something; the
    /// backend's [`check`](crate::mount::MountBackend::check) error if it cannot be used
    /// here; [`Error::ObjectNotFound`] if `image` is not stored; the backend's
    /// mount error (nothing is left behind then).
    pub fn prepare(
        &self,
        name: &str,
        image: &ImageId,
        options: &PrepareOptions,
    ) -> Result<ContainerInfo> {
        let dir = self.dir(name)?;
        let backend_name = match &options.backend {
            Some(b) => b.clone(),
            None if options.target.is_some() => self.pick_backend(name)?.to_owned(),
            None => self
                .default_backend()
                .ok_or_else(|| Error::Container {
                    name: name.to_owned(),
                    reason: "no backend is configured".to_owned(),
                })?
                .to_owned(),
        };
        let backend = self.backend(name, &backend_name)?.clone();
        backend.check(self.store)?;
        self.store.image(image)?;
        let target = if backend.needs_target() {
            let target = options.target.as_deref().ok_or_else(|| Error::Container {
                name: name.to_owned(),
                reason: format!("the {backend_name} backend needs a target directory"),
            })?;
            prepare_target(name, target)?;
            Some(std::path::absolute(target).map_err(|e| Error::io("resolve", target, e))?)
        } else {
            None
        };
        let root = self.root();
        fs_err::create_dir_all(&root).map_err(|e| Error::io("create directory", &root, e))?;
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::ContainerExists {
                    name: name.to_owned(),
                });
            }
            Err(e) => return Err(Error::io("create directory", &dir, e)),
        }
        let meta = Meta {
            image: *image,
            backend: backend_name,
            target,
            read_only: options.read_only,
            labels: options.labels.clone(),
            created: Timestamp::now(),
        };
        let made = (|| {
            durable::sync_dir(&root)?;
            self.write_meta(name, &meta)?;
            self.pin(name, &meta, None)?;
            self.with_view(name, &meta, |b, v| b.mount(self.store, v))
        })();
        if let Err(err) = made {
            let _ = self.with_view(name, &meta, |b, v| b.remove(self.store, v));
            let _ = std::fs::remove_dir_all(&dir);
            let _ = self.store.remove_pins(PIN_GROUP, name);
            return Err(err);
        }
        self.stat(name)
    }

    /// Makes a read-only container `name`, a view of `image`: as
    /// [`Containers::prepare`] with [`PrepareOptions::read_only`] set.
    ///
    /// # Errors
    /// As [`Containers::prepare`].
    pub fn view(
        &self,
        name: &str,
        image: &ImageId,
        options: &PrepareOptions,
    ) -> Result<ContainerInfo> {
        let options = options.clone().read_only(true);
        self.prepare(name, image, &options)
    }

    /// Mounts the existing container `name` again, with its changes, at
    /// `target` (or where it was last mounted, if `None`).
    ///
    /// # Errors
    /// [`Error::ContainerNotFound`] if there is no such container;
    /// [`Error::Container`] if it is mounted already; [`Error::DestinationNotEmpty`] if the target holds
    /// something; the backend's mount error.
    pub fn mount(&self, name: &str, target: Option<&Path>) -> Result<ContainerInfo> {
        let mut meta = self.read_meta(name)?;
        if self.with_view(name, &meta, |b, v| b.is_mounted(v))? {
            return Err(Error::Container {
                name: name.to_owned(),
                reason: format!(
                    "already mounted{}",
                    meta.target
                        .as_ref()
                        .map(|t| format!(" at '{}'", t.display()))
                        .unwrap_or_default()
                ),
            });
        }
        // What a crash left (a `fuse` view whose server died under its
        // overlay) goes first: unmounting a view that is not live changes
        // nothing else (the contract of `MountBackend::unmount`).
        self.with_view(name, &meta, |b, v| b.unmount(self.store, v))?;
        if self.backend(name, &meta.backend)?.needs_target() {
            let target = target
                .map(Path::to_path_buf)
                .or_else(|| meta.target.clone())
                .ok_or_else(|| Error::Container {
                    name: name.to_owned(),
                    reason: "a target directory is needed".to_owned(),
                })?;
            prepare_target(name, &target)?;
            let target =
                std::path::absolute(&target).map_err(|e| Error::io("resolve", &target, e))?;
            if meta.target.as_ref() != Some(&target) {
                meta.target = Some(target);
                self.write_meta(name, &meta)?;
            }
        }
        self.with_view(name, &meta, |b, v| b.mount(self.store, v))?;
        self.stat(name)
    }

    /// Unmounts container `name`, keeping its changes.
    ///
    /// # Errors
    /// [`Error::ContainerNotFound`] if there is no such container; the backend's
    /// error (`EBUSY` naming the target) if it is in use.
    pub fn unmount(&self, name: &str) -> Result<()> {
        let meta = self.read_meta(name)?;
        self.with_view(name, &meta, |b, v| b.unmount(self.store, v))
    }

    /// The name of the container last mounted at `target`, if any.
    ///
    /// # Errors
    /// As [`Containers::walk`].
    pub fn by_target(&self, target: &Path) -> Result<Option<String>> {
        let target = std::path::absolute(target).map_err(|e| Error::io("resolve", target, e))?;
        Ok(self
            .walk(|_| true)?
            .into_iter()
            .find(|c| c.target.as_deref() == Some(&target))
            .map(|c| c.name))
    }

    /// Commits container `name`: its changes become a new layer, and a new
    /// image (the parent's layers plus that layer, the parent's config, a
    /// history record) is stored, flushed, pinned by the container (so gc
    /// keeps it) and tagged if asked. The container stays as it is, mounted
    /// or not, and can be committed again later (the next layer is again
    /// relative to the container's parent image).
    ///
    /// # Errors
    /// [`Error::ContainerNotFound`] if there is no such container;
    /// [`Error::Container`] if it is read-only; the backend's error reading the changes; the store's
    /// error writing them. Nothing of the container is lost on error.
    pub fn commit(&self, name: &str, options: &CommitOptions) -> Result<ImageId> {
        let meta = self.read_meta(name)?;
        if meta.read_only {
            return Err(Error::Container {
                name: name.to_owned(),
                reason: "a read-only view cannot be committed".to_owned(),
            });
        }
        let backend = self.backend(name, &meta.backend)?;
        let base = BaseTree::lazy(self.store, meta.image);
        let state = self.dir(name)?;
        let layer = backend.changes(self.store, &view_spec(name, &meta, &state, &base))?;
        // Only the directories the layer changes are read and written.
        let rootfs = self.store.apply_layer(&base.id()?, &layer)?;
        let history = History {
            created_by: format!("layerstore container commit {name}"),
            comment: options.message.clone(),
            created: Some(Timestamp::now()),
            empty_layer: false,
        };
        let image =
            self.store
                .put_child_image_of(Some(&meta.image), &layer, rootfs, None, history)?;
        self.store.flush()?;
        self.pin(name, &meta, Some(image))?;
        if let Some(tag) = &options.tag {
            self.store.set_tag(tag, &image)?;
        }
        Ok(image)
    }

    /// Unmounts and deletes container `name` with its changes, and its pins
    /// (and the lazy mark of its image, if it was the last container of an
    /// image still being fetched: [`Store::mark_lazy`](crate::Store::mark_lazy)).
    /// A container whose state is incomplete (a crash while it was made) is
    /// deleted too.
    ///
    /// # Errors
    /// [`Error::ContainerNotFound`] if there is no such container; the backend's
    /// error if it cannot be unmounted (busy): nothing is deleted then.
    pub fn remove(&self, name: &str) -> Result<()> {
        let dir = self.dir(name)?;
        let mut image = None;
        match self.read_meta(name) {
            Ok(meta) => {
                image = Some(meta.image);
                self.with_view(name, &meta, |b, v| b.remove(self.store, v))?;
            }
            Err(_) if dir.join(META).exists() => {
                // Damaged state: nothing can be mounted from it; delete it.
            }
            Err(err) if !dir.is_dir() => return Err(err),
            Err(_) => {}
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", &dir, e)),
        }
        durable::sync_dir(&self.root())?;
        self.store.remove_pins(PIN_GROUP, name)?;
        // An image still being fetched lazily for this container alone is
        // abandoned with it: no longer kept by its mark.
        if let Some(image) = image
            && self.store.lazy_images()?.contains(&image)
            && self.walk(|c| c.image == image)?.is_empty()
        {
            self.store.unmark_lazy(&image)?;
        }
        Ok(())
    }

    /// Removes the tag `tag` (containerd's `Remove` of a committed
    /// snapshot), refused while a container is a view of the image it names
    /// (remove the container first). Whether the tag existed.
    ///
    /// # Errors
    /// [`Error::Container`] naming the first container that uses the image;
    /// as [`Store::remove_tag`](crate::Store::remove_tag).
    pub fn remove_image(&self, tag: &TagName) -> Result<bool> {
        let Some(image) = self.store.tag(tag)? else {
            return Ok(false);
        };
        if let Some(user) = self.walk(|c| c.image == image)?.into_iter().next() {
            return Err(Error::Container {
                name: user.name,
                reason: format!("is a view of '{tag}' ({image}): remove the container first"),
            });
        }
        self.store.remove_tag(tag)
    }

    /// What is known of container `name`.
    ///
    /// # Errors
    /// [`Error::ContainerNotFound`] if there is no such container;
    /// [`Error::Corrupt`] naming its `meta` if that is damaged.
    pub fn stat(&self, name: &str) -> Result<ContainerInfo> {
        let meta = self.read_meta(name)?;
        self.info(name, meta)
    }

    /// Every container that `filter` accepts, sorted by name. Directories of
    /// `containers/` without complete state (a crash while one was made) are
    /// skipped; [`Containers::remove`] deletes them.
    ///
    /// # Errors
    /// An I/O error naming `containers/`; as [`Containers::stat`].
    pub fn walk(
        &self,
        mut filter: impl FnMut(&ContainerInfo) -> bool,
    ) -> Result<Vec<ContainerInfo>> {
        let root = self.root();
        let entries = match std::fs::read_dir(&root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("read directory", &root, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("read directory", &root, e))?;
            if let Some(name) = entry.file_name().to_str()
                && validate_name(name).is_ok()
                && entry.path().join(META).exists()
            {
                names.push(name.to_owned());
            }
        }
        names.sort();
        let mut out = Vec::new();
        for name in names {
            let info = self.stat(&name)?;
            if filter(&info) {
                out.push(info);
            }
        }
        Ok(out)
    }

    /// Replaces container `name`'s labels.
    ///
    /// # Errors
    /// As [`Containers::stat`]; an I/O error naming `meta`.
    pub fn update_labels(
        &self,
        name: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<ContainerInfo> {
        let mut meta = self.read_meta(name)?;
        meta.labels = labels;
        self.write_meta(name, &meta)?;
        self.info(name, meta)
    }

    /// What container `name`'s own layer uses.
    ///
    /// # Errors
    /// As [`Containers::stat`]; the backend's error.
    pub fn usage(&self, name: &str) -> Result<Usage> {
        let meta = self.read_meta(name)?;
        self.with_view(name, &meta, |b, v| b.usage(self.store, v))
    }

    /// File access to container `name`, which must be mounted.
    ///
    /// # Errors
    /// [`Error::ContainerNotFound`] if there is no such container;
    /// [`Error::Container`] if it is not mounted.
    pub fn files(&self, name: &str) -> Result<Box<dyn ViewFiles + '_>> {
        let meta = self.read_meta(name)?;
        let backend = self.backend(name, &meta.backend)?;
        // One view: `with_view` cannot hand out what borrows the backend, so
        // the check and the file access share this spec.
        let base = BaseTree::lazy(self.store, meta.image);
        let state = self.dir(name)?;
        let spec = view_spec(name, &meta, &state, &base);
        if !backend.is_mounted(&spec)? {
            return Err(Error::Container {
                name: name.to_owned(),
                reason: "not mounted".to_owned(),
            });
        }
        backend.files(self.store, &spec)
    }
}
