//! Layers extracted for overlayfs: each layer of an image becomes a lower
//! directory in overlayfs's own format, written once and shared by every
//! container and view that stacks it.
//!
//! A layer's directory holds what the layer changes, in the form overlayfs
//! reads from a lower layer:
//! - upserted entries as they are, with their metadata;
//! - whiteouts as `0:0` character devices;
//! - opaque directories (and directories deleted and recreated by the layer)
//!   with the xattr `trusted.overlay.opaque=y`;
//! - directories the layer does not change but needs as parents, with the
//!   metadata they have in the image at this layer (overlayfs shows a merged
//!   directory with the attributes of its topmost copy);
//! - hard links to a file of a lower layer as a copy of that file: a hard
//!   link cannot cross lower directories. A file linked from lower layers and
//!   replaced by this one takes its lower links along (as hard links here),
//!   so that they show the new content, as [`Layer::apply`] says they do.
//!
//! Parent directories and copied hard links depend on the layers below, so a
//! directory is keyed by the layer's *chain id* (the layer ids from the
//! bottom up to it, hashed; OCI's `ChainID` does the same), not its layer id:
//! images that share their bottom layers share their directories.
//!
//! The cache lives in `<store>/mounts/layers/<chain id>/`. It is rebuildable
//! from the store at any time. A directory is written through the checkout
//! machinery ([`Store::checkout`]: confined, parallel, exact metadata) into
//! `.tmp-*` and renamed into place when whole, so a crash of the process
//! never leaves half a layer under a final name.
//!
//! Durability is deferred: an extraction is renamed to
//! `<chain id>.unsynced-<boot id>`, without waiting for its data to reach the
//! disk (a `syncfs` cost more than the extraction itself). Such a directory
//! is used only during the boot that wrote it, when the page cache still
//! holds whatever did not reach the disk; after a crash of the machine (a
//! new boot id) it may hold files without their data, so it is never used
//! again and is deleted. [`LayerCache::prune`] (run by `layerstore gc`)
//! syncs the extractions of this boot and renames them to `<chain id>`,
//! which every later boot uses.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::error::{Error, Result};
use crate::fsutil::device::makedev;
use crate::fsutil::durable::{sync_dir, unique_tmp_path};
use crate::mount::overlay::kernel::MAX_LOWER_LAYERS;
use crate::store::Store;
use crate::tree::{CheckoutOptions, Entry, EntryKind, Image, Layer, Metadata, Snapshot, TreePath};

/// The xattr that makes a directory of an overlayfs layer opaque.
pub(crate) const OPAQUE_XATTR: &[u8] = b"trusted.overlay.opaque";

/// The namespace of overlayfs's own xattrs (origin, impure, redirect, …).
pub(crate) const OVERLAY_XATTR_PREFIX: &[u8] = b"trusted.overlay.";

