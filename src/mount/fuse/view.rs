//! A lazy view mounted by this process: [`FuseView`], the handle whose drop
//! unmounts, serving on threads of its own.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fuser::{Config, MountOption, SessionACL};

use super::content::Content;
use super::nodes::Nodes;
use super::serve::LazyFs;
use crate::error::{Error, Result};
use crate::id::{ChunkId, ImageId, SnapshotId};
use crate::store::Store;
use crate::tree::TreePath;

/// Whether a filesystem type of `/proc/self/mountinfo` is FUSE's: `fuse`
/// for a view mounted by root (the kernel's type, the subtype aside),
/// `fuse.layerstore` through `fusermount3`.
pub(crate) fn is_fuse_type(fstype: &str) -> bool {
    fstype == "fuse" || fstype.starts_with("fuse.")
}

/// How a lazy view is served.
#[derive(Clone)]
#[non_exhaustive]
pub struct FuseOptions {
    /// Let every user of the machine reach the view (`allow_other`), the
    /// kernel still checking each access against the image's modes. Needs
    /// root, or `user_allow_other` in `/etc/fuse.conf`. Default: only the
    /// user who mounts it (and, through an overlay over it, the overlay's users).
    pub allow_other: bool,
    /// Threads answering the kernel's requests (default 4).
    pub threads: usize,
    /// Where to record the files read, in the order of their first read (a
    /// prefetch list for lazy images: `push --prefetch`). While recording,
    /// the view does not hand the files after a file first read to the
    /// kernel ahead of their readers, so that every first read reaches it.
    pub record_reads: Option<ReadLog>,
    /// Where the view's store fetches the chunks it lacks
    /// ([`FuseOptions::chunk_source`]). Kept unwind-safe as the options were
    /// before they could hold one: a source that panics takes the read down
    /// with it.
    source: Option<SourceHandle>,
}

/// A chunk source held by [`FuseOptions`].
#[derive(Clone)]
struct SourceHandle(Arc<dyn crate::store::ChunkSource>);

impl std::panic::UnwindSafe for SourceHandle {}
impl std::panic::RefUnwindSafe for SourceHandle {}

impl std::fmt::Debug for FuseOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FuseOptions")
            .field("allow_other", &self.allow_other)
            .field("threads", &self.threads)
            .field("record_reads", &self.record_reads.is_some())
            .field("chunk_source", &self.source.is_some())
            .finish()
    }
}

impl Default for FuseOptions {
    fn default() -> Self {
        Self {
            allow_other: false,
            threads: 4,
            record_reads: None,
            source: None,
        }
    }
}

/// The files a view was asked to read, each once, in the order of their
/// first read ([`FuseOptions::record_reads`]). A handle: clones share the log.
#[derive(Debug, Clone, Default)]
pub struct ReadLog(Arc<std::sync::Mutex<(Vec<TreePath>, std::collections::HashSet<u64>)>>);

impl ReadLog {
    /// An empty log.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The files read so far, in the order of their first read.
    #[must_use]
    pub fn paths(&self) -> Vec<TreePath> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0
            .clone()
    }

    /// Records a read of the file `path` (inode `ino`).
    pub(super) fn record(&self, ino: u64, path: &TreePath) {
        let mut log = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if log.1.insert(ino) {
            log.0.push(path.clone());
        }
    }
}

impl FuseOptions {
    /// Sets [`FuseOptions::allow_other`].
    #[must_use]
    pub fn allow_other(mut self, allow: bool) -> Self {
        self.allow_other = allow;
        self
    }

    /// Where the view's store fetches the chunks it lacks (a lazy image's
    /// registry, [`LazyImage::source`](crate::oci::LazyImage::source)): set
    /// on the store the view reads ([`Store::set_chunk_source`]); what it
    /// fetched is flushed when the view ends.
    #[must_use]
    pub fn chunk_source(mut self, source: Arc<dyn crate::store::ChunkSource>) -> Self {
        self.source = Some(SourceHandle(source));
        self
    }

