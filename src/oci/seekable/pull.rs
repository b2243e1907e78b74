//! Pulling a seekable layer a piece at a time: its TOC by one range request,
//! then only the frames that hold chunks the store lacks.
//!
//! Every byte is checked before it is kept: the TOC against the digest in
//! the manifest (which the manifest's digest covers), each chunk against its
//! id, and the layer as a whole against the `DiffID` the config names, by
//! writing its tar again from the store (the export is reproducible) and
//! hashing it. Chunks are stored as they verify, so a pull cut short keeps
//! them and the next one fetches only what is still missing.

use std::collections::BTreeMap;
use std::io::{self, Write};

use sha2::Digest as _;

use super::toc::{FOOTER_LEN, Toc, TocPosition};
use super::{TOC_DIGEST, TOC_POSITION};
use crate::error::{Error, Result};
use crate::id::{ChunkId, LayerId};
use crate::oci::digest::format_digest;
use crate::oci::registry::Registry;
use crate::oci::tar::write_layer_tar;
use crate::oci::transfer::{Descriptor, PullReport};
use crate::store::Store;

/// Range requests in flight at once.
const IN_FLIGHT: usize = 8;
/// Frames closer than this are fetched in one request, the gap with them.
const COALESCE_GAP: u64 = 4 << 10;
/// The most one request asks for.
const MAX_RANGE: u64 = 8 << 20;

/// How a partial pull ended.
pub(crate) enum Partial {
    /// The layer is in the store.
    Pulled(LayerId),
    /// This blob cannot be pulled a piece at a time (no TOC, no ranges
    /// served, a layer that does not make the config's tar): fetch it whole.
    Whole(String),
}

/// Pulls layer `blob` of `repo`, whose tar the config names `diff_id`, into
/// `store` a piece at a time, counting what it fetched in `report`.
///
/// # Errors
/// [`Error::Malformed`] or [`Error::Registry`] naming the blob when its TOC
/// or a chunk does not verify (nothing unverified is kept); what the
/// registry or the store fail with.
pub(crate) fn pull_layer(
    registry: &Registry,
    store: &Store,
    repo: &str,
    blob: &Descriptor,
    diff_id: &str,
    report: &mut PullReport,
) -> Result<Partial> {
    let toc = match fetch_toc(registry, repo, blob, report)? {
        Ok(toc) => toc,
        Err(why) => return Ok(Partial::Whole(why)),
    };
    let fetched = fetch_missing(registry, store, repo, blob, &toc, report);
    // What verified is kept even if the rest failed: a second pull fetches
    // only what is still missing.
    let flushed = store.flush();
    fetched?;
    flushed?;

    let id = LayerId::from_bytes(toc.layer);
    store
        .put_layer_objects(&toc.objects)
        .map_err(|e| refusal(registry, repo, blob, format!("its table of contents: {e}")))?;
    store.flush()?;
    let made = tar_digest(store, &toc.decoded)?;
    if made != diff_id {
        return Ok(Partial::Whole(format!(
            "its table of contents makes the tar {made}, the config names {diff_id}"
        )));
    }
    report.layers_partial += 1;
    Ok(Partial::Pulled(id))
}

/// An error about layer `blob` of `repo`.
pub(crate) fn refusal(
    registry: &Registry,
    repo: &str,
    blob: &Descriptor,
    what: impl std::fmt::Display,
) -> Error {
    Error::Registry {
        registry: format!("{}/{repo}", registry.host()),
        what: format!("layer {}: {what}", blob.digest),
    }
}

