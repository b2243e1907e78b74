//! The combined index: one sorted table of the chunks of many packs, so that
//! a lookup costs one binary search whatever the number of packs (git's
//! multi-pack-index). It lives in `packs/combined.midx` and is a cache of what
//! the packs' own indexes say, never the only record: a missing, stale or
//! damaged one is rebuilt from them (see `store::maintain`).
//!
//! ```text
//! magic     "LSMIDX\0\x01"    8 bytes
//! rec_len   u32 LE            64
//! packs     u32 LE            P, the number of packs it covers
//! count     u64 LE            N, the number of records
//! fanout    256 × u32 LE      fanout[b] = number of records whose id's first byte ≤ b
//! packs     P × 48 bytes, sorted by id, no repeats:
//!             id              [u8; 32]  the pack's id (its file is packs/<id>.pack)
//!             pack length     u64 LE    the pack file's length in bytes
//!             records         u32 LE    records in the pack's own index
//!             zero            u32
//! records   N × 64 bytes, sorted by chunk id, no repeats (a chunk held by
//!           several packs is recorded once):
//!             id              [u8; 32]
//!             payload offset  u64 LE    as in a pack's index (`store::index`)
//!             stored length   u32 LE
//!             raw length      u32 LE
//!             offset in frame u32 LE
//!             length          u32 LE
//!             codec           u8
//!             chunks in frame u8
//!             zero            [u8; 2]
//!             pack            u32 LE    the pack's number in the table above
//! checksum  [u8; 32]          BLAKE3 of everything before it
//! ```
//!
//! As with a pack's index, opening checks the header, the lengths, the
//! fanout and the order of the pack table (not the records: that is a pass
//! over the whole file, which `fsck` makes); every record's numbers are
//! checked when used and every chunk read through it is verified against its
//! id, so a damaged record costs a lookup that misses or a read that fails
//! over to the packs' own indexes, never wrong bytes.

use std::ops::Deref;

use crate::id::{ChunkId, PackId};
use crate::store::index::{self, CHECKSUM_LEN, FANOUT_AT, Location, RECORD_LEN};

/// Combined index magic.
pub(crate) const COMBINED_MAGIC: [u8; 8] = *b"LSMIDX\0\x01";
const HEADER_LEN: usize = FANOUT_AT + 256 * 4;
/// Bytes per row of the pack table.
const PACK_ROW_LEN: usize = 48;

/// The length of a combined index over `packs` packs and `records` distinct
/// chunks (what a dry run of gc counts on).
pub(crate) fn encoded_len(packs: usize, records: usize) -> u64 {
    (HEADER_LEN + PACK_ROW_LEN * packs + RECORD_LEN * records + CHECKSUM_LEN) as u64
}

/// A pack as the combined index describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PackEntry {
    pub(crate) id: PackId,
    /// The pack file's length.
    pub(crate) len: u64,
    /// Records in the pack's own index.
    pub(crate) records: u32,
}

/// A combined index over bytes `T` (an mmap of `combined.midx`, or a `Vec`).
pub(crate) struct CombinedIndex<T> {
    data: T,
    packs: usize,
    count: usize,
}

impl<T: Deref<Target = [u8]>> CombinedIndex<T> {
    /// Checks the header, the file's length, the fanout and that the pack
    /// table is sorted; does not read the records.
    pub(crate) fn new(data: T) -> Result<Self, String> {
        let bytes: &[u8] = &data;
        let header = bytes
            .get(..HEADER_LEN)
            .ok_or("truncated combined index header")?;
        if header[..8] != COMBINED_MAGIC {
            return Err("bad combined index magic".into());
        }
        let u32_at = |at: usize| {
            u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
        };
        let rec_len = u32_at(8);
        if rec_len as usize != RECORD_LEN {
            return Err(format!("unsupported record length {rec_len}"));
        }
        let packs = u64::from(u32_at(12));
        let mut count_bytes = [0u8; 8];
        count_bytes.copy_from_slice(&header[16..24]);
        let count = u64::from_le_bytes(count_bytes);
        let expected = u128::from(packs) * PACK_ROW_LEN as u128
            + u128::from(count) * RECORD_LEN as u128
            + (HEADER_LEN + CHECKSUM_LEN) as u128;
        if expected != bytes.len() as u128 {
            return Err(format!(
                "combined index claims {packs} packs and {count} records but is {} bytes long",
                bytes.len()
            ));
        }
        let packs = usize::try_from(packs).map_err(|_| "pack count overflows")?;
        let count = usize::try_from(count).map_err(|_| "record count overflows")?;
        index::check_fanout(header, count)?;
        let index = Self { data, packs, count };
        for p in 1..packs {
            if index.pack_row(p - 1)[..32] >= index.pack_row(p)[..32] {
                return Err(format!("packs {} and {p} are out of order", p - 1));
            }
        }
        Ok(index)
    }

