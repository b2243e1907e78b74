//! Paths inside a tree: relative, `/`-separated byte strings.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// The path of one entry of a tree, relative to the tree's root.
///
/// A path is bytes, not necessarily UTF-8: components separated by `/`, none of
/// them empty, `.` or `..`, and no NUL byte anywhere (so no leading, trailing or
/// doubled `/` either). The root directory itself is the empty path; it is part
/// of every [`Snapshot`](crate::Snapshot).
///
/// # Ordering
///
/// Paths compare component by component, each component bytewise, and a path
/// sorts before every path it is a prefix of. So `a` < `a/x` < `a/y/z` < `a.b` <
/// `b`: every directory is followed, contiguously, by all of its descendants and
/// only then by its next sibling. (Plain bytewise order of the whole path would
/// put `a.b` between `a` and `a/x`, because `.` sorts before `/`.) Snapshots and
/// layers keep their entries in this order, which lets a diff be one merge of two
/// sorted lists and lets a directory's subtree be found by binary search.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct TreePath(Vec<u8>);

impl TreePath {
    /// The root directory: the empty path.
    pub const ROOT: TreePath = TreePath(Vec::new());

    /// Checks `bytes` and makes a path of them.
    ///
    /// # Errors
    /// [`Error::InvalidPath`] if a component is empty, `.` or `..`, or the path
    /// holds a NUL byte.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self> {
        let bytes = bytes.into();
        match check(&bytes) {
            Ok(()) => Ok(Self(bytes)),
            Err(reason) => Err(Error::InvalidPath {
                path: escape(&bytes),
                reason,
            }),
        }
    }

    /// The root directory: the empty path.
    #[must_use]
    pub const fn root() -> Self {
        Self::ROOT
    }

    /// A path known to be valid (it came from a valid path).
    pub(crate) fn from_trusted(bytes: Vec<u8>) -> Self {
        debug_assert!(check(&bytes).is_ok());
        Self(bytes)
    }

    /// This path followed by `name`, one component already known to be valid
    /// (not empty, `.` or `..`; no `/` or NUL).
    pub(crate) fn join_name(&self, name: &[u8]) -> TreePath {
        let mut bytes = Vec::with_capacity(self.0.len() + 1 + name.len());
        bytes.extend_from_slice(&self.0);
        if !self.is_root() {
            bytes.push(b'/');
        }
        bytes.extend_from_slice(name);
        Self::from_trusted(bytes)
    }

    /// Whether this is the root directory.
    #[must_use]
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The path's bytes (empty for the root).
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The path's bytes (empty for the root).
    #[must_use]
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// The components, first to last; none for the root.
    pub fn components(&self) -> impl Iterator<Item = &[u8]> {
        // `split` of the empty root would yield one empty component.
        let count = if self.is_root() { 0 } else { usize::MAX };
        self.0.split(|&b| b == b'/').take(count)
    }

    /// The number of components: 0 for the root, 1 for its children, …
    #[must_use]
    pub fn depth(&self) -> usize {
        self.components().count()
    }

    /// The bytes of the parent's path, or `None` for the root.
    pub(crate) fn parent_bytes(&self) -> Option<&[u8]> {
        if self.is_root() {
            return None;
        }
        Some(match self.0.iter().rposition(|&b| b == b'/') {
            Some(slash) => &self.0[..slash],
            None => &[],
        })
    }

    /// The directory that holds this path (the root for top-level paths), or
    /// `None` for the root itself.
    #[must_use]
    pub fn parent(&self) -> Option<TreePath> {
        self.parent_bytes().map(|b| Self(b.to_vec()))
    }

    /// The last component, or `None` for the root.
    #[must_use]
    pub fn file_name(&self) -> Option<&[u8]> {
        if self.is_root() {
            return None;
        }
        Some(match self.0.iter().rposition(|&b| b == b'/') {
            Some(slash) => &self.0[slash + 1..],
            None => &self.0,
        })
    }

    /// This path followed by the relative path `rel` (one or more components).
    ///
    /// # Errors
    /// [`Error::InvalidPath`] if `rel` is empty or not a valid path.
    pub fn join(&self, rel: impl AsRef<[u8]>) -> Result<TreePath> {
        let rel = rel.as_ref();
        if rel.is_empty() {
            return Err(Error::InvalidPath {
                path: String::new(),
                reason: "cannot join an empty path",
            });
        }
        let mut bytes = Vec::with_capacity(self.0.len() + 1 + rel.len());
        bytes.extend_from_slice(&self.0);
        if !self.is_root() {
            bytes.push(b'/');
        }
        bytes.extend_from_slice(rel);
        Self::new(bytes)
    }

    /// Whether `other` lies strictly beneath this path (the root is an ancestor
    /// of every other path; no path is its own ancestor).
    #[must_use]
    pub fn is_ancestor_of(&self, other: &TreePath) -> bool {
        if self.is_root() {
            return !other.is_root();
        }
        other.0.len() > self.0.len()
            && other.0.starts_with(&self.0)
            && other.0.get(self.0.len()) == Some(&b'/')
    }
}

