//! The algebra, checked on random trees.
#![allow(
    clippy::needless_pass_by_value,
    reason = "quickcheck properties take their arguments by value"
)]

use layerstore::{ChangeKind, Entry, Layer, Metadata, Snapshot, TreePath, flatten};
use quickcheck::{QuickCheck, TestResult};

use crate::arbitrary::{ArbTree, TreePair};

fn qc() -> QuickCheck {
    QuickCheck::new().tests(500).rng(quickcheck::Gen::new(40))
}

#[test]
fn diff_then_apply_gives_the_newer_tree() {
    fn prop(pair: TreePair) -> bool {
        let TreePair(a, b) = pair;
        a.diff(&b).apply(&a).unwrap() == b
    }
    qc().quickcheck(prop as fn(TreePair) -> bool);
}

#[test]
fn diff_of_a_tree_with_itself_is_empty() {
    fn prop(t: ArbTree) -> bool {
        t.0.diff(&t.0).is_empty() && t.0.changes(&t.0).is_empty()
    }
    qc().quickcheck(prop as fn(ArbTree) -> bool);
}

#[test]
fn flatten_of_a_chain_of_diffs_is_the_last_tree() {
    fn prop(pair: TreePair, third: ArbTree) -> bool {
        let TreePair(a, b) = pair;
        let c = third.0;
        let layers = [
            Snapshot::empty().diff(&a),
            a.diff(&b),
            b.diff(&c),
            Layer::empty(),
        ];
        flatten(&layers).unwrap() == c
    }
    qc().quickcheck(prop as fn(TreePair, ArbTree) -> bool);
}

#[test]
fn encode_decode_round_trip() {
    fn prop(pair: TreePair) -> bool {
        let TreePair(a, b) = pair;
        let layer = a.diff(&b);
        Snapshot::decode(&a.encode()).unwrap() == a
            && Layer::decode(&layer.encode()).unwrap() == layer
            && Layer::decode(&layer.encode()).unwrap().id() == layer.id()
    }
    qc().quickcheck(prop as fn(TreePair) -> bool);
}

#[test]
fn id_does_not_depend_on_construction_order() {
    fn prop(t: ArbTree, seed: u64) -> bool {
        let mut entries = t.0.entries().to_vec();
        // Fisher-Yates with a small LCG, so the shuffle is reproducible.
        let mut state = seed | 1;
        for i in (1..entries.len()).rev() {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let j = usize::try_from(state >> 33).unwrap() % (i + 1);
            entries.swap(i, j);
        }
        let rebuilt = Snapshot::from_entries(entries).unwrap();
        rebuilt.id() == t.0.id() && rebuilt == t.0
    }
    qc().quickcheck(prop as fn(ArbTree, u64) -> bool);
}

#[test]
fn changes_agree_with_the_trees() {
    fn prop(pair: TreePair) -> TestResult {
        let TreePair(a, b) = pair;
        let changes = a.changes(&b);
        if changes.windows(2).any(|w| w[0].path >= w[1].path) {
            return TestResult::error("changes not sorted by path");
        }
        for c in &changes {
            let (old, new) = (a.get(&c.path), b.get(&c.path));
            let ok = match c.kind {
                ChangeKind::Added => old.is_none() && new.is_some(),
                ChangeKind::Deleted => old.is_some() && new.is_none(),
                ChangeKind::Modified => old.is_some() && new.is_some(),
            };
            if !ok {
                return TestResult::error(format!("wrong change {c}"));
            }
        }
        // No deleted path lies beneath another deleted path.
        let deleted: Vec<_> = changes
            .iter()
            .filter(|c| c.kind == ChangeKind::Deleted)
            .collect();
        for w in deleted.windows(2) {
            if w[0].path.is_ancestor_of(&w[1].path) {
                return TestResult::error(format!("{} listed under {}", w[1], w[0]));
            }
        }
        // Every path whose entry differs is listed, unless it went with a
        // deleted or replaced ancestor.
        for e in &b {
            if a.get(&e.path) != Some(e) && !changes.iter().any(|c| c.path == e.path) {
                return TestResult::error(format!("{} changed but is not listed", e.path));
            }
        }
        TestResult::passed()
    }
    qc().quickcheck(prop as fn(TreePair) -> TestResult);
}