    /// Number of packs covered.
    pub(crate) fn pack_count(&self) -> usize {
        self.packs
    }

    /// Number of records.
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    fn pack_row(&self, p: usize) -> &[u8] {
        let start = HEADER_LEN + p * PACK_ROW_LEN;
        &self.data[start..start + PACK_ROW_LEN]
    }

    /// Pack `p` of the table (`p < pack_count()`).
    pub(crate) fn pack_at(&self, p: usize) -> PackEntry {
        let row = self.pack_row(p);
        let mut id = [0u8; 32];
        id.copy_from_slice(&row[..32]);
        let mut len = [0u8; 8];
        len.copy_from_slice(&row[32..40]);
        PackEntry {
            id: PackId::from_bytes(id),
            len: u64::from_le_bytes(len),
            records: u32::from_le_bytes([row[40], row[41], row[42], row[43]]),
        }
    }

    fn records_at(&self) -> usize {
        HEADER_LEN + self.packs * PACK_ROW_LEN
    }

    /// The id of record `i` (`i < len()`).
    pub(crate) fn id_at(&self, i: usize) -> ChunkId {
        let mut id = [0u8; 32];
        id.copy_from_slice(&index::record_at(&self.data, self.records_at(), i)[..32]);
        ChunkId::from_bytes(id)
    }

    /// The pack number of record `i` (`i < len()`; it may be out of range in
    /// a damaged file, which the caller checks against `pack_count`).
    pub(crate) fn pack_of(&self, i: usize) -> usize {
        let r = index::record_at(&self.data, self.records_at(), i);
        u32::from_le_bytes([r[60], r[61], r[62], r[63]]) as usize
    }

    /// The location in record `i` (`i < len()`); `None` if its codec is unknown.
    pub(crate) fn location_at(&self, i: usize) -> Option<Location> {
        index::decode_location(index::record_at(&self.data, self.records_at(), i))
    }

    /// Finds `id`; returns the record number.
    pub(crate) fn find(&self, id: &ChunkId) -> Option<usize> {
        index::search(&self.data, self.records_at(), id)
    }

    /// The record numbers of ids whose first byte is `first`.
    pub(crate) fn first_byte_range(&self, first: u8) -> std::ops::Range<usize> {
        index::first_byte_range(&self.data, first)
    }

    /// Verifies the trailing checksum, that the records are strictly sorted
    /// and that each names a pack of the table.
    pub(crate) fn verify(&self) -> Result<(), String> {
        let body_len = self.data.len() - CHECKSUM_LEN;
        if blake3::hash(&self.data[..body_len]).as_bytes()[..] != self.data[body_len..] {
            return Err("combined index checksum mismatch".into());
        }
        let records_at = self.records_at();
        for i in 0..self.count {
            if i > 0
                && index::record_at(&self.data, records_at, i - 1)[..32]
                    >= index::record_at(&self.data, records_at, i)[..32]
            {
                return Err(format!("records {} and {i} are out of order", i - 1));
            }
            if self.pack_of(i) >= self.packs {
                return Err(format!(
                    "record {i} names pack {} of {}",
                    self.pack_of(i),
                    self.packs
                ));
            }
        }
        Ok(())
    }
}

/// One record of a combined index being built: a chunk, the number of its
/// pack in the table, and where it is in that pack.
pub(crate) type Entry = (ChunkId, u32, Location);

