//! The tree model: entries, snapshots, layers, images.
//!
//! Everything here but checkout is pure and in memory: paths ([`TreePath`]), entries
//! ([`Entry`]), whole trees ([`Snapshot`]), change sets ([`Layer`]) and the
//! algebra between them (`diff`, `apply`, `flatten`, `changes`); and, over the
//! store, [`Store::checkout`](crate::Store::checkout), which writes a snapshot
//! out as a directory tree.

pub(crate) mod checkout;
pub(crate) mod codec;
pub(crate) mod diff;
pub(crate) mod entry;
pub(crate) mod image;
pub(crate) mod layer;
mod objects;
pub(crate) mod path;
pub(crate) mod snapshot;

pub use self::{
    checkout::{CheckoutOptions, CheckoutOutcome},
    diff::{Change, ChangeKind},
    entry::{Entry, EntryKind, Metadata, Timestamp},
    image::{History, Image, ImageConfig},
    layer::{Layer, flatten},
    path::TreePath,
    snapshot::{Children, Snapshot},
};
