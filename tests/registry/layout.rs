//! OCI image layouts (made by `umoci`, read back by `skopeo` and `umoci`)
//! pushed to and pulled from a real registry: only missing blobs move.

use std::path::{Path, PathBuf};
use std::process::Command;

use layerstore::oci::{Credentials, PushOptions, Registry, RegistryOptions, RegistryRef};

use crate::server::{self, Server};

pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn rootless() -> Option<&'static str> {
    (!rustix::process::geteuid().is_root()).then_some("--rootless")
}

/// Deterministic incompressible bytes.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// An OCI layout at `dir/layout` made by umoci: `base` (one layer of a few
/// MiB) and `child` (base + one layer).
pub fn umoci_layout(dir: &Path) -> PathBuf {
    let layout = dir.join("layout");
    let bundle = dir.join("bundle");
    run(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout));
    run(Command::new("umoci")
        .arg("new")
        .arg("--image")
        .arg(format!("{}:base", layout.display())));
    run(Command::new("umoci")
        .arg("unpack")
        .args(rootless())
        .arg("--image")
        .arg(format!("{}:base", layout.display()))
        .arg(&bundle));
    let rootfs = bundle.join("rootfs");
    std::fs::create_dir_all(rootfs.join("usr/lib")).unwrap();
    std::fs::write(rootfs.join("usr/lib/base.so"), noise(3 << 20, 1)).unwrap();
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::write(rootfs.join("etc/os-release"), b"ID=test\n").unwrap();
    run(Command::new("umoci")
        .arg("repack")
        .arg("--image")
        .arg(format!("{}:base", layout.display()))
        .arg(&bundle));
    // The child starts from the repacked base (a bundle remembers the image
    // it was unpacked from).
    let bundle = dir.join("bundle2");
    let rootfs = unpack(&format!("{}:base", layout.display()), &bundle);
    std::fs::write(rootfs.join("app.bin"), noise(1 << 20, 2)).unwrap();
    std::fs::remove_file(rootfs.join("etc/os-release")).unwrap();
    run(Command::new("umoci")
        .arg("repack")
        .arg("--image")
        .arg(format!("{}:child", layout.display()))
        .arg(&bundle));
    run(Command::new("umoci").arg("gc").arg("--layout").arg(&layout));
    layout
}

/// umoci unpacks the image `image` (`layout:tag`) into `dest`; the rootfs.
pub fn unpack(image: &str, dest: &Path) -> PathBuf {
    run(Command::new("umoci")
        .arg("unpack")
        .args(rootless())
        .arg("--image")
        .arg(image)
        .arg(dest));
    dest.join("rootfs")
}

/// Paths, kinds, modes and contents of a tree, sorted (mtimes left out:
/// they are what the tools set, not what moved).
pub fn describe(root: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let what = if meta.is_dir() {
                stack.push(path.clone());
                "dir".to_owned()
            } else if meta.is_file() {
                blake3::hash(&std::fs::read(&path).unwrap())
                    .to_hex()
                    .to_string()
            } else {
                format!("{:?}", std::fs::read_link(&path).ok())
            };
            out.push(format!(
                "{rel} {:o} {}:{} {what}",
                meta.mode(),
                meta.uid(),
                meta.gid()
            ));
        }
    }
    out.sort();
    out
}

pub fn tools_present(what: &str) -> bool {
    server::require_tool("/usr/bin/umoci", what) && server::require_tool("/usr/bin/skopeo", what)
}

fn registry(server: &Server) -> Registry {
    Registry::new(
        &server.host,
        &RegistryOptions::default()
            .insecure(true)
            .credentials(Credentials::Anonymous),
    )
    .unwrap()
}

