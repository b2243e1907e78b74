//! Concurrency soak with kills: gc runs in a loop while two other processes
//! commit, tag and untag (every commit, tag and untag its own short-lived
//! CLI process), and a fourth serves a lazy FUSE view (`mount --backend
//! fuse`, as root) whose files a reader reads again and again, each time
//! from the server (the page cache dropped for the file first), comparing
//! them with the source, all at once; and every kind of participant is
//! killed (`SIGKILL`) now and then: commits, tags, untags, gcs and the server. Then
//! every tag must check out to exactly the tree committed under it, and
//! fsck must be clean.
//!
//! Each gc pauses between its walk and its sweep ([`GC_PAUSE_MS`]) while the
//! writers go on, and the writers commit trees that were garbage at times
//! ([`SOURCES`]): they deduplicate against chunks a gc found dead, which only
//! their leases keep (`store::lease`); a gc that ignored them would lose
//! those chunks and fail the soak. No command may be refused for a lock.
//!
//! The kills are placed, not timed. A writer's or gc's CLI process is armed
//! (`LAYERSTORE_FAULT_KILL`, feature `fault-injection`) to kill itself just
//! before its Nth write, fsync, rename or removal in the store, N drawn from
//! the seeded generator up to the write sites the last finished run of that
//! kind reached; an armed run that finishes first (it had fewer sites) is an
//! ordinary run, and a later one is armed instead. What is asserted holds
//! however the runs interleave:
//! - a killed commit or tag: its tag may exist or not; if it exists it checks
//!   out to exactly its source (checked at once), and is kept from then on as
//!   an acknowledged one;
//! - a killed untag: the tag is gone or still checks out to its source (then
//!   it is untagged again);
//! - a killed gc (in its walk, its intent, its deletions or its rewrites):
//!   the next gc succeeds;
//! - every command that returned success is acknowledged: its tag, unless
//!   untagged since, checks out identical at the end.
//!
//! The server is killed ([`SERVER_KILLS`] times) after the reader has read
//! the view whole a drawn number of times through it, and a drawn delay
//! later (mid-pass), then served again with `mount served VIEW`, which
//! clears the dead mount. A read that returns data must equal the source,
//! whenever it happens; a read that fails while the server is down or being
//! served again (`ENOTCONN`, `ECONNABORTED`, or `ENOENT` while the dead mount
//! is cleared) counts as refused; any other failure, or one while the server
//! is up (`EIO` above all, which would mean damage), fails the soak. At the
//! end the view is read whole once more, `umount served` must end the server
//! and leave nothing mounted.
//!
//! The soak is bounded by work, not time: each writer commits until it has
//! made `LAYERSTORE_SOAK_COMMITS` commits (default [`COMMITS`]) and landed
//! its kills ([`WRITER_KILLS`] of each of commit, tag and untag), gc runs
//! until it has finished [`GC_RUNS`] runs and landed [`GC_KILLS`] kills while
//! the writers work, and the server is killed [`SERVER_KILLS`] times; every
//! count of kills is multiplied by `LAYERSTORE_SOAK_COMMITS / COMMITS`
//! (rounded up). A long run: `LAYERSTORE_SOAK_COMMITS=11000` (10 to 13
//! minutes on 2 cores, debug build; figures in docs/RELIABILITY.md). A generous
//! wall-clock cap ([`CAP`], times the same factor) fails the test, saying
//! so, only if something hangs. The seed is printed; `LAYERSTORE_TEST_SEED`
//! replays the choices (what is armed where, the delays), not the
//! interleaving. Throughput belongs to the benchmarks.
//!
//! Without `fault-injection` the CLI cannot kill itself: only the server is
//! killed then.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::common::{Rng, test_seed};
use super::containers::{kill_and_wait, server_pid};
use super::crash::{checkout_hash, cli, make_tree, run_armed, tree_hash};
use super::{layerstore, ok};

