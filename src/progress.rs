//! Progress reporting: [`Progress`], the hook a caller sets on an operation's
//! options to be told now and then how far it got ([`ProgressEvent`]), and
//! `Tracker`, what the operations count with.
//!
//! Counting costs one relaxed atomic add per item, and nothing at all when no
//! hook is set. The hook is called at most every [`INTERVAL`] while the work
//! goes on (by whichever thread counts first once it is due, the others never
//! wait for it), and once more at the end with [`ProgressEvent::finished`]
//! set. The figures a hook sees never go down from one call to the next.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often, at most, a hook is called while work goes on.
const INTERVAL: Duration = Duration::from_millis(50);

/// The long operation a [`ProgressEvent`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProgressStage {
    /// [`Store::scan`](crate::Store::scan): entries examined of those listed
    /// so far (the total grows as the walk lists directories), bytes of
    /// content read or taken from the stat cache (no total).
    Scan,
    /// [`Store::checkout`](crate::Store::checkout): entries and bytes of file
    /// content written, both of a total known from the start.
    Checkout,
    /// [`Store::fsck`](crate::Store::fsck): packs and their bytes verified, of
    /// all the packs listed at the start.
    Fsck,
    /// An OCI export ([`Exchange::export_layout`](crate::oci::Exchange::export_layout)
    /// and the others): layers written, and the bytes of file content of the
    /// layers done, of the image's.
    Export,
    /// An OCI import ([`Exchange::import_layout`](crate::oci::Exchange::import_layout)
    /// and the others): layers read (or found in the store), and compressed
    /// bytes of the blobs done, of the manifest's.
    Import,
    /// [`Store::gc`](crate::Store::gc): roots walked, of all the roots; then
    /// bytes of the packs to rewrite done, of theirs (known once the walk is
    /// done).
    Gc,
}

/// How far an operation got: entries and bytes done, and their totals where
/// they are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProgressEvent {
    /// The operation.
    pub stage: ProgressStage,
    /// Entries (files, directories, links, …) done.
    pub entries: u64,
    /// Entries to do, as far as the operation knows yet (see the stage).
    pub entries_total: Option<u64>,
    /// Bytes of file content done.
    pub bytes: u64,
    /// Bytes to do, if the operation knows.
    pub bytes_total: Option<u64>,
    /// The last call for this operation: it has ended (successfully; after
    /// an error the hook is not called again).
    pub finished: bool,
}

type Hook = dyn Fn(&ProgressEvent) + Send + Sync;

/// A progress hook: a function called now and then with a
/// [`ProgressEvent`], from any of the operation's threads (never from two at
/// once). The default is none, which costs nothing.
///
/// ```
/// use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
/// use std::sync::Arc;
/// use layerstore::{CheckoutOptions, Progress};
///
/// let written = Arc::new(AtomicU64::new(0));
/// let seen = Arc::clone(&written);
/// let options = CheckoutOptions::default()
///     .progress(Progress::new(move |e| seen.store(e.bytes, Ordering::Relaxed)));
/// # let _ = options;
/// ```
#[derive(Clone, Default)]
pub struct Progress {
    // `AssertUnwindSafe`: the options that hold a hook stay `UnwindSafe` and
    // `RefUnwindSafe` as they were before there was one; a hook that panics
    // takes the operation down with it, and what it left half-updated is its
    // caller's own state.
    hook: Option<Arc<AssertUnwindSafe<Box<Hook>>>>,
}

impl Progress {
    /// A hook calling `hook`.
    pub fn new(hook: impl Fn(&ProgressEvent) + Send + Sync + 'static) -> Self {
        Progress {
            hook: Some(Arc::new(AssertUnwindSafe(Box::new(hook)))),
        }
    }

    /// No hook (the default).
    #[must_use]
    pub fn none() -> Self {
        Progress::default()
    }

    /// Whether a hook is set.
    #[must_use]
    pub fn is_set(&self) -> bool {
        self.hook.is_some()
    }

    /// A tracker for one run of `stage` reporting to this hook.
    pub(crate) fn track(&self, stage: ProgressStage) -> Tracker {
        Tracker {
            inner: self.hook.as_ref().map(|hook| {
                Box::new(Inner {
                    hook: Arc::clone(hook),
                    stage,
                    start: Instant::now(),
                    entries: AtomicU64::new(0),
                    entries_total: AtomicU64::new(0),
                    bytes: AtomicU64::new(0),
                    bytes_total: AtomicU64::new(0),
                    entries_known: AtomicBool::new(false),
                    bytes_known: AtomicBool::new(false),
                    next_ns: AtomicU64::new(0),
                    emitting: Mutex::new(()),
                })
            }),
        }
    }
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_set() {
            "Progress(set)"
        } else {
            "Progress(none)"
        })
    }
}

