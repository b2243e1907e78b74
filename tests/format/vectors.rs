//! Test vectors: the chunker's cut points for documented inputs, object
//! encodings with their ids, and should-fail vectors refused with the error
//! `docs/FORMAT.md` names. The files are in `tests/fixtures/format/`; the
//! formats of their lines are in their first comment lines.

use std::fmt::Write as _;
use std::path::Path;

use layerstore::{
    ChunkId, Entry, EntryKind, ErrorKind, History, Image, ImageConfig, Layer, LayerId, Metadata,
    Snapshot, SnapshotId, Store, StoreOptions, Timestamp, TreePath,
};

use crate::{fixtures, open_copy, pseudo_random};

/// Compares `got` with the fixture `name`, or writes it when it is missing
/// and `LAYERSTORE_WRITE_FIXTURES=1` is set.
fn pinned(name: &str, got: &str) {
    let path = fixtures().join(name);
    if !path.exists() && std::env::var_os("LAYERSTORE_WRITE_FIXTURES").is_some() {
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (LAYERSTORE_WRITE_FIXTURES=1 writes it)",
            path.display()
        )
    });
    assert!(
        got == want,
        "{} changed: the format moved.\n--- pinned\n{want}\n--- this build\n{got}",
        path.display()
    );
}

/// The input a generator of `chunker.txt` names: `random:<seed>`,
/// `fill:<byte>` or `repeat:<text>`, `len` bytes long.
pub(crate) fn generate(generator: &str, len: usize) -> Vec<u8> {
    let (kind, arg) = generator.split_once(':').unwrap();
    match kind {
        "random" => pseudo_random(len, parse_u64(arg)),
        "fill" => vec![u8::try_from(parse_u64(arg)).unwrap(); len],
        "repeat" => arg.bytes().cycle().take(len).collect(),
        other => panic!("unknown generator {other}"),
    }
}

fn parse_u64(s: &str) -> u64 {
    s.strip_prefix("0x").map_or_else(
        || s.parse().unwrap(),
        |h| u64::from_str_radix(h, 16).unwrap(),
    )
}

/// The inputs of `chunker.txt`: edge cases of the size limits, runs of one
/// byte, a repeated text and pseudo-random data of several sizes.
const CHUNKER_INPUTS: [(&str, &str, usize); 14] = [
    ("empty", "fill:0", 0),
    ("one-byte", "fill:0x61", 1),
    ("below-min", "random:1", 16_383),
    ("min", "random:2", 16_384),
    ("min-plus-one", "random:3", 16_385),
    ("max", "random:4", 262_144),
    ("max-plus-one", "random:5", 262_145),
    ("zeros", "fill:0", 1_048_581),
    ("ones", "fill:0xff", 600_000),
    ("text", "repeat:layerstore-chunk-vector.", 700_001),
    ("random-128k", "random:6", 131_072),
    ("random-1m", "random:7", 1 << 20),
    ("random-3m", "random:0x1234", 3 << 20),
    ("random-4m", "random:0x5eed", 4 << 20),
];

#[test]
fn chunker_cut_points_are_pinned() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::create(tmp.path().join("s"), &StoreOptions::default()).unwrap();
    let mut out = String::from(
        "# name generator length: chunk lengths in order (docs/FORMAT.md, \"The chunker\")\n",
    );
    for (name, generator, len) in CHUNKER_INPUTS {
        let list = store.put_bytes(&generate(generator, len)).unwrap();
        let lengths: Vec<String> = list.chunks().iter().map(|c| c.len.to_string()).collect();
        let _ = writeln!(
            out,
            "{name} {generator} {len}:{}",
            lengths.iter().fold(String::new(), |mut s, l| {
                let _ = write!(s, " {l}");
                s
            })
        );
    }
    pinned("chunker.txt", &out);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn p(s: &str) -> TreePath {
    TreePath::new(s).unwrap()
}

