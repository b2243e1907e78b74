//! Reading a layer tar, strictly: each member checked, whiteouts and hard
//! links turned into the layer's own, missing parents added.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read};
use std::path::Path;

use super::{OPAQUE, WHITEOUT, oci_err, parse_pax_time};
use crate::error::Result;
use crate::fsutil::device;
use crate::store::chunk_list::ChunkList;
use crate::tree::{Entry, EntryKind, Layer, Metadata, Snapshot, Timestamp, TreePath};

/// Reading
///
/// Where a layer's file contents go: `put(reader, name)` stores what the
/// reader yields and returns its chunk list ([`Store::put_reader`], or
/// [`ChunkList::of`] in tests and fuzzing).
pub(crate) type PutContent<'a> = dyn FnMut(&mut dyn Read, &Path) -> Result<ChunkList> + 'a;

/// Reads an uncompressed OCI layer tar from `input` into a [`Layer`] over
/// `lower` (the tree of the layers beneath). `what` names the blob in errors.
/// Reads `input` up to the end-of-archive marker only.
#[allow(clippy::too_many_lines, reason = "one match over the tar entry types")]
pub(crate) fn read_layer_tar(
    input: impl Read,
    lower: &Snapshot,
    put: &mut PutContent<'_>,
    what: &str,
) -> Result<Layer> {
    let tar_err = |e: io::Error| oci_err(what, format!("reading the tar stream: {e}"));
    let mut archive = tar::Archive::new(input);
    archive.set_ignore_zeros(false);
    let mut upserts: BTreeMap<TreePath, Entry> = BTreeMap::new();
    let mut whiteouts: BTreeSet<TreePath> = BTreeSet::new();
    let mut opaque: BTreeSet<TreePath> = BTreeSet::new();
    // Hard links: link path -> (the path of the file it names, as written).
    let mut links: Vec<(TreePath, TreePath, Metadata)> = Vec::new();
    let mut link_paths: BTreeSet<TreePath> = BTreeSet::new();
    for member in archive.entries().map_err(tar_err)? {
        let mut member = member.map_err(tar_err)?;
        let raw = member.path_bytes().into_owned();
        let shown = format!("{what}: member '{}'", String::from_utf8_lossy(&raw));
        let bad = |reason: &str| oci_err(shown.clone(), reason.to_owned());
        let path = member_path(&raw).map_err(&bad)?;
        // Metadata, PAX records first.
        let header = member.header().clone();
        let mut meta = Metadata::new(header.mode().map_err(|e| bad(&e.to_string()))? & 0o7777);
        meta.uid = id_field(header.uid()).ok_or_else(|| bad("uid does not fit 32 bits"))?;
        meta.gid = id_field(header.gid()).ok_or_else(|| bad("gid does not fit 32 bits"))?;
        let secs = header.mtime().map_err(|e| bad(&e.to_string()))?;
        meta.mtime = Timestamp::new(
            i64::try_from(secs).map_err(|_| bad("mtime out of range"))?,
            0,
        );
        if let Some(exts) = member.pax_extensions().map_err(|e| bad(&e.to_string()))? {
            for ext in exts {
                let ext = ext.map_err(|e| bad(&format!("bad PAX record: {e}")))?;
                let key = ext.key_bytes();
                let value = ext.value_bytes();
                match key {
                    b"mtime" => {
                        meta.mtime = parse_pax_time(value).ok_or_else(|| bad("bad PAX mtime"))?;
                    }
                    b"uid" => meta.uid = pax_id(value).ok_or_else(|| bad("bad PAX uid"))?,
                    b"gid" => meta.gid = pax_id(value).ok_or_else(|| bad("bad PAX gid"))?,
                    _ => {
                        if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                            if name.is_empty() {
                                return Err(bad("empty xattr name"));
                            }
                            meta.xattrs.insert(name.to_vec(), value.to_vec());
                        }
                    }
                }
            }
        }
        let name = path.file_name().unwrap_or_default();
        // Whiteouts.
        if let Some(rest) = name.strip_prefix(WHITEOUT) {
            let parent = path.parent().unwrap_or(TreePath::ROOT);
            if name == OPAQUE {
                if !opaque.insert(parent) {
                    return Err(bad("duplicate opaque marker"));
                }
            } else if rest.is_empty() {
                return Err(bad("a whiteout '.wh.' names nothing"));
            } else if rest.starts_with(WHITEOUT) {
                return Err(bad(
                    "'.wh..wh.' names are reserved; only '.wh..wh..opq' is meaningful",
                ));
            } else {
                let target = parent
                    .join(rest)
                    .map_err(|_| bad("the whiteout names an invalid path"))?;
                if !whiteouts.insert(target) {
                    return Err(bad("duplicate whiteout"));
                }
            }
            check_parents(&path, &upserts, lower).map_err(|r| bad(&r))?;
            continue;
        }
        if upserts.contains_key(&path) || link_paths.contains(&path) {
            return Err(bad("duplicate entry"));
        }
        check_parents(&path, &upserts, lower).map_err(|r| bad(&r))?;
        let kind = match header.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = member.size();
                let mut counted = Counted {
                    inner: &mut member,
                    count: 0,
                };
                let chunks = put(&mut counted, Path::new(&shown))?;
                if counted.count != size {
                    return Err(bad(&format!(
                        "the header says {size} bytes but the stream holds {}",
                        counted.count
                    )));
                }
                EntryKind::File {
                    size: chunks.content_len(),
                    chunks,
                }
            }
            tar::EntryType::Directory => EntryKind::Dir,
            tar::EntryType::Symlink => {
                let target = member
                    .link_name_bytes()
                    .map(std::borrow::Cow::into_owned)
                    .filter(|t| !t.is_empty() && !t.contains(&0))
                    .ok_or_else(|| bad("symbolic link without a target"))?;
                EntryKind::Symlink { target }
            }
            tar::EntryType::Link => {
                let target = member
                    .link_name_bytes()
                    .ok_or_else(|| bad("hard link without a target"))?;
                let target =
                    member_path(&target).map_err(|r| bad(&format!("hard link target: {r}")))?;
                if target == path || target.is_root() {
                    return Err(bad("hard link to itself or to the root"));
                }
                link_paths.insert(path.clone());
                links.push((path, target, meta));
                continue;
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                let major = header.device_major().ok().flatten();
                let minor = header.device_minor().ok().flatten();
                let (Some(major), Some(minor)) = (major, minor) else {
                    return Err(bad("device without a valid device number"));
                };
                let rdev = device::makedev(major, minor);
                if header.entry_type() == tar::EntryType::Char {
                    EntryKind::CharDevice { rdev }
                } else {
                    EntryKind::BlockDevice { rdev }
                }
            }
            tar::EntryType::Fifo => EntryKind::Fifo,
            other => return Err(bad(&format!("unsupported tar entry type {other:?}"))),
        };
        if path.is_root() && !matches!(kind, EntryKind::Dir) {
            return Err(bad("the root must be a directory"));
        }
        upserts.insert(path.clone(), Entry::new(path, kind, meta));
    }
    resolve_links(&mut upserts, &whiteouts, links, lower, what)?;
    add_missing_parents(&mut upserts, &whiteouts, &opaque, lower);
    Layer::new(
        upserts.into_values().collect(),
        whiteouts.into_iter().collect(),
        opaque.into_iter().collect(),
    )
    .map_err(|e| oci_err(what, e.to_string()))
}

