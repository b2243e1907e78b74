//! `mount`, `umount`, `containers`, `container commit`, `container rm`.

use std::path::Path;

use super::{last_line, layerstore, ok};

fn code(out: &std::process::Output) -> Option<i32> {
    out.status.code()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A store with an image `base` holding one file.
fn store_with_base(dir: &Path) -> std::path::PathBuf {
    let store = dir.join("store");
    ok(&layerstore(&store, &["init"]));
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("etc")).unwrap();
    std::fs::write(src.join("etc/os-release"), b"ID=test\n").unwrap();
    ok(&layerstore(
        &store,
        &["commit", src.to_str().unwrap(), "--tag", "base"],
    ));
    store
}

#[test]
fn mount_change_commit_remount_rm() {
    let dir = crate::common::mounts::MountDir::new();
    let store = store_with_base(dir.path());
    let target = dir.path().join("rootfs");
    let t = target.to_str().unwrap();

    let out = ok(&layerstore(
        &store,
        &["mount", "base", t, "--backend", "copy", "--name", "web"],
    ));
    assert_eq!(out.trim(), "web");
    assert_eq!(
        std::fs::read(target.join("etc/os-release")).unwrap(),
        b"ID=test\n"
    );
    std::fs::write(target.join("etc/hostname"), b"web\n").unwrap();
    std::fs::remove_file(target.join("etc/os-release")).unwrap();

    let listed = ok(&layerstore(&store, &["containers"]));
    let mut lines = listed.lines();
    let header: Vec<_> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "IMAGE", "BACKEND", "TARGET"]);
    let row: Vec<_> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row[..3], ["web", "base:latest", "copy"]);
    assert!(row[3].ends_with("rootfs"), "{row:?}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&layerstore(&store, &["containers", "--json"]))).unwrap();
    assert_eq!(json[0]["name"], "web");
    assert_eq!(json[0]["mounted"], true);

    let id = ok(&layerstore(
        &store,
        &[
            "container",
            "commit",
            "web",
            "--tag",
            "web:v1",
            "--message",
            "hostname",
        ],
    ));
    let id = last_line(&id).to_owned();
    assert!(id.starts_with("blake3:"), "{id}");
    let diff = ok(&layerstore(&store, &["diff", "base", "web:v1"]));
    assert!(diff.contains("A etc/hostname"), "{diff}");
    assert!(diff.contains("D etc/os-release"), "{diff}");

    // Unmount by target, remount by name at another target.
    ok(&layerstore(&store, &["umount", t]));
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);
    let other = dir.path().join("again");
    let out = ok(&layerstore(
        &store,
        &["mount", "web", other.to_str().unwrap()],
    ));
    assert_eq!(out.trim(), "web");
    assert_eq!(std::fs::read(other.join("etc/hostname")).unwrap(), b"web\n");
    // gc keeps the container's image even untagged.
    ok(&layerstore(&store, &["untag", "base"]));
    ok(&layerstore(&store, &["gc"]));
    ok(&layerstore(&store, &["fsck"]));

    ok(&layerstore(&store, &["container", "rm", "web"]));
    assert_eq!(std::fs::read_dir(&other).unwrap().count(), 0);
    let listed = ok(&layerstore(&store, &["containers"]));
    assert_eq!(listed.lines().count(), 1, "{listed}");
}

