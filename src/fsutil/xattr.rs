//! Extended attributes of a file, directory or symbolic link, never following
//! a symbolic link: names and values are bytes, lists are sorted by name.

use std::io;
use std::os::fd::BorrowedFd;
use std::path::Path;

use rustix::fs::XattrFlags;
use rustix::io::Errno;

use crate::error::{Error, Result};

/// What an extended-attribute call acts on.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Target<'a> {
    /// A path; a symbolic link at its end is acted on itself, not followed
    /// (the `l*xattr` calls).
    Path(&'a Path),
    /// An open file descriptor (the `f*xattr` calls); not an `O_PATH` one.
    Fd(BorrowedFd<'a>),
}

/// How many times a read is retried when the attribute grows between asking
/// for its size and reading it.
const RETRIES: usize = 8;

/// The name of `name` for error messages.
fn shown(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

/// Calls the list or get function with `buf`, or the size query that rustix
/// keeps apart when `buf` is empty.
fn list_raw(target: Target<'_>, buf: &mut [u8]) -> rustix::io::Result<usize> {
    match (target, buf.is_empty()) {
        (Target::Path(p), true) => rustix::fs::llistxattr_query(p),
        (Target::Fd(fd), true) => rustix::fs::flistxattr_query(fd),
        (Target::Path(p), false) => rustix::fs::llistxattr(p, buf),
        (Target::Fd(fd), false) => rustix::fs::flistxattr(fd, buf),
    }
}

fn get_raw(target: Target<'_>, name: &[u8], buf: &mut [u8]) -> rustix::io::Result<usize> {
    match (target, buf.is_empty()) {
        (Target::Path(p), true) => rustix::fs::lgetxattr_query(p, name),
        (Target::Fd(fd), true) => rustix::fs::fgetxattr_query(fd, name),
        (Target::Path(p), false) => rustix::fs::lgetxattr(p, name, buf),
        (Target::Fd(fd), false) => rustix::fs::fgetxattr(fd, name, buf),
    }
}

/// Reads into a buffer sized by a first, empty call, retrying on `ERANGE`
/// (the list or value grew in between).
fn read_sized(
    mut call: impl FnMut(&mut [u8]) -> rustix::io::Result<usize>,
) -> rustix::io::Result<Vec<u8>> {
    for _ in 0..RETRIES {
        let size = call(&mut [])?;
        if size == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0; size];
        match call(&mut buf) {
            Ok(len) => {
                buf.truncate(len);
                return Ok(buf);
            }
            Err(Errno::RANGE) => {}
            Err(e) => return Err(e),
        }
    }
    Err(Errno::RANGE)
}

/// The names of the extended attributes of `target`, sorted. A filesystem
/// that does not support extended attributes has none.
///
/// `shown` is the path that errors name (`target` may be a descriptor, or a
/// `/proc/self/fd` path standing for the real one).
pub(crate) fn list_names(target: Target<'_>, shown_path: &Path) -> Result<Vec<Vec<u8>>> {
    let raw = match read_sized(|buf| list_raw(target, buf)) {
        Ok(raw) => raw,
        Err(Errno::NOTSUP) => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::Xattr {
                op: "list",
                path: shown_path.to_owned(),
                name: String::new(),
                source: io::Error::from(e),
            });
        }
    };
    let mut names: Vec<Vec<u8>> = raw
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    names.sort_unstable();
    names.dedup();
    Ok(names)
}

/// The value of the extended attribute `name` of `target`, or `None` if it
/// has no such attribute.
pub(crate) fn get(target: Target<'_>, shown_path: &Path, name: &[u8]) -> Result<Option<Vec<u8>>> {
    match read_sized(|buf| get_raw(target, name, buf)) {
        Ok(value) => Ok(Some(value)),
        Err(Errno::NODATA | Errno::NOTSUP) => Ok(None),
        Err(e) => Err(Error::Xattr {
            op: "get",
            path: shown_path.to_owned(),
            name: shown(name),
            source: io::Error::from(e),
        }),
    }
}

