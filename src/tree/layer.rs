//! A change set over a lower tree, with the OCI layer rules.

use std::borrow::Cow;

use crate::error::{Error, Result};
use crate::id::{LayerId, SnapshotId};
use crate::tree::codec::{self, ObjectKind};
use crate::tree::diff::Change;
use crate::tree::directory;
use crate::tree::entry::{Entry, Metadata};
use crate::tree::path::TreePath;
use crate::tree::snapshot::{self, Snapshot};

/// An immutable change set over a lower tree, with the semantics of an OCI
/// image layer:
///
/// - **whiteouts**: each path is deleted from the lower tree, with everything
///   beneath it. Whiteouts act on the lower tree only, never on this layer's
///   own upserts, so a whiteout and an upsert of one path mean "delete, then
///   create afresh". A whiteout of a path the lower tree lacks is ignored, as
///   the OCI spec asks of implementations.
/// - **opaque directories**: every lower entry strictly beneath the path is
///   hidden (the directory itself stays unless whited out or upserted).
/// - **upserts**: entries, with full metadata, added or replacing the lower
///   entry at their path. Replacing a lower directory with anything but a
///   directory removes the directory's lower descendants; replacing a
///   directory with a directory keeps them (a metadata update).
///
/// All three lists are kept sorted by path, which makes the encoding, and so
/// the [`id`](Layer::id), canonical.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Layer {
    upserts: Vec<Entry>,
    whiteouts: Vec<TreePath>,
    opaque_dirs: Vec<TreePath>,
}

/// The stored object of the layer that makes the tree `tree` of the empty
/// tree ([`Layer::whole_tree_entries`]): the tree's id.
pub(crate) fn encode_of_tree(tree: &SnapshotId) -> Vec<u8> {
    codec::encode(ObjectKind::LayerOfTree, tree.as_bytes())
}

/// A layer's object as the store holds it.
pub(crate) enum StoredLayer {
    /// Entry by entry: [`Layer::encode`].
    Flat(Layer),
    /// The layer that makes this tree of the empty tree.
    OfTree(SnapshotId),
}

/// Decodes a stored layer object of either kind. A flat one that is a layer
/// of a whole tree is refused: in a store, such a layer has one encoding,
/// the tree's id.
///
/// # Errors
/// As [`Layer::decode`].
pub(crate) fn decode_stored(bytes: &[u8]) -> Result<StoredLayer> {
    if bytes.get(4) == Some(&(ObjectKind::LayerOfTree as u8)) {
        let id: [u8; 32] = codec::decode(ObjectKind::LayerOfTree, bytes)?;
        return Ok(StoredLayer::OfTree(SnapshotId::from_bytes(id)));
    }
    let layer = Layer::decode(bytes)?;
    if layer.whole_tree_entries().is_some() {
        return Err(Error::Malformed {
            what: "layer",
            reason: "a layer of a whole tree stored entry by entry".to_owned(),
        });
    }
    Ok(StoredLayer::Flat(layer))
}

/// Making
impl Layer {
    /// The layer that changes nothing.
    #[must_use]
    pub fn empty() -> Self {
        Self::default()
    }

    /// A layer of these parts, in any order; they are sorted.
    ///
    /// # Errors
    /// [`Error::InvalidTree`] if a path occurs twice in one list, the root is
    /// whited out or upserted as something other than a directory, or an
    /// upsert fails [`Entry::check`].
    pub fn new(
        mut upserts: Vec<Entry>,
        mut whiteouts: Vec<TreePath>,
        mut opaque_dirs: Vec<TreePath>,
    ) -> Result<Self> {
        upserts.sort_by(|a, b| a.path.cmp(&b.path));
        whiteouts.sort();
        opaque_dirs.sort();
        let layer = Self {
            upserts,
            whiteouts,
            opaque_dirs,
        };
        layer.validate()?;
        Ok(layer)
    }