/// The `sha256:` of the tar of `layer` as this build writes it (all its
/// chunks read, so the store must hold them). The hashing runs on a thread
/// of its own, beside the reading and the writing of the tar.
pub(crate) fn tar_digest(store: &Store, layer: &crate::Layer) -> Result<String> {
    let (blocks, received) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
    let hasher = std::thread::spawn(move || {
        let mut hasher = sha2::Sha256::new();
        for block in received {
            hasher.update(&block);
        }
        format_digest(&hasher.finalize())
    });
    let mut tar = HashingPipe {
        buf: Vec::with_capacity(PIPE_BLOCK),
        blocks,
    };
    let written = write_layer_tar(store, layer, &mut tar)
        .map(drop)
        .and_then(|()| tar.send().map_err(|e| Error::io("hash", "layer tar", e)));
    drop(tar);
    let digest = hasher.join().map_err(|_| {
        Error::io(
            "hash",
            "layer tar",
            io::Error::other("the hashing thread failed"),
        )
    });
    written?;
    digest
}

/// Bytes handed to the hashing thread at a time.
const PIPE_BLOCK: usize = 1 << 20;

/// A writer whose bytes go, a block at a time, to a hashing thread.
struct HashingPipe {
    buf: Vec<u8>,
    blocks: std::sync::mpsc::SyncSender<Vec<u8>>,
}

impl HashingPipe {
    fn send(&mut self) -> io::Result<()> {
        let block = std::mem::replace(&mut self.buf, Vec::with_capacity(PIPE_BLOCK));
        self.blocks
            .send(block)
            .map_err(|_| io::Error::other("the hashing thread vanished"))
    }
}

