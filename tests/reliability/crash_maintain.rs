//! Maintenance killed with SIGKILL inside it — while it consolidates packs or
//! rewrites the combined index — at a write site drawn from a seeded
//! generator, leaves a store that opens, that fsck finds clean, and that has
//! lost nothing: every image tagged before the kill reads back. As in
//! `crash.rs`, the kill lands at a point of the operation (`fault::arm_kill`
//! around each maintenance only), not after a guessed time. And a rewrite of
//! the combined index alone is killed at each of its write sites in turn.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;

use layerstore::{FsckOptions, GcOptions, Store};

use super::sources::copy_dir;
use super::{assert_image, child, child_arg, files, make_image, new_store, packs_with};
use crate::common::{Rng, test_seed};

/// Kills: one per round.
const ROUNDS: u64 = 16;
/// Small commits per round: one more than it takes to consolidate.
const COMMITS: u64 = 17;

/// Child side: `COMMITS` small images, each tagged (and so flushed, one pack
/// each, with automatic maintenance off), printing `TAG <name> <seed>` once
/// tagged; then the write sites of `Store::maintain(true)` are counted on a
/// copy of the store, and maintenance runs on the store armed to kill at
/// site `1 + at * sites / 1000`, printing `RUN <sites>` first.
#[test]
#[ignore = "child process of a_killed_maintenance_leaves_a_valid_store"]
fn child_commit_and_maintain() {
    let Some(arg) = child_arg() else { return };
    let mut parts = arg.split('|');
    let (dir, round, at) = (
        Path::new(parts.next().unwrap()),
        parts.next().unwrap().parse::<u64>().unwrap(),
        parts.next().unwrap().parse::<u64>().unwrap(),
    );
    let store = Store::open(dir).unwrap();
    store.set_auto_maintenance(false);
    // libtest printed "test … " without a newline.
    println!();
    for n in 0..COMMITS {
        let seed = 100_000 + round * 100 + n;
        let name = format!("r{round}n{n}");
        make_image(&store, &name, &files(seed, 0, 2));
        println!("TAG {name} {seed}");
    }
    drop(store);
    let copy = dir.with_extension(format!("count{round}"));
    copy_dir(dir, &copy);
    let counting = Store::open(&copy).unwrap();
    layerstore::fault::arm(&copy, 0, 0);
    counting.maintain(true).unwrap();
    let (sites, _) = layerstore::fault::disarm(&copy);
    drop(counting);
    std::fs::remove_dir_all(&copy).unwrap();
    println!("RUN {sites}");
    let store = Store::open(dir).unwrap();
    layerstore::fault::arm_kill(dir, 1 + at * sites / 1000);
    store.maintain(true).unwrap();
    panic!(
        "maintenance reached fewer than {} write sites",
        1 + at * sites / 1000
    );
}

#[test]
fn a_killed_maintenance_leaves_a_valid_store() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = new_store(dir.path());
    drop(store);
    let seed = test_seed("killed maintenance", 0x5eed_3a1e);
    let mut rng = Rng::new(seed);
    let mut tagged: Vec<(String, u64)> = Vec::new();
    for round in 0..ROUNDS {
        let at = rng.below(1000);
        let when = format!("seed {seed} round {round} (kill at {at}/1000 of the write sites)");
        let out = child(
            "crash_maintain::child_commit_and_maintain",
            &format!("{}|{round}|{at}", path.display()),
        )
        .output()
        .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert_eq!(
            out.status.signal(),
            Some(9),
            "{when}: the child was not killed\n{stdout}\n{stderr}"
        );
        let mut running = false;
        for line in stdout.lines() {
            if let Some(rest) = line.strip_prefix("TAG ") {
                let (name, seed) = rest.split_once(' ').unwrap();
                tagged.push((name.to_owned(), seed.parse().unwrap()));
            } else if line.starts_with("RUN ") {
                running = true;
            }
        }
        assert!(running, "{when}: killed outside maintenance\n{stdout}");
        let site = stderr
            .lines()
            .find_map(|l| l.strip_prefix("fault: killed at write site "))
            .unwrap_or_else(|| panic!("{when}: no kill reported\n{stderr}"));
        eprintln!("{when}: killed at {site}");

        let store = Store::open(&path).unwrap_or_else(|e| panic!("{when}: open: {e}"));
        let report = store.fsck(&FsckOptions::default()).unwrap();
        assert!(report.is_clean(), "{when}: {:#?}", report.problems);
        for (name, seed) in &tagged {
            let id = store
                .tag(&name.parse().unwrap())
                .unwrap()
                .unwrap_or_else(|| panic!("{when}: tag {name} lost"));
            assert_image(&store, &id, &files(*seed, 0, 2));
        }
    }
    // Maintenance not killed finishes the work: few indexed packs, every
    // image there; gc then removes the packs whose index a kill removed.
    let store = Store::open(&path).unwrap();
    store.maintain(true).unwrap();
    let report = store.fsck(&FsckOptions::default()).unwrap();
    assert!(report.is_clean(), "{:#?}", report.problems);
    let indexed = packs_with(&path, ".idx").len();
    assert!(
        indexed < 16,
        "{indexed} indexed packs after {} commits and maintenance",
        tagged.len()
    );
    // With a wait: a process another test of this binary is starting may
    // hold, until its exec, a copy of an earlier handle (and its shared lock).
    store
        .gc(&GcOptions::default().lock_timeout(std::time::Duration::from_secs(10)))
        .unwrap();
    let packs = packs_with(&path, ".pack").len();
    assert!(packs < 16, "{packs} packs after gc");
    for (name, seed) in &tagged {
        let id = store.tag(&name.parse().unwrap()).unwrap().unwrap();
        assert_image(&store, &id, &files(*seed, 0, 2));
    }
}

