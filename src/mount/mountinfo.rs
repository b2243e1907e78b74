//! What is mounted where, from `/proc/self/mountinfo`: the one reader of it.
//! Unlike a `stat` of the mount point, it answers for a FUSE mount whose
//! server has died (every access to it fails with `ENOTCONN`).

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// One line of mountinfo: where, and the filesystem type.
struct MountLine {
    point: PathBuf,
    fstype: String,
}

fn mounts() -> Result<Vec<MountLine>> {
    let text = std::fs::read(MOUNTINFO).map_err(|e| Error::io("read", MOUNTINFO, e))?;
    let mut out = Vec::new();
    for line in text.split(|b| *b == b'\n') {
        let fields: Vec<&[u8]> = line.split(|b| *b == b' ').collect();
        let Some(point) = fields.get(4) else {
            continue;
        };
        // The optional fields end with a lone "-"; the type follows it.
        let fstype = fields
            .iter()
            .position(|f| *f == b"-")
            .and_then(|i| fields.get(i + 1))
            .map(|t| String::from_utf8_lossy(&unescape(t)).into_owned())
            .unwrap_or_default();
        out.push(MountLine {
            point: PathBuf::from(std::ffi::OsStr::from_bytes(&unescape(point))),
            fstype,
        });
    }
    Ok(out)
}

/// The mount points at or beneath `dir`.
///
/// # Errors
/// [`Error::Io`] naming mountinfo if it cannot be read.
pub(crate) fn mounts_beneath(dir: &Path) -> Result<Vec<PathBuf>> {
    let canonical = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    Ok(mounts()?
        .into_iter()
        .filter(|m| m.point.starts_with(&canonical))
        .map(|m| m.point)
        .collect())
}

/// The filesystem types mounted exactly at `point`, bottom first (the last
/// is what the path shows), e.g. `["fuse.layerstore", "overlay"]`. Empty if
/// nothing is mounted there. `point` is used as given (absolute, no
/// symbolic links): resolving it would touch a dead FUSE mount.
///
/// # Errors
/// [`Error::Io`] naming mountinfo if it cannot be read.
pub(crate) fn types_at(point: &Path) -> Result<Vec<String>> {
    Ok(mounts()?
        .into_iter()
        .filter(|m| m.point == point)
        .map(|m| m.fstype)
        .collect())
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\'
            && let Some(digits) = field.get(i + 1..i + 4)
            && let Ok(text) = std::str::from_utf8(digits)
            && let Ok(byte) = u8::from_str_radix(text, 8)
        {
            out.push(byte);
            i += 4;
        } else {
            out.push(field[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_octal_and_leaves_the_rest() {
        assert_eq!(unescape(br"/a\040b\\c"), br"/a b\\c");
        assert_eq!(unescape(br"/x\04"), br"/x\04");
    }

    #[test]
    fn the_root_is_a_mount_point_with_a_type() {
        let types = types_at(Path::new("/")).unwrap();
        assert!(
            !types.is_empty() && types.iter().all(|t| !t.is_empty()),
            "{types:?}"
        );
        assert!(
            mounts_beneath(Path::new("/"))
                .unwrap()
                .contains(&PathBuf::from("/"))
        );
    }
}
