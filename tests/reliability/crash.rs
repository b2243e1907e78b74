//! Garbage collection killed with SIGKILL at random moments leaves a store
//! that fsck finds clean and whose tagged images read back.

use std::io::{BufRead, BufReader, Read};
use std::time::Duration;

use layerstore::{FsckOptions, GcOptions, Store};

use super::{assert_image, child, child_arg, files, make_image, new_store, read_image};

/// Child side: steps of churn (a new image sharing packs with a kept one;
/// every earlier churn image untagged), each followed by a gc that rewrites
/// every pack with anything dead in it. Prints `GC <step>` as each gc starts
/// and `DONE <step>` when it returns.
#[test]
#[ignore = "child process of a_killed_gc_leaves_a_valid_store"]
fn child_gc_churn() {
    let Some(arg) = child_arg() else { return };
    let (dir, round) = arg.split_once('|').unwrap();
    let round: u64 = round.parse().unwrap();
    let store = Store::open(dir).unwrap();
    let options = GcOptions::default()
        .repack_dead_fraction(0.0)
        .lock_timeout(Duration::from_secs(10));
    // libtest printed "test … " without a newline.
    println!();
    for step in 0.. {
        let n = round * 100 + step;
        make_image(&store, &format!("stay:{n}"), &files(10_000 + n, 1, 6));
        let churn = format!("churn:{n}");
        make_image(&store, &churn, &files(20_000 + n, 2, 6));
        for (tag, _) in store.tags().unwrap() {
            if tag.name() == "churn" && tag.to_string() != churn {
                store.remove_tag(&tag).unwrap();
            }
        }
        println!("GC {step}");
        store.gc(&options).unwrap();
        println!("DONE {step}");
    }
}

#[test]
fn a_killed_gc_leaves_a_valid_store() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = new_store(dir.path());
    let kept = files(1, 2, 12);
    let kept_id = make_image(&store, "kept", &kept);
    make_image(&store, "garbage", &files(2, 3, 12));
    store.flush().unwrap();
    store.remove_tag(&"garbage".parse().unwrap()).unwrap();
    drop(store);

    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut killed_in_gc = 0;
    let mut round = 0u64;
    let mut left_garbage = 0;
    while killed_in_gc < 20 {
        assert!(
            round < 80,
            "only {killed_in_gc} of {round} kills landed in a gc"
        );
        let mut proc = child(
            "crash::child_gc_churn",
            &format!("{}|{round}", path.display()),
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // Kill during the first or second gc of the child, 0 to 12 ms in.
        let target = format!("GC {}", round % 2);
        let mut out = BufReader::new(proc.stdout.take().unwrap());
        let mut line = String::new();
        while out.read_line(&mut line).unwrap() > 0 && line.trim() != target {
            line.clear();
        }
        std::thread::sleep(Duration::from_micros(seed % 12_000));
        proc.kill().unwrap();
        proc.wait().unwrap();
        let mut rest = String::new();
        out.read_to_string(&mut rest).unwrap();
        let done = format!("DONE {}", round % 2);
        if !rest.lines().any(|l| l == done) {
            killed_in_gc += 1;
        }

        let store = Store::open(&path).unwrap();
        let report = store.fsck(&FsckOptions::default()).unwrap();
        assert!(report.is_clean(), "round {round}: {:#?}", report.problems);
        left_garbage += usize::from(!report.garbage.is_empty());
        assert_image(&store, &kept_id, &kept);
        for (tag, id) in store.tags().unwrap() {
            read_image(&store, &id).unwrap_or_else(|e| panic!("round {round}: {tag}: {e}"));
        }
        round += 1;
    }
    eprintln!(
        "{round} kills, {killed_in_gc} of them in a gc, {left_garbage} leaving packs without index"
    );
    // A last gc, not killed, collects every leftover.
    let store = Store::open(&path).unwrap();
    store.gc(&GcOptions::default()).unwrap();
    let report = store.fsck(&FsckOptions::default()).unwrap();
    assert!(
        report.is_clean() && report.garbage.is_empty(),
        "{report:#?}"
    );
    assert_image(&store, &kept_id, &kept);
}
