//! The on-disk layout of a store: every directory and file in it, named once.
//!
//! This is the one description of the layout; the README and the other
//! module docs point here. Code builds every path inside a store with the
//! names and functions below, never with string literals of its own.
//!
//! ```text
//! <store>/
//!   config                 format version, chunker parameters, compression (a text file)
//!   lock                   flock: shared by every open store, exclusive for `fsck --repair`
//!   packs/                 flocked (the directory itself) for the moment a writer indexes
//!                          its new pack (see `store::lock`)
//!   packs/<id>.pack        frames of zstd-compressed chunks; immutable once renamed into place
//!   packs/<id>.idx         the pack's sorted 64-byte records (chunk id -> frame), read in
//!                          place by mmap; written after the pack is durable
//!   packs/combined.midx    the combined index: one sorted table of the chunks of many packs
//!                          (`store::combined_index` has its byte layout); a cache of their
//!                          indexes, written after them, rebuilt from them when missing,
//!                          stale or damaged; packs written since are looked up in their own
//!   refs/<group>/<name>    small files naming objects, written atomically: the roots gc keeps
//!     refs/tags/<name>:<tag>   one image id per tag (`/` in a name written `%2F`)
//!     refs/cache/<key>         a build-cache entry: the image a build step made
//!     refs/containers/<name>   a pin: a container's parent and last committed image
//!     refs/<group>/<name>      any other group: a pin, ids kept with all they reach
//!   containers/<name>/     one directory per container: `meta` and the backend's state
//!   containers/.base/      the copy backend's shared checkouts of base trees
//!   cache/stat/<hash>      the stat cache of one scanned directory (BLAKE3 of its
//!                          canonical path); a cache only: safe to delete
//!   cache/oci/<kind>/      what OCI export and push remember (blobs, chains, exports,
//!                          pushed manifests); a cache only: safe to delete
//!   mounts/layers/<key>    layers extracted for overlayfs, by stack key
//!   mounts/lazy/<image>.log  the log of the server of a lazy view of that
//!                          image (the CLI's `mount --lazy`)
//!                          (`.unsynced-<boot id>` until gc syncs them); rebuilt on demand
//!   quarantine/            damaged packs and indexes that `fsck` repair moved aside
//!                          (never deleted)
//!   leases/                what keeps a live writer's chunks from gc (`store::lease`); not a
//!                          cache: removing a live lease may lose its writer's work. The
//!                          directory itself is flocked exclusively by the gc running
//!   leases/<name>.lease    one handle's lease: the 32-byte ids it put; flocked by its owner
//!                          while open (one that can be locked is stale, removed by the next gc)
//!   leases/gc.gen          the gc generation, as the file's length (one byte appended at each
//!                          change): odd while a gc is deleting
//!   leases/gc.intent       while the generation is odd: the 32-byte ids of the packs that gc
//!                          may delete
//!   tmp/                   anything half-written (names carry the writer's pid);
//!                          cleaned when nobody holds the lock
//! ```
//!
//! The store owns `config`, `lock`, `packs/`, `leases/`, `refs/` (as a namespace:
//! what each group means belongs to the stratum that writes it),
//! `quarantine/` and `tmp/`; the other directories belong to the strata
//! named beside them, which write through `tmp/` like the store does.

use std::path::{Path, PathBuf};

use crate::id::PackId;

/// The store's configuration file.
pub(crate) const CONFIG: &str = "config";
/// The lock file.
pub(crate) const LOCK: &str = "lock";
/// The directory of packs and their indexes.
pub(crate) const PACKS: &str = "packs";
/// The extension of a pack file in [`PACKS`].
pub(crate) const PACK_EXT: &str = "pack";
/// The extension of an index file in [`PACKS`].
pub(crate) const INDEX_EXT: &str = "idx";
/// The combined index, in [`PACKS`].
pub(crate) const COMBINED_INDEX: &str = "combined.midx";
/// The directory of leases.
pub(crate) const LEASES: &str = "leases";
/// The extension of a lease file in [`LEASES`].
pub(crate) const LEASE_EXT: &str = "lease";
/// The extension of a root lease in [`LEASES`]: ids a reader keeps with
/// what they reach (`Store::lease_root`).
pub(crate) const ROOT_LEASE_EXT: &str = "root";
/// The directory of files being written.
pub(crate) const TMP: &str = "tmp";
/// The directory of ref groups.
pub(crate) const REFS: &str = "refs";
/// The ref group of tags.
pub(crate) const TAGS: &str = "tags";
/// The ref group of build-cache entries.
pub(crate) const CACHE_ENTRIES: &str = "cache";
/// The ref group of containers' pins.
pub(crate) const CONTAINER_PINS: &str = "containers";
/// The ref group of images being fetched lazily: a pin each, named by the
/// image's hex id.
pub(crate) const LAZY: &str = "lazy";
/// The directory of damaged files moved aside.
pub(crate) const QUARANTINE: &str = "quarantine";
/// The directory of containers.
pub(crate) const CONTAINERS: &str = "containers";
/// The copy backend's shared checkouts, in [`CONTAINERS`] (a `.`-name, which
/// no container may have).
pub(crate) const BASE_CHECKOUTS: &str = ".base";

