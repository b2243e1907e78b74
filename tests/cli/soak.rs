//! Concurrency soak: gc runs in a loop while two other processes commit and
//! tag (every commit, tag and untag its own short-lived CLI process), and a
//! fourth serves a lazy FUSE view (`mount --backend fuse`, as root) whose
//! files a reader reads again and again, each time from the server (the
//! page cache dropped for the file first), comparing them with the source,
//! all at once: gc no longer needs the store alone, and repacks beneath a
//! server that has the store open. Then every tag must check out to
//! exactly the tree committed under it, and fsck must be clean. Each gc
//! pauses between its walk and its sweep ([`GC_PAUSE_MS`]) while the writers
//! go on, and the writers commit trees that were garbage at times
//! ([`SOURCES`]): they deduplicate against chunks a gc found dead, which only
//! their leases keep (`store::lease`); a gc that ignored them would lose
//! those chunks and fail the soak. No command may be refused for a lock.
//!
//! The soak is bounded by work, not time: the writers commit until each has
//! made `LAYERSTORE_SOAK_COMMITS` commits (default 150) and gc has finished
//! [`GC_RUNS`] runs while they work; gc runs until both hold. A generous
//! wall-clock cap ([`CAP`]) fails the test, saying so, only if something
//! hangs. The writers' seed is printed; `LAYERSTORE_TEST_SEED` replays their
//! choices (not the interleaving). Throughput belongs to the benchmarks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::common::{Rng, test_seed};
use super::crash::{checkout_hash, make_tree, tree_hash};
use super::{layerstore, ok};

/// Gc runs that must finish while the writers work.
const GC_RUNS: usize = 10;

/// Source trees the writers commit: more than the eight tags they keep, so
/// that what one commits was often garbage when gc walked (a tree untagged
/// earlier), and is stored again by deduplicating against chunks gc found
/// dead.
const SOURCES: u64 = 12;

/// How long each gc sleeps between its walk and its sweep (a test hook of
/// feature `fault-injection`): the writers commit meanwhile, deduplicating
/// against chunks the walk found dead; their leases must keep them.
const GC_PAUSE_MS: u64 = 40;

/// Time after which the soak counts as hung.
const CAP: Duration = Duration::from_secs(300);

/// What the participants share: gc runs finished, writers still under their
/// commit count, and whether the cap was passed.
struct Progress {
    gc_done: AtomicUsize,
    writers_short: AtomicUsize,
    hung: AtomicBool,
    cap: Instant,
}

impl Progress {
    /// Whether the cap is passed (and then says so for everyone).
    fn past_cap(&self) -> bool {
        if Instant::now() > self.cap {
            self.hung.store(true, Ordering::SeqCst);
        }
        self.hung.load(Ordering::SeqCst)
    }
}

/// What one writer did: its live tags (tag → tree) and counts.
#[derive(Default, Debug)]
struct Writer {
    tags: BTreeMap<String, usize>,
    commits: usize,
    untags: usize,
    /// Live tags checked out (and compared) while gc and the other writer ran.
    checked: usize,
    /// Commands refused for a lock (`Error::Locked`), retried: none may be.
    locked: usize,
}

