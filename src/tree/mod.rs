//! The tree model: entries, snapshots, layers, images.
//!
//! Everything here is pure and in memory: paths ([`TreePath`]), entries
//! ([`Entry`]), whole trees ([`Snapshot`]), change sets ([`Layer`]) and the
//! algebra between them (`diff`, `apply`, `flatten`, `changes`).

pub(crate) mod codec;
pub(crate) mod diff;
pub(crate) mod entry;
pub(crate) mod fsck;
pub(crate) mod gc;
pub(crate) mod image;
pub(crate) mod layer;
mod objects;
pub(crate) mod path;
pub(crate) mod snapshot;

pub use self::{
    diff::{Change, ChangeKind},
    entry::{Entry, EntryKind, Metadata, Timestamp},
    fsck::{AffectedImage, FsckOptions, FsckReport, Problem},
    image::{History, Image, ImageConfig},
    layer::{Layer, flatten},
    path::TreePath,
    snapshot::{Children, Snapshot},
};
