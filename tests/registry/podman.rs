//! A real client on the other end: Debian's `podman` pulls what layerstore
//! pushed, builds on it (`COPY` and `ENV`; no `RUN`, which needs cgroups
//! these machines lack) and pushes; layerstore pulls only the new layer; and
//! `podman load` reads an `export-docker-archive` file. Each time the tree
//! podman mounts (`podman image mount`) is compared with ours, attribute by
//! attribute. Podman keeps its storage in the test's temporary directory
//! (the `vfs` driver: no mount is left behind).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common;
use crate::server::Server;

fn layerstore(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_layerstore"))
        .arg("--store")
        .arg(store)
        .args(args)
        .output()
        .unwrap()
}

fn ok(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what}: exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Podman with its own storage under `root`, and its run directory in
/// `run` (podman refuses a run directory path over 50 characters, which a
/// test's temporary directory beneath a checkout can exceed).
struct Podman {
    root: PathBuf,
    run: PathBuf,
}

impl Podman {
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("podman")
            .arg("--root")
            .arg(self.root.join("root"))
            .arg("--runroot")
            .arg(&self.run)
            .args(["--storage-driver", "vfs"])
            .args(args)
            .output()
            .expect("run podman");
        ok(&format!("podman {args:?}"), &out)
    }

    /// The root filesystem of `image`, as `podman image mount` shows it.
    fn mount(&self, image: &str) -> PathBuf {
        PathBuf::from(self.run(&["image", "mount", image]).trim())
    }
}

/// Every attribute podman keeps of every path beneath `root` (the root
/// itself is the storage driver's): kind and mode, owner, modification time
/// to the nanosecond, content, link target, and which paths are one inode.
fn describe(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, String> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for path in names {
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let content = if meta.is_file() {
                blake3::hash(&std::fs::read(&path).unwrap())
                    .to_hex()
                    .to_string()
            } else if meta.file_type().is_symlink() {
                std::fs::read_link(&path)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            } else {
                String::new()
            };
            let xattrs = user_xattrs(&path);
            let first = if meta.is_file() {
                inodes
                    .entry(meta.ino())
                    .or_insert_with(|| rel.clone())
                    .clone()
            } else {
                String::new()
            };
            out.insert(
                rel,
                format!(
                    "mode={:o} uid={} gid={} mtime={}.{:09} links-with={first} xattrs={xattrs:?} {content}",
                    meta.mode(),
                    meta.uid(),
                    meta.gid(),
                    meta.mtime(),
                    meta.mtime_nsec()
                ),
            );
            if meta.is_dir() {
                stack.push(path);
            }
        }
    }
    out
}

/// The `user.*` xattrs of `path` (not following a symlink), sorted: what of
/// its xattrs an image carries whoever extracts it.
fn user_xattrs(path: &Path) -> BTreeMap<String, Vec<u8>> {
    common::tree::xattrs_of(path)
        .into_iter()
        .filter(|(name, _)| name.starts_with(b"user."))
        .map(|(name, value)| (String::from_utf8_lossy(&name).into_owned(), value))
        .collect()
}

/// A tree with what images hold: nested directories with their own modes,
/// an executable, a setuid file, a foreign owner, links both kinds, an empty
/// file, nanosecond times, and user xattrs (on a directory and a file).
fn source_tree(dir: &Path) {
    std::fs::create_dir_all(dir.join("usr/bin")).unwrap();
    std::fs::create_dir_all(dir.join("etc/conf.d")).unwrap();
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    std::fs::write(dir.join("etc/hostname"), b"box\n").unwrap();
    std::fs::write(dir.join("etc/empty"), b"").unwrap();
    std::fs::write(dir.join("usr/bin/tool"), common::random_bytes(300_000, 7)).unwrap();
    std::fs::write(dir.join("usr/bin/su"), b"#!/bin/sh\n").unwrap();
    std::fs::hard_link(dir.join("usr/bin/tool"), dir.join("usr/bin/tool-again")).unwrap();
    std::os::unix::fs::symlink("../etc/hostname", dir.join("usr/hostname")).unwrap();
    // Skipped, saying so, only where xattrs are refused and skips allowed.
    if common::user_xattrs_supported(dir) {
        for (path, value) in [
            ("etc/hostname", &b"a file's"[..]),
            ("etc/conf.d", b"a directory's"),
        ] {
            rustix::fs::lsetxattr(
                dir.join(path),
                "user.layerstore.note",
                value,
                rustix::fs::XattrFlags::empty(),
            )
            .unwrap();
        }
    }
    let mode = |p: &str, m: u32| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join(p), std::fs::Permissions::from_mode(m)).unwrap();
    };
    mode("usr/bin/tool", 0o755);
    mode("usr/bin/su", 0o4755);
    mode("tmp", 0o1777);
    mode("etc/conf.d", 0o700);
    std::os::unix::fs::lchown(dir.join("etc/conf.d"), Some(1000), Some(100)).unwrap();
    let paths = [
        "etc/hostname",
        "usr/bin/tool",
        "usr/bin/su",
        "etc/empty",
        "tmp",
        "etc/conf.d",
        "etc",
        "usr/bin",
        "usr",
    ];
    for ((secs, nanos), p) in (1_700_000_000i64..)
        .zip((0..123_456_789u32).rev())
        .zip(paths)
    {
        common::set_mtime(&dir.join(p), secs, nanos);
    }
}

