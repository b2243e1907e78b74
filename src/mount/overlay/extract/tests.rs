//! Tests of the layer cache: the overlay form of a layer, the names of
//! the cache's directories, pruning and stack keys.

use super::*;
use crate::tree::{Entry, EntryKind, Layer, Metadata, TreePath};

fn p(s: &str) -> TreePath {
    TreePath::new(s).unwrap()
}

fn dir(path: &str, mode: u32) -> Entry {
    Entry::dir(p(path), Metadata::new(mode))
}

fn file(store: &Store, path: &str, content: &[u8]) -> Entry {
    Entry::file(
        p(path),
        store.put_bytes(content).unwrap(),
        Metadata::new(0o644),
    )
}

fn store() -> (tempfile::TempDir, Store) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::create(tmp.path().join("s"), &crate::StoreOptions::default()).unwrap();
    (tmp, store)
}

#[test]
fn whiteouts_opaque_dirs_parents_and_lower_links_take_overlay_form() {
    let (_tmp, store) = store();
    let lower = Layer::new(
        vec![
            dir("", 0o755),
            dir("a", 0o750),
            dir("a/b", 0o755),
            file(&store, "a/b/k", b"k"),
            file(&store, "a/f1", b"one"),
            Entry::hardlink(p("a/f2"), p("a/f1"), Metadata::new(0o644)),
            dir("d", 0o755),
            file(&store, "d/1", b"1"),
            file(&store, "x", b"x"),
        ],
        vec![],
        vec![],
    )
    .unwrap();
    let base = lower.apply(&Snapshot::empty()).unwrap();
    let layer = Layer::new(
        vec![
            file(&store, "a/f1", b"new"),
            file(&store, "a/b/new", b"n"),
            dir("d", 0o700),
            file(&store, "d/3", b"3"),
            {
                let mut hostile = dir("a/b", 0o755);
                hostile
                    .meta
                    .xattrs
                    .insert(b"trusted.overlay.redirect".to_vec(), b"/d".to_vec());
                hostile
            },
            Entry::hardlink(p("z"), p("a/b/k"), Metadata::new(0o644)),
        ],
        vec![p("x"), p("d"), p("gone/never")],
        vec![],
    )
    .unwrap();
    let after = layer.apply(&base).unwrap();
    let tree = overlay_tree(&layer, &base, &after).unwrap();
    let paths: Vec<&str> = tree
        .iter()
        .map(|e| std::str::from_utf8(e.path.as_bytes()).unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "", "a", "a/b", "a/b/new", "a/f1", "a/f2", "d", "d/3", "x", "z"
        ]
    );
    // Implied parents carry the tree's metadata.
    assert_eq!(tree.get(&p("a")).unwrap().meta.mode, 0o750);
    // Deleted and recreated: opaque.
    let d = tree.get(&p("d")).unwrap();
    assert_eq!(
        d.meta.xattrs.get(OPAQUE_XATTR).map(Vec::as_slice),
        Some(&b"y"[..])
    );
    assert!(tree.get(&p("a")).unwrap().meta.xattrs.is_empty());
    // An image's own overlayfs xattrs never reach the lower directory.
    assert!(tree.get(&p("a/b")).unwrap().meta.xattrs.is_empty());
    // A whiteout of a lower file, none for what the lower tree lacks.
    assert_eq!(
        tree.get(&p("x")).unwrap().kind,
        EntryKind::CharDevice { rdev: 0 }
    );
    // The lower link follows its replaced target; the link to a lower
    // file is a copy.
    assert_eq!(
        tree.get(&p("a/f2")).unwrap().kind,
        EntryKind::Hardlink { target: p("a/f1") }
    );
    assert_eq!(
        tree.get(&p("z")).unwrap().kind,
        after.get(&p("a/b/k")).unwrap().kind
    );
}

#[test]
fn prune_keeps_live_chains_the_empty_dirs_and_running_extractions() {
    let (_tmp, store) = store();
    let cache = LayerCache::new(&store);
    cache.empty_dir(0).unwrap();
    let live = format!("{:064x}", 1);
    let dead = format!("{:064x}", 2);
    let running = format!("{TMP_PREFIX}-{}-0-0", std::process::id());
    let crashed = format!("{TMP_PREFIX}-{}-0-0", u32::MAX);
    let boot = boot_id().expect("a boot id on Linux");
    let other_boot = if boot.starts_with('0') { "1" } else { "0" }.repeat(32);
    // Kept and of this boot: synced and renamed to its final name.
    let fresh = format!("{:064x}", 3);
    let fresh_unsynced = format!("{fresh}{UNSYNCED}{boot}");
    // Kept but unsynced by an earlier boot: it may have lost data.
    let stale = format!("{live}{UNSYNCED}{other_boot}");
    let dead_unsynced = format!("{dead}{UNSYNCED}{boot}");
    for name in [
        &live,
        &dead,
        &running,
        &crashed,
        &format!("{FLAT_PREFIX}{live}"),
        &fresh_unsynced,
        &stale,
        &dead_unsynced,
    ] {
        std::fs::create_dir_all(cache.path_of(name).join("sub")).unwrap();
    }
    let keep = HashSet::from([live.clone(), fresh.clone()]);
    let removed = cache.prune(&keep).unwrap();
    let mut expected = vec![
        cache.path_of(&crashed),
        cache.path_of(&dead),
        cache.path_of(&stale),
        cache.path_of(&dead_unsynced),
    ];
    expected.sort();
    assert_eq!(removed, expected);
    for name in [
        &live,
        &running,
        &format!("{FLAT_PREFIX}{live}"),
        &EMPTY.to_owned(),
        &fresh,
    ] {
        assert!(cache.path_of(name).is_dir(), "{name}");
    }
    assert!(cache.path_of(&fresh).join("sub").is_dir());
    assert!(!cache.path_of(&fresh_unsynced).exists());
    for name in [&stale, &dead_unsynced, &dead, &crashed] {
        assert!(!cache.path_of(name).exists(), "{name}");
    }
}

#[test]
fn names_of_the_cache_parse() {
    let chain = format!("{:064x}", 9);
    let flat = format!("{FLAT_PREFIX}{chain}");
    let unsynced = format!("{flat}{UNSYNCED}abc");
    assert_eq!(Named::parse(EMPTY), Named::Empty);
    assert_eq!(
        Named::parse(&format!("{TMP_PREFIX}-{}-1-2", u32::MAX)),
        Named::Abandoned
    );
    assert_eq!(
        Named::parse(&chain),
        Named::Extraction {
            base: &chain,
            chain: &chain,
            unsynced: None
        }
    );
    assert_eq!(
        Named::parse(&unsynced),
        Named::Extraction {
            base: &flat,
            chain: &chain,
            unsynced: Some("abc")
        }
    );
}

#[test]
fn stack_keys_depend_on_every_layer_below() {
    let id = |b: u8| crate::LayerId::from_bytes([b; 32]);
    let image = |layers: Vec<crate::LayerId>| {
        let history = layers.iter().map(|_| crate::History::default()).collect();
        Image::new(
            layers,
            crate::SnapshotId::from_bytes([0; 32]),
            crate::ImageConfig::default(),
            history,
        )
        .unwrap()
    };
    let ab = stack_keys(&image(vec![id(1), id(2)]));
    let cb = stack_keys(&image(vec![id(3), id(2)]));
    let a = stack_keys(&image(vec![id(1)]));
    assert_eq!(ab[0], a[0]);
    assert_ne!(ab[1], cb[1]);
    assert_eq!(ab[1].len(), 64);
}
