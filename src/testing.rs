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

/// A [`Progress`](crate::progress::Progress) hook that records every event,
/// and the events it recorded.
pub(crate) fn recording_progress() -> (
    crate::progress::Progress,
    std::sync::Arc<std::sync::Mutex<Vec<crate::progress::ProgressEvent>>>,
) {
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&events);
    let progress = crate::progress::Progress::new(move |e| sink.lock().unwrap().push(*e));
    (progress, events)
}

/// Checks that `events` never go down, that only the last is `finished`, and
/// returns the last.
pub(crate) fn monotone_to_the_end(
    events: &[crate::progress::ProgressEvent],
) -> crate::progress::ProgressEvent {
    let last = *events.last().expect("no progress reported");
    assert!(last.finished, "the last event is not the end: {last:?}");
    for pair in events.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        assert!(!a.finished, "an event after the end: {b:?}");
        assert!(
            a.entries <= b.entries
                && a.bytes <= b.bytes
                && a.entries_total.unwrap_or(0) <= b.entries_total.unwrap_or(0)
                && a.bytes_total.unwrap_or(0) <= b.bytes_total.unwrap_or(0),
            "progress went down: {a:?} then {b:?}"
        );
    }
    for e in events {
        assert!(e.entries <= e.entries_total.unwrap_or(u64::MAX), "{e:?}");
        assert!(e.bytes <= e.bytes_total.unwrap_or(u64::MAX), "{e:?}");
    }
    last
}

/// A tree of `dirs` directories of `files` files each, the files of a few
/// hundred KiB so that checkouts and scans take more than one progress
/// interval on no machine in particular (nothing asserts that they do).
pub(crate) fn progress_tree(root: &Path, dirs: usize, files: usize) {
    for d in 0..dirs {
        let dir = root.join(format!("d{d}/sub"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..files {
            let len = 1000 + (d * files + f) * 37_000;
            let byte = u8::try_from((d * 31 + f) % 251).unwrap();
            let content: Vec<u8> = (0..len)
                .map(|i| byte ^ u8::try_from(i % 253).unwrap())
                .collect();
            std::fs::write(dir.join(format!("f{f}")), content).unwrap();
        }
        std::os::unix::fs::symlink("sub/f0", root.join(format!("d{d}/link"))).unwrap();
    }
    std::fs::hard_link(root.join("d0/sub/f0"), root.join("hard")).unwrap();
}