/// Commits each writer makes by default (`LAYERSTORE_SOAK_COMMITS`).
const COMMITS: usize = 250;

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

/// Kills each writer lands of each of its kinds (commit, tag, untag), per
/// [`COMMITS`] commits.
const WRITER_KILLS: usize = 6;

/// Kills of gc processes, per [`COMMITS`] commits a writer.
const GC_KILLS: usize = 16;

/// Kills of the FUSE server, per [`COMMITS`] commits a writer.
const SERVER_KILLS: usize = 10;

/// Time after which the soak counts as hung, per [`COMMITS`] commits a writer.
const CAP: Duration = Duration::from_secs(300);

/// Whether the CLI can kill itself at a write site.
const FAULTS: bool = cfg!(feature = "fault-injection");

/// The kinds of a writer's CLI processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Commit,
    Tag,
    Untag,
}

/// What the participants share: gc runs finished, participants still short
/// of their work, whether all are done but the reader, and whether the cap
/// was passed.
struct Progress {
    gc_done: AtomicUsize,
    writers_short: AtomicUsize,
    finished: AtomicBool,
    hung: AtomicBool,
    failed: AtomicBool,
    cap: Instant,
}

impl Progress {
    /// Whether the cap is passed (and then says so for everyone), or a
    /// participant failed: either stops them all.
    fn past_cap(&self) -> bool {
        if Instant::now() > self.cap {
            self.hung.store(true, Ordering::SeqCst);
        }
        self.hung.load(Ordering::SeqCst) || self.failed.load(Ordering::SeqCst)
    }
}

/// Held by each participant: if it fails (panics), the others stop at once
/// instead of waiting for it until the cap.
struct StopOthers<'a>(&'a Progress);

impl Drop for StopOthers<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.failed.store(true, Ordering::SeqCst);
        }
    }
}

/// A CLI run: finished (with its output), or killed at a write site.
enum Ran {
    Done(Output),
    Killed,
}

/// What one writer did: its live tags (tag → tree) and counts.
#[derive(Default, Debug)]
struct Writer {
    tags: BTreeMap<String, usize>,
    commits: usize,
    tagged: usize,
    untags: usize,
    /// Kills landed, by kind.
    kills: BTreeMap<Kind, usize>,
    /// Killed commits and tags whose tag was there afterwards (and checked
    /// out identical), and killed untags whose tag was still there.
    survived: usize,
    /// Live tags checked out (and compared) while gc and the other writer ran.
    checked: usize,
    /// Commands refused for a lock (`Error::Locked`), retried: none may be.
    locked: usize,
    /// The write sites the last finished run of each kind reached.
    sites: BTreeMap<Kind, u64>,
}

/// Whether a finished run was refused for gc holding the lock.
fn refused_for_lock(out: &Output) -> bool {
    out.status.code() == Some(3) && String::from_utf8_lossy(&out.stderr).contains("locked")
}

/// Runs the CLI with `args` (and `env`), armed to kill itself just before
/// its `kill_at`th write site in the store (`0`: never), until it is not
/// refused for a lock (counted in `locked`); records in `sites` the write
/// sites it reached if it finished. Fails if refused until the cap.
fn run(
    store: &Path,
    args: &[&str],
    env: Option<(&str, &str)>,
    kill_at: u64,
    sites: &mut u64,
    locked: &mut usize,
    progress: &Progress,
) -> Ran {
    loop {
        assert!(
            !progress.past_cap(),
            "the soak hung: `{}` refused {locked} times until the cap had passed",
            args.join(" ")
        );
        let mut cmd = cli(store);
        cmd.args(args);
        if let Some((key, value)) = &env {
            cmd.env(key, value);
        }
        let (out, reached) = run_armed(cmd, store, kill_at);
        if out.status.signal() == Some(9) {
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("fault: killed at write site"),
                "`{}` died of SIGKILL not at its armed site: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
            return Ran::Killed;
        }
        if refused_for_lock(&out) {
            *locked += 1;
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        *sites = reached.unwrap_or(*sites);
        return Ran::Done(out);
    }
}

/// `out` of `args` succeeded, else fails naming the command, with what
/// fsck says of the store then.
fn done(store: &Path, out: &Output, args: &[&str]) {
    if out.status.success() {
        return;
    }
    let fsck = layerstore(store, &["fsck"]);
    panic!(
        "`layerstore {}` exit {:?}: {}\nfsck then: {}",
        args.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&fsck.stdout)
    );
}

