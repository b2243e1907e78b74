//! Hostile layer tars and blobs: each refused with a clear error naming the
//! member or blob, and nothing written outside the store.

use std::io::Write;

use layerstore::oci::{Exchange, ImportOptions, sha256_digest};
use layerstore::{Error, ImageId, Store};

use crate::new_store;

/// A raw ustar member: no checks on the name, so that the tests can write
/// what a hostile tool would.
fn member(name: &[u8], kind: u8, data: &[u8], link: &[u8]) -> Vec<u8> {
    member_sized(name, kind, data, link, data.len())
}

fn member_sized(name: &[u8], kind: u8, data: &[u8], link: &[u8], size: usize) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name);
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

fn tar(members: &[Vec<u8>]) -> Vec<u8> {
    let mut out: Vec<u8> = members.concat();
    out.extend_from_slice(&[0u8; 1024]);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Blobs of an image whose layers are these (uncompressed tar, blob) pairs.
struct Blobs {
    manifest: Vec<u8>,
    blobs: Vec<(String, Vec<u8>)>,
}

fn image_of(layers: &[(Vec<u8>, Vec<u8>)]) -> Blobs {
    let diff_ids: Vec<String> = layers.iter().map(|(t, _)| sha256_digest(t)).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    }))
    .unwrap();
    let mut blobs = vec![(sha256_digest(&config), config.clone())];
    let mut descs = Vec::new();
    for (_, blob) in layers {
        blobs.push((sha256_digest(blob), blob.clone()));
        descs.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": sha256_digest(blob),
            "size": blob.len(),
        }));
    }
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha256_digest(&config),
            "size": config.len(),
        },
        "layers": descs,
    }))
    .unwrap();
    Blobs { manifest, blobs }
}

fn import(store: &Store, b: &Blobs, options: &ImportOptions) -> Result<ImageId, Error> {
    Exchange::new(store).import_blobs(
        &b.manifest,
        |d| {
            let digest = d.digest().to_string();
            let (_, bytes) = b.blobs.iter().find(|(k, _)| *k == digest).unwrap();
            Ok(std::io::Cursor::new(bytes.clone()))
        },
        options,
    )
}

/// Imports one gzipped layer made of `members`; returns the error text.
fn refused(members: &[Vec<u8>]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path(), "store");
    let t = tar(members);
    let err = import(
        &store,
        &image_of(&[(t.clone(), gzip(&t))]),
        &ImportOptions::default(),
    )
    .expect_err("a hostile layer was accepted");
    assert!(matches!(err, Error::Oci { .. }), "{err:?}");
    err.to_string()
}

fn dir(name: &str) -> Vec<u8> {
    member(name.as_bytes(), b'5', b"", b"")
}
fn file(name: &str, data: &[u8]) -> Vec<u8> {
    member(name.as_bytes(), b'0', data, b"")
}

#[test]
fn a_plain_layer_is_accepted() {
    // The helpers make valid layers: the refusals below are for their reason.
    let dir_ = tempfile::tempdir().unwrap();
    let store = new_store(dir_.path(), "store");
    let t = tar(&[dir("a/"), file("a/f", b"hello"), file(".wh.nothing", b"")]);
    let id = import(
        &store,
        &image_of(&[(t.clone(), gzip(&t))]),
        &ImportOptions::default(),
    )
    .unwrap();
    let tree = store.image_tree(&id).unwrap();
    assert!(tree.get(&"a/f".parse().unwrap()).is_some());
}

#[test]
fn paths_escaping_the_layer_are_refused() {
    assert!(refused(&[file("/etc/passwd", b"x")]).contains("absolute path"));
    assert!(refused(&[file("a/../../etc/passwd", b"x")]).contains("'..'"));
    assert!(refused(&[file("../x", b"x")]).contains("'..'"));
}

