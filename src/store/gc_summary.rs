//! The gc summary, `leases/gc.last`: what the last gc that rewrote nothing
//! concluded, so that a gc that finds nothing changed since walks nothing.
//!
//! A gc that rewrites and indexes nothing (it may delete whole packs), and in
//! which no lease kept a chunk no root reaches, records a *key*: a BLAKE3
//! digest of what its outcome depended on — its roots (tags, cache entries,
//! pins, extra roots, leased roots: each as a kind and an id), the packs it
//! kept (each as its id and its number of index records) and its repack
//! threshold. A later gc that computes the same key from what it reads (and
//! finds no pack without an index, and no combined index to rewrite) skips
//! the walk and the sweep: it would keep every pack.
//!
//! Why that is so: objects are content-addressed and immutable, so the same
//! roots over the same packs reach the same live set. That gc's leases added
//! no chunk (`leased_chunks_kept` was zero), so the live set alone decided
//! each pack's fate: kept, or deleted whole because it owned no live chunk;
//! taking away packs that owned no live chunk changes no other pack's plan,
//! so over the packs kept the same live set keeps them all, and leases read
//! now can only keep more. And a skipped gc deletes nothing, so the file can
//! never cost data: a missing, damaged or stale one only costs a full walk.
//!
//! Format (integers little-endian), 96 bytes:
//!
//! | bytes | what |
//! | --- | --- |
//! | 8 | magic `LSGCSUM1` |
//! | 32 | the key |
//! | 8 | live chunks that gc counted |
//! | 8 | of them, chunks no index named |
//! | 8 | bytes of packs and indexes that gc left |
//! | 32 | BLAKE3 of the 64 bytes before |

use super::{Store, layout};
use crate::fsutil::durable;
use crate::id::{ChunkId, PackId};

const MAGIC: &[u8; 8] = b"LSGCSUM1";
const LEN: usize = 8 + 32 + 3 * 8 + 32;

/// What a gc that rewrote nothing found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GcSummary {
    pub(crate) key: [u8; 32],
    pub(crate) live_chunks: u64,
    pub(crate) live_missing: u64,
    pub(crate) bytes_before: u64,
}

/// A root as the key sees it: its kind (tag, cache entry, pin, …) and id.
pub(crate) type KeyRoot = (u8, ChunkId);

/// Packs a gc planned over, each with its number of index records.
pub(crate) type PackSet = Vec<(PackId, u64)>;

/// The key of a gc over `roots` and `packs` (each pack with its number of
/// index records) at `threshold`; the order of either does not matter.
pub(crate) fn summary_key(roots: &[KeyRoot], packs: &[(PackId, u64)], threshold: f64) -> [u8; 32] {
    let mut roots = roots.to_vec();
    roots.sort_unstable();
    roots.dedup();
    let mut packs = packs.to_vec();
    packs.sort_unstable();
    let mut hasher = blake3::Hasher::new();
    hasher.update(MAGIC);
    hasher.update(&threshold.to_bits().to_le_bytes());
    hasher.update(&(roots.len() as u64).to_le_bytes());
    for (kind, id) in &roots {
        hasher.update(&[*kind]);
        hasher.update(id.as_bytes());
    }
    hasher.update(&(packs.len() as u64).to_le_bytes());
    for (id, records) in &packs {
        hasher.update(id.as_bytes());
        hasher.update(&records.to_le_bytes());
    }
    *hasher.finalize().as_bytes()
}

fn encode(summary: &GcSummary) -> Vec<u8> {
    let mut out = Vec::with_capacity(LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&summary.key);
    out.extend_from_slice(&summary.live_chunks.to_le_bytes());
    out.extend_from_slice(&summary.live_missing.to_le_bytes());
    out.extend_from_slice(&summary.bytes_before.to_le_bytes());
    let checksum = blake3::hash(&out);
    out.extend_from_slice(checksum.as_bytes());
    out
}

/// The summary in `bytes`; `None` unless it is whole and checks out.
fn decode(bytes: &[u8]) -> Option<GcSummary> {
    if bytes.len() != LEN {
        return None;
    }
    let (body, checksum) = bytes.split_at(LEN - 32);
    if blake3::hash(body).as_bytes()[..] != *checksum || body.get(..8)? != MAGIC {
        return None;
    }
    let u64_at = |at: usize| {
        body.get(at..at + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
    };
    Some(GcSummary {
        key: <[u8; 32]>::try_from(body.get(8..40)?).ok()?,
        live_chunks: u64_at(40)?,
        live_missing: u64_at(48)?,
        bytes_before: u64_at(56)?,
    })
}

/// The gc summary
impl Store {
    /// The summary the last gc that rewrote nothing left; `None` if there is
    /// none, or it does not read or check out (a full walk then).
    pub(crate) fn gc_summary(&self) -> Option<GcSummary> {
        decode(&std::fs::read(layout::gc_summary(&self.root)).ok()?)
    }

    /// Records `summary`. A cache: failing to write it only costs the next
    /// gc a full walk, so a failure is not reported.
    pub(crate) fn record_gc_summary(&self, summary: &GcSummary) {
        let path = layout::gc_summary(&self.root);
        if durable::write_atomic(&self.tmp_dir(), &path, &encode(summary)).is_err() {
            let _ = std::fs::remove_file(&path);
        }
    }

    /// The packs of the view a gc plans over (those whose index maps), each
    /// with its number of index records.
    pub(crate) fn gc_pack_set(&self) -> PackSet {
        self.committed_packs()
            .iter()
            .filter_map(|p| Some((p.id, p.index().ok()?.len() as u64)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> GcSummary {
        GcSummary {
            key: summary_key(
                &[(1, ChunkId::from_bytes([7; 32]))],
                &[(PackId::from_bytes([9; 32]), 4)],
                0.1,
            ),
            live_chunks: 12,
            live_missing: 1,
            bytes_before: 4096,
        }
    }

    #[test]
    fn a_summary_reads_back_and_any_damage_reads_as_none() {
        let bytes = encode(&summary());
        assert_eq!(decode(&bytes), Some(summary()));
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 1;
            assert_eq!(decode(&bad), None, "byte {at} flipped");
        }
        assert_eq!(decode(&bytes[..LEN - 1]), None);
        assert_eq!(decode(&[]), None);
    }

    #[test]
    fn the_key_ignores_order_and_sees_every_part() {
        let (a, b) = (ChunkId::from_bytes([1; 32]), ChunkId::from_bytes([2; 32]));
        let p = PackId::from_bytes([3; 32]);
        let key = summary_key(&[(0, a), (0, b)], &[(p, 5)], 0.1);
        assert_eq!(key, summary_key(&[(0, b), (0, a), (0, b)], &[(p, 5)], 0.1));
        assert_ne!(key, summary_key(&[(0, a)], &[(p, 5)], 0.1));
        assert_ne!(key, summary_key(&[(1, a), (0, b)], &[(p, 5)], 0.1));
        assert_ne!(key, summary_key(&[(0, a), (0, b)], &[(p, 6)], 0.1));
        assert_ne!(key, summary_key(&[(0, a), (0, b)], &[], 0.1));
        assert_ne!(key, summary_key(&[(0, a), (0, b)], &[(p, 5)], 0.2));
    }
}