/// Podman builds `v2` on `v1` (`ENV`, and `COPY` of `/etc/added.txt`) in
/// the context directory `context`, and pushes it.
fn build_and_push(podman: &Podman, context: &Path, v1: &str, v2: &str) {
    std::fs::create_dir_all(context).unwrap();
    std::fs::write(context.join("added.txt"), b"added by podman\n").unwrap();
    std::fs::write(
        context.join("Containerfile"),
        format!("FROM {v1}\nENV GREETING=hello\nCOPY added.txt /etc/added.txt\n"),
    )
    .unwrap();
    podman.run(&[
        "build",
        "--tls-verify=false",
        "-t",
        v2,
        context.to_str().unwrap(),
    ]);
    podman.run(&["push", "--tls-verify=false", v2]);
}

/// `podman load` of an `export-docker-archive` file of `app` written to
/// `archive` mounts the tree `want`.
fn load_archive(podman: &Podman, store: &Path, archive: &Path, want: &BTreeMap<String, String>) {
    ok(
        "export-docker-archive",
        &layerstore(
            store,
            &[
                "export-docker-archive",
                "app",
                archive.to_str().unwrap(),
                "--tag",
                "localhost/loaded:v1",
            ],
        ),
    );
    let loaded = podman.run(&["load", "-i", archive.to_str().unwrap()]);
    assert!(loaded.contains("localhost/loaded:v1"), "{loaded}");
    assert_eq!(
        describe(&podman.mount("localhost/loaded:v1")),
        *want,
        "the loaded image"
    );
}

#[test]
fn podman_pulls_builds_on_pushes_and_loads_what_layerstore_makes() {
    const WHAT: &str = "podman against layerstore";
    if !common::require_root(WHAT) || !common::require_tool("podman") {
        return;
    }
    let Some(server) = Server::start(WHAT) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let src = work.path().join("src");
    source_tree(&src);
    ok("init", &layerstore(&store, &["init"]));
    ok(
        "commit",
        &layerstore(&store, &["commit", src.to_str().unwrap(), "--tag", "app"]),
    );
    let run = tempfile::Builder::new()
        .prefix("podman-run")
        .tempdir_in("/tmp")
        .unwrap();
    let podman = Podman {
        root: work.path().join("podman"),
        run: run.path().to_path_buf(),
    };
    let v1 = format!("{}/podman/app:v1", server.host);
    ok(
        "push",
        &layerstore(&store, &["push", "app", &v1, "--insecure"]),
    );

    // Podman pulls it and mounts the tree we pushed.
    podman.run(&["pull", "--tls-verify=false", &v1]);
    let want = describe(&src);
    assert!(
        want["etc/hostname"].contains("user.layerstore.note") || !common::strict(),
        "the xattrs were not set: {}",
        want["etc/hostname"]
    );
    assert_eq!(
        describe(&podman.mount(&v1)),
        want,
        "podman's v1 against the source"
    );

    // Podman builds on it (COPY and ENV) and pushes.
    let v2 = format!("{}/podman/app:v2", server.host);
    build_and_push(&podman, &work.path().join("context"), &v1, &v2);

    // layerstore pulls only the new layer (and the config).
    let pulled = ok(
        "pull",
        &layerstore(
            &store,
            &["pull", &v2, "--insecure", "--tag", "app:v2", "--json"],
        ),
    );
    let report: serde_json::Value = serde_json::from_str(&pulled).unwrap();
    assert_eq!(report["layers_skipped"], 1, "{report}");
    assert_eq!(
        report["blobs_fetched"], 2,
        "the config and one layer: {report}"
    );
    let inspect: serde_json::Value =
        serde_json::from_str(&ok("inspect", &layerstore(&store, &["inspect", "app:v2"]))).unwrap();
    assert!(
        inspect["config"]["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "GREETING=hello"),
        "{inspect}"
    );
    let checkout = work.path().join("checkout");
    ok(
        "checkout",
        &layerstore(&store, &["checkout", "app:v2", checkout.to_str().unwrap()]),
    );
    let podman_v2 = describe(&podman.mount(&v2));
    assert!(podman_v2.contains_key("etc/added.txt"));
    assert_eq!(
        describe(&checkout),
        podman_v2,
        "our checkout of v2 against podman's"
    );
    // Looked at from the store: two layers, the top one the COPY.
    let history = ok(
        "history",
        &layerstore(&store, &["history", "app:v2", "--json"]),
    );
    let steps: serde_json::Value = serde_json::from_str(&history).unwrap();
    assert!(
        steps[0]["created_by"].as_str().unwrap().contains("COPY"),
        "{steps}"
    );
    assert_eq!(
        ok(
            "cat",
            &layerstore(&store, &["cat", "app:v2", "/etc/added.txt"])
        ),
        "added by podman\n"
    );

    // podman load reads an export-docker-archive file.
    load_archive(&podman, &store, &work.path().join("app.tar"), &want);
    podman.run(&["image", "unmount", "--all"]);
}
