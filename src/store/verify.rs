//! Verifying a pack file in one pass over its bytes.
//!
//! The pack is cut into pieces of [`PIECE`] bytes. Each piece is read once
//! (`pread` into a buffer its thread reuses) and then serves twice while it is
//! in the cache: it is hashed as one subtree of the pack's BLAKE3 tree (the
//! pieces' chaining values combine into the hash that names the pack), and
//! the frames that start in it are decoded and their chunks rehashed. Pieces
//! are rayon tasks, so the frames of every pack are spread over every thread,
//! whatever the number and size of the packs.
//!
//! Reading with `pread` rather than mapping the file keeps a failing disk an
//! error naming the pack (a mapping would turn it into `SIGBUS`).

use std::cell::RefCell;
use std::fs::File;
use std::path::Path;

use blake3::hazmat::{
    ChainingValue, HasherExt, Mode, left_subtree_len, merge_subtrees_non_root, merge_subtrees_root,
};
use rayon::prelude::*;

use super::pack::{self, ScannedFrame};
use crate::error::{Error, Result};
use crate::id::PackId;

/// Bytes of a pack hashed as one subtree and read by one task. A power of two
/// multiple of [`blake3::CHUNK_LEN`] (what makes the pieces subtrees of the
/// pack's hash), small enough to stay in a core's cache between hashing and
/// decoding, large enough that a frame rarely runs far past its piece.
const PIECE: u64 = 2 << 20;

/// What one pass over a pack found.
pub(crate) struct PackPass {
    /// The pack's length.
    pub(crate) len: u64,
    /// BLAKE3 of its bytes (its name, if it is intact).
    pub(crate) hash: PackId,
    /// Its frames, in order, up to the first whose header is bad.
    pub(crate) frames: Vec<ScannedFrame>,
    /// Where and why the walk over the frames stopped early.
    pub(crate) end: Result<(), (u64, String)>,
    /// For each frame: whether it decodes and its chunks match their ids.
    pub(crate) results: Vec<Result<(), String>>,
}

/// Reads the pack at `path` once: walks its frame headers, then hashes all of
/// its bytes and decodes and rehashes every frame, in parallel pieces.
///
/// # Errors
/// [`Error::Io`] naming the pack if it cannot be read (or shrinks while read).
/// Damage is not an error: it is in the result.
pub(crate) fn pass(path: &Path) -> Result<PackPass> {
    pass_in_pieces(path, PIECE)
}

/// [`pass`] with pieces of `piece` bytes (a power of two multiple of
/// [`blake3::CHUNK_LEN`]), for tests that need many pieces in a small pack.
fn pass_in_pieces(path: &Path, piece: u64) -> Result<PackPass> {
    debug_assert!(piece.is_power_of_two() && piece >= blake3::CHUNK_LEN as u64);
    let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
    let len = file
        .metadata()
        .map_err(|e| Error::io("stat", path, e))?
        .len();
    let (frames, end) = pack::frames_in_file(&file, path, len)?;
    let pieces = len.div_ceil(piece).max(1);
    let done: Vec<(ChainingValue, Vec<Result<(), String>>)> = (0..pieces)
        .into_par_iter()
        .map(|i| {
            let start = i * piece;
            let end = (start + piece).min(len);
            // The frames that start in this piece (`frames` is in pack order).
            let first = frames.partition_point(|f| f.start < start);
            let last = frames.partition_point(|f| f.start < end);
            check_piece(&file, path, start..end, pieces == 1, &frames[first..last])
        })
        .collect::<Result<_>>()?;
    let cvs: Vec<ChainingValue> = done.iter().map(|(cv, _)| *cv).collect();
    let hash = if pieces == 1 {
        PackId::from_bytes(cvs[0])
    } else {
        let left = left_subtree_len(len);
        let split = (left / piece) as usize;
        let l = subtree(&cvs[..split], left, piece);
        let r = subtree(&cvs[split..], len - left, piece);
        PackId::from(merge_subtrees_root(&l, &r, Mode::Hash))
    };
    let results = done.into_iter().flat_map(|(_, r)| r).collect();
    Ok(PackPass {
        len,
        hash,
        frames,
        end,
        results,
    })
}