impl Write for HashingPipe {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(PIPE_BLOCK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == PIPE_BLOCK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The TOC of seekable layer `blob`, fetched by range (the footer first if
/// the descriptor gives no position) and checked against the digest the
/// manifest gives; `Ok(Err(why))` if the layer cannot be read a piece at a
/// time (no TOC, no ranges served).
///
/// # Errors
/// [`Error::Registry`] naming the blob if the TOC or footer is malformed,
/// out of the blob's bounds or not the manifest's.
pub(crate) fn fetch_toc(
    registry: &Registry,
    repo: &str,
    blob: &Descriptor,
    report: &mut PullReport,
) -> Result<std::result::Result<Toc, String>> {
    let Some(digest) = blob.annotations.get(TOC_DIGEST) else {
        return Ok(Err("it has no table of contents".into()));
    };
    let refuse = |what: String| refusal(registry, repo, blob, what);
    let no_ranges = || Ok(Err("the registry does not serve ranges".into()));
    let position = if let Some(position) = blob.annotations.get(TOC_POSITION) {
        TocPosition::from_annotation(position, blob.size)
    } else {
        // Without the position, the footer (the blob's last bytes) gives it.
        let Some(start) = blob.size.checked_sub(FOOTER_LEN as u64) else {
            return Err(refuse(format!(
                "{} bytes is too short for a footer",
                blob.size
            )));
        };
        let Some(footer) = fetch_one(registry, repo, &blob.digest, start, FOOTER_LEN as u64)?
        else {
            return no_ranges();
        };
        report.bytes_fetched += FOOTER_LEN as u64;
        TocPosition::from_footer(&footer, blob.size)
    }
    .map_err(|e| refuse(e.to_string()))?;
    let Some(frame) = fetch_one(registry, repo, &blob.digest, position.offset, position.len)?
    else {
        return no_ranges();
    };
    report.bytes_fetched += frame.len() as u64;
    let got = format_digest(&sha2::Sha256::digest(&frame));
    if &got != digest {
        return Err(refuse(format!(
            "its table of contents is {got}, the manifest says {digest}"
        )));
    }
    Toc::from_frame(&frame, &position)
        .map(Ok)
        .map_err(|e| refuse(e.to_string()))
}

/// Fetches the frames of the chunks of `toc` that `store` lacks, verifies
/// each chunk and stores it.
fn fetch_missing(
    registry: &Registry,
    store: &Store,
    repo: &str,
    blob: &Descriptor,
    toc: &Toc,
    report: &mut PullReport,
) -> Result<()> {
    // Frame number to the missing chunks in it.
    let mut wanted: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, chunk) in toc.chunks.iter().enumerate() {
        if !store.contains(&ChunkId::from_bytes(chunk.id)) {
            wanted.entry(chunk.frame as usize).or_default().push(i);
        }
    }
    if wanted.is_empty() {
        return Ok(());
    }
    let offsets = toc.frame_offsets();
    // Runs of frames fetched by one request: (first frame, last frame).
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for &f in wanted.keys() {
        match runs.last_mut() {
            Some((first, last))
                if offsets[f] - (offsets[*last] + u64::from(toc.frames[*last].len))
                    <= COALESCE_GAP
                    && offsets[f] + u64::from(toc.frames[f].len) - offsets[*first] <= MAX_RANGE =>
            {
                *last = f;
            }
            _ => runs.push((f, f)),
        }
    }
    let ranges: Vec<(u64, u64)> = runs
        .iter()
        .map(|&(first, last)| {
            let start = offsets[first];
            (
                start,
                offsets[last] + u64::from(toc.frames[last].len) - start,
            )
        })
        .collect();
    let refuse = |what: String| refusal(registry, repo, blob, what);
    let mut each = |index: usize, bytes: Vec<u8>| -> Result<()> {
        let (first, last) = runs[index];
        let start = offsets[first];
        report.bytes_fetched += bytes.len() as u64;
        for (f, chunks) in wanted.range(first..=last) {
            for data in frame_chunks(toc, &offsets, *f, start, &bytes, chunks).map_err(refuse)? {
                store.put_chunk(&data)?;
                report.chunks_fetched += 1;
            }
        }
        Ok(())
    };
    if !registry.blob_ranges(repo, &blob.digest, &ranges, IN_FLIGHT, &mut each)? {
        return Err(refuse(
            "the registry served its table of contents by range, then refused a range".into(),
        ));
    }
    Ok(())
}

/// The chunks `indexes` (of `toc.chunks`) of frame `f`, cut out of `range`
/// (bytes of the blob fetched from `range_start`; `offsets` are the frames'),
/// each checked against its id; why not, naming the offsets, otherwise.
pub(crate) fn frame_chunks(
    toc: &Toc,
    offsets: &[u64],
    f: usize,
    range_start: u64,
    range: &[u8],
    indexes: &[usize],
) -> std::result::Result<Vec<Vec<u8>>, String> {
    let offset = offsets[f];
    let at = usize::try_from(offset - range_start).unwrap_or(usize::MAX);
    let compressed = range
        .get(at..at.saturating_add(toc.frames[f].len as usize))
        .ok_or_else(|| format!("frame at {offset} is outside the range"))?;
    let frame = &toc.frames[f];
    let raw = zstd::bulk::decompress(compressed, frame.raw as usize)
        .map_err(|e| format!("frame at offset {offset}: cannot decompress: {e}"))?;
    indexes
        .iter()
        .map(|&c| {
            let chunk = &toc.chunks[c];
            let data = raw
                .get(chunk.offset as usize..(chunk.offset + chunk.len) as usize)
                .ok_or_else(|| {
                    format!(
                        "frame at offset {offset} is {} bytes, shorter than its table says",
                        raw.len()
                    )
                })?;
            if *blake3::hash(data).as_bytes() != chunk.id {
                return Err(format!(
                    "the chunk at offset {} of the frame at offset {offset} is not {}",
                    chunk.offset,
                    ChunkId::from_bytes(chunk.id)
                ));
            }
            Ok(data.to_vec())
        })
        .collect()
}

/// One range of a blob; `None` if the registry answers with the whole blob.
pub(crate) fn fetch_one(
    registry: &Registry,
    repo: &str,
    digest: &str,
    offset: u64,
    len: u64,
) -> Result<Option<Vec<u8>>> {
    let mut got = None;
    let served = registry.blob_ranges(repo, digest, &[(offset, len)], 1, &mut |_, bytes| {
        got = Some(bytes);
        Ok(())
    })?;
    Ok(if served { got } else { None })
}
