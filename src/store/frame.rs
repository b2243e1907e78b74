//! Frames: the unit of compression inside a pack.
//!
//! A frame holds one or more whole chunks, compressed together with zstd (or
//! stored raw when compression does not shrink them). Its header lists the
//! chunks it holds, so a pack can be re-indexed from its own bytes.
//!
//! ```text
//! magic   "LSFR"          4 bytes
//! codec   u8              0 = raw, 1 = zstd
//! zero    [u8; 3]
//! stored  u32 LE          payload bytes on disk
//! raw     u32 LE          payload bytes once decompressed (= sum of chunk lengths)
//! count   u32 LE          number of chunks
//! check   [u8; 8]         first 8 bytes of BLAKE3 of the header and table before it
//! table   count × (id [u8; 32], len u32 LE)
//! payload stored bytes
//! ```

use crate::id::ChunkId;

/// Frame magic.
pub(crate) const FRAME_MAGIC: [u8; 4] = *b"LSFR";
/// Fixed part of the header.
pub(crate) const FRAME_FIXED_LEN: usize = 28;
/// One row of the chunk table.
pub(crate) const TABLE_ROW_LEN: usize = 36;
/// The largest raw payload a frame may hold (a metadata object is one chunk,
/// so this bounds the largest object); a bound on what a reader allocates.
pub(crate) const MAX_FRAME_RAW: u32 = 64 << 20;

/// How a frame's payload is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codec {
    /// Stored as is.
    Raw = 0,
    /// One zstd frame.
    Zstd = 1,
}

impl Codec {
    pub(crate) fn from_u8(b: u8) -> Option<Self> {
        match b {
            0 => Some(Codec::Raw),
            1 => Some(Codec::Zstd),
            _ => None,
        }
    }
}

/// A parsed frame header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    pub(crate) codec: Codec,
    pub(crate) stored_len: u32,
    pub(crate) raw_len: u32,
    /// The chunks, in payload order.
    pub(crate) chunks: Vec<(ChunkId, u32)>,
}

impl FrameHeader {
    /// The header's length on disk.
    pub(crate) fn encoded_len(&self) -> usize {
        FRAME_FIXED_LEN + self.chunks.len() * TABLE_ROW_LEN
    }

    /// Parses the header at the start of `bytes`. Never panics; refuses counts and
    /// lengths beyond [`MAX_FRAME_RAW`] before allocating.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, String> {
        let fixed = bytes
            .get(..FRAME_FIXED_LEN)
            .ok_or("truncated frame header")?;
        if fixed[..4] != FRAME_MAGIC {
            return Err("bad frame magic".into());
        }
        let codec =
            Codec::from_u8(fixed[4]).ok_or_else(|| format!("unknown codec {}", fixed[4]))?;
        if fixed[5..8] != [0, 0, 0] {
            return Err("reserved header bytes are not zero".into());
        }
        let u32_at = |at: usize| {
            u32::from_le_bytes([fixed[at], fixed[at + 1], fixed[at + 2], fixed[at + 3]])
        };
        let stored_len = u32_at(8);
        let raw_len = u32_at(12);
        let count = u32_at(16);
        if raw_len > MAX_FRAME_RAW || stored_len > MAX_FRAME_RAW + (MAX_FRAME_RAW >> 4) {
            return Err(format!(
                "frame of {raw_len} bytes ({stored_len} stored) exceeds the limit"
            ));
        }
        if count == 0 || count > raw_len {
            return Err(format!("frame claims {count} chunks in {raw_len} bytes"));
        }
        if codec == Codec::Raw && stored_len != raw_len {
            return Err("raw frame whose stored and raw lengths differ".into());
        }
        let table_len = count as usize * TABLE_ROW_LEN;
        let table = bytes
            .get(FRAME_FIXED_LEN..FRAME_FIXED_LEN + table_len)
            .ok_or("truncated frame chunk table")?;
        let mut check_input = blake3::Hasher::new();
        check_input.update(&fixed[..20]);
        check_input.update(table);
        if check_input.finalize().as_bytes()[..8] != fixed[20..28] {
            return Err("frame header checksum mismatch".into());
        }
        let mut chunks = Vec::with_capacity(count as usize);
        let mut sum: u64 = 0;
        for row in table.chunks_exact(TABLE_ROW_LEN) {
            let mut id = [0u8; 32];
            id.copy_from_slice(&row[..32]);
            let len = u32::from_le_bytes([row[32], row[33], row[34], row[35]]);
            if len == 0 {
                return Err("empty chunk in frame table".into());
            }
            sum += u64::from(len);
            chunks.push((ChunkId::from_bytes(id), len));
        }
        if sum != u64::from(raw_len) {
            return Err(format!("chunk lengths sum to {sum}, frame says {raw_len}"));
        }
        Ok(Self {
            codec,
            stored_len,
            raw_len,
            chunks,
        })
    }

    /// Appends the encoded header to `out`.
    pub(crate) fn write_to(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&FRAME_MAGIC);
        out.extend_from_slice(&[self.codec as u8, 0, 0, 0]);
        out.extend_from_slice(&self.stored_len.to_le_bytes());
        out.extend_from_slice(&self.raw_len.to_le_bytes());
        out.extend_from_slice(&(self.chunks.len() as u32).to_le_bytes());
        let check_at = out.len();
        out.extend_from_slice(&[0; 8]);
        for (id, len) in &self.chunks {
            out.extend_from_slice(id.as_bytes());
            out.extend_from_slice(&len.to_le_bytes());
        }
        let mut hasher = blake3::Hasher::new();
        hasher.update(&out[start..check_at]);
        hasher.update(&out[check_at + 8..]);
        let check = hasher.finalize();
        out[check_at..check_at + 8].copy_from_slice(&check.as_bytes()[..8]);
    }
}

