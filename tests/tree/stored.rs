//! Trees as the store holds them, one object per directory: read back whole,
//! read by path ([`StoredTree`]), and changed by a layer without being read
//! whole ([`Store::apply_layer`]), which must agree with [`Layer::apply`] on
//! every tree and every layer, valid or not.

#![expect(
    clippy::needless_pass_by_value,
    reason = "quickcheck properties take their arguments by value"
)]

use layerstore::{
    ChunkId, Entry, EntryKind, Error, Layer, Metadata, Snapshot, Store, StoreOptions, StoredTree,
    TreePath,
};
use quickcheck::{QuickCheck, TestResult};

use crate::arbitrary::{ArbTree, TreePair};

fn qc() -> QuickCheck {
    QuickCheck::new().tests(300).rng(quickcheck::Gen::new(40))
}

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path().join("s"), &StoreOptions::default()).unwrap();
    (dir, store)
}

fn p(s: &str) -> TreePath {
    TreePath::new(s).unwrap()
}

#[test]
fn stored_trees_read_back_whole_and_by_path() {
    fn prop(t: ArbTree) -> bool {
        let (_dir, store) = store();
        let tree = t.0;
        let id = store.put_snapshot(&tree).unwrap();
        assert_eq!(id, tree.id());
        assert_eq!(store.snapshot(&id).unwrap(), tree);
        let stored = StoredTree::new(&store, id);
        for entry in &tree {
            assert_eq!(stored.get(&entry.path).unwrap().as_ref(), Some(entry));
            let children: Vec<Entry> = tree.children_of(&entry.path).cloned().collect();
            assert_eq!(stored.children(&entry.path).unwrap(), children);
            assert_eq!(
                stored.descendants(&entry.path).unwrap(),
                tree.descendants_of(&entry.path)
            );
            let absent = entry.path.join("no such name").unwrap();
            assert_eq!(stored.get(&absent).unwrap(), None);
        }
        let links: Vec<Entry> = tree
            .iter()
            .filter(|e| matches!(e.kind, EntryKind::Hardlink { .. }))
            .cloned()
            .collect();
        assert_eq!(stored.hardlinks().unwrap(), links);
        true
    }
    qc().quickcheck(prop as fn(ArbTree) -> bool);
}

#[test]
fn applying_a_diff_to_a_stored_tree_stores_the_newer_tree() {
    fn prop(pair: TreePair) -> bool {
        let (_dir, store) = store();
        let TreePair(a, b) = pair;
        let id = store.put_snapshot(&a).unwrap();
        let applied = store.apply_layer(&id, &a.diff(&b)).unwrap();
        assert_eq!(applied, b.id());
        assert_eq!(store.snapshot(&applied).unwrap(), b);
        true
    }
    qc().quickcheck(prop as fn(TreePair) -> bool);
}

#[test]
fn diffs_of_stored_trees_are_the_diffs_of_the_trees() {
    fn prop(pair: TreePair) -> bool {
        let (_dir, store) = store();
        let TreePair(a, b) = pair;
        let (ia, ib) = (
            store.put_snapshot(&a).unwrap(),
            store.put_snapshot(&b).unwrap(),
        );
        assert_eq!(store.diff_stored(&ia, &ib).unwrap(), a.diff(&b));
        assert_eq!(store.changes_stored(&ia, &ib).unwrap(), a.changes(&b));
        assert_eq!(store.changes_stored(&ib, &ia).unwrap(), b.changes(&a));
        assert!(store.diff_stored(&ia, &ia).unwrap().is_empty());
        true
    }
    qc().quickcheck(prop as fn(TreePair) -> bool);
}