/// The tree that, as a lower directory of overlayfs above the directories of
/// the layers below, shows `after` = `layer.apply(lower)`.
///
/// # Errors
/// [`Error::InvalidTree`] if `after` is not `layer` applied to `lower` (a
/// parent or a hard-link target is missing).
pub(crate) fn overlay_tree(layer: &Layer, lower: &Snapshot, after: &Snapshot) -> Result<Snapshot> {
    let mut out: BTreeMap<TreePath, Entry> = BTreeMap::new();
    let opaque_set: HashSet<&TreePath> = layer.opaque_dirs().iter().collect();
    let whiteout_set: HashSet<&TreePath> = layer.whiteouts().iter().collect();
    let upserted_file = |path: &TreePath| {
        layer
            .upserts()
            .binary_search_by(|e| e.path.cmp(path))
            .ok()
            .and_then(|i| layer.upserts().get(i))
            .is_some_and(Entry::is_file)
    };
    let opaque = |mut meta: Metadata| {
        meta.xattrs.insert(OPAQUE_XATTR.to_vec(), b"y".to_vec());
        meta
    };
    for upsert in layer.upserts() {
        let mut entry = upsert.clone();
        // overlayfs would act on these (hide, redirect, …); an image's own
        // are not shown (overlayfs hides the namespace in the view anyway).
        entry
            .meta
            .xattrs
            .retain(|name, _| !name.starts_with(OVERLAY_XATTR_PREFIX));
        if let EntryKind::Hardlink { target } = &upsert.kind {
            if !upserted_file(target) {
                // A link to a lower layer's file: copied up, with the inode's
                // metadata, since links cannot cross lower directories.
                let file = after.get(target).filter(|e| e.is_file()).ok_or_else(|| {
                    Error::InvalidTree {
                        path: upsert.path.clone(),
                        reason: format!("hard-link target '{target}' is not a file of the tree"),
                    }
                })?;
                entry = Entry::new(upsert.path.clone(), file.kind.clone(), file.meta.clone());
            }
        }
        if entry.is_dir()
            && (opaque_set.contains(&entry.path) || whiteout_set.contains(&entry.path))
        {
            entry.meta = opaque(entry.meta);
        }
        out.insert(entry.path.clone(), entry);
    }
    for dir in layer.opaque_dirs() {
        if out.contains_key(dir) {
            continue;
        }
        if let Some(entry) = after.get(dir).filter(|e| e.is_dir()) {
            out.insert(
                dir.clone(),
                Entry::dir(dir.clone(), opaque(entry.meta.clone())),
            );
        }
    }
    for path in layer.whiteouts() {
        // Only what is in the lower tree needs hiding, and only where the
        // parent still is a directory (else nothing beneath it shows anyway).
        let parent_is_dir = path
            .parent()
            .is_some_and(|p| after.get(&p).is_some_and(Entry::is_dir));
        if out.contains_key(path) || lower.get(path).is_none() || !parent_is_dir {
            continue;
        }
        let whiteout = EntryKind::CharDevice {
            rdev: makedev(0, 0),
        };
        out.insert(
            path.clone(),
            Entry::new(path.clone(), whiteout, Metadata::new(0)),
        );
    }
    // Lower hard links to a file this layer replaces follow it here.
    if layer.upserts().iter().any(Entry::is_file) {
        for entry in after {
            if let EntryKind::Hardlink { target } = &entry.kind {
                if !out.contains_key(&entry.path) && upserted_file(target) {
                    out.insert(entry.path.clone(), entry.clone());
                }
            }
        }
    }
    // Parents, with the metadata they have at this layer; the root always.
    let mut parents: Vec<TreePath> = vec![TreePath::ROOT];
    for path in out.keys() {
        let mut at = path.parent();
        while let Some(p) = at {
            if out.contains_key(&p) {
                break;
            }
            at = p.parent();
            parents.push(p);
        }
    }
    for path in parents {
        if out.contains_key(&path) {
            continue;
        }
        let entry = after
            .get(&path)
            .filter(|e| e.is_dir())
            .ok_or_else(|| Error::InvalidTree {
                path: path.clone(),
                reason: "a parent directory of the layer is not a directory of the tree".into(),
            })?;
        out.insert(path.clone(), Entry::dir(path, entry.meta.clone()));
    }
    Snapshot::from_sorted(out.into_values().collect())
}

/// The chain ids of `image`'s layers, bottom first: the hex BLAKE3 of the
/// previous chain id and the layer id (the bottom layer's of the layer id
/// alone), the names of their directories in the cache.
pub(crate) fn chain_ids(image: &Image) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(image.layers().len());
    let mut previous: Option<blake3::Hash> = None;
    for layer in image.layers() {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"layerstore overlay chain v1\0");
        if let Some(p) = previous {
            hasher.update(p.as_bytes());
        }
        hasher.update(layer.as_bytes());
        let hash = hasher.finalize();
        out.push(hash.to_hex().to_string());
        previous = Some(hash);
    }
    out
}

/// The extracted layers of a store: `<store>/mounts/layers/`.
#[derive(Debug, Clone)]
pub(crate) struct LayerCache {
    dir: PathBuf,
}

/// The name of the always-empty lower directory (an overlay without an upper
/// directory needs two lowers; an image may have one layer, or none).
const EMPTY: &str = "empty";

/// The prefix of directories being extracted.
const TMP_PREFIX: &str = ".tmp";

/// The prefix of directories holding several bottom layers merged.
const FLAT_PREFIX: &str = "flat-";

/// Between the name of an extraction not yet synced to disk and the id of the
/// boot that wrote it.
const UNSYNCED: &str = ".unsynced-";

