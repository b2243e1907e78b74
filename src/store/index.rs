//! Pack indexes: sorted fixed-width records, read in place (from an mmap).
//!
//! ```text
//! magic     "LSIDX\0\0\x01"   8 bytes
//! rec_len   u32 LE            64
//! zero      u32
//! count     u64 LE
//! fanout    256 × u32 LE      fanout[b] = number of records whose id's first byte ≤ b
//! records   count × 64 bytes, sorted by id:
//!             id              [u8; 32]
//!             payload offset  u64 LE   where the frame's payload starts in the pack
//!             stored length   u32 LE   the payload's length in the pack
//!             raw length      u32 LE   the payload's length decompressed
//!             offset in frame u32 LE   where the chunk starts in the raw payload
//!             length          u32 LE   the chunk's length
//!             codec           u8
//!             chunks in frame u8       saturated at 255; 1 means a frame of its own
//!             zero            [u8; 6]
//! checksum  [u8; 32]          BLAKE3 of everything before it
//! ```
//!
//! The reader trusts nothing: the header is checked when the index is opened,
//! every record's numbers are bounds-checked when used, and every chunk read
//! through it is verified against its id. The checksum is verified by `fsck`
//! (it costs a pass over the file, which opening a store must not).

use std::ops::Deref;

use crate::id::ChunkId;
use crate::store::frame::{Codec, MAX_FRAME_RAW};

/// Index magic.
pub(crate) const INDEX_MAGIC: [u8; 8] = *b"LSIDX\0\0\x01";
/// Bytes per record.
pub(crate) const RECORD_LEN: usize = 64;
const HEADER_LEN: usize = FANOUT_AT + 256 * 4;
/// Where the fanout table starts, in this format and in the combined index's.
pub(crate) const FANOUT_AT: usize = 8 + 4 + 4 + 8;
/// Bytes of the trailing checksum, in this format and in the combined index's.
pub(crate) const CHECKSUM_LEN: usize = 32;

/// A chunk and where it is.
pub(crate) type Record = (ChunkId, Location);

/// Where a chunk is in its pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Location {
    pub(crate) payload_offset: u64,
    pub(crate) stored_len: u32,
    pub(crate) raw_len: u32,
    pub(crate) offset_in_frame: u32,
    pub(crate) len: u32,
    pub(crate) codec: Codec,
    /// Chunks sharing the frame (saturating at 255).
    pub(crate) frame_chunks: u8,
}

impl Location {
    /// Checks the record's numbers against each other and against `pack_len`.
    pub(crate) fn check(&self, pack_len: u64) -> Result<(), String> {
        let end = self.payload_offset.checked_add(u64::from(self.stored_len));
        if end.is_none_or(|end| end > pack_len) {
            return Err(format!(
                "frame at {} of {} bytes runs past the end of the pack ({pack_len} bytes)",
                self.payload_offset, self.stored_len
            ));
        }
        if self.raw_len > MAX_FRAME_RAW {
            return Err(format!("frame of {} bytes exceeds the limit", self.raw_len));
        }
        if self.len == 0
            || u64::from(self.offset_in_frame) + u64::from(self.len) > u64::from(self.raw_len)
        {
            return Err(format!(
                "chunk at {}+{} lies outside its frame of {} bytes",
                self.offset_in_frame, self.len, self.raw_len
            ));
        }
        if self.codec == Codec::Raw && self.stored_len != self.raw_len {
            return Err("raw frame whose stored and raw lengths differ".into());
        }
        Ok(())
    }
}

/// A pack index over bytes `T` (an mmap of the `.idx` file, or a `Vec` in tests
/// and fuzz targets).
pub(crate) struct Index<T> {
    data: T,
    count: usize,
}

impl<T: Deref<Target = [u8]>> Index<T> {
    /// Checks the header and the file's length; cheap (does not read the records).
    pub(crate) fn new(data: T) -> Result<Self, String> {
        let bytes: &[u8] = &data;
        let header = bytes.get(..HEADER_LEN).ok_or("truncated index header")?;
        if header[..8] != INDEX_MAGIC {
            return Err("bad index magic".into());
        }
        let rec_len = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
        if rec_len as usize != RECORD_LEN || header[12..16] != [0; 4] {
            return Err(format!("unsupported record length {rec_len}"));
        }
        let mut count_bytes = [0u8; 8];
        count_bytes.copy_from_slice(&header[16..24]);
        let count = u64::from_le_bytes(count_bytes);
        let expected =
            u128::from(count) * (RECORD_LEN as u128) + (HEADER_LEN + CHECKSUM_LEN) as u128;
        if expected != bytes.len() as u128 {
            return Err(format!(
                "index claims {count} records but is {} bytes long",
                bytes.len()
            ));
        }
        let count = usize::try_from(count).map_err(|_| "record count overflows")?;
        check_fanout(header, count)?;
        Ok(Self { data, count })
    }

