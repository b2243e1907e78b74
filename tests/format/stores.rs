//! The second reader on a store made by each feature that shapes what is on
//! disk, built as that feature's own tests build theirs: garbage collection,
//! consolidation, repair, sync, OCI and docker-archive round trips, seekable
//! layers, the build cache, containers, large files and objects, and (as
//! root) what only root scans. Each asserts `reader.py`'s listing equals the
//! crate's.

use std::path::Path;

use layerstore::build::{BuildOptions, Builder};
use layerstore::mount::{CommitOptions, Containers, PrepareOptions};
use layerstore::oci::{Compression, Exchange, ExportOptions, ImportOptions};
use layerstore::{
    Entry, EntryKind, FsckOptions, GcOptions, History, ImageId, Layer, Metadata, ScanOptions,
    Snapshot, Store, StoreOptions, SyncOptions, TreePath,
};

use crate::python::{assert_agree, python_ready};

fn new_store(dir: &Path, name: &str) -> Store {
    Store::create(dir.join(name), &StoreOptions::default()).unwrap()
}

/// Scans `src` and stores it as a child of `parent` (a whole tree without
/// one), tagged `tag`, and flushes: one pack an image.
fn commit(store: &Store, src: &Path, parent: Option<&ImageId>, tag: &str) -> ImageId {
    let tree = store.scan(src, &ScanOptions::default()).unwrap().snapshot;
    let layer = match parent {
        Some(id) => store.image_tree(id).unwrap().diff(&tree),
        None => Layer::of_tree(tree.clone()),
    };
    let image = store
        .put_child_image(parent, &layer, &tree, None, History::default())
        .unwrap();
    store.set_tag(&tag.parse().unwrap(), &image).unwrap();
    store.flush().unwrap();
    image
}

/// Writes `count` files of `len` bytes (half pseudo-random, half text)
/// under `src/<dir>/`, seeded by `seed`.
fn files(src: &Path, dir: &str, count: u64, len: usize, seed: u64) {
    let dir = src.join(dir);
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..count {
        let bytes = if i % 2 == 0 {
            crate::pseudo_random(len, seed * 1000 + i)
        } else {
            crate::vectors::generate("repeat:text of a file ", len + usize::try_from(i).unwrap())
        };
        std::fs::write(dir.join(format!("f{i}")), bytes).unwrap();
    }
}

/// Three images a pack each, then: one untagged and `gc` rewriting every
/// pack with a dead chunk (packs rewritten and deleted, the combined index
/// rewritten).
#[test]
fn after_gc() {
    if !python_ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = new_store(tmp.path(), "store");
    let src = tmp.path().join("src");
    let mut parent = None;
    for round in 0..3 {
        files(&src, &format!("r{round}"), 6, 40_000, round);
        if round == 2 {
            std::fs::remove_dir_all(src.join("r0")).unwrap();
        }
        parent = Some(commit(
            &store,
            &src,
            parent.as_ref(),
            &format!("img:r{round}"),
        ));
    }
    store.maintain(false).unwrap();
    let packs_before = crate::vectors::packs(store.path(), "pack");
    store.remove_tag(&"img:r0".parse().unwrap()).unwrap();
    store.remove_tag(&"img:r1".parse().unwrap()).unwrap();
    let report = store
        .gc(&GcOptions::default().repack_dead_fraction(0.0))
        .unwrap();
    assert!(report.packs_repacked > 0, "{report:?}");
    let after = crate::vectors::packs(store.path(), "pack");
    assert!(
        packs_before.iter().any(|p| !after.contains(p)),
        "no pack deleted"
    );
    assert!(store.path().join("packs/combined.midx").exists());
    assert_agree(&store);
}

/// Many small packs merged by `Store::maintain(true)`, with the combined
/// index `packs/combined.midx`.
#[test]
fn after_consolidation() {
    if !python_ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = new_store(tmp.path(), "store");
    store.set_auto_maintenance(false);
    let src = tmp.path().join("src");
    let mut parent = None;
    for round in 0..20 {
        files(&src, &format!("r{round}"), 1, 3_000, round);
        parent = Some(commit(
            &store,
            &src,
            parent.as_ref(),
            &format!("img:r{round}"),
        ));
    }
    let before = store.stats().unwrap().packs.len();
    store.maintain(true).unwrap();
    let after = store.stats().unwrap().packs.len();
    assert!(after < before, "{before} packs, then {after}");
    assert!(store.path().join("packs/combined.midx").exists());
    assert_agree(&store);
}