/// The id of this boot (`/proc/sys/kernel/random/boot_id`, its hex digits),
/// or `None` where it cannot be read: then each extraction is synced before
/// it is renamed into place.
fn boot_id() -> Option<&'static str> {
    static ID: OnceLock<Option<String>> = OnceLock::new();
    ID.get_or_init(|| {
        let raw = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        let id: String = raw.chars().filter(char::is_ascii_hexdigit).collect();
        (id.len() == 32).then_some(id)
    })
    .as_deref()
}

/// A directory of the cache, by its name.
#[derive(Debug, PartialEq, Eq)]
enum Named<'n> {
    /// The always-empty lower directories.
    Empty,
    /// An extraction still being written by a live process (`.tmp-<pid>-…`).
    Extracting,
    /// What a process that is gone left half-written.
    Abandoned,
    /// An extraction: `base` is `<chain id>` or `flat-<chain id>`, `chain`
    /// the chain id, `unsynced` the boot that wrote it if not synced since.
    Extraction {
        base: &'n str,
        chain: &'n str,
        unsynced: Option<&'n str>,
    },
}

impl<'n> Named<'n> {
    fn parse(name: &'n str) -> Self {
        if name == EMPTY {
            return Named::Empty;
        }
        if name.starts_with(TMP_PREFIX) {
            return if extracting(name) {
                Named::Extracting
            } else {
                Named::Abandoned
            };
        }
        let (base, unsynced) = match name.split_once(UNSYNCED) {
            Some((base, boot)) => (base, Some(boot)),
            None => (name, None),
        };
        Named::Extraction {
            base,
            chain: base.strip_prefix(FLAT_PREFIX).unwrap_or(base),
            unsynced,
        }
    }
}

impl LayerCache {
    /// The cache of `store`.
    pub(crate) fn new(store: &Store) -> Self {
        LayerCache {
            dir: crate::store::layout::layer_cache(store.path()),
        }
    }

    /// The directory of chain `chain`.
    pub(crate) fn path_of(&self, chain: &str) -> PathBuf {
        self.dir.join(chain)
    }

    /// The `i`th empty lower directory, created if missing (overlayfs
    /// refuses one directory twice in a stack).
    ///
    /// # Errors
    /// [`Error::Io`] naming it if it cannot be created.
    pub(crate) fn empty_dir(&self, i: usize) -> Result<PathBuf> {
        let path = self.dir.join(EMPTY).join(i.to_string());
        std::fs::create_dir_all(&path).map_err(|e| Error::io("create directory", &path, e))?;
        Ok(path)
    }