    /// Number of records.
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    fn record(&self, i: usize) -> &[u8] {
        record_at(&self.data, HEADER_LEN, i)
    }

    /// The id of record `i` (`i < len()`).
    pub(crate) fn id_at(&self, i: usize) -> ChunkId {
        let mut id = [0u8; 32];
        id.copy_from_slice(&self.record(i)[..32]);
        ChunkId::from_bytes(id)
    }

    /// The location in record `i` (`i < len()`); `None` if its codec is unknown.
    pub(crate) fn location_at(&self, i: usize) -> Option<Location> {
        decode_location(self.record(i))
    }

    /// Finds `id`: the fanout narrows to ids with the same first byte, then a
    /// binary search. Returns the record number.
    pub(crate) fn find(&self, id: &ChunkId) -> Option<usize> {
        search(&self.data, HEADER_LEN, id)
    }

    /// The record numbers of ids whose first byte is `first`.
    pub(crate) fn first_byte_range(&self, first: u8) -> std::ops::Range<usize> {
        first_byte_range(&self.data, first)
    }

    /// Verifies the trailing checksum and that the records are strictly sorted.
    pub(crate) fn verify(&self) -> Result<(), String> {
        let body_len = self.data.len() - CHECKSUM_LEN;
        if blake3::hash(&self.data[..body_len]).as_bytes()[..] != self.data[body_len..] {
            return Err("index checksum mismatch".into());
        }
        for i in 1..self.count {
            if self.record(i - 1)[..32] >= self.record(i)[..32] {
                return Err(format!("records {} and {i} are out of order", i - 1));
            }
        }
        Ok(())
    }
}

/// Sorted tables of 64-byte records with a fanout: the layout both index
/// formats share (this one and the combined index, `combined_index.rs`).
fn fanout_at(header: &[u8], b: usize) -> u32 {
    let at = FANOUT_AT + b * 4;
    u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
}

/// Checks that the fanout table of `header` rises to `count`.
pub(crate) fn check_fanout(header: &[u8], count: usize) -> Result<(), String> {
    let mut previous = 0u32;
    for b in 0..256 {
        let f = fanout_at(header, b);
        if f < previous || f as usize > count {
            return Err(format!("fanout table is not monotonic at {b}"));
        }
        previous = f;
    }
    if previous as usize != count {
        return Err("fanout table does not end at the record count".into());
    }
    Ok(())
}

/// Record `i` of the table that starts at `records_at` in `data`.
pub(crate) fn record_at(data: &[u8], records_at: usize, i: usize) -> &[u8] {
    let start = records_at + i * RECORD_LEN;
    &data[start..start + RECORD_LEN]
}

/// The record numbers of ids whose first byte is `first`, by the fanout of
/// `data` (whose header was checked).
pub(crate) fn first_byte_range(data: &[u8], first: u8) -> std::ops::Range<usize> {
    let b = usize::from(first);
    let lo = if b == 0 {
        0
    } else {
        fanout_at(data, b - 1) as usize
    };
    lo..fanout_at(data, b) as usize
}

/// Finds `id` in the table at `records_at` of `data` (whose header was
/// checked): the fanout narrows to ids with the same first byte, then a
/// binary search. Returns the record number.
pub(crate) fn search(data: &[u8], records_at: usize, id: &ChunkId) -> Option<usize> {
    let range = first_byte_range(data, id.as_bytes()[0]);
    let (mut lo, mut hi) = (range.start, range.end);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match record_at(data, records_at, mid)[..32].cmp(id.as_bytes()) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => return Some(mid),
        }
    }
    None
}

/// The location in a record (bytes 32..58); `None` if its codec is unknown.
pub(crate) fn decode_location(r: &[u8]) -> Option<Location> {
    let u32_at = |at: usize| u32::from_le_bytes([r[at], r[at + 1], r[at + 2], r[at + 3]]);
    let mut offset = [0u8; 8];
    offset.copy_from_slice(&r[32..40]);
    Some(Location {
        payload_offset: u64::from_le_bytes(offset),
        stored_len: u32_at(40),
        raw_len: u32_at(44),
        offset_in_frame: u32_at(48),
        len: u32_at(52),
        codec: Codec::from_u8(r[56])?,
        frame_chunks: r[57],
    })
}

