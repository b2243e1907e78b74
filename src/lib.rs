//! # layerstore
//!
//! An embeddable, content-addressed store for container-image layers.
//!
//! Layers are stored over a deduplicating chunk store: content is cut into
//! content-defined chunks (`FastCDC` 2020, 16/64/256 KiB), each named by the
//! BLAKE3 hash of its bytes and stored once, zstd-compressed, in append-only
//! pack files with sorted, memory-mapped indexes. Every read is verified
//! against the chunk's id.
//!
//! The crate is built in strata, each using only those below it: the chunk
//! store ([`Store`]'s chunk operations), the tree model and its stored form
//! ([`Snapshot`], [`Layer`], [`Image`], and [`Store`]'s tree operations), then
//! copy-on-write views ([`mount`]), OCI exchange ([`oci`]) and builds
//! ([`build`]), each entered through a type that borrows the store. Where each
//! concept lives and how data flows through it: `docs/ARCHITECTURE.md` in the
//! repository; the command line's contract: `docs/CLI.md`.
//!
//! ```
//! use std::io::{Read, Seek, SeekFrom};
//! use layerstore::{Store, StoreOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::create(dir.path().join("store"), &StoreOptions::default())?;
//!
//! let content = b"the same bytes twice ".repeat(10_000);
//! let first = store.put_bytes(&content)?;
//! let second = store.put_bytes(&content)?; // deduplicated: nothing new is written
//! assert_eq!(first, second);
//! store.flush()?; // durable from here on
//!
//! let mut reader = store.reader(&first);
//! reader.seek(SeekFrom::Start(21))?;
//! let mut word = [0u8; 3];
//! reader.read_exact(&mut word)?;
//! assert_eq!(&word, b"the");
//!
//! let stats = store.stats()?;
//! assert!(stats.stored_bytes < content.len() as u64 / 10);
//! # Ok(())
//! # }
//! ```

pub mod build;
mod error;
mod fsutil;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod id;
pub mod mount;
pub mod oci;
mod progress;
mod store;
#[cfg(test)]
mod testing;
mod tree;

/// The README's code blocks, compiled as doctests so that its API tour cannot
/// fall behind the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[cfg(feature = "fault-injection")]
#[doc(hidden)]
pub use crate::fsutil::fault;

pub use crate::{
    error::{Error, ErrorKind, Result},
    id::{ChunkId, ID_PREFIX, ImageId, LayerId, PackId, SnapshotId},
    progress::{Progress, ProgressEvent, ProgressStage},
    store::{
        ChunkReader, ChunkSource, CopyReport, GcReport, PackStats, RootLease, Store, StoreOptions,
        StoreStats,
        chunk_list::{ChunkList, ChunkRef},
    },
    tree::{
        AffectedImage, Change, ChangeKind, CheckoutOptions, CheckoutOutcome, Children, Efficiency,
        Entry, EntryKind, FileCount, FsckOptions, FsckReport, GcOptions, History, HistoryStep,
        Image, ImageConfig, ImageUsage, Layer, LayerEfficiency, Metadata, Problem, ScanOptions,
        ScanOutcome, ScanWarning, ScanWarningKind, Snapshot, StoredTree, SyncOptions, SyncReport,
        TagName, Timestamp, TreePath, WastedPath, flatten,
    },
};
