//! Pack files: a header, then frames back to back. Written append-only in
//! `tmp/`, fsynced, then renamed to `packs/<id>.pack`, where `<id>` is the
//! BLAKE3 of the whole file; immutable from then on.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::fsutil::{durable, fault};
use crate::id::PackId;
use crate::store::frame::{self, EncodedFrame, FrameHeader};
use crate::store::index::{Location, Record};

/// Pack magic and version.
pub(crate) const PACK_MAGIC: [u8; 8] = *b"LSPACK\0\x01";

/// A pack being written is flushed to disk in the background each time it
/// grows by this much (see [`durable::Writeback`]): the final fsync of a
/// 200 MB pack took 105 ms without it.
const WRITEBACK_EVERY: u64 = 16 << 20;

/// A pack being written.
pub(crate) struct PackWriter {
    tmp_path: PathBuf,
    file: Arc<File>,
    writeback: durable::Writeback,
    len: u64,
    hasher: blake3::Hasher,
    records: Vec<Record>,
}

impl PackWriter {
    /// Starts a pack in `tmp_dir`.
    pub(crate) fn create(tmp_dir: &Path) -> Result<Self> {
        let tmp_path = durable::unique_tmp_path(tmp_dir, "pack");
        let mut file = fault::check("create", &tmp_path)
            .and_then(|()| {
                File::options()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(&tmp_path)
            })
            .map_err(|e| Error::io("create", &tmp_path, e))?;
        if let Err(e) = fault::check("write", &tmp_path).and_then(|()| file.write_all(&PACK_MAGIC))
        {
            let _ = std::fs::remove_file(&tmp_path);
            return Err(Error::io("write", &tmp_path, e));
        }
        let mut hasher = blake3::Hasher::new();
        hasher.update(&PACK_MAGIC);
        let file = Arc::new(file);
        Ok(Self {
            tmp_path,
            writeback: durable::Writeback::new(Arc::clone(&file), WRITEBACK_EVERY),
            file,
            len: PACK_MAGIC.len() as u64,
            hasher,
            records: Vec::new(),
        })
    }

    /// The file, for reading chunks back before the pack is finished.
    pub(crate) fn file(&self) -> &Arc<File> {
        &self.file
    }

    /// The temporary path (for error messages about pending chunks).
    pub(crate) fn tmp_path(&self) -> &Path {
        &self.tmp_path
    }

    /// Bytes written so far.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Appends a frame; returns the location of each of its chunks.
    pub(crate) fn append(&mut self, encoded: &EncodedFrame) -> Result<Vec<Record>> {
        let written = match fault::check("write", &self.tmp_path) {
            // A full disk fails a write part-way: leave half the frame behind.
            Err(e) => (&*self.file)
                .write_all(&encoded.bytes[..encoded.bytes.len() / 2])
                .and(Err(e)),
            Ok(()) => (&*self.file).write_all(&encoded.bytes),
        };
        written.map_err(|e| Error::io("write", &self.tmp_path, e))?;
        self.hasher.update(&encoded.bytes);
        let payload_offset = self.len + encoded.payload_start as u64;
        self.len += encoded.bytes.len() as u64;
        self.writeback.grown(self.len);
        let header = &encoded.header;
        let mut offset_in_frame = 0u32;
        let frame_chunks = u8::try_from(header.chunks.len()).unwrap_or(u8::MAX);
        let mut out = Vec::with_capacity(header.chunks.len());
        for &(id, len) in &header.chunks {
            let loc = Location {
                payload_offset,
                stored_len: header.stored_len,
                raw_len: header.raw_len,
                offset_in_frame,
                len,
                codec: header.codec,
                frame_chunks,
            };
            offset_in_frame += len;
            out.push((id, loc));
        }
        self.records.extend_from_slice(&out);
        Ok(out)
    }

    /// Whether no frame was appended.
    pub(crate) fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Fsyncs the pack and renames it to `packs_dir/<id>.pack` (fsyncing the
    /// directory). Returns the id, the final path and the records.
    pub(crate) fn finish(self, packs_dir: &Path) -> Result<(PackId, PathBuf, Vec<Record>)> {
        self.writeback.finish(&self.tmp_path)?;
        durable::sync_file(&self.file, &self.tmp_path)?;
        let id = PackId::from(self.hasher.finalize());
        let path = packs_dir.join(crate::store::layout::pack_file(&id));
        durable::rename_durable(&self.tmp_path, &path)?;
        Ok((id, path, self.records))
    }

    /// Deletes the unfinished pack.
    pub(crate) fn discard(self) {
        let _ = std::fs::remove_file(&self.tmp_path);
    }
}

/// Reads a frame's payload from `file` (at `path`, for messages) and decodes it.
pub(crate) fn read_payload(file: &File, path: &Path, loc: &Location) -> Result<Vec<u8>> {
    let mut stored = vec![0u8; loc.stored_len as usize];
    file.read_exact_at(&mut stored, loc.payload_offset)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::corrupt(path, loc.payload_offset, "the pack ends inside this frame")
            } else {
                Error::io("read", path, e)
            }
        })?;
    frame::decode_payload(loc.codec, &stored, loc.raw_len)
        .map_err(|reason| Error::corrupt(path, loc.payload_offset, reason))
}

