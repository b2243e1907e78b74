//! Writing a layer as a seekable blob: the tar compressed in zstd frames cut
//! where chunks begin, then the TOC and the footer.

use std::cell::RefCell;
use std::collections::HashSet;
use std::io::{self, Write};

use sha2::Digest as _;

use super::toc::{TocFrame, TocPosition, TocWire, WireChunk};
use crate::error::{Error, Result};
use crate::oci::compress::{BLOCK, Compression, ParallelCompressor};
use crate::oci::digest::format_digest;
use crate::oci::tar::{ChunkMarks, write_layer_tar_marked};
use crate::store::Store;
use crate::store::chunk_list::ChunkRef;
use crate::tree::{EntryKind, Layer, TreePath, layer_objects};

/// The zstd level of the TOC: it is read before anything else of a lazy
/// view, so it is worth compressing harder than the content.
const TOC_LEVEL: i32 = 12;

/// What writing a seekable layer gave.
pub(crate) struct SeekableLayer<W> {
    /// The writer, every byte written.
    pub(crate) inner: W,
    /// `sha256:` of the tar (the layer's `DiffID`).
    pub(crate) diff_id: String,
    /// `sha256:` and length of the blob.
    pub(crate) digest: String,
    pub(crate) len: u64,
    /// Where the TOC is and the `sha256:` of its frame.
    pub(crate) toc: TocPosition,
    pub(crate) toc_digest: String,
}

/// The frames being cut: the compressor, and where each chunk went.
struct Framer<W: Write + Send + 'static> {
    compressor: ParallelCompressor<W>,
    /// The first place (block, offset in it) of each chunk, in the order
    /// first met.
    chunks: Vec<(u64, usize)>,
    seen: HashSet<[u8; 32]>,
    /// Whether the current block holds the start of a chunk.
    chunk_in_block: bool,
}

/// The tar's writer and the chunk marks: two views of one [`Framer`].
struct Shared<'a, W: Write + Send + 'static>(&'a RefCell<Framer<W>>);

impl<W: Write + Send + 'static> Write for Shared<'_, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().compressor.write(data)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write + Send + 'static> ChunkMarks for Shared<'_, W> {
    /// One chunk a frame: the frame is cut before each chunk but the first
    /// in it (the tar headers before a chunk share its frame), and before
    /// any chunk that would not fit a block.
    fn chunk_starts(&self, chunk: &ChunkRef) -> io::Result<()> {
        let mut framer = self.0.borrow_mut();
        let (_, offset) = framer.compressor.position();
        if framer.chunk_in_block || offset + chunk.len as usize > BLOCK {
            framer.compressor.cut()?;
        }
        let (block, offset) = framer.compressor.position();
        if framer.seen.insert(*chunk.id.as_bytes()) {
            framer.chunks.push((block, offset));
        }
        framer.chunk_in_block = true;
        Ok(())
    }
}

/// Writes `layer` of `store` to `out` as a seekable blob compressed at zstd
/// `level`, its TOC listing the files of `prefetch` that the layer holds.
pub(crate) fn write_seekable_layer<W: Write + Send + 'static>(
    store: &Store,
    layer: &Layer,
    out: W,
    level: i32,
    prefetch: &[TreePath],
) -> Result<SeekableLayer<W>> {
    let framer = RefCell::new(Framer {
        compressor: ParallelCompressor::new(out, Compression::Zstd, Some(level)),
        chunks: Vec::new(),
        seen: HashSet::new(),
        chunk_in_block: false,
    });
    write_layer_tar_marked(store, layer, Shared(&framer), Some(&Shared(&framer)))?;
    let Framer {
        compressor, chunks, ..
    } = framer.into_inner();
    let io_err = |e: io::Error| Error::io("write", "seekable layer", e);
    let mut done = compressor.finish().map_err(io_err)?;

    let (layer_id, objects) = layer_objects(layer);
    let toc_frames: Vec<TocFrame> = done
        .blocks
        .iter()
        .map(|&(len, raw)| TocFrame { len, raw })
        .collect();
    // The tar takes the files in path order, as the TOC lists their chunks.
    let toc_chunks: Vec<WireChunk> = chunks
        .into_iter()
        .map(|(block, offset)| WireChunk {
            // Blocks and offsets within one are bounded by the block count
            // and BLOCK, both far below u32::MAX.
            frame: u32::try_from(block).unwrap_or(u32::MAX),
            offset: u32::try_from(offset).unwrap_or(u32::MAX),
        })
        .collect();
    let toc = TocWire {
        layer: *layer_id.as_bytes(),
        objects,
        frames: toc_frames,
        chunks: toc_chunks,
        prefetch: prefetch_in(layer, prefetch),
    };
    let (frame, raw) = toc.to_frame(TOC_LEVEL)?;
    let position = TocPosition {
        offset: done.len,
        len: frame.len() as u64,
        raw,
    };
    let toc_digest = format_digest(&sha2::Sha256::digest(&frame));
    let footer = position.footer();
    done.inner.write_all(&frame).map_err(io_err)?;
    done.inner.write_all(&footer).map_err(io_err)?;
    done.inner.flush().map_err(io_err)?;
    done.hasher.update(&frame);
    done.hasher.update(footer);
    Ok(SeekableLayer {
        inner: done.inner,
        diff_id: done.plain_digest,
        digest: format_digest(&done.hasher.finalize()),
        len: done.len + frame.len() as u64 + footer.len() as u64,
        toc: position,
        toc_digest,
    })
}

/// The paths of `prefetch` that are files with content in `layer`, in order.
fn prefetch_in(layer: &Layer, prefetch: &[TreePath]) -> Vec<Vec<u8>> {
    if prefetch.is_empty() {
        return Vec::new();
    }
    let files: std::collections::HashSet<&TreePath> = layer
        .upserts()
        .iter()
        .filter(|e| matches!(&e.kind, EntryKind::File { chunks, .. } if !chunks.is_empty()))
        .map(|e| &e.path)
        .collect();
    prefetch
        .iter()
        .filter(|p| files.contains(p))
        .map(|p| p.as_bytes().to_vec())
        .collect()
}
