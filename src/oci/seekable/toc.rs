//! A seekable layer's table of contents and footer: their bytes, both ways.
//!
//! Decoding trusts nothing: every count is bounded by the bytes that hold
//! it, every range is checked against the blob, and the TOC's bytes are
//! checked against the digest the manifest gives before they are decoded
//! (by the caller). `docs/FORMAT.md` ("Seekable layers") is the
//! specification; this file is its reference.

// The reading half (decoding, checking) serves pulls (feature `registry`);
// without it, only fuzzing reads, and a build writes seekable layers only.
#![cfg_attr(not(feature = "registry"), allow(dead_code))]

use std::collections::HashSet;
use std::io::Read as _;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::LayerId;
use crate::tree::{EntryKind, Layer, layer_from_objects};

/// The magic of the skippable frame that holds the TOC (little-endian).
pub(crate) const TOC_FRAME_MAGIC: u32 = 0x184D_2A5C;
/// The magic of the skippable frame that is the footer (little-endian).
pub(crate) const FOOTER_FRAME_MAGIC: u32 = 0x184D_2A5D;
/// The footer's length: the blob's last bytes.
pub(crate) const FOOTER_LEN: usize = 48;
/// The footer's own magic, after its frame header: "LSSEEK", version 1.
const FOOTER_MAGIC: [u8; 8] = *b"LSSEEK\x00\x01";
/// The first bytes of the decompressed TOC: "LSTOC", a zero, version 1.
const TOC_MAGIC: [u8; 8] = *b"LSTOC\x00\x01\x00";
/// The largest TOC accepted, compressed and decompressed.
pub(crate) const MAX_TOC_LEN: u64 = 256 << 20;
pub(crate) const MAX_TOC_RAW: u64 = 1 << 30;
/// The most a TOC may expand when decompressed (layerstore's expand about
/// two to three times: ids do not compress).
pub(crate) const MAX_TOC_EXPANSION: u64 = 64;
/// The largest frame accepted, decompressed (writers cut at 1 MiB).
pub(crate) const MAX_FRAME_RAW: u32 = 16 << 20;

/// Where the TOC is: its skippable frame's offset and length in the blob,
/// and the length of the TOC decompressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TocPosition {
    pub(crate) offset: u64,
    pub(crate) len: u64,
    pub(crate) raw: u64,
}

impl TocPosition {
    /// The footer that locates this TOC.
    pub(crate) fn footer(&self) -> [u8; FOOTER_LEN] {
        let mut out = [0u8; FOOTER_LEN];
        out[0..4].copy_from_slice(&FOOTER_FRAME_MAGIC.to_le_bytes());
        out[4..8].copy_from_slice(&((FOOTER_LEN - 8) as u32).to_le_bytes());
        out[8..16].copy_from_slice(&FOOTER_MAGIC);
        out[16..24].copy_from_slice(&self.offset.to_le_bytes());
        out[24..32].copy_from_slice(&self.len.to_le_bytes());
        out[32..40].copy_from_slice(&self.raw.to_le_bytes());
        out
    }