/// Encodes a combined index of `packs` (sorted by id, no repeats) and
/// `records` (sorted by chunk id, no repeats, each naming a pack of `packs`
/// by its number).
pub(crate) fn encode(packs: &[PackEntry], records: &[Entry]) -> Vec<u8> {
    debug_assert!(packs.windows(2).all(|w| w[0].id < w[1].id));
    debug_assert!(records.windows(2).all(|w| w[0].0 < w[1].0));
    let mut out = Vec::with_capacity(
        HEADER_LEN + packs.len() * PACK_ROW_LEN + records.len() * RECORD_LEN + CHECKSUM_LEN,
    );
    out.extend_from_slice(&COMBINED_MAGIC);
    out.extend_from_slice(&(RECORD_LEN as u32).to_le_bytes());
    out.extend_from_slice(&(packs.len() as u32).to_le_bytes());
    out.extend_from_slice(&(records.len() as u64).to_le_bytes());
    index::encode_fanout(&mut out, records.iter().map(|(id, _, _)| id));
    for pack in packs {
        out.extend_from_slice(pack.id.as_bytes());
        out.extend_from_slice(&pack.len.to_le_bytes());
        out.extend_from_slice(&pack.records.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
    }
    for (id, pack, loc) in records {
        index::encode_record_start(&mut out, id, loc);
        out.extend_from_slice(&[0; 2]);
        out.extend_from_slice(&pack.to_le_bytes());
    }
    let checksum = blake3::hash(&out);
    out.extend_from_slice(checksum.as_bytes());
    out
}

/// Sorts `records` by chunk id and drops repeats, keeping for each chunk the
/// record that came first.
pub(crate) fn sort_records(records: &mut Vec<Entry>) {
    records.sort_by_key(|r| r.0);
    records.dedup_by(|later, first| later.0 == first.0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::frame::Codec;

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

    fn sample(n: u64, packs: u32) -> (Vec<PackEntry>, Vec<Entry>) {
        let mut table: Vec<PackEntry> = (0..packs)
            .map(|p| PackEntry {
                id: PackId::of(&p.to_le_bytes()),
                len: 1000 + u64::from(p),
                records: p,
            })
            .collect();
        table.sort_by_key(|p| p.id);
        let mut records: Vec<Entry> = (0..n)
            .map(|i| {
                (
                    ChunkId::of(&i.to_le_bytes()),
                    (i % u64::from(packs)) as u32,
                    loc(i),
                )
            })
            .collect();
        sort_records(&mut records);
        (table, records)
    }

    #[test]
    fn encode_then_find_every_record() {
        let (packs, records) = sample(3000, 7);
        let index = CombinedIndex::new(encode(&packs, &records)).unwrap();
        index.verify().unwrap();
        assert_eq!(index.len(), 3000);
        assert_eq!(index.pack_count(), 7);
        for (p, entry) in packs.iter().enumerate() {
            assert_eq!(index.pack_at(p), *entry);
        }
        for (id, pack, l) in &records {
            let i = index.find(id).unwrap();
            assert_eq!(index.id_at(i), *id);
            assert_eq!(index.pack_of(i), *pack as usize);
            assert_eq!(index.location_at(i).unwrap(), *l);
        }
        assert!(index.find(&ChunkId::of(b"absent")).is_none());
        let empty = CombinedIndex::new(encode(&[], &[])).unwrap();
        empty.verify().unwrap();
        assert!(empty.find(&ChunkId::of(b"x")).is_none());
    }

    #[test]
    fn damage_is_caught() {
        let (packs, records) = sample(50, 3);
        let bytes = encode(&packs, &records);
        assert!(CombinedIndex::new(&bytes[..bytes.len() - 1]).is_err());
        assert!(CombinedIndex::new(&bytes[..100]).is_err());
        let mut magic = bytes.clone();
        magic[0] ^= 1;
        assert!(CombinedIndex::new(magic).is_err());
        let mut count = bytes.clone();
        count[12] = 0xff;
        assert!(CombinedIndex::new(count).is_err());
        // A record naming a pack past the table: opened, caught by verify.
        let mut pack = bytes.clone();
        let last_record_end = bytes.len() - CHECKSUM_LEN;
        pack[last_record_end - 1] = 0xff;
        let index = CombinedIndex::new(pack).unwrap();
        assert!(index.verify().is_err());
        let mut unsorted_packs = bytes.clone();
        unsorted_packs.swap(HEADER_LEN, HEADER_LEN + PACK_ROW_LEN);
        unsorted_packs[HEADER_LEN] = 0xff;
        unsorted_packs[HEADER_LEN + PACK_ROW_LEN] = 0;
        assert!(CombinedIndex::new(unsorted_packs).is_err());
    }
}
