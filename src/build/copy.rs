//! `COPY`: which entries of a source tree (the build context, or an earlier
//! stage's image) go where in the image being built.
//!
//! Docker's rules: a file source lands at the destination (or inside it,
//! when the destination ends in `/` or there are several sources or a glob);
//! a directory source has its *contents* copied into the destination.
//! Globs (`*`, `?`, `[...]`) match paths of the source tree, `/` matched
//! only literally. Sources from the context are relative to it: an absolute
//! path, a `..`, a path through a symbolic link, or a symbolic link that
//! leads out of the context is an error. Hard links become regular files
//! (their target's content). Missing parents of the destination are made
//! as directories `0755`, owned by root (or the `--chown` owner).

use std::collections::BTreeMap;

use crate::tree::{Entry, EntryKind, Metadata, Snapshot, TreePath};

/// Where sources are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// The build context: paths must stay inside it.
    Context,
    /// An earlier stage or an image: absolute paths are its root.
    Image,
}

/// `text` as a path of the source tree (`.` and the empty path: its root).
fn source_path(text: &str, source: Source) -> Result<TreePath, String> {
    if source == Source::Context && text.starts_with('/') {
        return Err(format!(
            "'{text}' is an absolute path: COPY sources are relative to the context"
        ));
    }
    normal_path(text).ok_or_else(|| format!("'{text}' leads outside the context"))
}

/// `text` without `.` components and leading or trailing `/`; `None` if a
/// `..` would climb above the root.
pub(crate) fn normal_path(text: &str) -> Option<TreePath> {
    let mut parts: Vec<&str> = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    TreePath::new(parts.join("/")).ok()
}

/// The destination `dest` resolved against the working directory `workdir`.
pub(crate) fn dest_path(dest: &str, workdir: &str) -> Result<TreePath, String> {
    let joined = if dest.starts_with('/') {
        dest.to_owned()
    } else {
        format!("{workdir}/{dest}")
    };
    normal_path(&joined).ok_or_else(|| format!("destination '{dest}' leads above the root"))
}

fn is_glob(text: &str) -> bool {
    text.contains(['*', '?', '['])
}

/// Refuses a context source reached through a symbolic link, or one that
/// is a symbolic link leading out of the context.
fn check_links(tree: &Snapshot, path: &TreePath, text: &str) -> Result<(), String> {
    let mut at = TreePath::ROOT;
    let components: Vec<&[u8]> = path.components().collect();
    for (i, c) in components.iter().enumerate() {
        at = at.join(c).map_err(|e| e.to_string())?;
        let Some(entry) = tree.get(&at) else {
            return Ok(());
        };
        if let EntryKind::Symlink { target } = &entry.kind {
            let last = i + 1 == components.len();
            if !last {
                return Err(format!(
                    "'{text}' leads through the symbolic link '{}'",
                    String::from_utf8_lossy(at.as_bytes())
                ));
            }
            let parent = at.parent().unwrap_or(TreePath::ROOT);
            let resolved = format!(
                "{}/{}",
                String::from_utf8_lossy(parent.as_bytes()),
                String::from_utf8_lossy(target)
            );
            if target.starts_with(b"/") || normal_path(&resolved).is_none() {
                return Err(format!(
                    "'{text}' is a symbolic link leading out of the context (to '{}')",
                    String::from_utf8_lossy(target)
                ));
            }
        }
    }
    Ok(())
}

