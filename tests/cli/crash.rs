//! The crash harness: the CLI killed with SIGKILL at random moments of
//! `commit`, `gc` and `checkout`. After each kill, `fsck` is clean (or
//! `fsck --repair` makes it clean), and every tag checks out to exactly the
//! tree that was committed under it: the tree of the last commit that
//! finished, or of the killed one if it got as far as the tag.
//!
//! `LAYERSTORE_CRASH_SEED` replays a run; `LAYERSTORE_CRASH_KILLS` sets how
//! many kills to land (default 210).

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{layerstore, ok};

/// xorshift64*: small, deterministic from its seed.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

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

/// Commits a tree to each tag (not killed), so that every kill has something
/// to lose, timing one commit, checkout and gc; returns those times.
fn warm_up(
    store: &Path,
    sources: &[PathBuf],
    tags: &[&'static str],
    expect: &mut Expect,
    scratch: &Path,
) -> BTreeMap<Op, Duration> {
    let timed = |args: &[&str]| {
        let t = Instant::now();
        ok(&layerstore(store, args));
        t.elapsed()
    };
    let mut commit_time = Duration::ZERO;
    for (k, tag) in tags.iter().enumerate() {
        commit_time = commit_time.max(timed(&[
            "commit",
            sources[k].to_str().unwrap(),
            "--tag",
            tag,
        ]));
        expect.insert(tag, vec![Some(k as u64)]);
    }
    let co = scratch.join("co");
    let checkout_time = timed(&["checkout", "a", co.to_str().unwrap()]);
    std::fs::remove_dir_all(&co).unwrap();
    let gc_time = timed(&["gc"]);
    eprintln!("one run: commit {commit_time:.1?}, gc {gc_time:.1?}, checkout {checkout_time:.1?}");
    BTreeMap::from([
        (Op::Commit, commit_time),
        (Op::Gc, gc_time),
        (Op::Checkout, checkout_time),
    ])
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
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_layerstore"));
    cmd.arg("--store").arg(store);
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

#[test]
fn random_sigkills_in_commit_gc_and_checkout_lose_nothing_committed() {
    let started = Instant::now();
    let seed = env_u64("LAYERSTORE_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    let want_kills = env_u64("LAYERSTORE_CRASH_KILLS").map_or(210, |n| n as usize);
    eprintln!("crash harness seed {seed} (LAYERSTORE_CRASH_SEED replays it)");
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    ok(&layerstore(&store, &["init"]));
    let sources: Vec<PathBuf> = (0..TREES)
        .map(|k| {
            let src = dir.path().join(format!("src{k}"));
            make_tree(&src, k);
            src
        })
        .collect();
    let hashes: Vec<blake3::Hash> = sources.iter().map(|s| tree_hash(s)).collect();
    let tags = ["a", "b", "c"];
    let mut expect: Expect = tags.iter().map(|t| (*t, vec![None])).collect();
    // Each kill comes 0 to `window[op]` after the start, a window that adapts
    // (shrinks when the operation finished first, grows when it was killed)
    // so that about 70 % of runs are killed, at moments spread over the
    // whole operation: a commit's scan, its flush, its tag. On this machine
    // the windows settle at 5 to 60 ms (debug build).
    let mut window = warm_up(&store, &sources, &tags, &mut expect, dir.path());

    let mut kills: BTreeMap<Op, usize> = BTreeMap::new();
    let mut finished: BTreeMap<Op, usize> = BTreeMap::new();
    let mut repairs = 0;
    let mut round = 0u64;
    while kills.values().sum::<usize>() < want_kills {
        assert!(
            round < 3 * want_kills as u64 + 100,
            "too few kills landed: {kills:?}"
        );
        let when = format!("seed {seed} round {round}");
        let op = match rng.below(10) {
            0..=4 => Op::Commit,
            5..=7 => Op::Gc,
            _ => Op::Checkout,
        };
        let checkout_dest = dir.path().join("co");
        let _ = std::fs::remove_dir_all(&checkout_dest);
        let (mut cmd, commit_of, checkout_of) =
            op_command(op, &mut rng, &store, &sources, &expect, &checkout_dest);
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let w = window.get_mut(&op).unwrap();
        std::thread::sleep(Duration::from_micros(rng.below(w.as_micros() as u64)));
        child.kill().unwrap();
        let out = child.wait_with_output().unwrap();
        let killed = out.status.signal() == Some(9);
        if killed {
            *kills.entry(op).or_default() += 1;
            *w = (*w * 103 / 100).min(Duration::from_millis(500));
        } else {
            *finished.entry(op).or_default() += 1;
            *w = (*w * 93 / 100).max(Duration::from_millis(2));
        }
        match (op, commit_of, checkout_of) {
            (Op::Commit, Some((tag, k)), _) => {
                if killed {
                    // The tag may or may not have moved.
                    let e = expect.get_mut(tag).unwrap();
                    if !e.contains(&Some(k)) {
                        e.push(Some(k));
                    }
                } else {
                    ok(&out);
                    expect.insert(tag, vec![Some(k)]);
                }
            }
            (Op::Checkout, _, Some(tag)) if !killed => {
                check_checkout(&out, &checkout_dest, &expect[tag], &hashes, &when);
            }
            (Op::Gc, ..) if !killed => {
                ok(&out);
            }
            _ => {}
        }

        repairs += usize::from(fsck_or_repair(&store, &when));
        let when = format!(
            "{when}: after a {} {op:?}",
            if killed { "killed" } else { "finished" }
        );
        verify_tags(&store, dir.path(), &mut expect, &hashes, &when);
        round += 1;
    }
    eprintln!(
        "{round} rounds in {:.1?}: kills {kills:?}, finished {finished:?}, \
         {repairs} needed fsck --repair; kill windows at the end {window:?}",
        started.elapsed()
    );
    for op in [Op::Commit, Op::Gc, Op::Checkout] {
        assert!(
            kills.get(&op).copied().unwrap_or(0) >= want_kills / 10,
            "too few kills in {op:?}: {kills:?}"
        );
    }
}