    /// Records the files read into `log` ([`FuseOptions::record_reads`]).
    #[must_use]
    pub fn record_reads(mut self, log: ReadLog) -> Self {
        self.record_reads = Some(log);
        self
    }

    /// Sets [`FuseOptions::threads`] (at least 1).
    #[must_use]
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }
}

/// An image shown read-only at a directory over FUSE, straight from the
/// store: mounting decodes the root directory and nothing else; directories
/// are read when first looked into and file content a chunk at a time when
/// read, every chunk verified. Served by threads of this process until the
/// handle is dropped or [`unmount`](Self::unmount)ed, or the directory is
/// unmounted from outside (then [`wait`](Self::wait) returns).
///
/// ```no_run
/// use std::sync::Arc;
/// use layerstore::Store;
/// use layerstore::mount::{FuseOptions, FuseView};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = Arc::new(Store::open("/var/lib/layerstore")?);
/// let image = store.resolve_image("debian:12")?;
/// let view = FuseView::mount(store, &image, "/mnt/debian", &FuseOptions::default())?;
/// let os = std::fs::read_to_string("/mnt/debian/etc/os-release")?;
/// drop(view); // unmounted
/// # Ok(())
/// # }
/// ```
///
/// Mounting needs `/dev/fuse` and either root or `fusermount3` (Debian's
/// `fuse3`). The view is mounted `ro`, `nosuid`, `nodev` and with
/// `default_permissions`: the kernel checks every access against the
/// image's modes and owners.
pub struct FuseView {
    session: Option<fuser::BackgroundSession>,
    target: PathBuf,
    /// The store, when it fetches from a chunk source: flushed at the end.
    fetching: Option<Arc<Store>>,
}

impl std::fmt::Debug for FuseView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FuseView")
            .field("target", &self.target)
            .field("live", &self.session.is_some())
            .field("fetching", &self.fetching.is_some())
            .finish()
    }
}

impl FuseView {
    /// Where a detached server of a view of `image` of `store` writes its
    /// log: `mounts/lazy/<image>.log` (its directory created).
    ///
    /// # Errors
    /// [`Error::Io`] naming the directory if it cannot be made.
    pub fn log_path(store: &Store, image: &ImageId) -> Result<PathBuf> {
        let dir = crate::store::layout::lazy_views(store.path());
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create directory", &dir, e))?;
        Ok(dir.join(format!("{}.log", image.to_hex())))
    }

    /// Shows image `image` of `store` at `target`, an existing directory.
    ///
    /// # Errors
    /// The store's errors reading the image and its root directory;
    /// [`Error::Io`] naming `target` if it cannot be mounted (no
    /// `/dev/fuse`, no `fusermount3` without root, `allow_other` not
    /// permitted, …).
    pub fn mount(
        store: Arc<Store>,
        image: &ImageId,
        target: impl AsRef<Path>,
        options: &FuseOptions,
    ) -> Result<Self> {
        let tree = store.image(image)?.rootfs();
        Self::mount_tree(store, tree, target, options)
    }