/// The entries that `COPY sources dest` puts in place: already at their
/// destination paths, owners applied (the missing parents of the
/// destination come later, from [`add_parents`]: they depend only on the
/// image before the step, so the cache key need not cover them).
pub(crate) fn plan(
    tree: &Snapshot,
    source: Source,
    sources: &[String],
    dest: &TreePath,
    dest_is_dir: bool,
    chown: Option<(u32, u32)>,
) -> Result<Vec<Entry>, String> {
    let into_dir = dest_is_dir || sources.len() > 1 || sources.iter().any(|s| is_glob(s));
    let mut out: BTreeMap<TreePath, Entry> = BTreeMap::new();
    let mut place = |from: &Entry, to: TreePath| -> Result<(), String> {
        let kind = match &from.kind {
            EntryKind::Hardlink { target } => tree
                .get(target)
                .map(|t| t.kind.clone())
                .ok_or_else(|| "a hard link to a missing file".to_owned())?,
            other => other.clone(),
        };
        let mut meta = from.meta.clone();
        if let Some((uid, gid)) = chown {
            meta.uid = uid;
            meta.gid = gid;
        }
        out.insert(to.clone(), Entry::new(to, kind, meta));
        Ok(())
    };
    for text in sources {
        let matched: Vec<&Entry> = if is_glob(text) {
            if source == Source::Context && text.starts_with('/') {
                return Err(format!("'{text}' is an absolute path"));
            }
            let trimmed = text.trim_start_matches('/').trim_start_matches("./");
            let pattern = glob::Pattern::new(trimmed)
                .map_err(|e| format!("'{text}' is not a valid pattern: {e}"))?;
            let options = glob::MatchOptions {
                require_literal_separator: true,
                ..glob::MatchOptions::new()
            };
            let found: Vec<&Entry> = tree
                .iter()
                .filter(|e| {
                    !e.path.is_root()
                        && pattern
                            .matches_with(&String::from_utf8_lossy(e.path.as_bytes()), options)
                })
                .collect();
            if found.is_empty() {
                return Err(format!("no source matches '{text}'"));
            }
            found
        } else {
            let path = source_path(text, source)?;
            if source == Source::Context {
                check_links(tree, &path, text)?;
            }
            let entry = tree
                .get(&path)
                .ok_or_else(|| format!("source '{text}' not found"))?;
            vec![entry]
        };
        for entry in matched {
            if entry.is_dir() {
                if !dest.is_root() {
                    // The directory itself becomes the destination directory.
                    place(entry, dest.clone())?;
                }
                for inner in tree.descendants_of(&entry.path) {
                    let rel = &inner.path.as_bytes()[entry.path.as_bytes().len()..];
                    let rel = rel.strip_prefix(b"/").unwrap_or(rel);
                    place(inner, dest.join(rel).map_err(|e| e.to_string())?)?;
                }
            } else {
                let to = if into_dir {
                    let name = entry.path.file_name().unwrap_or_default();
                    dest.join(name).map_err(|e| e.to_string())?
                } else {
                    dest.clone()
                };
                place(entry, to)?;
            }
        }
    }
    Ok(out.into_values().collect())
}

/// `copied` with the directories it needs that neither it nor `existing` (the
/// image before the step) has: `0755`, owned by root or the `--chown` owner.
pub(crate) fn add_parents(
    copied: Vec<Entry>,
    existing: &Snapshot,
    chown: Option<(u32, u32)>,
) -> Vec<Entry> {
    let mut out: BTreeMap<TreePath, Entry> =
        copied.into_iter().map(|e| (e.path.clone(), e)).collect();
    let parents: Vec<TreePath> = out
        .keys()
        .flat_map(|p| {
            let mut up = Vec::new();
            let mut at = p.parent();
            while let Some(dir) = at {
                up.push(dir.clone());
                at = dir.parent();
            }
            up
        })
        .collect();
    for dir in parents {
        if dir.is_root() || out.contains_key(&dir) || existing.get(&dir).is_some_and(Entry::is_dir)
        {
            continue;
        }
        let (uid, gid) = chown.unwrap_or((0, 0));
        let meta = Metadata {
            mode: 0o755,
            uid,
            gid,
            ..Metadata::default()
        };
        out.insert(dir.clone(), Entry::dir(dir, meta));
    }
    out.into_values().collect()
}

/// `existing` with `copied` put in place: an entry replaces what was at its
/// path (a directory replaced by something else loses its contents).
pub(crate) fn apply(existing: &Snapshot, copied: Vec<Entry>) -> crate::Result<Snapshot> {
    let mut map: BTreeMap<TreePath, Entry> = existing
        .iter()
        .map(|e| (e.path.clone(), e.clone()))
        .collect();
    for entry in copied {
        let replaces_dir = map.get(&entry.path).is_some_and(Entry::is_dir) && !entry.is_dir();
        if replaces_dir {
            map.retain(|p, _| !entry.path.is_ancestor_of(p));
        }
        // Something that is not a directory in the way of a parent goes.
        let mut at = entry.path.parent();
        while let Some(dir) = at {
            if map.get(&dir).is_some_and(|e| !e.is_dir()) {
                map.remove(&dir);
            }
            at = dir.parent();
        }
        map.insert(entry.path.clone(), entry);
    }
    Snapshot::from_entries(map.into_values().collect())
}
