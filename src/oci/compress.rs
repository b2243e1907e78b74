//! Layer compression: gzip, zstd or none, in parallel.
//!
//! The uncompressed stream is cut into fixed 1 MiB blocks, each compressed on
//! the rayon pool as an independent gzip member or zstd frame, written in
//! order. Concatenated members (frames) are a valid gzip (zstd) stream that
//! every reader decodes as one (what `pigz` does); the cut points depend only
//! on the input, so the output is reproducible whatever the thread count.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::str::FromStr;
use std::sync::mpsc;

use oci_spec::image::MediaType;

use crate::error::{Error, Result};

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
}

impl Compression {
    /// The layer media type.
    #[must_use]
    pub fn media_type(self) -> MediaType {
        match self {
            Compression::Gzip => MediaType::ImageLayerGzip,
            Compression::Zstd => MediaType::ImageLayerZstd,
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
            Compression::Zstd => level.unwrap_or(3).clamp(1, 19),
            Compression::None => 0,
        }
    }
}

impl FromStr for Compression {
    type Err = Error;

    /// `gzip`, `zstd` or `none`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            "none" => Ok(Compression::None),
            other => Err(Error::InvalidArgument(format!(
                "unknown compression '{other}' (gzip, zstd or none)"
            ))),
        }
    }
}

const BLOCK: usize = 1 << 20;

type Done = (u64, io::Result<Vec<u8>>);

/// A writer that compresses blocks in parallel and writes them in order.
pub(crate) struct ParallelCompressor<W: Write> {
    inner: W,
    compression: Compression,
    level: i32,
    buf: Vec<u8>,
    submitted: u64,
    written: u64,
    ready: BTreeMap<u64, io::Result<Vec<u8>>>,
    tx: mpsc::Sender<Done>,
    rx: mpsc::Receiver<Done>,
    max_in_flight: u64,
}

impl<W: Write> ParallelCompressor<W> {
    /// `level`: gzip 0–9, zstd 1–19; `None` takes 6 for gzip, 3 for zstd.
    pub(crate) fn new(inner: W, compression: Compression, level: Option<i32>) -> Self {
        let (tx, rx) = mpsc::channel();
        let level = compression.level(level);
        Self {
            inner,
            compression,
            level,
            buf: Vec::with_capacity(BLOCK),
            submitted: 0,
            written: 0,
            ready: BTreeMap::new(),
            tx,
            rx,
            max_in_flight: 2 * rayon::current_num_threads() as u64 + 2,
        }
    }

    fn submit(&mut self) -> io::Result<()> {
        let block = std::mem::replace(&mut self.buf, Vec::with_capacity(BLOCK));
        let (compression, level, index) = (self.compression, self.level, self.submitted);
        self.submitted += 1;
        if rayon::current_thread_index().is_some() {
            // Already on the pool: blocking here on other pool tasks could
            // deadlock, so compress inline.
            self.ready
                .insert(index, compress_block(&block, compression, level));
        } else {
            let tx = self.tx.clone();
            rayon::spawn(move || {
                let _ = tx.send((index, compress_block(&block, compression, level)));
            });
        }
        while self.submitted - self.written > self.max_in_flight {
            self.write_next()?;
        }
        Ok(())
    }

    fn write_next(&mut self) -> io::Result<()> {
        loop {
            if let Some(done) = self.ready.remove(&self.written) {
                self.inner.write_all(&done?)?;
                self.written += 1;
                return Ok(());
            }
            let (i, done) = self
                .rx
                .recv()
                .map_err(|_| io::Error::other("a compression task vanished"))?;
            self.ready.insert(i, done);
        }
    }

    /// Compresses and writes what is buffered; returns the inner writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        if !self.buf.is_empty() || self.submitted == 0 {
            self.submit()?;
        }
        while self.written < self.submitted {
            self.write_next()?;
        }
        Ok(self.inner)
    }
}

impl<W: Write> Write for ParallelCompressor<W> {
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

fn compress_block(block: &[u8], compression: Compression, level: i32) -> io::Result<Vec<u8>> {
    match compression {
        Compression::None => Ok(block.to_vec()),
        Compression::Gzip => {
            // No file name, mtime 0, OS "unknown": nothing from the machine.
            let mut enc = flate2::GzBuilder::new().operating_system(255).write(
                Vec::with_capacity(block.len() / 2),
                flate2::Compression::new(level.clamp(0, 9).unsigned_abs()),
            );
            enc.write_all(block)?;
            enc.finish()
        }
        Compression::Zstd => zstd::bulk::compress(block, level),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn parallel_blocks_decode_as_one_stream_and_are_reproducible() {
        let data: Vec<u8> = (0..3 * BLOCK + 12345).map(|i| (i % 251) as u8).collect();
        for c in [Compression::Gzip, Compression::Zstd, Compression::None] {
            let mut w = ParallelCompressor::new(Vec::new(), c, None);
            w.write_all(&data).unwrap();
            let out = w.finish().unwrap();
            let mut w2 = ParallelCompressor::new(Vec::new(), c, None);
            w2.write_all(&data).unwrap();
            assert_eq!(out, w2.finish().unwrap(), "{c:?} reproducible");
            let mut back = Vec::new();
            match c {
                Compression::Gzip => {
                    flate2::read::MultiGzDecoder::new(&out[..])
                        .read_to_end(&mut back)
                        .unwrap();
                }
                Compression::Zstd => {
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
