//! The golden stores: stores written by a released format, committed under
//! `tests/fixtures/format/`, that every later build must open and read
//! identically (the idea of redb's `backward_compatibility.rs`).
//!
//! `golden-v3/` was written by [`write_golden`] with store format 3. It is
//! never written again: a format change adds a golden store of the new
//! format beside it and keeps reading (or migrating) this one.

use std::path::{Path, PathBuf};

use layerstore::{
    CheckoutOptions, ChunkId, Entry, EntryKind, FsckOptions, History, Image, ImageConfig, Layer,
    Metadata, Snapshot, Store, StoreOptions, TagName, Timestamp, TreePath,
};

use crate::common::tree::{assert_same, expected, make_removable, walk};
use crate::{fixtures, listing::listing, open_copy, pseudo_random};

/// The golden store of format version 3 and its expected listing.
pub(crate) fn golden_v3() -> PathBuf {
    fixtures().join("golden-v3")
}

fn golden_v3_listing() -> PathBuf {
    fixtures().join("golden-v3.listing")
}

fn p(s: impl Into<Vec<u8>>) -> TreePath {
    TreePath::new(s).unwrap()
}

fn meta(mode: u32, secs: i64, nanos: u32) -> Metadata {
    let mut m = Metadata::new(mode);
    m.mtime = Timestamp::new(secs, nanos);
    m
}

/// The base image's tree: every kind of entry, with the content put in
/// `store` (the incompressible file was put, and flushed into a pack of its
/// own, before).
fn base_tree(store: &Store) -> Snapshot {
    let t = 1_700_000_000;
    let file = |path: &str, content: &[u8], m: Metadata| {
        Entry::file(p(path), store.put_bytes(content).unwrap(), m)
    };
    let mut xattrs = meta(0o600, t, 5);
    xattrs
        .xattrs
        .insert(b"user.comment".to_vec(), b"hello".to_vec());
    xattrs
        .xattrs
        .insert(b"user.binary".to_vec(), vec![0, 1, 2, 0xff]);
    xattrs.xattrs.insert(b"user.empty".to_vec(), Vec::new());
    let mut owned = meta(0o2750, t, 0);
    owned.uid = 1000;
    owned.gid = 100;
    let mut long_name = "long-".to_owned();
    long_name.push_str(&"n".repeat(250));
    let entries = vec![
        Entry::dir(TreePath::ROOT, meta(0o755, t, 1)),
        Entry::dir(p("bin"), meta(0o755, t, 2)),
        file(
            "bin/tool",
            b"#!/bin/sh\necho tool\n",
            meta(0o4755, t, 123_456_789),
        ),
        Entry::hardlink(
            p("bin/tool-link"),
            p("bin/tool"),
            meta(0o4755, t, 123_456_789),
        ),
        Entry::dir(p("data"), owned),
        file("data/empty", b"", meta(0o644, t, 0)),
        file(
            "data/random",
            &pseudo_random(300_000, 0x601d),
            meta(0o644, t, 999_999_999),
        ),
        // Sparse on the disk it came from: 1 MiB of zeros, then a tail.
        file(
            "data/sparse",
            &[vec![0u8; 1 << 20], b"tail\n".to_vec()].concat(),
            meta(0o644, t, 7),
        ),
        file("data/xattrs", b"with xattrs\n", xattrs),
        Entry::dir(p("dev"), meta(0o755, t, 3)),
        Entry::new(p("dev/fifo"), EntryKind::Fifo, meta(0o600, t, 4)),
        Entry::new(
            p("dev/null"),
            EntryKind::CharDevice { rdev: 0x103 },
            meta(0o666, t, 0),
        ),
        Entry::new(
            p("dev/sda"),
            EntryKind::BlockDevice { rdev: 0x800 },
            meta(0o660, t, 0),
        ),
        Entry::dir(p("etc"), meta(0o755, t, 0)),
        file("etc/hostname", b"golden\n", meta(0o644, t, 0)),
        file("gone", b"whited out above\n", meta(0o644, t, 0)),
        Entry::symlink(p("link"), "bin/tool", meta(0o777, t, 0)),
        file(&long_name, b"a long name\n", meta(0o644, t, 0)),
        // Before the epoch, to the nanosecond.
        file("old", b"old\n", meta(0o444, -2, 500_000_000)),
        Entry::dir(p("opaque"), meta(0o755, t, 0)),
        file("opaque/lower", b"hidden above\n", meta(0o644, t, 0)),
    ];
    let mut entries = entries;
    // A name that is not UTF-8.
    entries.push(Entry::file(
        TreePath::new(b"bytes-\xff\xfe".to_vec()).unwrap(),
        store.put_bytes(b"not utf-8\n").unwrap(),
        meta(0o644, t, 0),
    ));
    Snapshot::from_entries(entries).unwrap()
}

