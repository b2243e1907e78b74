//! `layerstore push` and `pull` against a real registry: the CLI contract.

use std::path::Path;
use std::process::{Command, Output};

use crate::server::Server;

fn layerstore(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_layerstore"))
        .arg("--store")
        .arg(store)
        .args(args)
        .env_remove("LAYERSTORE_REGISTRY_TOKEN")
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn figure(out: &str, key: &str) -> u64 {
    out.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(": "))
        .unwrap_or_else(|| panic!("no '{key}' in {out}"))
        .parse()
        .unwrap()
}

#[test]
fn push_then_pull_with_the_cli() {
    let Some(server) = Server::start("CLI push and pull") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (src, target) = (dir.path().join("src"), dir.path().join("target"));
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("f"), crate::layout::noise(1 << 20, 4)).unwrap();
    ok(&layerstore(&src, &["init"]));
    ok(&layerstore(
        &src,
        &["commit", tree.to_str().unwrap(), "--tag", "app"],
    ));
    let dest = format!("{}/cli/app:v1", server.host);

    let first = ok(&layerstore(&src, &["push", "app", &dest, "--insecure"]));
    assert_eq!(figure(&first, "blobs uploaded"), 2, "{first}");
    assert_eq!(figure(&first, "blobs already present"), 0, "{first}");
    assert_eq!(figure(&first, "layers exported"), 1, "{first}");
    let again = ok(&layerstore(&src, &["push", "app", &dest, "--insecure"]));
    assert_eq!(figure(&again, "blobs uploaded"), 0, "{again}");
    assert_eq!(figure(&again, "blobs already present"), 2, "{again}");
    assert_eq!(figure(&again, "layers exported"), 0, "{again}");
    // After export-oci, a push to another repository uploads that export's
    // blob instead of compressing the layer again.
    let layout = dir.path().join("layout");
    ok(&layerstore(
        &src,
        &[
            "export-oci",
            "app",
            &format!("{}:app", layout.display()),
            "--compression",
            "zstd-seekable",
        ],
    ));
    let other = format!("{}/cli/other:v1", server.host);
    let reused = ok(&layerstore(&src, &["push", "app", &other, "--insecure"]));
    assert_eq!(figure(&reused, "blobs uploaded"), 2, "{reused}");
    assert_eq!(figure(&reused, "layers exported"), 0, "{reused}");
    assert_eq!(
        figure(&reused, "layers reused from an earlier export"),
        1,
        "{reused}"
    );

    ok(&layerstore(&target, &["init"]));
    let pulled = ok(&layerstore(
        &target,
        &["pull", &dest, "--tag", "got", "--insecure"],
    ));
    assert!(
        pulled.contains("layers pulled a chunk at a time: 1 "),
        "{pulled}"
    );
    let id = pulled.lines().last().unwrap();
    assert!(id.starts_with("blake3:") && id.len() == 71, "{pulled}");
    let images = ok(&layerstore(&target, &["images"]));
    assert!(images.contains("got:latest"), "{images}");
    let out = dir.path().join("out");
    ok(&layerstore(
        &target,
        &["checkout", "got", out.to_str().unwrap()],
    ));
    assert_eq!(
        std::fs::read(out.join("f")).unwrap(),
        std::fs::read(tree.join("f")).unwrap()
    );

    // Exit codes: an unknown tag is bad input (2); without --insecure the
    // client speaks https to a plain-http registry and fails (3); plain http
    // to a host that is not loopback is refused (2).
    let missing = layerstore(
        &target,
        &[
            "pull",
            &format!("{}/cli/app:nope", server.host),
            "--insecure",
        ],
    );
    assert_eq!(
        missing.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cli/app:nope"));
    let tls = layerstore(&src, &["push", "app", &dest]);
    assert_eq!(
        tls.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&tls.stderr)
    );
    let remote = layerstore(
        &src,
        &["push", "app", "registry.example.com/a:b", "--insecure"],
    );
    assert_eq!(remote.status.code(), Some(2));
}