/// An encoded frame ready to append to a pack.
pub(crate) struct EncodedFrame {
    /// Header followed by payload.
    pub(crate) bytes: Vec<u8>,
    /// Where the payload starts in `bytes`.
    pub(crate) payload_start: usize,
    pub(crate) header: FrameHeader,
}

thread_local! {
    static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
}

/// Compresses `raw` at `level` with this thread's reusable zstd context.
fn compress(raw: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            *slot = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        match slot.as_mut() {
            Some((_, compressor)) => compressor.compress(raw),
            None => unreachable!("the compressor was just set"),
        }
    })
}

/// Compresses `raw` at `level` with a window that spans all of it and zstd's
/// long-distance matcher, so that a run repeated megabytes later (a layer
/// holding the same entries as the snapshot next to it) costs next to
/// nothing. The output is a plain zstd frame: any decoder reads it.
fn compress_long(raw: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    use zstd::stream::raw::CParameter;
    // The smallest window that covers the input (zstd's minimum is 2^10);
    // MAX_FRAME_RAW (64 MiB) keeps it within what every decoder accepts.
    let window_log = usize::BITS - raw.len().max(1 << 10).saturating_sub(1).leading_zeros();
    let mut compressor = zstd::bulk::Compressor::new(level)?;
    compressor.set_parameter(CParameter::WindowLog(window_log))?;
    compressor.set_parameter(CParameter::EnableLongDistanceMatching(true))?;
    compressor.compress(raw)
}

/// Encodes the chunks (ids and bytes) whose concatenation is `raw` as a frame:
/// zstd at `level`, or raw if compression does not shrink it.
pub(crate) fn encode(
    chunks: Vec<(ChunkId, u32)>,
    raw: &[u8],
    level: i32,
) -> std::io::Result<EncodedFrame> {
    Ok(encode_with(chunks, raw, &compress(raw, level)?))
}

/// As [`encode`], for a group of metadata objects: compressed with a window
/// spanning the whole group and long-distance matching (see
/// [`compress_long`]), so objects that repeat one another are stored about
/// once. Reading it is no different.
pub(crate) fn encode_objects(
    chunks: Vec<(ChunkId, u32)>,
    raw: &[u8],
    level: i32,
) -> std::io::Result<EncodedFrame> {
    Ok(encode_with(chunks, raw, &compress_long(raw, level)?))
}

fn encode_with(chunks: Vec<(ChunkId, u32)>, raw: &[u8], compressed: &[u8]) -> EncodedFrame {
    debug_assert_eq!(
        chunks.iter().map(|(_, l)| u64::from(*l)).sum::<u64>(),
        raw.len() as u64
    );
    let (codec, payload): (Codec, &[u8]) = if compressed.len() < raw.len() {
        (Codec::Zstd, compressed)
    } else {
        (Codec::Raw, raw)
    };
    let header = FrameHeader {
        codec,
        stored_len: payload.len() as u32,
        raw_len: raw.len() as u32,
        chunks,
    };
    let mut bytes = Vec::with_capacity(header.encoded_len() + payload.len());
    header.write_to(&mut bytes);
    let payload_start = bytes.len();
    bytes.extend_from_slice(payload);
    EncodedFrame {
        bytes,
        payload_start,
        header,
    }
}

thread_local! {
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// Decodes a frame payload to exactly `raw_len` bytes. Never panics and never
/// allocates more than `raw_len` (capped by [`MAX_FRAME_RAW`]).
pub(crate) fn decode_payload(codec: Codec, stored: &[u8], raw_len: u32) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    match codec {
        Codec::Raw if stored.len() == raw_len as usize && raw_len <= MAX_FRAME_RAW => {
            Ok(stored.to_vec())
        }
        _ => decompress_into(codec, stored, raw_len, &mut out).map(|()| out),
    }
}

