//! Crash states, enumerated (feature `fault-injection`): a store's creation,
//! a commit, a tag, a gc (with the rewrite of a half-dead pack), a
//! consolidation of small packs (`Store::maintain`) and an `fsck --repair`
//! run with their write sites recorded (`fault::arm_record`); `crash_model` builds from each log the
//! on-disk states a power loss could leave at each point (unsynced bytes
//! and directory entries lost, torn or reordered), and each state is written
//! to a directory of its own and checked: the store opens, `fsck` is clean
//! (packs without index that lose nothing are declared garbage, `tmp/`
//! leftovers are cleaned at open), and everything acknowledged before the
//! crash point (a flush that returned, a tag that was set) is there and
//! reads back identically; what was there before the operation stays.
//!
//! Bugs found and fixed, each kept as a regression test here: the first tag
//! of a store created `refs/` and `refs/tags/` without fsyncing their parents,
//! so a power loss after `set_tag` returned could lose the tag (tagging);
//! `fsck --repair` created `quarantine/` likewise, so the damaged pack it
//! moved there could be lost (repair); `Store::create` fsynced neither the
//! store directory's parent (the store could vanish after `create`
//! returned) nor the directory before renaming the config in (create).
//!
//! A self-check runs the commit with file fsyncs, then with directory
//! fsyncs, turned off (`fault::omit`) and asserts that the enumeration
//! finds the loss, so that these tests cannot pass vacuously.

use std::path::Path;
use std::time::Instant;

use layerstore::fault::{self, Recorded};
use layerstore::{FsckOptions, GcOptions, ImageId, Store, StoreOptions};

use super::crash_model::Model;
use super::{files, make_image, new_store, put_image, read_image};

type Files = Vec<(String, Vec<u8>)>;

/// The outcome of one operation's enumeration.
struct Explored {
    /// Write sites reached (each a crash point, and one after the last).
    sites: usize,
    /// Distinct crash states checked.
    states: usize,
    /// What failed, one line each.
    failures: Vec<String>,
}

/// Runs `op` on the store at `root` (already opened by the caller, nothing
/// pending) with its write sites recorded, then builds and checks every
/// crash state: `check(state_dir, marks)` gets the marks (`fault::mark`)
/// the run had passed at that point.
fn explore(
    name: &str,
    root: &Path,
    omit: Option<&'static str>,
    op: impl FnOnce(),
    check: impl Fn(&Path, &[String]) -> Result<(), String>,
) -> Explored {
    let mut model = Model::snapshot(root);
    fault::arm_record(root);
    if let Some(what) = omit {
        fault::omit(root, what);
    }
    op();
    let events = fault::take_record(root);
    let scratch = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut out = Explored {
        sites: 0,
        states: 0,
        failures: Vec::new(),
    };
    let mut marks: Vec<String> = Vec::new();
    let crash_here = |model: &mut Model, marks: &[String], at: &str, out: &mut Explored| {
        for state in model.crash_states(marks.len()) {
            out.states += 1;
            let dir = scratch.path().join(format!("state{}", out.states));
            state.materialise(&dir);
            if let Err(e) = check(&dir, marks) {
                out.failures
                    .push(format!("{name}: crash {at}; {}: {e}", state.label));
            }
            std::fs::remove_dir_all(&dir).unwrap();
        }
    };
    for event in &events {
        match event {
            Recorded::Site { op, path, .. } => {
                out.sites += 1;
                let at = format!(
                    "before site {} ({op} {})",
                    out.sites,
                    path.strip_prefix(root).unwrap_or(path).display()
                );
                crash_here(&mut model, &marks, &at, &mut out);
            }
            Recorded::Mark(label) => marks.push(label.clone()),
            _ => {}
        }
        model.apply(event);
    }
    crash_here(&mut model, &marks, "after the last site", &mut out);
    model.assert_matches_disk();
    eprintln!(
        "crash states: {name}: {} write sites, {} distinct states checked in {:.1?}, {} failed",
        out.sites,
        out.states,
        started.elapsed(),
        out.failures.len()
    );
    out
}

fn assert_none_failed(explored: &Explored, min_sites: usize) {
    assert!(
        explored.sites >= min_sites,
        "only {} write sites recorded",
        explored.sites
    );
    assert!(
        explored.failures.is_empty(),
        "{} of {} crash states failed:\n{}",
        explored.failures.len(),
        explored.states,
        explored.failures.join("\n")
    );
}

