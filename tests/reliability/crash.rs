//! Garbage collection killed with SIGKILL inside a gc, at a write site drawn
//! from a seeded generator, leaves a store that fsck finds clean and whose
//! tagged images read back.
//!
//! Each kill lands at a point of the operation, not after a guessed time: the
//! child arms `fault::arm_kill` around each gc, which kills it just before
//! the gc's Nth write, fsync, rename or removal; a gc that finishes first
//! passes what is left of N on to the next. So every round is a kill inside
//! a gc, wherever the machine's speed. The seed is printed;
//! `LAYERSTORE_TEST_SEED` replays a run.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use layerstore::{FsckOptions, GcOptions, Store};

use super::{assert_image, child, child_arg, files, make_image, new_store, read_image};
use crate::common::{Rng, test_seed};

/// Kills: one per round.
const ROUNDS: u64 = 20;

/// The write site of the kill, counted over the child's gcs only, is drawn
/// from `1..=MAX_SITE` (a gc of the churn below reaches about 15 to 30: the
/// kill lands in the child's first to fourth gc).
const MAX_SITE: u64 = 60;

/// Child side: steps of churn (an image of files that stay and files that
/// go, written together so that they share packs, and an image of the files
/// that stay; every earlier churn image untagged), each followed by a gc
/// that rewrites every pack with anything dead in it, copying live chunks,
/// until the `kill_at`th write site of its gcs kills it. Prints `GC <step>`
/// as each gc starts and `DONE <step> <sites> <rewritten>` when it returns,
/// with the write sites it reached and the packs it rewrote.
#[test]
#[ignore = "child process of a_killed_gc_leaves_a_valid_store"]
fn child_gc_churn() {
    let Some(arg) = child_arg() else { return };
    let mut parts = arg.split('|');
    let (dir, round, kill_at) = (
        parts.next().unwrap(),
        parts.next().unwrap().parse::<u64>().unwrap(),
        parts.next().unwrap().parse::<u64>().unwrap(),
    );
    let store = Store::open(dir).unwrap();
    let options = GcOptions::default()
        .repack_dead_fraction(0.0)
        .lock_timeout(Duration::from_secs(10));
    // libtest printed "test … " without a newline.
    println!();
    let mut left = kill_at;
    for step in 0..50 {
        let n = round * 100 + step;
        // The churn image holds the files that stay too, so the packs its
        // files go to mix chunks that stay live with chunks that die once
        // it is untagged: the next gc rewrites them, copying live data.
        let stay = files(10_000 + n, 1, 6);
        let churn = format!("churn:{n}");
        let mut both = stay.clone();
        both.extend(
            files(20_000 + n, 2, 6)
                .into_iter()
                .map(|(name, bytes)| (format!("churn-{name}"), bytes)),
        );
        make_image(&store, &churn, &both);
        make_image(&store, &format!("stay:{n}"), &stay);
        for (tag, _) in store.tags().unwrap() {
            if tag.name() == "churn" && tag.to_string() != churn {
                store.remove_tag(&tag).unwrap();
            }
        }
        println!("GC {step}");
        layerstore::fault::arm_kill(std::path::Path::new(dir), left);
        let report = store.gc(&options).unwrap();
        let (seen, _) = layerstore::fault::disarm(std::path::Path::new(dir));
        println!("DONE {step} {seen} {}", report.packs_repacked);
        left -= seen;
    }
    panic!("50 gcs reached fewer than {kill_at} write sites");
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

    let seed = test_seed("killed gc", 0x9e37_79b9_7f4a_7c15);
    let mut rng = Rng::new(seed);
    let mut left_garbage = 0;
    // Kills inside a gc's deleting phase leave an odd generation and an
    // intent (`leases/`): the next rounds write beside them.
    let generation = |path: &std::path::Path| {
        std::fs::metadata(path.join("leases/gc.gen")).map_or(0, |m| m.len())
    };
    let mut left_deleting = 0;
    let mut gcs_finished = 0;
    let mut repacked = 0;
    for round in 0..ROUNDS {
        let kill_at = 1 + rng.below(MAX_SITE);
        let when = format!("seed {seed} round {round} (kill at gc write site {kill_at})");
        let out = child(
            "crash::child_gc_churn",
            &format!("{}|{round}|{kill_at}", path.display()),
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
        // The kill came inside the last gc started, at the drawn site: the
        // gcs before it finished having reached `kill_at - last` sites.
        let mut started = None;
        let mut reached = 0;
        for line in stdout.lines() {
            if let Some(step) = line.strip_prefix("GC ") {
                started = Some(step.to_owned());
            } else if let Some(rest) = line.strip_prefix("DONE ") {
                let [step, sites, rewritten] = rest.split(' ').collect::<Vec<_>>()[..] else {
                    panic!("{when}: {line}")
                };
                assert_eq!(Some(step), started.as_deref(), "{when}: {stdout}");
                reached += sites.parse::<u64>().unwrap();
                repacked += rewritten.parse::<u64>().unwrap();
                gcs_finished += 1;
                started = None;
            }
        }
        assert!(started.is_some(), "{when}: killed outside a gc\n{stdout}");
        let last = kill_at
            .checked_sub(reached)
            .unwrap_or_else(|| panic!("{when}: the gcs before the kill reached {reached} sites"));
        assert!(
            stderr.contains(&format!("fault: killed at write site {last}: ")),
            "{when}: not killed at its site {last} of the last gc\n{stdout}\n{stderr}"
        );

        let store = Store::open(&path).unwrap();
        let report = store.fsck(&FsckOptions::default()).unwrap();
        assert!(report.is_clean(), "{when}: {:#?}", report.problems);
        left_garbage += usize::from(!report.garbage.is_empty());
        left_deleting += usize::from(!generation(&path).is_multiple_of(2));
        assert_image(&store, &kept_id, &kept);
        for (tag, id) in store.tags().unwrap() {
            read_image(&store, &id).unwrap_or_else(|e| panic!("{when}: {tag}: {e}"));
        }
    }
    eprintln!(
        "{ROUNDS} kills, each inside a gc ({gcs_finished} gcs finished before them, \
         rewriting {repacked} packs), {left_garbage} leaving packs without index, \
         {left_deleting} inside the deleting phase (odd generation, intent left)"
    );
    // The kills land among rewrites of packs holding live chunks (a gc
    // that deleted replaced packs before their rewrites were durable would
    // lose those chunks), not only among deletions of dead packs.
    assert!(repacked > 0, "the finished gcs rewrote no pack");
    // A last gc, not killed, collects every leftover.
    // With a wait: a process another test of this binary is starting may
    // hold, until its exec, a copy of a round's handle (and its shared lock).
    let store = Store::open(&path).unwrap();
    store
        .gc(&GcOptions::default().lock_timeout(Duration::from_secs(10)))
        .unwrap();
    let report = store.fsck(&FsckOptions::default()).unwrap();
    assert!(
        report.is_clean() && report.garbage.is_empty(),
        "{report:#?}"
    );
    assert_image(&store, &kept_id, &kept);
    // And it ended any deleting phase a killed one left.
    assert!(generation(&path).is_multiple_of(2));
    assert!(!path.join("leases/gc.intent").exists());
}
