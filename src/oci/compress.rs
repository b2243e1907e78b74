//! Layer compression: gzip, zstd or none, in parallel.
//!
//! The uncompressed stream is cut into fixed 1 MiB blocks, each compressed on
//! the rayon pool as an independent gzip member or zstd frame, written in
//! order. Concatenated members (frames) are a valid gzip (zstd) stream that
//! every reader decodes as one (what `pigz` does); the cut points depend only
//! on the input, so the output is reproducible whatever the thread count.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};

use oci_spec::image::MediaType;
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::oci::digest::format_digest;

/// How layers are compressed in an exported image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Compression {
    /// `application/vnd.oci.image.layer.v1.tar+gzip`: what every tool reads.
    #[default]
    Gzip,
    /// `application/vnd.oci.image.layer.v1.tar+zstd`: faster, smaller.
    Zstd,
    /// `application/vnd.oci.image.layer.v1.tar`.
    None,
    /// `application/vnd.oci.image.layer.v1.tar+zstd` written seekable: zstd
    /// frames cut where chunks begin, then a table of contents and a footer
    /// in skippable frames (which every zstd reader skips). Any client reads
    /// it as a zstd layer; layerstore pulls only the chunks it lacks and
    /// mounts it lazily. `docs/FORMAT.md` specifies it.
    ZstdSeekable,
}

impl Compression {
    /// The layer media type.
    #[must_use]
    pub fn media_type(self) -> MediaType {
        match self {
            Compression::Gzip => MediaType::ImageLayerGzip,
            Compression::Zstd | Compression::ZstdSeekable => MediaType::ImageLayerZstd,
            Compression::None => MediaType::ImageLayer,
        }
    }
}

impl Compression {
    /// The level used when `level` is asked: the default if `None` (gzip 6,
    /// zstd 3), clamped to what the codec takes; 0 without compression.
    pub(crate) fn level(self, level: Option<i32>) -> i32 {
        match self {
            Compression::Gzip => level.unwrap_or(6).clamp(0, 9),
            Compression::Zstd | Compression::ZstdSeekable => level.unwrap_or(3).clamp(1, 19),
            Compression::None => 0,
        }
    }
}

impl FromStr for Compression {
    type Err = Error;

    /// `gzip`, `zstd`, `zstd-seekable` or `none`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            "zstd-seekable" => Ok(Compression::ZstdSeekable),
            "none" => Ok(Compression::None),
            other => Err(Error::InvalidArgument(format!(
                "unknown compression '{other}' (gzip, zstd, zstd-seekable or none)"
            ))),
        }
    }
}

/// The largest block: the stream is cut every `BLOCK` bytes, and also
/// where [`ParallelCompressor::cut`] is called.
pub(crate) const BLOCK: usize = 1 << 20;

type Done = (u64, io::Result<Vec<u8>>);

/// What the writing thread hands back: the writer, the hash of what it
/// wrote, the length, and each block's compressed length.
type Written<W> = (W, Sha256, u64, Vec<u32>);

/// What [`ParallelCompressor::finish`] hands back.
pub(crate) struct Compressed<W> {
    /// The inner writer, everything written.
    pub(crate) inner: W,
    /// `sha256:` of the uncompressed input (a layer's `DiffID`).
    pub(crate) plain_digest: String,
    /// `sha256:` and length of the compressed output (the blob's digest).
    pub(crate) digest: String,
    pub(crate) len: u64,
    /// The sha256 of the output so far, to go on hashing bytes appended
    /// after the compressed ones (a seekable layer's table of contents).
    pub(crate) hasher: Sha256,
    /// Each block's compressed and uncompressed length, in order: the
    /// frames (members) of the output.
    pub(crate) blocks: Vec<(u32, u32)>,
}

/// A writer that compresses blocks in parallel and writes them in order: a
/// pipeline whose stages overlap, so that the thread feeding it (reading a
/// layer out of the store, making its tar) does nothing else.
///
/// - the caller's thread cuts the input into blocks;
/// - a hashing thread computes the input's sha256 (serial by nature);
/// - the rayon pool compresses blocks;
/// - a writing thread puts compressed blocks back in order, hashes them and
///   writes them to the inner writer.
///
/// At most `max_in_flight` blocks are between the caller and the file at
/// any time (a bounded channel of permits), so memory stays bounded.
pub(crate) struct ParallelCompressor<W: Write + Send + 'static> {
    compression: Compression,
    level: i32,
    buf: Vec<u8>,
    submitted: u64,
    /// Compressed blocks, to the writing thread.
    done: mpsc::Sender<Done>,
    /// One permit per block in flight; the writing thread frees them.
    permits: mpsc::SyncSender<()>,
    /// Blocks of input, to the hashing thread.
    plain: mpsc::SyncSender<Arc<Vec<u8>>>,
    hasher: std::thread::JoinHandle<String>,
    writer: std::thread::JoinHandle<io::Result<Written<W>>>,
    /// Set by the writing thread when the inner writer failed.
    failed: Arc<AtomicBool>,
    /// The uncompressed length of each block submitted.
    raw_lens: Vec<u32>,
}