/// Appends a record's id and location (58 bytes; the caller adds the rest).
pub(crate) fn encode_record_start(out: &mut Vec<u8>, id: &ChunkId, loc: &Location) {
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(&loc.payload_offset.to_le_bytes());
    out.extend_from_slice(&loc.stored_len.to_le_bytes());
    out.extend_from_slice(&loc.raw_len.to_le_bytes());
    out.extend_from_slice(&loc.offset_in_frame.to_le_bytes());
    out.extend_from_slice(&loc.len.to_le_bytes());
    out.push(loc.codec as u8);
    out.push(loc.frame_chunks);
}

/// Appends the fanout table of `ids` (sorted).
pub(crate) fn encode_fanout<'a>(out: &mut Vec<u8>, ids: impl Iterator<Item = &'a ChunkId>) {
    let mut fanout = [0u32; 256];
    for id in ids {
        fanout[usize::from(id.as_bytes()[0])] += 1;
    }
    let mut running = 0u32;
    for f in &mut fanout {
        running += *f;
        out.extend_from_slice(&running.to_le_bytes());
    }
}

/// Encodes an index of `records`, which need not be sorted; duplicate ids keep
/// the first record.
pub(crate) fn encode(records: &mut Vec<Record>) -> Vec<u8> {
    records.sort_by_key(|r| r.0);
    records.dedup_by(|a, b| a.0 == b.0);
    let mut out = Vec::with_capacity(HEADER_LEN + records.len() * RECORD_LEN + CHECKSUM_LEN);
    out.extend_from_slice(&INDEX_MAGIC);
    out.extend_from_slice(&(RECORD_LEN as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(records.len() as u64).to_le_bytes());
    encode_fanout(&mut out, records.iter().map(|(id, _)| id));
    for (id, loc) in records.iter() {
        encode_record_start(&mut out, id, loc);
        out.extend_from_slice(&[0; 6]);
    }
    let checksum = blake3::hash(&out);
    out.extend_from_slice(checksum.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(n: u64) -> Location {
        Location {
            payload_offset: 8 + n * 100,
            stored_len: 100,
            raw_len: 100,
            offset_in_frame: 0,
            len: 100,
            codec: Codec::Raw,
            frame_chunks: 1,
        }
    }

    #[test]
    fn encode_then_find_every_record() {
        let mut records: Vec<_> = (0..5000u64)
            .map(|n| (ChunkId::of(&n.to_le_bytes()), loc(n)))
            .collect();
        let expected = records.clone();
        let bytes = encode(&mut records);
        let index = Index::new(bytes).unwrap();
        index.verify().unwrap();
        assert_eq!(index.len(), 5000);
        for (id, l) in expected {
            let i = index.find(&id).unwrap();
            assert_eq!(index.id_at(i), id);
            assert_eq!(index.location_at(i).unwrap(), l);
        }
        assert!(index.find(&ChunkId::of(b"absent")).is_none());
    }

    #[test]
    fn empty_index_is_valid() {
        let index = Index::new(encode(&mut Vec::new())).unwrap();
        assert_eq!(index.len(), 0);
        assert!(index.find(&ChunkId::of(b"x")).is_none());
    }

    #[test]
    fn damage_is_caught() {
        let mut records: Vec<_> = (0..10u64)
            .map(|n| (ChunkId::of(&n.to_le_bytes()), loc(n)))
            .collect();
        let bytes = encode(&mut records);
        assert!(Index::new(&bytes[..bytes.len() - 1]).is_err());
        assert!(Index::new(&bytes[..100]).is_err());
        let mut flipped = bytes.clone();
        flipped[HEADER_LEN + 5] ^= 1;
        let index = Index::new(flipped).unwrap();
        assert!(index.verify().is_err());
        let mut count = bytes.clone();
        count[16] = 0xff;
        assert!(Index::new(count).is_err());
    }

    #[test]
    fn locations_past_the_pack_are_refused() {
        assert!(loc(1).check(10).is_err());
        assert!(loc(1).check(208).is_ok());
        let mut l = loc(0);
        l.offset_in_frame = 50;
        assert!(l.check(1000).is_err());
        l.payload_offset = u64::MAX;
        assert!(l.check(u64::MAX).is_err());
    }
}
