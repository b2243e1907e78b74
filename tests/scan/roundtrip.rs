//! The algebra's filesystem half, on random trees made on disk: scan → store →
//! checkout → scan gives the same snapshot id, and a checked-out tree diffed
//! against its source has no change.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use layerstore::{CheckoutOptions, ScanOptions, Store, StoreOptions};
use quickcheck::{QuickCheck, TestResult};

use crate::set_mtime;

/// A small deterministic generator (xorshift64*), seeded by quickcheck.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// A signed value below `n` (small enough never to wrap).
    fn below_i64(&mut self, n: i64) -> i64 {
        i64::try_from(self.below(n.unsigned_abs())).unwrap_or(0)
    }
}

/// Makes a random tree of every kind under `root`: nested directories, files
/// of random sizes (some sharing content), symlinks, hard links, fifos, user
/// xattrs (when `xattrs`), setuid/setgid/sticky modes, odd names and
/// nanosecond mtimes.
fn random_tree(root: &Path, seed: u64, xattrs: bool) {
    let mut rng = Rng(seed | 1);
    let mut dirs = vec![root.to_path_buf()];
    let mut files = Vec::new();
    let entries = 5 + rng.below(40);
    for i in 0..entries {
        let parent = dirs[rng.below(dirs.len() as u64) as usize].clone();
        let mut name = format!("e{i}").into_bytes();
        if rng.below(6) == 0 {
            name.extend_from_slice(b"\n\xff odd");
        }
        let path = parent.join(std::ffi::OsStr::from_bytes(&name));
        match rng.below(8) {
            0 | 1 => {
                std::fs::create_dir(&path).unwrap();
                dirs.push(path);
            }
            2..=4 => {
                let len = [0, 10, 5000, 70_000, 300_000][rng.below(5) as usize];
                let content: Vec<u8> = if rng.below(3) == 0 {
                    vec![b'x'; len]
                } else {
                    let mut v = vec![0u8; len];
                    blake3::Hasher::new_keyed(&[rng.below(250) as u8; 32])
                        .finalize_xof()
                        .fill(&mut v);
                    v
                };
                std::fs::write(&path, content).unwrap();
                let mode = [0o644, 0o600, 0o4755, 0o2755, 0o755][rng.below(5) as usize];
                std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode))
                    .unwrap();
                if rng.below(4) == 0 && xattrs {
                    rustix::fs::lsetxattr(&path, "user.k", b"v", rustix::fs::XattrFlags::empty())
                        .unwrap();
                }
                files.push(path);
            }
            5 => {
                let target: &[u8] =
                    [&b"../x"[..], b"/etc/passwd", b"e1", b"dangling/y"][rng.below(4) as usize];
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), &path).unwrap();
            }
            6 if !files.is_empty() => {
                let target = &files[rng.below(files.len() as u64) as usize];
                std::fs::hard_link(target, &path).unwrap();
            }
            _ => {
                crate::common::mknod(&path, rustix::fs::FileType::Fifo, 0o640, (0, 0));
            }
        }
    }
    for (i, dir) in dirs.iter().enumerate().skip(1) {
        if rng.below(4) == 0 {
            std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o1777))
                .unwrap();
        }
        let _ = i;
    }
    // Every mtime last, deepest first; directories too, and the root.
    for file in &files {
        set_mtime(
            file,
            1_500_000_000 + rng.below_i64(1_000_000),
            u32::try_from(rng.below_i64(1_000_000_000)).unwrap(),
        );
    }
    for dir in dirs.iter().rev() {
        set_mtime(
            dir,
            1_500_000_000 + rng.below_i64(1_000_000),
            u32::try_from(rng.below_i64(1_000_000_000)).unwrap(),
        );
    }
}

#[test]
fn scan_checkout_scan_is_the_identity() {
    fn prop(seed: u64) -> TestResult {
        let work = tempfile::tempdir().unwrap();
        let store = Store::create(work.path().join("store"), &StoreOptions::default()).unwrap();
        let src = work.path().join("src");
        std::fs::create_dir(&src).unwrap();
        random_tree(&src, seed, crate::user_xattrs_supported(&src));
        let options = ScanOptions::default().use_stat_cache(false);
        let first = store.scan(&src, &options).unwrap();
        assert!(first.warnings.is_empty(), "{:?}", first.warnings);
        let dest = work.path().join("dest");
        store
            .checkout(&first.snapshot, &dest, &CheckoutOptions::default())
            .unwrap();
        let again = store.scan(&dest, &options).unwrap();
        if again.snapshot.id() != first.snapshot.id() {
            let changes = first.snapshot.changes(&again.snapshot);
            eprintln!("seed {seed}: {changes:?}");
            return TestResult::failed();
        }
        // And the same tree scanned single-threaded has the same id.
        let serial = store
            .scan(
                &src,
                &ScanOptions::default().use_stat_cache(false).threads(1),
            )
            .unwrap();
        TestResult::from_bool(serial.snapshot.id() == first.snapshot.id())
    }
    QuickCheck::new()
        .tests(25)
        .quickcheck(prop as fn(u64) -> TestResult);
}
