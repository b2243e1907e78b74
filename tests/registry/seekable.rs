//! Seekable layers through a real registry: what `push` writes by default
//! (tar+zstd in frames cut at chunks, a TOC, a footer) is read by skopeo as
//! an ordinary layer; `pull` of it fetches the TOC and only the frames of
//! the chunks the store lacks, counted by a proxy in front of the registry
//! that also refuses ranges, flips bytes and cuts connections; and layers
//! another client recompressed are known by their `DiffID`.

use std::path::Path;
use std::process::Command;

use layerstore::oci::{
    Exchange, ImportOptions, PullReport, PushOptions, Registry, RegistryOptions, RegistryRef,
};
use layerstore::{FsckOptions, ImageId, Store, StoreOptions};

use crate::layout::{describe, noise, run, tools_present};
use crate::proxy::{Fault, Proxy};
use crate::server::Server;

const TOC_DIGEST: &str = "dev.layerstore.seekable.toc.digest";
const TOC_POSITION: &str = "dev.layerstore.seekable.toc.position";

fn registry(host: &str) -> Registry {
    Registry::new(host, &RegistryOptions::default().insecure(true)).unwrap()
}

fn reference(host: &str, name: &str) -> RegistryRef {
    format!("{host}/{name}").parse().unwrap()
}

/// Commits `dir` as a one-layer image (a whole tree, as a base image is).
fn commit(store: &Store, dir: &Path) -> ImageId {
    let tree = store
        .scan(dir, &layerstore::ScanOptions::default())
        .unwrap()
        .snapshot;
    let id = store
        .put_child_image(
            None,
            &layerstore::Snapshot::empty().diff(&tree),
            &tree,
            None,
            layerstore::History::default(),
        )
        .unwrap();
    store.flush().unwrap();
    id
}

fn checkout(store: &Store, id: &ImageId, dest: &Path) -> Vec<String> {
    let tree = store.image_tree(id).unwrap();
    store
        .checkout(&tree, dest, &layerstore::CheckoutOptions::default())
        .unwrap();
    describe(dest)
}

fn clean(store: &Store) -> bool {
    store.fsck(&FsckOptions::default()).unwrap().is_clean()
}

/// A base image's tree: one big file, many small ones, links.
fn base_tree(dir: &Path) {
    std::fs::create_dir_all(dir.join("usr/lib")).unwrap();
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::write(dir.join("usr/lib/big.so"), noise(4 << 20, 11)).unwrap();
    for i in 0..40 {
        std::fs::write(
            dir.join(format!("etc/conf-{i:02}")),
            format!("setting {i}\n").repeat(50 + i),
        )
        .unwrap();
    }
    std::os::unix::fs::symlink("usr/lib/big.so", dir.join("link")).unwrap();
    std::fs::hard_link(dir.join("etc/conf-00"), dir.join("etc/hard")).unwrap();
}

/// The next release of `base_tree`: two distant pieces of the big file
/// changed, one small file changed, one added.
fn upgrade(dir: &Path) {
    let big = dir.join("usr/lib/big.so");
    let mut bytes = std::fs::read(&big).unwrap();
    bytes[100_000..100_100].copy_from_slice(&[7; 100]);
    let end = bytes.len() - 200_000;
    bytes[end..end + 100].copy_from_slice(&[9; 100]);
    std::fs::write(&big, bytes).unwrap();
    std::fs::write(dir.join("etc/conf-07"), b"changed\n").unwrap();
    std::fs::write(dir.join("usr/lib/new.so"), noise(300_000, 12)).unwrap();
}

/// The manifest of `name` as JSON.
fn manifest(reg: &Registry, name: &str) -> serde_json::Value {
    let (repo, tag) = name.split_once(':').unwrap();
    serde_json::from_slice(&reg.manifest(repo, tag).unwrap().0).unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    server: Server,
    proxy: Proxy,
    src: Store,
    v1: ImageId,
    v2: ImageId,
    v1_tree: Vec<String>,
    v2_tree: Vec<String>,
}

