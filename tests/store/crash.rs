//! A writer killed with SIGKILL in the middle of its puts and flushes loses
//! nothing it had reported written (flushed), and the store stays openable and
//! fsck-clean.
//!
//! Each kill lands at a point of the work, not after a guessed time: after a
//! number of whole batches, the child arms `fault::arm_kill`, which kills it
//! just before its Nth write, fsync, rename or removal in the store; both
//! numbers are drawn from a seeded generator. The seed is printed;
//! `LAYERSTORE_TEST_SEED` replays a run.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;

use layerstore::{FsckOptions, Store};

use super::{child, child_arg, decode_list, encode_list, new_store, random_bytes, text_bytes};
use crate::common::{Rng, test_seed};

/// Kills: one per round.
const ROUNDS: u64 = 40;

/// Whole batches (of three pieces, then a flush) before the kill is armed,
/// drawn from `0..BATCHES`.
const BATCHES: u64 = 2;

/// The write site of the kill, counted from the arming, is drawn from
/// `1..=MAX_SITE` (a batch reaches about 20).
const MAX_SITE: u64 = 30;

fn piece(seed: u64) -> Vec<u8> {
    let len = (seed as usize * 7919) % 700_000;
    if seed.is_multiple_of(3) {
        text_bytes(len, seed)
    } else {
        random_bytes(len, seed)
    }
}

/// Child side: puts pieces forever in batches of three, reporting each after
/// the batch's flush; after `batches` batches, arms the kill at write site
/// `kill_at`.
#[test]
#[ignore = "child process of killed_writers_lose_nothing_reported"]
fn child_crash_writer() {
    let Some(arg) = child_arg() else { return };
    let mut parts = arg.split('|');
    let dir = parts.next().unwrap();
    let [start, batches, kill_at] = [(); 3].map(|()| parts.next().unwrap().parse::<u64>().unwrap());
    let store = Store::open(dir).unwrap();
    // libtest printed "test … " without a newline; start reports on a line of their own.
    println!();
    let mut seed = start;
    for batch in 0.. {
        if batch == batches {
            layerstore::fault::arm_kill(Path::new(dir), kill_at);
        }
        let mut pieces = Vec::new();
        for _ in 0..3 {
            pieces.push((seed, store.put_bytes(&piece(seed)).unwrap()));
            seed += 1;
        }
        store.flush().unwrap();
        for (seed, list) in pieces {
            println!("DONE {seed} {}", encode_list(&list));
        }
    }
}

#[test]
fn killed_writers_lose_nothing_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    drop(new_store(dir.path()));
    let seed = test_seed("killed writer", 0x5707_e5ee_d000_0001);
    let mut rng = Rng::new(seed);
    let mut reported = Vec::new();
    let mut next_seed = 1u64;
    let mut garbage = 0;
    for round in 0..ROUNDS {
        let batches = rng.below(BATCHES);
        let kill_at = 1 + rng.below(MAX_SITE);
        let when = format!(
            "seed {seed} round {round} ({batches} batches, then kill at write site {kill_at})"
        );
        let out = child(
            "crash::child_crash_writer",
            &format!("{}|{next_seed}|{batches}|{kill_at}", store_dir.display()),
        )
        .output()
        .unwrap();
        next_seed += 1000;
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert_eq!(
            out.status.signal(),
            Some(9),
            "{when}: the child was not killed\n{stderr}"
        );
        assert!(
            stderr.contains(&format!("fault: killed at write site {kill_at}: ")),
            "{when}: not killed at its site\n{stderr}"
        );
        let mut this_round = 0u64;
        for line in stdout.lines() {
            // The kill comes at a write site, never inside a report: every
            // line is whole.
            if let Some(rest) = line.strip_prefix("DONE ") {
                let (seed, list) = rest.split_once(' ').unwrap_or((rest, ""));
                let list = decode_list(list);
                let seed: u64 = seed.parse().unwrap();
                assert_eq!(
                    list.content_len(),
                    piece(seed).len() as u64,
                    "{when}: report of piece {seed}"
                );
                reported.push((seed, list));
                this_round += 1;
            }
        }
        assert!(
            this_round >= 3 * batches,
            "{when}: {this_round} pieces reported"
        );
        let store = Store::open(&store_dir).unwrap();
        // Opening alone cleaned what the killed writer left in tmp/.
        assert_eq!(std::fs::read_dir(store_dir.join("tmp")).unwrap().count(), 0);
        let report = store.fsck(&FsckOptions::default()).unwrap();
        assert!(report.is_clean(), "{when}: {:#?}", report.problems);
        garbage += usize::from(!report.garbage.is_empty());
        // This round's pieces now (the earlier ones were read back in their
        // rounds), every piece at the end.
        for (seed, list) in &reported[reported.len() - this_round as usize..] {
            assert_eq!(
                store.read_all(list).unwrap(),
                piece(*seed),
                "{when}: piece {seed} lost"
            );
        }
    }
    let store = Store::open(&store_dir).unwrap();
    for (seed, list) in &reported {
        assert_eq!(
            store.read_all(list).unwrap(),
            piece(*seed),
            "after {ROUNDS} kills: piece {seed} lost"
        );
    }
    eprintln!(
        "{ROUNDS} kills; {} pieces reported and read back; {garbage} kills left packs without index",
        reported.len()
    );
}
