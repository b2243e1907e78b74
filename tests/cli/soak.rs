//! Concurrency soak: gc runs in a loop while two other processes commit and
//! tag (every commit, tag and untag its own short-lived CLI process, since gc
//! needs the store alone and waits for a moment when no process has it
//! open). Then every tag must check out to exactly the tree committed under
//! it, and fsck must be clean.
//!
//! `LAYERSTORE_SOAK_SECS` sets how long the writers run (default 20).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::crash::{Rng, checkout_hash, make_tree, tree_hash};
use super::{layerstore, ok};

/// What one writer did: its live tags (tag → tree) and counts.
#[derive(Default, Debug)]
struct Writer {
    tags: BTreeMap<String, usize>,
    commits: usize,
    untags: usize,
    /// Live tags checked out (and compared) while gc and the other writer ran.
    checked: usize,
    /// Commands refused because gc held the store (`Error::Locked`), retried.
    locked: usize,
}

/// Runs the CLI until it is not refused for gc holding the lock; counts the
/// refusals.
fn run_retrying(store: &Path, args: &[&str], locked: &mut usize) -> std::process::Output {
    loop {
        let out = layerstore(store, args);
        if out.status.code() == Some(3) && String::from_utf8_lossy(&out.stderr).contains("locked") {
            *locked += 1;
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        return out;
    }
}

/// Writer `w`: commits a random source tree under a new tag `w<w>:<n>`,
/// sometimes on the parent of its previous tag; keeps its last four tags and
/// untags older ones (garbage for gc); every third round checks out one of
/// its live tags and compares it with its source; pauses 0 to 20 ms between
/// rounds.
fn writer(
    w: u64,
    store: &Path,
    sources: &[PathBuf],
    hashes: &[blake3::Hash],
    scratch: &Path,
    deadline: Instant,
) -> Writer {
    let mut rng = Rng::new(0x5eed + w);
    let mut me = Writer::default();
    let mut order: Vec<String> = Vec::new();
    let mut n = 0;
    while Instant::now() < deadline {
        let k = rng.below(sources.len() as u64) as usize;
        let tag = format!("w{w}:{n}");
        n += 1;
        let src = sources[k].to_str().unwrap();
        let mut args = vec!["commit", src, "--tag", &tag];
        let parent = order.last().cloned();
        if let Some(parent) = &parent
            && rng.below(2) == 0
        {
            args.extend(["--parent", parent.as_str()]);
        }
        ok(&run_retrying(store, &args, &mut me.locked));
        me.commits += 1;
        me.tags.insert(tag.clone(), k);
        order.push(tag);
        if order.len() > 4 {
            let old = order.remove(0);
            ok(&run_retrying(store, &["untag", &old], &mut me.locked));
            me.tags.remove(&old);
            me.untags += 1;
        }
        if rng.below(3) == 0 {
            let tag = &order[rng.below(order.len() as u64) as usize];
            let dest = scratch.join(format!("verify-w{w}"));
            let _ = std::fs::remove_dir_all(&dest);
            ok(&run_retrying(
                store,
                &["checkout", tag, dest.to_str().unwrap()],
                &mut me.locked,
            ));
            assert!(
                tree_hash(&dest) == hashes[me.tags[tag]],
                "writer {w}: {tag} checks out differently during the soak"
            );
            me.checked += 1;
        }
        std::thread::sleep(Duration::from_micros(rng.below(20_000)));
    }
    me
}

#[test]
fn gc_in_a_loop_while_two_processes_commit_and_tag() {
    let secs: u64 = std::env::var("LAYERSTORE_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    ok(&layerstore(&store, &["init"]));
    let sources: Vec<PathBuf> = (0..4)
        .map(|k| {
            let src = dir.path().join(format!("src{k}"));
            make_tree(&src, k);
            src
        })
        .collect();
    let hashes: Vec<blake3::Hash> = sources.iter().map(|s| tree_hash(s)).collect();

    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let (writers, gcs) = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..2)
            .map(|w| {
                let (store, sources, hashes, scratch) = (&store, &sources, &hashes, dir.path());
                scope.spawn(move || writer(w, store, sources, hashes, scratch, deadline))
            })
            .collect();
        let gc = scope.spawn(|| {
            let (mut done, mut timed_out) = (0, 0);
            while Instant::now() < deadline {
                let out = layerstore(&store, &["gc", "--wait", "5"]);
                match out.status.code() {
                    Some(0) => done += 1,
                    // Writers kept the store open for the whole wait.
                    Some(3) if String::from_utf8_lossy(&out.stderr).contains("locked") => {
                        timed_out += 1;
                    }
                    _ => {
                        ok(&out);
                    }
                }
            }
            (done, timed_out)
        });
        let writers: Vec<Writer> = writers.into_iter().map(|h| h.join().unwrap()).collect();
        (writers, gc.join().unwrap())
    });
    let elapsed = started.elapsed();

    let fsck = layerstore(&store, &["fsck"]);
    assert!(
        fsck.status.success(),
        "fsck after the soak: {}",
        String::from_utf8_lossy(&fsck.stdout)
    );
    let mut checked = 0;
    for w in &writers {
        for (tag, k) in &w.tags {
            let got = checkout_hash(&store, tag, dir.path());
            assert_eq!(got, Some(hashes[*k]), "tag {tag} (tree {k}) after the soak");
            checked += 1;
        }
    }
    eprintln!(
        "soak {elapsed:.1?}: writers {writers:?}; gc {} done, {} gave up waiting; {checked} tags checked out identical",
        gcs.0, gcs.1
    );
    assert!(gcs.0 >= 3, "gc never got the store: {gcs:?}");
    assert!(writers.iter().all(|w| w.commits >= 5), "{writers:?}");
}
