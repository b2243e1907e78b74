//! The crate's one error type.

use std::io;
use std::path::PathBuf;

use crate::digest::ChunkId;
use crate::tree::TreePath;

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in layerstore.
///
/// Every variant that concerns a file names its path; data read from disk never
/// causes a panic, it becomes one of these.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call on `path` failed (`op` says which: "open", "read", "fsync", …).
    #[error("could not {op} '{path}': {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// The directory exists but holds no layerstore store (no `config` file).
    #[error("'{path}' is not a layerstore store (no config file)")]
    NotAStore {
        /// The directory that was opened.
        path: PathBuf,
    },

    /// The store's `config` names a format version this build does not know,
    /// typically because a newer layerstore wrote it.
    #[error("'{path}' has store format version {found}; this build reads version {supported}")]
    UnsupportedVersion {
        /// The config file.
        path: PathBuf,
        /// The version found on disk.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },

    /// The store's `config` could not be parsed, or names parameters this build
    /// does not support.
    #[error("bad store config '{path}': {reason}")]
    BadConfig {
        /// The config file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// Bytes on disk do not match what names them: a chunk whose hash differs
    /// from its id, a truncated pack, an index entry pointing past the end of its
    /// pack, a malformed header. No byte of a corrupt chunk is ever returned.
    #[error("corrupt data in '{path}' at offset {offset}: {reason}")]
    Corrupt {
        /// The pack, index or object file holding the bad bytes.
        path: PathBuf,
        /// Where in that file.
        offset: u64,
        /// What check failed.
        reason: String,
    },

    /// A chunk that was asked for is in no index of the store.
    #[error("chunk {id} is not in the store at '{store}'")]
    ChunkNotFound {
        /// The missing chunk.
        id: ChunkId,
        /// The store's directory.
        store: PathBuf,
    },

    /// Another process holds the store's lock in a mode that excludes ours
    /// (for example, garbage collection holds it exclusively).
    #[error("the store at '{path}' is locked by another process ({reason})")]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// Which lock was wanted.
        reason: &'static str,
    },

    /// A string does not parse as an id (`blake3:` followed by 64 hex digits).
    #[error("'{input}' is not a valid id: {reason}")]
    BadId {
        /// The text given.
        input: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// A path given to confined resolution (a tree entry, a tar member, a
    /// hard-link or symlink name) is not a relative `/`-separated path of
    /// normal components: it is empty where a name is needed, absolute, or has
    /// an empty, `.` or `..` component or a NUL byte. Shown lossily when it is
    /// not UTF-8.
    #[error("invalid path '{path}': {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// Resolving a path beneath a root met a symbolic link where a directory
    /// was needed. Such links are never followed, wherever they point, so that
    /// no write can land outside the root.
    #[error("refusing to resolve '{path}' beneath '{root}': '{component}' is a symbolic link")]
    SymlinkInPath {
        /// The root directory that confines the resolution.
        root: PathBuf,
        /// The path being resolved, relative to the root.
        path: String,
        /// The leading part of `path` that is a symbolic link.
        component: String,
    },

    /// An extended-attribute call on `path` failed (`op` says which: "list",
    /// "get", "set", "remove"); `name` is empty when listing.
    #[error("could not {op} extended attribute '{name}' of '{path}': {source}")]
    Xattr {
        /// What was being done.
        op: &'static str,
        /// The file, directory or link concerned.
        path: PathBuf,
        /// The attribute's name, shown lossily when it is not UTF-8.
        name: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// A metadata object (layer, snapshot, image) that was asked for, or that
    /// an image names, is not in the store.
    #[error("{kind} {id} is not in the store at '{store}'")]
    ObjectNotFound {
        /// "layer", "snapshot" or "image".
        kind: &'static str,
        /// Its id.
        id: String,
        /// The store's directory.
        store: PathBuf,
    },

    /// An image reference (tag, id or id prefix) matches no image, or a prefix
    /// matches more than one.
    #[error("no image '{reference}': {reason}")]
    ImageNotFound {
        /// The reference as given.
        reference: String,
        /// Why it did not resolve.
        reason: String,
    },

    /// An argument was out of range (for example a seek before the start of the
    /// content, or a zstd level the library does not accept).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// A snapshot or layer breaks a rule of the tree model: entries out of order
    /// or repeated, a missing root, a parent that is missing or not a directory,
    /// a hard link whose target is missing, not a regular file or not earlier,
    /// a mode outside `0o7777`, a file size that disagrees with its chunks, …
    /// Also what applying a layer returns when the result would be such a tree.
    #[error("invalid tree at '{path}': {reason}")]
    InvalidTree {
        /// The entry concerned (`.` is the root).
        path: TreePath,
        /// Which rule it breaks.
        reason: String,
    },

    /// A checkout's destination exists and is a directory that is not empty.
    /// Checkout writes only into an absent or empty directory, so that what it
    /// leaves there is exactly the snapshot.
    #[error("checkout destination '{path}' is not empty")]
    DestinationNotEmpty {
        /// The destination directory.
        path: PathBuf,
    },

    /// Writing one path of a checkout failed because its content could not be
    /// had: `source` is the store's error ([`Error::Corrupt`] naming the pack
    /// and offset, [`Error::ChunkNotFound`], …) and `path` the file being
    /// written, beneath the destination.
    #[error("could not check out '{path}': {source}")]
    Checkout {
        /// The file being written.
        path: PathBuf,
        /// Why its content could not be read.
        #[source]
        source: Box<Error>,
    },

    /// A snapshot holds something that only a privileged process can create
    /// (a character or block device needs `CAP_MKNOD`), and the process is not
    /// privileged. `CheckoutOptions::skip_devices` skips such entries instead.
    #[error("'{path}' is a {what}; creating it needs root (CAP_MKNOD), or skip devices")]
    NeedsPrivilege {
        /// Where the entry would be created.
        path: PathBuf,
        /// What it is ("character device", "block device").
        what: &'static str,
    },

    /// An OCI image layout, `docker save` archive, manifest, config or layer
    /// tar (from disk or a registry) is malformed or hostile: a blob whose
    /// digest or size differs from its descriptor, a tar member with an
    /// absolute or `..` path, a write through a symbolic link, a hard link
    /// out of the layer, a bad whiteout name, a duplicate entry, a size that
    /// lies, an expansion past the cap (a gzip bomb), … `what` names the
    /// layout, blob or member concerned.
    #[error("{what}: {reason}")]
    Oci {
        /// The layout path, blob digest and/or tar member concerned.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An encoded metadata object (snapshot, layer) could not be decoded: wrong
    /// magic, kind or format version, truncated or trailing bytes, or a body
    /// that is not valid `postcard` for the type.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being decoded ("snapshot", "layer").
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A container (a copy-on-write view, see `mount::Containers`) cannot do
    /// what was asked: its name is invalid or taken, it does not exist, it is
    /// (or is not) mounted, it is read-only, its backend is unknown or
    /// unusable here, or its state in `containers/<name>/` is damaged.
    #[error("container '{name}': {reason}")]
    Container {
        /// The container's name, as given.
        name: String,
        /// What is wrong.
        reason: String,
    },

    /// A build could not be done as written: a Containerfile that does not
    /// parse, an unknown stage or image in `FROM`/`COPY --from`, a `COPY`
    /// source that is missing or leads outside the context, a `RUN` that
    /// failed, timed out or cannot run here. `line` is the Containerfile's
    /// (1-based; 0 when the error is not about one line).
    #[error("{file}:{line}: {reason}")]
    Build {
        /// The Containerfile, as given.
        file: String,
        /// The line of the instruction at fault.
        line: usize,
        /// What is wrong, with the command's output for a failed `RUN`.
        reason: String,
    },

    /// A registry could not be reached, refused a request, or sent something
    /// that does not check out (a blob whose digest differs, a bad manifest).
    #[error("registry '{registry}': {what}")]
    Registry {
        /// The registry host and repository.
        registry: String,
        /// What went wrong.
        what: String,
    },
}

#[allow(
    dead_code,
    reason = "constructors for the store and scan modules, which live on other branches"
)]
impl Error {
    /// An [`Error::Io`] for `op` on `path`.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// An [`Error::Corrupt`] for `path` at `offset`.
    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        Error::Corrupt {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }
}

impl Error {
    /// The `io::ErrorKind` that stands for this error when it travels as an
    /// `io::Error`.
    fn io_kind(&self) -> io::ErrorKind {
        match self {
            Error::Io { source, .. } | Error::Xattr { source, .. } => source.kind(),
            Error::Corrupt { .. }
            | Error::InvalidTree { .. }
            | Error::Malformed { .. }
            | Error::Oci { .. } => io::ErrorKind::InvalidData,
            Error::ChunkNotFound { .. }
            | Error::NotAStore { .. }
            | Error::ObjectNotFound { .. }
            | Error::ImageNotFound { .. } => io::ErrorKind::NotFound,
            Error::InvalidArgument(_) | Error::BadId { .. } | Error::InvalidPath { .. } => {
                io::ErrorKind::InvalidInput
            }
            Error::DestinationNotEmpty { .. } => io::ErrorKind::DirectoryNotEmpty,
            Error::NeedsPrivilege { .. } => io::ErrorKind::PermissionDenied,
            Error::Checkout { source, .. } => source.io_kind(),
            _ => io::ErrorKind::Other,
        }
    }
}

impl From<Error> for io::Error {
    /// Lets [`Error`] travel through `std::io::Read`/`Seek` implementations; the
    /// original error stays reachable through `get_ref`/`into_inner`.
    fn from(err: Error) -> Self {
        io::Error::new(err.io_kind(), err)
    }
}