/// The layer the second image adds: an upsert that replaces, one that adds,
/// a whiteout and an opaque directory.
fn app_layer(store: &Store) -> Layer {
    let t = 1_700_000_100;
    Layer::new(
        vec![
            Entry::dir(p("app"), meta(0o755, t, 0)),
            Entry::file(
                p("app/main"),
                store.put_bytes(b"print('app')\n").unwrap(),
                meta(0o755, t, 0),
            ),
            Entry::file(
                p("etc/hostname"),
                store.put_bytes(b"app\n").unwrap(),
                meta(0o644, t, 0),
            ),
            Entry::dir(p("opaque"), meta(0o700, t, 0)),
            Entry::file(
                p("opaque/upper"),
                store.put_bytes(b"shown\n").unwrap(),
                meta(0o644, t, 0),
            ),
        ],
        vec![p("gone")],
        vec![p("opaque")],
    )
    .unwrap()
}

/// Writes the golden store in `dir` with this build: three packs (the first
/// holding one raw frame), a base image of one whole-tree layer, an image
/// over it with a layer entry by entry, the empty image, two tags, a
/// build-cache entry and a pin.
pub(crate) fn write_golden(dir: &Path) {
    let store = Store::create(dir, &StoreOptions::default()).unwrap();
    // Pack 1: incompressible content alone, so its frame is stored raw.
    store.put_bytes(&pseudo_random(300_000, 0x601d)).unwrap();
    store.flush().unwrap();

    // Pack 2: the base image.
    let base = base_tree(&store);
    let tree = store.put_snapshot(&base).unwrap();
    let created = Some(Timestamp::new(1_700_000_050, 0));
    let config = ImageConfig {
        env: vec!["PATH=/bin".into(), "LANG=C.UTF-8".into()],
        cmd: vec!["/bin/tool".into()],
        workdir: "/data".into(),
        labels: [("org.example.role".to_owned(), "golden".to_owned())].into(),
        created,
        author: "layerstore tests".into(),
        ..ImageConfig::default()
    };
    let history = History {
        created_by: "layerstore commit base".into(),
        comment: "every kind of entry".into(),
        created,
        empty_layer: false,
    };
    let base_image = store.put_tree_image(tree, config, history).unwrap();
    let base_name: TagName = "golden/base:1".parse().unwrap();
    store.set_tag(&base_name, &base_image).unwrap();
    store.flush().unwrap();

    // Pack 3: the image over it, the empty image, the other refs.
    let layer = app_layer(&store);
    let app_tree = layer.apply(&base).unwrap();
    let parent = store.image(&base_image).unwrap();
    let mut app_config = parent.config().clone();
    app_config.entrypoint = vec!["/app/main".into()];
    app_config.user = "1000:100".into();
    app_config.created = Some(Timestamp::new(1_700_000_150, 250));
    let app_image = store
        .put_child_image(
            Some(&base_image),
            &layer,
            &app_tree,
            Some(app_config),
            History {
                created_by: "COPY app /app".into(),
                created: Some(Timestamp::new(1_700_000_150, 250)),
                ..History::default()
            },
        )
        .unwrap();
    // An image whose history has a step that made no layer.
    let app = store.image(&app_image).unwrap();
    let mut records = app.history().to_vec();
    records.push(History {
        created_by: "ENV MODE=golden".into(),
        empty_layer: true,
        ..History::default()
    });
    let mut env_config = app.config().clone();
    env_config.env.push("MODE=golden".into());
    let env_image = Image::new(app.layers().to_vec(), app.rootfs(), env_config, records).unwrap();
    let env_image = store.put_image(&env_image).unwrap();
    store.set_tag(&"app".parse().unwrap(), &app_image).unwrap();
    store
        .set_cache_entry(&blake3::hash(b"golden step").to_hex(), &env_image)
        .unwrap();
    let empty = store.put_empty_image().unwrap();
    let pinned = [ChunkId::from(empty), ChunkId::from(base_image)];
    store.set_pins("keep", "golden", &pinned).unwrap();
    store.flush().unwrap();
}