/// A registry holding `demo/base:v1` and `demo/base:v2` pushed from `src`
/// with the default (seekable) compression, and a proxy in front of it.
fn fixture(what: &str) -> Option<Fixture> {
    let server = Server::start(what)?;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let tree = root.join("tree");
    base_tree(&tree);
    let src = Store::create(root.join("src"), &StoreOptions::default()).unwrap();
    let v1 = commit(&src, &tree);
    upgrade(&tree);
    let v2 = commit(&src, &tree);
    let reg = registry(&server.host);
    for (id, tag) in [(&v1, "v1"), (&v2, "v2")] {
        Exchange::new(&src)
            .push(
                &reg,
                id,
                &reference(&server.host, &format!("demo/base:{tag}")),
                &PushOptions::default(),
            )
            .unwrap();
    }
    let v1_tree = checkout(&src, &v1, &root.join("v1-src"));
    let v2_tree = checkout(&src, &v2, &root.join("v2-src"));
    let proxy = Proxy::start(&server.host);
    Some(Fixture {
        _dir: dir,
        root,
        server,
        proxy,
        src,
        v1,
        v2,
        v1_tree,
        v2_tree,
    })
}

impl Fixture {
    fn store(&self, name: &str) -> Store {
        Store::create(self.root.join(name), &StoreOptions::default()).unwrap()
    }

    fn pull(&self, store: &Store, tag: &str) -> layerstore::Result<(ImageId, PullReport)> {
        Exchange::new(store).pull(
            &registry(&self.proxy.host),
            &reference(&self.proxy.host, &format!("demo/base:{tag}")),
            None,
            &|_| {},
        )
    }

    /// A store holding v1, pulled straight from the registry.
    fn store_with_v1(&self, name: &str) -> Store {
        let store = self.store(name);
        let (id, _) = Exchange::new(&store)
            .pull(
                &registry(&self.server.host),
                &reference(&self.server.host, "demo/base:v1"),
                None,
                &|_| {},
            )
            .unwrap();
        assert_eq!(id, self.v1);
        store
    }
}

#[test]
fn a_seekable_push_is_an_ordinary_zstd_layer_to_skopeo_and_pulls_only_missing_chunks() {
    if !tools_present("seekable layers")
        || !crate::server::require_tool("/usr/bin/zstd", "seekable layers")
    {
        return;
    }
    let Some(fx) = fixture("seekable layers") else {
        return;
    };
    let reg = registry(&fx.server.host);
    let m = manifest(&reg, "demo/base:v2");
    let layer = &m["layers"][0];
    assert_eq!(
        layer["mediaType"], "application/vnd.oci.image.layer.v1.tar+zstd",
        "{m}"
    );
    let size = layer["size"].as_u64().unwrap();
    assert!(
        layer["annotations"][TOC_DIGEST]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:"))
    );
    let position = layer["annotations"][TOC_POSITION].as_str().unwrap();
    let parts: Vec<u64> = position.split(':').map(|p| p.parse().unwrap()).collect();
    assert_eq!(parts[0] + parts[1] + 48, size, "{position}");

    // skopeo copies it as any layer (digests verified); our import of that
    // layout, which reads the blob whole with an ordinary zstd decoder and
    // checks the DiffID, gives the same image.
    let copied = fx.root.join("copied");
    run(Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{}/demo/base:v2", fx.server.host))
        .arg(format!("oci:{}:v2", copied.display())));
    let imported = fx.store("imported");
    let id = Exchange::new(&imported)
        .import_layout(&copied, Some("v2"), &ImportOptions::default())
        .unwrap();
    assert_eq!(id, fx.v2);
    // The blob's bytes decompress, with the zstd tool, to a tar whose sha256
    // is the DiffID (the TOC and footer are skipped as skippable frames).
    let blob = copied
        .join("blobs/sha256")
        .join(&layer["digest"].as_str().unwrap()["sha256:".len()..]);
    let tar = run(Command::new("sh")
        .arg("-c")
        .arg(format!("zstd -dc < {} | sha256sum", blob.display())));
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            copied
                .join("blobs/sha256")
                .join(&m["config"]["digest"].as_str().unwrap()["sha256:".len()..]),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        format!("sha256:{}", tar.split_whitespace().next().unwrap()),
        config["rootfs"]["diff_ids"][0].as_str().unwrap()
    );

    // A fresh store pulls v1 a piece at a time: everything, verified.
    let fresh = fx.store("fresh");
    fx.proxy.take_counts();
    let (id, report) = fx.pull(&fresh, "v1").unwrap();
    assert_eq!(id, fx.v1);
    assert_eq!(
        (report.layers_partial, report.layers_skipped),
        (1, 0),
        "{report:?}"
    );
    assert_eq!(
        report.bytes_fetched,
        fx.proxy.take_counts().blob_bytes,
        "{report:?}"
    );
    assert_eq!(checkout(&fresh, &id, &fx.root.join("fresh-v1")), fx.v1_tree);
    assert!(clean(&fresh));

    // Holding v1, it pulls v2 fetching the TOC and the frames of the few
    // chunks that changed: a small part of the layer.
    let (id, report) = fx.pull(&fresh, "v2").unwrap();
    let counts = fx.proxy.take_counts();
    assert_eq!(id, fx.v2);
    assert_eq!(report.layers_partial, 1, "{report:?}");
    assert_eq!(report.bytes_fetched, counts.blob_bytes, "{report:?}");
    assert_eq!(counts.whole_blobs, 1, "the config only: {counts:?}");
    assert!(
        report.bytes_fetched * 4 < report.layers_size,
        "fetched {} of {}: {report:?}",
        report.bytes_fetched,
        report.layers_size
    );
    assert!(
        report.chunks_fetched >= 3 && report.chunks_fetched < 20,
        "{report:?}"
    );
    assert_eq!(checkout(&fresh, &id, &fx.root.join("fresh-v2")), fx.v2_tree);
    assert!(clean(&fresh));
    // The same layers as the pusher's: a second pull has nothing to fetch.
    assert_eq!(
        fresh.image(&id).unwrap().layers(),
        fx.src.image(&fx.v2).unwrap().layers()
    );
    let (_, again) = fx.pull(&fresh, "v2").unwrap();
    assert_eq!(
        (again.layers_skipped, again.layers_partial),
        (1, 0),
        "{again:?}"
    );
}

