//! The crash harness: the CLI killed with SIGKILL at chosen points of
//! `commit`, `gc` and `checkout`. After each kill, `fsck` is clean (or
//! `fsck --repair` makes it clean), and every tag checks out to exactly the
//! tree that was committed under it: the tree of the last commit that
//! finished, or of the killed one if it got as far as the tag.
//!
//! Each kill lands at a point of the operation, not after a guessed time:
//! the CLI (built with `fault-injection`) reads `LAYERSTORE_FAULT_KILL` and
//! kills itself just before its Nth write, fsync, rename or removal under the
//! test's directory, N drawn from a seeded generator. Which runs are killed,
//! and at which count of write sites, follows from the seed alone, whatever
//! the machine's speed. The seed is
//! printed; `LAYERSTORE_TEST_SEED` replays a run. `LAYERSTORE_CRASH_KILLS`
//! sets how many kills to land (default 210), shared among the operations
//! as they are drawn: half commits, 30 % gc, 20 % checkouts.
// Without the feature only the helpers the soak shares are used.
#![cfg_attr(not(feature = "fault-injection"), allow(dead_code, unused_imports))]

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use super::common::{Rng, test_seed};
use super::{layerstore, ok};

/// Deterministic bytes: incompressible, or text-like when `text`.
fn bytes(len: usize, seed: u64, text: bool) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new()
        .update(&seed.to_le_bytes())
        .finalize_xof()
        .fill(&mut out);
    if text {
        for b in &mut out {
            *b = b"abcdefgh \n"[usize::from(*b) % 10];
        }
    }
    out
}