/// Writes `tests/fixtures/format/golden-v3/` and its listing if they are
/// missing (run with `LAYERSTORE_WRITE_FIXTURES=1`); never overwrites.
#[test]
fn write_missing_golden() {
    if std::env::var_os("LAYERSTORE_WRITE_FIXTURES").is_none() {
        return;
    }
    let dir = golden_v3();
    if dir.exists() {
        eprintln!("{} exists: left alone", dir.display());
        return;
    }
    write_golden(&dir);
    // What only a live store holds: the lock and an empty tmp/ (git keeps
    // neither an empty directory nor, usefully, a lock).
    std::fs::remove_dir(dir.join("tmp")).unwrap();
    std::fs::remove_file(dir.join("lock")).unwrap();
    let store = open_copy(&dir);
    std::fs::write(golden_v3_listing(), listing(&store.1)).unwrap();
}

#[test]
fn golden_v3_reads_as_it_was_written() {
    let (_tmp, store) = open_copy(&golden_v3());
    let want = std::fs::read_to_string(golden_v3_listing()).unwrap();
    let got = listing(&store);
    assert!(
        got == want,
        "the golden store lists differently:\n--- expected\n{want}\n--- got\n{got}"
    );
    let report = store.fsck(&FsckOptions::default()).unwrap();
    assert!(report.is_clean(), "{report:?}");
}

#[test]
fn golden_v3_ids_are_what_this_build_computes() {
    // Rebuilding the base tree's objects in a fresh store gives the same
    // ids: the encodings are canonical, whatever wrote them.
    let tmp = tempfile::tempdir().unwrap();
    let fresh = Store::create(tmp.path().join("s"), &StoreOptions::default()).unwrap();
    let base = base_tree(&fresh);
    let layer = app_layer(&fresh);
    let (_g, golden) = open_copy(&golden_v3());
    let base_image = golden
        .tag(&"golden/base:1".parse().unwrap())
        .unwrap()
        .unwrap();
    let image = golden.image(&base_image).unwrap();
    assert_eq!(image.rootfs(), base.id());
    assert_eq!(image.layers(), [Layer::of_tree(base.clone()).id()]);
    let app_image = golden.tag(&"app".parse().unwrap()).unwrap().unwrap();
    let app = golden.image(&app_image).unwrap();
    assert_eq!(app.layers()[1], layer.id());
    assert_eq!(app.rootfs(), layer.apply(&base).unwrap().id());
    assert_eq!(golden.image(&app_image).unwrap().id(), app_image);
}

#[test]
fn golden_v3_checks_out_as_its_tree() {
    if !crate::common::require_root("checking out the golden store's devices and owners") {
        return;
    }
    let (tmp, store) = open_copy(&golden_v3());
    if !crate::common::user_xattrs_supported(tmp.path()) {
        return;
    }
    for tag in ["golden/base:1", "app"] {
        let id = store.tag(&tag.parse().unwrap()).unwrap().unwrap();
        let tree = store.image_tree(&id).unwrap();
        let dest = tmp.path().join(tag.replace('/', "-"));
        store
            .checkout(&tree, &dest, &CheckoutOptions::default())
            .unwrap();
        assert_same(&walk(&dest), &expected(&store, &tree, &[]));
        make_removable(&dest);
    }
}