/// A hard link in a subtree equal in both trees, whose target file changed
/// elsewhere, is listed again (as the in-memory diff lists it).
#[test]
fn a_stored_diff_lists_links_in_equal_subtrees_whose_target_changed() {
    let (_dir, store) = store();
    let tree = |content: &[u8]| {
        Snapshot::from_entries(vec![
            Entry::dir(TreePath::ROOT, Metadata::default()),
            Entry::dir(p("a"), Metadata::new(0o755)),
            Entry::file(
                p("a/target"),
                store.put_bytes(content).unwrap(),
                Metadata::new(0o644),
            ),
            Entry::dir(p("z"), Metadata::new(0o755)),
            Entry::hardlink(p("z/link"), p("a/target"), Metadata::new(0o644)),
        ])
        .unwrap()
    };
    let (old, new) = (tree(b"old"), tree(b"new"));
    let (io, inew) = (
        store.put_snapshot(&old).unwrap(),
        store.put_snapshot(&new).unwrap(),
    );
    let changes = store.changes_stored(&io, &inew).unwrap();
    assert_eq!(changes, old.changes(&new));
    assert!(changes.iter().any(|c| c.path == p("z/link")), "{changes:?}");
}

/// Any layer, valid over the tree or not: some of the newer tree's entries
/// (parents and link targets possibly left out), whiteouts and opaque
/// directories picked among both trees' paths.
#[test]
fn apply_layer_agrees_with_apply_on_any_layer() {
    fn prop(pair: TreePair, keep: Vec<u8>, seed: u8) -> TestResult {
        let TreePair(a, b) = pair;
        let pick = |i: usize, salt: u8| {
            let k = keep.get(i % keep.len().max(1)).copied().unwrap_or(seed);
            (k ^ salt ^ seed).wrapping_mul(31).is_multiple_of(4)
        };
        let upserts: Vec<Entry> = b
            .iter()
            .enumerate()
            .filter(|(i, _)| !pick(*i, 1))
            .map(|(_, e)| e.clone())
            .collect();
        let all_paths: Vec<&TreePath> = a.iter().chain(b.iter()).map(|e| &e.path).collect();
        let mut whiteouts: Vec<TreePath> = all_paths
            .iter()
            .enumerate()
            .filter(|(i, path)| !path.is_root() && pick(*i, 2) && pick(*i + 7, 5))
            .map(|(_, path)| (*path).clone())
            .collect();
        whiteouts.sort();
        whiteouts.dedup();
        let mut opaque: Vec<TreePath> = a
            .iter()
            .chain(b.iter())
            .enumerate()
            .filter(|(i, e)| e.is_dir() && pick(*i, 3) && pick(*i + 3, 9))
            .map(|(_, e)| e.path.clone())
            .collect();
        opaque.sort();
        opaque.dedup();
        let Ok(layer) = Layer::new(upserts, whiteouts, opaque) else {
            return TestResult::discard();
        };
        let (_dir, store) = store();
        let id = store.put_snapshot(&a).unwrap();
        let flat = layer.apply(&a);
        let stored = store.apply_layer(&id, &layer);
        match (&flat, &stored) {
            (Ok(tree), Ok(applied)) => {
                assert_eq!(*applied, tree.id());
                assert_eq!(store.snapshot(applied).unwrap(), *tree);
            }
            (Err(Error::InvalidTree { .. }), Err(Error::InvalidTree { .. })) => {}
            _ => panic!("apply: {flat:?}\napply_layer: {stored:?}\nlayer: {layer:?}"),
        }
        TestResult::passed()
    }
    qc().quickcheck(prop as fn(TreePair, Vec<u8>, u8) -> TestResult);
}