#[test]
fn a_write_through_a_symlink_is_refused_within_a_layer_and_across_layers() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().to_str().unwrap().as_bytes().to_vec();
    let link = member(b"a", b'2', b"", &target);
    let text = refused(&[link.clone(), file("a/passwd", b"owned")]);
    assert!(text.contains("symbolic link"), "{text}");
    // Across layers: the link in layer 1, the write in layer 2.
    let dir_ = tempfile::tempdir().unwrap();
    let store = new_store(dir_.path(), "store");
    let (l1, l2) = (tar(&[link]), tar(&[file("a/passwd", b"owned")]));
    let err = import(
        &store,
        &image_of(&[(l1.clone(), gzip(&l1)), (l2.clone(), gzip(&l2))]),
        &ImportOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[test]
fn hard_links_out_of_the_layer_are_refused() {
    let text = refused(&[member(b"x", b'1', b"", b"../etc/passwd")]);
    assert!(text.contains("hard link target"), "{text}");
    let text = refused(&[member(b"x", b'1', b"", b"/etc/passwd")]);
    assert!(text.contains("hard link target"), "{text}");
    let text = refused(&[member(b"x", b'1', b"", b"missing")]);
    assert!(
        text.contains("neither in this layer nor a file below it"),
        "{text}"
    );
}

#[test]
fn bad_whiteouts_and_duplicates_are_refused() {
    assert!(refused(&[file(".wh.", b"")]).contains("names nothing"));
    assert!(refused(&[dir("d/"), file("d/.wh..wh..opqX", b"")]).contains("reserved"));
    assert!(refused(&[file("f", b"1"), file("f", b"2")]).contains("duplicate entry"));
    assert!(refused(&[file(".wh.f", b""), file(".wh.f", b"")]).contains("duplicate whiteout"));
}

#[test]
fn sizes_that_lie_are_refused() {
    // The header claims 4096 bytes; the stream ends after 10.
    let mut t = member_sized(b"f", b'0', b"0123456789", b"", 4096);
    t.truncate(512 + 10);
    let dir_ = tempfile::tempdir().unwrap();
    let store = new_store(dir_.path(), "store");
    let err = import(
        &store,
        &image_of(&[(t.clone(), gzip(&t))]),
        &ImportOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Oci { .. }), "{err:?}");
}

#[test]
fn a_gzip_bomb_is_capped() {
    let t = tar(&[file("zeros", &vec![0u8; 16 << 20])]);
    let blob = gzip(&t);
    assert!(blob.len() < 200_000);
    let dir_ = tempfile::tempdir().unwrap();
    let store = new_store(dir_.path(), "store");
    let mut options = ImportOptions::default();
    options.max_expansion = 20;
    options.expansion_slack = 0;
    let err = import(&store, &image_of(&[(t, blob)]), &options).unwrap_err();
    assert!(err.to_string().contains("compression bomb"), "{err}");
}

#[test]
fn blobs_that_do_not_match_their_descriptor_are_refused() {
    let dir_ = tempfile::tempdir().unwrap();
    let store = new_store(dir_.path(), "store");
    let t = tar(&[file("f", b"content")]);
    let gz = gzip(&t);
    // A byte flipped in the gzip trailer: decompression still ends, the
    // digest does not match.
    let mut b = image_of(&[(t.clone(), gz.clone())]);
    let layer = &mut b.blobs[1].1;
    let last = layer.len() - 1;
    layer[last] ^= 0xff;
    let err = import(&store, &b, &ImportOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Oci { .. }), "{err:?}");
    // Right bytes, wrong DiffID in the config.
    let other = tar(&[file("f", b"other")]);
    let mut b = image_of(&[(other, gz.clone())]);
    let ok = image_of(&[(t.clone(), gz.clone())]);
    b.blobs[1] = ok.blobs[1].clone();
    let err = import(&store, &b, &ImportOptions::default()).unwrap_err();
    assert!(err.to_string().contains("diff_id"), "{err}");
    // A blob longer than its descriptor says.
    let mut b = image_of(&[(t.clone(), gz)]);
    b.blobs[1].1.extend_from_slice(b"trailing");
    let err = import(&store, &b, &ImportOptions::default()).unwrap_err();
    assert!(
        err.to_string().contains("longer than its descriptor"),
        "{err}"
    );
    // A config whose digest is not what the manifest says.
    let mut b = image_of(&[(t.clone(), gzip(&t))]);
    b.blobs[0].1.push(b' ');
    let err = import(&store, &b, &ImportOptions::default()).unwrap_err();
    assert!(
        err.to_string().contains("bytes but the descriptor"),
        "{err}"
    );
}

#[test]
fn hard_links_to_later_names_and_to_lower_layers_become_link_groups() {
    use layerstore::EntryKind;
    let dir_ = tempfile::tempdir().unwrap();
    let store = new_store(dir_.path(), "store");
    // Layer 1: "z" and a link "m" to it that sorts before it.
    let l1 = tar(&[file("z", b"shared"), member(b"m", b'1', b"", b"z")]);
    // Layer 2: "a" links to "z" of the layer below.
    let l2 = tar(&[member(b"a", b'1', b"", b"z")]);
    let id = import(
        &store,
        &image_of(&[(l1.clone(), gzip(&l1)), (l2.clone(), gzip(&l2))]),
        &ImportOptions::default(),
    )
    .unwrap();
    let tree = store.image_tree(&id).unwrap();
    let kind = |p: &str| tree.get(&p.parse().unwrap()).unwrap().kind.clone();
    assert!(
        matches!(kind("a"), EntryKind::File { size: 6, .. }),
        "{:?}",
        kind("a")
    );
    for name in ["m", "z"] {
        assert!(
            matches!(kind(name), EntryKind::Hardlink { ref target } if target.to_string() == "a"),
            "{name}: {:?}",
            kind(name)
        );
    }
}
