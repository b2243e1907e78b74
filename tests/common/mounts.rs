//! Mounts a test leaves behind. The `overlay` and `copy` backends make kernel
//! mounts that outlive the test process, so a test that mounts works in a
//! [`MountDir`]: it unmounts what is left beneath it even when the test ends
//! early, and fails a test that ends normally with anything still mounted.

use std::path::{Path, PathBuf};

/// The mount points at or beneath `dir`, in the order they were mounted,
/// read from `/proc/self/mountinfo` (the crate's own reader,
/// `src/mount/mountinfo.rs`, is private).
pub fn mounts_beneath(dir: &Path) -> Vec<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let text = std::fs::read("/proc/self/mountinfo").expect("read /proc/self/mountinfo");
    text.split(|b| *b == b'\n')
        .filter_map(|line| line.split(|b| *b == b' ').nth(4))
        .map(|point| PathBuf::from(std::ffi::OsString::from_vec(unescape(point))))
        .filter(|point| point.starts_with(&dir))
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field
            .get(i + 1..i + 4)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u8::from_str_radix(d, 8).ok());
        match octal {
            Some(byte) if field[i] == b'\\' => {
                out.push(byte);
                i += 4;
            }
            _ => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

/// A temporary directory for a test that mounts. When it is dropped,
/// whatever is still mounted beneath it (and only there) is unmounted,
/// lazily and last mounted first, before the directory is deleted, so that a
/// test ending early leaks no mount; then, unless the test is failing
/// already, the test fails if anything was left: a test that passes has
/// unmounted everything it mounted.
pub struct MountDir(Option<tempfile::TempDir>);

impl MountDir {
    pub fn new() -> Self {
        Self(Some(tempfile::tempdir().expect("tempdir")))
    }

    pub fn path(&self) -> &Path {
        self.0.as_ref().expect("not dropped").path()
    }
}

impl Drop for MountDir {
    fn drop(&mut self) {
        let left = mounts_beneath(self.path());
        for point in left.iter().rev() {
            // Errors ignored: a point beneath another may be gone with it.
            let _ = rustix::mount::unmount(point, rustix::mount::UnmountFlags::DETACH);
        }
        let still = mounts_beneath(self.path());
        let dir = self.0.take().expect("dropped once");
        if !still.is_empty() {
            // Deleting would reach into what is mounted: keep it.
            eprintln!("kept {}: {still:?} still mounted", dir.keep().display());
        }
        assert!(
            std::thread::panicking() || left.is_empty(),
            "the test left mounted beneath its directory: {left:?} (unmounted now)"
        );
    }
}
