//! Every example runs, and says what it is meant to show.
//!
//! The examples are run through `cargo run --example`, as a user runs them
//! (the README's first command), in the same profile as these tests.

#[path = "../common/mod.rs"]
mod common;
#[allow(
    dead_code,
    reason = "the registry tests' server: only its start and view are used here"
)]
#[path = "../registry/server.rs"]
mod server;

use std::process::Command;

/// Runs the example `name` with `args`; its stdout, which must be a success.
fn run_example(name: &str, args: &[&str]) -> String {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["run", "--quiet", "--all-features", "--example", name, "--"])
        .args(args);
    let out = cmd.output().expect("run cargo");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "example {name} failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The value after `label` on its line of `text`.
fn value_of<'a>(text: &'a str, label: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no line '{label}' in:\n{text}"))
        .trim()
}

fn mib(value: &str) -> f64 {
    value
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("not a MiB figure: {value}"))
}

#[test]
fn assemble_stores_the_shared_base_once() {
    let out = run_example("assemble", &[]);
    // Three images, the base's three layers listed in each, in order.
    for name in ["baseImage", "imageA", "imageB"] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("{name}  blake3:"))),
            "{out}"
        );
    }
    assert_eq!(out.matches("add os").count(), 3, "{out}");
    assert_eq!(out.matches("add applibs").count(), 3, "{out}");
    assert_eq!(out.matches("add appA").count(), 1, "{out}");
    let logical = mib(value_of(&out, "three images, logical content:"));
    let unique = mib(value_of(&out, "the store, unique content:"));
    // The base is about a third of the logical content of three images that
    // share it: stored once, the unique content is a little over a third.
    assert!(
        unique < logical * 0.4,
        "unique {unique} of logical {logical}"
    );
    assert_eq!(
        value_of(&out, "base layers stored once for three images:"),
        "yes"
    );
    // Pushed to a second store, imageB moves only its own layer's chunks.
    assert_eq!(
        value_of(&out, "the second push moved only imageB's own layer:"),
        "yes"
    );
    let push_b = value_of(&out, "push imageB to a second store: moved");
    let moved = mib(push_b.split('(').nth(1).expect("a byte figure"));
    assert!(moved < 1.0, "imageB's push moved {moved} MiB: {push_b}");
}

#[test]
fn build_cache_reuses_steps_until_the_first_change() {
    let out = run_example("build_cache", &[]);
    let section = |title: &str| -> Vec<&str> {
        out.split(&format!("== {title}\n"))
            .nth(1)
            .unwrap_or_else(|| panic!("no section '{title}':\n{out}"))
            .lines()
            .take_while(|l| !l.starts_with("image "))
            .map(|l| l.split_whitespace().next().unwrap_or_default())
            .collect()
    };
    assert_eq!(section("first build"), vec!["BUILT"; 6]);
    assert_eq!(section("the same again"), vec!["CACHED"; 6]);
    assert_eq!(
        section("after changing src/main"),
        vec!["CACHED", "CACHED", "BUILT", "BUILT", "BUILT", "BUILT"]
    );
    assert_eq!(section("--no-cache"), vec!["BUILT"; 6]);
    assert_eq!(value_of(&out, "cache behaved as expected:"), "yes");
}

#[test]
fn cow_view_commits_exactly_the_containers_changes() {
    let out = run_example("cow_view", &[]);
    assert_eq!(
        out.matches("shared with the parent image").count(),
        2,
        "{out}"
    );
    assert_eq!(
        out.matches("new: the container's changes").count(),
        1,
        "{out}"
    );
    for change in ["M srv/index.html", "A srv/new.js", "D srv/old.css"] {
        assert!(out.lines().any(|l| l.trim() == change), "{change}:\n{out}");
    }
    assert_eq!(
        value_of(&out, "the new image shares the old layers and adds one:"),
        "yes"
    );
}

#[test]
fn dedup_stores_repeated_files_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("files");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let shared = common::random_bytes(1 << 20, 1);
    for name in ["a", "b", "sub/c"] {
        std::fs::write(dir.join(name), &shared).unwrap();
    }
    std::fs::write(dir.join("own"), common::random_bytes(256 << 10, 2)).unwrap();
    let out = run_example("dedup", &[dir.to_str().unwrap()]);
    assert!(out.contains(": 4 files, 3.25 MiB"), "{out}");
    assert_eq!(value_of(&out, "stored twice:"), "6.50 MiB", "{out}");
    // Four files, two distinct contents: 1.25 MiB unique, stored once.
    let unique = mib(value_of(&out, "after deduplication:"));
    assert!((unique - 1.25).abs() < 0.01, "{out}");
    // The second pass adds no chunk.
    let distinct = |pass: &str| -> u64 {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("{pass} pass:")))
            .unwrap_or_else(|| panic!("no {pass} pass in {out}"));
        line.split("holds ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no chunk count in {line}"))
    };
    assert_eq!(distinct("first"), distinct("second"), "{out}");
}

#[test]
fn push_layout_uploads_only_what_the_registry_lacks() {
    use layerstore::oci::{Compression, Exchange, ExportOptions};
    let Some(registry) = server::Server::start("the push_layout example") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let store = layerstore::Store::create(
        tmp.path().join("store"),
        &layerstore::StoreOptions::default(),
    )
    .unwrap();
    let tree = tmp.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("f"), common::random_bytes(300_000, 3)).unwrap();
    let snapshot = store
        .scan(&tree, &layerstore::ScanOptions::default())
        .unwrap()
        .snapshot;
    let id = store
        .put_child_image(
            None,
            &layerstore::Snapshot::empty().diff(&snapshot),
            &snapshot,
            None,
            layerstore::History::default(),
        )
        .unwrap();
    let layout = tmp.path().join("layout");
    Exchange::new(&store)
        .export_layout(
            &id,
            &layout,
            Some("v1"),
            &ExportOptions::new(Compression::Gzip),
        )
        .unwrap();
    let source = format!("{}:v1", layout.display());
    let dest = format!("{}/examples/app:v1", registry.host);
    let first = run_example("push_layout", &[&source, &dest, "--insecure"]);
    // A config and one layer.
    assert_eq!(value_of(&first, "blobs uploaded:"), "2", "{first}");
    assert_eq!(value_of(&first, "blobs already present:"), "0", "{first}");
    assert_eq!(registry.stored_blobs().len(), 3, "config, layer, manifest");
    let again = run_example("push_layout", &[&source, &dest, "--insecure"]);
    assert_eq!(value_of(&again, "blobs uploaded:"), "0", "{again}");
    assert_eq!(value_of(&again, "blobs already present:"), "2", "{again}");
    assert_eq!(value_of(&again, "bytes uploaded:"), "0", "{again}");
}
