//! Lazy images: an image shown from its layers' tables of contents, whose
//! content is fetched from the registry when it is read.
//!
//! Opening one ([`Exchange::pull_lazy`](crate::oci::Exchange::pull_lazy))
//! fetches the manifest, the config and each seekable layer's TOC, and puts
//! the objects the TOCs hold into the store: the image's whole tree is there,
//! its content is not. [`LazyImage::source`] is a [`ChunkSource`] that a
//! store reads through ([`Store::set_chunk_source`]): a read of a missing
//! chunk fetches the frame that holds it, and the chunks are kept, so later
//! reads and mounts are local. [`LazyImage::prefetch`] fetches the rest in
//! the background (the TOC's prefetch list first), bounded in requests and
//! bandwidth and stoppable; [`LazyImage::complete`] then checks each layer
//! against its `DiffID`, as a pull does, and tags the image: from then on it
//! is an ordinary local image.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::pull::{frame_chunks, refusal, tar_digest};
use super::toc::Toc;
use crate::error::Result;
use crate::id::{ChunkId, ImageId, LayerId};
use crate::oci::cache::OciCache;
use crate::oci::registry::Registry;
use crate::oci::transfer::{Descriptor, PullReport};
use crate::store::{ChunkSource, Store};
use crate::tree::TagName;

/// One seekable layer of a lazy image.
pub(crate) struct LazyLayer {
    /// Its place in the image, bottom first.
    pub(crate) index: usize,
    pub(crate) blob: Descriptor,
    pub(crate) toc: Toc,
    /// Where each frame begins in the blob.
    offsets: Vec<u64>,
    /// The chunks (indexes into `toc.chunks`) of each frame.
    frames: Vec<Vec<usize>>,
    /// Whether each frame holds a chunk the store lacked when the image was
    /// opened, and was not fetched since (a read that misses fetches the
    /// frames after its own that still are, in one request).
    wanted: Vec<AtomicBool>,
}

impl LazyLayer {
    pub(crate) fn new(index: usize, blob: Descriptor, toc: Toc) -> Self {
        let offsets = toc.frame_offsets();
        let mut frames = vec![Vec::new(); toc.frames.len()];
        for (i, chunk) in toc.chunks.iter().enumerate() {
            frames[chunk.frame as usize].push(i);
        }
        let wanted = frames.iter().map(|_| AtomicBool::new(true)).collect();
        Self {
            index,
            blob,
            toc,
            offsets,
            frames,
            wanted,
        }
    }

    /// Marks the frames whose chunks `store` holds all of as not wanted.
    pub(crate) fn settle(&self, store: &Store) {
        for (f, chunks) in self.frames.iter().enumerate() {
            let missing = chunks
                .iter()
                .any(|&c| !store.contains(&ChunkId::from_bytes(self.toc.chunks[c].id)));
            self.wanted[f].store(missing, Ordering::Relaxed);
        }
    }
}

/// The most a read that misses fetches in one request: its frame and the
/// wanted frames after it (the next chunks of the file, and the next files
/// of the tar, which a reader going through a directory wants next).
const READ_WINDOW: u64 = 1 << 20;

/// The registry side of a lazy image: what [`LazyImage::source`] fetches
/// from.
struct Remote {
    registry: Arc<Registry>,
    repo: String,
    layers: Vec<LazyLayer>,
}