    /// The layer that makes `tree` of the empty tree: what
    /// `Snapshot::empty().diff(&tree)` gives (every entry, the root only if
    /// its metadata is not the empty tree's), without copying the entries.
    #[must_use]
    pub fn of_tree(tree: Snapshot) -> Self {
        let mut upserts = tree.into_entries();
        if upserts.first() == Snapshot::empty().entries().first() {
            upserts.remove(0);
        }
        Self::from_canonical_parts(upserts, Vec::new(), Vec::new())
    }

    /// A layer from parts already sorted and valid (the diff's output).
    pub(crate) fn from_canonical_parts(
        upserts: Vec<Entry>,
        whiteouts: Vec<TreePath>,
        opaque_dirs: Vec<TreePath>,
    ) -> Self {
        let layer = Self {
            upserts,
            whiteouts,
            opaque_dirs,
        };
        debug_assert!(layer.validate().is_ok(), "{:?}", layer.validate());
        layer
    }

    /// The canonical encoding: header (magic, kind, version) and a `postcard`
    /// body holding upserts, whiteouts and opaque directories, each sorted.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(
            ObjectKind::Layer,
            &(&self.upserts, &self.whiteouts, &self.opaque_dirs),
        )
    }

    /// Decodes what [`Layer::encode`] wrote. Lists out of order are refused,
    /// not sorted, so that one layer has one encoding. Never panics; memory use
    /// is bounded by a small multiple of `bytes.len()`.
    ///
    /// # Errors
    /// [`Error::Malformed`] if the bytes are not an encoded layer,
    /// [`Error::InvalidTree`] if they encode an invalid one.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let (upserts, whiteouts, opaque_dirs) = codec::decode(ObjectKind::Layer, bytes)?;
        let layer = Self {
            upserts,
            whiteouts,
            opaque_dirs,
        };
        layer.validate()?;
        Ok(layer)
    }

    /// The id of the layer's stored object: BLAKE3 of [`Layer::encode`], or,
    /// for a layer that makes a whole tree of the empty tree (every commit
    /// without a parent makes one: [`Layer::of_tree`]), of the small object
    /// naming that tree.
    #[must_use]
    pub fn id(&self) -> LayerId {
        LayerId::of(&self.stored_encoding())
    }

    /// The object the store holds for this layer (without the directories
    /// of the tree it may name).
    pub(crate) fn stored_encoding(&self) -> Vec<u8> {
        match self.whole_tree_entries() {
            Some(entries) => encode_of_tree(&directory::entries_id(&entries)),
            None => self.encode(),
        }
    }

    /// The entries of the tree this layer makes of the empty tree, when that
    /// is all it is: it whites out nothing, makes nothing opaque, upserts
    /// something, and its upserts (under the empty tree's root, unless it
    /// upserts another) form a valid tree `t` with
    /// `Layer::of_tree(t) == *self`. Such a layer holds the same entries as
    /// the tree, so the store keeps it as the tree's id. Borrowed when the
    /// layer upserts the root (as a scanned tree's layer does).
    pub(crate) fn whole_tree_entries(&self) -> Option<Cow<'_, [Entry]>> {
        if !self.whiteouts.is_empty() || !self.opaque_dirs.is_empty() || self.upserts.is_empty() {
            return None;
        }
        let empty_root = Entry::dir(TreePath::ROOT, Metadata::default());
        let entries = match self.upserts.first() {
            // `of_tree` leaves out a root equal to the empty tree's.
            Some(root) if root.path.is_root() && *root == empty_root => return None,
            Some(root) if root.path.is_root() => Cow::Borrowed(self.upserts.as_slice()),
            _ => {
                let mut entries = Vec::with_capacity(self.upserts.len() + 1);
                entries.push(empty_root);
                entries.extend(self.upserts.iter().cloned());
                Cow::Owned(entries)
            }
        };
        snapshot::validate(&entries).ok()?;
        Some(entries)
    }

    fn validate(&self) -> Result<()> {
        let invalid = |path: &TreePath, reason: &str| {
            Err(Error::InvalidTree {
                path: path.to_string(),
                reason: reason.to_owned(),
            })
        };
        for pair in self.upserts.windows(2) {
            if pair[0].path >= pair[1].path {
                return invalid(
                    &pair[1].path,
                    "upsert out of order or repeated in the layer",
                );
            }
        }
        for (list, what) in [
            (
                &self.whiteouts,
                "whiteout out of order or repeated in the layer",
            ),
            (
                &self.opaque_dirs,
                "opaque directory out of order or repeated in the layer",
            ),
        ] {
            for pair in list.windows(2) {
                if pair[0] >= pair[1] {
                    return invalid(&pair[1], what);
                }
            }
        }
        if self.whiteouts.first().is_some_and(TreePath::is_root) {
            return invalid(&TreePath::ROOT, "the root directory cannot be whited out");
        }
        if let Some(root) = self.upserts.first().filter(|e| e.path.is_root())
            && !root.is_dir()
        {
            return invalid(&TreePath::ROOT, "the root must be a directory");
        }
        self.upserts.iter().try_for_each(Entry::check)
    }
}

