//! The canonical encoding of tree objects: a small header, then a `postcard` body.
//!
//! ```text
//! offset 0  4 bytes  magic "LSOB" (layerstore object)
//!        4  1 byte   kind: 1 snapshot (the flat encoding), 2 layer, 3 image,
//!                    4 directory (how the store holds trees), 5 layer of a
//!                    whole tree (how the store holds such a layer)
//!        5  1 byte   reserved, 0
//!        6  2 bytes  format version, little-endian (1)
//!        8  …        postcard body, to the end (no trailing bytes)
//! ```
//!
//! Decoding never panics and never trusts a length: postcard reads every
//! length as a count of elements that each consume input, and serde
//! preallocates at most 1 MiB per sequence, so memory stays within a small
//! constant factor of the input's length.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The first four bytes of every encoded object.
pub(crate) const MAGIC: [u8; 4] = *b"LSOB";
/// The format version this build writes and reads.
pub(crate) const FORMAT_VERSION: u16 = 1;
/// The header's length in bytes.
pub(crate) const HEADER_LEN: usize = 8;

/// Which type an encoded object holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum ObjectKind {
    Snapshot = 1,
    Layer = 2,
    Image = 3,
    Directory = 4,
    LayerOfTree = 5,
}

impl ObjectKind {
    const fn name(self) -> &'static str {
        match self {
            ObjectKind::Snapshot => "snapshot",
            ObjectKind::Layer | ObjectKind::LayerOfTree => "layer",
            ObjectKind::Image => "image",
            ObjectKind::Directory => "directory",
        }
    }
}

/// The header for `kind`, then `body` in postcard.
pub(crate) fn encode<T: Serialize + ?Sized>(kind: ObjectKind, body: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + 64);
    out.extend_from_slice(&MAGIC);
    out.push(kind as u8);
    out.push(0);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    // Writing to a Vec only fails if a Serialize impl fails; ours do not.
    postcard::to_extend(body, out)
        .unwrap_or_else(|err| unreachable!("postcard encoding into a Vec failed: {err}"))
}

/// Checks the header for `kind` and decodes the body, which must use every
/// byte and be the canonical encoding of what it decodes to: postcard also
/// accepts over-long varints and any non-zero byte as `true`, and such bytes
/// would give one object a second id.
pub(crate) fn decode<'a, T: Deserialize<'a> + Serialize>(
    kind: ObjectKind,
    bytes: &'a [u8],
) -> Result<T> {
    let what = kind.name();
    let bad = |reason: String| Error::Malformed { what, reason };
    let (header, body) = bytes
        .split_at_checked(HEADER_LEN)
        .ok_or_else(|| bad(format!("{} bytes is shorter than the header", bytes.len())))?;
    if header[..4] != MAGIC {
        return Err(bad("wrong magic bytes".to_owned()));
    }
    if header[4] != kind as u8 {
        return Err(bad(format!("object kind {} is not a {what}", header[4])));
    }
    let version = u16::from_le_bytes([header[6], header[7]]);
    if header[5] != 0 || version != FORMAT_VERSION {
        return Err(bad(format!(
            "format version {version} (flags {}); this build reads version {FORMAT_VERSION}",
            header[5]
        )));
    }
    let (value, rest) = postcard::take_from_bytes(body).map_err(|err| bad(err.to_string()))?;
    if !rest.is_empty() {
        return Err(bad(format!("{} trailing bytes", rest.len())));
    }
    if encode(kind, &value) != bytes {
        return Err(bad("not the canonical encoding of what it holds".to_owned()));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_checks() {
        let good = encode(ObjectKind::Layer, &7u32);
        assert_eq!(&good[..8], b"LSOB\x02\x00\x01\x00");
        assert_eq!(decode::<u32>(ObjectKind::Layer, &good).unwrap(), 7);
        assert!(matches!(
            decode::<u32>(ObjectKind::Snapshot, &good),
            Err(Error::Malformed {
                what: "snapshot",
                ..
            })
        ));
        let mut wrong_version = good.clone();
        wrong_version[6] = 2;
        assert!(decode::<u32>(ObjectKind::Layer, &wrong_version).is_err());
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(decode::<u32>(ObjectKind::Layer, &trailing).is_err());
        assert!(decode::<u32>(ObjectKind::Layer, &good[..5]).is_err());
        assert!(decode::<u32>(ObjectKind::Layer, &good[..8]).is_err());
        // An over-long varint (7 as two bytes) decodes in postcard; refused.
        let mut long = good[..8].to_vec();
        long.extend_from_slice(&[0x87, 0x00]);
        assert!(matches!(
            decode::<u32>(ObjectKind::Layer, &long),
            Err(Error::Malformed { .. })
        ));
    }
}