impl Remote {
    /// The chunks of frame `f` of layer `l`, and of the wanted frames right
    /// after it (up to [`READ_WINDOW`] bytes in all), fetched in one request
    /// and verified.
    fn fetch_frame(&self, l: usize, f: usize) -> Result<Vec<Vec<u8>>> {
        let layer = &self.layers[l];
        layer.wanted[f].store(false, Ordering::Relaxed);
        let mut last = f;
        let mut len = u64::from(layer.toc.frames[f].len);
        while let Some(next) = layer.toc.frames.get(last + 1) {
            if len + u64::from(next.len) > READ_WINDOW
                || !layer.wanted[last + 1].swap(false, Ordering::Relaxed)
            {
                break;
            }
            last += 1;
            len += u64::from(next.len);
        }
        let offset = layer.offsets[f];
        let mut got = None;
        let served = self.registry.blob_ranges(
            &self.repo,
            &layer.blob.digest,
            &[(offset, len)],
            1,
            &mut |_, bytes| {
                got = Some(bytes);
                Ok(())
            },
        );
        let refuse = |what: String| refusal(&self.registry, &self.repo, &layer.blob, what);
        let bytes = match (served, got) {
            (Ok(true), Some(bytes)) => bytes,
            (Ok(_), _) => {
                self.want_again(l, f..=last);
                return Err(refuse("the registry no longer serves ranges".into()));
            }
            (Err(e), _) => {
                self.want_again(l, f..=last);
                return Err(e);
            }
        };
        let mut chunks = Vec::new();
        for g in f..=last {
            chunks.extend(
                frame_chunks(
                    &layer.toc,
                    &layer.offsets,
                    g,
                    offset,
                    &bytes,
                    &layer.frames[g],
                )
                .map_err(refuse)?,
            );
        }
        Ok(chunks)
    }

    /// Frames a failed fetch did not bring, wanted again.
    fn want_again(&self, l: usize, frames: std::ops::RangeInclusive<usize>) {
        for g in frames {
            self.layers[l].wanted[g].store(true, Ordering::Relaxed);
        }
    }
}

impl ChunkSource for Remote {
    fn fetch(&self, id: &ChunkId) -> Result<Vec<Vec<u8>>> {
        for (l, layer) in self.layers.iter().enumerate() {
            if let Ok(i) = layer
                .toc
                .chunks
                .binary_search_by(|c| c.id.cmp(id.as_bytes()))
            {
                return self.fetch_frame(l, layer.toc.chunks[i].frame as usize);
            }
        }
        Ok(Vec::new())
    }
}

/// How a background prefetch goes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PrefetchOptions {
    /// Range requests in flight at once (default 4).
    pub in_flight: usize,
    /// The most bytes a second it fetches, on average (default: no limit).
    pub bytes_per_second: Option<u64>,
    /// Set to stop it between two batches of requests.
    pub stop: Arc<AtomicBool>,
}

impl Default for PrefetchOptions {
    fn default() -> Self {
        Self {
            in_flight: 4,
            bytes_per_second: None,
            stop: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl PrefetchOptions {
    /// At most `n` requests in flight.
    #[must_use]
    pub fn in_flight(mut self, n: usize) -> Self {
        self.in_flight = n.max(1);
        self
    }

    /// At most `bytes` a second, on average.
    #[must_use]
    pub fn bytes_per_second(mut self, bytes: u64) -> Self {
        self.bytes_per_second = Some(bytes.max(1));
        self
    }

    /// Stops when `stop` is set.
    #[must_use]
    pub fn stop(mut self, stop: Arc<AtomicBool>) -> Self {
        self.stop = stop;
        self
    }
}

/// What a prefetch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PrefetchReport {
    /// Chunks fetched.
    pub chunks_fetched: u64,
    /// Bytes fetched.
    pub bytes_fetched: u64,
    /// Chunks still missing (0 once it ran to its end).
    pub chunks_missing: u64,
    /// Whether it was stopped before its end.
    pub stopped: bool,
}

/// An image whose tree is in the store and whose content is fetched from a
/// registry as it is read; see the module documentation.
pub struct LazyImage {
    image: ImageId,
    layers: Vec<LayerId>,
    diff_ids: Vec<String>,
    remote: Arc<Remote>,
    report: PullReport,
}

impl std::fmt::Debug for LazyImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyImage")
            .field("image", &self.image)
            .field("repository", &self.remote.repo)
            .field("lazy_layers", &self.remote.layers.len())
            .finish_non_exhaustive()
    }
}

impl LazyImage {
    pub(crate) fn new(
        image: ImageId,
        layers: Vec<LayerId>,
        diff_ids: Vec<String>,
        registry: Arc<Registry>,
        repo: String,
        lazy: Vec<LazyLayer>,
        report: PullReport,
    ) -> Self {
        Self {
            image,
            layers,
            diff_ids,
            remote: Arc::new(Remote {
                registry,
                repo,
                layers: lazy,
            }),
            report,
        }
    }

    /// The image (in the store, its content partly remote).
    #[must_use]
    pub fn image(&self) -> ImageId {
        self.image
    }

