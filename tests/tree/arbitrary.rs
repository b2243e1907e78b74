//! Random trees for quickcheck: every entry kind, random metadata (setuid,
//! setgid and sticky bits included), xattrs, nested directories, hard links,
//! and names that are not UTF-8 or that sort around `/` (`a`, `a.b`, `a-`).

use std::collections::BTreeMap;

use layerstore::{
    ChunkId, ChunkList, ChunkRef, Entry, EntryKind, Metadata, Snapshot, Timestamp, TreePath,
};
use quickcheck::{Arbitrary, Gen};

const NAMES: &[&[u8]] = &[
    b"a",
    b"b",
    b"a.b",
    b"a-",
    b"ab",
    b"\xff",
    b"\xc3\xa9",
    b".wh.x",
    b"c d",
    b"\x01",
];

fn pick<T: Copy>(g: &mut Gen, items: &[T]) -> T {
    *g.choose(items).unwrap()
}

fn below(g: &mut Gen, n: usize) -> usize {
    usize::arbitrary(g) % n
}

pub fn metadata(g: &mut Gen) -> Metadata {
    let mut meta = Metadata::new(pick(
        g,
        &[0o755, 0o644, 0o600, 0o4755, 0o2755, 0o1777, 0o7777, 0],
    ));
    meta.uid = pick(g, &[0, 1, 1000, u32::MAX]);
    meta.gid = pick(g, &[0, 1, 1000]);
    meta.mtime = Timestamp::new(
        pick(g, &[0, 1, -1, 1_700_000_000, i64::MIN]),
        pick(g, &[0, 1, 999_999_999]),
    );
    for _ in 0..below(g, 3) {
        let name: &[u8] = pick(
            g,
            &[
                &b"user.a"[..],
                b"security.capability",
                b"trusted.overlay.opaque",
            ],
        );
        let value: &[u8] = pick(g, &[&b""[..], b"y", b"\0\xff"]);
        meta.xattrs.insert(name.to_vec(), value.to_vec());
    }
    meta
}

fn chunks(g: &mut Gen) -> ChunkList {
    (0..below(g, 3))
        .map(|_| ChunkRef {
            id: ChunkId::of(&[pick(g, &[0u8, 1, 2, 3])]),
            len: pick(g, &[1, 100, 65_536, 262_144]),
        })
        .collect()
}

fn kind(g: &mut Gen) -> EntryKind {
    match below(g, 8) {
        0 | 1 => EntryKind::Dir,
        2 | 3 => {
            let chunks = chunks(g);
            EntryKind::File {
                size: chunks.content_len(),
                chunks,
            }
        }
        4 => EntryKind::Symlink {
            target: pick(g, &[&b"a"[..], b"../x", b"/abs/path", b"\xff"]).to_vec(),
        },
        // Resolved to a real target (or turned into a file) by `fix_links`.
        5 => EntryKind::Hardlink {
            target: TreePath::ROOT,
        },
        6 => {
            if bool::arbitrary(g) {
                EntryKind::CharDevice {
                    rdev: pick(g, &[0, 0x0103, u64::MAX]),
                }
            } else {
                EntryKind::BlockDevice {
                    rdev: pick(g, &[0, 0x0801]),
                }
            }
        }
        _ => EntryKind::Fifo,
    }
}

/// Adds up to `n` random entries beneath existing directories.
fn grow(g: &mut Gen, tree: &mut BTreeMap<TreePath, Entry>, n: usize) {
    for _ in 0..n {
        let dirs: Vec<TreePath> = tree
            .values()
            .filter(|e| e.is_dir() && e.path.depth() < 4)
            .map(|e| e.path.clone())
            .collect();
        let parent = g.choose(&dirs).unwrap().clone();
        let path = parent.join(pick(g, NAMES)).unwrap();
        if let std::collections::btree_map::Entry::Vacant(slot) = tree.entry(path.clone()) {
            slot.insert(Entry::new(path, kind(g), metadata(g)));
        }
    }
}

/// Points every hard link at an earlier regular file (sharing its metadata,
/// like a scan would see), or makes it a file when there is none.
fn fix_links(g: &mut Gen, tree: &mut BTreeMap<TreePath, Entry>) {
    let paths: Vec<TreePath> = tree.keys().cloned().collect();
    for path in paths {
        let EntryKind::Hardlink { target } = &tree[&path].kind else {
            continue;
        };
        let keep = tree
            .get(target)
            .is_some_and(|t| t.is_file() && *target < path)
            && bool::arbitrary(g);
        if keep {
            continue;
        }
        let files: Vec<&Entry> = tree
            .range(..path.clone())
            .map(|(_, e)| e)
            .filter(|e| e.is_file())
            .collect();
        let new = match g.choose(&files) {
            Some(file) => Entry::hardlink(path.clone(), file.path.clone(), file.meta.clone()),
            None => Entry::file(path.clone(), chunks(g), metadata(g)),
        };
        tree.insert(path, new);
    }
}