#[test]
fn layers_another_client_recompressed_are_known_by_their_diff_id() {
    if !tools_present("recompressed layers") {
        return;
    }
    let Some(fx) = fixture("recompressed layers") else {
        return;
    };
    // skopeo recompresses v1 with gzip into another repository: new blob
    // digests, the same DiffIDs.
    run(Command::new("skopeo")
        .args([
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--dest-compress-format",
            "gzip",
        ])
        .arg(format!("docker://{}/demo/base:v1", fx.server.host))
        .arg(format!("docker://{}/demo/copy:v1", fx.server.host)));
    let reg = registry(&fx.server.host);
    let ours = manifest(&reg, "demo/base:v1");
    let theirs = manifest(&reg, "demo/copy:v1");
    assert_ne!(ours["layers"][0]["digest"], theirs["layers"][0]["digest"]);
    let store = fx.store_with_v1("holder");
    fx.proxy.take_counts();
    let (id, report) = Exchange::new(&store)
        .pull(
            &registry(&fx.proxy.host),
            &reference(&fx.proxy.host, "demo/copy:v1"),
            None,
            &|_| {},
        )
        .unwrap();
    let counts = fx.proxy.take_counts();
    assert_eq!(report.layers_skipped, 1, "{report:?}");
    assert_eq!(
        (counts.whole_blobs, counts.ranges),
        (1, 0),
        "the config only"
    );
    assert_eq!(
        store.image(&id).unwrap().layers(),
        store.image(&fx.v1).unwrap().layers()
    );
}

#[test]
fn a_registry_that_serves_no_ranges_gets_whole_blobs() {
    let Some(fx) = fixture("a registry without ranges") else {
        return;
    };
    let store = fx.store_with_v1("holder");
    fx.proxy.set_fault(Fault::NoRanges);
    let (id, report) = fx.pull(&store, "v2").unwrap();
    let counts = fx.proxy.take_counts();
    assert_eq!(id, fx.v2);
    assert_eq!(report.layers_partial, 0, "{report:?}");
    assert_eq!(report.fetched_whole.len(), 1, "{report:?}");
    assert!(
        report.fetched_whole[0].contains("ranges"),
        "{:?}",
        report.fetched_whole
    );
    // The TOC request came back whole (dropped unread), then the layer.
    assert_eq!(counts.ranges, 0, "{counts:?}");
    assert_eq!(checkout(&store, &id, &fx.root.join("out")), fx.v2_tree);
    assert!(clean(&store));
}

