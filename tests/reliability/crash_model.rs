//! What a power loss may leave of a recorded run: a model of the file system
//! that replays the log of `fault::arm_record` (each write site's op and path,
//! the bytes of each file written) and, at each point of it, gives the
//! on-disk states a crash there could leave, under the rules that ALICE,
//! `CrashMonkey` and `LazyFS` assume of a POSIX file system such as ext4:
//!
//! - a file's bytes are durable up to its last completed fsync; what was
//!   written since may be lost, whole or in part (the file is then its
//!   synced bytes, its current bytes, or something between);
//! - a directory entry (a creation, a rename, a removal) is durable once the
//!   directory that holds it (for a rename, the destination's) was fsynced
//!   after it; until then it may be lost, and, with no fsync between them,
//!   persist out of order with the other entries not yet durable;
//! - a rename is atomic: the file is under its old name or its new one.
//!
//! The states of one point, bounded so that a test runs in seconds: the
//! entries not yet durable all kept, all lost, each prefix of them (the
//! journal's order) and each one lost alone (a reordering); and for each,
//! the unsynced bytes of every file kept, all lost, all torn half-way, and
//! each file's lost alone. States are told apart by
//! content, so a test checks each distinct state once.

use std::collections::{BTreeMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use layerstore::fault::Recorded;

type Ino = usize;

#[derive(Clone)]
enum Node {
    Dir,
    File {
        /// The bytes at the last fsync (none yet: empty).
        synced: Arc<Vec<u8>>,
        /// The bytes now.
        current: Arc<Vec<u8>>,
    },
}

/// A change to the namespace that is not durable yet.
#[derive(Clone, Debug)]
struct EntryOp {
    /// The directory whose fsync makes it durable.
    dir: PathBuf,
    /// Paths it removes (each if it still names that inode).
    unlink: Vec<(PathBuf, Ino)>,
    /// The path it makes name an inode.
    link: Option<(PathBuf, Ino)>,
}

impl EntryOp {
    fn apply(&self, names: &mut BTreeMap<PathBuf, Ino>) {
        for (path, ino) in &self.unlink {
            if names.get(path) == Some(ino) {
                names.remove(path);
            }
        }
        if let Some((path, ino)) = &self.link {
            names.insert(path.clone(), *ino);
        }
    }
}

/// A file's bytes in a crash state: a prefix of a version it had.
#[derive(Clone)]
pub(crate) struct Bytes {
    version: Arc<Vec<u8>>,
    len: usize,
}

impl Bytes {
    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.version[..self.len]
    }
}

/// One on-disk state: every path under the root (relative), a directory
/// (`None`) or a file's bytes.
pub(crate) struct CrashState {
    /// How it was made: which entries and bytes were lost.
    pub(crate) label: String,
    pub(crate) files: BTreeMap<PathBuf, Option<Bytes>>,
}

impl CrashState {
    fn digest(&self) -> u64 {
        let mut h = DefaultHasher::new();
        for (path, bytes) in &self.files {
            path.hash(&mut h);
            match bytes {
                None => 0u8.hash(&mut h),
                Some(b) => {
                    1u8.hash(&mut h);
                    b.as_slice().hash(&mut h);
                }
            }
        }
        h.finish()
    }

    /// Writes the state into `dest` (which must not exist).
    pub(crate) fn materialise(&self, dest: &Path) {
        std::fs::create_dir_all(dest).unwrap();
        for (path, bytes) in &self.files {
            let at = dest.join(path);
            match bytes {
                None => std::fs::create_dir_all(&at).unwrap(),
                Some(b) => std::fs::write(&at, b.as_slice()).unwrap(),
            }
        }
    }
}

/// What the unsynced bytes of files become in a state.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Data {
    Kept,
    Lost,
    Torn,
    /// Only this inode's lost.
    LostOne(Ino),
}

/// The file system as a recorded run leaves it, step by step.
pub(crate) struct Model {
    root: PathBuf,
    nodes: Vec<Node>,
    /// The namespace now (paths relative to the root).
    current: BTreeMap<PathBuf, Ino>,
    /// The namespace that survives a crash for sure.
    durable: BTreeMap<PathBuf, Ino>,
    /// Entries not yet durable, in the order they were made.
    pending: Vec<EntryOp>,
    /// Digests of the states given so far.
    seen: HashSet<u64>,
}

impl Model {
    /// The model of the tree under `root` as it is now, all of it durable.
    pub(crate) fn snapshot(root: &Path) -> Self {
        let mut model = Self {
            root: root.to_path_buf(),
            nodes: Vec::new(),
            current: BTreeMap::new(),
            durable: BTreeMap::new(),
            pending: Vec::new(),
            seen: HashSet::new(),
        };
        for (rel, bytes) in walk(root) {
            let node = match bytes {
                None => Node::Dir,
                Some(b) => {
                    let b = Arc::new(b);
                    Node::File {
                        synced: Arc::clone(&b),
                        current: b,
                    }
                }
            };
            model.nodes.push(node);
            model.current.insert(rel, model.nodes.len() - 1);
        }
        model.durable = model.current.clone();
        model
    }

