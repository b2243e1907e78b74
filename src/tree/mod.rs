//! The tree model and its stored form: entries, snapshots, layers, images.
//!
//! In memory, with no I/O: paths ([`TreePath`]), entries ([`Entry`]), whole
//! trees ([`Snapshot`]), change sets ([`Layer`]), images ([`Image`]) and the
//! algebra between them (`diff`, `apply`, `flatten`, `changes`), and their
//! encodings (`codec`, `directory`).
//!
//! Over the store, reading and writing it: objects stored and read back
//! (`objects`, `stored`); tags and pins (`refs`); `Store::scan`, which walks a
//! directory into a snapshot, storing file contents, with its stat cache
//! (`scan`); `Store::checkout`, which writes a snapshot out as a directory
//! tree (`checkout`); `Store::sync_image` between stores (`sync`); and the
//! tree's halves of `Store::gc` and `Store::fsck` (`gc`, `fsck`), with the
//! walk from the roots that marks what they reach, used by both (`reach`).

pub(crate) mod checkout;
pub(crate) mod codec;
pub(crate) mod diff;
pub(crate) mod directory;
pub(crate) mod efficiency;
pub(crate) mod entry;
pub(crate) mod fsck;
pub(crate) mod gc;
pub(crate) mod history;
pub(crate) mod image;
pub(crate) mod layer;
mod objects;
pub(crate) mod path;
pub(crate) mod reach;
pub(crate) mod refs;
pub(crate) mod scan;
pub(crate) mod snapshot;
pub(crate) mod stored;
pub(crate) mod sync;
pub(crate) mod usage;

pub use self::{
    checkout::{CheckoutOptions, CheckoutOutcome},
    diff::{Change, ChangeKind},
    efficiency::{Efficiency, FileCount, LayerEfficiency, WastedPath},
    entry::{Entry, EntryKind, Metadata, Timestamp},
    fsck::{AffectedImage, FsckOptions, FsckReport, Problem},
    gc::GcOptions,
    history::HistoryStep,
    image::{History, Image, ImageConfig},
    layer::{Layer, flatten},
    path::TreePath,
    refs::TagName,
    scan::{ScanOptions, ScanOutcome, ScanWarning, ScanWarningKind},
    snapshot::{Children, Snapshot},
    stored::StoredTree,
    sync::{SyncOptions, SyncReport},
    usage::ImageUsage,
};

// The stat cache's format lives with the scan; other strata reach what
// they need of it through here.
pub(crate) use self::objects::{layer_from_objects, layer_objects};
pub(crate) use self::scan::statcache::forget as forget_stat_cache;