/// Opens the store in `dir` and runs fsck: it must be clean.
fn open_clean(dir: &Path) -> Result<Store, String> {
    let store = Store::open(dir).map_err(|e| format!("open: {e}"))?;
    let report = store
        .fsck(&FsckOptions::default())
        .map_err(|e| format!("fsck: {e}"))?;
    if !report.is_clean() {
        return Err(format!("fsck: {:?}", report.problems));
    }
    Ok(store)
}

/// Image `id` reads back as `want`.
fn image_is(store: &Store, id: &ImageId, want: &Files) -> Result<(), String> {
    let mut read = read_image(store, id).map_err(|e| format!("image {id}: {e}"))?;
    read.sort();
    let mut want = want.clone();
    want.sort();
    if read == want {
        Ok(())
    } else {
        Err(format!("image {id} reads back differently"))
    }
}

/// Tag `tag` names `id`, which reads back as `want`.
fn tagged(store: &Store, tag: &str, id: &ImageId, want: &Files) -> Result<(), String> {
    match store.tag(&tag.parse().unwrap()) {
        Ok(Some(found)) if found == *id => image_is(store, id, want),
        Ok(Some(found)) => Err(format!("tag {tag} names {found}, not {id}")),
        Ok(None) => Err(format!("tag {tag} lost")),
        Err(e) => Err(format!("tag {tag}: {e}")),
    }
}

/// `Store::create` in an existing directory (the recording's root, so that
/// the store directory's own entry is modelled), then a tagged image.
#[test]
fn every_crash_state_of_creating_a_store_is_sound() {
    let dir = tempfile::tempdir().unwrap();
    let parent = dir.path().join("parent");
    std::fs::create_dir(&parent).unwrap();
    let path = parent.join("store");
    let content = files(11, 0, 2);
    let id = std::cell::OnceCell::new();
    let explored = explore(
        "create",
        &parent,
        None,
        || {
            let store = Store::create(&path, &StoreOptions::default()).unwrap();
            fault::mark(&parent, "created");
            id.set(make_image(&store, "first", &content)).unwrap();
            fault::mark(&parent, "tagged");
            drop(store);
        },
        |state, marks| {
            let passed = |m: &str| marks.iter().any(|x| x == m);
            let path = state.join("store");
            if !passed("created") {
                // Anything a crash leaves is a store, or nothing, or a
                // directory that create accepts.
                return Store::create(&path, &StoreOptions::default())
                    .map(drop)
                    .map_err(|e| format!("create again: {e}"));
            }
            let store = open_clean(&path)?;
            if passed("tagged") {
                tagged(&store, "first", id.get().unwrap(), &content)?;
            }
            Ok(())
        },
    );
    assert_none_failed(&explored, 8);
}

/// A commit (images put, then `flush`) on a store holding a tagged image;
/// `omit` breaks the write order for the self-check.
fn commit(omit: Option<&'static str>) -> Explored {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = new_store(dir.path());
    let base = files(1, 1, 3);
    let base_id = make_image(&store, "base", &base);
    drop(store);
    let new = files(2, 1, 3);
    let store = Store::open(&path).unwrap();
    let new_id = std::cell::OnceCell::new();
    let name = match omit {
        None => "commit".to_owned(),
        Some(what) => format!("commit without '{what}'"),
    };
    explore(
        &name,
        &path,
        omit,
        || {
            new_id.set(put_image(&store, &new)).unwrap();
            store.flush().unwrap();
            fault::mark(&path, "flushed");
            drop(store);
        },
        |state, marks| {
            let store = open_clean(state)?;
            tagged(&store, "base", &base_id, &base)?;
            if marks.iter().any(|m| m == "flushed") {
                image_is(&store, new_id.get().unwrap(), &new)?;
            }
            Ok(())
        },
    )
}

#[test]
fn every_crash_state_of_a_commit_is_sound() {
    assert_none_failed(&commit(None), 8);
}

/// A commit whose flush brings the recent packs to eight, so that the
/// maintenance after it folds them into the combined index.
#[test]
fn every_crash_state_of_a_commit_that_folds_the_combined_index_is_sound() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = new_store(dir.path());
    store.set_auto_maintenance(false);
    let images: Vec<(String, ImageId, Files)> = (0..7)
        .map(|n| {
            let content = files(60 + n, 0, 1);
            let name = format!("i{n}");
            let id = make_image(&store, &name, &content);
            (name, id, content)
        })
        .collect();
    drop(store);
    assert!(!path.join("packs/combined.midx").exists());
    let store = Store::open(&path).unwrap();
    let new = files(70, 0, 2);
    let new_id = std::cell::OnceCell::new();
    let explored = explore(
        "commit and fold",
        &path,
        None,
        || {
            new_id.set(make_image(&store, "new", &new)).unwrap();
            fault::mark(&path, "tagged");
            drop(store);
        },
        |state, marks| {
            let store = open_clean(state)?;
            for (name, id, content) in &images {
                tagged(&store, name, id, content)?;
            }
            if marks.iter().any(|m| m == "tagged") {
                tagged(&store, "new", new_id.get().unwrap(), &new)?;
            }
            Ok(())
        },
    );
    assert!(path.join("packs/combined.midx").exists(), "no fold");
    assert_none_failed(&explored, 15);
}