/// Runs the CLI unarmed (see [`run`]); its output.
fn run_retrying(store: &Path, args: &[&str], locked: &mut usize, progress: &Progress) -> Output {
    match run(store, args, None, 0, &mut 0, locked, progress) {
        Ran::Done(out) => out,
        Ran::Killed => unreachable!("an unarmed run killed at a write site"),
    }
}

/// Where to kill the next run of a kind: `0` (not at all) unless kills of it
/// are still `left` and its write sites are known; else, one time in
/// `one_in`, a site drawn up to `sites`. `one_in` spreads the kills
/// over the soak: about half the runs of the kind it expects divided by the
/// kills to land.
fn arm(rng: &mut Rng, left: usize, sites: u64, one_in: usize) -> u64 {
    if !FAULTS || left == 0 || sites == 0 || rng.below(one_in.max(1) as u64) != 0 {
        return 0;
    }
    1 + rng.below(sites)
}

/// One writer's setting.
struct Setting<'a> {
    seed: u64,
    commits: usize,
    /// Kills to land of each kind.
    kills: usize,
    store: &'a Path,
    sources: &'a [PathBuf],
    hashes: &'a [blake3::Hash],
    scratch: &'a Path,
    progress: &'a Progress,
}

impl Setting<'_> {
    /// Checks out `tag` (after a killed command on it): whether it exists;
    /// if it does, it must be tree `k`.
    fn resolve(&self, w: u64, me: &mut Writer, tag: &str, k: usize, what: &str) -> bool {
        let dest = self.scratch.join(format!("verify-w{w}"));
        let _ = std::fs::remove_dir_all(&dest);
        let out = run_retrying(
            self.store,
            &["checkout", tag, dest.to_str().unwrap()],
            &mut me.locked,
            self.progress,
        );
        if out.status.success() {
            assert!(
                tree_hash(&dest) == self.hashes[k],
                "writer {w}: {tag} checks out differently after a killed {what}"
            );
            return true;
        }
        assert!(
            out.status.code() == Some(2)
                && String::from_utf8_lossy(&out.stderr).contains("no such tag"),
            "writer {w}: checkout {tag} after a killed {what}: exit {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        false
    }
}

/// One writer at work: its setting, its generator, what it did, the write
/// sites of its last finished run of each kind, its live tags oldest first.
struct WriterRun<'a> {
    w: u64,
    set: &'a Setting<'a>,
    rng: Rng,
    me: Writer,
    order: Vec<String>,
    n: usize,
    /// See [`arm`]: a commit and an untag a round, a tag one round in three.
    spread: usize,
}