#[test]
fn wrong_bytes_and_cut_connections_fail_naming_the_blob_and_keep_what_verified() {
    let Some(fx) = fixture("faults in a partial pull") else {
        return;
    };
    let layer = manifest(&registry(&fx.server.host), "demo/base:v2")["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    // A clean partial pull, for the count of chunks v2 adds to v1.
    let reference_store = fx.store_with_v1("reference");
    let (_, clean_pull) = fx.pull(&reference_store, "v2").unwrap();
    let missing = clean_pull.chunks_fetched;
    assert!(missing >= 3, "{clean_pull:?}");

    // A flipped byte in a frame: refused, naming the blob and the offset;
    // nothing wrong is stored, the store stays sound.
    let store = fx.store_with_v1("flipped");
    fx.proxy.set_fault(Fault::FlipAfterFirstRange);
    let err = fx.pull(&store, "v2").unwrap_err().to_string();
    assert!(err.contains(&layer), "{err}");
    assert!(err.contains("offset"), "{err}");
    assert!(clean(&store));
    assert!(store.resolve_image(&fx.v2.to_string()).is_err());

    // A connection cut in the middle of a range: an error naming the blob;
    // the chunks that verified before it are kept, and the next pull
    // fetches only the rest.
    let store = fx.store_with_v1("cut");
    let chunks = |s: &Store| s.stats().unwrap().chunks;
    let before = chunks(&store);
    // The last file of the tar (usr/lib/new.so, 300 kB of noise) lies in the
    // last frames before the TOC: the ranges that fetch it are cut.
    let position = manifest(&registry(&fx.server.host), "demo/base:v2")["layers"][0]["annotations"]
        [TOC_POSITION]
        .as_str()
        .unwrap()
        .to_owned();
    let toc_at: u64 = position.split(':').next().unwrap().parse().unwrap();
    fx.proxy
        .set_fault(Fault::CutRangesIn(toc_at - 420_000, toc_at));
    let err = fx.pull(&store, "v2").unwrap_err().to_string();
    assert!(err.contains(&layer), "{err}");
    assert!(clean(&store));
    let kept = chunks(&store) - before;
    eprintln!("the cut pull kept {kept} of {missing} chunks");
    assert!(kept > 0 && kept < missing, "kept {kept} of {missing}");
    fx.proxy.set_fault(Fault::None);
    let (id, report) = fx.pull(&store, "v2").unwrap();
    assert_eq!(
        report.chunks_fetched + kept,
        missing,
        "kept {kept}: {report:?}"
    );
    assert_eq!(checkout(&store, &id, &fx.root.join("out")), fx.v2_tree);
    assert!(clean(&store));
}

#[test]
fn a_toc_that_does_not_match_its_manifest_is_refused() {
    let Some(fx) = fixture("a bad table of contents") else {
        return;
    };
    let reg = registry(&fx.server.host);
    let good = manifest(&reg, "demo/base:v2");
    let size = good["layers"][0]["size"].as_u64().unwrap();
    let position = good["layers"][0]["annotations"][TOC_POSITION]
        .as_str()
        .unwrap()
        .to_owned();
    let (at, rest) = position.split_once(':').unwrap();
    let len = rest.split(':').next().unwrap();
    let cases = [
        (
            "wrong-digest",
            TOC_DIGEST,
            format!("sha256:{}", "0".repeat(64)),
            "table of contents",
        ),
        (
            "past-the-end",
            TOC_POSITION,
            format!("{size}:100:100"),
            "footer",
        ),
        (
            "oversized",
            TOC_POSITION,
            format!("{at}:{len}:{}", 1u64 << 31),
            "limits",
        ),
        ("garbage", TOC_POSITION, "1:2".to_owned(), "annotation"),
    ];
    for (tag, key, value, says) in cases {
        let mut bad = good.clone();
        bad["layers"][0]["annotations"][key] = serde_json::Value::String(value);
        reg.put_manifest(
            "demo/base",
            tag,
            serde_json::to_vec(&bad).unwrap(),
            "application/vnd.oci.image.manifest.v1+json",
        )
        .unwrap();
        let store = fx.store(tag);
        let err = fx.pull(&store, tag).unwrap_err().to_string();
        assert!(err.contains(says), "{tag}: {err}");
        assert!(
            err.contains(good["layers"][0]["digest"].as_str().unwrap()),
            "{tag}: {err}"
        );
        assert!(clean(&store), "{tag}");
    }
    let _ = &fx.src;
}

#[test]
fn a_lazy_view_fetches_as_it_is_read_and_prefetch_makes_it_local() {
    const WHAT: &str = "a lazy view from a registry";
    if !crate::common::require_root(WHAT) {
        return;
    }
    let Some(fx) = fixture(WHAT) else {
        return;
    };
    let store = std::sync::Arc::new(fx.store("lazy"));
    let reg = std::sync::Arc::new(
        Registry::new(
            &fx.proxy.host,
            &RegistryOptions::default()
                .insecure(true)
                .timeout(std::time::Duration::from_secs(5)),
        )
        .unwrap(),
    );
    fx.proxy.take_counts();
    let lazy = Exchange::new(&store)
        .pull_lazy(&reg, &reference(&fx.proxy.host, "demo/base:v2"))
        .unwrap();
    let opened = fx.proxy.take_counts();
    let size = lazy.report().layers_size;
    assert_eq!(lazy.image(), fx.v2);
    assert_eq!(opened.ranges, 1, "the TOC only: {opened:?}");
    assert!(
        opened.blob_bytes * 20 < size,
        "opening fetched {} of {size}",
        opened.blob_bytes
    );
    assert!(lazy.missing(&store) > 0);

    store.set_chunk_source(Some(lazy.source()));
    let mounts = crate::common::mounts::MountDir::new();
    let target = mounts.path().join("view");
    std::fs::create_dir(&target).unwrap();
    let view = layerstore::mount::FuseView::mount(
        std::sync::Arc::clone(&store),
        &lazy.image(),
        &target,
        &layerstore::mount::FuseOptions::default(),
    )
    .unwrap();
    let source = fx.root.join("v2-src");
    // The tree is all there before any content.
    assert_eq!(
        std::fs::read_dir(target.join("etc")).unwrap().count(),
        std::fs::read_dir(source.join("etc")).unwrap().count()
    );
    // One small file: its frame and the wanted ones after it (a read
    // window of 1 MiB at most; with the kernel's read-ahead and the view's
    // loaders, a few requests), not the layer.
    assert_eq!(
        std::fs::read(target.join("etc/conf-05")).unwrap(),
        std::fs::read(source.join("etc/conf-05")).unwrap()
    );
    let first = fx.proxy.take_counts();
    assert!(
        (1..=8).contains(&first.ranges)
            && first.blob_bytes <= 2 << 20
            && first.blob_bytes * 2 < size,
        "{first:?}"
    );

    unreachable_then_back(&fx, &target, &source);
    // A stopped prefetch fetches nothing, and an image with chunks
    // missing is not complete (nor tagged).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let stopped = lazy
        .prefetch(
            &store,
            &layerstore::oci::PrefetchOptions::default().stop(stop),
        )
        .unwrap();
    assert!(
        stopped.stopped && stopped.chunks_fetched == 0,
        "{stopped:?}"
    );
    assert!(stopped.chunks_missing > 0, "{stopped:?}");
    let tag: layerstore::TagName = "lazy".parse().unwrap();
    assert!(!lazy.complete(&store, Some(&tag)).unwrap());
    assert_eq!(store.tag(&tag).unwrap(), None);
    // Marked as being fetched: fsck says so, and calls nothing damaged.
    let report = store.fsck(&FsckOptions::default()).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.fetching, [fx.v2]);
    // Every file reads as the source has it.
    assert_eq!(describe(&target), fx.v2_tree);
    // A whole prefetch leaves nothing missing; then the image is checked
    // and tagged: an ordinary one.
    let done = lazy
        .prefetch(&store, &layerstore::oci::PrefetchOptions::default())
        .unwrap();
    assert_eq!(done.chunks_missing, 0, "{done:?}");
    assert!(lazy.complete(&store, Some(&tag)).unwrap());
    view.unmount().unwrap();
    store.set_chunk_source(None);
    assert_eq!(store.tag(&tag).unwrap(), Some(fx.v2));
    let report = store.fsck(&FsckOptions::default()).unwrap();
    assert!(
        report.is_clean() && report.fetching.is_empty(),
        "{report:?}"
    );
    assert_eq!(checkout(&store, &fx.v2, &fx.root.join("local")), fx.v2_tree);
}