/// Reads the raw bytes of a chunk stored alone in a raw frame, without copying
/// the frame first.
pub(crate) fn read_raw_chunk(file: &File, path: &Path, loc: &Location) -> Result<Vec<u8>> {
    let mut out = vec![0u8; loc.len as usize];
    file.read_exact_at(
        &mut out,
        loc.payload_offset + u64::from(loc.offset_in_frame),
    )
    .map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::corrupt(path, loc.payload_offset, "the pack ends inside this chunk")
        } else {
            Error::io("read", path, e)
        }
    })?;
    Ok(out)
}

/// A frame found by walking a pack's bytes.
#[derive(Debug, Clone)]
pub(crate) struct ScannedFrame {
    /// Where the frame's header starts in the pack.
    pub(crate) start: u64,
    /// Where its payload starts.
    pub(crate) payload_offset: u64,
    pub(crate) header: FrameHeader,
}

impl ScannedFrame {
    /// Where the frame ends (the next one starts).
    pub(crate) fn end(&self) -> u64 {
        self.payload_offset + u64::from(self.header.stored_len)
    }

    /// The location of each of its chunks.
    pub(crate) fn records(&self) -> Vec<Record> {
        self.locations().collect()
    }

    /// The location of each of its chunks, in payload order.
    pub(crate) fn locations(&self) -> impl Iterator<Item = Record> + '_ {
        let mut offset_in_frame = 0;
        let frame_chunks = u8::try_from(self.header.chunks.len()).unwrap_or(u8::MAX);
        self.header.chunks.iter().map(move |&(id, len)| {
            let loc = Location {
                payload_offset: self.payload_offset,
                stored_len: self.header.stored_len,
                raw_len: self.header.raw_len,
                offset_in_frame,
                len,
                codec: self.header.codec,
                frame_chunks,
            };
            offset_in_frame += len;
            (id, loc)
        })
    }

    /// The frame's bytes (header and payload) within the pack's `bytes`.
    pub(crate) fn bytes<'a>(&self, pack: &'a [u8]) -> &'a [u8] {
        // `frames` only returns frames that lie within the pack.
        pack.get(self.start as usize..self.end() as usize)
            .unwrap_or_default()
    }

    /// Decodes the payload and checks every chunk against its id; returns the
    /// raw payload (the chunks back to back), or what is wrong.
    pub(crate) fn decode_verified(&self, pack: &[u8]) -> Result<Vec<u8>, String> {
        let stored = pack
            .get(self.payload_offset as usize..self.end() as usize)
            .ok_or("the pack ends inside this frame")?;
        let raw = frame::decode_payload(self.header.codec, stored, self.header.raw_len)?;
        self.check_chunks(&raw)?;
        Ok(raw)
    }

    /// Checks the frame whose stored payload is `stored`, as
    /// [`decode_verified`](Self::decode_verified) does, without keeping what
    /// it decodes: a zstd payload is decompressed into `scratch` (whose
    /// allocation is reused), a raw one is checked where it lies.
    pub(crate) fn verify(&self, stored: &[u8], scratch: &mut Vec<u8>) -> Result<(), String> {
        if stored.len() != self.header.stored_len as usize {
            return Err("the pack ends inside this frame".into());
        }
        match self.header.codec {
            frame::Codec::Raw => {
                if self.header.raw_len > frame::MAX_FRAME_RAW {
                    return Err(format!(
                        "frame of {} bytes exceeds the limit",
                        self.header.raw_len
                    ));
                }
                if stored.len() != self.header.raw_len as usize {
                    return Err("raw frame of the wrong length".into());
                }
                self.check_chunks(stored)
            }
            frame::Codec::Zstd => {
                frame::decompress_into(self.header.codec, stored, self.header.raw_len, scratch)?;
                self.check_chunks(scratch)
            }
        }
    }

    /// Checks that `raw`, the decoded payload, holds the chunks of the table.
    fn check_chunks(&self, raw: &[u8]) -> Result<(), String> {
        let mut at = 0usize;
        for (id, len) in &self.header.chunks {
            let chunk = raw
                .get(at..at + *len as usize)
                .ok_or("chunk outside its frame")?;
            if crate::id::ChunkId::of(chunk) != *id {
                return Err(format!("chunk {id} does not match its bytes"));
            }
            at += *len as usize;
        }
        Ok(())
    }
}