/// `fsck --repair` of a damaged pack: the chunks that verify copied out,
/// the pack and its index moved to `quarantine/` (which a reader ignores);
/// the image that lost a chunk untagged.
#[test]
fn after_repair() {
    if !python_ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = new_store(tmp.path(), "store");
    let src = tmp.path().join("src");
    files(&src, "a", 4, 30_000, 1);
    let base = commit(&store, &src, None, "kept");
    let packs = crate::vectors::packs(store.path(), "pack");
    files(&src, "b", 1, 3_000_000, 2);
    commit(&store, &src, Some(&base), "damaged");
    let path = crate::vectors::packs(store.path(), "pack")
        .into_iter()
        .find(|p| !packs.contains(p))
        .unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();
    let report = store.fsck(&FsckOptions::default().repair(true)).unwrap();
    assert!(!report.repaired.is_empty(), "{report:?}");
    assert!(store.path().join("quarantine").read_dir().unwrap().count() > 0);
    store.remove_tag(&"damaged".parse().unwrap()).unwrap();
    assert_agree(&store);
}

/// Images sent by `sync_image` from another store, the second sharing the
/// first's base (only what is missing is sent).
#[test]
fn written_by_sync() {
    if !python_ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let from = new_store(tmp.path(), "from");
    let src = tmp.path().join("src");
    files(&src, "a", 4, 50_000, 3);
    let base = commit(&from, &src, None, "base");
    files(&src, "b", 3, 20_000, 4);
    let top = commit(&from, &src, Some(&base), "top");
    let to = new_store(tmp.path(), "to");
    let tag = "synced:base".parse().unwrap();
    from.sync_image(&base, &to, &SyncOptions::default().tag(&tag))
        .unwrap();
    let tag = "synced:top".parse().unwrap();
    from.sync_image(&top, &to, &SyncOptions::default().tag(&tag))
        .unwrap();
    assert_agree(&to);
}

/// An image exported as an OCI layout (gzip) and as a docker archive,
/// imported into another store from each, and exported back from there.
#[test]
fn imported_from_oci_and_docker() {
    if !python_ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let from = new_store(tmp.path(), "from");
    let src = tmp.path().join("src");
    files(&src, "a", 4, 40_000, 5);
    std::os::unix::fs::symlink("a/f0", src.join("link")).unwrap();
    std::fs::hard_link(src.join("a/f1"), src.join("hard")).unwrap();
    let base = commit(&from, &src, None, "base");
    std::fs::remove_file(src.join("a/f2")).unwrap();
    files(&src, "b", 2, 10_000, 6);
    let top = commit(&from, &src, Some(&base), "top");
    let layout = tmp.path().join("layout");
    let archive = tmp.path().join("image.tar");
    let ex = Exchange::new(&from);
    ex.export_layout(&top, &layout, Some("top"), &ExportOptions::default())
        .unwrap();
    ex.export_docker_archive(&top, &archive, &["top:1".to_owned()])
        .unwrap();

    let to = new_store(tmp.path(), "to");
    let ex = Exchange::new(&to);
    let oci = ex
        .import_layout(&layout, Some("top"), &ImportOptions::default())
        .unwrap();
    to.set_tag(&"oci:top".parse().unwrap(), &oci).unwrap();
    let docker = ex
        .import_docker_archive(&archive, None, &ImportOptions::default())
        .unwrap();
    to.set_tag(&"docker:top".parse().unwrap(), &docker).unwrap();
    to.flush().unwrap();
    // And out again: what export remembers (`cache/oci/`) a reader ignores.
    ex.export_layout(
        &oci,
        &tmp.path().join("again"),
        None,
        &ExportOptions::default(),
    )
    .unwrap();
    assert_agree(&to);
}

/// The equivalent of a partial pull of a seekable layer: the top image
/// exported as a `zstd-seekable` layout and imported into a store that has
/// its base already (only the missing chunks are taken from the blobs).
#[test]
fn imported_from_seekable_layers() {
    if !python_ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let from = new_store(tmp.path(), "from");
    let src = tmp.path().join("src");
    files(&src, "a", 4, 200_000, 7);
    let base = commit(&from, &src, None, "base");
    files(&src, "b", 2, 300_000, 8);
    std::fs::write(src.join("a/f1"), b"changed\n").unwrap();
    let top = commit(&from, &src, Some(&base), "top");
    let layout = tmp.path().join("layout");
    let seekable = ExportOptions::new(Compression::ZstdSeekable);
    Exchange::new(&from)
        .export_layout(&top, &layout, Some("top"), &seekable)
        .unwrap();
    let to = new_store(tmp.path(), "to");
    from.sync_image(&base, &to, &SyncOptions::default())
        .unwrap();
    let image = Exchange::new(&to)
        .import_layout(&layout, Some("top"), &ImportOptions::default())
        .unwrap();
    to.set_tag(&"seekable:top".parse().unwrap(), &image)
        .unwrap();
    to.flush().unwrap();
    assert_agree(&to);
}

