//! Helpers shared by every test binary: deterministic data, the rule for tests
//! that need root or a tool, re-running the test binary as a child to kill it,
//! small filesystem probes, and the mounts a test leaves (`mounts.rs`).
//!
//! Each binary includes this file with `#[path = "../common/mod.rs"] mod common;`
//! and uses what it needs; the rest is allowed to be unused.
#![allow(dead_code)]

pub mod mounts;
pub mod tree;

use std::path::Path;

/// Deterministic incompressible bytes.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new_keyed(&[seed as u8; 32])
        .update(&seed.to_le_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}

/// The seed of a randomized test: `LAYERSTORE_TEST_SEED` when set (to replay
/// a run), else the test's fixed `default`. Printed either way, with how to
/// replay it.
pub fn test_seed(what: &str, default: u64) -> u64 {
    let seed = match std::env::var("LAYERSTORE_TEST_SEED") {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("LAYERSTORE_TEST_SEED={s:?} is not a number")),
        Err(_) => default,
    };
    eprintln!("{what}: seed {seed} (LAYERSTORE_TEST_SEED={seed} replays it)");
    seed
}

/// xorshift64*: small, deterministic from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Whether skips are forbidden: `LAYERSTORE_REQUIRE_PRIVILEGED=1` (set by
/// `.ci/run`) turns every skip into a failure; any other value, or none, allows
/// them. The one reading of the variable in the integration tests (the crate's
/// unit tests have `src/testing.rs`, with the same rule).
pub fn strict() -> bool {
    std::env::var_os("LAYERSTORE_REQUIRE_PRIVILEGED").is_some_and(|v| v == "1")
}

/// Makes a fifo, or (as root) a character or block device `major:minor`, at
/// `path` with permissions `mode`.
pub fn mknod(path: &Path, kind: rustix::fs::FileType, mode: u32, (major, minor): (u32, u32)) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        kind,
        rustix::fs::Mode::from_raw_mode(mode),
        rustix::fs::makedev(major, minor),
    )
    .unwrap_or_else(|e| panic!("mknod {}: {e}", path.display()));
}

/// Whether the process is root. When it is not, says loudly that `what` is
/// skipped and returns false; with `LAYERSTORE_REQUIRE_PRIVILEGED=1`, fails.
pub fn require_root(what: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    assert!(
        !strict(),
        "{what} needs root, and LAYERSTORE_REQUIRE_PRIVILEGED=1 is set"
    );
    eprintln!("SKIPPED {what}: needs root");
    false
}

/// Whether the program `tool` is on `PATH`. When it is not, says loudly that
/// the test is skipped and returns false; with `LAYERSTORE_REQUIRE_PRIVILEGED=1`
/// (CI installs every tool), fails.
pub fn require_tool(tool: &str) -> bool {
    let found = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            std::fs::metadata(dir.join(tool)).is_ok_and(|m| {
                use std::os::unix::fs::PermissionsExt;
                m.is_file() && m.permissions().mode() & 0o111 != 0
            })
        })
    });
    if found {
        return true;
    }
    assert!(
        !strict(),
        "this test needs `{tool}`, and LAYERSTORE_REQUIRE_PRIVILEGED=1 is set"
    );
    eprintln!("SKIPPED: `{tool}` is not installed");
    false
}

/// Whether the filesystem holding `dir` accepts `user.*` xattrs. When it does
/// not, says loudly that the xattr checks are skipped and returns false; with
/// `LAYERSTORE_REQUIRE_PRIVILEGED=1`, fails (`.ci/run` puts `TMPDIR` on a
/// filesystem that has them, so a `/tmp` without them cannot hide the cases).
pub fn user_xattrs_supported(dir: &Path) -> bool {
    let probe = dir.join(".xattr-probe");
    std::fs::write(&probe, b"").expect("write xattr probe");
    let res = rustix::fs::lsetxattr(&probe, "user.probe", b"1", rustix::fs::XattrFlags::empty());
    std::fs::remove_file(&probe).expect("remove xattr probe");
    if let Err(e) = &res {
        assert!(
            !strict(),
            "{} refuses user xattrs ({e}), and LAYERSTORE_REQUIRE_PRIVILEGED=1 is set: \
             point TMPDIR at a filesystem that has them",
            dir.display()
        );
        eprintln!(
            "SKIPPED xattr checks: {} refuses user xattrs: {e}",
            dir.display()
        );
    }
    res.is_ok()
}

