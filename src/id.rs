//! Content ids: BLAKE3-256 digests, one newtype per kind of thing they name.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The textual prefix of every id: `blake3:<64 lowercase hex digits>`.
pub const ID_PREFIX: &str = "blake3:";

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name([u8; 32]);

        impl $name {
            /// The id of `bytes`: their BLAKE3-256 hash.
            #[must_use]
            pub fn of(bytes: &[u8]) -> Self {
                Self(*blake3::hash(bytes).as_bytes())
            }

            /// The id with these raw digest bytes.
            #[must_use]
            pub const fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }

            /// The raw digest bytes.
            #[must_use]
            pub const fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// The 64 lowercase hex digits, without the `blake3:` prefix.
            #[must_use]
            pub fn to_hex(&self) -> String {
                hex(&self.0)
            }

            /// Parses 64 hex digits without prefix.
            ///
            /// # Errors
            /// [`Error::BadId`] if `s` is not exactly 64 hex digits.
            pub fn from_hex(s: &str) -> Result<Self, Error> {
                parse_hex(s).map(Self)
            }
        }

        impl From<blake3::Hash> for $name {
            fn from(hash: blake3::Hash) -> Self {
                Self(*hash.as_bytes())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{ID_PREFIX}{}", self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), &self.to_hex()[..12])
            }
        }

        impl FromStr for $name {
            type Err = Error;

            /// Parses `blake3:<64 hex>`; the prefix may be left out.
            fn from_str(s: &str) -> Result<Self, Error> {
                let digits = s.strip_prefix(ID_PREFIX).unwrap_or(s);
                parse_hex(digits).map(Self).map_err(|err| match err {
                    Error::BadId { reason, .. } => Error::BadId { input: s.to_owned(), reason },
                    other => other,
                })
            }
        }
    };
}

id_type!(
    /// The id of a chunk: BLAKE3-256 of its *uncompressed* bytes.
    ChunkId
);
id_type!(
    /// The id of a stored pack file: BLAKE3-256 of the whole file.
    PackId
);
id_type!(
    /// The id of a [`Snapshot`](crate::Snapshot): BLAKE3-256 of its canonical encoding.
    SnapshotId
);
id_type!(
    /// The id of a [`Layer`](crate::Layer): BLAKE3-256 of its canonical encoding.
    LayerId
);
id_type!(
    /// The id of an [`Image`](crate::Image): BLAKE3-256 of its canonical encoding.
    ImageId
);

// Metadata objects are stored as chunks named by their own id, so the ids of
// snapshots, layers and images are chunk ids too: the same BLAKE3 of the same
// bytes. A snapshot's id is the chunk id of its root directory, so a chunk id
// of a directory is a snapshot id.

impl From<SnapshotId> for ChunkId {
    /// The chunk holding the snapshot's root directory.
    fn from(id: SnapshotId) -> Self {
        Self(id.0)
    }
}

impl From<ChunkId> for SnapshotId {
    /// The snapshot whose root directory is this chunk.
    fn from(id: ChunkId) -> Self {
        Self(id.0)
    }
}

impl From<LayerId> for ChunkId {
    /// The chunk holding the encoded layer.
    fn from(id: LayerId) -> Self {
        Self(id.0)
    }
}

impl From<ImageId> for ChunkId {
    /// The chunk holding the encoded image.
    fn from(id: ImageId) -> Self {
        Self(id.0)
    }
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

fn parse_hex(s: &str) -> Result<[u8; 32], Error> {
    let bad = |reason| Error::BadId {
        input: s.to_owned(),
        reason,
    };
    if s.len() != 64 {
        return Err(bad("expected 64 hex digits"));
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => Err(bad("not a hex digit")),
        };
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let id = ChunkId::of(b"hello");
        let text = id.to_string();
        assert!(text.starts_with("blake3:"));
        assert_eq!(text.len(), 7 + 64);
        assert_eq!(text.parse::<ChunkId>().unwrap(), id);
        assert_eq!(id.to_hex().parse::<ChunkId>().unwrap(), id);
    }

    #[test]
    fn known_vector() {
        // BLAKE3 of the empty input, from the BLAKE3 test vectors.
        assert_eq!(
            ChunkId::of(b"").to_hex(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
    }

    #[test]
    fn bad_ids_are_refused() {
        for input in ["", "blake3:", "blake3:zz", &"g".repeat(64), &"a".repeat(63)] {
            assert!(
                matches!(input.parse::<ChunkId>(), Err(Error::BadId { .. })),
                "{input:?} parsed"
            );
        }
    }
}
