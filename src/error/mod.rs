//! The crate's one error type.

use std::io;
use std::path::PathBuf;

use crate::id::ChunkId;

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in layerstore.
///
/// Every variant that concerns a file names its path; data read from disk never
/// causes a panic, it becomes one of these.
///
/// To decide what to do about an error, match on its [`kind`](Error::kind)
/// (what sort of failure it is) rather than on its variant (where it came
/// from) or its message (for people): the variants carry the context, the
/// kind the category, as `std::io::Error` does with `std::io::ErrorKind`.
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
    /// (for example, a repair holds it exclusively).
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

    /// A directory to read from (the root of a scan) is missing or is not a
    /// directory: the caller named the wrong path.
    #[error("'{path}' is not a directory to read: {reason}")]
    NoSuchDirectory {
        /// The path as given.
        path: PathBuf,
        /// What is there instead ("no such file or directory", "not a
        /// directory").
        reason: &'static str,
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
        /// The entry concerned, as `TreePath` displays it: `/`-separated,
        /// non-UTF-8 bytes as `\xNN`, `.` for the root.
        path: String,
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
    /// what was asked: its name is invalid, it is (or is not) mounted, it is
    /// read-only, its backend is unknown or unusable here, or its state in
    /// `containers/<name>/` is damaged. A container that does not exist is
    /// [`Error::ContainerNotFound`], a name that is taken
    /// [`Error::ContainerExists`].
    #[error("container '{name}': {reason}")]
    Container {
        /// The container's name, as given.
        name: String,
        /// What is wrong.
        reason: String,
    },

    /// There is no container of this name (see `mount::Containers`).
    #[error("container '{name}': no such container")]
    ContainerNotFound {
        /// The container's name, as given.
        name: String,
    },

    /// A container of this name exists already, so another cannot be made
    /// under it.
    #[error("container '{name}': a container of this name exists")]
    ContainerExists {
        /// The container's name, as given.
        name: String,
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

    /// Something is too large to be stored as one piece: a metadata object
    /// (an encoded snapshot, layer or image, as for a directory of millions
    /// of entries) larger than a frame may hold.
    #[error("a {what} of {size} bytes is larger than the {max} bytes it may have")]
    TooLarge {
        /// What was to be stored ("metadata object").
        what: &'static str,
        /// Its size in bytes.
        size: u64,
        /// The most it may have.
        max: u64,
    },
}

/// What sort of failure an [`Error`] is: the part of an error to branch on.
///
/// Each [`Error`] variant has one kind (see [`Error::kind`]); several variants
/// share a kind, and new variants and kinds may be added, so a `match` needs
/// a `_` arm.
///
/// # Bad input or system failure
///
/// For a caller that reports errors (the CLI's exit codes, an HTTP status),
/// the kinds fall in two groups:
///
/// - **Bad input**, which the caller can fix by asking differently:
///   [`InvalidInput`](Self::InvalidInput), [`NotFound`](Self::NotFound),
///   [`AlreadyExists`](Self::AlreadyExists), [`TooLarge`](Self::TooLarge),
///   [`PermissionDenied`](Self::PermissionDenied).
/// - **System failure**, where the store, the machine or the network is at
///   fault and asking again the same way may work or need repair:
///   [`Io`](Self::Io), [`Corrupt`](Self::Corrupt), [`Locked`](Self::Locked),
///   [`Unsupported`](Self::Unsupported), [`Remote`](Self::Remote).
///
/// [`NotFound`](Self::NotFound) is bad input when the caller named what is
/// missing (an image reference, a store directory, a chunk or object id),
/// but a sign of an incomplete store when a stored object names it (an image
/// whose layer is gone): [`Error::ChunkNotFound`] and
/// [`Error::ObjectNotFound`] are the variants of the second case, and a
/// caller that only ever passes ids read from the store can count them as
/// system failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// What was asked for does not exist: a store, chunk, object, image or
    /// container.
    NotFound,
    /// An argument, a path, an id, a tree or data given to import (an OCI
    /// layout, a tar, a Containerfile) breaks a rule: it is malformed,
    /// hostile or out of range.
    InvalidInput,
    /// Something is too large to be stored as one piece.
    TooLarge,
    /// The destination of a write already holds something (a checkout
    /// directory that is not empty, a container name that is taken).
    AlreadyExists,
    /// The operation needs a privilege the process lacks (creating a device
    /// needs `CAP_MKNOD`).
    PermissionDenied,
    /// Bytes in the store do not match what names them, or a stored object or
    /// the store's config cannot be decoded.
    Corrupt,
    /// Another process holds the store's lock.
    Locked,
    /// The store was written in a format version this build does not read.
    Unsupported,
    /// A system call failed; the error names the path and the operation, and
    /// its `source` is the `std::io::Error`.
    Io,
    /// A registry could not be reached, refused a request, or sent something
    /// that does not check out.
    Remote,
}

impl ErrorKind {
    /// A short lower-case description, as `std::io::ErrorKind` displays.
    fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::TooLarge => "too large",
            ErrorKind::AlreadyExists => "already exists",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::Corrupt => "corrupt data",
            ErrorKind::Locked => "locked",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Io => "I/O error",
            ErrorKind::Remote => "registry error",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Constructors.
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
    /// What sort of failure this is; see [`ErrorKind`] for which kinds are
    /// the caller's to fix and which the system's.
    ///
    /// An [`Error::Checkout`] has the kind of the error it wraps.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { .. } | Error::Xattr { .. } => ErrorKind::Io,
            Error::NotAStore { .. }
            | Error::ChunkNotFound { .. }
            | Error::ObjectNotFound { .. }
            | Error::ImageNotFound { .. }
            | Error::NoSuchDirectory { .. }
            | Error::ContainerNotFound { .. } => ErrorKind::NotFound,
            Error::UnsupportedVersion { .. } => ErrorKind::Unsupported,
            Error::BadConfig { .. } | Error::Corrupt { .. } | Error::Malformed { .. } => {
                ErrorKind::Corrupt
            }
            Error::Locked { .. } => ErrorKind::Locked,
            Error::BadId { .. }
            | Error::InvalidPath { .. }
            | Error::SymlinkInPath { .. }
            | Error::InvalidArgument(_)
            | Error::InvalidTree { .. }
            | Error::Oci { .. }
            | Error::Container { .. }
            | Error::Build { .. } => ErrorKind::InvalidInput,
            Error::DestinationNotEmpty { .. } | Error::ContainerExists { .. } => {
                ErrorKind::AlreadyExists
            }
            Error::NeedsPrivilege { .. } => ErrorKind::PermissionDenied,
            Error::Checkout { source, .. } => source.kind(),
            Error::Registry { .. } => ErrorKind::Remote,
            Error::TooLarge { .. } => ErrorKind::TooLarge,
        }
    }

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
            | Error::ImageNotFound { .. }
            | Error::NoSuchDirectory { .. } => io::ErrorKind::NotFound,
            Error::InvalidArgument(_) | Error::BadId { .. } | Error::InvalidPath { .. } => {
                io::ErrorKind::InvalidInput
            }
            Error::DestinationNotEmpty { .. } => io::ErrorKind::DirectoryNotEmpty,
            Error::NeedsPrivilege { .. } => io::ErrorKind::PermissionDenied,
            Error::TooLarge { .. } => io::ErrorKind::FileTooLarge,
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

#[cfg(test)]
mod tests;