    /// What opening it fetched: the manifest's digest, the bytes of the
    /// config and TOCs (and of any layer that had to be fetched whole).
    #[must_use]
    pub fn report(&self) -> &PullReport {
        &self.report
    }

    /// Where a store reading this image fetches what it lacks.
    #[must_use]
    pub fn source(&self) -> Arc<dyn ChunkSource> {
        self.remote.clone()
    }

    /// The files the layers' tables of contents list to prefetch first,
    /// bottom layer first (what a push with a prefetch list put there).
    #[must_use]
    pub fn prefetch_list(&self) -> Vec<crate::TreePath> {
        self.remote
            .layers
            .iter()
            .flat_map(|l| &l.toc.prefetch)
            .filter_map(|p| crate::TreePath::new(p.as_slice()).ok())
            .collect()
    }

    /// How many of the lazy layers' chunks `store` lacks.
    #[must_use]
    pub fn missing(&self, store: &Store) -> u64 {
        self.remote
            .layers
            .iter()
            .flat_map(|l| &l.toc.chunks)
            .filter(|c| !store.contains(&ChunkId::from_bytes(c.id)))
            .count() as u64
    }

    /// Fetches every chunk `store` lacks: the files of each layer's prefetch
    /// list first, in its order, then the rest in the order of the blob,
    /// `options.in_flight` requests at a time within the bandwidth asked; the
    /// store flushed after each batch, so a prefetch killed midway loses
    /// only its last batch, and the next one fetches only what is missing.
    ///
    /// # Errors
    /// As a pull: the registry's errors, and chunks that do not verify
    /// (naming the blob and offset).
    pub fn prefetch(&self, store: &Store, options: &PrefetchOptions) -> Result<PrefetchReport> {
        /// Bytes fetched between two flushes (and two looks at `stop`).
        const BATCH: u64 = 4 << 20;
        let started = Instant::now();
        let mut report = PrefetchReport::default();
        // Within a bandwidth, batches of a quarter second's worth, so that
        // the pace holds from the start.
        let batch_limit = options
            .bytes_per_second
            .map_or(BATCH, |rate| (rate / 4).clamp(64 << 10, BATCH));
        for (l, layer) in self.remote.layers.iter().enumerate() {
            // Runs of consecutive frames, each fetched by one request.
            let mut runs: Vec<(usize, usize)> = Vec::new();
            for f in frame_order(store, layer) {
                match runs.last_mut() {
                    Some((first, last))
                        if f == *last + 1
                            && layer.offsets[f] + u64::from(layer.toc.frames[f].len)
                                - layer.offsets[*first]
                                <= READ_WINDOW =>
                    {
                        *last = f;
                    }
                    _ => runs.push((f, f)),
                }
            }
            let mut batch = Vec::new();
            let mut batch_bytes = 0;
            let mut runs = runs.into_iter().peekable();
            while let Some((first, last)) = runs.next() {
                batch_bytes += layer.offsets[last] + u64::from(layer.toc.frames[last].len)
                    - layer.offsets[first];
                batch.push((first, last));
                if batch_bytes < batch_limit && runs.peek().is_some() {
                    continue;
                }
                if options.stop.load(Ordering::Relaxed) {
                    report.stopped = true;
                    report.chunks_missing = self.missing(store);
                    return Ok(report);
                }
                self.fetch_batch(store, l, &batch, options.in_flight, &mut report)?;
                store.flush()?;
                batch.clear();
                batch_bytes = 0;
                if let Some(limit) = options.bytes_per_second {
                    let due = Duration::from_secs_f64(report.bytes_fetched as f64 / limit as f64);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
            }
        }
        report.chunks_missing = self.missing(store);
        Ok(report)
    }

    /// Runs of frames `batch` of layer `l`, each run one range, `in_flight`
    /// at a time; their missing chunks stored.
    fn fetch_batch(
        &self,
        store: &Store,
        l: usize,
        batch: &[(usize, usize)],
        in_flight: usize,
        report: &mut PrefetchReport,
    ) -> Result<()> {
        let layer = &self.remote.layers[l];
        let end = |f: usize| layer.offsets[f] + u64::from(layer.toc.frames[f].len);
        let ranges: Vec<(u64, u64)> = batch
            .iter()
            .map(|&(first, last)| (layer.offsets[first], end(last) - layer.offsets[first]))
            .collect();
        let refuse =
            |what: String| refusal(&self.remote.registry, &self.remote.repo, &layer.blob, what);
        let mut each = |i: usize, bytes: Vec<u8>| -> Result<()> {
            let (first, last) = batch[i];
            report.bytes_fetched += bytes.len() as u64;
            for f in first..=last {
                let missing: Vec<usize> = layer.frames[f]
                    .iter()
                    .copied()
                    .filter(|&c| !store.contains(&ChunkId::from_bytes(layer.toc.chunks[c].id)))
                    .collect();
                let start = layer.offsets[first];
                for data in frame_chunks(&layer.toc, &layer.offsets, f, start, &bytes, &missing)
                    .map_err(refuse)?
                {
                    store.put_chunk(&data)?;
                    report.chunks_fetched += 1;
                }
                layer.wanted[f].store(false, Ordering::Relaxed);
            }
            Ok(())
        };
        if self.remote.registry.blob_ranges(
            &self.remote.repo,
            &layer.blob.digest,
            &ranges,
            in_flight,
            &mut each,
        )? {
            Ok(())
        } else {
            Err(refuse("the registry no longer serves ranges".into()))
        }
    }

    /// Once `store` holds every chunk: checks each lazy layer against the
    /// `DiffID` the config names (its tar written again from the store, as
    /// a pull does), records the image's layers as known, tags it `tag`, and
    /// removes its lazy mark ([`Store::mark_lazy`], which opening set).
    /// Returns false, changing nothing, while chunks are missing.
    ///
    /// # Errors
    /// [`Error::Registry`](crate::Error::Registry) naming the layer if its tar is not the config's;
    /// the store's errors.
    pub fn complete(&self, store: &Store, tag: Option<&TagName>) -> Result<bool> {
        if self.missing(store) > 0 {
            return Ok(false);
        }
        for layer in &self.remote.layers {
            let id = self.layers[layer.index];
            let made = tar_digest(store, &store.layer(&id)?)?;
            let want = &self.diff_ids[layer.index];
            if &made != want {
                return Err(refusal(
                    &self.remote.registry,
                    &self.remote.repo,
                    &layer.blob,
                    format!("its content makes the tar {made}, the config names {want}"),
                ));
            }
        }
        store.flush()?;
        OciCache::new(store).record_layers(&self.diff_ids, &self.layers)?;
        if let Some(tag) = tag {
            store.set_tag(tag, &self.image)?;
        }
        store.unmark_lazy(&self.image)?;
        Ok(true)
    }
}

/// The frames of `layer` with a chunk `store` lacks: those of the files of
/// its prefetch list first, in the list's order, then the rest in blob order.
fn frame_order(store: &Store, layer: &LazyLayer) -> Vec<usize> {
    let missing = |f: usize| {
        layer.frames[f]
            .iter()
            .any(|&c| !store.contains(&ChunkId::from_bytes(layer.toc.chunks[c].id)))
    };
    let mut seen = HashSet::new();
    let mut order = Vec::new();
    if !layer.toc.prefetch.is_empty() {
        let files: std::collections::HashMap<&[u8], &crate::store::chunk_list::ChunkList> = layer
            .toc
            .decoded
            .upserts()
            .iter()
            .filter_map(|e| match &e.kind {
                crate::EntryKind::File { chunks, .. } => Some((e.path.as_bytes(), chunks)),
                _ => None,
            })
            .collect();
        for path in &layer.toc.prefetch {
            for chunk in files.get(path.as_slice()).map_or(&[][..], |c| c.chunks()) {
                if let Ok(i) = layer
                    .toc
                    .chunks
                    .binary_search_by(|c| c.id.cmp(chunk.id.as_bytes()))
                {
                    let f = layer.toc.chunks[i].frame as usize;
                    if seen.insert(f) && missing(f) {
                        order.push(f);
                    }
                }
            }
        }
    }
    for f in 0..layer.frames.len() {
        if !layer.frames[f].is_empty() && seen.insert(f) && missing(f) {
            order.push(f);
        }
    }
    order
}