#[test]
fn default_backend_and_made_up_name() {
    let dir = crate::common::mounts::MountDir::new();
    let store = store_with_base(dir.path());
    let target = dir.path().join("t");
    let name = ok(&layerstore(
        &store,
        &["mount", "base", target.to_str().unwrap()],
    ));
    let name = name.trim();
    assert!(name.starts_with("base-"), "{name}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&layerstore(&store, &["containers", "--json"]))).unwrap();
    // `overlay` where permitted (root), else `copy`.
    let backend = json[0]["backend"].as_str().unwrap();
    let want = if rustix::process::geteuid().is_root() {
        "overlay"
    } else {
        assert!(!super::common::strict(), "the overlay default needs root");
        "copy"
    };
    assert_eq!(backend, want);
    ok(&layerstore(&store, &["container", "rm", name]));
}

#[test]
fn read_only_views_refuse_commit() {
    let dir = crate::common::mounts::MountDir::new();
    let store = store_with_base(dir.path());
    let target = dir.path().join("ro");
    ok(&layerstore(
        &store,
        &[
            "mount",
            "base",
            target.to_str().unwrap(),
            "--backend",
            "copy",
            "--name",
            "ro",
            "--read-only",
        ],
    ));
    let out = layerstore(&store, &["container", "commit", "ro"]);
    assert_eq!(code(&out), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("read-only"), "{}", stderr(&out));
    if super::common::require_root("a read-only bind mount") {
        assert!(
            std::fs::write(target.join("x"), b"x").is_err(),
            "a read-only view took a write"
        );
    }
    ok(&layerstore(&store, &["container", "rm", "ro"]));
}

#[test]
fn bad_input_exits_2_with_a_clear_message() {
    let dir = crate::common::mounts::MountDir::new();
    let store = store_with_base(dir.path());
    let full = dir.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("x"), b"x").unwrap();
    let t = dir.path().join("t");
    let t = t.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["mount", "base", t, "--name", "a/b"], "'/'"),
        (vec!["mount", "base", t, "--name", ".."], "'..'"),
        (
            vec!["mount", "base", full.to_str().unwrap(), "--name", "x"],
            "full",
        ),
        (vec!["mount", "nonesuch", t], "nonesuch"),
        (vec!["mount", "base", t, "--backend", "bogus"], "bogus"),
        (vec!["mount", "base", t, "--backend", "memory"], "memory"),
        (vec!["umount", "ghost"], "ghost"),
        (vec!["container", "commit", "ghost"], "ghost"),
        (vec!["container", "rm", "ghost"], "ghost"),
    ];
    for (args, named) in cases {
        let out = layerstore(&store, &args);
        assert_eq!(code(&out), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(named), "{args:?}: {}", stderr(&out));
    }
    // Nothing was made by any of them.
    let listed = ok(&layerstore(&store, &["containers"]));
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert_eq!(std::fs::read(full.join("x")).unwrap(), b"x");
    // A name in use.
    ok(&layerstore(
        &store,
        &["mount", "base", t, "--name", "taken", "--backend", "copy"],
    ));
    let out = layerstore(
        &store,
        &[
            "mount",
            "base",
            dir.path().join("u").to_str().unwrap(),
            "--name",
            "taken",
        ],
    );
    assert_eq!(code(&out), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("taken"), "{}", stderr(&out));
}

/// Whether an overlay filesystem is mounted at `target`.
fn overlay_mounted_at(target: &Path) -> bool {
    let target = std::fs::canonicalize(target).unwrap();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    mounts.lines().any(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let fstype = line.split(" - ").nth(1).and_then(|t| t.split(' ').next());
        fields.get(4) == Some(&target.to_str().unwrap()) && fstype == Some("overlay")
    })
}

#[test]
fn mount_backend_overlay_then_umount_by_name_keeps_the_changes() {
    if !super::common::require_root("mounting an overlay") {
        return;
    }
    let dir = crate::common::mounts::MountDir::new();
    let store = store_with_base(dir.path());
    let target = dir.path().join("rootfs");
    let t = target.to_str().unwrap();
    let out = ok(&layerstore(
        &store,
        &["mount", "base", t, "--backend", "overlay", "--name", "ov"],
    ));
    assert_eq!(out.trim(), "ov");
    assert!(overlay_mounted_at(&target), "no overlay at {t}");
    assert_eq!(
        std::fs::read(target.join("etc/os-release")).unwrap(),
        b"ID=test\n"
    );
    std::fs::write(target.join("etc/hostname"), b"ov\n").unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&ok(&layerstore(&store, &["containers", "--json"]))).unwrap();
    assert_eq!(json[0]["backend"], "overlay");
    assert_eq!(json[0]["mounted"], true);

    // By name, not by target.
    ok(&layerstore(&store, &["umount", "ov"]));
    assert!(!overlay_mounted_at(&target), "still mounted at {t}");
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);
    let json: serde_json::Value =
        serde_json::from_str(&ok(&layerstore(&store, &["containers", "--json"]))).unwrap();
    assert_eq!(json[0]["mounted"], false);

    // The change was kept: it is in the commit.
    ok(&layerstore(
        &store,
        &["container", "commit", "ov", "--tag", "ov:v1"],
    ));
    let diff = ok(&layerstore(&store, &["diff", "base", "ov:v1"]));
    assert!(diff.contains("A etc/hostname"), "{diff}");
    ok(&layerstore(&store, &["container", "rm", "ov"]));
    ok(&layerstore(&store, &["fsck"]));
}

/// Whether a process is alive (and not a zombie).
pub(crate) fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| !stat.split(") ").nth(1).is_some_and(|s| s.starts_with('Z')))
}

