//! The second reader, `reader.py`, written from `docs/FORMAT.md` alone (the
//! standard library, `zstandard` and `blake3`): its listing of a store must
//! equal the crate's ([`crate::listing`]), byte for byte, on the golden
//! store and on stores this build writes. And `chunker.py`, the spec's
//! chunker, against the pinned cut points.

use std::path::Path;
use std::process::Command;

use layerstore::{History, ScanOptions, Store, StoreOptions};

use crate::listing::listing;

/// Whether python3 with `zstandard` and `blake3` is here; when not, says
/// so and returns false, or fails under `LAYERSTORE_REQUIRE_PRIVILEGED=1`
/// (`.ci/run` installs them).
pub(crate) fn python_ready() -> bool {
    if !crate::common::require_tool("python3") {
        return false;
    }
    let ok = Command::new("python3")
        .args(["-c", "import zstandard, blake3"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok || !crate::common::strict(),
        "python3 lacks zstandard or blake3, and LAYERSTORE_REQUIRE_PRIVILEGED=1 is set"
    );
    if !ok {
        eprintln!("SKIPPED: python3 lacks zstandard or blake3 (pip install zstandard blake3)");
    }
    ok
}

/// What `reader.py` prints for the store at `store`.
fn python_listing(store: &Path) -> String {
    let reader = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/format/reader.py");
    let out = Command::new("python3")
        .arg(&reader)
        .arg(store)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "reader.py failed on {}:\n{}",
        store.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub(crate) fn assert_agree(store: &Store) {
    let want = listing(store);
    let got = python_listing(store.path());
    assert!(
        got == want,
        "reader.py and the crate disagree on {}:\n--- crate\n{want}\n--- reader.py\n{got}",
        store.path().display()
    );
}

/// The chunker as `docs/FORMAT.md` describes it, in Python (standard
/// library only), cuts every input of `chunker.txt` where the crate does.
#[test]
fn the_spec_chunker_cuts_as_pinned() {
    if !crate::common::require_tool("python3") {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/format/chunker.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(crate::fixtures().join("chunker.txt"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chunker.py: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_second_reader_reads_the_golden_store() {
    if !python_ready() {
        return;
    }
    // The fixture itself, read-only: a reader needs neither `lock` nor `tmp/`.
    let got = python_listing(&crate::golden::golden_v3());
    let want = std::fs::read_to_string(crate::fixtures().join("golden-v3.listing")).unwrap();
    assert!(got == want, "--- pinned\n{want}\n--- reader.py\n{got}");
}

/// `reader.py` refuses each should-fail object of `bad-objects.txt` with
/// the error the line names (the error the crate returns: see
/// `vectors::should_fail_objects_are_refused`).
#[test]
fn the_second_reader_refuses_the_bad_objects() {
    if !python_ready() {
        return;
    }
    let reader = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/format/reader.py");
    let vectors = crate::fixtures().join("bad-objects.txt");
    let out = Command::new("python3")
        .arg(&reader)
        .arg("--refusals")
        .arg(&vectors)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "reader.py --refusals: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut want = String::new();
    for line in std::fs::read_to_string(&vectors).unwrap().lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        if !line.starts_with('#') {
            want.push_str(fields[0]);
            want.push(' ');
            want.push_str(fields[2]);
            want.push('\n');
        }
    }
    let got = String::from_utf8(out.stdout).unwrap();
    assert!(
        got == want,
        "--- bad-objects.txt\n{want}\n--- reader.py\n{got}"
    );
}

#[test]
fn the_second_reader_reads_what_this_build_writes() {
    if !python_ready() {
        return;
    }
    // The golden store's recipe, written by this build.
    let tmp = tempfile::tempdir().unwrap();
    crate::golden::write_golden(&tmp.path().join("golden"));
    assert_agree(&Store::open(tmp.path().join("golden")).unwrap());

    // A scanned tree: files of many sizes (shared and raw frames, a chunk
    // larger than a group), several commits and tags.
    let store = Store::create(tmp.path().join("scanned"), &StoreOptions::default()).unwrap();
    let src = tmp.path().join("src");
    let mut parent = None;
    for round in 0..3u64 {
        for i in 0..20u64 {
            let dir = src.join(format!("d{}", i % 4));
            std::fs::create_dir_all(&dir).unwrap();
            let len: usize = match i % 5 {
                0 => 0,
                1 => 100,
                2 => 70_000,
                3 => 1_500_000,
                _ => 5_000,
            };
            let bytes = if i % 2 == 0 {
                crate::pseudo_random(len, round * 100 + i)
            } else {
                crate::vectors::generate("repeat:some text ", len)
            };
            std::fs::write(dir.join(format!("f{i}-{round}")), bytes).unwrap();
        }
        if round == 2 {
            std::fs::remove_dir_all(src.join("d1")).unwrap();
            std::os::unix::fs::symlink("d0", src.join("link")).unwrap();
        }
        let tree = store.scan(&src, &ScanOptions::default()).unwrap().snapshot;
        let layer = match &parent {
            Some(id) => store.image_tree(id).unwrap().diff(&tree),
            None => layerstore::Layer::of_tree(tree.clone()),
        };
        let image = store
            .put_child_image(parent.as_ref(), &layer, &tree, None, History::default())
            .unwrap();
        store
            .set_tag(&format!("scanned:r{round}").parse().unwrap(), &image)
            .unwrap();
        store.flush().unwrap();
        parent = Some(image);
    }
    assert_agree(&store);
}

/// `seekable.py`, the second reader of seekable layers written from the
/// spec alone, reads every layer blob `export-oci --compression
/// zstd-seekable` writes (a whole-tree layer and a change set, a prefetch
/// list): the layer it decodes from the TOC, the chunks it pairs and checks
/// and the tar it decompresses are the crate's.
#[test]
fn the_second_reader_reads_seekable_layers() {
    use layerstore::oci::{Compression, Exchange, ExportOptions};
    if !python_ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::create(tmp.path().join("store"), &StoreOptions::default()).unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("usr/lib")).unwrap();
    std::fs::write(src.join("usr/lib/big"), crate::pseudo_random(700_000, 1)).unwrap();
    std::fs::write(src.join("usr/lib/again"), crate::pseudo_random(700_000, 1)).unwrap();
    std::fs::write(src.join("empty"), b"").unwrap();
    std::fs::write(src.join("small"), b"small\n").unwrap();
    std::fs::hard_link(src.join("small"), src.join("linked")).unwrap();
    std::os::unix::fs::symlink("usr", src.join("link")).unwrap();
    let tree = store.scan(&src, &ScanOptions::default()).unwrap().snapshot;
    let base = store
        .put_child_image(
            None,
            &layerstore::Layer::of_tree(tree.clone()),
            &tree,
            None,
            History::default(),
        )
        .unwrap();
    std::fs::write(src.join("small"), b"changed\n").unwrap();
    std::fs::remove_file(src.join("usr/lib/again")).unwrap();
    std::fs::write(src.join("added"), crate::pseudo_random(90_000, 2)).unwrap();
    let upper = store.scan(&src, &ScanOptions::default()).unwrap().snapshot;
    let image = store
        .put_child_image(
            Some(&base),
            &tree.diff(&upper),
            &upper,
            None,
            History::default(),
        )
        .unwrap();
    store.flush().unwrap();
    let prefetch = vec![
        layerstore::TreePath::new("added").unwrap(),
        layerstore::TreePath::new("usr/lib/big").unwrap(),
    ];
    let export = Exchange::new(&store)
        .export_blobs(
            &image,
            &tmp.path().join("blobs"),
            &ExportOptions::new(Compression::ZstdSeekable).prefetch(prefetch),
        )
        .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/format/seekable.py");
    let layers = store.image(&image).unwrap().layers().to_vec();
    assert_eq!(export.layers.len(), 2);
    for (i, blob) in export.layers.iter().enumerate() {
        let digest =
            &blob.descriptor.annotations().as_ref().unwrap()["dev.layerstore.seekable.toc.digest"];
        let out = Command::new("python3")
            .arg(&script)
            .arg(&blob.path)
            .arg(digest)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "seekable.py on layer {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let layer = store.layer(&layers[i]).unwrap();
        let mut chunks = std::collections::HashSet::new();
        for entry in layer.upserts() {
            if let layerstore::EntryKind::File { chunks: list, .. } = &entry.kind {
                chunks.extend(list.chunks().iter().map(|c| c.id));
            }
        }
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], format!("layer {}", layers[i]), "{text}");
        assert_eq!(lines[2], format!("chunks {}", chunks.len()), "{text}");
        // Each layer lists the prefetch paths it holds, in the list's order.
        let listed: Vec<&str> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("prefetch "))
            .collect();
        let want: &[&str] = if i == 0 { &["usr/lib/big"] } else { &["added"] };
        assert_eq!(listed, want, "{text}");
        assert_eq!(
            *lines.last().unwrap(),
            format!("tar {}", export.diff_ids[i]),
            "{text}"
        );
    }
    // And a damaged one is refused: a byte of a frame flipped.
    let blob = &export.layers[0].path;
    let mut bytes = std::fs::read(blob).unwrap();
    bytes[2000] ^= 0x10;
    let damaged = tmp.path().join("damaged");
    std::fs::write(&damaged, bytes).unwrap();
    let out = Command::new("python3")
        .arg(&script)
        .arg(&damaged)
        .output()
        .unwrap();
    assert!(!out.status.success());
}