    /// Reads a footer, the last [`FOOTER_LEN`] bytes of a blob of
    /// `blob_size` bytes, and checks that the TOC it locates fits the blob
    /// just before it.
    pub(crate) fn from_footer(footer: &[u8], blob_size: u64) -> Result<Self> {
        let bad = |reason: String| Error::Malformed {
            what: "seekable layer footer",
            reason,
        };
        let footer: &[u8; FOOTER_LEN] = footer
            .try_into()
            .map_err(|_| bad(format!("{} bytes, not {FOOTER_LEN}", footer.len())))?;
        let u32_at = |at: usize| {
            u32::from_le_bytes([footer[at], footer[at + 1], footer[at + 2], footer[at + 3]])
        };
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&footer[at..at + 8]);
            u64::from_le_bytes(b)
        };
        if u32_at(0) != FOOTER_FRAME_MAGIC || u32_at(4) != (FOOTER_LEN - 8) as u32 {
            return Err(bad("not a layerstore footer frame".into()));
        }
        if footer[8..16] != FOOTER_MAGIC {
            return Err(bad("wrong magic or an unknown version".into()));
        }
        if footer[40..48] != [0; 8] {
            return Err(bad("reserved bytes are not zero".into()));
        }
        let position = Self {
            offset: u64_at(16),
            len: u64_at(24),
            raw: u64_at(32),
        };
        position.check(blob_size)?;
        Ok(position)
    }

    /// `offset:len:raw`, as the manifest's annotation gives it.
    pub(crate) fn to_annotation(self) -> String {
        format!("{}:{}:{}", self.offset, self.len, self.raw)
    }

    /// Parses [`to_annotation`](Self::to_annotation)'s form, checked
    /// against a blob of `blob_size` bytes.
    pub(crate) fn from_annotation(text: &str, blob_size: u64) -> Result<Self> {
        let bad = || Error::Malformed {
            what: "seekable layer annotation",
            reason: format!("'{text}' is not offset:length:raw-length"),
        };
        let mut parts = text.split(':').map(str::parse::<u64>);
        let (Some(Ok(offset)), Some(Ok(len)), Some(Ok(raw)), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let position = Self { offset, len, raw };
        position.check(blob_size)?;
        Ok(position)
    }

    fn check(&self, blob_size: u64) -> Result<()> {
        let bad = |reason: String| Error::Malformed {
            what: "seekable layer footer",
            reason,
        };
        if self.len < 9
            || self.len > MAX_TOC_LEN
            || self.raw > MAX_TOC_RAW
            || self.raw > self.len.saturating_mul(MAX_TOC_EXPANSION)
        {
            return Err(bad(format!(
                "a TOC of {} bytes ({} decompressed) is outside the limits ({MAX_TOC_LEN}, {MAX_TOC_RAW}, {MAX_TOC_EXPANSION} times)",
                self.len, self.raw
            )));
        }
        let end = self
            .offset
            .checked_add(self.len)
            .and_then(|e| e.checked_add(FOOTER_LEN as u64));
        if end != Some(blob_size) {
            return Err(bad(format!(
                "a TOC at {}+{} and the footer do not end a blob of {blob_size} bytes",
                self.offset, self.len
            )));
        }
        Ok(())
    }
}

/// One zstd frame of the layer's tar: its compressed and decompressed
/// lengths (its offset is the sum of the lengths before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TocFrame {
    pub(crate) len: u32,
    pub(crate) raw: u32,
}

/// Where a chunk lies, as the TOC holds it: a frame and the offset in its
/// decompressed bytes (the chunk's id and length are its file's: see
/// [`TocWire::chunks`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WireChunk {
    pub(crate) frame: u32,
    pub(crate) offset: u32,
}

/// The table of contents as encoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TocWire {
    /// The layer's object id.
    pub(crate) layer: [u8; 32],
    /// The objects that store the layer (directories, then the layer).
    pub(crate) objects: Vec<Vec<u8>>,
    /// Every frame of the tar, in order.
    pub(crate) frames: Vec<TocFrame>,
    /// Where each distinct chunk of the layer's files lies, in the order
    /// the chunks first appear when the layer's files are taken in path
    /// order, each file's chunks in order (the order of the tar).
    pub(crate) chunks: Vec<WireChunk>,
    /// Paths whose content a lazy reader fetches first, in order.
    pub(crate) prefetch: Vec<Vec<u8>>,
}

/// A chunk of the layer and where it lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TocChunk {
    pub(crate) id: [u8; 32],
    pub(crate) frame: u32,
    pub(crate) offset: u32,
    pub(crate) len: u32,
}

/// A table of contents, decoded and checked: its layer decoded from its
/// objects, each chunk paired with its place.
#[derive(Debug, Clone)]
pub(crate) struct Toc {
    pub(crate) layer: [u8; 32],
    pub(crate) objects: Vec<Vec<u8>>,
    pub(crate) frames: Vec<TocFrame>,
    /// Every chunk of the layer's files, sorted by id.
    pub(crate) chunks: Vec<TocChunk>,
    pub(crate) prefetch: Vec<Vec<u8>>,
    /// The layer the objects hold.
    pub(crate) decoded: Layer,
}