impl<W: Write + Send + 'static> ParallelCompressor<W> {
    /// `level`: gzip 0–9, zstd 1–19; `None` takes 6 for gzip, 3 for zstd.
    pub(crate) fn new(inner: W, compression: Compression, level: Option<i32>) -> Self {
        let level = compression.level(level);
        let max_in_flight = 2 * rayon::current_num_threads() + 2;
        let (plain, plain_rx) = mpsc::sync_channel::<Arc<Vec<u8>>>(max_in_flight);
        let hasher = std::thread::spawn(move || {
            let mut hasher = Sha256::new();
            for block in plain_rx {
                hasher.update(&block[..]);
            }
            format_digest(&hasher.finalize())
        });
        let (permits, permits_rx) = mpsc::sync_channel(max_in_flight);
        let (done, done_rx) = mpsc::channel::<Done>();
        let failed = Arc::new(AtomicBool::new(false));
        let writer_failed = Arc::clone(&failed);
        let writer = std::thread::spawn(move || {
            write_in_order(inner, &done_rx, &permits_rx, &writer_failed)
        });
        Self {
            compression,
            level,
            buf: Vec::with_capacity(BLOCK),
            submitted: 0,
            done,
            permits,
            plain,
            hasher,
            writer,
            failed,
            raw_lens: Vec::new(),
        }
    }

    /// Ends the current block here (if it holds anything), so that the next
    /// byte written starts a new frame.
    pub(crate) fn cut(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.submit()
    }

    /// Where the next byte written goes: the block's number and the offset
    /// in its uncompressed bytes.
    pub(crate) fn position(&self) -> (u64, usize) {
        (self.submitted, self.buf.len())
    }

    fn submit(&mut self) -> io::Result<()> {
        if self.failed.load(Ordering::Relaxed) {
            return Err(io::Error::other("writing the compressed blocks failed"));
        }
        // Waits while `max_in_flight` blocks are on their way.
        self.permits
            .send(())
            .map_err(|_| io::Error::other("the writing thread vanished"))?;
        let block = Arc::new(std::mem::replace(&mut self.buf, Vec::with_capacity(BLOCK)));
        // A block is at most BLOCK bytes.
        self.raw_lens
            .push(u32::try_from(block.len()).unwrap_or(u32::MAX));
        self.plain
            .send(Arc::clone(&block))
            .map_err(|_| io::Error::other("the hashing thread vanished"))?;
        let (compression, level, index) = (self.compression, self.level, self.submitted);
        self.submitted += 1;
        let done = self.done.clone();
        if rayon::current_thread_index().is_some() {
            // Already on the pool: blocking here on other pool tasks could
            // deadlock, so compress inline.
            let _ = done.send((index, compress_block(&block, compression, level)));
        } else {
            rayon::spawn(move || {
                let _ = done.send((index, compress_block(&block, compression, level)));
            });
        }
        Ok(())
    }

    /// Compresses and writes what is buffered; returns the inner writer and
    /// the digests.
    pub(crate) fn finish(mut self) -> io::Result<Compressed<W>> {
        if !self.buf.is_empty() || self.submitted == 0 {
            self.submit()?;
        }
        let Self {
            done,
            plain,
            hasher,
            writer,
            raw_lens,
            ..
        } = self;
        drop((done, plain));
        let vanished = || io::Error::other("a thread of the compressor vanished");
        let plain_digest = hasher.join().map_err(|_| vanished())?;
        let (inner, hasher, len, lens) = writer.join().map_err(|_| vanished())??;
        Ok(Compressed {
            inner,
            plain_digest,
            digest: format_digest(&hasher.clone().finalize()),
            len,
            hasher,
            blocks: lens.into_iter().zip(raw_lens).collect(),
        })
    }
}

