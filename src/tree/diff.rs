//! Comparing two snapshots: the layer that turns one into the other, and the
//! list of changed paths.
//!
//! Both come from one merge of the two sorted entry lists; no file is touched.
//!
//! # Rules
//!
//! Walking the paths of `old` and `new` in order:
//! - only in `new`: upserted ([`ChangeKind::Added`]);
//! - in both, entries differ: upserted ([`ChangeKind::Modified`]); metadata-only
//!   changes (mode, owner, mtime, xattrs) count. A directory replaced by a
//!   directory is an in-place update: its lower children stay unless removed
//!   one by one. Anything replaced by a non-directory takes its old
//!   descendants with it (the apply rule), so those get no whiteouts and no
//!   change records;
//! - in both, entries equal, but the entry is a hard link whose target was
//!   upserted: re-emitted ([`ChangeKind::Modified`]), so that a layer exported
//!   as a tar (where an upserted file is a new inode) keeps the link group whole;
//! - only in `old`: one whiteout ([`ChangeKind::Deleted`]) for the topmost
//!   deleted path; its descendants get neither whiteouts nor change records
//!   (moby's convention for `docker diff`).
//!
//! The diff never emits opaque directories: from two snapshots, "emptied and
//! refilled" and "deleted and recreated" are the same tree, and whiteouts of
//! the removed children give it. Opaque directories come from layers made
//! elsewhere (OCI tars, overlayfs upper directories), and `apply` honours them.

use std::collections::HashSet;
use std::fmt;

use crate::tree::entry::{Entry, EntryKind};
use crate::tree::layer::Layer;
use crate::tree::path::TreePath;
use crate::tree::snapshot::Snapshot;

/// What happened to a path between two trees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChangeKind {
    /// The path is new.
    Added,
    /// The path exists in both trees, with a different entry (kind, content,
    /// metadata, link target), or is a hard link whose target file changed.
    Modified,
    /// The path is gone. A deleted directory's descendants are not listed.
    Deleted,
}

impl ChangeKind {
    /// `A`, `M` or `D`, as `layerstore diff` prints it.
    #[must_use]
    pub const fn letter(self) -> char {
        match self {
            ChangeKind::Added => 'A',
            ChangeKind::Modified => 'M',
            ChangeKind::Deleted => 'D',
        }
    }
}

/// One changed path, from [`Snapshot::changes`] or [`Layer::changes`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Change {
    /// What happened.
    pub kind: ChangeKind,
    /// To which path.
    pub path: TreePath,
}

impl fmt::Display for Change {
    /// `A path`, `M path` or `D path`; the root is `.`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.letter(), self.path)
    }
}

/// One step of the merge.
enum Step<'a> {
    Upsert(&'a Entry, ChangeKind),
    Whiteout(&'a TreePath),
}

/// Merges `old` and `new`, calling `out` for each upsert and whiteout, in path
/// order.
fn merge<'a>(old: &'a [Entry], new: &'a [Entry], mut out: impl FnMut(Step<'a>)) {
    let (mut i, mut j) = (0, 0);
    // A path of `old` whose descendants are gone with it (deleted, or replaced
    // by a non-directory). Descendants are contiguous, so one suffices.
    let mut gone: Option<&TreePath> = None;
    // Regular files upserted so far that some hard link of `new` names: links
    // to them are re-emitted. (Only those: hashing every file's path costs
    // more than the rest of a large diff.)
    let link_targets: HashSet<&TreePath> = new
        .iter()
        .filter_map(|e| match &e.kind {
            EntryKind::Hardlink { target } => Some(target),
            _ => None,
        })
        .collect();
    let mut upserted_files: HashSet<&TreePath> = HashSet::new();
    loop {
        let order = match (old.get(i), new.get(j)) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(a), Some(b)) => a.path.cmp(&b.path),
        };
        match order {
            std::cmp::Ordering::Less => {
                let a = &old[i];
                i += 1;
                if !gone.is_some_and(|g| g.is_ancestor_of(&a.path)) {
                    gone = Some(&a.path);
                    out(Step::Whiteout(&a.path));
                }
            }
            std::cmp::Ordering::Greater => {
                let b = &new[j];
                j += 1;
                if b.is_file() && !link_targets.is_empty() && link_targets.contains(&b.path) {
                    upserted_files.insert(&b.path);
                }
                out(Step::Upsert(b, ChangeKind::Added));
            }
            std::cmp::Ordering::Equal => {
                let (a, b) = (&old[i], &new[j]);
                i += 1;
                j += 1;
                let relinked = matches!(&b.kind, EntryKind::Hardlink { target }
                    if upserted_files.contains(target));
                if a != b || relinked {
                    if a.is_dir() && !b.is_dir() {
                        gone = Some(&a.path);
                    }
                    if b.is_file() && !link_targets.is_empty() && link_targets.contains(&b.path) {
                        upserted_files.insert(&b.path);
                    }
                    out(Step::Upsert(b, ChangeKind::Modified));
                }
            }
        }
    }
}

/// Comparing
impl Snapshot {
    /// The layer that turns `self` into `newer`: `self.diff(&newer).apply(&self)`
    /// equals `newer`. One merge of the two sorted lists, O(n); see the module
    /// rules for what is upserted and what is whited out.
    #[must_use]
    pub fn diff(&self, newer: &Snapshot) -> Layer {
        diff_entries(self.entries(), newer.entries())
    }

    /// The paths that differ between `self` and `newer`, sorted by path:
    /// added, modified, or deleted (a deleted directory is listed alone, and a
    /// directory replaced by a non-directory is listed as modified, without
    /// its old descendants).
    #[must_use]
    pub fn changes(&self, newer: &Snapshot) -> Vec<Change> {
        changes_of_entries(self.entries(), newer.entries())
    }
}

/// [`Snapshot::diff`] of two sorted entry lists. They need not be whole
/// trees: parts equal in both and holding no hard link may be left out of
/// both (what a diff of stored trees does).
pub(crate) fn diff_entries(old: &[Entry], new: &[Entry]) -> Layer {
    let mut upserts = Vec::new();
    let mut whiteouts = Vec::new();
    merge(old, new, |step| match step {
        Step::Upsert(e, _) => upserts.push(e.clone()),
        Step::Whiteout(p) => whiteouts.push(p.clone()),
    });
    Layer::from_canonical_parts(upserts, whiteouts, Vec::new())
}

/// [`Snapshot::changes`] of two sorted entry lists, as [`diff_entries`].
pub(crate) fn changes_of_entries(old: &[Entry], new: &[Entry]) -> Vec<Change> {
    let mut changes = Vec::new();
    merge(old, new, |step| {
        changes.push(match step {
            Step::Upsert(e, kind) => Change {
                kind,
                path: e.path.clone(),
            },
            Step::Whiteout(p) => Change {
                kind: ChangeKind::Deleted,
                path: p.clone(),
            },
        });
    });
    changes
}
