//! Looking inside images from the store: `history`, `efficiency` (and its
//! `--ci`), `ls`, `cat`, `du -v`, `export-docker-archive`; and what is
//! generated from the CLI's definition (`completions`, `man`).

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{last_line, layerstore, ok};

/// A store with three images of one history (`img:1` to `img:3`):
/// 1. `a/f1` (1000 B), `a/f2` (2000 B), `d/x` (500 B), `d/y` (300 B);
/// 2. `a/f1` rewritten (1500 B), `n` added (100 B);
/// 3. `d` and `n` removed.
fn three_images(work: &Path) -> PathBuf {
    let store = work.join("store");
    ok(&layerstore(&store, &["init"]));
    // A long name: `layerstore commit DIR` is cut in `history`'s text.
    let src = work.join("a-source-directory-with-a-rather-long-name");
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("a/f1"), vec![b'a'; 1000]).unwrap();
    std::fs::write(src.join("a/f2"), vec![b'b'; 2000]).unwrap();
    std::fs::write(src.join("d/x"), vec![b'x'; 500]).unwrap();
    std::fs::write(src.join("d/y"), vec![b'y'; 300]).unwrap();
    let dir = src.to_str().unwrap();
    ok(&layerstore(
        &store,
        &["commit", dir, "--tag", "img:1", "--message", "base"],
    ));
    std::fs::write(src.join("a/f1"), vec![b'c'; 1500]).unwrap();
    std::fs::write(src.join("n"), vec![b'n'; 100]).unwrap();
    ok(&layerstore(
        &store,
        &["commit", dir, "--parent", "img:1", "--tag", "img:2"],
    ));
    std::fs::remove_dir_all(src.join("d")).unwrap();
    std::fs::remove_file(src.join("n")).unwrap();
    ok(&layerstore(
        &store,
        &[
            "commit",
            dir,
            "--parent",
            "img:2",
            "--tag",
            "img:3",
            "--message",
            "clean up",
        ],
    ));
    store
}

fn json(out: &std::process::Output) -> Value {
    serde_json::from_str(&ok(out)).expect("one JSON document")
}

#[test]
fn history_newest_first_with_layer_sizes() {
    let work = tempfile::tempdir().unwrap();
    let store = three_images(work.path());
    let doc = json(&layerstore(&store, &["history", "img:3", "--json"]));
    let steps = doc.as_array().unwrap();
    let sizes: Vec<u64> = steps.iter().map(|s| s["size"].as_u64().unwrap()).collect();
    assert_eq!(sizes, [0, 1600, 3800]);
    assert_eq!(steps[0]["comment"], "clean up");
    assert_eq!(steps[2]["comment"], "base");
    assert!(
        steps[2]["created_by"]
            .as_str()
            .unwrap()
            .starts_with("layerstore commit")
    );
    let layers = json(&layerstore(&store, &["inspect", "img:3"]))["layers"].clone();
    assert_eq!(steps[2]["layer"], layers[0]["id"]);

    // Text, piped: exact sizes and times; cut steps unless --no-trunc.
    let text = ok(&layerstore(&store, &["history", "img:3"]));
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("LAYER") && lines[0].contains("CREATED BY"),
        "{text}"
    );
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[2].ends_with(" 1600"), "{text}");
    assert!(lines[3].ends_with("3800  base"), "{text}");
    assert!(lines[1].contains('…'), "the long step is cut: {text}");
    let whole = ok(&layerstore(&store, &["history", "img:3", "--no-trunc"]));
    let src = work
        .path()
        .join("a-source-directory-with-a-rather-long-name");
    assert!(whole.contains(src.to_str().unwrap()), "{whole}");
    // -H: sizes for people.
    let human = ok(&layerstore(&store, &["history", "img:3", "-H"]));
    assert!(human.contains("3.8kB") && human.contains("ago"), "{human}");
}