struct Counted<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

fn id_field(v: io::Result<u64>) -> Option<u32> {
    v.ok().and_then(|v| u32::try_from(v).ok())
}

fn pax_id(v: &[u8]) -> Option<u32> {
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// A member's name as a tree path: a leading `./` and trailing `/` go; `.`
/// alone is the root; absolute paths and `..` are refused.
pub(super) fn member_path(raw: &[u8]) -> std::result::Result<TreePath, &'static str> {
    if raw.first() == Some(&b'/') {
        return Err("absolute path");
    }
    let mut p = raw;
    while let Some(rest) = p.strip_prefix(b"./") {
        p = rest;
    }
    while let Some(rest) = p.strip_suffix(b"/") {
        p = rest;
    }
    if p.is_empty() || p == b"." {
        return Ok(TreePath::ROOT);
    }
    if p.split(|&b| b == b'/').any(|c| c == b"..") {
        return Err("'..' component");
    }
    TreePath::new(p.to_vec()).map_err(|_| "not a relative path of normal components")
}

/// Refuses a member beneath something that is not a directory: in this layer,
/// or (unless this layer replaces it) in the lower tree. A symbolic link there
/// is the "write through a symlink" attack.
fn check_parents(
    path: &TreePath,
    upserts: &BTreeMap<TreePath, Entry>,
    lower: &Snapshot,
) -> std::result::Result<(), String> {
    let mut anc = path.parent();
    while let Some(a) = anc {
        if a.is_root() {
            break;
        }
        let found = upserts.get(&a).or_else(|| lower.get(&a));
        if let Some(e) = found {
            match e.kind {
                EntryKind::Dir => {}
                EntryKind::Symlink { .. } => {
                    return Err(format!(
                        "'{a}' is a symbolic link; refusing to write through it"
                    ));
                }
                _ => return Err(format!("'{a}' is not a directory")),
            }
        }
        anc = a.parent();
    }
    Ok(())
}

