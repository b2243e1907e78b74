//! The tree model: entries, snapshots, layers, images.
//!
//! Everything here is pure and in memory: paths ([`TreePath`]), entries
//! ([`Entry`]), whole trees ([`Snapshot`]), change sets ([`Layer`]) and the
//! algebra between them (`diff`, `apply`, `flatten`, `changes`); and the one
//! part that touches a filesystem, [`Store::scan`](crate::Store::scan), which
//! walks a directory into a snapshot, storing file contents in the store.

pub(crate) mod codec;
pub(crate) mod diff;
pub(crate) mod entry;
pub(crate) mod layer;
pub(crate) mod path;
pub(crate) mod scan;
pub(crate) mod snapshot;
pub(crate) mod statcache;

pub use self::{
    diff::{Change, ChangeKind},
    entry::{Entry, EntryKind, Metadata, Timestamp},
    layer::{Layer, flatten},
    path::TreePath,
    scan::{ScanOptions, ScanOutcome, ScanWarning, ScanWarningKind},
    snapshot::{Children, Snapshot},
};