/// Why `bytes` is not a valid path, if it is not.
fn check(bytes: &[u8]) -> std::result::Result<(), &'static str> {
    if bytes.is_empty() {
        return Ok(());
    }
    if bytes.contains(&0) {
        return Err("a path may not contain a NUL byte");
    }
    for component in bytes.split(|&b| b == b'/') {
        match component {
            b"" => return Err("empty component (leading, trailing or doubled '/')"),
            b"." => return Err("'.' component"),
            b".." => return Err("'..' component"),
            _ => {}
        }
    }
    Ok(())
}

/// Text for a path in messages: UTF-8 as is (control characters and `\`
/// escaped), other bytes as `\xNN`, the root as `.`.
pub(crate) fn escape(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    if bytes.is_empty() {
        return ".".to_owned();
    }
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' || c.is_control() {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

impl Ord for TreePath {
    fn cmp(&self, other: &Self) -> Ordering {
        // Component-wise order equals bytewise order with '/' mapped below every
        // other byte; NUL never occurs in a path, so '/' can become 0.
        // The common prefix is skipped eight bytes at a time: sorting and
        // searching a large tree's paths is mostly comparing long shared
        // prefixes.
        let key = |b: u8| if b == b'/' { 0 } else { b };
        let (a, b) = (&self.0[..], &other.0[..]);
        let n = a.len().min(b.len());
        let mut i = 0;
        while i + 8 <= n && a[i..i + 8] == b[i..i + 8] {
            i += 8;
        }
        while i < n && a[i] == b[i] {
            i += 1;
        }
        if i < n {
            key(a[i]).cmp(&key(b[i]))
        } else {
            a.len().cmp(&b.len())
        }
    }
}

impl PartialOrd for TreePath {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for TreePath {
    /// The path as text, non-UTF-8 bytes as `\xNN`; the root shows as `.`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escape(&self.0))
    }
}

impl fmt::Debug for TreePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TreePath({:?})", escape(&self.0))
    }
}