#[test]
fn layout_push_uploads_only_missing_blobs_and_skopeo_reads_it_back() {
    if !tools_present("layout push") {
        return;
    }
    let Some(server) = Server::start("layout push") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let layout = umoci_layout(dir.path());
    let reg = registry(&server);
    let base_ref: RegistryRef = format!("{}/demo/app:base", server.host).parse().unwrap();
    let child_ref: RegistryRef = format!("{}/demo/app:child", server.host).parse().unwrap();

    let first = reg
        .push_layout(&layout, Some("base"), &base_ref, &PushOptions::default())
        .unwrap();
    assert_eq!(
        (first.blobs_uploaded, first.layers_uploaded),
        (2, 1),
        "{first:?}"
    );
    assert_eq!(first.blobs_present, 0);
    let stored = server.stored_blobs().len();
    // The child shares the base layer: only its own layer and config move.
    let calls = std::sync::atomic::AtomicU64::new(0);
    let progress = |_: &layerstore::oci::PushReport| {
        calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    };
    let child = reg
        .push_layout(
            &layout,
            Some("child"),
            &child_ref,
            &PushOptions::default().progress(&progress),
        )
        .unwrap();
    assert_eq!(
        (child.blobs_uploaded, child.layers_uploaded),
        (2, 1),
        "{child:?}"
    );
    assert_eq!(child.blobs_present, 1, "{child:?}");
    assert_eq!(calls.into_inner(), 3);
    // Unchanged: nothing is uploaded, as the registry's own storage confirms.
    // The child's layer, config and manifest.
    let stored_now = server.stored_blobs();
    assert_eq!(stored_now.len(), stored + 3);
    let stored = stored_now;
    let again = reg
        .push_layout(&layout, Some("child"), &child_ref, &PushOptions::default())
        .unwrap();
    assert_eq!(
        (again.blobs_uploaded, again.blobs_present),
        (0, 3),
        "{again:?}"
    );
    assert_eq!(again.manifest_digest, child.manifest_digest);
    assert_eq!(server.stored_blobs(), stored);

    // skopeo copies it out of the registry; umoci unpacks both the same.
    let copied = dir.path().join("copied");
    run(Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{child_ref}"))
        .arg(format!("oci:{}:child", copied.display())));
    let ours = unpack(
        &format!("{}:child", layout.display()),
        &dir.path().join("u1"),
    );
    let theirs = unpack(
        &format!("{}:child", copied.display()),
        &dir.path().join("u2"),
    );
    let tree = describe(&ours);
    assert!(tree.iter().any(|l| l.starts_with("app.bin ")), "{tree:?}");
    assert!(
        !tree.iter().any(|l| l.starts_with("etc/os-release")),
        "{tree:?}"
    );
    assert_eq!(tree, describe(&theirs));

    // Another repository: every blob is mounted, none uploaded.
    let other: RegistryRef = format!("{}/demo/other:child", server.host).parse().unwrap();
    let mounted = reg
        .push_layout(
            &layout,
            Some("child"),
            &other,
            &PushOptions::default().mount_from(&["demo/app".to_owned()]),
        )
        .unwrap();
    assert_eq!(
        (mounted.blobs_mounted, mounted.blobs_uploaded),
        (3, 0),
        "{mounted:?}"
    );
}

#[test]
fn layout_pull_skips_the_layers_the_caller_has() {
    if !tools_present("layout pull") {
        return;
    }
    let Some(server) = Server::start("layout pull") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let layout = umoci_layout(dir.path());
    let reg = registry(&server);
    let child_ref: RegistryRef = format!("{}/demo/app:child", server.host).parse().unwrap();
    reg.push_layout(&layout, Some("child"), &child_ref, &PushOptions::default())
        .unwrap();

    // Everything: the pulled layout unpacks to the same tree.
    let full = dir.path().join("full");
    let report = reg
        .pull_layout(&child_ref, &full, "child", &|_| false, &|_| {})
        .unwrap();
    assert_eq!(
        (report.blobs_fetched, report.layers_skipped),
        (3, 0),
        "{report:?}"
    );
    let ours = unpack(
        &format!("{}:child", layout.display()),
        &dir.path().join("u1"),
    );
    let pulled = unpack(&format!("{}:child", full.display()), &dir.path().join("u2"));
    assert_eq!(describe(&ours), describe(&pulled));

    // With the base layer at hand, only the child's layer and config come.
    let (manifest, _) = reg.manifest("demo/app", "child").unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let base_layer = manifest["layers"][0]["digest"].as_str().unwrap().to_owned();
    let partial = dir.path().join("partial");
    let report = reg
        .pull_layout(&child_ref, &partial, "child", &|d| d == base_layer, &|_| {})
        .unwrap();
    assert_eq!(
        (report.blobs_fetched, report.layers_skipped),
        (2, 1),
        "{report:?}"
    );
    let hex = base_layer.strip_prefix("sha256:").unwrap();
    assert!(!partial.join("blobs/sha256").join(hex).exists());

    // A tag the registry lacks is ImageNotFound naming it.
    let missing: RegistryRef = format!("{}/demo/app:nope", server.host).parse().unwrap();
    let err = reg
        .pull_layout(&missing, &dir.path().join("x"), "x", &|_| false, &|_| {})
        .unwrap_err();
    assert!(
        matches!(err, layerstore::Error::ImageNotFound { .. }),
        "{err}"
    );
}