/// Reading and applying
impl Layer {
    /// The entries this layer adds or replaces, sorted by path.
    #[must_use]
    pub fn upserts(&self) -> &[Entry] {
        &self.upserts
    }

    /// The bytes of the regular files this layer adds or replaces: its
    /// size as `docker history` and `inspect` show it.
    #[must_use]
    pub fn content_size(&self) -> u64 {
        self.upserts
            .iter()
            .map(|e| match &e.kind {
                crate::tree::entry::EntryKind::File { size, .. } => *size,
                _ => 0,
            })
            .sum()
    }

    /// The paths this layer deletes from the lower tree, sorted.
    #[must_use]
    pub fn whiteouts(&self) -> &[TreePath] {
        &self.whiteouts
    }

    /// The directories whose lower contents this layer hides, sorted.
    #[must_use]
    pub fn opaque_dirs(&self) -> &[TreePath] {
        &self.opaque_dirs
    }

    /// Whether the layer changes nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.whiteouts.is_empty() && self.opaque_dirs.is_empty()
    }

    /// The tree `lower` becomes under this layer. One merge of sorted lists:
    /// first the lower entries at or beneath a whiteout and strictly beneath
    /// an opaque directory go, then each upsert replaces or joins; an upsert
    /// that replaces a lower directory with a non-directory drops that
    /// directory's remaining lower descendants.
    ///
    /// # Errors
    /// [`Error::InvalidTree`] if the result is not a valid tree: an upsert
    /// whose parent is missing or not a directory, a hard link whose target is
    /// gone or not a regular file, …
    pub fn apply(&self, lower: &Snapshot) -> Result<Snapshot> {
        let mut out: Vec<Entry> = Vec::with_capacity(lower.entries().len() + self.upserts.len());
        let mut whiteouts = Cover::new(&self.whiteouts);
        let mut opaque = Cover::new(&self.opaque_dirs);
        let mut upserts = self.upserts.iter().peekable();
        // A lower directory replaced by a non-directory: its lower descendants
        // go. Descendants are contiguous, so one at a time suffices.
        let mut replaced: Option<&TreePath> = None;
        for entry in lower.entries() {
            while let Some(u) = upserts.next_if(|u| u.path < entry.path) {
                out.push(u.clone());
            }
            if whiteouts.covers(&entry.path, true)
                || opaque.covers(&entry.path, false)
                || replaced.is_some_and(|r| r.is_ancestor_of(&entry.path))
            {
                continue;
            }
            match upserts.next_if(|u| u.path == entry.path) {
                Some(u) => {
                    if entry.is_dir() && !u.is_dir() {
                        replaced = Some(&entry.path);
                    }
                    out.push(u.clone());
                }
                None => out.push(entry.clone()),
            }
        }
        out.extend(upserts.cloned());
        Snapshot::from_sorted(out)
    }

    /// The paths this layer changes in `lower`, as [`Snapshot::changes`] lists
    /// them between `lower` and the result of applying it.
    ///
    /// # Errors
    /// As [`Layer::apply`].
    pub fn changes(&self, lower: &Snapshot) -> Result<Vec<Change>> {
        Ok(lower.changes(&self.apply(lower)?))
    }
}