/// A small tree with one entry of each kind.
fn small_tree(store: &Store) -> Snapshot {
    let mut m = Metadata::new(0o644);
    m.mtime = Timestamp::new(1_700_000_000, 42);
    m.uid = 1;
    m.gid = 2;
    m.xattrs.insert(b"user.k".to_vec(), b"v".to_vec());
    Snapshot::from_entries(vec![
        Entry::dir(TreePath::ROOT, Metadata::new(0o755)),
        Entry::dir(p("d"), Metadata::new(0o700)),
        Entry::file(p("d/f"), store.put_bytes(b"hello\n").unwrap(), m),
        Entry::hardlink(p("d/g"), p("d/f"), Metadata::new(0o644)),
        Entry::new(
            p("dev"),
            EntryKind::CharDevice { rdev: 0x103 },
            Metadata::new(0o666),
        ),
        Entry::new(p("fifo"), EntryKind::Fifo, Metadata::new(0o600)),
        Entry::symlink(p("l"), "d/f", Metadata::new(0o777)),
    ])
    .unwrap()
}

/// `objects.txt`: `<name> <kind> <id> <bytes>`, the id the BLAKE3 of the
/// bytes (what the store names the object by), both in hex.
#[test]
fn object_encodings_and_ids_are_pinned() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::create(tmp.path().join("s"), &StoreOptions::default()).unwrap();
    let mut out = String::from("# name kind id bytes (docs/FORMAT.md, \"Objects\")\n");
    let mut line = |name: &str, bytes: &[u8]| {
        let _ = writeln!(
            out,
            "{name} {} {} {}",
            bytes[4],
            ChunkId::of(bytes).to_hex(),
            hex(bytes)
        );
    };
    let stored = |id: ChunkId| store.read_chunk(&id).unwrap();

    let empty = store.put_snapshot(&Snapshot::empty()).unwrap();
    line("directory-empty-tree", &stored(ChunkId::from(empty)));
    let tree = small_tree(&store);
    let root = store.put_snapshot(&tree).unwrap();
    assert_eq!(root, tree.id());
    line("directory-small-root", &stored(ChunkId::from(root)));
    line("directory-small-d", &stored_subdir(&store, root, b"d"));
    assert_eq!(store.snapshot(&root).unwrap(), tree);

    let whole = Layer::of_tree(tree.clone());
    let whole_id = store.put_layer(&whole).unwrap();
    assert_eq!(whole_id, whole.id());
    line("layer-of-whole-tree", &stored(ChunkId::from(whole_id)));
    line("layer-empty", &Layer::empty().encode());
    let mut m = Metadata::new(0o640);
    m.mtime = Timestamp::new(-1, 999_999_999);
    let layer = Layer::new(
        vec![Entry::file(p("d/f"), store.put_bytes(b"bye\n").unwrap(), m)],
        vec![p("dev"), p("l")],
        vec![p("d")],
    )
    .unwrap();
    line("layer-entries", &layer.encode());
    line("snapshot-flat", &tree.encode());

    let image = Image::new(
        vec![whole.id(), layer.id()],
        layer.apply(&tree).unwrap().id(),
        ImageConfig {
            env: vec!["A=1".into()],
            cmd: vec!["sh".into()],
            labels: [("k".to_owned(), "v".to_owned())].into(),
            created: Some(Timestamp::new(1_700_000_000, 0)),
            ..ImageConfig::default()
        },
        vec![
            History {
                created_by: "base".into(),
                ..History::default()
            },
            History {
                created_by: "ENV A=1".into(),
                empty_layer: true,
                ..History::default()
            },
            History {
                created_by: "change".into(),
                created: Some(Timestamp::new(1_700_000_001, 5)),
                ..History::default()
            },
        ],
    )
    .unwrap();
    line("image", &image.encode());
    pinned("objects.txt", &out);
}

/// The bytes of the directory object `name` in the root of the stored tree
/// `root`: found through the root object's bytes (a child's id follows its
/// name and the variant 0).
fn stored_subdir(store: &Store, root: SnapshotId, name: &[u8]) -> Vec<u8> {
    let bytes = store.read_chunk(&ChunkId::from(root)).unwrap();
    let mut pattern = vec![u8::try_from(name.len()).unwrap()];
    pattern.extend_from_slice(name);
    pattern.push(0);
    let at = bytes
        .windows(pattern.len())
        .position(|w| w == pattern)
        .unwrap()
        + pattern.len();
    let id: [u8; 32] = bytes[at..at + 32].try_into().unwrap();
    store.read_chunk(&ChunkId::from_bytes(id)).unwrap()
}