    fn rel(&self, path: &Path) -> PathBuf {
        path.strip_prefix(&self.root)
            .unwrap_or_else(|_| panic!("{} is not under the root", path.display()))
            .to_path_buf()
    }

    fn parent(rel: &Path) -> PathBuf {
        rel.parent().map(Path::to_path_buf).unwrap_or_default()
    }

    fn ino(&self, rel: &Path) -> Ino {
        *self
            .current
            .get(rel)
            .unwrap_or_else(|| panic!("the model has no {}", rel.display()))
    }

    /// Applies one recorded event.
    pub(crate) fn apply(&mut self, event: &Recorded) {
        match event {
            Recorded::Mark(_) => {}
            Recorded::Content { path, bytes } => {
                let rel = self.rel(path);
                let ino = self.ino(&rel);
                if let Node::File { current, .. } = &mut self.nodes[ino] {
                    *current = Arc::new(bytes.clone());
                }
            }
            Recorded::Site { op, path, from } => {
                let rel = self.rel(path);
                match *op {
                    "create" => {
                        if let Some(&ino) = self.current.get(&rel) {
                            // Truncated in place: the same inode.
                            if let Node::File { current, .. } = &mut self.nodes[ino] {
                                *current = Arc::new(Vec::new());
                            }
                        } else {
                            let empty = Arc::new(Vec::new());
                            self.nodes.push(Node::File {
                                synced: Arc::clone(&empty),
                                current: empty,
                            });
                            self.link(&rel, self.nodes.len() - 1, Vec::new());
                        }
                    }
                    "write" => {}
                    "fsync" => {
                        let ino = self.ino(&rel);
                        if let Node::File { synced, current } = &mut self.nodes[ino] {
                            *synced = Arc::clone(current);
                        }
                    }
                    "fsync directory" => {
                        let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
                            .into_iter()
                            .partition(|op| op.dir == rel);
                        for op in &now {
                            op.apply(&mut self.durable);
                        }
                        // A rename made durable takes its source's creation
                        // with it: the name is gone whatever becomes of that.
                        let moved: Vec<&(PathBuf, Ino)> =
                            now.iter().flat_map(|op| &op.unlink).collect();
                        self.pending = later
                            .into_iter()
                            .filter(|op| op.link.as_ref().is_none_or(|l| !moved.contains(&l)))
                            .collect();
                    }
                    "rename into place" => {
                        let from = self.rel(from.as_ref().expect("a rename has a source"));
                        let ino = self.ino(&from);
                        assert!(
                            matches!(self.nodes[ino], Node::File { .. }),
                            "the model renames files only: {}",
                            from.display()
                        );
                        self.current.remove(&from);
                        self.link(&rel, ino, vec![(from, ino)]);
                    }
                    "remove" | "remove stale temporary file" => {
                        let gone: Vec<(PathBuf, Ino)> = self
                            .current
                            .iter()
                            .filter(|(p, _)| p.starts_with(&rel))
                            .map(|(p, i)| (p.clone(), *i))
                            .collect();
                        if gone.is_empty() {
                            return; // Removing what is absent does nothing.
                        }
                        for (p, _) in &gone {
                            self.current.remove(p);
                        }
                        self.pending.push(EntryOp {
                            dir: Self::parent(&rel),
                            unlink: gone,
                            link: None,
                        });
                    }
                    "create directory" => {
                        let mut at = PathBuf::new();
                        for part in rel.components() {
                            at.push(part);
                            if !self.current.contains_key(&at) {
                                self.nodes.push(Node::Dir);
                                self.link(&at.clone(), self.nodes.len() - 1, Vec::new());
                            }
                        }
                    }
                    other => panic!("the crash model does not know the op '{other}'"),
                }
            }
            _ => panic!("the crash model does not know {event:?}"),
        }
    }

    fn link(&mut self, rel: &Path, ino: Ino, unlink: Vec<(PathBuf, Ino)>) {
        self.current.insert(rel.to_path_buf(), ino);
        self.pending.push(EntryOp {
            dir: Self::parent(rel),
            unlink,
            link: Some((rel.to_path_buf(), ino)),
        });
    }

