//! Helpers shared by the tests of the overlay backend.

use super::*;
use crate::tree::{Entry, EntryKind, Layer, Metadata, TreePath};

pub(crate) use crate::testing::privileged;

pub(crate) fn p(s: &str) -> TreePath {
    TreePath::new(s).unwrap()
}

pub(crate) fn store() -> (tempfile::TempDir, Store) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::create(tmp.path().join("s"), &crate::StoreOptions::default()).unwrap();
    (tmp, store)
}

fn meta(mode: u32, secs: i64) -> Metadata {
    let mut m = Metadata::new(mode);
    m.mtime = crate::Timestamp::new(secs, 123);
    m.uid = 7;
    m.gid = 8;
    m
}

/// An image of three layers with whiteouts (of a file and of a whole
/// directory), an opaque directory, a directory deleted and recreated,
/// hard links within and across layers, a metadata-only change, a deep
/// upsert under unchanged parents, an empty layer; and its tree.
pub(crate) fn tricky_image(store: &Store) -> (Image, Snapshot) {
    let f = |path: &str, content: &[u8], mode: u32| {
        Entry::file(p(path), store.put_bytes(content).unwrap(), meta(mode, 1000))
    };
    let d = |path: &str, mode: u32, secs: i64| Entry::dir(p(path), meta(mode, secs));
    let mut xattr_file = f("a/x", b"xattr", 0o600);
    xattr_file
        .meta
        .xattrs
        .insert(b"user.note".to_vec(), b"kept".to_vec());
    let l1 = Layer::new(
        vec![
            d("", 0o755, 10),
            d("a", 0o750, 11),
            d("a/b", 0o755, 12),
            f("a/b/k", b"k", 0o644),
            f("a/f1", b"one", 0o644),
            Entry::hardlink(p("a/f2"), p("a/f1"), meta(0o644, 1000)),
            xattr_file,
            d("d", 0o755, 13),
            f("d/1", b"1", 0o644),
            d("e", 0o755, 14),
            d("e/sub", 0o755, 15),
            f("e/sub/deep", b"deep", 0o644),
            d("o", 0o755, 16),
            f("o/hidden", b"h", 0o644),
            Entry::symlink(p("s"), "a/b/k", meta(0o777, 17)),
            Entry::new(p("fifo"), EntryKind::Fifo, meta(0o640, 18)),
            f("x", b"x", 0o644),
            f("chmod-me", b"same content", 0o644),
        ],
        vec![],
        vec![],
    )
    .unwrap();
    let l2 = Layer::new(
        vec![
            f("a/f1", b"new", 0o644),
            d("d", 0o700, 20),
            f("d/3", b"3", 0o644),
            f("o/visible", b"v", 0o644),
            Entry::hardlink(p("z"), p("a/b/k"), meta(0o644, 1000)),
            f("chmod-me", b"same content", 0o600),
        ],
        vec![p("x"), p("d"), p("e")],
        vec![p("o")],
    )
    .unwrap();
    let l3 = Layer::new(vec![f("a/b/new", b"n", 0o644)], vec![], vec![]).unwrap();
    let empty = Layer::empty();
    let layers = [l1, l2, l3, empty];
    let tree = crate::flatten(&layers).unwrap();
    let ids = layers
        .iter()
        .map(|l| store.put_layer(l).unwrap())
        .collect::<Vec<_>>();
    let history = ids.iter().map(|_| crate::History::default()).collect();
    let rootfs = store.put_snapshot(&tree).unwrap();
    let image = Image::new(ids, rootfs, crate::ImageConfig::default(), history).unwrap();
    store.put_image(&image).unwrap();
    (image, tree)
}

/// `tree` with hard links replaced by copies of their target (overlayfs
/// cannot link across lower directories, so those come back as copies).
pub(crate) fn unlink(tree: &Snapshot) -> Snapshot {
    let entries = tree
        .iter()
        .map(|e| match &e.kind {
            EntryKind::Hardlink { target } => {
                let t = tree.get(target).unwrap();
                Entry::new(e.path.clone(), t.kind.clone(), t.meta.clone())
            }
            _ => e.clone(),
        })
        .collect();
    Snapshot::from_sorted(entries).unwrap()
}