/// Each object of `objects.txt` decodes and encodes to its bytes; each
/// stored one is found under its id.
#[test]
fn object_vectors_decode() {
    let text = std::fs::read_to_string(fixtures().join("objects.txt")).unwrap();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let fields: Vec<&str> = line.split(' ').collect();
        let (name, kind, id, bytes) = (fields[0], fields[1], fields[2], unhex(fields[3]));
        assert_eq!(ChunkId::of(&bytes).to_hex(), id, "{name}");
        match kind {
            "1" => assert_eq!(Snapshot::decode(&bytes).unwrap().encode(), bytes, "{name}"),
            "2" => assert_eq!(Layer::decode(&bytes).unwrap().encode(), bytes, "{name}"),
            "3" => assert_eq!(Image::decode(&bytes).unwrap().encode(), bytes, "{name}"),
            "4" => assert!(layerstore::fuzzing::directory(&bytes), "{name}"),
            "5" => assert!(layerstore::fuzzing::layer(&bytes), "{name}"),
            other => panic!("{name}: kind {other}"),
        }
    }
}

/// The empty tree's id (`docs/FORMAT.md`, "The kinds").
const EMPTY_TREE: [u8; 32] = [
    0xbd, 0x0e, 0x3c, 0xd8, 0x67, 0xff, 0xc9, 0xb1, 0x0e, 0x4a, 0xd5, 0xef, 0x95, 0xe0, 0x97, 0x07,
    0xd3, 0xdc, 0x3a, 0xfd, 0x1e, 0xa7, 0x20, 0x65, 0xdd, 0xe0, 0x88, 0x09, 0x03, 0xab, 0x4c, 0x4a,
];

/// The should-fail objects: name, decoder, bytes (the error each gets is
/// [`refusal`]'s).
fn bad_objects() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let empty_layer = Layer::empty().encode();
    let image = Image::new(
        vec![LayerId::of(b"l")],
        SnapshotId::of(b"t"),
        ImageConfig::default(),
        vec![History::default()],
    )
    .unwrap()
    .encode();
    let bool_at = image.len() - 1;
    let with = |bytes: &[u8], at: usize, b: u8| {
        let mut v = bytes.to_vec();
        v[at] = b;
        v
    };
    let with_extra = |bytes: &[u8], extra: &[u8]| [bytes, extra].concat();
    let dir_of = |children: &[u8]| {
        // meta (mode 0o755 as a varint, uid 0, gid 0, mtime 0.0, no xattrs),
        // then the children.
        [
            &b"LSOB\x04\x00\x01\x00\xed\x03\x00\x00\x00\x00\x00"[..],
            children,
        ]
        .concat()
    };
    let fifo = b"\x01\x06\xa4\x03\x00\x00\x00\x00\x00"; // Leaf(Fifo, mode 0o644)
    let child = |name: &[u8]| [&[u8::try_from(name.len()).unwrap()][..], name, fifo].concat();
    vec![
        ("empty", "layer", Vec::new()),
        ("truncated-header", "layer", empty_layer[..7].to_vec()),
        ("truncated-body", "layer", empty_layer[..10].to_vec()),
        ("bad-magic", "layer", with(&empty_layer, 3, b'X')),
        ("wrong-kind", "layer", with(&empty_layer, 4, 3)),
        ("reserved-not-zero", "layer", with(&empty_layer, 5, 1)),
        ("newer-version", "layer", with(&empty_layer, 6, 2)),
        ("trailing-byte", "layer", with_extra(&empty_layer, &[0])),
        (
            "overlong-varint",
            "layer",
            [&empty_layer[..8], b"\x80\x00\x00\x00"].concat(),
        ),
        (
            "unsorted-whiteouts",
            "layer",
            [&empty_layer[..8], b"\x00\x02\x01b\x01a\x00"].concat(),
        ),
        (
            "root-whited-out",
            "layer",
            [&empty_layer[..8], b"\x00\x01\x00\x00"].concat(),
        ),
        ("bool-not-0-or-1", "image", with(&image, bool_at, 2)),
        ("option-tag-2", "image", with(&image, bool_at - 1, 2)),
        (
            "unknown-entry-kind",
            "snapshot",
            [&b"LSOB\x01\x00\x01\x00\x01\x00\x07"[..], &[0; 6]].concat(),
        ),
        (
            "children-unsorted",
            "directory",
            dir_of(&[&b"\x02"[..], &child(b"b"), &child(b"a")].concat()),
        ),
        (
            "child-repeated",
            "directory",
            dir_of(&[&b"\x02"[..], &child(b"a"), &child(b"a")].concat()),
        ),
        (
            "child-dot-dot",
            "directory",
            dir_of(&[&b"\x01"[..], &child(b"..")].concat()),
        ),
        (
            "child-with-slash",
            "directory",
            dir_of(&[&b"\x01"[..], &child(b"a/b")].concat()),
        ),
        (
            "child-empty-name",
            "directory",
            dir_of(&[&b"\x01"[..], &child(b"")].concat()),
        ),
        (
            "leaf-directory",
            "directory",
            dir_of(b"\x01\x01d\x01\x01\xed\x03\x00\x00\x00\x00\x00"),
        ),
    ]
    .into_iter()
    .chain(bad_by_rule(&image, &empty_layer, dir_of))
    .collect()
}