/// With the registry unreachable, a read of content not yet here fails with
/// EIO; what is here still reads; once it is back, so does the rest.
fn unreachable_then_back(fx: &Fixture, target: &Path, source: &Path) {
    fx.proxy.set_fault(Fault::Down);
    let started = std::time::Instant::now();
    let err = std::fs::read(target.join("usr/lib/new.so")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(5), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    assert_eq!(
        std::fs::read(target.join("etc/conf-05")).unwrap(),
        std::fs::read(source.join("etc/conf-05")).unwrap()
    );
    fx.proxy.set_fault(Fault::None);
    assert_eq!(
        std::fs::read(target.join("usr/lib/new.so")).unwrap(),
        std::fs::read(source.join("usr/lib/new.so")).unwrap()
    );
}

/// `layerstore --store STORE ARGS…`, its output.
fn layerstore(store: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_layerstore"))
        .arg("--store")
        .arg(store)
        .args(args)
        .output()
        .unwrap()
}

/// Starts `layerstore mount ARGS… --foreground` (a lazy container made, or
/// mounted again) and waits until it says the container is mounted (its
/// first line, the container's name).
fn lazy_server(store: &Path, args: &[&str]) -> (std::process::Child, String) {
    use std::io::BufRead as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_layerstore"))
        .arg("--store")
        .arg(store)
        .args(args)
        .arg("--foreground")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(!line.trim().is_empty(), "the server said nothing");
    (child, line.trim().to_owned())
}

/// `layerstore umount NAME`, which ends the container's server.
fn umount(store: &Path, name: &str) {
    let out = layerstore(store, &["umount", name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What `fsck --json` says is still being fetched lazily (fsck clean).
fn fetching(store: &Path) -> Vec<String> {
    let out = layerstore(store, &["--json", "fsck"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["clean"], true, "{report}");
    report["fetching"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// A fixture for a test of `mount --lazy` from the command line (as root):
/// the registry's, a directory for mounts, and v2's reference.
fn cli_fixture(what: &str) -> Option<(Fixture, crate::common::mounts::MountDir, String)> {
    if !crate::common::require_root(what) {
        return None;
    }
    let fx = fixture(what)?;
    let image = format!("{}/demo/base:v2", fx.server.host);
    Some((fx, crate::common::mounts::MountDir::new(), image))
}

#[test]
fn the_cli_records_a_prefetch_list_and_a_push_carries_it() {
    let Some((fx, mounts, image)) = cli_fixture("lazy mounts from the command line") else {
        return;
    };
    let source = fx.root.join("v2-src");

    // A recording run: the files read, in the order of their first read.
    let store = fx.root.join("recording");
    assert!(layerstore(&store, &["init"]).status.success());
    let target = mounts.path().join("recording");
    let list = fx.root.join("prefetch.txt");
    let list_arg = list.to_str().unwrap();
    let (mut server, name) = lazy_server(
        &store,
        &[
            "mount",
            &image,
            target.to_str().unwrap(),
            "--lazy",
            "--insecure",
            "--read-only",
            "--no-prefetch",
            "--record-prefetch",
            list_arg,
        ],
    );
    for file in ["usr/lib/new.so", "etc/conf-03", "usr/lib/new.so"] {
        assert_eq!(
            std::fs::read(target.join(file)).unwrap(),
            std::fs::read(source.join(file)).unwrap(),
            "{file}"
        );
    }
    umount(&store, &name);
    assert!(server.wait().unwrap().success());
    // Not all here, and not damaged: still being fetched.
    assert_eq!(fetching(&store), [fx.v2.to_string()]);
    // Removing the container abandons the image: gc then frees it all.
    assert!(
        layerstore(&store, &["container", "rm", &name])
            .status
            .success()
    );
    assert!(fetching(&store).is_empty());
    assert!(layerstore(&store, &["gc"]).status.success());
    let du: serde_json::Value =
        serde_json::from_slice(&layerstore(&store, &["--json", "du"]).stdout).unwrap();
    assert_eq!(du["chunks"], 0, "{du}");
    assert_eq!(
        std::fs::read_to_string(&list).unwrap(),
        "usr/lib/new.so\netc/conf-03\n"
    );

    // A push carries the list in the TOC: a lazy image of it prefetches
    // those files first.
    let pushed = layerstore(
        fx.src.path(),
        &[
            "push",
            &fx.v2.to_string(),
            &format!("{}/demo/listed:v2", fx.server.host),
            "--insecure",
            "--prefetch",
            list_arg,
        ],
    );
    assert!(
        pushed.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    let reader = fx.store("reader");
    let lazy = Exchange::new(&reader)
        .pull_lazy(
            &std::sync::Arc::new(registry(&fx.server.host)),
            &reference(&fx.server.host, "demo/listed:v2"),
        )
        .unwrap();
    let listed: Vec<String> = lazy
        .prefetch_list()
        .iter()
        .map(|p| String::from_utf8_lossy(p.as_bytes()).into_owned())
        .collect();
    assert_eq!(listed, ["usr/lib/new.so", "etc/conf-03"]);
}

#[test]
fn a_killed_lazy_server_keeps_what_its_prefetch_flushed_and_the_next_fetches_the_rest() {
    let Some((fx, mounts, image)) = cli_fixture("a killed lazy server") else {
        return;
    };
    // A writable lazy container whose server is killed midway through its
    // prefetch keeps the batches it flushed and the file written in it.
    let store = fx.root.join("killed");
    assert!(layerstore(&store, &["init"]).status.success());
    let target = mounts.path().join("killed");
    let (mut server, name) = lazy_server(
        &store,
        &[
            "mount",
            &image,
            target.to_str().unwrap(),
            "--lazy",
            "--insecure",
            "--tag",
            "fetched",
            "--prefetch-rate",
            "400000",
        ],
    );
    std::fs::write(target.join("written"), b"in the container").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    server.kill().unwrap();
    server.wait().unwrap();
    // Its dead mounts cleared; the store sound, the image still coming,
    // what the prefetch flushed before the kill kept.
    umount(&store, &name);
    assert_eq!(fetching(&store), [fx.v2.to_string()]);
    let du: serde_json::Value =
        serde_json::from_slice(&layerstore(&store, &["--json", "du"]).stdout).unwrap();
    eprintln!("after the kill the store holds {} chunks", du["chunks"]);
    // Mounted again, it fetches from where it was, and reads right.
    let (mut server, again) = lazy_server(
        &store,
        &["mount", &name, target.to_str().unwrap(), "--no-prefetch"],
    );
    assert_eq!(again, name);
    assert_eq!(
        std::fs::read(target.join("usr/lib/big.so")).unwrap(),
        std::fs::read(fx.root.join("v2-src/usr/lib/big.so")).unwrap()
    );
    assert_eq!(
        std::fs::read(target.join("written")).unwrap(),
        b"in the container"
    );
    umount(&store, &name);
    assert!(server.wait().unwrap().success());
    let store = std::sync::Arc::new(Store::open(&store).unwrap());
    let lazy = Exchange::new(&store)
        .pull_lazy(
            &std::sync::Arc::new(registry(&fx.server.host)),
            &reference(&fx.server.host, "demo/base:v2"),
        )
        .unwrap();
    let total = lazy.missing(&fx.store("count"));
    let missing = lazy.missing(&store);
    eprintln!("after the kill and a read, {missing} of {total} chunks still missing");
    assert!(missing <= total);
    let rest = lazy
        .prefetch(&store, &layerstore::oci::PrefetchOptions::default())
        .unwrap();
    assert_eq!(rest.chunks_fetched, missing, "{rest:?}");
    let tag: layerstore::TagName = "resumed".parse().unwrap();
    assert!(lazy.complete(&store, Some(&tag)).unwrap());
    assert!(clean(&store));
    assert!(store.lazy_images().unwrap().is_empty());
    assert_eq!(
        checkout(&store, &fx.v2, &fx.root.join("resumed")),
        fx.v2_tree
    );
}