impl AsRef<[u8]> for TreePath {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl TryFrom<Vec<u8>> for TreePath {
    type Error = Error;
    fn try_from(bytes: Vec<u8>) -> Result<Self> {
        Self::new(bytes)
    }
}

impl TryFrom<&[u8]> for TreePath {
    type Error = Error;
    fn try_from(bytes: &[u8]) -> Result<Self> {
        Self::new(bytes)
    }
}

impl TryFrom<&str> for TreePath {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

impl FromStr for TreePath {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

impl Serialize for TreePath {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for TreePath {
    /// Accepts what [`Serialize`] writes and checks it like [`TreePath::new`].
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = TreePath;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a tree path as bytes")
            }
            fn visit_bytes<E: serde::de::Error>(
                self,
                v: &[u8],
            ) -> std::result::Result<TreePath, E> {
                TreePath::new(v).map_err(E::custom)
            }
            fn visit_byte_buf<E: serde::de::Error>(
                self,
                v: Vec<u8>,
            ) -> std::result::Result<TreePath, E> {
                TreePath::new(v).map_err(E::custom)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<TreePath, A::Error> {
                // No preallocation from the (untrusted) length hint.
                let mut bytes = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    bytes.push(b);
                }
                TreePath::new(bytes).map_err(serde::de::Error::custom)
            }
        }
        deserializer.deserialize_byte_buf(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> TreePath {
        TreePath::new(s).unwrap()
    }

    #[test]
    fn validation() {
        for good in ["", "a", "a/b", "a.b", "...", ".a/b.", "a/.hidden"] {
            assert!(TreePath::new(good).is_ok(), "{good:?} refused");
        }
        assert!(TreePath::new(b"\xff/\xfe".to_vec()).is_ok());
        for bad in [
            "/", "/a", "a/", "a//b", ".", "..", "a/./b", "a/../b", "a\0b",
        ] {
            assert!(
                matches!(TreePath::new(bad), Err(Error::InvalidPath { .. })),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn parts() {
        assert_eq!(p("a/b/c").parent(), Some(p("a/b")));
        assert_eq!(p("a").parent(), Some(TreePath::ROOT));
        assert_eq!(TreePath::ROOT.parent(), None);
        assert_eq!(p("a/b/c").file_name(), Some(&b"c"[..]));
        assert_eq!(p("a").file_name(), Some(&b"a"[..]));
        assert_eq!(TreePath::ROOT.file_name(), None);
        assert_eq!(p("a").join("b/c").unwrap(), p("a/b/c"));
        assert_eq!(TreePath::ROOT.join("b").unwrap(), p("b"));
        assert!(p("a").join("").is_err());
        assert!(p("a").join("../b").is_err());
        assert_eq!(TreePath::ROOT.depth(), 0);
        assert_eq!(p("a/b/c").depth(), 3);
        assert_eq!(TreePath::ROOT.components().count(), 0);
        assert_eq!(
            p("a/b").components().collect::<Vec<_>>(),
            vec![&b"a"[..], &b"b"[..]]
        );
    }

    #[test]
    fn ancestry() {
        assert!(TreePath::ROOT.is_ancestor_of(&p("a")));
        assert!(!TreePath::ROOT.is_ancestor_of(&TreePath::ROOT));
        assert!(p("a").is_ancestor_of(&p("a/b/c")));
        assert!(!p("a").is_ancestor_of(&p("a")));
        assert!(!p("a").is_ancestor_of(&p("ab")));
        assert!(!p("a").is_ancestor_of(&p("a.b/c")));
    }

    #[test]
    fn order_keeps_subtrees_contiguous() {
        let mut paths: Vec<TreePath> = ["b", "a.b", "a/y/z", "a", "", "a/x", "a-", "a/y"]
            .into_iter()
            .map(p)
            .collect();
        paths.sort();
        let shown: Vec<String> = paths.iter().map(ToString::to_string).collect();
        assert_eq!(shown, [".", "a", "a/x", "a/y", "a/y/z", "a-", "a.b", "b"]);
        // Past the eight-byte steps: the same order as mapping '/' below all.
        let long = [
            "0123456789abcdef/x",
            "0123456789abcdef-x",
            "0123456789abcdef",
            "0123456789abcdeg",
            "0123456789abcdef/x/y",
            "01234567",
            "01234567/8",
            "012345670",
        ];
        let key = |t: &TreePath| -> Vec<u8> {
            t.as_bytes()
                .iter()
                .map(|&b| if b == b'/' { 0 } else { b })
                .collect()
        };
        for a in long {
            for b in long {
                let (a, b) = (p(a), p(b));
                assert_eq!(a.cmp(&b), key(&a).cmp(&key(&b)), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn display_escapes() {
        assert_eq!(
            TreePath::new(b"a/\xffb\\".to_vec()).unwrap().to_string(),
            "a/\\xffb\\\\"
        );
        assert_eq!(p("é").to_string(), "é");
    }

    #[test]
    fn serde_checks_paths() {
        let bytes = postcard::to_allocvec(&p("a/b")).unwrap();
        assert_eq!(postcard::from_bytes::<TreePath>(&bytes).unwrap(), p("a/b"));
        let bad = postcard::to_allocvec(&b"a/../b".to_vec()).unwrap();
        assert!(postcard::from_bytes::<TreePath>(&bad).is_err());
    }
}