impl WriterRun<'_> {
    /// Kills of `kind` still to land.
    fn left(&self, kind: Kind) -> usize {
        if FAULTS {
            self.set
                .kills
                .saturating_sub(self.me.kills.get(&kind).copied().unwrap_or(0))
        } else {
            0
        }
    }

    /// A new tag name of this writer.
    fn next_tag(&mut self) -> String {
        self.n += 1;
        format!("w{}:{}", self.w, self.n - 1)
    }

    /// Runs `args`, a run of `kind`, armed now and then (see [`arm`]);
    /// counts a kill.
    fn armed(&mut self, kind: Kind, args: &[&str], one_in: usize) -> Ran {
        let left = self.left(kind);
        let seen = self.me.sites.entry(kind).or_default();
        let kill_at = arm(&mut self.rng, left, *seen, one_in);
        let ran = run(
            self.set.store,
            args,
            None,
            kill_at,
            seen,
            &mut self.me.locked,
            self.set.progress,
        );
        if matches!(ran, Ran::Killed) {
            *self.me.kills.entry(kind).or_default() += 1;
        }
        ran
    }

    /// Runs `args` (a commit or a tag) that makes `tag`, of tree `k`: kept
    /// as a live tag if it returned, or if it was killed and the tag is
    /// there (and checks out as tree `k`).
    fn make_tag(&mut self, kind: Kind, args: &[&str], tag: String, k: usize, one_in: usize) {
        let kept = match self.armed(kind, args, one_in) {
            Ran::Done(out) => {
                done(self.set.store, &out, args);
                true
            }
            Ran::Killed => {
                let what = format!("{kind:?}").to_lowercase();
                let there = self.set.resolve(self.w, &mut self.me, &tag, k, &what);
                self.me.survived += usize::from(there);
                there
            }
        };
        if kept {
            self.me.tags.insert(tag.clone(), k);
            self.order.push(tag);
        }
    }

    /// Untags the oldest live tag; if that is killed, the tag is gone or
    /// still checks out as its tree (then it is untagged again).
    fn untag_oldest(&mut self) {
        let old = self.order.remove(0);
        let k = self.me.tags[&old];
        let args = ["untag", old.as_str()];
        match self.armed(Kind::Untag, &args, self.spread) {
            Ran::Done(out) => done(self.set.store, &out, &args),
            Ran::Killed => {
                if self.set.resolve(self.w, &mut self.me, &old, k, "untag") {
                    self.me.survived += 1;
                    let out = run_retrying(
                        self.set.store,
                        &args,
                        &mut self.me.locked,
                        self.set.progress,
                    );
                    done(self.set.store, &out, &args);
                }
            }
        }
        self.me.tags.remove(&old);
        self.me.untags += 1;
    }

    /// One round: a commit, maybe a tag, the untags, maybe a check.
    fn round(&mut self) {
        let set = self.set;
        let k = self.rng.below(set.sources.len() as u64) as usize;
        let tag = self.next_tag();
        let src = set.sources[k].to_str().unwrap();
        let parent = self.order.last().cloned();
        let mut args = vec!["commit", src, "--tag", &tag];
        if let Some(parent) = &parent
            && self.rng.below(2) == 0
        {
            args.extend(["--parent", parent.as_str()]);
        }
        self.make_tag(Kind::Commit, &args, tag.clone(), k, self.spread);
        self.me.commits += 1;

        if self.rng.below(3) == 0 && !self.order.is_empty() {
            let from = self.order[self.rng.below(self.order.len() as u64) as usize].clone();
            let k = self.me.tags[&from];
            let tag = self.next_tag();
            let args = ["tag", from.as_str(), tag.as_str()];
            self.make_tag(Kind::Tag, &args, tag.clone(), k, self.spread / 3);
            self.me.tagged += 1;
        }

        while self.order.len() > 4 {
            self.untag_oldest();
        }

        if self.rng.below(3) == 0 && !self.order.is_empty() {
            let tag = self.order[self.rng.below(self.order.len() as u64) as usize].clone();
            let k = self.me.tags[&tag];
            assert!(
                set.resolve(self.w, &mut self.me, &tag, k, "nothing"),
                "writer {}: {tag} lost during the soak",
                self.w
            );
            self.me.checked += 1;
        }
        std::thread::sleep(Duration::from_micros(self.rng.below(20_000)));
    }
}