/// The should-fail objects that break one rule of a kind or of trees.
fn bad_by_rule(
    image: &[u8],
    empty_layer: &[u8],
    dir_of: impl Fn(&[u8]) -> Vec<u8>,
) -> Vec<(&'static str, &'static str, Vec<u8>)> {
    vec![
        // A leaf fifo of mode 0o10000 (a bit outside 0o7777).
        (
            "mode-out-of-range",
            "directory",
            dir_of(b"\x01\x01f\x01\x06\x80\x20\x00\x00\x00\x00\x00"),
        ),
        // A leaf fifo whose mtime has 10^9 nanoseconds.
        (
            "nanos-out-of-range",
            "directory",
            dir_of(b"\x01\x01f\x01\x06\xa4\x03\x00\x00\x00\x80\x94\xeb\xdc\x03\x00"),
        ),
        // A leaf file of size 5 with no chunks.
        (
            "file-size-not-chunks",
            "directory",
            dir_of(b"\x01\x01f\x01\x00\x05\x00\xa4\x03\x00\x00\x00\x00\x00"),
        ),
        // A leaf symlink with an empty target.
        (
            "symlink-empty-target",
            "directory",
            dir_of(b"\x01\x01l\x01\x02\x00\xff\x03\x00\x00\x00\x00\x00"),
        ),
        // A hard link to a path the tree does not hold.
        (
            "hardlink-to-nothing",
            "directory",
            dir_of(b"\x01\x01h\x01\x03\x01z\xa4\x03\x00\x00\x00\x00\x00"),
        ),
        // Xattrs out of order: "b" before "a".
        (
            "xattrs-unsorted",
            "directory",
            [
                &b"LSOB\x04\x00\x01\x00\xed\x03\x00\x00\x00\x00\x02\x01b\x00\x01a\x00"[..],
                b"\x00",
            ]
            .concat(),
        ),
        // A subdirectory (the empty directory) said to hold one hard link.
        (
            "links-miscounted",
            "directory",
            dir_of(&[&b"\x01\x01d\x00"[..], &EMPTY_TREE, b"\x01"].concat()),
        ),
        // One layer, no history record.
        (
            "history-not-layers",
            "image",
            [&image[..image.len() - 5], b"\x00"].concat(),
        ),
        // The layer that makes a whole tree of the empty one, as kind 2.
        (
            "whole-tree-as-entries",
            "layer",
            Layer::new(
                vec![Entry::new(p("f"), EntryKind::Fifo, Metadata::new(0o644))],
                vec![],
                vec![],
            )
            .unwrap()
            .encode(),
        ),
        // An upserted root that is not a directory.
        (
            "root-not-directory",
            "layer",
            [
                &empty_layer[..8],
                b"\x01\x00\x06\xa4\x03\x00\x00\x00\x00\x00\x00\x00",
            ]
            .concat(),
        ),
    ]
}