    /// Extracts every layer of `image` that is not extracted yet and returns
    /// the lower directories to stack, bottom first. An image of more layers
    /// than one overlayfs mount stacks ([`MAX_LOWER_LAYERS`]) has its bottom
    /// layers merged into one directory (the whole tree at that layer,
    /// `flat-<chain id>`), so that it still mounts.
    ///
    /// # Errors
    /// The store's errors reading layers; [`Store::checkout`]'s errors
    /// (which name the path); [`Error::Io`] naming a directory of the cache.
    pub(crate) fn ensure(&self, store: &Store, image: &Image) -> Result<Vec<PathBuf>> {
        let chains = chain_ids(image);
        // Layers below `merged` are in the flat directory of layer merged - 1.
        let merged = chains.len().saturating_sub(MAX_LOWER_LAYERS - 1);
        let mut names: Vec<String> = Vec::with_capacity(chains.len() - merged + 1);
        if merged > 0 {
            names.push(format!("{FLAT_PREFIX}{}", chains[merged - 1]));
        }
        names.extend(chains.iter().skip(merged).cloned());
        let mut dirs: Vec<Option<PathBuf>> = names.iter().map(|n| self.find(n)).collect();
        if dirs.iter().all(Option::is_some) {
            return Ok(dirs.into_iter().flatten().collect());
        }
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| Error::io("create directory", &self.dir, e))?;
        let mut tree = Snapshot::empty();
        for (i, id) in image.layers().iter().enumerate() {
            let layer = store.layer(id)?;
            let after = layer.apply(&tree)?;
            if merged > 0 && i == merged - 1 && dirs[0].is_none() {
                dirs[0] = Some(self.write_dir(store, &after, &names[0])?);
            } else if i >= merged {
                let at = i - merged + usize::from(merged > 0);
                if dirs[at].is_none() {
                    let extracted = overlay_tree(&layer, &tree, &after)?;
                    dirs[at] = Some(self.write_dir(store, &extracted, &names[at])?);
                }
            }
            tree = after;
        }
        Ok(dirs.into_iter().flatten().collect())
    }

    /// The directory holding extraction `name` that this boot may use: the
    /// synced one, or one this boot wrote.
    fn find(&self, name: &str) -> Option<PathBuf> {
        let synced = self.path_of(name);
        if synced.is_dir() {
            return Some(synced);
        }
        let unsynced = self.dir.join(format!("{name}{UNSYNCED}{}", boot_id()?));
        unsynced.is_dir().then_some(unsynced)
    }

    /// Writes `tree` as extraction `name` through a temporary directory;
    /// returns where it is.
    fn write_dir(&self, store: &Store, tree: &Snapshot, name: &str) -> Result<PathBuf> {
        let tmp = unique_tmp_path(&self.dir, TMP_PREFIX);
        // Without a boot id to mark it with, content before name: a crash
        // never leaves a final name over files whose data did not reach the
        // disk.
        let dest = match boot_id() {
            Some(boot) => self.dir.join(format!("{name}{UNSYNCED}{boot}")),
            None => self.path_of(name),
        };
        let written = (|| {
            store.checkout(tree, &tmp, &CheckoutOptions::default())?;
            if boot_id().is_none() {
                sync_fs(&tmp)?;
            }
            Ok(())
        })();
        if let Err(err) = written {
            let _ = remove_tree(&tmp);
            return Err(err);
        }
        match std::fs::rename(&tmp, &dest) {
            Ok(()) if boot_id().is_none() => sync_dir(&self.dir)?,
            Ok(()) => {}
            // Someone else extracted the same chain meanwhile: theirs is as good.
            Err(_) if dest.is_dir() => remove_tree(&tmp)?,
            Err(e) => {
                let _ = remove_tree(&tmp);
                return Err(Error::io("rename into place", &dest, e));
            }
        }
        Ok(dest)
    }

    /// Removes every extracted directory whose chain id is not in `keep`,
    /// what interrupted extractions left, and extractions an earlier boot
    /// left unsynced (they may hold files whose data never reached the disk);
    /// syncs the extractions of this boot that are kept and renames them to
    /// their final names. Returns the directories removed. Callers make sure
    /// no mount uses a removed directory (its chain is in `keep` if an
    /// existing container or view uses it; no mount outlives a boot).
    ///
    /// # Errors
    /// [`Error::Io`] naming a directory that cannot be listed, synced,
    /// renamed or removed.
    pub(crate) fn prune(&self, keep: &HashSet<String>) -> Result<Vec<PathBuf>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("list directory", &self.dir, e)),
        };
        let mut removed = Vec::new();
        let mut to_sync: Vec<(PathBuf, PathBuf)> = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("list directory", &self.dir, e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let path = entry.path();
            let remove = match Named::parse(&name) {
                Named::Empty | Named::Extracting => false,
                Named::Abandoned => true,
                Named::Extraction {
                    base,
                    chain,
                    unsynced,
                } => match unsynced {
                    Some(boot) if Some(boot) != boot_id() => true,
                    _ if !keep.contains(chain) => true,
                    Some(_) => {
                        to_sync.push((path.clone(), self.path_of(base)));
                        false
                    }
                    None => false,
                },
            };
            if remove {
                remove_tree(&path)?;
                removed.push(path);
            }
        }
        if !to_sync.is_empty() {
            sync_fs(&self.dir)?;
            for (from, to) in &to_sync {
                // Renamed while a container may stack it: a mount holds its
                // lower directories, not their names. If the final name is
                // taken (by another process's extraction of the same chain),
                // this one stays until a later boot removes it.
                if !to.exists() {
                    std::fs::rename(from, to).map_err(|e| Error::io("rename into place", to, e))?;
                }
            }
        }
        if !removed.is_empty() || !to_sync.is_empty() {
            sync_dir(&self.dir)?;
        }
        removed.sort();
        Ok(removed)
    }
}

/// Syncs the filesystem holding `path` (one `syncfs`: an fsync of each file
/// of an extraction, in parallel, measured 3.4x slower, 11.2 s against 3.3 s
/// for 20 000 files, `benches/overlay.rs`).
fn sync_fs(path: &Path) -> Result<()> {
    let handle = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
    rustix::fs::syncfs(&handle).map_err(|e| Error::io("sync", path, e.into()))
}