/// Source tree `k` of a few hundred KB: files shared by every tree, files
/// shared with tree `k - 1`, files of its own; a subdirectory, a symlink.
pub(crate) fn make_tree(dir: &Path, k: u64) {
    std::fs::create_dir_all(dir.join("sub/deep")).unwrap();
    std::fs::write(dir.join("shared-big"), bytes(120_000, 1, false)).unwrap();
    std::fs::write(dir.join("sub/shared-text"), bytes(30_000, 2, true)).unwrap();
    std::fs::write(
        dir.join("prev"),
        bytes(40_000, 100 + k.saturating_sub(1), true),
    )
    .unwrap();
    std::fs::write(dir.join("sub/deep/own-big"), bytes(90_000, 200 + k, false)).unwrap();
    for i in 0..12 {
        std::fs::write(
            dir.join(format!("sub/small{i}")),
            bytes(500 + (i as usize * 1531) % 6000, 1000 * (k + 1) + i, true),
        )
        .unwrap();
    }
    std::fs::set_permissions(dir.join("prev"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink("sub/shared-text", dir.join("link")).unwrap();
}

/// A content hash of the tree at `dir`: every path with its kind, mode,
/// size, mtime (files) and content or link target, in sorted order.
pub(crate) fn tree_hash(dir: &Path) -> blake3::Hash {
    fn walk(root: &Path, rel: &Path, hasher: &mut blake3::Hasher) {
        let mut names: Vec<_> = std::fs::read_dir(root.join(rel))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for name in names {
            let rel = rel.join(&name);
            let path = root.join(&rel);
            let meta = std::fs::symlink_metadata(&path).unwrap();
            hasher.update(rel.as_os_str().as_encoded_bytes());
            hasher.update(&meta.mode().to_le_bytes());
            if meta.is_dir() {
                hasher.update(b"/dir");
                walk(root, &rel, hasher);
            } else if meta.is_symlink() {
                hasher.update(
                    std::fs::read_link(&path)
                        .unwrap()
                        .as_os_str()
                        .as_encoded_bytes(),
                );
            } else {
                hasher.update(&meta.mtime().to_le_bytes());
                hasher.update(&meta.mtime_nsec().to_le_bytes());
                hasher.update(&meta.len().to_le_bytes());
                hasher.update(&std::fs::read(&path).unwrap());
            }
            hasher.update(b"\0");
        }
    }
    let mut hasher = blake3::Hasher::new();
    walk(dir, Path::new(""), &mut hasher);
    hasher.finalize()
}

/// Checks out `tag` into a fresh directory; its tree hash, or `None` if the
/// tag does not exist.
pub(crate) fn checkout_hash(store: &Path, tag: &str, scratch: &Path) -> Option<blake3::Hash> {
    let dest = scratch.join("verify");
    let _ = std::fs::remove_dir_all(&dest);
    let out = layerstore(store, &["checkout", tag, dest.to_str().unwrap()]);
    let hash = match out.status.code() {
        Some(0) => Some(tree_hash(&dest)),
        Some(_) if String::from_utf8_lossy(&out.stderr).contains("no such tag") => None,
        _ => panic!(
            "checkout {tag}: exit {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        ),
    };
    let _ = std::fs::remove_dir_all(&dest);
    hash
}

/// `fsck`, or `fsck --repair` then `fsck`, must end clean. Returns whether a
/// repair was needed.
pub(crate) fn fsck_or_repair(store: &Path, when: &str) -> bool {
    let out = layerstore(store, &["fsck"]);
    if out.status.success() {
        return false;
    }
    let repair = layerstore(store, &["fsck", "--repair"]);
    let again = layerstore(store, &["fsck"]);
    assert!(
        again.status.success(),
        "{when}: fsck after repair: {}\nfirst fsck: {}\nrepair: {}",
        String::from_utf8_lossy(&again.stdout),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&repair.stdout),
    );
    true
}

/// Source trees.
const TREES: u64 = 5;

/// What each tag may check out as: `None` for absent, `Some(k)` for tree k.
type Expect = BTreeMap<&'static str, Vec<Option<u64>>>;

/// Checks out every tag: each must be one of the trees it may hold, and from
/// now on must stay that one.
fn verify_tags(
    store: &Path,
    scratch: &Path,
    expect: &mut Expect,
    hashes: &[blake3::Hash],
    when: &str,
) {
    let tags: Vec<&'static str> = expect.keys().copied().collect();
    for tag in tags {
        let got = checkout_hash(store, tag, scratch);
        let matched = expect[tag]
            .iter()
            .copied()
            .find(|cand| cand.map(|k| hashes[k as usize]) == got);
        let Some(matched) = matched else {
            panic!("{when}: tag {tag} checks out as none of {:?}", expect[tag]);
        };
        expect.insert(tag, vec![matched]);
    }
}

/// A checkout that finished gave one of the trees `candidates` allows (or
/// failed because the tag is absent, if that is allowed).
fn check_checkout(
    out: &std::process::Output,
    dest: &Path,
    candidates: &[Option<u64>],
    hashes: &[blake3::Hash],
    when: &str,
) {
    if out.status.success() {
        let got = tree_hash(dest);
        assert!(
            candidates
                .iter()
                .flatten()
                .any(|k| hashes[*k as usize] == got),
            "{when}: the checkout differs from its source"
        );
    } else {
        assert!(
            candidates.contains(&None),
            "{when}: checkout failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Commit,
    Gc,
    Checkout,
}

/// A number from the environment.
fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|s| s.parse().ok())
}

/// Runs `cmd` armed to kill itself just before its `kill_at`th write site
/// beneath `root` (`0`: never, only counting). Returns its output and, when
/// it finished, how many write sites it reached.
pub(crate) fn run_armed(
    mut cmd: Command,
    root: &Path,
    kill_at: u64,
) -> (std::process::Output, Option<u64>) {
    let out = cmd
        .env(
            "LAYERSTORE_FAULT_KILL",
            format!("{kill_at}:{}", root.display()),
        )
        .output()
        .unwrap();
    let reached = String::from_utf8_lossy(&out.stderr).lines().find_map(|l| {
        l.strip_prefix("fault: ")?
            .strip_suffix(" write sites reached")?
            .parse()
            .ok()
    });
    (out, reached)
}

/// The command line of the CLI on `store`.
pub(crate) fn cli(store: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_layerstore"));
    cmd.arg("--store").arg(store);
    cmd
}

/// Commits a tree to each tag (not killed), so that every kill has something
/// to lose, counting the write sites of each commit, of a checkout and of a
/// gc; returns the largest count of each.
fn warm_up(
    store: &Path,
    root: &Path,
    sources: &[PathBuf],
    tags: &[&'static str],
    expect: &mut Expect,
) -> BTreeMap<Op, u64> {
    let counted = |op: Op, args: &[&std::ffi::OsStr]| {
        let mut cmd = cli(store);
        cmd.args(args);
        let (out, reached) = run_armed(cmd, root, 0);
        ok(&out);
        (op, reached.expect("the CLI reports its write sites"))
    };
    let mut sizes = BTreeMap::new();
    for (k, tag) in tags.iter().enumerate() {
        let (op, n) = counted(
            Op::Commit,
            &[
                "commit".as_ref(),
                sources[k].as_os_str(),
                "--tag".as_ref(),
                tag.as_ref(),
            ],
        );
        let size = sizes.entry(op).or_insert(0);
        *size = n.max(*size);
        expect.insert(tag, vec![Some(k as u64)]);
    }
    let co = root.join("co");
    sizes.extend([
        counted(
            Op::Checkout,
            &["checkout".as_ref(), "a".as_ref(), co.as_os_str()],
        ),
        counted(Op::Gc, &["gc".as_ref()]),
    ]);
    std::fs::remove_dir_all(&co).unwrap();
    eprintln!("write sites of one run: {sizes:?}");
    sizes
}

/// The command line of `op`: for a commit, also the tag and tree; for a
/// checkout, the tag.
fn op_command(
    op: Op,
    rng: &mut Rng,
    store: &Path,
    sources: &[PathBuf],
    expect: &Expect,
    checkout_dest: &Path,
) -> (Command, Option<(&'static str, u64)>, Option<&'static str>) {
    let tags: Vec<&'static str> = expect.keys().copied().collect();
    let mut cmd = cli(store);
    let mut commit_of = None;
    let mut checkout_of = None;
    match op {
        Op::Commit => {
            let k = rng.below(TREES);
            let tag = tags[rng.below(tags.len() as u64) as usize];
            cmd.arg("commit")
                .arg(&sources[k as usize])
                .args(["--tag", tag]);
            // Layer on another image now and then.
            let parent = tags[rng.below(tags.len() as u64) as usize];
            if rng.below(2) == 0 && expect[parent].iter().all(Option::is_some) {
                cmd.args(["--parent", parent]);
            }
            commit_of = Some((tag, k));
        }
        Op::Gc => {
            cmd.args(["gc", "--wait", "10"]);
        }
        Op::Checkout => {
            let tag = tags[rng.below(tags.len() as u64) as usize];
            cmd.arg("checkout").arg(tag).arg(checkout_dest);
            checkout_of = Some(tag);
        }
    }
    (cmd, commit_of, checkout_of)
}

/// One run of an operation, and how it ended.
struct Run<'a> {
    op: Op,
    commit_of: Option<(&'static str, u64)>,
    checkout_of: Option<&'static str>,
    killed: bool,
    out: &'a std::process::Output,
}

impl Run<'_> {
    /// Checks what a finished run printed or wrote; updates what each tag may
    /// hold after a commit.
    fn check(
        &self,
        expect: &mut Expect,
        checkout_dest: &Path,
        hashes: &[blake3::Hash],
        when: &str,
    ) {
        match (self.op, self.commit_of, self.checkout_of) {
            (Op::Commit, Some((tag, k)), _) => {
                if self.killed {
                    // The tag may or may not have moved.
                    let e = expect.get_mut(tag).unwrap();
                    if !e.contains(&Some(k)) {
                        e.push(Some(k));
                    }
                } else {
                    ok(self.out);
                    expect.insert(tag, vec![Some(k)]);
                }
            }
            (Op::Checkout, _, Some(tag)) if !self.killed => {
                check_checkout(self.out, checkout_dest, &expect[tag], hashes, when);
            }
            (Op::Gc, ..) if !self.killed => {
                ok(self.out);
            }
            _ => {}
        }
    }
}

#[cfg(feature = "fault-injection")]
#[test]
fn sigkills_at_chosen_write_sites_of_commit_gc_and_checkout_lose_nothing_committed() {
    let started = Instant::now();
    let seed = test_seed("crash harness", 0xc4a5_11ed_5eed_0001);
    let want_kills = env_u64("LAYERSTORE_CRASH_KILLS").map_or(210, |n| n as usize);
    // Kills each operation must take: its share of the draws below.
    let quota = BTreeMap::from([
        (Op::Commit, want_kills * 5 / 10),
        (Op::Gc, want_kills * 3 / 10),
        (Op::Checkout, want_kills * 2 / 10),
    ]);
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    // Write sites count beneath this directory: the store and the checkouts.
    let root = dir.path();
    let store = root.join("store");
    ok(&layerstore(&store, &["init"]));
    let sources: Vec<PathBuf> = (0..TREES)
        .map(|k| {
            let src = root.join(format!("src{k}"));
            make_tree(&src, k);
            src
        })
        .collect();
    let hashes: Vec<blake3::Hash> = sources.iter().map(|s| tree_hash(s)).collect();
    let tags = ["a", "b", "c"];
    let mut expect: Expect = tags.iter().map(|t| (*t, vec![None])).collect();
    // Each run of `op` is killed just before its write site N, drawn from
    // 1 to a quarter more than `size[op]`: the sites its last finished run
    // reached, widened by an eighth at each kill since. Most runs are killed,
    // at points spread over the whole operation (a commit's packs, its
    // index, its tag; a gc's new packs, its removals), and the rest finish
    // and tell how large the operation has become.
    let mut size = warm_up(&store, root, &sources, &tags, &mut expect);

    let mut kills: BTreeMap<Op, usize> = BTreeMap::new();
    let mut finished: BTreeMap<Op, usize> = BTreeMap::new();
    let mut repairs = 0;
    let mut round = 0u64;
    while quota
        .iter()
        .any(|(op, q)| kills.get(op).copied().unwrap_or(0) < *q)
    {
        assert!(
            round < 3 * want_kills as u64 + 100,
            "seed {seed}: after {round} rounds, kills {kills:?} are short of {quota:?}"
        );
        let when = format!("seed {seed} round {round}");
        let op = match rng.below(10) {
            0..=4 => Op::Commit,
            5..=7 => Op::Gc,
            _ => Op::Checkout,
        };
        let checkout_dest = root.join("co");
        let _ = std::fs::remove_dir_all(&checkout_dest);
        let (cmd, commit_of, checkout_of) =
            op_command(op, &mut rng, &store, &sources, &expect, &checkout_dest);
        let kill_at = 1 + rng.below(size[&op] * 5 / 4 + 1);
        let when = format!("{when}: {op:?} armed to die at write site {kill_at}");
        let (out, reached) = run_armed(cmd, root, kill_at);
        let killed = out.status.signal() == Some(9);
        if killed {
            assert!(
                String::from_utf8_lossy(&out.stderr)
                    .contains(&format!("fault: killed at write site {kill_at}: ")),
                "{when}: killed elsewhere: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            *kills.entry(op).or_default() += 1;
            // It may be larger than last seen: widen the draw until a run
            // finishes and tells.
            let size = size.get_mut(&op).unwrap();
            *size += *size / 8 + 1;
        } else {
            let reached = reached.unwrap_or_else(|| {
                panic!(
                    "{when}: neither killed nor finished: exit {:?}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                )
            });
            assert!(reached < kill_at, "{when}: finished after {reached} sites");
            *finished.entry(op).or_default() += 1;
            size.insert(op, reached.max(1));
        }
        let run = Run {
            op,
            commit_of,
            checkout_of,
            killed,
            out: &out,
        };
        run.check(&mut expect, &checkout_dest, &hashes, &when);

        repairs += usize::from(fsck_or_repair(&store, &when));
        let when = format!(
            "{when}: after a {} {op:?}",
            if killed { "killed" } else { "finished" }
        );
        verify_tags(&store, root, &mut expect, &hashes, &when);
        round += 1;
    }
    eprintln!(
        "{round} rounds in {:.1?}: kills {kills:?}, finished {finished:?}, \
         {repairs} needed fsck --repair; write sites of the last finished runs {size:?}",
        started.elapsed()
    );
}

/// A gc killed in its deleting phase leaves its intent (the packs it may
/// delete) and an odd generation behind. A pack it then kept for a lease
/// (the content of an image tagged while it ran) is in that intent, and a
/// writer that needs what is in it (the image's layer, as the parent of a
/// commit) must not count it as gone: such a commit once failed with "layer
/// … is not in the store" until the next gc ran (found by the soak). The gc
/// is paused and killed at points it reports (`LAYERSTORE_FAULT_PAUSE`), not
/// after guessed times.
#[cfg(feature = "fault-injection")]
#[test]
fn a_commit_on_an_image_tagged_during_a_gc_killed_while_deleting_succeeds() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let store = root.join("store");
    ok(&layerstore(&store, &["init"]));
    let sources: Vec<PathBuf> = (0..2)
        .map(|k| {
            let src = root.join(format!("src{k}"));
            make_tree(&src, k * 4);
            src
        })
        .collect();
    let src = |k: usize| sources[k].to_str().unwrap();
    // a's pack is garbage when gc walks.
    ok(&layerstore(&store, &["commit", src(0), "--tag", "a"]));
    ok(&layerstore(&store, &["untag", "a"]));
    let mut gc = cli(&store)
        .arg("gc")
        .env("LAYERSTORE_FAULT_PAUSE", "gc-walked:2000,gc-fenced:60000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = std::io::BufReader::new(gc.stderr.take().unwrap()).lines();
    let mut wait_for = |point: &str| {
        let line = format!("fault: paused at {point}");
        for got in said.by_ref() {
            if got.unwrap() == line {
                return;
            }
        }
        panic!("gc ended before {point}");
    };
    // Between its walk and its sweep: the same tree again, deduplicated
    // against the garbage (the lease keeps it), tagged.
    wait_for("gc-walked");
    ok(&layerstore(&store, &["commit", src(0), "--tag", "a2"]));
    // Its intent published (a's pack in it) and the pack kept for the
    // lease: killed there.
    wait_for("gc-fenced");
    gc.kill().unwrap();
    gc.wait().unwrap();
    let generation = std::fs::metadata(store.join("leases/gc.gen"))
        .unwrap()
        .len();
    assert!(generation % 2 == 1, "the gc was killed while deleting");
    let out = layerstore(&store, &["commit", src(1), "--parent", "a2", "--tag", "b"]);
    assert!(
        out.status.success(),
        "commit on a2 after the killed gc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for round in ["after the killed gc", "after the next gc"] {
        for (tag, k) in [("a2", 0), ("b", 1)] {
            assert_eq!(
                checkout_hash(&store, tag, root),
                Some(tree_hash(&sources[k])),
                "{tag} {round}"
            );
        }
        ok(&layerstore(&store, &["gc"]));
        assert!(
            !fsck_or_repair(&store, round),
            "a repair was needed {round}"
        );
    }
}
