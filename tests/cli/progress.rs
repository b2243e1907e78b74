//! Progress bars are for a terminal: with stderr piped, or under `--json`,
//! the long commands write nothing to stderr at all (no bar, no spinner, no
//! carriage return or escape sequence).
//!
//! (stderr is a pipe here, so `--json` is checked on a pipe too; with a
//! terminal it would need a pseudo-terminal, which CI machines may lack.)

use super::{last_line, layerstore, ok};

/// Fails naming the command if it wrote anything to stderr.
fn quiet(args: &[&str], out: &std::process::Output) -> String {
    let text = ok(out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.stderr.is_empty(),
        "{args:?} wrote to stderr: {err:?} (carriage returns: {}, escapes: {})",
        err.contains('\r'),
        err.contains('\u{1b}')
    );
    text
}

#[test]
fn piped_and_json_runs_show_no_progress() {
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    ok(&layerstore(&store, &["init"]));
    let src = work.path().join("src");
    std::fs::create_dir_all(src.join("dir")).unwrap();
    for i in 0..200u32 {
        let content: Vec<u8> = (0..i * 997).map(|b| (b % 251) as u8).collect();
        std::fs::write(src.join(format!("dir/f{i}")), content).unwrap();
    }
    let a = src.to_str().unwrap();
    for json in [false, true] {
        let flag: &[&str] = if json { &["--json"] } else { &[] };
        let tag = if json { "j" } else { "t" };
        let run = |rest: &[&str]| {
            let args: Vec<&str> = flag.iter().chain(rest).copied().collect();
            quiet(&args, &layerstore(&store, &args))
        };
        let out = run(&["commit", a, "--tag", tag]);
        if !json {
            assert!(last_line(&out).starts_with("blake3:"), "{out}");
        }
        let dest = work.path().join(format!("out-{tag}"));
        run(&["checkout", tag, dest.to_str().unwrap()]);
        let other = work.path().join(format!("other-{tag}"));
        run(&["sync", tag, "--to", other.to_str().unwrap()]);
        run(&["gc"]);
        run(&["fsck"]);
    }
}
