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
//! directory is keyed by the layer's *stack key* (the layer ids from the
//! bottom up to it, hashed; OCI's `ChainID` does the same), not its layer id:
//! images that share their bottom layers share their directories.
//!
//! The cache lives in `<store>/mounts/layers/<stack key>/`. It is rebuildable
//! from the store at any time. A directory is written through the checkout
//! machinery ([`Store::checkout`]: confined, parallel, exact metadata) into
//! `.tmp-*` and renamed into place when whole, so a crash of the process
//! never leaves half a layer under a final name.
//!
//! Durability is deferred: an extraction is renamed to
//! `<stack key>.unsynced-<boot id>`, without waiting for its data to reach the
//! disk (a `syncfs` cost more than the extraction itself). Such a directory
//! is used only during the boot that wrote it, when the page cache still
//! holds whatever did not reach the disk; after a crash of the machine (a
//! new boot id) it may hold files without their data, so it is never used
//! again and is deleted. [`LayerCache::prune`] (run by `layerstore gc`)
//! syncs the extractions of this boot and renames them to `<stack key>`,
//! which every later boot uses.
//!
//! # Parts
//!
//! This file is the cache: [`LayerCache`] names, finds, writes and prunes
//! the directories, keyed by [`stack_keys`]. What goes into one directory,
//! the layer in overlayfs's form, is computed in `form`
//! ([`overlay_tree`]), a pure function of the layer and the trees below
//! it. The tests are in files of their own: `tests` (the form, the names,
//! pruning), `privileged` and `many_layers` (real overlayfs mounts),
//! `durability` (unsynced extractions across boots), and `tests_support`,
//! helpers shared with the other tests of the overlay backend.

mod form;

#[cfg(test)]
mod durability;
#[cfg(test)]
mod many_layers;
#[cfg(test)]
mod privileged;
#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod tests_support;

pub(crate) use self::form::{OPAQUE_XATTR, OVERLAY_XATTR_PREFIX, overlay_tree};

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::error::{Error, Result};
use crate::fsutil::durable::{sync_dir, unique_tmp_path};
use crate::mount::overlay::kernel::MAX_LOWER_LAYERS;
use crate::store::Store;
use crate::tree::{CheckoutOptions, Image, Snapshot};

/// The stack keys of `image`'s layers, bottom first: the hex BLAKE3 of the
/// previous stack key and the layer id (the bottom layer's of the layer id
/// alone), the names of their directories in the cache.
pub(crate) fn stack_keys(image: &Image) -> Vec<String> {
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
    /// An extraction: `base` is `<stack key>` or `flat-<stack key>`, `chain`
    /// the stack key, `unsynced` the boot that wrote it if not synced since.
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
    /// `flat-<stack key>`), so that it still mounts.
    ///
    /// # Errors
    /// The store's errors reading layers; [`Store::checkout`]'s errors
    /// (which name the path); [`Error::Io`] naming a directory of the cache.
    pub(crate) fn ensure(&self, store: &Store, image: &Image) -> Result<Vec<PathBuf>> {
        let chains = stack_keys(image);
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

    /// Removes every extracted directory whose stack key is not in `keep`,
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