/// Applies `layers` bottom first to [`Snapshot::empty`]: the tree an image of
/// these layers shows.
///
/// # Errors
/// As [`Layer::apply`], for the first layer whose result is not a valid tree.
pub fn flatten(layers: &[Layer]) -> Result<Snapshot> {
    layers
        .iter()
        .try_fold(Snapshot::empty(), |tree, layer| layer.apply(&tree))
}

/// Walks a sorted list of paths alongside sorted lower paths, answering
/// whether each lower path lies beneath (or, if inclusive, at) one of them.
struct Cover<'a> {
    paths: &'a [TreePath],
    pos: usize,
}

impl<'a> Cover<'a> {
    fn new(paths: &'a [TreePath]) -> Self {
        Self { paths, pos: 0 }
    }

    /// Must be called with increasing `path`s.
    fn covers(&mut self, path: &TreePath, inclusive: bool) -> bool {
        while let Some(cover) = self.paths.get(self.pos) {
            if cover == path {
                return inclusive;
            }
            if cover.is_ancestor_of(path) {
                return true;
            }
            if cover > path {
                return false;
            }
            // `cover` sorts before `path` without enclosing it, so it encloses
            // nothing that comes later either (subtrees are contiguous).
            self.pos += 1;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::chunk_list::ChunkList;
    use crate::tree::entry::Metadata;

    fn p(s: &str) -> TreePath {
        TreePath::new(s).unwrap()
    }
    fn dir(s: &str) -> Entry {
        Entry::dir(p(s), Metadata::new(0o755))
    }
    fn file(s: &str) -> Entry {
        Entry::file(p(s), ChunkList::new(), Metadata::new(0o644))
    }
    fn tree(entries: Vec<Entry>) -> Snapshot {
        let mut all = vec![Entry::dir(TreePath::ROOT, Metadata::default())];
        all.extend(entries);
        Snapshot::from_entries(all).unwrap()
    }
    fn paths(s: &Snapshot) -> Vec<String> {
        s.iter().skip(1).map(|e| e.path.to_string()).collect()
    }

    #[test]
    fn a_layer_of_a_whole_tree_is_stored_as_the_tree_and_only_so() {
        let t = tree(vec![dir("a"), file("a/x"), file("b")]);
        let whole = Layer::of_tree(t.clone());
        assert_eq!(whole.whole_tree_entries().as_deref(), Some(t.entries()));
        let bytes = whole.stored_encoding();
        assert!(bytes.len() < 64, "{} bytes", bytes.len());
        assert_eq!(whole.id(), LayerId::of(&bytes));
        assert!(matches!(decode_stored(&bytes), Ok(StoredLayer::OfTree(id)) if id == t.id()));
        // The same layer entry by entry has a second encoding: refused.
        assert!(matches!(
            decode_stored(&whole.encode()),
            Err(Error::Malformed { what: "layer", .. })
        ));
        // Not whole: a whiteout, an opaque directory, a link to a lower
        // file, a missing parent, nothing at all, or the empty tree's root
        // upserted (which `of_tree` leaves out).
        let root = Entry::dir(TreePath::ROOT, Metadata::default());
        let link = Entry::hardlink(p("z"), p("lower"), Metadata::new(0o644));
        for layer in [
            Layer::new(vec![file("b")], vec![p("c")], vec![]).unwrap(),
            Layer::new(vec![dir("a")], vec![], vec![p("a")]).unwrap(),
            Layer::new(vec![link], vec![], vec![]).unwrap(),
            Layer::new(vec![file("a/x")], vec![], vec![]).unwrap(),
            Layer::empty(),
            Layer::new(vec![root, file("b")], vec![], vec![]).unwrap(),
        ] {
            assert_eq!(layer.whole_tree_entries(), None, "{layer:?}");
            let bytes = layer.stored_encoding();
            assert_eq!(bytes, layer.encode());
            assert!(matches!(decode_stored(&bytes), Ok(StoredLayer::Flat(l)) if l == layer));
        }
    }

    #[test]
    fn whiteouts_remove_subtrees_and_tolerate_missing_paths() {
        let lower = tree(vec![
            dir("a"),
            file("a/x"),
            dir("a/y"),
            file("a/y/z"),
            file("a.b"),
        ]);
        let layer = Layer::new(vec![], vec![p("a/y"), p("nope"), p("a.b/c")], vec![]).unwrap();
        assert_eq!(paths(&layer.apply(&lower).unwrap()), ["a", "a/x", "a.b"]);
    }

    #[test]
    fn whiteout_and_upsert_of_one_path_recreate_it_empty() {
        let lower = tree(vec![dir("a"), file("a/old")]);
        let layer = Layer::new(vec![dir("a"), file("a/new")], vec![p("a")], vec![]).unwrap();
        assert_eq!(paths(&layer.apply(&lower).unwrap()), ["a", "a/new"]);
    }

    #[test]
    fn opaque_hides_lower_children_only() {
        let lower = tree(vec![
            dir("a"),
            dir("a/d"),
            file("a/d/x"),
            file("a/f"),
            file("b"),
        ]);
        let layer = Layer::new(vec![file("a/g")], vec![], vec![p("a")]).unwrap();
        assert_eq!(paths(&layer.apply(&lower).unwrap()), ["a", "a/g", "b"]);
        let root_opaque = Layer::new(vec![file("c")], vec![], vec![TreePath::ROOT]).unwrap();
        assert_eq!(paths(&root_opaque.apply(&lower).unwrap()), ["c"]);
    }

    #[test]
    fn non_dir_replacing_dir_drops_its_children() {
        let lower = tree(vec![dir("a"), file("a/x"), file("a.b")]);
        let layer = Layer::new(vec![file("a")], vec![], vec![]).unwrap();
        let out = layer.apply(&lower).unwrap();
        assert_eq!(paths(&out), ["a", "a.b"]);
        assert!(out.get(&p("a")).unwrap().is_file());
    }

    #[test]
    fn invalid_results_are_errors() {
        let lower = tree(vec![file("a")]);
        let orphan = Layer::new(vec![file("d/x")], vec![], vec![]).unwrap();
        assert!(matches!(
            orphan.apply(&lower),
            Err(Error::InvalidTree { .. })
        ));
        let under_file = Layer::new(vec![file("a/x")], vec![], vec![]).unwrap();
        assert!(matches!(
            under_file.apply(&lower),
            Err(Error::InvalidTree { .. })
        ));
    }

    #[test]
    fn construction_rules() {
        assert!(Layer::new(vec![], vec![TreePath::ROOT], vec![]).is_err());
        assert!(Layer::new(vec![file("")], vec![], vec![]).is_err());
        assert!(Layer::new(vec![file("a"), file("a")], vec![], vec![]).is_err());
        assert!(Layer::new(vec![], vec![p("a"), p("a")], vec![]).is_err());
        let layer = Layer::new(vec![file("b"), dir("a")], vec![p("z"), p("y")], vec![]).unwrap();
        assert_eq!(layer.whiteouts(), [p("y"), p("z")]);
        assert_eq!(Layer::decode(&layer.encode()).unwrap(), layer);
        let unsorted = codec::encode(
            ObjectKind::Layer,
            &(
                Vec::<Entry>::new(),
                vec![p("z"), p("y")],
                Vec::<TreePath>::new(),
            ),
        );
        assert!(matches!(
            Layer::decode(&unsorted),
            Err(Error::InvalidTree { .. })
        ));
    }

    #[test]
    fn flatten_empty_is_the_empty_tree() {
        assert_eq!(flatten(&[]).unwrap(), Snapshot::empty());
        assert_eq!(flatten(&[Layer::empty()]).unwrap(), Snapshot::empty());
    }
}