/// Writer `w`: commits a random source tree under a new tag `w<w>:<n>`,
/// sometimes on the parent of its previous tag; one round in three also
/// tags one of its live tags anew; keeps its last four tags and untags
/// older ones (garbage for gc); one round in three checks out one of its
/// live tags and compares it with its source; pauses 0 to 20 ms between
/// rounds. Commits, tags and untags are armed now and then (see [`arm`]); a
/// killed one is settled at once (see the module). Stops once it made
/// `commits` commits, landed its kills and gc finished [`GC_RUNS`] runs.
fn writer(w: u64, set: &Setting<'_>) -> Writer {
    let progress = set.progress;
    let mut run = WriterRun {
        w,
        set,
        rng: Rng::new(set.seed + w),
        me: Writer::default(),
        order: Vec::new(),
        n: 0,
        spread: set.commits / set.kills.max(1) / 2,
    };
    let mut short = true;
    while (short || progress.gc_done.load(Ordering::SeqCst) < GC_RUNS) && !progress.past_cap() {
        run.round();
        if short
            && run.me.commits >= set.commits
            && [Kind::Commit, Kind::Tag, Kind::Untag]
                .iter()
                .all(|&kind| run.left(kind) == 0)
        {
            short = false;
            progress.writers_short.fetch_sub(1, Ordering::SeqCst);
        }
    }
    run.me
}

/// What the gc loop did.
#[derive(Debug, Default)]
struct Gcs {
    done: usize,
    /// Runs refused for a lock.
    timed_out: usize,
    killed: usize,
    /// Stale leases (of killed or ended processes) removed.
    leases_removed: u64,
    /// The write sites the last finished gc reached.
    sites: u64,
}

/// Runs gc (pausing between walk and sweep), now and then armed to kill
/// itself at a drawn write site, until it has run [`GC_RUNS`] times, landed
/// `kills` kills and the writers are done. The run after a killed one must
/// succeed like any other.
fn gc_loop(store: &Path, seed: u64, commits: usize, kills: usize, progress: &Progress) -> Gcs {
    let mut rng = Rng::new(seed ^ 0x6c0f_f1ce);
    let mut gcs = Gcs::default();
    let kills = if FAULTS { kills } else { 0 };
    // About as many gc runs as commits a writer makes.
    let spread = commits / kills.max(1) / 2;
    let pause = format!("gc-walked:{GC_PAUSE_MS}");
    while (gcs.done < GC_RUNS
        || gcs.killed < kills
        || progress.writers_short.load(Ordering::SeqCst) > 0)
        && !progress.past_cap()
    {
        let kill_at = arm(&mut rng, kills - gcs.killed, gcs.sites, spread);
        let mut locked = 0;
        let ran = run(
            store,
            &["--json", "gc", "--wait", "5"],
            Some(("LAYERSTORE_FAULT_PAUSE", &pause)),
            kill_at,
            &mut gcs.sites,
            &mut locked,
            progress,
        );
        gcs.timed_out += locked;
        match ran {
            Ran::Killed => gcs.killed += 1,
            Ran::Done(out) => {
                let report: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
                gcs.leases_removed += report["leases_removed"].as_u64().unwrap();
                gcs.done += 1;
                progress.gc_done.store(gcs.done, Ordering::SeqCst);
            }
        }
    }
    gcs
}

/// The served view's state, shared by the reader and the server's killer.
#[derive(Default)]
struct Served {
    /// Kills of the server so far: a read that failed while this moved was
    /// cut off by a kill.
    epoch: AtomicU64,
    /// The server is killed and not yet served again.
    down: AtomicBool,
    /// Whole passes the reader completed on the current server.
    passes_up: AtomicUsize,
}

