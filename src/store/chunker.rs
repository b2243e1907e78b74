//! Content-defined chunking: `FastCDC` (2020) at the store's sizes.
//!
//! Chunk boundaries are part of the store format: the same bytes must always
//! cut at the same places, or deduplication against older data is lost. The
//! `fastcdc` crate's version is pinned in `Cargo.toml` and the boundaries of a
//! fixed input are pinned by a test below.

use fastcdc::v2020::{self, Normalization};

/// Finds chunk boundaries. Cheap to copy; holds only the parameters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Chunker {
    min: usize,
    avg: usize,
    max: usize,
    mask_s: u64,
    mask_l: u64,
}

impl Chunker {
    /// A chunker with these sizes (the store's config supplies them).
    pub(crate) fn new(min: u32, avg: u32, max: u32) -> Self {
        let (mask_s, mask_l) = v2020::select_masks(avg as usize, Normalization::Level1);
        Self {
            min: min as usize,
            avg: avg as usize,
            max: max as usize,
            mask_s,
            mask_l,
        }
    }

    /// The largest chunk this chunker makes.
    pub(crate) fn max_size(&self) -> usize {
        self.max
    }

    /// The length of the first chunk of `data`, assuming `data` runs to the end
    /// of the content or is at least `max_size` long. Returns 0 only for empty
    /// `data`.
    pub(crate) fn cut(&self, data: &[u8]) -> usize {
        if data.is_empty() {
            return 0;
        }
        let (_, len) = v2020::cut(
            data,
            self.min,
            self.avg,
            self.max,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
        );
        len
    }

    /// The chunk lengths of `data`, which must be the whole content.
    #[cfg(test)]
    pub(crate) fn lengths(&self, mut data: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        while !data.is_empty() {
            let len = self.cut(data);
            out.push(len);
            data = &data[len..];
        }
        out
    }

    /// Splits `data` into the ranges of its complete chunks. When `at_end` is
    /// false, more content follows `data`, so the last chunk is complete only if
    /// a boundary was found before the end of `data`; the bytes after the last
    /// complete chunk are returned as the carry (their offset in `data`).
    pub(crate) fn split(&self, data: &[u8], at_end: bool) -> (Vec<std::ops::Range<usize>>, usize) {
        let mut ranges = Vec::with_capacity(data.len() / self.avg + 1);
        let mut start = 0;
        while start < data.len() {
            let rest = &data[start..];
            if !at_end && rest.len() < self.max {
                // A cut found here might move once more bytes arrive, unless it
                // is a real boundary strictly inside `rest`.
                let len = self.cut(rest);
                if len >= rest.len() || rest.len() <= self.min {
                    break;
                }
                ranges.push(start..start + len);
                start += len;
                continue;
            }
            let len = self.cut(rest);
            ranges.push(start..start + len);
            start += len;
        }
        (ranges, start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::config::{CHUNK_AVG, CHUNK_MAX, CHUNK_MIN};

    /// A fixed pseudo-random input (xorshift64*), the same on every machine.
    pub(crate) fn pseudo_random(len: usize, mut seed: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            out.extend_from_slice(&seed.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
        out.truncate(len);
        out
    }

    fn store_chunker() -> Chunker {
        Chunker::new(CHUNK_MIN, CHUNK_AVG, CHUNK_MAX)
    }

    #[test]
    fn boundaries_are_pinned() {
        // If this test fails, chunk boundaries moved: every store written before
        // would stop deduplicating against new data. Do not update the numbers;
        // find what changed (the fastcdc version, the masks, the sizes).
        let data = pseudo_random(4 << 20, 0x5eed);
        let lengths = store_chunker().lengths(&data);
        let digest = blake3::hash(
            &lengths
                .iter()
                .flat_map(|l| (*l as u64).to_le_bytes())
                .collect::<Vec<_>>(),
        );
        assert_eq!(lengths.len(), PINNED_COUNT, "{lengths:?}");
        assert_eq!(&lengths[..8], &PINNED_FIRST);
        assert_eq!(digest.to_hex().as_str(), PINNED_DIGEST);
    }

    const PINNED_COUNT: usize = 58;
    const PINNED_FIRST: [usize; 8] = [
        70_860, 32_337, 69_488, 147_106, 80_103, 19_470, 35_570, 67_267,
    ];
    const PINNED_DIGEST: &str = "48606ba6050bea5f0ac67bc6246b51235a6b507e5b39de8b65e1b5a29edf9799";

    #[test]
    fn sizes_respect_the_limits() {
        let data = pseudo_random(3 << 20, 7);
        let lengths = store_chunker().lengths(&data);
        assert_eq!(lengths.iter().sum::<usize>(), data.len());
        let (last, body) = lengths.split_last().unwrap();
        assert!(*last <= CHUNK_MAX as usize);
        for len in body {
            assert!(
                (CHUNK_MIN as usize..=CHUNK_MAX as usize).contains(len),
                "{len}"
            );
        }
    }

    #[test]
    fn streaming_split_matches_whole_input() {
        let data = pseudo_random(2 << 20, 99);
        let whole = store_chunker().lengths(&data);
        for block in [1usize << 10, 100_000, 300_000, 1 << 20] {
            let chunker = store_chunker();
            let mut buf: Vec<u8> = Vec::new();
            let mut got = Vec::new();
            let mut fed = 0;
            while fed < data.len() {
                let end = (fed + block).min(data.len());
                buf.extend_from_slice(&data[fed..end]);
                fed = end;
                let (ranges, carry) = chunker.split(&buf, fed == data.len());
                got.extend(ranges.iter().map(std::ops::Range::len));
                buf.drain(..carry);
            }
            assert!(buf.is_empty());
            assert_eq!(got, whole, "block size {block}");
        }
    }
}