    /// The states a crash now could leave that no earlier call with the same
    /// `epoch` gave (the caller's count of acknowledgments: a state seen
    /// before one is checked again after it, against more).
    pub(crate) fn crash_states(&mut self, epoch: usize) -> Vec<CrashState> {
        let n = self.pending.len();
        let mut masks: Vec<(String, Vec<bool>)> = vec![("all entries kept".into(), vec![true; n])];
        if n > 0 {
            masks.push(("no unsynced entry kept".into(), vec![false; n]));
        }
        for k in 1..n {
            masks.push((
                format!("the first {k} of {n} unsynced entries kept"),
                (0..n).map(|i| i < k).collect(),
            ));
        }
        if n > 1 {
            for k in 0..n {
                masks.push((
                    format!("unsynced entry {} of {n} lost alone", k + 1),
                    (0..n).map(|i| i != k).collect(),
                ));
            }
        }
        let mut out = Vec::new();
        for (what, mask) in &masks {
            let mut names = self.durable.clone();
            for (op, keep) in self.pending.iter().zip(mask) {
                if *keep {
                    op.apply(&mut names);
                }
            }
            let names = reachable(&names, &self.nodes);
            let unsynced: Vec<Ino> = names
                .values()
                .copied()
                .filter(|&ino| {
                    matches!(&self.nodes[ino], Node::File { synced, current } if !Arc::ptr_eq(synced, current) && synced != current)
                })
                .collect();
            let mut datas = vec![Data::Kept];
            if !unsynced.is_empty() {
                datas.extend([Data::Lost, Data::Torn]);
                if unsynced.len() > 1 {
                    datas.extend(unsynced.iter().map(|&i| Data::LostOne(i)));
                }
            }
            for data in datas {
                let state = self.state(&names, data, what);
                if self.seen.insert(state.digest() ^ epoch as u64) {
                    out.push(state);
                }
            }
        }
        out
    }

    fn state(&self, names: &BTreeMap<PathBuf, Ino>, data: Data, what: &str) -> CrashState {
        let mut files = BTreeMap::new();
        for (path, &ino) in names {
            let bytes = match &self.nodes[ino] {
                Node::Dir => None,
                Node::File { synced, current } => Some(match data {
                    Data::Kept => full(current),
                    Data::LostOne(i) if i != ino => full(current),
                    Data::Lost | Data::LostOne(_) => full(synced),
                    Data::Torn => {
                        if current.starts_with(synced) {
                            Bytes {
                                version: Arc::clone(current),
                                len: synced.len() + (current.len() - synced.len()) / 2,
                            }
                        } else {
                            full(synced)
                        }
                    }
                }),
            };
            files.insert(path.clone(), bytes);
        }
        let data = match data {
            Data::Kept => "unsynced bytes kept".to_owned(),
            Data::Lost => "unsynced bytes lost".to_owned(),
            Data::Torn => "unsynced bytes torn half-way".to_owned(),
            Data::LostOne(i) => {
                let path = names.iter().find(|(_, v)| **v == i).map(|(p, _)| p);
                format!(
                    "the unsynced bytes of {} lost alone",
                    path.unwrap().display()
                )
            }
        };
        CrashState {
            label: format!("{what}, {data}"),
            files,
        }
    }

    /// Asserts that the model's namespace and bytes are the tree's under the
    /// root now: that the recording saw every write.
    pub(crate) fn assert_matches_disk(&self) {
        let disk: BTreeMap<PathBuf, Option<Vec<u8>>> = walk(&self.root).into_iter().collect();
        let model: BTreeMap<PathBuf, Option<Vec<u8>>> = self
            .current
            .iter()
            .map(|(p, &ino)| {
                let bytes = match &self.nodes[ino] {
                    Node::Dir => None,
                    Node::File { current, .. } => Some(current.to_vec()),
                };
                (p.clone(), bytes)
            })
            .collect();
        let disk_paths: Vec<_> = disk.keys().collect();
        let model_paths: Vec<_> = model.keys().collect();
        assert_eq!(
            disk_paths, model_paths,
            "a write site was not recorded (paths differ)"
        );
        for (path, bytes) in &disk {
            assert!(
                model[path] == *bytes,
                "a write of {} was not recorded",
                path.display()
            );
        }
    }
}

fn full(bytes: &Arc<Vec<u8>>) -> Bytes {
    Bytes {
        version: Arc::clone(bytes),
        len: bytes.len(),
    }
}

/// The entries of `names` whose every ancestor is a directory in it.
fn reachable(names: &BTreeMap<PathBuf, Ino>, nodes: &[Node]) -> BTreeMap<PathBuf, Ino> {
    names
        .iter()
        .filter(|(path, _)| {
            path.ancestors()
                .skip(1)
                .filter(|a| !a.as_os_str().is_empty())
                .all(|a| matches!(names.get(a).map(|&i| &nodes[i]), Some(Node::Dir)))
        })
        .map(|(p, i)| (p.clone(), *i))
        .collect()
}

/// Every directory (`None`) and file (its bytes) under `root`, by relative path.
fn walk(root: &Path) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in std::fs::read_dir(root.join(&rel)).unwrap() {
            let entry = entry.unwrap();
            let child = rel.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                out.push((child.clone(), None));
                stack.push(child);
            } else {
                out.push((child, Some(std::fs::read(entry.path()).unwrap())));
            }
        }
    }
    out
}