#[test]
fn efficiency_figures_as_dive_computes_them() {
    let work = tempfile::tempdir().unwrap();
    let store = three_images(work.path());
    let r = json(&layerstore(&store, &["efficiency", "img:3", "--json"]));
    // Per path (smallest, all occurrences): a/f1 (1000, 2500), a/f2 (2000,
    // 2000), d/x (500, 1000), d/y (300, 600), n (100, 200).
    let efficiency = r["score"].as_f64().unwrap();
    assert!((efficiency - 3900.0 / 6300.0).abs() < 1e-9, "{r}");
    assert_eq!(r["wasted_bytes"], 4300);
    assert_eq!(r["size"], 5400);
    assert_eq!(r["user_size"], 1600);
    let share = r["user_wasted_share"].as_f64().unwrap();
    assert!((share - 4300.0 / 1600.0).abs() < 1e-9, "{r}");
    let layers = r["layers"].as_array().unwrap();
    assert_eq!(
        layers[0]["added"],
        serde_json::json!({ "files": 4, "bytes": 3800 })
    );
    assert_eq!(
        layers[1]["added"],
        serde_json::json!({ "files": 1, "bytes": 100 })
    );
    assert_eq!(
        layers[1]["modified"],
        serde_json::json!({ "files": 1, "bytes": 1500 })
    );
    assert_eq!(
        layers[2]["removed"],
        serde_json::json!({ "files": 3, "bytes": 900 })
    );
    // The store keeps each distinct chunk once, compressed: runs of one
    // byte compress to almost nothing.
    let stored: u64 = layers
        .iter()
        .map(|l| l["stored_bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(r["stored_bytes"].as_u64().unwrap(), stored);
    assert!(stored < 5400, "{r}");
    let paths: Vec<&str> = r["wasted_paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["a/f1", "d/x", "d/y", "n"]);
    assert_eq!(r["wasted_paths"][0]["occurrences"], 2);
    assert_eq!(r["wasted_paths"][0]["bytes"], 2500);
    assert!(r["ci"].is_null());

    // The base image alone wastes nothing.
    let base = json(&layerstore(&store, &["efficiency", "img:1", "--json"]));
    assert_eq!(base["score"], 1.0);
    assert_eq!(base["wasted_bytes"], 0);
    // Two images compared.
    let both = json(&layerstore(
        &store,
        &["efficiency", "img:1", "img:3", "--json"],
    ));
    assert_eq!(both["a"]["wasted_bytes"], 0);
    assert_eq!(both["b"]["wasted_bytes"], 4300);
    let text = ok(&layerstore(&store, &["efficiency", "img:1", "img:3"]));
    assert!(text.contains("wasted") && text.contains("+4300"), "{text}");
}

#[test]
fn efficiency_ci_names_the_breached_threshold() {
    let work = tempfile::tempdir().unwrap();
    let store = three_images(work.path());
    // dive's defaults: lowest efficiency 0.9, highest user-wasted share 0.1.
    let out = layerstore(&store, &["efficiency", "img:3", "--ci"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FAIL: lowest-efficiency: 0.6190 (limit 0.9000)"),
        "{text}"
    );
    assert!(text.contains("FAIL: highest-user-wasted-percent"), "{text}");
    assert!(out.stderr.is_empty());
    // Given thresholds replace the defaults.
    let pass = ok(&layerstore(
        &store,
        &["efficiency", "img:3", "--ci", "--lowest-efficiency", "0.6"],
    ));
    assert!(
        pass.contains("PASS: lowest-efficiency") && !pass.contains("user-wasted"),
        "{pass}"
    );
    let out = layerstore(
        &store,
        &[
            "efficiency",
            "img:3",
            "--ci",
            "--highest-wasted-bytes",
            "4299",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["ci"]["passed"], false);
    assert_eq!(doc["ci"]["rules"][0]["rule"], "highest-wasted-bytes");
    ok(&layerstore(
        &store,
        &[
            "efficiency",
            "img:3",
            "--ci",
            "--highest-wasted-bytes",
            "4300",
        ],
    ));
    ok(&layerstore(&store, &["efficiency", "img:1", "--ci"]));
    // A threshold without --ci is a usage error.
    let out = layerstore(
        &store,
        &["efficiency", "img:3", "--lowest-efficiency", "0.5"],
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn ls_and_cat_read_the_store() {
    let work = tempfile::tempdir().unwrap();
    let store = three_images(work.path());
    assert_eq!(ok(&layerstore(&store, &["ls", "img:2"])), "a\nd\nn\n");
    assert_eq!(ok(&layerstore(&store, &["ls", "img:3", "/a/"])), "f1\nf2\n");
    assert_eq!(
        ok(&layerstore(&store, &["ls", "img:2", "-R"])),
        "a\na/f1\na/f2\nd\nd/x\nd/y\nn\n"
    );
    assert_eq!(
        ok(&layerstore(&store, &["ls", "img:2", "d", "-R"])),
        "d/x\nd/y\n"
    );
    let long = ok(&layerstore(&store, &["ls", "img:1", "a", "-l"]));
    let first = long.lines().next().unwrap();
    assert!(
        first.starts_with("-rw") && first.ends_with("  f1"),
        "{long}"
    );
    assert!(first.contains(" 1000 "), "{long}");
    let doc = json(&layerstore(&store, &["ls", "img:1", "a/f2", "--json"]));
    assert_eq!(doc[0]["kind"], "file");
    assert_eq!(doc[0]["size"], 2000);
    assert_eq!(doc[0]["path"], "a/f2");
    let out = layerstore(&store, &["ls", "img:3", "d"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("'d'"));

    let content = layerstore(&store, &["cat", "img:2", "a/f1"]);
    assert_eq!(ok(&content).as_bytes(), vec![b'c'; 1500]);
    assert_eq!(
        ok(&layerstore(&store, &["cat", "img:1", "/a/f1"])).len(),
        1000
    );
    for (path, why) in [("a", "is a directory"), ("nope", "no 'nope'")] {
        let out = layerstore(&store, &["cat", "img:1", path]);
        assert_eq!(out.status.code(), Some(2), "{path}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(why), "{path}");
    }
}

#[test]
fn du_per_image_splits_shared_and_unique_bytes() {
    let work = tempfile::tempdir().unwrap();
    let store = three_images(work.path());
    ok(&layerstore(&store, &["tag", "img:3", "again:latest"]));
    let doc = json(&layerstore(&store, &["du", "-v", "--json"]));
    let rows = doc.as_array().unwrap();
    assert_eq!(rows.len(), 3, "an image tagged twice is one row: {doc}");
    let logical: Vec<u64> = rows
        .iter()
        .map(|r| r["logical_bytes"].as_u64().unwrap())
        .collect();
    // Sorted by first tag: again:latest (img:3), img:1, img:2.
    assert_eq!(logical, [3500, 3800, 4400]);
    assert_eq!(
        rows[0]["tags"],
        serde_json::json!(["again:latest", "img:3"])
    );
    for r in rows {
        let (stored, shared, unique) = (
            r["stored_bytes"].as_u64().unwrap(),
            r["shared_bytes"].as_u64().unwrap(),
            r["unique_bytes"].as_u64().unwrap(),
        );
        assert_eq!(stored, shared + unique, "{r}");
        assert!(
            shared > 0 && unique > 0,
            "each shares its base and owns its own objects: {r}"
        );
    }
    // What img:1 alone holds is what gc frees once it goes... but its
    // layers are img:2's and img:3's too: only its image object is its own.
    let unique_1 = rows[1]["unique_bytes"].as_u64().unwrap();
    assert!(unique_1 < 1000, "{doc}");
    let text = ok(&layerstore(&store, &["du", "-v"]));
    assert!(
        text.starts_with("IMAGE") && text.contains("UNIQUE"),
        "{text}"
    );
    assert!(text.contains("again:latest,img:3"), "{text}");
}

#[test]
fn export_docker_archive_is_read_back() {
    let work = tempfile::tempdir().unwrap();
    let store = three_images(work.path());
    let archive = work.path().join("img.tar");
    let a = archive.to_str().unwrap();
    assert_eq!(
        ok(&layerstore(&store, &["export-docker-archive", "img:3", a])),
        ""
    );
    let listing = std::process::Command::new("tar")
        .arg("tf")
        .arg(&archive)
        .output()
        .unwrap();
    let members = String::from_utf8_lossy(&listing.stdout);
    assert!(members.contains("manifest.json"), "{members}");
    let other = work.path().join("other");
    ok(&layerstore(&other, &["init"]));
    let id = last_line(&ok(&layerstore(&other, &["import-oci", a]))).to_owned();
    let files = |s: &Path, image: &str| ok(&layerstore(s, &["ls", image, "-R", "-l"]));
    assert_eq!(files(&other, &id), files(&store, "img:3"));
    assert_eq!(
        json(&layerstore(&other, &["history", &id, "--json"]))
            .as_array()
            .unwrap()
            .len(),
        3
    );
    // Nothing is left beside the archive.
    let beside: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".layerstore"))
        .collect();
    assert!(beside.is_empty(), "{beside:?}");
}

#[test]
fn completions_and_man_pages_come_from_the_definition() {
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("unused");
    for (shell, mark) in [
        ("bash", "_layerstore()"),
        ("zsh", "#compdef layerstore"),
        ("fish", "complete -c layerstore"),
    ] {
        let script = ok(&layerstore(&store, &["completions", shell]));
        assert!(script.contains(mark), "{shell}: {script}");
        assert!(script.contains("efficiency"), "{shell}");
    }
    assert_eq!(
        layerstore(&store, &["completions", "tcsh"]).status.code(),
        Some(2)
    );
    let man = work.path().join("man");
    let listed = ok(&layerstore(&store, &["man", man.to_str().unwrap()]));
    assert!(listed.contains("layerstore.1"), "{listed}");
    let page = std::fs::read_to_string(man.join("layerstore-history.1")).unwrap();
    assert!(
        page.contains(".TH") && page.contains("no\\-trunc"),
        "{page}"
    );
}