#[test]
fn layers_are_minimal() {
    fn prop(pair: TreePair) -> bool {
        let TreePair(a, b) = pair;
        let layer = a.diff(&b);
        // No whiteout beneath another, none for a path that survives, and no
        // upsert of an unchanged entry other than a re-emitted hard link.
        let nested = layer
            .whiteouts()
            .windows(2)
            .any(|w| w[0].is_ancestor_of(&w[1]));
        let needless_whiteout = layer.whiteouts().iter().any(|w| b.get(w).is_some());
        let needless_upsert = layer.upserts().iter().any(|e| {
            a.get(&e.path) == Some(e) && !matches!(e.kind, layerstore::EntryKind::Hardlink { .. })
        });
        layer.opaque_dirs().is_empty() && !nested && !needless_whiteout && !needless_upsert
    }
    qc().quickcheck(prop as fn(TreePair) -> bool);
}

/// Whether `tree` is one the constructors accept (sorted, unique, parents
/// before children, a root directory) and encodes to bytes that decode to it.
fn is_valid(tree: &Snapshot) -> bool {
    Snapshot::from_sorted(tree.entries().to_vec()).is_ok_and(|t| t == *tree)
        && Snapshot::decode(&tree.encode()).is_ok_and(|t| t == *tree)
}

#[test]
fn decoding_garbage_never_panics() {
    fn prop(t: ArbTree, flips: Vec<(usize, u8)>, cut: usize) -> bool {
        let mut bytes = t.0.encode();
        for (at, xor) in flips {
            let len = bytes.len();
            bytes[at % len] ^= xor;
        }
        let cut = cut % (bytes.len() + 1);
        // Any outcome but a panic is fine; a success must be a valid tree.
        if let Ok(tree) = Snapshot::decode(&bytes[..cut])
            && !is_valid(&tree)
        {
            return false;
        }
        match Layer::decode(&bytes) {
            Ok(layer) => layer.encode().len() <= bytes.len() + 8,
            Err(_) => true,
        }
    }
    qc().quickcheck(prop as fn(ArbTree, Vec<(usize, u8)>, usize) -> bool);
}

#[test]
fn decoding_random_bytes_after_a_valid_header_never_panics() {
    fn prop(body: Vec<u8>) -> bool {
        let mut snapshot = b"LSOB\x01\x00\x01\x00".to_vec();
        snapshot.extend_from_slice(&body);
        let mut layer = b"LSOB\x02\x00\x01\x00".to_vec();
        layer.extend_from_slice(&body);
        let _ = Layer::decode(&layer);
        Snapshot::decode(&snapshot).map_or(true, |tree| is_valid(&tree))
    }
    QuickCheck::new()
        .tests(5000)
        .quickcheck(prop as fn(Vec<u8>) -> bool);
}

#[test]
fn the_layer_of_a_whole_tree_is_its_diff_from_the_empty_tree() {
    fn prop(t: ArbTree, default_root: bool) -> bool {
        let mut entries = t.0.into_entries();
        if default_root {
            // The root the empty tree has: then it is no upsert.
            entries[0] = Entry::dir(TreePath::ROOT, Metadata::default());
        }
        let tree = Snapshot::from_sorted(entries).unwrap();
        let expected = Snapshot::empty().diff(&tree);
        let layer = Layer::of_tree(tree.clone());
        layer == expected && layer.apply(&Snapshot::empty()).unwrap() == tree
    }
    qc().quickcheck(prop as fn(ArbTree, bool) -> bool);
}
