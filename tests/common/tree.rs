//! Trees on disk, walked with `lstat` (independent of the crate's scanner),
//! what a snapshot should check out to, and an attribute-by-attribute
//! comparison of the two.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use layerstore::{Entry, EntryKind, Snapshot, Store, TreePath};

fn p(bytes: impl Into<Vec<u8>>) -> TreePath {
    TreePath::new(bytes).unwrap()
}

/// What a path is, with what only that kind has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    File(Vec<u8>),
    Dir,
    Symlink(Vec<u8>),
    CharDevice(u64),
    BlockDevice(u64),
    Fifo,
}

/// Everything checkout restores about one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    pub(crate) kind: Kind,
    /// `st_mode & 0o7777`; `None` for symlinks, whose mode Linux fixes.
    pub(crate) mode: Option<u32>,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) mtime: (i64, i64),
    pub(crate) xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// For a file with several names: the first of them in tree order.
    pub(crate) link_group: Option<Vec<u8>>,
}

/// A walked or expected tree: path bytes (empty for the root) to node.
pub(crate) type Tree = BTreeMap<Vec<u8>, Node>;

/// The xattrs of `path` (not following a link), by name.
pub fn xattrs_of(path: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let size = rustix::fs::llistxattr_query(path).unwrap();
    let mut list = vec![0u8; size];
    let len = rustix::fs::llistxattr(path, &mut list[..]).unwrap();
    list.truncate(len);
    let mut out = BTreeMap::new();
    for name in list.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        // Labels a security module may put on any new file.
        if name == b"security.selinux" {
            continue;
        }
        let size = rustix::fs::lgetxattr_query(path, name).unwrap();
        let mut value = vec![0u8; size];
        let len = rustix::fs::lgetxattr(path, name, &mut value[..]).unwrap();
        value.truncate(len);
        out.insert(name.to_vec(), value);
    }
    out
}

/// Walks `dir` with `lstat`, `readlink`, `read_dir` and the `l*xattr` calls,
/// never following a link. Hard-link groups are found by inode.
pub(crate) fn walk(dir: &Path) -> Tree {
    let mut tree = Tree::new();
    let mut inodes: HashMap<(u64, u64), Vec<Vec<u8>>> = HashMap::new();
    let mut stack = vec![Vec::<u8>::new()];
    while let Some(rel) = stack.pop() {
        let full = if rel.is_empty() {
            dir.to_owned()
        } else {
            dir.join(OsStr::from_bytes(&rel))
        };
        let st = std::fs::symlink_metadata(&full).unwrap();
        let ft = st.file_type();
        let kind = if ft.is_dir() {
            for child in std::fs::read_dir(&full).unwrap() {
                let name = child.unwrap().file_name();
                let mut child_rel = rel.clone();
                if !child_rel.is_empty() {
                    child_rel.push(b'/');
                }
                child_rel.extend_from_slice(name.as_bytes());
                stack.push(child_rel);
            }
            Kind::Dir
        } else if ft.is_file() {
            if st.nlink() > 1 {
                inodes
                    .entry((st.dev(), st.ino()))
                    .or_default()
                    .push(rel.clone());
            }
            Kind::File(std::fs::read(&full).unwrap())
        } else if ft.is_symlink() {
            Kind::Symlink(
                std::fs::read_link(&full)
                    .unwrap()
                    .into_os_string()
                    .into_vec(),
            )
        } else if ft.is_char_device() {
            Kind::CharDevice(st.rdev())
        } else if ft.is_block_device() {
            Kind::BlockDevice(st.rdev())
        } else if ft.is_fifo() {
            Kind::Fifo
        } else {
            panic!("unexpected file type at {}", full.display());
        };
        let is_link = matches!(kind, Kind::Symlink(_));
        tree.insert(
            rel,
            Node {
                kind,
                mode: (!is_link).then_some(st.mode() & 0o7777),
                uid: st.uid(),
                gid: st.gid(),
                mtime: (st.mtime(), st.mtime_nsec()),
                xattrs: xattrs_of(&full),
                link_group: None,
            },
        );
    }
    for (_, names) in inodes {
        let first = names
            .iter()
            .min_by_key(|n| p((*n).clone()))
            .unwrap()
            .clone();
        for name in names {
            tree.get_mut(&name).unwrap().link_group = Some(first.clone());
        }
    }
    tree
}

/// The tree that checking out `snapshot` should give. Devices listed in
/// `skipped` are left out.
pub(crate) fn expected(store: &Store, snapshot: &Snapshot, skipped: &[TreePath]) -> Tree {
    let linked: Vec<&TreePath> = snapshot
        .iter()
        .filter_map(|e| match &e.kind {
            EntryKind::Hardlink { target } => Some(target),
            _ => None,
        })
        .collect();
    let node = |e: &Entry, kind: Kind, link_group: Option<Vec<u8>>| Node {
        mode: (!matches!(kind, Kind::Symlink(_))).then_some(e.meta.mode),
        kind,
        uid: e.meta.uid,
        gid: e.meta.gid,
        mtime: (e.meta.mtime.secs, i64::from(e.meta.mtime.nanos)),
        xattrs: e.meta.xattrs.clone(),
        link_group,
    };
    let mut tree = Tree::new();
    for e in snapshot {
        if skipped.contains(&e.path) {
            continue;
        }
        let bytes = e.path.as_bytes().to_vec();
        let n = match &e.kind {
            EntryKind::File { chunks, .. } => {
                let group = linked.contains(&&e.path).then(|| bytes.clone());
                node(e, Kind::File(store.read_all(chunks).unwrap()), group)
            }
            EntryKind::Hardlink { target } => {
                let t = snapshot.get(target).unwrap();
                let EntryKind::File { chunks, .. } = &t.kind else {
                    panic!("hard link to a non-file");
                };
                let content = Kind::File(store.read_all(chunks).unwrap());
                node(t, content, Some(target.as_bytes().to_vec()))
            }
            EntryKind::Dir => node(e, Kind::Dir, None),
            EntryKind::Symlink { target } => node(e, Kind::Symlink(target.clone()), None),
            EntryKind::CharDevice { rdev } => node(e, Kind::CharDevice(*rdev), None),
            EntryKind::BlockDevice { rdev } => node(e, Kind::BlockDevice(*rdev), None),
            EntryKind::Fifo => node(e, Kind::Fifo, None),
        };
        tree.insert(bytes, n);
    }
    tree
}

/// Asserts that two trees are equal, naming the first path that differs.
pub(crate) fn assert_same(actual: &Tree, expected: &Tree) {
    let shown = |k: &[u8]| String::from_utf8_lossy(k).into_owned();
    for (path, want) in expected {
        let got = actual
            .get(path)
            .unwrap_or_else(|| panic!("'{}' is missing from the checkout", shown(path)));
        assert_eq!(got, want, "'{}' differs", shown(path));
    }
    for path in actual.keys() {
        assert!(
            expected.contains_key(path),
            "'{}' should not be in the checkout",
            shown(path)
        );
    }
}

/// Makes every directory under `dir` writable again so that the temporary
/// directory can be removed (a checkout restores read-only directories).
pub(crate) fn make_removable(dir: &Path) {
    let mut stack: Vec<PathBuf> = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let _ = rustix::fs::chmod(&d, rustix::fs::Mode::from_raw_mode(0o700));
        if let Ok(rd) = std::fs::read_dir(&d) {
            for child in rd.flatten() {
                if child.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(child.path());
                }
            }
        }
    }
}