impl TocWire {
    /// The decompressed TOC's bytes: magic, then the postcard body.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let out = TOC_MAGIC.to_vec();
        postcard::to_extend(self, out)
            .unwrap_or_else(|err| unreachable!("postcard encoding into a Vec failed: {err}"))
    }

    /// The TOC's skippable frame: its header, then the TOC compressed.
    pub(crate) fn to_frame(&self, level: i32) -> Result<(Vec<u8>, u64)> {
        let raw = self.encode();
        let compressed = zstd::bulk::compress(&raw, level)
            .map_err(|e| Error::io("compress", "seekable layer TOC", e))?;
        let mut frame = Vec::with_capacity(8 + compressed.len());
        frame.extend_from_slice(&TOC_FRAME_MAGIC.to_le_bytes());
        let len = u32::try_from(compressed.len()).map_err(|_| Error::TooLarge {
            what: "seekable layer TOC",
            size: compressed.len() as u64,
            max: u64::from(u32::MAX),
        })?;
        frame.extend_from_slice(&len.to_le_bytes());
        frame.extend_from_slice(&compressed);
        Ok((frame, raw.len() as u64))
    }
}

impl Toc {
    /// Decodes the TOC's skippable frame (as located by `position`) and
    /// checks it against the blob: frames that end where the TOC begins,
    /// a layer its objects hold, and a place inside its frame for each of
    /// the layer's chunks.
    pub(crate) fn from_frame(frame: &[u8], position: &TocPosition) -> Result<Self> {
        let bad = |reason: String| Error::Malformed {
            what: "seekable layer TOC",
            reason,
        };
        if frame.len() as u64 != position.len || frame.len() < 8 {
            return Err(bad(format!(
                "{} bytes where {} were expected",
                frame.len(),
                position.len
            )));
        }
        let magic = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]);
        let size = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
        if magic != TOC_FRAME_MAGIC || u64::from(size) + 8 != position.len {
            return Err(bad("not a layerstore TOC frame".into()));
        }
        // Streamed, so that memory follows what the bytes really expand to
        // (bounded by TocPosition::check), not what the footer claims.
        let mut raw = Vec::new();
        zstd::stream::read::Decoder::new(&frame[8..])
            .and_then(|d| std::io::Read::take(d, position.raw + 1).read_to_end(&mut raw))
            .map_err(|e| bad(format!("cannot decompress: {e}")))?;
        if raw.len() as u64 != position.raw {
            return Err(bad(format!(
                "{} bytes decompressed, the footer says {}",
                raw.len(),
                position.raw
            )));
        }
        Self::decode(&raw, position.offset)
    }

    /// Decodes a decompressed TOC of a blob whose frames end at `frames_end`.
    pub(crate) fn decode(raw: &[u8], frames_end: u64) -> Result<Self> {
        let bad = |reason: String| Error::Malformed {
            what: "seekable layer TOC",
            reason,
        };
        let body = raw
            .strip_prefix(&TOC_MAGIC[..])
            .ok_or_else(|| bad("wrong magic or an unknown version".into()))?;
        let (wire, rest): (TocWire, _) =
            postcard::take_from_bytes(body).map_err(|e| bad(e.to_string()))?;
        if !rest.is_empty() {
            return Err(bad(format!("{} trailing bytes", rest.len())));
        }
        let mut end = 0u64;
        for (i, f) in wire.frames.iter().enumerate() {
            if f.len == 0 || f.raw > MAX_FRAME_RAW {
                return Err(bad(format!(
                    "frame {i} is {} bytes, {} decompressed",
                    f.len, f.raw
                )));
            }
            end += u64::from(f.len);
        }
        if end != frames_end {
            return Err(bad(format!(
                "the frames end at {end}, the TOC begins at {frames_end}"
            )));
        }
        let decoded = layer_from_objects(&LayerId::from_bytes(wire.layer), &wire.objects)
            .map_err(|e| bad(format!("its objects: {e}")))?;
        // Each distinct chunk of the files, in order, paired with its place.
        let mut seen = HashSet::new();
        let mut chunks = Vec::with_capacity(wire.chunks.len());
        let mut places = wire.chunks.iter();
        for entry in decoded.upserts() {
            let EntryKind::File { chunks: list, .. } = &entry.kind else {
                continue;
            };
            for chunk in list.chunks() {
                if !seen.insert(chunk.id) {
                    continue;
                }
                let place = places
                    .next()
                    .ok_or_else(|| bad(format!("{} places for more chunks", wire.chunks.len())))?;
                let frame = usize::try_from(place.frame)
                    .ok()
                    .and_then(|f| wire.frames.get(f))
                    .ok_or_else(|| {
                        bad(format!(
                            "chunk {} is in frame {} of {}",
                            chunk.id,
                            place.frame,
                            wire.frames.len()
                        ))
                    })?;
                if u64::from(place.offset) + u64::from(chunk.len) > u64::from(frame.raw) {
                    return Err(bad(format!(
                        "chunk {} at {}+{} is outside its frame of {} bytes",
                        chunk.id, place.offset, chunk.len, frame.raw
                    )));
                }
                chunks.push(TocChunk {
                    id: *chunk.id.as_bytes(),
                    frame: place.frame,
                    offset: place.offset,
                    len: chunk.len,
                });
            }
        }
        if places.next().is_some() {
            return Err(bad(format!(
                "{} places for {} chunks",
                wire.chunks.len(),
                chunks.len()
            )));
        }
        chunks.sort_unstable_by_key(|c| c.id);
        Ok(Self {
            layer: wire.layer,
            objects: wire.objects,
            frames: wire.frames,
            chunks,
            prefetch: wire.prefetch,
            decoded,
        })
    }

    /// Where frame `index` begins in the blob.
    pub(crate) fn frame_offsets(&self) -> Vec<u64> {
        let mut at = 0u64;
        self.frames
            .iter()
            .map(|f| {
                let here = at;
                at += u64::from(f.len);
                here
            })
            .collect()
    }
}