/// A build (`FROM scratch`, `COPY`, config instructions) and its cache
/// entries under `refs/cache/`.
#[test]
fn build_cache_entries() {
    if !python_ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = new_store(tmp.path(), "store");
    let context = tmp.path().join("context");
    files(&context, "src", 3, 20_000, 9);
    std::fs::write(
        context.join("Containerfile"),
        "FROM scratch\nCOPY src/ /app/\nENV MODE=test\nCOPY src/f1 /etc/f1\nCMD [\"/app/f0\"]\n",
    )
    .unwrap();
    let report = Builder::new(&store)
        .build(&context, &BuildOptions::default(), |_| {})
        .unwrap();
    store
        .set_tag(&"built".parse().unwrap(), &report.image)
        .unwrap();
    store.flush().unwrap();
    assert!(store.path().join("refs/cache").read_dir().unwrap().count() > 0);
    assert_agree(&store);
}

/// Containers of the `memory` and `copy` backends, each with a committed
/// image: their pins under `refs/containers/` and the copy backend's
/// `containers/.base/`.
#[test]
fn container_pins() {
    if !python_ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = new_store(tmp.path(), "store");
    let c = Containers::new(&store);
    let empty = c.empty_image().unwrap();
    let p = |s: &str| TreePath::new(s).unwrap();
    c.prepare("mem", &empty, &PrepareOptions::default().backend("memory"))
        .unwrap();
    c.files("mem")
        .unwrap()
        .write(&p("base-file"), &b"base content ".repeat(10_000))
        .unwrap();
    let base = c
        .commit(
            "mem",
            &CommitOptions::default()
                .tag("base".parse().unwrap())
                .message("base"),
        )
        .unwrap();
    let target = tmp.path().join("copy-target");
    c.prepare(
        "copied",
        &base,
        &PrepareOptions::default().backend("copy").target(&target),
    )
    .unwrap();
    std::fs::write(target.join("added"), crate::pseudo_random(90_000, 10)).unwrap();
    std::fs::remove_file(target.join("base-file")).unwrap();
    c.commit("copied", &CommitOptions::default().message("copied"))
        .unwrap();
    store.flush().unwrap();
    assert!(
        store
            .path()
            .join("refs/containers")
            .read_dir()
            .unwrap()
            .count()
            >= 2
    );
    assert_agree(&store);
}

/// Large files (raw frames of incompressible chunks, a file of many
/// frames) and a directory object over 1 MiB (a frame of its own).
#[test]
fn large_files_and_objects() {
    if !python_ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = new_store(tmp.path(), "store");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("random"), crate::pseudo_random(9 << 20, 11)).unwrap();
    std::fs::write(src.join("zeros"), vec![0; 5 << 20]).unwrap();
    commit(&store, &src, None, "large:files");

    // 20 000 entries in one directory: a directory object of over 1 MiB.
    let mut entries = vec![
        Entry::dir(TreePath::ROOT, Metadata::new(0o755)),
        Entry::dir(p("many"), Metadata::new(0o755)),
    ];
    for i in 0..20_000 {
        entries.push(Entry::new(
            p(&format!("many/a-rather-long-name-of-a-fifo-{i:06}")),
            EntryKind::Fifo,
            Metadata::new(0o644),
        ));
    }
    let tree = Snapshot::from_entries(entries).unwrap();
    let image = store
        .put_child_image(
            None,
            &Layer::of_tree(tree.clone()),
            &tree,
            None,
            History::default(),
        )
        .unwrap();
    store
        .set_tag(&"large:objects".parse().unwrap(), &image)
        .unwrap();
    store.flush().unwrap();
    assert_agree(&store);
}

fn p(s: &str) -> TreePath {
    TreePath::new(s).unwrap()
}

