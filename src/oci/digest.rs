//! OCI digests (`sha256:<hex>`), computed while bytes stream past, and caps
//! on how many bytes a stream may yield.

use std::io::{self, Read};

use sha2::{Digest as _, Sha256};

/// `sha256:<64 hex>` of `bytes`.
#[must_use]
pub fn sha256_digest(bytes: &[u8]) -> String {
    format_digest(&Sha256::digest(bytes))
}

pub(crate) fn format_digest(hash: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    for b in hash {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The 64 hex digits of a `sha256:` digest, checked, or `None`.
pub(crate) fn sha256_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then_some(hex)
}

/// The `ChainIDs` of a stack of layers given their `DiffIDs`, bottom first, as the
/// OCI image spec defines them: `ChainID(L0) = DiffID(L0)` and
/// `ChainID(L0|…|Ln) = sha256(ChainID(L0|…|Ln-1) + " " + DiffID(Ln))`.
#[must_use]
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match out.last() {
            None => diff_id.clone(),
            Some(below) => sha256_digest(format!("{below} {diff_id}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// A reader that hashes and counts what passes through it, and fails once
/// more than `limit` bytes have come.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    limit: u64,
    /// Named in the error when the limit is passed.
    what: &'static str,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R, limit: u64, what: &'static str) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            count: 0,
            limit,
            what,
        }
    }

    /// Reads what is left, so that the digest covers the whole stream.
    pub(crate) fn drain(&mut self) -> io::Result<()> {
        io::copy(self, &mut io::sink()).map(drop)
    }

    /// The digest and length of everything read.
    pub(crate) fn finish(self) -> (String, u64) {
        (format_digest(&self.hasher.finalize()), self.count)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        if self.count > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} exceeds the cap of {} bytes (a compression bomb?)",
                    self.what, self.limit
                ),
            ));
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_and_chain_ids_follow_the_spec() {
        // sha256 of the empty string.
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let ids = vec![sha256_digest(b"a"), sha256_digest(b"b")];
        let chain = chain_ids(&ids);
        assert_eq!(chain[0], ids[0]);
        assert_eq!(
            chain[1],
            sha256_digest(format!("{} {}", ids[0], ids[1]).as_bytes())
        );
        assert!(sha256_hex(&ids[0]).is_some());
        assert!(sha256_hex("sha256:../../etc").is_none());
        assert!(sha256_hex("sha512:00").is_none());
    }

    #[test]
    fn the_reader_cap_is_an_error() {
        let mut r = HashingReader::new(&[0u8; 100][..], 50, "layer");
        let err = r.drain().unwrap_err();
        assert!(err.to_string().contains("cap of 50"), "{err}");
    }
}
