//! `layerstore build`: one line per step, CACHED or BUILT, the image id last;
//! a bad Containerfile is exit 2 with the file and line.

use std::path::Path;

use super::{last_line, layerstore, ok};

#[test]
fn build_prints_each_step_and_the_image_and_reuses_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    ok(&layerstore(&store, &["init"]));
    let context = tmp.path().join("ctx");
    std::fs::create_dir(&context).unwrap();
    std::fs::write(context.join("a.txt"), "a").unwrap();
    std::fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nCOPY a.txt /a.txt\nLABEL x=1\n",
    )
    .unwrap();
    let ctx = context.to_str().unwrap();
    let first = ok(&layerstore(&store, &["build", ctx, "--tag", "app:1"]));
    let lines: Vec<&str> = first.lines().collect();
    assert_eq!(lines.len(), 3, "{first}");
    assert!(lines[0].starts_with("BUILT blake3:"), "{first}");
    assert!(lines[1].starts_with("BUILT -"), "{first}");
    let image = last_line(&first).to_owned();
    assert!(image.starts_with("blake3:"), "{first}");
    let second = ok(&layerstore(&store, &["build", ctx]));
    assert!(
        second.lines().take(2).all(|l| l.starts_with("CACHED")),
        "{second}"
    );
    assert_eq!(last_line(&second), image);
    // The tag names the built image.
    let inspect = ok(&layerstore(&store, &["inspect", "app:1"]));
    assert!(inspect.contains(&image), "{inspect}");
    let rebuilt = ok(&layerstore(&store, &["build", ctx, "--no-cache"]));
    assert!(
        rebuilt.lines().take(2).all(|l| l.starts_with("BUILT")),
        "{rebuilt}"
    );
}

#[test]
fn a_bad_containerfile_is_exit_2_naming_the_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    ok(&layerstore(&store, &["init"]));
    let file = tmp.path().join("Weird");
    std::fs::write(&file, "FROM scratch\nFROBNICATE x\n").unwrap();
    let out = layerstore(
        &store,
        &[
            "build",
            tmp.path().to_str().unwrap(),
            "-f",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:2:", file.display())),
        "{stderr}"
    );
    assert!(Path::new(&file).exists());
}

/// `--run-timeout`: a RUN that outlives it fails the build (exit 2, naming the
/// line and the timeout) and tags nothing.
#[test]
fn run_timeout_fails_a_hanging_run() {
    if !super::common::require_root("RUN (overlayfs, chroot)")
        || !super::common::require_tool("busybox")
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    ok(&layerstore(&store, &["init"]));
    let root = tmp.path().join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    let busybox = std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join("busybox"))
        .find(|p| p.is_file())
        .unwrap();
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    for applet in ["sh", "sleep"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    ok(&layerstore(
        &store,
        &["commit", root.to_str().unwrap(), "--tag", "busybox"],
    ));
    let context = tmp.path().join("ctx");
    std::fs::create_dir(&context).unwrap();
    std::fs::write(
        context.join("Containerfile"),
        "FROM busybox\nRUN sleep 30\n",
    )
    .unwrap();
    let started = std::time::Instant::now();
    let out = layerstore(
        &store,
        &[
            "build",
            context.to_str().unwrap(),
            "--tag",
            "app:1",
            "--run-timeout",
            "1",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("timed out after 1.0 s"), "{stderr}");
    assert!(
        stderr.contains("Containerfile:2:"),
        "names line 2: {stderr}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(25),
        "the RUN was not cut short"
    );
    let out = layerstore(&store, &["inspect", "app:1"]);
    assert_ne!(
        out.status.code(),
        Some(0),
        "a failed build tagged its image"
    );
}