/// Whether `name` is a temporary directory of an extraction whose process
/// still runs (`.tmp-<pid>-…`, see [`unique_tmp_path`]).
fn extracting(name: &str) -> bool {
    name.strip_prefix(TMP_PREFIX)
        .and_then(|rest| rest.strip_prefix('-'))
        .and_then(|rest| rest.split('-').next())
        .and_then(|pid| pid.parse::<u32>().ok())
        .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
}

/// Removes the directory `path` and everything in it (root may remove what
/// has no write permission; extracted layers are written by root).
pub(crate) fn remove_tree(path: &Path) -> Result<()> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn chain_ids_depend_on_every_layer_below() {
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
        let ab = chain_ids(&image(vec![id(1), id(2)]));
        let cb = chain_ids(&image(vec![id(3), id(2)]));
        let a = chain_ids(&image(vec![id(1)]));
        assert_eq!(ab[0], a[0]);
        assert_ne!(ab[1], cb[1]);
        assert_eq!(ab[1].len(), 64);
    }
}

/// Real overlayfs mounts: need root (`CAP_SYS_ADMIN`, `CAP_MKNOD`).
#[cfg(test)]
mod privileged {
    use super::tests_support::*;
    use super::*;
    use crate::mount::overlay::kernel::{self, OverlaySpec};

    #[test]
    fn a_read_only_overlay_of_extracted_layers_shows_the_image_tree() {
        if !privileged("overlay extraction") {
            return;
        }
        let (tmp, store) = store();
        let (image, tree) = tricky_image(&store);
        let cache = LayerCache::new(&store);
        let dirs = cache.ensure(&store, &image).unwrap();
        assert_eq!(dirs.len(), 4);
        // A second call extracts nothing (the directories are reused).
        let before = std::fs::metadata(&dirs[0]).unwrap();
        assert_eq!(cache.ensure(&store, &image).unwrap(), dirs);
        let again = std::fs::metadata(&dirs[0]).unwrap();
        assert_eq!(
            std::os::unix::fs::MetadataExt::ino(&before),
            std::os::unix::fs::MetadataExt::ino(&again)
        );

        let target = tmp.path().join("mnt");
        std::fs::create_dir(&target).unwrap();
        let mut lowers: Vec<PathBuf> = dirs.iter().rev().cloned().collect();
        lowers.push(cache.empty_dir(0).unwrap());
        kernel::mount(
            &target,
            &OverlaySpec {
                lowers: &lowers,
                upper: None,
            },
        )
        .unwrap();
        let scanned = store.scan(
            &target,
            &crate::ScanOptions {
                use_stat_cache: false,
                threads: None,
            },
        );
        let write = std::fs::write(target.join("new"), b"x");
        kernel::unmount_at(&target).unwrap();
        assert_eq!(
            write.unwrap_err().raw_os_error(),
            Some(rustix::io::Errno::ROFS.raw_os_error())
        );
        assert_eq!(unlink(&scanned.unwrap().snapshot), unlink(&tree));
    }
}

/// The rule that keeps a crash of the machine from stacking half-written
/// layers: an extraction not synced is used only by the boot that wrote it.
/// Needs root (the image holds a fifo and whiteouts, which are devices).
#[cfg(test)]
mod durability {
    use super::tests_support::*;
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn unsynced_extractions_of_another_boot_are_never_used_and_gc_syncs_ours() {
        if !privileged("overlay extraction") {
            return;
        }
        let (_tmp, store) = store();
        let (image, _) = tricky_image(&store);
        let cache = LayerCache::new(&store);
        let chains = chain_ids(&image);
        let boot = boot_id().expect("a boot id on Linux");
        let dirs = cache.ensure(&store, &image).unwrap();
        for (dir, chain) in dirs.iter().zip(&chains) {
            assert_eq!(*dir, cache.path_of(&format!("{chain}{UNSYNCED}{boot}")));
        }

        // The bottom layer as an earlier boot left it: unsynced, and (after
        // the crash) missing a file. It is not stacked: extracted again.
        let other = if boot.starts_with('0') { "1" } else { "0" }.repeat(32);
        let stale = cache.path_of(&format!("{}{UNSYNCED}{other}", chains[0]));
        std::fs::rename(&dirs[0], &stale).unwrap();
        std::fs::remove_file(stale.join("a/f1")).unwrap();
        let again = cache.ensure(&store, &image).unwrap();
        assert_eq!(again, dirs);
        assert!(again[0].join("a/f1").is_file());

        // gc's prune: the stale one goes; ours are synced and renamed.
        let inode = std::fs::metadata(&dirs[1]).unwrap().ino();
        let removed = cache.prune(&chains.iter().cloned().collect()).unwrap();
        assert_eq!(removed, [stale]);
        let synced = cache.ensure(&store, &image).unwrap();
        for (dir, chain) in synced.iter().zip(&chains) {
            assert_eq!(*dir, cache.path_of(chain));
        }
        assert_eq!(std::fs::metadata(&synced[1]).unwrap().ino(), inode);

        // A synced extraction is used as it is, in any boot.
        std::fs::write(synced[2].join("planted"), b"kept").unwrap();
        assert_eq!(cache.ensure(&store, &image).unwrap(), synced);
        assert!(synced[2].join("planted").is_file());
    }
}