/// Extended attributes as (name, value) pairs, sorted by name.
pub(crate) type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// Every extended attribute of `target` as `(name, value)`, sorted by name.
/// An attribute removed while it is being read is left out.
pub(crate) fn list(target: Target<'_>, shown_path: &Path) -> Result<Xattrs> {
    let mut out = Vec::new();
    for name in list_names(target, shown_path)? {
        if let Some(value) = get(target, shown_path, &name)? {
            out.push((name, value));
        }
    }
    Ok(out)
}

/// Sets the extended attribute `name` of `target` to `value`, creating or
/// replacing it.
pub(crate) fn set(target: Target<'_>, shown_path: &Path, name: &[u8], value: &[u8]) -> Result<()> {
    let res = super::fault::check("set xattr", shown_path)
        .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))
        .and_then(|()| match target {
            Target::Path(p) => rustix::fs::lsetxattr(p, name, value, XattrFlags::empty()),
            Target::Fd(fd) => rustix::fs::fsetxattr(fd, name, value, XattrFlags::empty()),
        });
    res.map_err(|e| Error::Xattr {
        op: "set",
        path: shown_path.to_owned(),
        name: shown(name),
        source: io::Error::from(e),
    })
}

/// Removes the extended attribute `name` of `target`; it is not an error if
/// there is none.
pub(crate) fn remove(target: Target<'_>, shown_path: &Path, name: &[u8]) -> Result<()> {
    let res = match target {
        Target::Path(p) => rustix::fs::lremovexattr(p, name),
        Target::Fd(fd) => rustix::fs::fremovexattr(fd, name),
    };
    match res {
        Ok(()) | Err(Errno::NODATA) => Ok(()),
        Err(e) => Err(Error::Xattr {
            op: "remove",
            path: shown_path.to_owned(),
            name: shown(name),
            source: io::Error::from(e),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn user_xattrs_round_trip_sorted_by_name() {
        let dir = tempfile::tempdir().unwrap();
        if !crate::testing::user_xattrs_supported(dir.path()) {
            return;
        }
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let t = Target::Path(&file);
        assert_eq!(list(t, &file).unwrap(), Vec::<(Vec<u8>, Vec<u8>)>::new());

        set(t, &file, b"user.zeta", b"last").unwrap();
        set(t, &file, b"user.alpha", b"\x00\xffbinary").unwrap();
        set(t, &file, b"user.empty", b"").unwrap();
        let big = vec![7u8; 3000];
        set(t, &file, b"user.big", &big).unwrap();

        let got = list(t, &file).unwrap();
        let names: Vec<&[u8]> = got.iter().map(|(n, _)| n.as_slice()).collect();
        assert_eq!(
            names,
            [&b"user.alpha"[..], b"user.big", b"user.empty", b"user.zeta"]
        );
        assert_eq!(got[0].1, b"\x00\xffbinary");
        assert_eq!(got[1].1, big);
        assert_eq!(got[2].1, b"");

        // The descriptor variants see the same attributes.
        let f = std::fs::File::open(&file).unwrap();
        assert_eq!(list(Target::Fd(f.as_fd()), &file).unwrap(), got);
        assert_eq!(get(t, &file, b"user.missing").unwrap(), None);

        remove(t, &file, b"user.zeta").unwrap();
        remove(t, &file, b"user.zeta").unwrap();
        assert_eq!(list_names(t, &file).unwrap().len(), 3);
    }

    #[test]
    fn symlinks_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        if !crate::testing::user_xattrs_supported(dir.path()) {
            return;
        }
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        set(Target::Path(&file), &file, b"user.a", b"1").unwrap();
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        // The link itself has no user attributes (Linux allows none on links).
        assert!(list(Target::Path(&link), &link).unwrap().is_empty());
        let err = set(Target::Path(&link), &link, b"user.b", b"2").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("user.b") && msg.contains(&*link.to_string_lossy()),
            "{msg}"
        );
        assert_eq!(list(Target::Path(&file), &file).unwrap().len(), 1);
    }

    #[test]
    fn missing_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        let err = list(Target::Path(&gone), &gone).unwrap_err();
        assert!(matches!(&err, Error::Xattr { op: "list", .. }), "{err}");
        assert!(err.to_string().contains("gone"));
    }
}