/// The error `docs/FORMAT.md` ("Refusing objects") names for each bad
/// object: `malformed` (`Error::Malformed`, kind `Corrupt`) for the
/// header, the encoding and the rules of each kind, `invalid-tree`
/// (`Error::InvalidTree`, kind `InvalidInput`) for the rules every tree and
/// layer obeys.
fn refusal(name: &str) -> &'static str {
    match name {
        "unsorted-whiteouts"
        | "root-whited-out"
        | "root-not-directory"
        | "mode-out-of-range"
        | "nanos-out-of-range"
        | "file-size-not-chunks"
        | "symlink-empty-target"
        | "hardlink-to-nothing" => "invalid-tree",
        _ => "malformed",
    }
}

/// The error (its name in `bad-objects.txt`) `err` is, or `accepted`.
fn refusal_of(err: Option<&layerstore::Error>) -> String {
    match err {
        None => "accepted".to_owned(),
        Some(e @ layerstore::Error::Malformed { .. }) if e.kind() == ErrorKind::Corrupt => {
            "malformed".to_owned()
        }
        Some(e @ layerstore::Error::InvalidTree { .. }) if e.kind() == ErrorKind::InvalidInput => {
            "invalid-tree".to_owned()
        }
        Some(e) => format!("{:?}: {e}", e.kind()),
    }
}

/// `bad-objects.txt`: `<name> <decoder> <error> <bytes>`; each is refused
/// with the error named, both read from a store (a `layer` as an image's
/// layer, a `directory` as a tree's root, an `image`; the store holds the
/// empty tree beside it) and by the public decoders (`Layer::decode`,
/// `Image::decode`, `Snapshot::decode` for the flat `snapshot`), where one
/// refuses it.
#[test]
fn should_fail_objects_are_refused() {
    let cases = bad_objects();
    let fifo = b"\x01\x06\xa4\x03\x00\x00\x00\x00\x00";
    let child = |name: &[u8]| [&[u8::try_from(name.len()).unwrap()][..], name, fifo].concat();
    let dir_of = |children: &[u8]| {
        [
            &b"LSOB\x04\x00\x01\x00\xed\x03\x00\x00\x00\x00\x00"[..],
            children,
        ]
        .concat()
    };
    // The directory cases are made right but for the one thing wrong: the
    // same bytes with the child fixed decode.
    assert!(layerstore::fuzzing::directory(&dir_of(
        &[&b"\x01"[..], &child(b"a")].concat()
    )));
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::create(tmp.path().join("s"), &StoreOptions::default()).unwrap();
    let empty = store.put_snapshot(&Snapshot::empty()).unwrap();
    assert_eq!(*empty.as_bytes(), EMPTY_TREE);
    let mut out = String::from(
        "# name decoder error bytes: refused with the error named (docs/FORMAT.md, \"Refusing objects\")\n",
    );
    for (name, decoder, bytes) in &cases {
        let want = refusal(name);
        let _ = writeln!(out, "{name} {decoder} {want} {}", hex(bytes));
        let direct = match *decoder {
            "layer" => Layer::decode(bytes).err(),
            "image" => Image::decode(bytes).err(),
            "snapshot" => Snapshot::decode(bytes).err(),
            "directory" => None,
            other => panic!("{other}"),
        };
        if direct.is_some() || *decoder == "snapshot" {
            assert_eq!(refusal_of(direct.as_ref()), want, "{name}, decoded");
        }
        // The empty object is no chunk (a chunk has at least one byte); the
        // flat snapshot no stored object.
        if bytes.is_empty() || *decoder == "snapshot" {
            continue;
        }
        let list = store.put_bytes(bytes).unwrap();
        assert_eq!(list.chunks().len(), 1, "{name}");
        let id = *ChunkId::of(bytes).as_bytes();
        let stored = match *decoder {
            "layer" => store.layer(&LayerId::from_bytes(id)).err(),
            "image" => store.image(&layerstore::ImageId::from_bytes(id)).err(),
            _ => store.snapshot(&SnapshotId::from_bytes(id)).err(),
        };
        assert_eq!(refusal_of(stored.as_ref()), want, "{name}, from the store");
    }
    pinned("bad-objects.txt", &out);
}