/// Decodes a footer and TOC from the tail of a blob (fuzzing's entry point):
/// `data` is a whole blob.
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_decode(data: &[u8]) -> Result<Toc> {
    let size = data.len() as u64;
    let footer = data
        .get(data.len().saturating_sub(FOOTER_LEN)..)
        .unwrap_or_default();
    let position = TocPosition::from_footer(footer, size)?;
    let start = usize::try_from(position.offset).unwrap_or(usize::MAX);
    let end = usize::try_from(position.offset + position.len).unwrap_or(usize::MAX);
    let frame = data.get(start..end).ok_or_else(|| Error::Malformed {
        what: "seekable layer TOC",
        reason: "outside the blob".into(),
    })?;
    Toc::from_frame(frame, &position)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::chunk_list::{ChunkList, ChunkRef};
    use crate::tree::{Entry, Metadata, Snapshot, TreePath, layer_objects};

    /// A TOC of a layer of two files, `a` (chunks 1 and 2) and `b` (chunks
    /// 2 and 3), in two frames of 100 and 50 bytes.
    fn wire() -> TocWire {
        let file = |p: &str, ids: &[u8]| {
            let list: ChunkList = ids
                .iter()
                .map(|&i| ChunkRef {
                    id: crate::ChunkId::from_bytes([i; 32]),
                    len: 20,
                })
                .collect();
            Entry::file(TreePath::new(p).unwrap(), list, Metadata::new(0o644))
        };
        let tree = Snapshot::from_entries(vec![
            Entry::dir(TreePath::ROOT, Metadata::new(0o755)),
            file("a", &[1, 2]),
            file("b", &[2, 3]),
        ])
        .unwrap();
        let (id, objects) = layer_objects(&Layer::of_tree(tree));
        TocWire {
            layer: *id.as_bytes(),
            objects,
            frames: vec![TocFrame { len: 10, raw: 100 }, TocFrame { len: 5, raw: 50 }],
            chunks: vec![
                WireChunk {
                    frame: 0,
                    offset: 10,
                },
                WireChunk {
                    frame: 0,
                    offset: 40,
                },
                WireChunk {
                    frame: 1,
                    offset: 0,
                },
            ],
            prefetch: vec![b"b".to_vec()],
        }
    }

    #[test]
    fn toc_and_footer_round_trip() {
        let wire = wire();
        let (frame, raw) = wire.to_frame(3).unwrap();
        let position = TocPosition {
            offset: 15,
            len: frame.len() as u64,
            raw,
        };
        let blob_size = 15 + frame.len() as u64 + FOOTER_LEN as u64;
        let footer = position.footer();
        assert_eq!(&footer[8..14], b"LSSEEK");
        assert_eq!(
            TocPosition::from_footer(&footer, blob_size).unwrap(),
            position
        );
        assert_eq!(
            TocPosition::from_annotation(&position.to_annotation(), blob_size).unwrap(),
            position
        );
        let toc = Toc::from_frame(&frame, &position).unwrap();
        assert_eq!(toc.frame_offsets(), vec![0, 10]);
        // The chunks paired in file order (2 once), sorted by id.
        let places: Vec<_> = toc
            .chunks
            .iter()
            .map(|c| (c.id[0], c.frame, c.offset, c.len))
            .collect();
        assert_eq!(places, vec![(1, 0, 10, 20), (2, 0, 40, 20), (3, 1, 0, 20)]);
        assert_eq!(toc.prefetch, vec![b"b".to_vec()]);
    }

    #[test]
    fn bad_footers_and_tocs_are_refused() {
        let wire = wire();
        let (frame, raw) = wire.to_frame(3).unwrap();
        let position = TocPosition {
            offset: 15,
            len: frame.len() as u64,
            raw,
        };
        let blob_size = 15 + frame.len() as u64 + FOOTER_LEN as u64;
        let footer = position.footer();
        for at in [0, 5, 8, 13, 40] {
            let mut bad = footer;
            bad[at] ^= 1;
            assert!(
                TocPosition::from_footer(&bad, blob_size).is_err(),
                "byte {at}"
            );
        }
        assert!(TocPosition::from_footer(&footer, blob_size + 1).is_err());
        assert!(TocPosition::from_footer(&footer[1..], blob_size).is_err());
        assert!(TocPosition::from_annotation("1:2", blob_size).is_err());
        assert!(TocPosition::from_annotation("15:x:3", blob_size).is_err());
        assert!(Toc::decode(&wire.encode(), 15).is_ok());
        // Frames that do not end where the TOC begins.
        assert!(Toc::decode(&wire.encode(), 16).is_err());
        let mut outside = wire.clone();
        outside.chunks[2].offset = 31;
        assert!(Toc::decode(&outside.encode(), 15).is_err());
        let mut no_frame = wire.clone();
        no_frame.chunks[2].frame = 2;
        assert!(Toc::decode(&no_frame.encode(), 15).is_err());
        let mut too_few = wire.clone();
        too_few.chunks.pop();
        assert!(Toc::decode(&too_few.encode(), 15).is_err());
        let mut too_many = wire.clone();
        too_many.chunks.push(WireChunk {
            frame: 0,
            offset: 0,
        });
        assert!(Toc::decode(&too_many.encode(), 15).is_err());
        let mut no_layer = wire.clone();
        no_layer.layer = [9; 32];
        assert!(Toc::decode(&no_layer.encode(), 15).is_err());
        let mut no_dir = wire.clone();
        no_dir.objects.remove(0);
        assert!(Toc::decode(&no_dir.encode(), 15).is_err());
        let mut truncated = frame.clone();
        truncated.pop();
        assert!(Toc::from_frame(&truncated, &position).is_err());
        let mut trailing = wire.encode();
        trailing.push(0);
        assert!(Toc::decode(&trailing, 15).is_err());
    }
}