/// The chaining value of the subtree of `len` bytes whose pieces (of `piece`
/// bytes) have the chaining values `cvs`.
fn subtree(cvs: &[ChainingValue], len: u64, piece: u64) -> ChainingValue {
    if cvs.len() <= 1 {
        return cvs.first().copied().unwrap_or_default();
    }
    // More than one piece: the left subtree is a power of two of at least
    // one piece, so it ends on a piece boundary.
    let left = left_subtree_len(len);
    let split = (left / piece) as usize;
    let l = subtree(&cvs[..split], left, piece);
    let r = subtree(&cvs[split..], len - left, piece);
    merge_subtrees_non_root(&l, &r, Mode::Hash)
}

thread_local! {
    /// The bytes read for a piece, and the decoded payload of a frame: kept
    /// per thread so that their memory is allocated (and faulted in) once.
    static BUFFERS: RefCell<(Vec<u8>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Reads the bytes `piece` of the pack (and the rest of the last frame
/// starting in it), hashes them, and verifies `frames`, the frames that start
/// in it. Returns the piece's chaining value (the pack's hash when the piece
/// is the whole pack, `root`) and each frame's result.
fn check_piece(
    file: &File,
    path: &Path,
    piece: std::ops::Range<u64>,
    root: bool,
    frames: &[ScannedFrame],
) -> Result<(ChainingValue, Vec<Result<(), String>>)> {
    let (start, piece_end) = (piece.start, piece.end);
    let read_end = frames.last().map_or(piece_end, |f| f.end().max(piece_end));
    let want = (read_end - start) as usize;
    BUFFERS.with(|cell| {
        let (bytes, scratch) = &mut *cell.borrow_mut();
        if bytes.len() < want {
            bytes.resize(want, 0);
        }
        let got = pack::read_full_at(file, &mut bytes[..want], start)
            .map_err(|e| Error::io("read", path, e))?;
        if got < want {
            return Err(Error::io(
                "read",
                path,
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the pack shrank while it was checked",
                ),
            ));
        }
        let mut hasher = blake3::Hasher::new();
        let own = &bytes[..(piece_end - start) as usize];
        let cv = if root {
            *hasher.update(own).finalize().as_bytes()
        } else {
            hasher
                .set_input_offset(start)
                .update(own)
                .finalize_non_root()
        };
        let results = frames
            .iter()
            .map(|f| {
                let from = (f.payload_offset - start) as usize;
                let to = (f.end() - start) as usize;
                f.verify(&bytes[from..to], scratch)
            })
            .collect();
        Ok((cv, results))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::ChunkId;
    use crate::store::frame::{self, Codec};
    use crate::store::pack::PackWriter;

    fn noise(len: usize, seed: u8) -> Vec<u8> {
        let mut out = vec![0u8; len];
        blake3::Hasher::new()
            .update(&[seed])
            .finalize_xof()
            .fill(&mut out);
        out
    }

    /// The pieces' chaining values combine into BLAKE3 of the whole, for
    /// lengths around piece and chunk boundaries.
    #[test]
    fn pieces_combine_into_the_hash_of_the_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.pack");
        let data = noise(2 * PIECE as usize + 3000, 1);
        for piece in [1024u64, 4096] {
            let p = piece as usize;
            for len in [
                0,
                1,
                1024,
                1025,
                p - 1,
                p,
                p + 1,
                p + 1024,
                2 * p,
                2 * p + 1,
                3 * p,
                3 * p + 77,
                4 * p,
                7 * p + 1,
                16 * p,
                21 * p + 999,
            ] {
                std::fs::write(&path, &data[..len]).unwrap();
                let got = pass_in_pieces(&path, piece).unwrap();
                assert_eq!(got.len, len as u64);
                assert_eq!(got.hash, PackId::of(&data[..len]), "length {len}");
                assert!(got.end.is_err(), "random bytes are not a pack");
            }
        }
        for len in [PIECE as usize, 2 * PIECE as usize + 3000] {
            std::fs::write(&path, &data[..len]).unwrap();
            assert_eq!(pass(&path).unwrap().hash, PackId::of(&data[..len]));
        }
    }

    /// A pack of raw and zstd frames, some of several chunks, some spanning
    /// several pieces of 1 KiB; its path, bytes and id.
    fn sample_pack(dir: &Path) -> (std::path::PathBuf, Vec<u8>, PackId) {
        let mut writer = PackWriter::create(dir).unwrap();
        let text = |n: usize| b"static int lock(struct page *p);\n".repeat(n);
        let groups: Vec<Vec<Vec<u8>>> = vec![
            vec![noise(3000, 2)],
            vec![text(40), text(7), noise(500, 3)],
            vec![noise(5000, 4), noise(100, 5)],
            vec![text(300)],
            vec![noise(1024, 6)],
        ];
        for group in &groups {
            let chunks = group
                .iter()
                .map(|c| (ChunkId::of(c), c.len() as u32))
                .collect();
            writer
                .append(&frame::encode(chunks, &group.concat(), 3).unwrap())
                .unwrap();
        }
        let (id, path, _) = writer.finish(dir).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        (path, bytes, id)
    }

    #[test]
    fn a_sound_pack_passes_in_any_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let (path, bytes, id) = sample_pack(dir.path());
        for piece in [1024, 2048, 8192, PIECE] {
            let got = pass_in_pieces(&path, piece).unwrap();
            assert_eq!(got.hash, id);
            assert_eq!(got.len, bytes.len() as u64);
            assert!(got.end.is_ok());
            assert_eq!(got.frames.len(), 5);
            assert_eq!(got.results.len(), 5);
            assert!(got.results.iter().all(Result::is_ok), "{:?}", got.results);
            let codecs: Vec<_> = got.frames.iter().map(|f| f.header.codec).collect();
            assert!(codecs.contains(&Codec::Raw) && codecs.contains(&Codec::Zstd));
        }
    }

    /// Every flipped byte is caught: in the pack magic or a frame header by
    /// the walk, in a raw payload by its frame, anywhere by the hash (which
    /// the pieces compute as BLAKE3 of the damaged bytes would be).
    #[test]
    fn every_flip_is_caught_whatever_the_piece() {
        let dir = tempfile::tempdir().unwrap();
        let (path, original, id) = sample_pack(dir.path());
        let frames = pack::frames(&original).0;
        for at in (0..original.len()).step_by(7).chain([original.len() - 1]) {
            let mut bytes = original.clone();
            bytes[at] ^= 1 << (at % 8);
            std::fs::write(&path, &bytes).unwrap();
            let got = pass_in_pieces(&path, 1024).unwrap();
            assert_eq!(got.hash, PackId::of(&bytes), "flip at {at}");
            assert_ne!(got.hash, id);
            let at = at as u64;
            let in_header = at < PACK_MAGIC_LEN
                || frames
                    .iter()
                    .any(|f| (f.start..f.payload_offset).contains(&at));
            if in_header {
                assert!(got.end.is_err(), "flip at {at} in a header passed the walk");
            }
            let in_raw_payload = frames.iter().position(|f| {
                f.header.codec == Codec::Raw && (f.payload_offset..f.end()).contains(&at)
            });
            if let Some(i) = in_raw_payload {
                assert!(
                    got.results[i].is_err(),
                    "flip at {at} in a raw payload passed its frame"
                );
            }
        }
    }

    const PACK_MAGIC_LEN: u64 = pack::PACK_MAGIC.len() as u64;
}