/// Real overlayfs mounts of many layers: need root.
#[cfg(test)]
mod many_layers {
    use super::tests_support::*;
    use super::*;
    use crate::mount::overlay::kernel::{self, OverlaySpec};

    /// An image of `n` layers: layer `i` adds `f<i>` and rewrites `top`.
    fn stacked(store: &Store, n: usize) -> Image {
        let mut ids = Vec::new();
        let mut tree = Snapshot::empty();
        for i in 0..n {
            let mut upserts = vec![
                Entry::file(
                    p(&format!("f{i}")),
                    store.put_bytes(format!("{i}").as_bytes()).unwrap(),
                    Metadata::new(0o644),
                ),
                Entry::file(
                    p("top"),
                    store.put_bytes(format!("top {i}").as_bytes()).unwrap(),
                    Metadata::new(0o644),
                ),
            ];
            if i == 0 {
                upserts.push(Entry::dir(TreePath::ROOT, Metadata::new(0o755)));
            }
            let layer = Layer::new(upserts, vec![], vec![]).unwrap();
            tree = layer.apply(&tree).unwrap();
            ids.push(store.put_layer(&layer).unwrap());
        }
        let history = ids.iter().map(|_| crate::History::default()).collect();
        let rootfs = store.put_snapshot(&tree).unwrap();
        Image::new(ids, rootfs, crate::ImageConfig::default(), history).unwrap()
    }

    fn mount_and_check(n: usize) {
        let (tmp, store) = store();
        let image = stacked(&store, n);
        let cache = LayerCache::new(&store);
        let mut lowers = cache.ensure(&store, &image).unwrap();
        assert_eq!(lowers.len(), n.min(kernel::MAX_LOWER_LAYERS));
        lowers.reverse();
        let target = tmp.path().join("mnt");
        std::fs::create_dir(&target).unwrap();
        kernel::mount(
            &target,
            &OverlaySpec {
                lowers: &lowers,
                upper: None,
            },
        )
        .unwrap();
        let top = std::fs::read(target.join("top"));
        let files = std::fs::read_dir(&target).map(Iterator::count);
        let first = std::fs::read(target.join("f0"));
        kernel::unmount_at(&target).unwrap();
        assert_eq!(
            top.unwrap(),
            format!("top {}", n - 1).into_bytes(),
            "{n} layers"
        );
        assert_eq!(files.unwrap(), n + 1, "{n} layers");
        assert_eq!(first.unwrap(), b"0");
    }

    #[test]
    fn images_of_128_500_and_600_layers_mount() {
        if !privileged("mounting many layers") {
            return;
        }
        for n in [128, 500, 600] {
            mount_and_check(n);
        }
    }
}

/// Helpers shared by the tests of the overlay backend.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// Whether the process is root; if not, says so loudly, and panics
    /// instead when `LAYERSTORE_REQUIRE_PRIVILEGED=1` (CI).
    pub(crate) fn privileged(what: &str) -> bool {
        if rustix::process::geteuid().is_root() {
            return true;
        }
        assert!(
            std::env::var("LAYERSTORE_REQUIRE_PRIVILEGED").as_deref() != Ok("1"),
            "{what} needs root and LAYERSTORE_REQUIRE_PRIVILEGED=1"
        );
        eprintln!("SKIPPED: {what} needs root");
        false
    }

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
}
