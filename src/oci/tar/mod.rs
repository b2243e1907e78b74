//! Our layers as OCI layer tar streams, both ways.
//!
//! Writing: entries in sorted path order (parents first), whiteouts as empty
//! `.wh.<name>` files, opaque directories as `.wh..wh..opq`, hard links as tar
//! links, PAX records for nanosecond mtimes, long names, large ids and xattrs
//! (`SCHILY.xattr.*`). Nothing depends on the clock or the machine, so one
//! layer always gives the same bytes.
//!
//! Reading is strict, as the stream may come from anywhere: absolute and `..`
//! paths, writes through a symbolic link, hard links to a path neither in the
//! layer nor below it, `.wh.` alone or `.wh..wh.` anything but `.opq`,
//! duplicate entries, sizes that lie and unknown entry types are refused with
//! an [`Error::Oci`] naming the member. File contents stream into the store.
//!
//! # Parts
//!
//! This file holds what both directions share: the whiteout names, the PAX
//! time format and the error of a bad member. The two directions are in
//! `write` ([`write_layer_tar`], with the ustar limits) and `read`
//! ([`read_layer_tar`], strict, with the hard-link and parent rules).

mod read;
mod write;

#[cfg(test)]
mod tests;

#[cfg(feature = "fuzzing")]
pub(crate) use self::read::fuzz_read_layer_tar;
pub(crate) use self::read::read_layer_tar;
pub(crate) use self::write::{ChunkMarks, write_layer_tar, write_layer_tar_marked};

use crate::error::Error;
use crate::tree::Timestamp;

const WHITEOUT: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";

fn format_pax_time(t: Timestamp) -> String {
    if t.secs >= 0 {
        format!("{}.{:09}", t.secs, t.nanos)
    } else if t.nanos == 0 {
        format!("{}", t.secs)
    } else {
        // -1.25 s is secs -2, nanos 750 000 000.
        format!("-{}.{:09}", -(t.secs + 1), 1_000_000_000 - t.nanos)
    }
}

fn parse_pax_time(s: &[u8]) -> Option<Timestamp> {
    let s = std::str::from_utf8(s).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = whole.parse().ok()?;
    let mut nanos: u32 = 0;
    for (i, b) in frac.bytes().take(9).enumerate() {
        nanos += u32::from(b - b'0') * 10u32.pow(8 - i as u32);
    }
    Some(if !neg {
        Timestamp::new(secs, nanos)
    } else if nanos == 0 {
        Timestamp::new(-secs, 0)
    } else {
        Timestamp::new(-secs - 1, 1_000_000_000 - nanos)
    })
}

fn oci_err(what: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Oci {
        what: what.into(),
        reason: reason.into(),
    }
}