/// What the reader did.
#[derive(Debug, Default)]
struct Reads {
    /// Files read, each identical to its source.
    correct: usize,
    /// Reads refused because the server was down.
    refused: usize,
    /// Passes over every file, and those with no read refused.
    passes: usize,
    whole: usize,
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

/// Kills the server `kills` times, each after the reader completed a drawn
/// number (1 to 12) of whole passes through it and a drawn delay (0 to
/// 150 ms) more, and serves the view again (`mount served VIEW`) a drawn
/// delay (0 to 50 ms) later; the kills.
fn kill_server(
    store: &Path,
    view: &Path,
    seed: u64,
    kills: usize,
    served: &Served,
    progress: &Progress,
) -> usize {
    let mut rng = Rng::new(seed ^ 0x5e4e_4e4e);
    let mut done = 0;
    let mut locked = 0;
    while done < kills && !progress.past_cap() {
        let passes = 1 + rng.below(12) as usize;
        while served.passes_up.load(Ordering::SeqCst) < passes {
            if progress.past_cap() {
                return done;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(rng.below(150)));
        let pid = server_pid(store, "served");
        served.down.store(true, Ordering::SeqCst);
        served.epoch.fetch_add(1, Ordering::SeqCst);
        kill_and_wait(pid);
        done += 1;
        std::thread::sleep(Duration::from_millis(rng.below(50)));
        ok(&run_retrying(
            store,
            &["mount", "served", view.to_str().unwrap()],
            &mut locked,
            progress,
        ));
        served.passes_up.store(0, Ordering::SeqCst);
        served.down.store(false, Ordering::SeqCst);
    }
    assert_eq!(locked, 0, "serving the view again was refused for a lock");
    done
}

/// The files of the tree at `source`, relative to it.
fn files_of(source: &Path) -> Vec<PathBuf> {
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
    files
}

/// Reads `path` whole from its server (its pages dropped from the page
/// cache first).
fn read_through(path: &Path) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed)?;
    std::io::Read::bytes(file).collect()
}

/// Whether a failed read is what a killed server gives: `ENOTCONN`,
/// `ECONNABORTED` (a request the kernel had queued when the connection was
/// aborted), or `ENOENT` (the mount point while the dead mount is cleared).
fn server_gone(err: &std::io::Error) -> bool {
    use rustix::io::Errno;
    [Errno::NOTCONN, Errno::CONNABORTED, Errno::NOENT]
        .iter()
        .any(|e| err.raw_os_error() == Some(e.raw_os_error()))
}