/// Child side: opens the store at the given path, arms a kill at the given
/// write site and folds the recent packs into the combined index
/// (`Store::maintain(false)`); prints `DONE` if it was not killed.
#[test]
#[ignore = "child process of a_killed_index_rewrite_leaves_a_valid_store"]
fn child_fold() {
    let Some(arg) = child_arg() else { return };
    let (dir, nth) = arg.split_once('|').unwrap();
    let dir = Path::new(dir);
    let store = Store::open(dir).unwrap();
    store.set_auto_maintenance(false);
    layerstore::fault::arm_kill(dir, nth.parse().unwrap());
    store.maintain(false).unwrap();
    println!();
    println!("DONE");
}

/// A kill at each write site of a rewrite of the combined index (one that
/// folds 7 recent packs into one over 10 others) leaves a store that opens,
/// that fsck finds clean, where every tagged image reads back, and where
/// the next maintenance writes a combined index over every pack.
#[test]
fn a_killed_index_rewrite_leaves_a_valid_store() {
    let dir = tempfile::tempdir().unwrap();
    let (store, template) = new_store(dir.path());
    store.set_auto_maintenance(false);
    let mut tagged = Vec::new();
    for n in 0..17 {
        let name = format!("i{n}");
        let content = files(300 + n, 0, 2);
        make_image(&store, &name, &content);
        tagged.push((name, content));
        if n == 9 {
            store.maintain(false).unwrap();
        }
    }
    drop(store);
    let mut killed = 0;
    for nth in 1u64.. {
        assert!(nth < 50, "the rewrite never ran out of write sites");
        let run = copy_dir(&template, &dir.path().join(format!("run{nth}")));
        let out = child(
            "crash_maintain::child_fold",
            &format!("{}|{nth}", run.display()),
        )
        .output()
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stdout.lines().any(|l| l == "DONE") {
            assert!(out.status.success(), "{stdout}\n{stderr}");
            break;
        }
        let when = format!("fold killed at write site {nth}");
        assert_eq!(
            out.status.signal(),
            Some(9),
            "{when}: the child was not killed\n{stdout}\n{stderr}"
        );
        assert!(
            stderr.contains(&format!("fault: killed at write site {nth}: ")),
            "{when}: {stderr}"
        );
        killed += 1;
        let store = Store::open(&run).unwrap_or_else(|e| panic!("{when}: open: {e}"));
        let report = store.fsck(&FsckOptions::default()).unwrap();
        assert!(report.is_clean(), "{when}: {:#?}", report.problems);
        for (name, content) in &tagged {
            let id = store
                .tag(&name.parse().unwrap())
                .unwrap()
                .unwrap_or_else(|| panic!("{when}: tag {name} lost"));
            assert_image(&store, &id, content);
        }
        store.maintain(false).unwrap();
        let bytes = std::fs::read(run.join("packs/combined.midx")).unwrap();
        let covered = u32::from_le_bytes(bytes[12..16].try_into().unwrap());
        assert_eq!(covered, 17, "{when}: packs in the combined index");
        drop(store);
        std::fs::remove_dir_all(&run).unwrap();
    }
    assert!(killed >= 3, "only {killed} write sites in a rewrite");
    eprintln!("killed a fold at each of its {killed} write sites");
}