/// Two hooks are equal when both are none or both are the same function
/// (clones of one [`Progress`]).
impl PartialEq for Progress {
    fn eq(&self, other: &Self) -> bool {
        match (&self.hook, &other.hook) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for Progress {}

/// What one operation counts with; all no-ops without a hook.
pub(crate) struct Tracker {
    inner: Option<Box<Inner>>,
}

struct Inner {
    hook: Arc<AssertUnwindSafe<Box<Hook>>>,
    stage: ProgressStage,
    start: Instant,
    entries: AtomicU64,
    entries_total: AtomicU64,
    bytes: AtomicU64,
    bytes_total: AtomicU64,
    /// Whether each total is known at all.
    entries_known: AtomicBool,
    bytes_known: AtomicBool,
    /// Nanoseconds since `start` before which the hook is not called again.
    next_ns: AtomicU64,
    /// Held while the hook runs: calls never overlap, and each reads the
    /// counters after the one before it did.
    emitting: Mutex<()>,
}

impl Tracker {
    /// Entries and bytes to do: added to the totals, which both become known.
    pub(crate) fn add_total(&self, entries: u64, bytes: u64) {
        if let Some(inner) = &self.inner {
            inner.entries_known.store(true, Ordering::Relaxed);
            inner.bytes_known.store(true, Ordering::Relaxed);
            inner.entries_total.fetch_add(entries, Ordering::Relaxed);
            inner.bytes_total.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// Entries to do, found as the work goes on (a scan's listings).
    pub(crate) fn add_entries_total(&self, entries: u64) {
        if let Some(inner) = &self.inner {
            inner.entries_known.store(true, Ordering::Relaxed);
            inner.entries_total.fetch_add(entries, Ordering::Relaxed);
        }
    }

    /// Entries and bytes done; the hook is called if it is due.
    #[inline]
    pub(crate) fn add(&self, entries: u64, bytes: u64) {
        if let Some(inner) = &self.inner {
            inner.entries.fetch_add(entries, Ordering::Relaxed);
            inner.bytes.fetch_add(bytes, Ordering::Relaxed);
            inner.maybe_emit();
        }
    }

    /// The end: the hook is called a last time, with `finished`.
    pub(crate) fn finish(&self) {
        if let Some(inner) = &self.inner {
            let _turn = inner
                .emitting
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            (inner.hook)(&inner.event(true));
        }
    }
}

impl Inner {
    fn maybe_emit(&self) {
        let now = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let due = self.next_ns.load(Ordering::Relaxed);
        if now < due {
            return;
        }
        let next = now.saturating_add(u64::try_from(INTERVAL.as_nanos()).unwrap_or(u64::MAX));
        // One thread wins the turn; the others go on counting.
        if self
            .next_ns
            .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        if let Ok(_turn) = self.emitting.try_lock() {
            (self.hook)(&self.event(false));
        }
    }

    /// The figures now. A total that grows with the work (a scan's) may be
    /// counted a moment after what it counts is done: a total is never shown
    /// below its count.
    fn event(&self, finished: bool) -> ProgressEvent {
        let entries = self.entries.load(Ordering::Relaxed);
        let bytes = self.bytes.load(Ordering::Relaxed);
        let entries_total = self.entries_total.load(Ordering::Relaxed);
        let bytes_total = self.bytes_total.load(Ordering::Relaxed);
        ProgressEvent {
            stage: self.stage,
            entries,
            entries_total: (self.entries_known.load(Ordering::Relaxed))
                .then_some(entries_total.max(entries)),
            bytes,
            bytes_total: (self.bytes_known.load(Ordering::Relaxed))
                .then_some(bytes_total.max(bytes)),
            finished,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_hook_nothing_is_counted_and_with_one_the_end_is_reported() {
        let none = Progress::none().track(ProgressStage::Checkout);
        none.add(1, 1);
        none.finish();
        assert!(none.inner.is_none());

        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let progress = Progress::new(move |e| sink.lock().unwrap().push(*e));
        assert_eq!(progress, progress.clone());
        assert_ne!(progress, Progress::none());
        let tracker = progress.track(ProgressStage::Checkout);
        tracker.add_total(3, 30);
        for _ in 0..3 {
            tracker.add(1, 10);
        }
        tracker.finish();
        let seen = seen.lock().unwrap();
        let last = seen.last().unwrap();
        assert!(last.finished);
        assert_eq!(
            (
                last.entries,
                last.entries_total,
                last.bytes,
                last.bytes_total
            ),
            (3, Some(3), 30, Some(30))
        );
        // The first count is due at once; later ones within the interval are
        // not reported.
        assert!(seen.len() <= 3, "{seen:?}");
    }
}