/// What only root scans: hard links, `user.`, `trusted.` and `security.`
/// xattrs, character and block devices, fifos, files of other owners.
#[test]
fn special_files_as_root() {
    if !python_ready() || !crate::common::require_root("special files for reader.py") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = new_store(tmp.path(), "store");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("dev")).unwrap();
    std::fs::write(src.join("file"), b"some content\n").unwrap();
    std::fs::hard_link(src.join("file"), src.join("dev/linked")).unwrap();
    crate::common::mknod(
        &src.join("dev/null"),
        rustix::fs::FileType::CharacterDevice,
        0o666,
        (1, 3),
    );
    crate::common::mknod(
        &src.join("dev/loop9"),
        rustix::fs::FileType::BlockDevice,
        0o660,
        (7, 9),
    );
    crate::common::mknod(
        &src.join("dev/fifo"),
        rustix::fs::FileType::Fifo,
        0o600,
        (0, 0),
    );
    rustix::fs::chown(
        src.join("file"),
        Some(rustix::fs::Uid::from_raw(1000)),
        Some(rustix::fs::Gid::from_raw(100)),
    )
    .unwrap();
    let set = |path: &Path, name: &str, value: &[u8]| {
        rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty())
            .unwrap_or_else(|e| panic!("setxattr {name}: {e}"));
    };
    set(&src.join("file"), "trusted.overlay.opaque", b"y");
    if crate::common::user_xattrs_supported(&src) {
        set(&src.join("file"), "user.comment", b"\x00\xffbinary");
        set(&src.join("dev"), "user.dir", b"d");
    }
    let base = commit(&store, &src, None, "special:base");
    std::fs::remove_file(src.join("dev/loop9")).unwrap();
    crate::common::mknod(
        &src.join("fifo2"),
        rustix::fs::FileType::Fifo,
        0o644,
        (0, 0),
    );
    commit(&store, &src, Some(&base), "special:top");
    assert_agree(&store);
}

/// Seekable layers pulled from a real registry (`tests/registry`'s
/// `Server`, Debian's `docker-registry` on 127.0.0.1): a store holding v1
/// pulls v2 fetching only the frames of the chunks it lacks; another pulls
/// v2 lazily (the tree first, untagged), prefetches the rest and completes.
#[cfg(feature = "registry")]
#[test]
fn pulled_seekable_layers() {
    use layerstore::oci::{PrefetchOptions, PushOptions, Registry, RegistryOptions, RegistryRef};
    if !python_ready() {
        return;
    }
    let Some(server) = crate::server::Server::start("a partial pull for reader.py") else {
        return;
    };
    let registry = std::sync::Arc::new(
        Registry::new(&server.host, &RegistryOptions::default().insecure(true)).unwrap(),
    );
    let reference =
        |tag: &str| -> RegistryRef { format!("{}/demo/base:{tag}", server.host).parse().unwrap() };
    let tmp = tempfile::tempdir().unwrap();
    let from = new_store(tmp.path(), "from");
    let src = tmp.path().join("src");
    files(&src, "usr/lib", 2, 2_000_000, 12);
    files(&src, "etc", 10, 2_000, 13);
    let v1 = commit(&from, &src, None, "v1");
    let mut big = std::fs::read(src.join("usr/lib/f0")).unwrap();
    big[1_000_000..1_000_100].copy_from_slice(&[7; 100]);
    std::fs::write(src.join("usr/lib/f0"), big).unwrap();
    std::fs::write(src.join("etc/f3"), b"changed\n").unwrap();
    let v2 = commit(&from, &src, Some(&v1), "v2");
    for (id, tag) in [(&v1, "v1"), (&v2, "v2")] {
        Exchange::new(&from)
            .push(&registry, id, &reference(tag), &PushOptions::default())
            .unwrap();
    }

    let partial = new_store(tmp.path(), "partial");
    let ex = Exchange::new(&partial);
    let tag = "pulled:v1".parse().unwrap();
    ex.pull(&registry, &reference("v1"), Some(&tag), &|_| {})
        .unwrap();
    let tag = "pulled:v2".parse().unwrap();
    let (_, report) = ex
        .pull(&registry, &reference("v2"), Some(&tag), &|_| {})
        .unwrap();
    assert!(report.chunks_fetched > 0, "{report:?}");
    assert_agree(&partial);

    let lazy_store = new_store(tmp.path(), "lazy");
    let lazy = Exchange::new(&lazy_store)
        .pull_lazy(&registry, &reference("v2"))
        .unwrap();
    assert!(lazy.missing(&lazy_store) > 0);
    // Before it completes, the image is marked (`refs/lazy/`), its tree here
    // and its content not all: both list the files that lack chunks so.
    assert_eq!(lazy_store.lazy_images().unwrap(), [lazy.image()]);
    assert_agree(&lazy_store);
    assert!(crate::listing::listing(&lazy_store).contains(" missing="));
    lazy.prefetch(&lazy_store, &PrefetchOptions::default())
        .unwrap();
    let tag = "lazy:v2".parse().unwrap();
    assert!(lazy.complete(&lazy_store, Some(&tag)).unwrap());
    lazy_store.flush().unwrap();
    assert!(lazy_store.lazy_images().unwrap().is_empty());
    assert_agree(&lazy_store);
}