/// The self-check: with file fsyncs skipped, and with directory fsyncs
/// skipped, the commit's crash states include some that lose the flushed
/// image or break the store, and the enumeration reports them.
#[test]
fn the_enumeration_finds_a_missing_fsync() {
    for what in ["fsync", "fsync directory"] {
        let explored = commit(Some(what));
        assert!(
            !explored.failures.is_empty(),
            "a commit without '{what}' passed all {} crash states",
            explored.states
        );
        eprintln!(
            "without '{what}': {} of {} states failed, first: {}",
            explored.failures.len(),
            explored.states,
            explored.failures[0]
        );
    }
}

/// Tags set on a store that has none yet (so `refs/tags/` is created), one
/// of them naming an image not yet flushed; then one moved, one removed.
#[test]
fn every_crash_state_of_tagging_is_sound() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = new_store(dir.path());
    let (one, two) = (files(3, 0, 3), files(4, 0, 2));
    let one_id = put_image(&store, &one);
    store.flush().unwrap();
    drop(store);
    let store = Store::open(&path).unwrap();
    let two_id = std::cell::OnceCell::new();
    let explored = explore(
        "tag",
        &path,
        None,
        || {
            store.set_tag(&"t1".parse().unwrap(), &one_id).unwrap();
            fault::mark(&path, "t1");
            let id = put_image(&store, &two);
            store.set_tag(&"t2".parse().unwrap(), &id).unwrap();
            fault::mark(&path, "t2");
            store.set_tag(&"t1".parse().unwrap(), &id).unwrap();
            fault::mark(&path, "t1 moved");
            fault::mark(&path, "removing t2");
            assert!(store.remove_tag(&"t2".parse().unwrap()).unwrap());
            fault::mark(&path, "t2 removed");
            two_id.set(id).unwrap();
            drop(store);
        },
        |state, marks| {
            let store = open_clean(state)?;
            let passed = |m: &str| marks.iter().any(|x| x == m);
            let two_id = two_id.get().unwrap();
            image_is(&store, &one_id, &one)?;
            if passed("t1 moved") {
                tagged(&store, "t1", two_id, &two)?;
            } else if passed("t1") {
                tagged(&store, "t1", &one_id, &one)
                    .or_else(|_| tagged(&store, "t1", two_id, &two))?;
            }
            if passed("t2 removed") {
                if !matches!(store.tag(&"t2".parse().unwrap()), Ok(None)) {
                    return Err("tag t2 is back after its removal returned".into());
                }
            } else if passed("removing t2") {
                if !matches!(store.tag(&"t2".parse().unwrap()), Ok(None)) {
                    tagged(&store, "t2", two_id, &two)?;
                }
            } else if passed("t2") {
                tagged(&store, "t2", two_id, &two)?;
            }
            Ok(())
        },
    );
    assert_none_failed(&explored, 10);
}

/// gc after untagging: one pack (images a and b) is half dead and rewritten,
/// another (image c) is dead and removed, and a dead writer's file in `tmp/`
/// goes.
#[test]
fn every_crash_state_of_gc_is_sound() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = new_store(dir.path());
    let (a, b, c) = (files(5, 1, 3), files(6, 2, 3), files(7, 1, 2));
    let a_id = put_image(&store, &a);
    let b_id = put_image(&store, &b);
    store.set_tag(&"a".parse().unwrap(), &a_id).unwrap();
    store.set_tag(&"b".parse().unwrap(), &b_id).unwrap();
    make_image(&store, "c", &c);
    store.remove_tag(&"b".parse().unwrap()).unwrap();
    store.remove_tag(&"c".parse().unwrap()).unwrap();
    drop(store);
    let store = Store::open(&path).unwrap();
    super::faults::leave_dead_writers_file(&path);
    let explored = explore(
        "gc",
        &path,
        None,
        || {
            let report = store.gc(&GcOptions::default()).unwrap();
            assert!(report.packs_repacked >= 1, "{report:?}");
            fault::mark(&path, "gc");
            drop(store);
        },
        |state, _| {
            let store = open_clean(state)?;
            tagged(&store, "a", &a_id, &a)
        },
    );
    assert_none_failed(&explored, 10);
}

