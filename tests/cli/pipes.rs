//! A reader that closes the pipe early (`layerstore diff A B | head -1`)
//! ends every command that prints a list quietly: no panic, no message,
//! status 141 (as a process ended by `SIGPIPE`).

use std::path::Path;
use std::process::{Command, Stdio};

use super::{last_line, layerstore, ok};

/// Runs layerstore with a stdout whose reading end is already closed, so
/// the first write fails with `EPIPE` whatever the timing.
fn with_closed_stdout(store: &Path, args: &[&str]) -> std::process::Output {
    // Close-on-exec: a child another test forks meanwhile must not inherit
    // the read end and keep the pipe open (the write then succeeds).
    let (reader, writer) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).expect("pipe");
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_layerstore"))
        .arg("--store")
        .arg(store)
        .args(args)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .expect("run layerstore")
}

#[test]
fn a_closed_pipe_ends_every_listing_quietly() {
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    ok(&layerstore(&store, &["init"]));
    let src = work.path().join("src");
    std::fs::create_dir_all(src.join("dir")).unwrap();
    for i in 0..300 {
        std::fs::write(src.join(format!("dir/f{i}")), format!("{i}\n")).unwrap();
    }
    let a = src.to_str().unwrap();
    let one = last_line(&ok(&layerstore(&store, &["commit", a, "--tag", "one"]))).to_owned();
    for i in 0..300 {
        std::fs::write(src.join(format!("dir/f{i}")), format!("changed {i}\n")).unwrap();
    }
    ok(&layerstore(
        &store,
        &["commit", a, "--parent", &one, "--tag", "two"],
    ));
    let mut commands: Vec<Vec<&str>> = vec![
        vec!["diff", "one", "two"],
        vec!["images"],
        vec!["inspect", "two"],
        vec!["du"],
        vec!["containers"],
        vec!["fsck"],
    ];
    commands.extend(listings());
    for args in &commands {
        for json in [false, true] {
            let mut args = args.clone();
            if json {
                args.push("--json");
            }
            let out = with_closed_stdout(&store, &args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.is_empty(),
                "layerstore {args:?} wrote on stderr: {stderr}"
            );
            assert_eq!(out.status.code(), Some(141), "layerstore {args:?}");
        }
    }
}

/// The listings of the commands that look inside images.
fn listings() -> Vec<Vec<&'static str>> {
    vec![
        vec!["history", "two"],
        vec!["efficiency", "two"],
        vec!["efficiency", "one", "two"],
        vec!["ls", "two", "-R"],
        vec!["ls", "two", "dir", "-l"],
        vec!["cat", "two", "dir/f7"],
        vec!["du", "-v"],
        vec!["completions", "bash"],
    ]
}