/// Runs this test binary again as user and group 65534 with no capabilities
/// (through `setpriv`), running only the `#[ignore]`d test `name` with
/// `LAYERSTORE_CHILD` set to `arg`, and asserts that it passed. For tests that
/// need a process without privilege while CI runs as root. `arg` is usually a
/// directory the child works in: it must be one that user 65534 can write.
/// Returns false (after skipping loudly, or failing under
/// `LAYERSTORE_REQUIRE_PRIVILEGED=1`) when not root or `setpriv` is missing.
pub fn run_unprivileged(name: &str, arg: &Path) -> bool {
    run_as_65534(name, arg, &["--bounding-set=-all"])
}

/// As [`run_unprivileged`], but with the capability bounding set a login
/// user has, so that setuid helpers (`fusermount3`) still work: a plain
/// user, not a sandboxed one.
pub fn run_as_plain_user(name: &str, arg: &Path) -> bool {
    run_as_65534(name, arg, &[])
}

/// As [`run_as_plain_user`], for every `#[ignore]`d test whose name contains
/// `filter`: asserts that `count` of them ran and passed. The child's
/// temporary files go in `arg` (its `TMPDIR`).
pub fn run_many_as_plain_user(filter: &str, arg: &Path, count: usize) -> bool {
    let Some(stdout) = setpriv_65534(&[], &[filter], arg) else {
        return false;
    };
    let passed = format!("{count} passed; 0 failed");
    assert!(
        stdout.contains(&passed),
        "not {passed} for {filter}: {stdout}"
    );
    true
}

fn run_as_65534(name: &str, arg: &Path, extra: &[&str]) -> bool {
    let Some(stdout) = setpriv_65534(extra, &[name, "--exact"], arg) else {
        return false;
    };
    assert!(stdout.contains("1 passed"), "{name} did not run: {stdout}");
    true
}

/// Runs this test binary as user and group 65534 (capabilities `extra`
/// drops aside) on the ignored tests `select` picks, and asserts it passed;
/// its standard output, or `None` when it cannot be done here.
fn setpriv_65534(extra: &[&str], select: &[&str], arg: &Path) -> Option<String> {
    if !require_root("dropping privilege with setpriv") || !require_tool("setpriv") {
        return None;
    }
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .args(extra)
        .arg(std::env::current_exe().expect("test binary"))
        .args(select)
        .args(["--ignored", "--nocapture", "--test-threads=1"])
        .env("LAYERSTORE_CHILD", arg)
        .env("TMPDIR", arg)
        // The child is unprivileged on purpose: what needs root skips
        // there (the parent's run as root covers it).
        .env_remove("LAYERSTORE_REQUIRE_PRIVILEGED")
        .output()
        .expect("run setpriv");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{select:?} as user 65534: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(stdout)
}

/// Lets any user write in `dir` (mode 1777), for a child started by
/// [`run_unprivileged`] (a `tempfile` directory is 0700).
pub fn open_to_all(dir: &Path) {
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o1777))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", dir.display()));
}

/// Sets the mtime (and atime) of `path`, not following a link, to the nanosecond.
pub fn set_mtime(path: &Path, secs: i64, nanos: u32) {
    let time = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: nanos.into(),
    };
    let times = rustix::fs::Timestamps {
        last_access: time,
        last_modification: time,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &times,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap_or_else(|e| panic!("utimensat {}: {e}", path.display()));
}

/// Runs this test binary again as a child running only the test `name`, with
/// `LAYERSTORE_CHILD` set to `arg`.
pub fn child(name: &str, arg: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new(std::env::current_exe().expect("test binary"));
    cmd.args([
        name,
        "--exact",
        "--nocapture",
        "--test-threads=1",
        "--include-ignored",
    ])
    .env("LAYERSTORE_CHILD", arg);
    cmd
}

/// The argument a child was started with, or `None` in the parent test run.
pub fn child_arg() -> Option<String> {
    std::env::var("LAYERSTORE_CHILD").ok()
}