fn to_snapshot(tree: BTreeMap<TreePath, Entry>) -> Snapshot {
    Snapshot::from_sorted(tree.into_values().collect()).expect("generator made an invalid tree")
}

fn random_tree(g: &mut Gen) -> BTreeMap<TreePath, Entry> {
    let mut tree = BTreeMap::new();
    tree.insert(TreePath::ROOT, Entry::dir(TreePath::ROOT, metadata(g)));
    let n = below(g, g.size().max(1) + 1);
    grow(g, &mut tree, n);
    fix_links(g, &mut tree);
    tree
}

/// A random change to `tree`: deletions of subtrees, metadata and content
/// edits, kind changes, additions, retargeted links.
fn mutate(g: &mut Gen, mut tree: BTreeMap<TreePath, Entry>) -> BTreeMap<TreePath, Entry> {
    for _ in 0..=below(g, 6) {
        let paths: Vec<TreePath> = tree.keys().cloned().collect();
        let path = g.choose(&paths).unwrap().clone();
        match below(g, 6) {
            0 if !path.is_root() => tree.retain(|k, _| *k != path && !path.is_ancestor_of(k)),
            1 => tree.get_mut(&path).unwrap().meta = metadata(g),
            2 => {
                let e = tree.get_mut(&path).unwrap();
                if let EntryKind::File { .. } = e.kind {
                    let c = chunks(g);
                    e.kind = EntryKind::File {
                        size: c.content_len(),
                        chunks: c,
                    };
                } else {
                    e.meta.mtime.nanos = (e.meta.mtime.nanos + 1) % 1_000_000_000;
                }
            }
            3 if !path.is_root() => {
                // A new kind; a directory that stops being one loses its subtree.
                let new = kind(g);
                if !matches!(new, EntryKind::Dir) {
                    tree.retain(|k, _| !path.is_ancestor_of(k));
                }
                tree.get_mut(&path).unwrap().kind = new;
            }
            4 => {
                let n = below(g, 4) + 1;
                grow(g, &mut tree, n);
            }
            _ => {
                if let Some(e) = tree.get_mut(&path)
                    && matches!(e.kind, EntryKind::Hardlink { .. })
                {
                    e.kind = EntryKind::Hardlink {
                        target: TreePath::ROOT,
                    };
                }
            }
        }
    }
    // Links whose target went away or changed kind get a new target.
    let broken: Vec<TreePath> = tree
        .values()
        .filter(|e| {
            matches!(&e.kind, EntryKind::Hardlink { target }
            if !tree.get(target).is_some_and(Entry::is_file))
        })
        .map(|e| e.path.clone())
        .collect();
    for path in broken {
        tree.get_mut(&path).unwrap().kind = EntryKind::Hardlink {
            target: TreePath::ROOT,
        };
    }
    fix_links(g, &mut tree);
    tree
}

/// A random valid tree.
#[derive(Clone, Debug)]
pub struct ArbTree(pub Snapshot);

impl Arbitrary for ArbTree {
    fn arbitrary(g: &mut Gen) -> Self {
        ArbTree(to_snapshot(random_tree(g)))
    }

    /// Smaller trees: drop one non-root entry with its subtree (and the links
    /// that then dangle).
    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        let tree = self.0.clone();
        Box::new((1..tree.entries().len()).rev().filter_map(move |i| {
            let gone = &tree.entries()[i].path;
            let kept: Vec<Entry> = tree
                .iter()
                .filter(|e| e.path != *gone && !gone.is_ancestor_of(&e.path))
                .filter(|e| {
                    !matches!(&e.kind, EntryKind::Hardlink { target }
                    if target == gone || gone.is_ancestor_of(target))
                })
                .cloned()
                .collect();
            Snapshot::from_sorted(kept).ok().map(ArbTree)
        }))
    }
}

/// Two related trees: usually the second is a mutation of the first, sometimes
/// an unrelated tree (names come from a small set, so paths still overlap).
#[derive(Clone, Debug)]
pub struct TreePair(pub Snapshot, pub Snapshot);

impl Arbitrary for TreePair {
    fn arbitrary(g: &mut Gen) -> Self {
        let a = random_tree(g);
        let b = if below(g, 4) == 0 {
            random_tree(g)
        } else {
            mutate(g, a.clone())
        };
        TreePair(to_snapshot(a), to_snapshot(b))
    }
}