    /// Shows the tree `tree` of `store` at `target`, as [`FuseView::mount`].
    ///
    /// # Errors
    /// As [`FuseView::mount`].
    pub fn mount_tree(
        store: Arc<Store>,
        tree: SnapshotId,
        target: impl AsRef<Path>,
        options: &FuseOptions,
    ) -> Result<Self> {
        let target = target.as_ref();
        if let Some(source) = &options.source {
            store.set_chunk_source(Some(Arc::clone(&source.0)));
        }
        let fetching = store.has_chunk_source().then(|| Arc::clone(&store));
        let nodes = Nodes::new(Arc::clone(&store), ChunkId::from(tree))?;
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName(format!("layerstore:{}", short(&tree))),
            MountOption::Subtype("layerstore".to_owned()),
            MountOption::DefaultPermissions,
            MountOption::RO,
            MountOption::NoSuid,
            MountOption::NoDev,
            MountOption::NoAtime,
        ];
        config.acl = if options.allow_other {
            SessionACL::All
        } else {
            SessionACL::Owner
        };
        config.n_threads = Some(options.threads.max(1));
        config.clone_fd = options.threads > 1;
        let content = Arc::new(Content::new(store));
        let fs = LazyFs::new(nodes, Arc::clone(&content), options.record_reads.clone());
        let session = fuser::Session::new(fs, target, &config)
            .map_err(|e| Error::io("mount a FUSE view at", target, explain(e)))?;
        content.connect(session.notifier());
        let session = session
            .spawn()
            .map_err(|e| Error::io("serve the FUSE view at", target, e))?;
        widen_read_ahead(target);
        Ok(Self {
            session: Some(session),
            target: target.to_path_buf(),
            fetching,
        })
    }

    /// Where the view is mounted.
    #[must_use]
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Unmounts the view and stops its threads.
    ///
    /// # Errors
    /// [`Error::Io`] naming the target: `EBUSY` if a file is open in it or a
    /// process works beneath it (the view then stays mounted and served).
    pub fn unmount(mut self) -> Result<()> {
        self.stop()
    }

    /// Serves until the view is unmounted from outside (`umount`,
    /// `fusermount3 -u`, `layerstore umount`): what a server in the
    /// foreground does.
    ///
    /// # Errors
    /// [`Error::Io`] naming the target if serving failed.
    pub fn wait(mut self) -> Result<()> {
        let served = match self.session.take() {
            Some(session) => session
                .join()
                .map_err(|e| Error::io("serve the FUSE view at", &self.target, e)),
            None => Ok(()),
        };
        let flushed = self.flush_fetched();
        served.and(flushed)
    }

    /// Makes durable what the view's store fetched from its chunk source.
    fn flush_fetched(&mut self) -> Result<()> {
        match self.fetching.take() {
            Some(store) => store.flush(),
            None => Ok(()),
        }
    }

    fn stop(&mut self) -> Result<()> {
        let Some(session) = self.session.take() else {
            return self.flush_fetched();
        };
        let unmounted = session
            .umount_and_join()
            .map_err(|e| Error::io("unmount", &self.target, e));
        let flushed = self.flush_fetched();
        unmounted.and(flushed)
    }
}

impl Drop for FuseView {
    fn drop(&mut self) {
        if let Err(err) = self.stop() {
            eprintln!("layerstore: {err}");
        }
    }
}

/// The first hex digits of a tree id, for the mount's source name.
fn short(tree: &SnapshotId) -> String {
    let id = tree.to_string();
    id.rsplit(':')
        .next()
        .unwrap_or(&id)
        .chars()
        .take(12)
        .collect()
}

/// A mount error with what to do about it.
fn explain(e: std::io::Error) -> std::io::Error {
    let hint = match e.kind() {
        std::io::ErrorKind::NotFound => {
            "; mounting FUSE without root needs fusermount3 (Debian's fuse3) and /dev/fuse"
        }
        std::io::ErrorKind::PermissionDenied => {
            "; allow_other needs root or user_allow_other in /etc/fuse.conf"
        }
        _ => "",
    };
    if hint.is_empty() {
        e
    } else {
        std::io::Error::new(e.kind(), format!("{e}{hint}"))
    }
}

/// Lets the kernel read ahead 1 MiB at a time on the view (its default is
/// 128 KiB, and a FUSE server cannot ask for more at mount time): the
/// view's backing device's `read_ahead_kb`, which only root may write. A
/// view works the same without it, reading in smaller requests.
fn widen_read_ahead(target: &Path) {
    let Ok(st) = rustix::fs::stat(target) else {
        return;
    };
    let (major, minor) = (rustix::fs::major(st.st_dev), rustix::fs::minor(st.st_dev));
    let knob = format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb");
    let _ = std::fs::write(knob, b"1024");
}