/// Decompresses a zstd payload into `out` (replacing what it held, reusing
/// its allocation) with this thread's reusable zstd context; `out` then holds
/// exactly `raw_len` bytes. A raw payload is refused: its bytes are the
/// chunks, to be used where they lie. Never panics and never grows `out` past
/// `raw_len` (capped by [`MAX_FRAME_RAW`]).
pub(crate) fn decompress_into(
    codec: Codec,
    stored: &[u8],
    raw_len: u32,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    if raw_len > MAX_FRAME_RAW {
        return Err(format!("frame of {raw_len} bytes exceeds the limit"));
    }
    match codec {
        Codec::Raw if stored.len() == raw_len as usize => {
            Err("a raw frame is not decompressed".into())
        }
        Codec::Raw => Err("raw frame of the wrong length".into()),
        Codec::Zstd => {
            out.clear();
            out.reserve_exact(raw_len as usize);
            DECOMPRESSOR
                .with(|cell| {
                    let mut slot = cell.borrow_mut();
                    let decompressor = match &mut *slot {
                        Some(d) => d,
                        None => slot.insert(zstd::bulk::Decompressor::new()?),
                    };
                    decompressor.decompress_to_buffer(stored, out)
                })
                .map_err(|e| format!("zstd: {e}"))?;
            if out.len() == raw_len as usize {
                Ok(())
            } else {
                Err(format!(
                    "frame decompressed to {} bytes, expected {raw_len}",
                    out.len()
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_of(parts: &[&[u8]], level: i32) -> EncodedFrame {
        let chunks = parts
            .iter()
            .map(|p| (ChunkId::of(p), p.len() as u32))
            .collect();
        encode(chunks, &parts.concat(), level).unwrap()
    }

    #[test]
    fn round_trip_compressible_and_raw() {
        let text = b"layer layer layer layer layer layer layer layer".repeat(100);
        let frame = frame_of(&[&text, b"tail"], 3);
        assert_eq!(frame.header.codec, Codec::Zstd);
        let parsed = FrameHeader::parse(&frame.bytes).unwrap();
        assert_eq!(parsed, frame.header);
        let payload = &frame.bytes[frame.payload_start..];
        assert_eq!(
            decode_payload(parsed.codec, payload, parsed.raw_len).unwrap(),
            [&text[..], b"tail"].concat()
        );

        let mut noise = vec![0u8; 4096];
        blake3::Hasher::new().finalize_xof().fill(&mut noise);
        let frame = frame_of(&[&noise], 3);
        assert_eq!(frame.header.codec, Codec::Raw);
        assert_eq!(&frame.bytes[frame.payload_start..], &noise[..]);
    }

    #[test]
    fn an_object_group_stores_a_repeated_run_about_once() {
        let mut noise = vec![0u8; 6 << 20];
        blake3::Hasher::new().finalize_xof().fill(&mut noise);
        let mut second = noise.clone();
        second.extend_from_slice(b"tail");
        let chunks = vec![
            (ChunkId::of(&noise), noise.len() as u32),
            (ChunkId::of(&second), second.len() as u32),
        ];
        let raw = [&noise[..], &second[..]].concat();
        let frame = encode_objects(chunks, &raw, 3).unwrap();
        assert_eq!(frame.header.codec, Codec::Zstd);
        // 6 MiB of noise twice: stored once, plus a little.
        let payload = &frame.bytes[frame.payload_start..];
        assert!(
            payload.len() < noise.len() + (64 << 10),
            "{}",
            payload.len()
        );
        assert_eq!(
            decode_payload(Codec::Zstd, payload, raw.len() as u32).unwrap(),
            raw
        );
        // A small group works too (the window's lower bound).
        let tiny = encode_objects(vec![(ChunkId::of(b"ab"), 2)], b"ab", 3).unwrap();
        let payload = &tiny.bytes[tiny.payload_start..];
        assert_eq!(
            decode_payload(tiny.header.codec, payload, 2).unwrap(),
            b"ab"
        );
    }

    #[test]
    fn damaged_headers_are_refused() {
        let frame = frame_of(&[b"abc", b"defg"], 3);
        for i in 0..frame.payload_start {
            let mut bytes = frame.bytes.clone();
            bytes[i] ^= 0x40;
            assert!(FrameHeader::parse(&bytes).is_err(), "flip at {i} accepted");
        }
        for len in 0..frame.payload_start {
            assert!(FrameHeader::parse(&frame.bytes[..len]).is_err());
        }
    }

    #[test]
    fn lying_payloads_are_refused() {
        let text = b"0123456789".repeat(1000);
        let frame = frame_of(&[&text], 3);
        let payload = &frame.bytes[frame.payload_start..];
        assert!(decode_payload(Codec::Zstd, payload, 10).is_err());
        assert!(decode_payload(Codec::Zstd, payload, 20_000).is_err());
        assert!(decode_payload(Codec::Zstd, &payload[..payload.len() / 2], 10_000).is_err());
        assert!(decode_payload(Codec::Zstd, payload, MAX_FRAME_RAW + 1).is_err());
    }
}
