//! `layerstore sync IMAGE --to DIR`: chunks and bytes moved, only what the
//! target lacks, the tag carried over.

use super::{layerstore, ok};

fn figure(out: &str, key: &str) -> u64 {
    out.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(": "))
        .unwrap_or_else(|| panic!("no '{key}' in {out}"))
        .parse()
        .unwrap()
}

#[test]
fn sync_moves_only_missing_chunks_and_carries_the_tag() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    let content: Vec<u8> = (0..600_000u32)
        .flat_map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes())
        .collect();
    std::fs::write(tree.join("a"), &content).unwrap();
    ok(&layerstore(&src, &["init"]));
    ok(&layerstore(
        &src,
        &["commit", tree.to_str().unwrap(), "--tag", "one"],
    ));
    std::fs::write(tree.join("b"), b"a small new file").unwrap();
    let two = ok(&layerstore(
        &src,
        &["commit", tree.to_str().unwrap(), "--tag", "two"],
    ));
    let two = two.lines().last().unwrap().to_owned();

    let first = ok(&layerstore(
        &src,
        &["sync", "one", "--to", dst.to_str().unwrap()],
    ));
    assert!(figure(&first, "chunks moved") >= 2, "{first}");
    assert_eq!(
        figure(&first, "bytes moved"),
        content.len() as u64,
        "{first}"
    );
    let second = ok(&layerstore(
        &src,
        &["sync", "two", "--to", dst.to_str().unwrap()],
    ));
    assert_eq!(figure(&second, "chunks moved"), 1, "{second}");
    assert_eq!(figure(&second, "bytes moved"), 16, "{second}");
    assert_eq!(
        figure(&second, "bytes skipped"),
        content.len() as u64,
        "{second}"
    );
    let images = ok(&layerstore(&dst, &["images"]));
    assert!(
        images.contains("two:latest") && images.contains(&two[..19]),
        "{images}"
    );
    ok(&layerstore(&dst, &["fsck"]));

    let bad = layerstore(&src, &["sync", "nosuch", "--to", dst.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("nosuch"));
}