/// Runs the CLI until it is not refused for gc holding the lock; counts the
/// refusals. Fails if refused until the cap.
fn run_retrying(
    store: &Path,
    args: &[&str],
    locked: &mut usize,
    progress: &Progress,
) -> std::process::Output {
    loop {
        assert!(
            !progress.past_cap(),
            "the soak hung: `{}` refused {locked} times until {CAP:?} had passed",
            args.join(" ")
        );
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
/// rounds. Stops once it made `commits` commits and gc finished
/// [`GC_RUNS`] runs.
#[allow(clippy::too_many_arguments, reason = "one writer's whole setting")]
fn writer(
    w: u64,
    seed: u64,
    commits: usize,
    store: &Path,
    sources: &[PathBuf],
    hashes: &[blake3::Hash],
    scratch: &Path,
    progress: &Progress,
) -> Writer {
    let mut rng = Rng::new(seed + w);
    let mut me = Writer::default();
    let mut order: Vec<String> = Vec::new();
    let mut n = 0;
    let mut short = true;
    while (short || progress.gc_done.load(Ordering::SeqCst) < GC_RUNS) && !progress.past_cap() {
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
        ok(&run_retrying(store, &args, &mut me.locked, progress));
        me.commits += 1;
        if short && me.commits >= commits {
            short = false;
            progress.writers_short.fetch_sub(1, Ordering::SeqCst);
        }
        me.tags.insert(tag.clone(), k);
        order.push(tag);
        if order.len() > 4 {
            let old = order.remove(0);
            ok(&run_retrying(
                store,
                &["untag", &old],
                &mut me.locked,
                progress,
            ));
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
                progress,
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
    let commits: usize = std::env::var("LAYERSTORE_SOAK_COMMITS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(150);
    let seed = test_seed("soak writers", 0x5eed);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    ok(&layerstore(&store, &["init"]));
    let sources: Vec<PathBuf> = (0..SOURCES)
        .map(|k| {
            let src = dir.path().join(format!("src{k}"));
            make_tree(&src, k);
            src
        })
        .collect();
    let hashes: Vec<blake3::Hash> = sources.iter().map(|s| tree_hash(s)).collect();

    let served_src = dir.path().join("served-src");
    let mounts = super::common::mounts::MountDir::new();
    let view = mounts.path().join("view");
    let serving = serve_view(&store, &served_src, &view);

    let started = Instant::now();
    let progress = Progress {
        gc_done: AtomicUsize::new(0),
        writers_short: AtomicUsize::new(2),
        hung: AtomicBool::new(false),
        cap: started + CAP,
    };
    let (writers, gcs) = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..2)
            .map(|w| {
                let (store, sources, hashes, scratch, progress) =
                    (&store, &sources, &hashes, dir.path(), &progress);
                scope.spawn(move || {
                    writer(w, seed, commits, store, sources, hashes, scratch, progress)
                })
            })
            .collect();
        let gc = scope.spawn(|| gc_loop(&store, &progress));
        let reader = serving.then(|| scope.spawn(|| read_served(&served_src, &view, &progress)));
        let writers: Vec<Writer> = writers.into_iter().map(|h| h.join().unwrap()).collect();
        let passes = reader.map_or(0, |r| r.join().unwrap());
        eprintln!("the served view was read whole {passes} times during the soak");
        if serving {
            assert!(passes > 0, "the served view was never read whole");
        }
        (writers, gc.join().unwrap())
    });
    if serving {
        ok(&layerstore(&store, &["umount", "served"]));
    }
    let elapsed = started.elapsed();
    assert!(
        !progress.hung.load(Ordering::SeqCst),
        "the soak hung: after {CAP:?}, writers {writers:?}, gc {} done, {} gave up waiting \
         (wanted {commits} commits per writer and {GC_RUNS} gc runs)",
        gcs.0,
        gcs.1
    );

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
            assert_eq!(got, Some(hashes[*k]), "tag {tag} after the soak");
            checked += 1;
        }
    }
    eprintln!(
        "soak {elapsed:.1?}: writers {writers:?}; gc {} done, {} gave up waiting; {checked} tags checked out identical",
        gcs.0, gcs.1
    );
    // What the loops guarantee when nothing hung.
    assert!(gcs.0 >= GC_RUNS, "{gcs:?}");
    assert!(writers.iter().all(|w| w.commits >= commits), "{writers:?}");
    // gc ran beside the writers: nobody waited for anybody's lock.
    assert_eq!(gcs.1, 0, "a gc gave up waiting for a lock");
    assert!(writers.iter().all(|w| w.locked == 0), "{writers:?}");
}

/// Runs gc (pausing between walk and sweep) until it has run [`GC_RUNS`]
/// times and the writers are done; its runs, and those refused for a lock.
fn gc_loop(store: &Path, progress: &Progress) -> (usize, usize) {
    let (mut done, mut timed_out) = (0, 0);
    while (done < GC_RUNS || progress.writers_short.load(Ordering::SeqCst) > 0)
        && !progress.past_cap()
    {
        let out = Command::new(env!("CARGO_BIN_EXE_layerstore"))
            .args(["--store".as_ref(), store.as_os_str()])
            .args(["gc", "--wait", "5"])
            .env("LAYERSTORE_FAULT_PAUSE", format!("gc-walked:{GC_PAUSE_MS}"))
            .output()
            .expect("run layerstore gc");
        match out.status.code() {
            Some(0) => {
                done += 1;
                progress.gc_done.store(done, Ordering::SeqCst);
            }
            // Refused for a lock (counted, and failed below).
            Some(3) if String::from_utf8_lossy(&out.stderr).contains("locked") => {
                timed_out += 1;
            }
            _ => {
                ok(&out);
            }
        }
    }
    (done, timed_out)
}

/// Commits `source` (a tree of its own) as `served:v1`, never untagged, and
/// serves it at `view` from a detached fuse server (container `served`), as
/// root; whether it does.
fn serve_view(store: &Path, source: &Path, view: &Path) -> bool {
    make_tree(source, 99);
    ok(&layerstore(
        store,
        &["commit", source.to_str().unwrap(), "--tag", "served:v1"],
    ));
    if !super::common::require_root("the soak's served FUSE view") {
        return false;
    }
    ok(&layerstore(
        store,
        &[
            "mount",
            "served:v1",
            view.to_str().unwrap(),
            "--backend",
            "fuse",
            "--read-only",
            "--name",
            "served",
        ],
    ));
    true
}

/// Reads every file of the served view again and again until the writers
/// and gc are done, each from the server (the file's pages dropped from the
/// page cache first), comparing it with the source; returns the passes.
fn read_served(source: &Path, view: &Path, progress: &Progress) -> usize {
    let mut files = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in std::fs::read_dir(source.join(&rel)).unwrap() {
            let entry = entry.unwrap();
            let rel = rel.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                stack.push(rel);
            } else if entry.file_type().unwrap().is_file() {
                files.push(rel);
            }
        }
    }
    let mut passes = 0;
    loop {
        let done = progress.writers_short.load(Ordering::SeqCst) == 0
            && progress.gc_done.load(Ordering::SeqCst) >= GC_RUNS;
        if (done && passes > 0) || progress.past_cap() {
            return passes;
        }
        for rel in &files {
            let file = std::fs::File::open(view.join(rel)).unwrap();
            rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
            let got = std::io::Read::bytes(file)
                .collect::<Result<Vec<u8>, _>>()
                .unwrap();
            assert!(
                got == std::fs::read(source.join(rel)).unwrap(),
                "{} read through the served view differs from its source",
                rel.display()
            );
        }
        passes += 1;
    }
}