/// `config`.
pub(crate) fn config(root: &Path) -> PathBuf {
    root.join(CONFIG)
}

/// `lock`.
pub(crate) fn lock(root: &Path) -> PathBuf {
    root.join(LOCK)
}

/// `packs/`.
pub(crate) fn packs(root: &Path) -> PathBuf {
    root.join(PACKS)
}

/// `packs/combined.midx`.
pub(crate) fn combined_index(root: &Path) -> PathBuf {
    packs(root).join(COMBINED_INDEX)
}

/// `tmp/`.
pub(crate) fn tmp(root: &Path) -> PathBuf {
    root.join(TMP)
}

/// `leases/`.
pub(crate) fn leases(root: &Path) -> PathBuf {
    root.join(LEASES)
}

/// `leases/gc.gen`.
pub(crate) fn gc_generation(root: &Path) -> PathBuf {
    leases(root).join("gc.gen")
}

/// `leases/gc.intent`.
pub(crate) fn gc_intent(root: &Path) -> PathBuf {
    leases(root).join("gc.intent")
}

/// `leases/gc.last`: what the last gc that rewrote nothing concluded (a
/// cache, see `store/gc_summary.rs`).
pub(crate) fn gc_summary(root: &Path) -> PathBuf {
    leases(root).join("gc.last")
}

/// `refs/`.
pub(crate) fn refs(root: &Path) -> PathBuf {
    root.join(REFS)
}

/// `refs/<group>/`.
pub(crate) fn ref_group(root: &Path, group: &str) -> PathBuf {
    refs(root).join(group)
}

/// `quarantine/`.
pub(crate) fn quarantine(root: &Path) -> PathBuf {
    root.join(QUARANTINE)
}

/// `cache/stat/`.
pub(crate) fn stat_cache(root: &Path) -> PathBuf {
    root.join("cache").join("stat")
}

/// `cache/oci/`.
pub(crate) fn oci_cache(root: &Path) -> PathBuf {
    root.join("cache").join("oci")
}

/// `containers/`.
pub(crate) fn containers(root: &Path) -> PathBuf {
    root.join(CONTAINERS)
}

/// `containers/.base/`.
pub(crate) fn base_checkouts(root: &Path) -> PathBuf {
    containers(root).join(BASE_CHECKOUTS)
}

/// `mounts/layers/`.
pub(crate) fn layer_cache(root: &Path) -> PathBuf {
    root.join("mounts").join("layers")
}

/// `mounts/lazy/`.
pub(crate) fn lazy_views(root: &Path) -> PathBuf {
    root.join("mounts").join("lazy")
}

/// The file name of pack `id`: `<id>.pack`.
pub(crate) fn pack_file(id: &PackId) -> String {
    format!("{}.{PACK_EXT}", id.to_hex())
}

/// The file name of the index of pack `id`: `<id>.idx`.
pub(crate) fn index_file(id: &PackId) -> String {
    format!("{}.{INDEX_EXT}", id.to_hex())
}

/// What a file name in `packs/` names: a pack (`false`) or an index
/// (`true`), and its id; `None` for any other name.
pub(crate) fn parse_pack_dir_name(name: &str) -> Option<(PackId, bool)> {
    let (hex, ext) = name.rsplit_once('.')?;
    let is_index = match ext {
        PACK_EXT => false,
        INDEX_EXT => true,
        _ => return None,
    };
    PackId::from_hex(hex).ok().map(|id| (id, is_index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_names_parse_back() {
        let id = PackId::from_bytes([7; 32]);
        assert_eq!(parse_pack_dir_name(&pack_file(&id)), Some((id, false)));
        assert_eq!(parse_pack_dir_name(&index_file(&id)), Some((id, true)));
        assert_eq!(parse_pack_dir_name("x.idx"), None);
        assert_eq!(parse_pack_dir_name(&format!("{}.tmp", id.to_hex())), None);
        assert_eq!(parse_pack_dir_name(COMBINED_INDEX), None);
    }
}