/// A file that hard links elsewhere name, deleted or replaced in a
/// directory far from the links: refused as [`Layer::apply`] refuses it,
/// though the links' directories are not otherwise touched.
#[test]
fn apply_layer_sees_links_left_dangling_far_away() {
    let (_dir, store) = store();
    let file = |path: &str| {
        Entry::file(
            p(path),
            store.put_bytes(b"shared").unwrap(),
            Metadata::new(0o644),
        )
    };
    let dir = |path: &str| Entry::dir(p(path), Metadata::new(0o755));
    let tree = Snapshot::from_entries(vec![
        Entry::dir(TreePath::ROOT, Metadata::default()),
        dir("a"),
        file("a/target"),
        dir("z"),
        dir("z/deep"),
        Entry::hardlink(p("z/deep/link"), p("a/target"), Metadata::new(0o644)),
    ])
    .unwrap();
    let id = store.put_snapshot(&tree).unwrap();
    let layers = [
        Layer::new(vec![], vec![p("a/target")], vec![]).unwrap(),
        Layer::new(vec![], vec![p("a")], vec![]).unwrap(),
        Layer::new(vec![], vec![], vec![p("a")]).unwrap(),
        Layer::new(vec![dir("a/target")], vec![], vec![]).unwrap(),
        Layer::new(
            vec![Entry::symlink(p("a"), "elsewhere", Metadata::new(0o777))],
            vec![],
            vec![],
        )
        .unwrap(),
    ];
    for layer in &layers {
        assert!(matches!(layer.apply(&tree), Err(Error::InvalidTree { .. })));
        match store.apply_layer(&id, layer) {
            Err(Error::InvalidTree { path, reason }) => {
                assert_eq!(path, "z/deep/link", "{reason}");
            }
            other => panic!("{layer:?} gave {other:?}"),
        }
    }
    // Replacing the target's content keeps the links valid.
    let new_content = Layer::new(vec![file("a/target")], vec![], vec![]).unwrap();
    assert_eq!(
        store.apply_layer(&id, &new_content).unwrap(),
        new_content.apply(&tree).unwrap().id()
    );
}

/// A layer that changes one file of a wide tree reads the directories on its
/// path and writes new objects for them alone.
#[test]
fn apply_layer_writes_only_the_directories_on_the_changed_path() {
    let (_dir, store) = store();
    let mut entries = vec![Entry::dir(TreePath::ROOT, Metadata::default())];
    let content = store.put_bytes(b"x").unwrap();
    for d in 0..50 {
        entries.push(Entry::dir(p(&format!("d{d:02}")), Metadata::new(0o755)));
        for f in 0..20 {
            entries.push(Entry::file(
                p(&format!("d{d:02}/f{f:02}")),
                content.clone(),
                Metadata::new(0o644),
            ));
        }
    }
    let tree = Snapshot::from_sorted(entries).unwrap();
    let id = store.put_snapshot(&tree).unwrap();
    store.flush().unwrap();
    let objects_before = store.stats().unwrap().chunks;
    let layer = Layer::new(
        vec![Entry::file(
            p("d07/f03"),
            content.clone(),
            Metadata::new(0o600),
        )],
        vec![],
        vec![],
    )
    .unwrap();
    let applied = store.apply_layer(&id, &layer).unwrap();
    store.flush().unwrap();
    assert_eq!(applied, layer.apply(&tree).unwrap().id());
    // The root and d07 are new; the 49 other directories are the old ones.
    assert_eq!(store.stats().unwrap().chunks, objects_before + 2);
    assert!(store.contains(&ChunkId::from(applied)));
}

/// A directory object that is not what it should be: refused when read, by
/// path or whole, with the error naming what is wrong.
#[test]
fn damaged_directories_are_refused() {
    let (_dir, store) = store();
    // Not stored at all.
    let missing = Snapshot::empty();
    let err = store.snapshot(&missing.id()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ObjectNotFound {
                kind: "directory",
                ..
            }
        ),
        "{err}"
    );
    // A layer's bytes where a tree should be.
    let layer = Layer::new(
        vec![Entry::dir(p("x"), Metadata::default())],
        vec![],
        vec![],
    )
    .unwrap();
    let layer_id = store.put_layer(&layer).unwrap();
    let as_tree = layerstore::SnapshotId::from_bytes(*layer_id.as_bytes());
    assert!(matches!(
        store.snapshot(&as_tree),
        Err(Error::Malformed {
            what: "directory",
            ..
        })
    ));
    assert!(matches!(
        StoredTree::new(&store, as_tree).get(&p("x")),
        Err(Error::Malformed {
            what: "directory",
            ..
        })
    ));
}