/// The frames of a pack, up to the first that is bad; then `Err` with where
/// that one starts and what is wrong with it.
pub(crate) type Walked = (Vec<ScannedFrame>, Result<(), (u64, String)>);

/// Walks the frames of a whole pack's bytes (parsing headers, not decoding
/// payloads). Stops with an error at the first frame whose header is bad or
/// that runs past the end, giving the frames found before it.
pub(crate) fn frames(bytes: &[u8]) -> Walked {
    let read_at = |at: u64, buf: &mut [u8]| {
        let from = bytes.get(at as usize..).unwrap_or_default();
        let n = buf.len().min(from.len());
        buf[..n].copy_from_slice(&from[..n]);
        Ok::<_, std::convert::Infallible>(n)
    };
    match walk(bytes.len() as u64, read_at) {
        Ok(walked) => walked,
        Err(never) => match never {},
    }
}

/// Walks the frames of the pack `file` (at `path`, for messages) of `len`
/// bytes, as [`frames`] does over bytes in memory, reading only the headers.
pub(crate) fn frames_in_file(file: &File, path: &Path, len: u64) -> Result<Walked> {
    walk(len, |at, buf| read_full_at(file, buf, at)).map_err(|e| Error::io("read", path, e))
}

/// Fills `buf` from `file` at `offset`, stopping short only at the end of the
/// file; returns how much was read.
pub(crate) fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// The walk behind [`frames`] and [`frames_in_file`]: `read_at(offset, buf)`
/// fills `buf` from the pack at `offset` (less at its end) and says how much.
fn walk<E>(
    len: u64,
    mut read_at: impl FnMut(u64, &mut [u8]) -> Result<usize, E>,
) -> Result<Walked, E> {
    let mut out = Vec::new();
    let mut magic = [0u8; PACK_MAGIC.len()];
    if read_at(0, &mut magic)? != PACK_MAGIC.len() || magic != PACK_MAGIC {
        return Ok((out, Err((0, "bad pack magic".into()))));
    }
    let mut at = PACK_MAGIC.len() as u64;
    let mut header = Vec::new();
    while at < len {
        // The fixed part says how long the table is; read both (never past
        // the end of the pack, whatever the count claims) and parse them.
        header.resize(frame::FRAME_FIXED_LEN, 0);
        let mut n = read_at(at, &mut header)?;
        if n == frame::FRAME_FIXED_LEN {
            let count = u32::from_le_bytes([header[16], header[17], header[18], header[19]]);
            let table = u64::from(count) * frame::TABLE_ROW_LEN as u64;
            let want = (frame::FRAME_FIXED_LEN as u64 + table).min(len - at);
            header.resize(want as usize, 0);
            n = read_at(at, &mut header)?;
        }
        let parsed = match FrameHeader::parse(&header[..n]) {
            Ok(h) => h,
            Err(reason) => return Ok((out, Err((at, reason)))),
        };
        let payload_offset = at + parsed.encoded_len() as u64;
        let end = payload_offset + u64::from(parsed.stored_len);
        if end > len {
            return Ok((out, Err((at, "the pack ends inside this frame".into()))));
        }
        out.push(ScannedFrame {
            start: at,
            payload_offset,
            header: parsed,
        });
        at = end;
    }
    Ok((out, Ok(())))
}

/// Walks the frames of a whole pack's bytes, returning every chunk's location;
/// used to rebuild a lost index. Stops with an error at the first bad frame,
/// giving the records found before it.
pub(crate) fn scan(bytes: &[u8]) -> (Vec<Record>, Result<(), (u64, String)>) {
    let (frames, end) = frames(bytes);
    (frames.iter().flat_map(ScannedFrame::records).collect(), end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::ChunkId;

    #[test]
    fn write_finish_scan_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = PackWriter::create(dir.path()).unwrap();
        let a = b"alpha ".repeat(500);
        let b = b"beta".to_vec();
        let frame = frame::encode(
            vec![(ChunkId::of(&a), a.len() as u32), (ChunkId::of(&b), 4)],
            &[&a[..], &b[..]].concat(),
            3,
        )
        .unwrap();
        let locs = writer.append(&frame).unwrap();
        let (id, path, records) = writer.finish(dir.path()).unwrap();
        assert_eq!(records, locs);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(PackId::of(&bytes), id);
        let (scanned, end) = scan(&bytes);
        assert!(end.is_ok());
        assert_eq!(scanned, records);
        let file = File::open(&path).unwrap();
        let payload = read_payload(&file, &path, &records[1].1).unwrap();
        let loc = records[1].1;
        assert_eq!(&payload[loc.offset_in_frame as usize..][..4], b"beta");
        // A truncated pack is corrupt, naming the path.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(20)
            .unwrap();
        let err = read_payload(&file, &path, &records[0].1).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains(&path.display().to_string()));
    }
}