/// The writing thread: compressed blocks in order into `inner`, hashed; a
/// permit freed per block (also after a failure, so that the caller never
/// waits for ever). Returns the writer, the hash of what it wrote, the length
/// and each block's compressed length.
fn write_in_order<W: Write>(
    mut inner: W,
    done: &mpsc::Receiver<Done>,
    permits: &mpsc::Receiver<()>,
    failed: &AtomicBool,
) -> io::Result<Written<W>> {
    let mut lens = Vec::new();
    let mut ready: BTreeMap<u64, io::Result<Vec<u8>>> = BTreeMap::new();
    let mut next = 0u64;
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    let mut error: Option<io::Error> = None;
    for (i, block) in done {
        ready.insert(i, block);
        while let Some(block) = ready.remove(&next) {
            next += 1;
            if error.is_none() {
                let written = block.and_then(|b| {
                    inner.write_all(&b)?;
                    lens.push(u32::try_from(b.len()).map_err(io::Error::other)?);
                    hasher.update(&b);
                    len += b.len() as u64;
                    Ok(())
                });
                if let Err(e) = written {
                    failed.store(true, Ordering::Relaxed);
                    error = Some(e);
                }
            }
            let _ = permits.recv();
        }
    }
    if let Some(e) = error {
        return Err(e);
    }
    if !ready.is_empty() {
        return Err(io::Error::other("a compression task vanished"));
    }
    inner.flush()?;
    Ok((inner, hasher, len, lens))
}

impl<W: Write + Send + 'static> Write for ParallelCompressor<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(BLOCK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == BLOCK {
            self.submit()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One block as a gzip member (libdeflate: no file name, mtime 0, OS
/// "unknown": nothing from the machine), a zstd frame, or as it is. Each
/// pool thread keeps its compressor between blocks (their tables cost more
/// to set up than a small block to compress); a block's bytes do not depend
/// on what the compressor did before.
fn compress_block(block: &[u8], compression: Compression, level: i32) -> io::Result<Vec<u8>> {
    thread_local! {
        static GZIP: RefCell<Option<(i32, libdeflater::Compressor)>> = const { RefCell::new(None) };
        static ZSTD: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
    }
    match compression {
        Compression::None => Ok(block.to_vec()),
        Compression::Gzip => GZIP.with_borrow_mut(|slot| {
            let compressor = match slot {
                Some((l, c)) if *l == level => c,
                _ => {
                    let lvl = libdeflater::CompressionLvl::new(level.clamp(0, 9))
                        .map_err(|e| io::Error::other(format!("gzip level {level}: {e:?}")))?;
                    &mut slot.insert((level, libdeflater::Compressor::new(lvl))).1
                }
            };
            let mut out = vec![0; compressor.gzip_compress_bound(block.len())];
            let n = compressor
                .gzip_compress(block, &mut out)
                .map_err(io::Error::other)?;
            out.truncate(n);
            Ok(out)
        }),
        Compression::Zstd | Compression::ZstdSeekable => ZSTD.with_borrow_mut(|slot| {
            let compressor = match slot {
                Some((l, c)) if *l == level => c,
                _ => &mut slot.insert((level, zstd::bulk::Compressor::new(level)?)).1,
            };
            compressor.compress(block)
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::digest::sha256_digest;
    use std::io::Read;

    #[test]
    fn a_reused_compressor_gives_the_bytes_of_a_fresh_one() {
        let a: Vec<u8> = (0..BLOCK).map(|i| (i % 7) as u8).collect();
        let b: Vec<u8> = (0..BLOCK).map(|i| ((i * 31) % 253) as u8).collect();
        for c in [Compression::Gzip, Compression::Zstd] {
            let level = c.level(None);
            let (b1, b2, a1) = (b.clone(), b.clone(), a.clone());
            let fresh = std::thread::spawn(move || compress_block(&b1, c, level).unwrap());
            let after = std::thread::spawn(move || {
                compress_block(&a1, c, level).unwrap();
                compress_block(&b2, c, level).unwrap()
            });
            assert_eq!(fresh.join().unwrap(), after.join().unwrap(), "{c:?}");
        }
    }

    #[test]
    fn parallel_blocks_decode_as_one_stream_and_are_reproducible() {
        let data: Vec<u8> = (0..3 * BLOCK + 12345).map(|i| (i % 251) as u8).collect();
        for c in [Compression::Gzip, Compression::Zstd, Compression::None] {
            let mut w = ParallelCompressor::new(Vec::new(), c, None);
            w.write_all(&data).unwrap();
            let done = w.finish().unwrap();
            let out = done.inner;
            assert_eq!(done.plain_digest, sha256_digest(&data));
            assert_eq!(
                (done.digest, done.len),
                (sha256_digest(&out), out.len() as u64)
            );
            let mut w2 = ParallelCompressor::new(Vec::new(), c, None);
            w2.write_all(&data).unwrap();
            assert_eq!(out, w2.finish().unwrap().inner, "{c:?} reproducible");
            let mut back = Vec::new();
            match c {
                Compression::Gzip => {
                    flate2::read::MultiGzDecoder::new(&out[..])
                        .read_to_end(&mut back)
                        .unwrap();
                }
                Compression::Zstd | Compression::ZstdSeekable => {
                    zstd::stream::read::Decoder::new(&out[..])
                        .unwrap()
                        .read_to_end(&mut back)
                        .unwrap();
                }
                Compression::None => back = out,
            }
            assert_eq!(back, data, "{c:?}");
        }
    }
}