/// Stores damaged in the ways FORMAT.md names are refused, or read, as it
/// says.
#[test]
fn should_fail_stores_are_refused() {
    let golden = crate::golden::golden_v3();
    let damaged = |f: &dyn Fn(&Path)| {
        let (tmp, store) = open_copy(&golden);
        let root = store.path().to_path_buf();
        drop(store);
        f(&root);
        (tmp, root)
    };
    // A config of a newer (or older) version: refused as unsupported.
    for version in ["2", "4", "99"] {
        let (_tmp, root) = damaged(&|root| {
            let config = std::fs::read_to_string(root.join("config")).unwrap();
            let config = config.replace("version = 3", &format!("version = {version}"));
            std::fs::write(root.join("config"), config).unwrap();
        });
        let err = Store::open(&root).err().unwrap();
        assert_eq!(
            err.kind(),
            ErrorKind::Unsupported,
            "version {version}: {err}"
        );
    }
    // An unknown key: refused as corrupt.
    let (_tmp, root) = damaged(&|root| {
        let mut config = std::fs::read_to_string(root.join("config")).unwrap();
        config.push_str("shiny = yes\n");
        std::fs::write(root.join("config"), config).unwrap();
    });
    assert_eq!(Store::open(&root).err().unwrap().kind(), ErrorKind::Corrupt);
    // A truncated pack: its chunks read as corrupt, naming the pack.
    let (_tmp, root) = damaged(&|root| {
        for pack in packs(root, "pack") {
            let len = std::fs::metadata(&pack).unwrap().len();
            let file = std::fs::OpenOptions::new().write(true).open(&pack).unwrap();
            file.set_len(len / 2).unwrap();
        }
    });
    let store = Store::open(&root).unwrap();
    let tag = store
        .tag(&"golden/base:1".parse().unwrap())
        .unwrap()
        .unwrap();
    let err = store.image_tree(&tag).and_then(|t| {
        t.iter().try_for_each(|e| match &e.kind {
            EntryKind::File { chunks, .. } => store.read_all(chunks).map(drop),
            _ => Ok(()),
        })
    });
    let err = err.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains(".pack"), "{err}");
    // A flipped bit in a pack: the chunk fails its id, never read wrong.
    let (_tmp, root) = damaged(&|root| {
        for pack in packs(root, "pack") {
            let mut bytes = std::fs::read(&pack).unwrap();
            let last = bytes.len() - 1;
            bytes[last] ^= 1;
            std::fs::write(&pack, bytes).unwrap();
        }
    });
    let store = Store::open(&root).unwrap();
    let report = store.fsck(&layerstore::FsckOptions::default()).unwrap();
    assert!(!report.is_clean());
    // An index whose header is damaged: skipped (its chunks missing), and
    // fsck names it.
    let (_tmp, root) = damaged(&|root| {
        for idx in packs(root, "idx") {
            let mut bytes = std::fs::read(&idx).unwrap();
            bytes[0] ^= 0xff;
            std::fs::write(&idx, bytes).unwrap();
        }
    });
    let store = Store::open(&root).unwrap();
    assert!(store.tag(&"app".parse().unwrap()).unwrap().is_some());
    let report = store.fsck(&layerstore::FsckOptions::default()).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.path.to_string_lossy().ends_with(".idx")),
        "{report:?}"
    );
}

pub(crate) fn packs(root: &Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(root.join("packs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    out.sort();
    out
}