/// Maintenance consolidating 16 small packs (one tagged image each) into
/// one, then rewriting the combined index.
#[test]
fn every_crash_state_of_a_consolidation_is_sound() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = new_store(dir.path());
    store.set_auto_maintenance(false);
    let images: Vec<(String, ImageId, Files)> = (0..16)
        .map(|n| {
            let content = files(40 + n, 0, 1);
            let name = format!("i{n}");
            let id = make_image(&store, &name, &content);
            (name, id, content)
        })
        .collect();
    drop(store);
    let store = Store::open(&path).unwrap();
    store.set_auto_maintenance(false);
    let explored = explore(
        "consolidation",
        &path,
        None,
        || {
            store.maintain(true).unwrap();
            fault::mark(&path, "maintained");
            drop(store);
        },
        |state, _| {
            let store = open_clean(state)?;
            for (name, id, content) in &images {
                tagged(&store, name, id, content)?;
            }
            Ok(())
        },
    );
    assert_none_failed(&explored, 20);
}

/// `fsck --repair` of a store where a pack's index is lost and another pack
/// has a flipped byte in its first frame (whose image, c, is also in a pack
/// copied from another store): the index is rebuilt, the damaged pack's
/// good frames are salvaged into a new pack, the damaged one moved to
/// `quarantine/`. In every crash state the damaged pack's bytes are still in
/// `packs/` or `quarantine/`; once the repair returned, fsck is clean; before,
/// a repair run again makes it clean; every tagged image reads back.
#[test]
fn every_crash_state_of_a_repair_is_sound() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = new_store(dir.path());
    let (a, c, y) = (files(8, 0, 2), files(9, 1, 1), files(10, 0, 2));
    let a_id = make_image(&store, "a", &a);
    let a_pack = only_new(&path, &[], ".pack");
    let c_id = put_image(&store, &c);
    put_image(&store, &y);
    store.set_tag(&"c".parse().unwrap(), &c_id).unwrap();
    let damaged = path
        .join("packs")
        .join(only_new(&path, std::slice::from_ref(&a_pack), ".pack"));
    drop(store);
    let other_path = dir.path().join("other");
    let other = Store::create(&other_path, &StoreOptions::default()).unwrap();
    other.put_bytes(b"only in the other store").unwrap();
    put_image(&other, &c);
    other.flush().unwrap();
    drop(other);
    for file in std::fs::read_dir(other_path.join("packs")).unwrap() {
        let file = file.unwrap().path();
        std::fs::copy(&file, path.join("packs").join(file.file_name().unwrap())).unwrap();
    }
    std::fs::remove_file(path.join("packs").join(&a_pack).with_extension("idx")).unwrap();
    let mut bytes = std::fs::read(&damaged).unwrap();
    bytes[50_000] ^= 0x01;
    std::fs::write(&damaged, &bytes).unwrap();
    let store = Store::open(&path).unwrap();
    super::faults::leave_dead_writers_file(&path);
    let explored = explore(
        "fsck --repair",
        &path,
        None,
        || {
            let report = store.fsck(&FsckOptions::default().repair(true)).unwrap();
            assert!(report.repaired.len() >= 2, "{report:?}");
            fault::mark(&path, "repaired");
            drop(store);
        },
        |state, marks| {
            let kept = ["packs", "quarantine"].iter().any(|d| {
                std::fs::read_dir(state.join(d)).is_ok_and(|files| {
                    files
                        .flatten()
                        .any(|f| std::fs::read(f.path()).is_ok_and(|b| b == bytes))
                })
            });
            if !kept {
                return Err("the damaged pack is lost".into());
            }
            if !marks.iter().any(|m| m == "repaired") {
                let store = Store::open(state).map_err(|e| format!("open: {e}"))?;
                store
                    .fsck(&FsckOptions::default().repair(true))
                    .map_err(|e| format!("repair again: {e}"))?;
            }
            let store = open_clean(state)?;
            tagged(&store, "a", &a_id, &a)?;
            tagged(&store, "c", &c_id, &c)
        },
    );
    assert_none_failed(&explored, 10);
}

/// The one file with `suffix` in `packs/` of the store at `path` that is not
/// in `before` (by name).
fn only_new(path: &Path, before: &[String], suffix: &str) -> String {
    let new: Vec<String> = super::packs_with(path, suffix)
        .into_iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .filter(|n| !before.contains(n))
        .collect();
    assert_eq!(new.len(), 1, "{new:?}");
    new.into_iter().next().unwrap()
}
