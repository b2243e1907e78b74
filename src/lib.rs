//! # layerstore
//!
//! An embeddable, content-addressed store for container-image layers.
//!
//! Layers are stored over a deduplicating chunk store: content is cut into
//! content-defined chunks (`FastCDC`), each named by the BLAKE3 hash of its bytes
//! and stored once, zstd-compressed, in append-only pack files.

mod digest;
mod error;
mod fsutil;
mod store;
mod tree;

pub use crate::{
    digest::{ChunkId, ID_PREFIX, ImageId, LayerId, PackId, SnapshotId},
    error::{Error, Result},
    store::chunk_list::{ChunkList, ChunkRef},
    tree::{
        Change, ChangeKind, Children, Entry, EntryKind, Layer, Metadata, Snapshot, Timestamp,
        TreePath, flatten,
    },
};
