//! The OCI layer rules on hand-written layers (as an OCI tar import or an
//! overlayfs upper directory would give them).

use layerstore::{Entry, Layer, Metadata, Snapshot, flatten};

use crate::model::{chunks_of, p, paths};

fn dir(s: &str) -> Entry {
    Entry::dir(p(s), Metadata::new(0o755))
}
fn file(s: &str, content: &[u8]) -> Entry {
    Entry::file(p(s), chunks_of(content), Metadata::new(0o644))
}
fn layer(upserts: Vec<Entry>, whiteouts: &[&str], opaque: &[&str]) -> Layer {
    Layer::new(
        upserts,
        whiteouts.iter().map(|s| p(s)).collect(),
        opaque.iter().map(|s| p(s)).collect(),
    )
    .unwrap()
}

#[test]
fn a_file_deleted_stays_deleted_under_an_empty_layer() {
    let layers = [
        layer(vec![file("foo", b"1"), file("foobar", b"2")], &[], &[]),
        layer(vec![], &["foobar"], &[]),
        Layer::empty(),
    ];
    assert_eq!(paths(&flatten(&layers).unwrap()), ["foo"]);
}

#[test]
fn a_recreated_directory_does_not_bring_back_old_children() {
    let base = layer(
        vec![
            dir("d"),
            file("d/old", b"x"),
            dir("d/sub"),
            file("d/sub/y", b"y"),
        ],
        &[],
        &[],
    );
    // Deleted in one layer, recreated in a later one.
    let deleted = [
        base.clone(),
        layer(vec![], &["d"], &[]),
        layer(vec![dir("d")], &[], &[]),
    ];
    assert_eq!(paths(&flatten(&deleted).unwrap()), ["d"]);
    // Deleted and recreated in one layer (whiteout + upsert of one path).
    let same_layer = [
        base.clone(),
        layer(vec![dir("d"), file("d/new", b"n")], &["d"], &[]),
    ];
    assert_eq!(paths(&flatten(&same_layer).unwrap()), ["d", "d/new"]);
    // Replaced by an opaque directory.
    let opaque = [
        base,
        layer(vec![dir("d"), file("d/new", b"n")], &[], &["d"]),
    ];
    assert_eq!(paths(&flatten(&opaque).unwrap()), ["d", "d/new"]);
}

#[test]
fn whiteouts_act_on_lower_layers_only() {
    // A whiteout next to an upsert of a path below it in the same layer: the
    // upsert survives, the lower entry does not.
    let layers = [
        layer(vec![dir("d"), file("d/x", b"old")], &[], &[]),
        layer(vec![dir("d"), file("d/x", b"new")], &["d"], &[]),
    ];
    let flat = flatten(&layers).unwrap();
    assert_eq!(paths(&flat), ["d", "d/x"]);
    assert_eq!(crate::model::content(&flat, "d/x"), chunks_of(b"new"));
}

#[test]
fn a_whiteout_for_a_missing_path_is_ignored() {
    let layers = [
        layer(vec![file("a", b"")], &[], &[]),
        layer(vec![], &["nothing/here", "b"], &[]),
    ];
    assert_eq!(paths(&flatten(&layers).unwrap()), ["a"]);
}

#[test]
fn hard_links_may_point_into_lower_layers() {
    let layers = [
        layer(vec![dir("lib"), file("lib/a.so", b"elf")], &[], &[]),
        layer(
            vec![Entry::hardlink(
                p("lib/b.so"),
                p("lib/a.so"),
                Metadata::new(0o644),
            )],
            &[],
            &[],
        ),
    ];
    let flat = flatten(&layers).unwrap();
    assert_eq!(crate::model::content(&flat, "lib/b.so"), chunks_of(b"elf"));
    // Deleting the target under a surviving link is an invalid tree, reported.
    let broken = layer(vec![], &["lib/a.so"], &[]);
    assert!(matches!(
        broken.apply(&flat),
        Err(layerstore::Error::InvalidTree { .. })
    ));
}

#[test]
fn the_root_metadata_is_part_of_the_tree() {
    let mut root_meta = Metadata::new(0o700);
    root_meta.uid = 1000;
    let layers = [layer(
        vec![Entry::dir(layerstore::TreePath::ROOT, root_meta.clone())],
        &[],
        &[],
    )];
    let flat = flatten(&layers).unwrap();
    assert_eq!(flat.root().meta, root_meta);
    assert_ne!(flat.id(), Snapshot::empty().id());
    let changes: Vec<String> = Snapshot::empty()
        .changes(&flat)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(changes, ["M ."]);
}
