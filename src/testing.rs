//! Helpers for the crate's unit tests: the one rule for skipping a test that
//! needs root or a filesystem feature. `LAYERSTORE_REQUIRE_PRIVILEGED=1` (set by
//! `.ci/run`) turns every such skip into a failure; any other value, or none,
//! allows it. The integration tests follow the same rule (`tests/common`).

use std::path::Path;

/// Whether skips are forbidden: `LAYERSTORE_REQUIRE_PRIVILEGED` is exactly `1`.
pub(crate) fn strict() -> bool {
    std::env::var_os("LAYERSTORE_REQUIRE_PRIVILEGED").is_some_and(|v| v == "1")
}

/// Whether the process is root. When it is not, says loudly that `what` is
/// skipped and returns false; under [`strict`], fails.
pub(crate) fn privileged(what: &str) -> bool {
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

/// Whether the filesystem holding `dir` accepts `user.*` xattrs. When it does
/// not, says loudly that the xattr checks are skipped and returns false; under
/// [`strict`], fails (`.ci/run` puts `TMPDIR` on a filesystem that has them).
pub(crate) fn user_xattrs_supported(dir: &Path) -> bool {
    let probe = dir.join(".xattr-probe");
    std::fs::write(&probe, b"")
        .unwrap_or_else(|e| panic!("write xattr probe {}: {e}", probe.display()));
    let res = rustix::fs::lsetxattr(&probe, "user.probe", b"1", rustix::fs::XattrFlags::empty());
    std::fs::remove_file(&probe)
        .unwrap_or_else(|e| panic!("remove xattr probe {}: {e}", probe.display()));
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