/// SIGKILLs `pid` and waits until it is gone.
pub(crate) fn kill_and_wait(pid: i32) {
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    while alive(pid) {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

pub(crate) fn server_pid(store: &Path, name: &str) -> i32 {
    let file = store.join("containers").join(name).join("server.pid");
    std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_fuse_container_is_served_by_a_detached_server_that_survives_a_crash() {
    if !super::common::require_root("an overlay over a FUSE view") {
        return;
    }
    let dir = crate::common::mounts::MountDir::new();
    let store = store_with_base(dir.path());
    let target = dir.path().join("rootfs");
    let t = target.to_str().unwrap();

    // The command returns with the view ready, served by another process.
    let out = ok(&layerstore(
        &store,
        &["mount", "base", t, "--backend", "fuse", "--name", "lazy"],
    ));
    assert_eq!(out.trim(), "lazy");
    let pid = server_pid(&store, "lazy");
    assert!(alive(pid), "the server runs after mount returned");
    assert_eq!(
        std::fs::read(target.join("etc/os-release")).unwrap(),
        b"ID=test\n"
    );
    std::fs::write(target.join("etc/hostname"), b"lazy\n").unwrap();

    // A killed server: the view is dead, the container not mounted, and
    // mounting it again serves it anew with its change, though a file is
    // still open on the dead mounts (they are detached: they serve nothing
    // any more, and the open file answers ENOTCONN).
    let open = std::fs::File::open(target.join("etc/os-release")).unwrap();
    kill_and_wait(pid);
    // (What was read stays readable from the kept page cache; the view's
    // own filesystem answers no more: ENOTCONN, or ECONNABORTED for a
    // request the kernel had queued while it aborted the connection.)
    let lower = store.join("containers/lazy/lower");
    let statfs = rustix::fs::statfs(&lower).map(|_| ());
    assert!(
        matches!(
            statfs,
            Err(rustix::io::Errno::NOTCONN | rustix::io::Errno::CONNABORTED)
        ),
        "{statfs:?}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&layerstore(&store, &["containers", "--json"]))).unwrap();
    assert_eq!(json[0]["mounted"], false, "{json}");
    ok(&layerstore(&store, &["mount", "lazy", t]));
    assert_eq!(
        std::fs::read(target.join("etc/hostname")).unwrap(),
        b"lazy\n"
    );
    rustix::fs::fadvise(&open, 0, None, rustix::fs::Advice::DontNeed).unwrap();
    let read = std::io::Read::read(&mut &open, &mut [0u8; 16]);
    assert!(
        read.as_ref()
            .is_err_and(|e| e.raw_os_error() == Some(rustix::io::Errno::NOTCONN.raw_os_error())),
        "a file open on the dead view: {read:?}"
    );
    drop(open);
    assert_eq!(
        std::fs::read(target.join("etc/os-release")).unwrap(),
        b"ID=test\n"
    );
    let id = ok(&layerstore(&store, &["container", "commit", "lazy"]));
    let diff = ok(&layerstore(&store, &["diff", "base", id.trim()]));
    assert!(diff.contains("A etc/hostname"), "{diff}");

    // umount stops the server and leaves nothing mounted.
    let pid = server_pid(&store, "lazy");
    ok(&layerstore(&store, &["umount", "lazy"]));
    for _ in 0..500 {
        if !alive(pid) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(!alive(pid), "the server ended with its view");
    assert_eq!(
        crate::common::mounts::mounts_beneath(dir.path()),
        Vec::<std::path::PathBuf>::new()
    );

    // A dead one is cleaned up by rm, changes and mounts gone.
    ok(&layerstore(&store, &["mount", "lazy", t]));
    let pid = server_pid(&store, "lazy");
    kill_and_wait(pid);
    ok(&layerstore(&store, &["container", "rm", "lazy"]));
    assert_eq!(
        crate::common::mounts::mounts_beneath(dir.path()),
        Vec::<std::path::PathBuf>::new()
    );
    assert!(!store.join("containers/lazy").exists());
}

#[test]
fn a_read_only_fuse_view_and_its_errors() {
    let dir = crate::common::mounts::MountDir::new();
    let store = store_with_base(dir.path());
    let target = dir.path().join("view");
    let t = target.to_str().unwrap();
    ok(&layerstore(
        &store,
        &[
            "mount",
            "base",
            t,
            "--backend",
            "fuse",
            "--read-only",
            "--name",
            "ro",
        ],
    ));
    assert_eq!(
        std::fs::read(target.join("etc/os-release")).unwrap(),
        b"ID=test\n"
    );
    let err = std::fs::write(target.join("etc/x"), b"no").unwrap_err();
    assert_eq!(
        err.raw_os_error(),
        Some(rustix::io::Errno::ROFS.raw_os_error())
    );
    // --foreground and --allow-other belong to fuse.
    let out = layerstore(
        &store,
        &[
            "mount",
            "base",
            dir.path().join("c").to_str().unwrap(),
            "--backend",
            "copy",
            "--foreground",
        ],
    );
    assert_eq!(code(&out), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("fuse backend"), "{}", stderr(&out));
    // A server that cannot mount says why, with the mount's exit code.
    let busy = dir.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("f"), b"x").unwrap();
    let out = layerstore(
        &store,
        &[
            "mount",
            "base",
            busy.to_str().unwrap(),
            "--backend",
            "fuse",
            "--read-only",
        ],
    );
    assert_eq!(code(&out), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("not empty"), "{}", stderr(&out));
    ok(&layerstore(&store, &["umount", t]));
    assert_eq!(
        crate::common::mounts::mounts_beneath(dir.path()),
        Vec::<std::path::PathBuf>::new()
    );
    ok(&layerstore(&store, &["container", "rm", "ro"]));
}

/// The child half of the next test, run as user 65534: a read-only view
/// (through fusermount3) and a writable container (fuse-overlayfs over the
/// view), changed, committed and removed.
#[test]
#[ignore = "run by a_plain_user_views_and_changes_images_over_fuse as user 65534"]
fn plain_user_over_fuse() {
    let dir = std::path::PathBuf::from(super::common::child_arg().expect("started by the parent"));
    let store = store_with_base(&dir);
    let view = dir.join("view");
    let v = view.to_str().unwrap();
    ok(&layerstore(
        &store,
        &[
            "mount",
            "base",
            v,
            "--backend",
            "fuse",
            "--read-only",
            "--name",
            "look",
        ],
    ));
    assert_eq!(
        std::fs::read(view.join("etc/os-release")).unwrap(),
        b"ID=test\n"
    );
    ok(&layerstore(&store, &["container", "rm", "look"]));

    let rootfs = dir.join("rootfs");
    let r = rootfs.to_str().unwrap();
    ok(&layerstore(
        &store,
        &["mount", "base", r, "--backend", "fuse", "--name", "box"],
    ));
    std::fs::write(rootfs.join("etc/hostname"), b"box\n").unwrap();
    std::fs::remove_file(rootfs.join("etc/os-release")).unwrap();
    let id = ok(&layerstore(&store, &["container", "commit", "box"]));
    let diff = ok(&layerstore(&store, &["diff", "base", id.trim()]));
    assert!(diff.contains("A etc/hostname"), "{diff}");
    assert!(diff.contains("D etc/os-release"), "{diff}");
    ok(&layerstore(&store, &["container", "rm", "box"]));
    assert_eq!(
        crate::common::mounts::mounts_beneath(&dir),
        Vec::<std::path::PathBuf>::new()
    );
}

#[test]
fn a_plain_user_views_and_changes_images_over_fuse() {
    if !super::common::require_tool("fusermount3") || !super::common::require_tool("fuse-overlayfs")
    {
        return;
    }
    let dir = crate::common::mounts::MountDir::new();
    super::common::open_to_all(dir.path());
    super::common::run_as_plain_user("containers::plain_user_over_fuse", dir.path());
    assert_eq!(
        crate::common::mounts::mounts_beneath(dir.path()),
        Vec::<std::path::PathBuf>::new()
    );
}

#[test]
fn a_damaged_chunk_fails_its_file_with_eio_and_the_server_log_names_the_pack() {
    let dir = crate::common::mounts::MountDir::new();
    let store = dir.path().join("store");
    ok(&layerstore(&store, &["init"]));
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    // Incompressible, so that a flipped byte in the middle of the pack lands
    // in this file's chunks.
    let big: Vec<u8> = (0..600_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(src.join("big"), &big).unwrap();
    ok(&layerstore(
        &store,
        &["commit", src.to_str().unwrap(), "--tag", "img"],
    ));
    let pack = std::fs::read_dir(store.join("packs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pack"))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&pack).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&pack, &bytes).unwrap();

    let view = dir.path().join("view");
    ok(&layerstore(
        &store,
        &[
            "mount",
            "img",
            view.to_str().unwrap(),
            "--backend",
            "fuse",
            "--read-only",
            "--name",
            "v",
        ],
    ));
    let err = std::fs::read(view.join("big")).unwrap_err();
    assert_eq!(
        err.raw_os_error(),
        Some(rustix::io::Errno::IO.raw_os_error()),
        "{err}"
    );
    let pid = server_pid(&store, "v");
    assert!(alive(pid), "the server keeps running");
    let log = std::fs::read_to_string(store.join("containers/v/server.log")).unwrap();
    let pack_name = pack.file_name().unwrap().to_str().unwrap();
    assert!(log.contains(pack_name) && log.contains("big"), "{log}");
    ok(&layerstore(&store, &["container", "rm", "v"]));
    assert_eq!(
        crate::common::mounts::mounts_beneath(dir.path()),
        Vec::<std::path::PathBuf>::new()
    );
}