/// Reads every file of the served view again and again until everything
/// else is done, each from the server, comparing it with the source (see
/// the module for what may fail).
fn read_served(source: &Path, view: &Path, served: &Served, progress: &Progress) -> Reads {
    let files = files_of(source);
    let mut reads = Reads::default();
    while !progress.finished.load(Ordering::SeqCst) && !progress.past_cap() {
        let pass_epoch = served.epoch.load(Ordering::SeqCst);
        let pass_up = !served.down.load(Ordering::SeqCst);
        let mut whole = true;
        for rel in &files {
            let epoch = served.epoch.load(Ordering::SeqCst);
            let down = served.down.load(Ordering::SeqCst);
            match read_through(&view.join(rel)) {
                Ok(got) => {
                    assert!(
                        got == std::fs::read(source.join(rel)).unwrap(),
                        "{} read through the served view differs from its source",
                        rel.display()
                    );
                    reads.correct += 1;
                }
                Err(err) => {
                    let cut = down
                        || served.down.load(Ordering::SeqCst)
                        || served.epoch.load(Ordering::SeqCst) != epoch;
                    assert!(
                        cut && server_gone(&err),
                        "{} read through the served view failed {}: {err}",
                        rel.display(),
                        if cut {
                            "while the server was down"
                        } else {
                            "while the server was up"
                        }
                    );
                    reads.refused += 1;
                    whole = false;
                    // No spinning while the server is served again.
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        reads.passes += 1;
        if whole {
            reads.whole += 1;
            if pass_up && served.epoch.load(Ordering::SeqCst) == pass_epoch {
                served.passes_up.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    reads
}

#[test]
fn gc_in_a_loop_while_two_processes_commit_and_tag() {
    let commits: usize = std::env::var("LAYERSTORE_SOAK_COMMITS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(COMMITS);
    let scale = commits.div_ceil(COMMITS).max(1);
    let seed = test_seed("soak", 0x5eed);
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
    let server_kills = if serving { SERVER_KILLS * scale } else { 0 };

    let started = Instant::now();
    let progress = Progress {
        gc_done: AtomicUsize::new(0),
        writers_short: AtomicUsize::new(2),
        finished: AtomicBool::new(false),
        hung: AtomicBool::new(false),
        failed: AtomicBool::new(false),
        cap: started + CAP * u32::try_from(scale).unwrap(),
    };
    let served = Served::default();
    let set = Setting {
        seed,
        commits,
        kills: WRITER_KILLS * scale,
        store: &store,
        sources: &sources,
        hashes: &hashes,
        scratch: dir.path(),
        progress: &progress,
    };
    let (writers, gcs, server_killed, reads) = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..2)
            .map(|w| {
                let set = &set;
                scope.spawn(move || {
                    let _stop = StopOthers(set.progress);
                    writer(w, set)
                })
            })
            .collect();
        let gc = scope.spawn(|| {
            let _stop = StopOthers(&progress);
            gc_loop(&store, seed, commits, GC_KILLS * scale, &progress)
        });
        let reader = serving.then(|| {
            scope.spawn(|| {
                let _stop = StopOthers(&progress);
                read_served(&served_src, &view, &served, &progress)
            })
        });
        let killer = serving.then(|| {
            scope.spawn(|| {
                let _stop = StopOthers(&progress);
                kill_server(&store, &view, seed, server_kills, &served, &progress)
            })
        });
        let writers: Vec<Writer> = writers.into_iter().map(|h| h.join().unwrap()).collect();
        let gcs = gc.join().unwrap();
        let server_killed = killer.map_or(0, |k| k.join().unwrap());
        progress.finished.store(true, Ordering::SeqCst);
        let reads = reader.map(|r| r.join().unwrap()).unwrap_or_default();
        (writers, gcs, server_killed, reads)
    });
    let elapsed = started.elapsed();
    assert!(
        !progress.hung.load(Ordering::SeqCst),
        "the soak hung: after the cap, writers {writers:?}, gc {gcs:?}, server killed \
         {server_killed} times, reads {reads:?} (wanted {commits} commits per writer and \
         {GC_RUNS} gc runs)"
    );

    if serving {
        end_serving(&store, &served_src, &view, mounts.path());
    }
    let checked = check_store(&store, dir.path(), &writers, &hashes, &served_src);
    let outcome = Outcome {
        writers,
        gcs,
        server_killed,
        reads,
    };
    outcome.report(elapsed, checked);
    outcome.assert_done(commits, set.kills, GC_KILLS * scale, server_kills, serving);
}

/// What the participants did.
struct Outcome {
    writers: Vec<Writer>,
    gcs: Gcs,
    server_killed: usize,
    reads: Reads,
}

impl Outcome {
    /// Kills of a writer's `kind`, both writers.
    fn killed(&self, kind: Kind) -> usize {
        self.writers
            .iter()
            .map(|w| w.kills.get(&kind).copied().unwrap_or(0))
            .sum()
    }

    /// The figures, on stderr.
    fn report(&self, elapsed: Duration, checked: usize) {
        let Self {
            writers,
            gcs,
            server_killed,
            reads,
        } = self;
        eprintln!(
            "soak {elapsed:.1?}: writers {writers:?}\n\
             gc {gcs:?}\n\
             kills: {} commits, {} tags, {} untags, {} gcs, {server_killed} servers\n\
             reads {reads:?}\n\
             {} commits, {} tags, {} untags; {checked} tags checked out identical; fsck clean",
            self.killed(Kind::Commit),
            self.killed(Kind::Tag),
            self.killed(Kind::Untag),
            gcs.killed,
            writers.iter().map(|w| w.commits).sum::<usize>(),
            writers.iter().map(|w| w.tagged).sum::<usize>(),
            writers.iter().map(|w| w.untags).sum::<usize>(),
        );
    }

    /// What the loops guarantee when nothing hung: the work and the kills
    /// done, and nobody waited for anybody's lock (gc ran beside the
    /// writers).
    fn assert_done(
        &self,
        commits: usize,
        writer_kills: usize,
        gc_kills: usize,
        server_kills: usize,
        serving: bool,
    ) {
        let Self {
            writers,
            gcs,
            server_killed,
            reads,
        } = self;
        assert!(gcs.done >= GC_RUNS, "{gcs:?}");
        assert!(writers.iter().all(|w| w.commits >= commits), "{writers:?}");
        if FAULTS {
            for kind in [Kind::Commit, Kind::Tag, Kind::Untag] {
                assert!(
                    self.killed(kind) >= 2 * writer_kills,
                    "{kind:?}: {writers:?}"
                );
            }
            assert!(gcs.killed >= gc_kills, "{gcs:?}");
        }
        assert_eq!(*server_killed, server_kills);
        if serving {
            assert!(reads.whole > 0, "the served view was never read whole");
        }
        assert_eq!(gcs.timed_out, 0, "a gc gave up waiting for a lock");
        assert!(writers.iter().all(|w| w.locked == 0), "{writers:?}");
    }
}

/// After the soak: the last server serves the whole view; then `umount`
/// ends it and leaves nothing mounted beneath `mounts` (the dead mounts were
/// cleared by the mounts that served the view again).
fn end_serving(store: &Path, served_src: &Path, view: &Path, mounts: &Path) {
    for rel in files_of(served_src) {
        assert!(
            read_through(&view.join(&rel)).unwrap()
                == std::fs::read(served_src.join(&rel)).unwrap(),
            "{} read through the served view after the soak",
            rel.display()
        );
    }
    let canonical = std::fs::canonicalize(view).unwrap();
    assert_eq!(
        super::common::mounts::mounts_beneath(mounts),
        [canonical],
        "mounted after the soak"
    );
    let pid = server_pid(store, "served");
    ok(&layerstore(store, &["umount", "served"]));
    let gone = Instant::now() + Duration::from_secs(10);
    while super::containers::alive(pid) && Instant::now() < gone {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        !super::containers::alive(pid),
        "the server outlived its umount"
    );
    assert_eq!(
        super::common::mounts::mounts_beneath(mounts),
        Vec::<PathBuf>::new(),
        "mounted after umount"
    );
}

/// After the soak: fsck is clean; a gc removes every lease the processes
/// left (the killed ones' included) and finds none live; every live tag
/// checks out as its tree. Returns the tags checked.
fn check_store(
    store: &Path,
    scratch: &Path,
    writers: &[Writer],
    hashes: &[blake3::Hash],
    served_src: &Path,
) -> usize {
    let fsck = layerstore(store, &["fsck"]);
    assert!(
        fsck.status.success(),
        "fsck after the soak: {}",
        String::from_utf8_lossy(&fsck.stdout)
    );
    let out = ok(&layerstore(store, &["--json", "gc"]));
    let last: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(last["leases_live"], 0, "{last}");
    let leases: Vec<_> = std::fs::read_dir(store.join("leases"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".lease"))
        .collect();
    assert!(
        leases.is_empty(),
        "leases left after the last gc: {leases:?}"
    );
    let mut checked = 0;
    for w in writers {
        for (tag, k) in &w.tags {
            let got = checkout_hash(store, tag, scratch);
            assert_eq!(got, Some(hashes[*k]), "tag {tag} after the soak");
            checked += 1;
        }
    }
    assert_eq!(
        checkout_hash(store, "served:v1", scratch),
        Some(tree_hash(served_src)),
        "served:v1 after the soak"
    );
    checked + 1
}