/// Turns the tar's hard links into our link groups: the first path of each
/// group (in sorted order) holds the content, the others name it.
fn resolve_links(
    upserts: &mut BTreeMap<TreePath, Entry>,
    whiteouts: &BTreeSet<TreePath>,
    links: Vec<(TreePath, TreePath, Metadata)>,
    lower: &Snapshot,
    what: &str,
) -> Result<()> {
    // Group key: the file holding the content (in this layer or below).
    let mut groups: BTreeMap<TreePath, Vec<TreePath>> = BTreeMap::new();
    let mut link_target: BTreeMap<TreePath, TreePath> = BTreeMap::new();
    for (link, target, _meta) in links {
        let bad = |reason: String| oci_err(format!("{what}: member '{link}'"), reason);
        // A link to an earlier link names that link's file.
        let target = link_target.get(&target).cloned().unwrap_or(target);
        let file = match upserts.get(&target) {
            Some(Entry {
                kind: EntryKind::File { .. },
                ..
            }) => target,
            Some(_) => {
                return Err(bad(format!(
                    "hard link to '{target}', which is not a regular file"
                )));
            }
            None => match lower.get(&target).map(|e| &e.kind) {
                Some(EntryKind::File { .. }) if !whited_out(&target, whiteouts) => target,
                Some(EntryKind::Hardlink { target: root }) if !whited_out(&target, whiteouts) => {
                    root.clone()
                }
                _ => {
                    return Err(bad(format!(
                        "hard link to '{target}', which is neither in this layer nor a file below it"
                    )));
                }
            },
        };
        link_target.insert(link.clone(), file.clone());
        groups.entry(file).or_default().push(link);
    }
    for (file, mut members) in groups {
        let (kind, meta, in_layer) = match upserts.get(&file) {
            Some(e) => (e.kind.clone(), e.meta.clone(), true),
            None => match lower.get(&file) {
                Some(e) => (e.kind.clone(), e.meta.clone(), false),
                None => continue,
            },
        };
        members.sort();
        let first = members[0].clone();
        if first > file {
            for m in members {
                upserts.insert(m.clone(), Entry::hardlink(m, file.clone(), meta.clone()));
            }
            continue;
        }
        // A link sorts before the file: it becomes the holder of the content,
        // and the file (and, below, its other names) link to it.
        upserts.insert(first.clone(), Entry::new(first.clone(), kind, meta.clone()));
        let mut others: Vec<TreePath> = members[1..].to_vec();
        if in_layer || !whited_out(&file, whiteouts) {
            others.push(file.clone());
        }
        if !in_layer {
            for e in lower {
                if matches!(&e.kind, EntryKind::Hardlink { target } if *target == file)
                    && !whited_out(&e.path, whiteouts)
                    && !upserts.contains_key(&e.path)
                {
                    others.push(e.path.clone());
                }
            }
        }
        for m in others {
            upserts.insert(m.clone(), Entry::hardlink(m, first.clone(), meta.clone()));
        }
    }
    Ok(())
}

fn whited_out(path: &TreePath, whiteouts: &BTreeSet<TreePath>) -> bool {
    let mut p = Some(path.clone());
    while let Some(q) = p {
        if whiteouts.contains(&q) {
            return true;
        }
        p = q.parent();
    }
    false
}

/// Tars may omit parent directories; like other runtimes we create them
/// (mode 0755, owned by root, mtime 0).
fn add_missing_parents(
    upserts: &mut BTreeMap<TreePath, Entry>,
    whiteouts: &BTreeSet<TreePath>,
    opaque: &BTreeSet<TreePath>,
    lower: &Snapshot,
) {
    let exists_below = |p: &TreePath| {
        lower.get(p).is_some_and(Entry::is_dir)
            && !whited_out(p, whiteouts)
            && !opaque.iter().any(|o| o.is_ancestor_of(p))
    };
    let mut missing: BTreeSet<TreePath> = BTreeSet::new();
    for path in upserts.keys().chain(opaque.iter()) {
        let mut anc = path.parent();
        while let Some(a) = anc {
            if a.is_root() || upserts.contains_key(&a) || missing.contains(&a) || exists_below(&a) {
                break;
            }
            anc = a.parent();
            missing.insert(a);
        }
    }
    if !lower.root().is_dir() || lower.entries().is_empty() {
        missing.insert(TreePath::ROOT);
    }
    for m in missing {
        upserts
            .entry(m.clone())
            .or_insert_with(|| Entry::dir(m, Metadata::new(0o755)));
    }
}

/// Reads a layer tar with file contents hashed but not stored: for fuzzing.
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_read_layer_tar(data: &[u8]) -> Result<Layer> {
    let mut put = |r: &mut dyn Read, _: &Path| -> Result<ChunkList> {
        let mut buf = Vec::new();
        r.take(1 << 24)
            .read_to_end(&mut buf)
            .map_err(|e| crate::error::Error::io("read", "fuzz input", e))?;
        Ok(ChunkList::of(&buf))
    };
    read_layer_tar(data, &Snapshot::empty(), &mut put, "fuzz input")
}
