//! The `layerstore` command line, run as a user runs it: the contract of docs/CLI.md.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

mod build;
#[path = "../common/mod.rs"]
mod common;
mod containers;
mod crash;
mod inspect;
mod pipes;
mod progress;
mod soak;
mod sync;

fn layerstore(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_layerstore"))
        .arg("--store")
        .arg(store)
        .args(args)
        .output()
        .expect("run layerstore")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("utf-8 output")
}

fn last_line(text: &str) -> &str {
    text.lines().last().expect("a line of output")
}

/// A directory holding every kind of entry the store keeps.
fn every_kind(dir: &Path) {
    use std::os::unix::ffi::OsStrExt;
    std::fs::create_dir_all(dir.join("sub/deeper")).unwrap();
    std::fs::write(dir.join("file"), b"hello world\n").unwrap();
    std::fs::write(dir.join("sub/big"), vec![7u8; 300_000]).unwrap();
    std::fs::write(dir.join("setuid"), b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(dir.join("setuid"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::fs::set_permissions(
        dir.join("sub/deeper"),
        std::fs::Permissions::from_mode(0o1777),
    )
    .unwrap();
    std::os::unix::fs::symlink("../file", dir.join("sub/link")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.join("abs-link")).unwrap();
    std::fs::hard_link(dir.join("file"), dir.join("sub/hard")).unwrap();
    let odd = std::ffi::OsStr::from_bytes(b"name\nwith newline \xff");
    std::fs::write(dir.join(odd), b"odd").unwrap();
    common::mknod(&dir.join("fifo"), rustix::fs::FileType::Fifo, 0o640, (0, 0));
    if rustix::process::geteuid().is_root() {
        common::mknod(
            &dir.join("null"),
            rustix::fs::FileType::CharacterDevice,
            0o666,
            (1, 3),
        );
        std::os::unix::fs::lchown(dir.join("file"), Some(1234), Some(5678)).unwrap();
    } else {
        assert!(
            !common::strict(),
            "device nodes and chown need root, and LAYERSTORE_REQUIRE_PRIVILEGED=1 is set"
        );
        eprintln!("not root: no device node or foreign owner in the tree");
    }
    if common::user_xattrs_supported(dir) {
        xattr_set(&dir.join("file"), "user.comment", b"kept").unwrap();
        assert_eq!(
            xattr_get(&dir.join("file"), "user.comment").as_deref(),
            Some(&b"kept"[..])
        );
    }
    // Distinct nanosecond mtimes, set last (directories too).
    for (i, p) in (0i64..).zip(["file", "sub/big", "sub", "sub/deeper", "setuid", ""]) {
        let t = rustix::fs::Timespec {
            tv_sec: 1_600_000_000 + i,
            tv_nsec: 123_456_789 - i,
        };
        rustix::fs::utimensat(
            rustix::fs::CWD,
            dir.join(p),
            &rustix::fs::Timestamps {
                last_access: t,
                last_modification: t,
            },
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
    }
}

fn xattr_set(path: &Path, name: &str, value: &[u8]) -> rustix::io::Result<()> {
    rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty())
}

fn xattr_get(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    rustix::fs::lgetxattr(path, name, &mut buf)
        .ok()
        .map(|n| buf[..n].to_vec())
}

/// Every attribute of every path under `root`, for comparison.
fn describe(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    let mut inodes = std::collections::HashMap::new();
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let first_link = inodes
            .entry(meta.ino())
            .or_insert_with(|| rel.clone())
            .clone();
        let content = if meta.file_type().is_file() {
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
        out.push(format!(
            "{rel:?} mode={:o} uid={} gid={} mtime={}.{} rdev={} nlink-group={first_link:?} xattr={:?} {content}",
            meta.mode(),
            meta.uid(),
            meta.gid(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.rdev(),
            xattr_get(&path, "user.comment"),
        ));
        if meta.is_dir() {
            let mut children: Vec<_> = std::fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            children.sort();
            stack.extend(children.into_iter().rev());
        }
    }
    out
}

#[test]
fn commit_then_checkout_restores_every_attribute() {
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let src = work.path().join("src");
    every_kind(&src);
    assert_eq!(
        last_line(&ok(&layerstore(&store, &["init"]))),
        store.display().to_string()
    );
    let out = ok(&layerstore(
        &store,
        &[
            "commit",
            src.to_str().unwrap(),
            "--tag",
            "every:kind",
            "--message",
            "all kinds",
        ],
    ));
    let id = last_line(&out).to_owned();
    assert!(id.starts_with("blake3:") && id.len() == 71, "{id}");
    let dest = work.path().join("dest");
    ok(&layerstore(
        &store,
        &["checkout", "every:kind", dest.to_str().unwrap()],
    ));
    assert_eq!(describe(&src), describe(&dest));
    // Checked out again by id prefix into the same (now non-empty) place: refused.
    let out = layerstore(&store, &["checkout", &id[7..19], dest.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains(dest.to_str().unwrap()));
}

#[test]
fn diff_images_and_directories() {
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let a = work.path().join("a");
    std::fs::create_dir_all(a.join("usr/bin")).unwrap();
    std::fs::write(a.join("usr/bin/python3"), b"py").unwrap();
    std::fs::write(a.join("gone"), b"x").unwrap();
    std::fs::create_dir_all(a.join("olddir/inner")).unwrap();
    ok(&layerstore(&store, &["init"]));
    let base = last_line(&ok(&layerstore(
        &store,
        &["commit", a.to_str().unwrap(), "--tag", "base"],
    )))
    .to_owned();
    std::fs::write(a.join("usr/bin/python3"), b"python 3").unwrap();
    std::fs::remove_file(a.join("gone")).unwrap();
    std::fs::remove_dir_all(a.join("olddir")).unwrap();
    std::fs::write(a.join("new"), b"n").unwrap();
    let out = ok(&layerstore(&store, &["diff", "base", a.to_str().unwrap()]));
    let lines: Vec<&str> = out.lines().filter(|l| !l.ends_with(" .")).collect();
    assert!(lines.contains(&"D gone"), "{out}");
    assert!(lines.contains(&"D olddir"), "{out}");
    assert!(
        !out.contains("olddir/inner"),
        "a deleted directory's children are not listed: {out}"
    );
    assert!(lines.contains(&"A new"), "{out}");
    assert!(lines.contains(&"M usr/bin/python3"), "{out}");
    let mut sorted = lines.clone();
    sorted.sort_by_key(|l| l[2..].to_owned());
    assert_eq!(lines, sorted, "sorted by path");

    let next = last_line(&ok(&layerstore(
        &store,
        &[
            "commit",
            a.to_str().unwrap(),
            "--parent",
            &base,
            "--tag",
            "next",
        ],
    )))
    .to_owned();
    let out = layerstore(&store, &["diff", "base", "next", "--exit-code"]);
    assert_eq!(out.status.code(), Some(1));
    let out = layerstore(&store, &["diff", &next, a.to_str().unwrap(), "--exit-code"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(out.stdout.is_empty());

    let inspect: serde_json::Value =
        serde_json::from_slice(&layerstore(&store, &["inspect", "next"]).stdout).unwrap();
    assert_eq!(inspect["id"], next.as_str());
    assert_eq!(inspect["layers"].as_array().unwrap().len(), 2);
    assert!(inspect["layers"][1]["size"].as_u64().unwrap() >= 9);
    assert_eq!(inspect["history"].as_array().unwrap().len(), 2);
    assert!(inspect["config"].is_object());

    // Two directories: a copy has no change; then one of each kind.
    let b = work.path().join("b");
    let cp = Command::new("cp")
        .arg("-a")
        .arg(&a)
        .arg(&b)
        .status()
        .unwrap();
    assert!(cp.success());
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    let out = layerstore(&store, &["diff", a, b, "--exit-code"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(out.stdout.is_empty());
    std::fs::write(Path::new(b).join("usr/bin/python3"), b"python 3.12").unwrap();
    std::fs::remove_file(Path::new(b).join("new")).unwrap();
    std::fs::write(Path::new(b).join("added"), b"a").unwrap();
    let out = layerstore(&store, &["diff", a, b, "--exit-code"]);
    assert_eq!(out.status.code(), Some(1));
    let out = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = out.lines().filter(|l| !l.ends_with(" .")).collect();
    assert_eq!(lines, ["A added", "D new", "M usr/bin/python3"], "{out}");
}

#[test]
fn tags_images_du_and_exit_codes() {
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    // No store yet: usage error naming the directory.
    let out = layerstore(&store, &["images"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(store.to_str().unwrap()));
    ok(&layerstore(&store, &["init"]));
    ok(&layerstore(&store, &["init"]));
    let src = work.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), vec![1u8; 100_000]).unwrap();
    let id = last_line(&ok(&layerstore(
        &store,
        &["commit", src.to_str().unwrap(), "--tag", "one"],
    )))
    .to_owned();
    ok(&layerstore(&store, &["tag", "one", "two:v2"]));
    let listing = ok(&layerstore(&store, &["images"]));
    assert!(listing.starts_with("NAME"), "{listing}");
    assert!(
        listing.contains("one:latest") && listing.contains("two:v2"),
        "{listing}"
    );
    assert!(listing.contains(&id[..19]), "{listing}");
    // A second image holding the same bytes twice more: 300 000 logical bytes
    // over two images, 100 000 unique (plus a few hundred of metadata).
    std::fs::write(src.join("g"), vec![1u8; 100_000]).unwrap();
    ok(&layerstore(
        &store,
        &["commit", src.to_str().unwrap(), "--tag", "three"],
    ));
    let du = ok(&layerstore(&store, &["du"]));
    assert!(du.contains("logical bytes: 300000\n"), "{du}");
    assert!(du.contains("dedup ratio: 2.9"), "{du}");
    let json: serde_json::Value =
        serde_json::from_slice(&layerstore(&store, &["du", "--json"]).stdout).unwrap();
    let unique = json["unique_bytes"].as_u64().unwrap();
    assert!((100_000..102_000).contains(&unique), "{json}");
    assert!(json["stored_bytes"].as_u64().unwrap() < 20_000, "{json}");
    assert_eq!(json["logical_bytes"], 300_000);
    ok(&layerstore(&store, &["untag", "two:v2"]));
    assert_eq!(
        layerstore(&store, &["untag", "two:v2"]).status.code(),
        Some(2)
    );
    let out = layerstore(&store, &["inspect", "nosuch"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nosuch"));
    assert_eq!(
        layerstore(&store, &["tag", "one", "Bad Name"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(layerstore(&store, &["frobnicate"]).status.code(), Some(2));
    // A missing source directory is bad input, named.
    let missing = work.path().join("nonexistent");
    let out = layerstore(&store, &["commit", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nonexistent"));
}

#[test]
fn gc_and_fsck() {
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    ok(&layerstore(&store, &["init"]));
    let src = work.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("kept"), b"kept".repeat(1000)).unwrap();
    ok(&layerstore(
        &store,
        &["commit", src.to_str().unwrap(), "--tag", "kept"],
    ));
    let noise: Vec<u8> = (0..400_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    std::fs::write(src.join("dropped"), noise).unwrap();
    ok(&layerstore(
        &store,
        &["commit", src.to_str().unwrap(), "--tag", "dropped"],
    ));
    ok(&layerstore(&store, &["untag", "dropped"]));
    let stored = |store: &Path| -> u64 {
        let du: serde_json::Value =
            serde_json::from_slice(&layerstore(store, &["du", "--json"]).stdout).unwrap();
        du["stored_bytes"].as_u64().unwrap()
    };
    let before = stored(&store);
    let out = ok(&layerstore(&store, &["gc"]));
    let after = stored(&store);
    let freed: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("bytes freed: "))
        .expect("bytes freed line")
        .parse()
        .unwrap();
    // What the dropped image alone held is gone (what is left is the kept
    // image, its index and the combined index, 1.2 KB of which is its
    // header and fanout): at least 95 % of the difference.
    assert!(after < 4000, "{before} -> {after} bytes stored");
    assert!(freed * 100 >= (before - after) * 95, "{out}");
    let out = ok(&layerstore(&store, &["fsck"]));
    assert!(out.contains("clean"), "{out}");
    let dest = work.path().join("dest");
    ok(&layerstore(
        &store,
        &["checkout", "kept", dest.to_str().unwrap()],
    ));
    assert_eq!(
        std::fs::read(dest.join("kept")).unwrap(),
        b"kept".repeat(1000)
    );

    // A flipped byte in a pack: fsck exits 1 and names the pack.
    let pack = std::fs::read_dir(store.join("packs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "pack"))
        .unwrap();
    let mut bytes = std::fs::read(&pack).unwrap();
    let last = bytes.len() - 5;
    bytes[last] ^= 0x20;
    std::fs::write(&pack, bytes).unwrap();
    let out = layerstore(&store, &["fsck"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(pack.file_name().unwrap().to_str().unwrap())
    );

    // `--repair` quarantines the pack, says so, and still exits 1: what was
    // found is reported, and the tag's image lost data.
    let name = pack.file_name().unwrap().to_str().unwrap();
    let out = layerstore(&store, &["fsck", "--repair"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().any(|l| l.starts_with("repaired: ")
            && l.contains(name)
            && l.contains("damaged pack moved to")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("problem: ") && l.contains(name)),
        "{text}"
    );
    assert!(text.ends_with("problems found\n"), "{text}");
    assert!(!pack.exists());
    assert!(store.join("quarantine").join(name).is_file());
    // The damage is gone: what is left is the tag of the damaged image.
    let out = layerstore(&store, &["--json", "fsck"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["repaired"], serde_json::json!([]));
    for problem in report["problems"].as_array().unwrap() {
        assert!(
            problem["path"].as_str().unwrap().contains("refs/tags/kept"),
            "{report}"
        );
    }
    ok(&layerstore(&store, &["untag", "kept"]));
    let out = ok(&layerstore(&store, &["fsck", "--repair"]));
    assert!(out.ends_with(": clean\n"), "{out}");
}

/// A `docker save` archive (`manifest.json`, `<config hex>.json`,
/// `<layer hex>/layer.tar`) made from an uncompressed layout's blobs.
fn docker_save_archive(layout: &Path, archive: &Path, tag: &str) {
    let json = |path: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };
    let blob = |digest: &serde_json::Value| {
        let digest = digest.as_str().unwrap();
        let hex = digest.strip_prefix("sha256:").unwrap().to_owned();
        (layout.join("blobs/sha256").join(&hex), hex)
    };
    let index = json(&layout.join("index.json"));
    let (manifest, _) = blob(&index["manifests"][0]["digest"]);
    let manifest = json(&manifest);
    let mut b = tar::Builder::new(std::fs::File::create(archive).unwrap());
    let mut add = |name: &str, bytes: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, bytes).unwrap();
    };
    let (config, hex) = blob(&manifest["config"]["digest"]);
    let config_name = format!("{hex}.json");
    add(&config_name, &std::fs::read(config).unwrap());
    let mut layers = Vec::new();
    for layer in manifest["layers"].as_array().unwrap() {
        let (path, hex) = blob(&layer["digest"]);
        let name = format!("{hex}/layer.tar");
        add(&name, &std::fs::read(path).unwrap());
        layers.push(name);
    }
    let saved = serde_json::json!([{
        "Config": config_name,
        "RepoTags": [tag],
        "Layers": layers,
    }]);
    add("manifest.json", &serde_json::to_vec(&saved).unwrap());
    b.into_inner().unwrap();
}

#[test]
fn import_oci_reads_a_docker_save_archive() {
    let work = tempfile::tempdir().unwrap();
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    let src = work.path().join("src");
    every_kind(&src);
    ok(&layerstore(&a, &["init"]));
    ok(&layerstore(&b, &["init"]));
    let id = last_line(&ok(&layerstore(
        &a,
        &["commit", src.to_str().unwrap(), "--tag", "app"],
    )))
    .to_owned();
    let layout = work.path().join("layout");
    ok(&layerstore(
        &a,
        &[
            "export-oci",
            "app",
            layout.to_str().unwrap(),
            "--compression",
            "none",
        ],
    ));
    let archive = work.path().join("saved.tar");
    docker_save_archive(&layout, &archive, "example:1");
    let out = ok(&layerstore(
        &b,
        &["import-oci", archive.to_str().unwrap(), "--tag", "saved"],
    ));
    assert_eq!(last_line(&out), id);
    let dest = work.path().join("dest");
    ok(&layerstore(
        &b,
        &["checkout", "saved", dest.to_str().unwrap()],
    ));
    assert_eq!(describe(&src), describe(&dest));
    // A tag the archive does not hold: bad input, exit 2, naming it.
    let out = layerstore(&b, &["import-oci", &format!("{}:nope", archive.display())]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
}

#[test]
fn export_oci_then_import_oci_gives_the_same_image() {
    let work = tempfile::tempdir().unwrap();
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    let src = work.path().join("src");
    every_kind(&src);
    ok(&layerstore(&a, &["init"]));
    ok(&layerstore(&b, &["init"]));
    let id = last_line(&ok(&layerstore(
        &a,
        &["commit", src.to_str().unwrap(), "--tag", "app"],
    )))
    .to_owned();
    let layout = work.path().join("layout");
    let spec = format!("{}:v1", layout.display());
    let digest = last_line(&ok(&layerstore(
        &a,
        &["export-oci", "app", &spec, "--compression", "zstd"],
    )))
    .to_owned();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    let index = std::fs::read_to_string(layout.join("index.json")).unwrap();
    assert!(
        index.contains(&digest) && index.contains("\"v1\""),
        "{index}"
    );
    let out = ok(&layerstore(&b, &["import-oci", &spec, "--tag", "copy"]));
    assert_eq!(last_line(&out), id);
    let dest = work.path().join("dest");
    ok(&layerstore(
        &b,
        &["checkout", "copy", dest.to_str().unwrap()],
    ));
    assert_eq!(describe(&src), describe(&dest));
    // A reference the layout does not hold: bad input, exit 2, naming it.
    let out = layerstore(&b, &["import-oci", &format!("{}:nope", layout.display())]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
}
