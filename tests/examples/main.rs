//! Every example runs, and says what it is meant to show.
//!
//! The examples are run through `cargo run --example`, as a user runs them
//! (the README's first command), in the same profile as these tests.

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
