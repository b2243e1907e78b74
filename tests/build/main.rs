//! Layer-cached builds: which steps the cache serves after each kind of
//! change, multi-stage builds, bad Containerfiles and contexts, and a real
//! `RUN` in a busybox root filesystem (root only).

#[path = "../common/mod.rs"]
mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use layerstore::build::{BuildOptions, BuildReport, Builder};
use layerstore::{
    EntryKind, Error, History, Layer, ScanOptions, Snapshot, Store, StoreOptions, TreePath,
};

struct Fixture {
    _tmp: common::mounts::MountDir,
    store: Store,
    context: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let tmp = common::mounts::MountDir::new();
        let store = Store::create(tmp.path().join("store"), &StoreOptions::default()).unwrap();
        let context = tmp.path().join("context");
        std::fs::create_dir(&context).unwrap();
        Self {
            _tmp: tmp,
            store,
            context,
        }
    }

    fn write(&self, path: &str, content: &str) {
        let full = self.context.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, content).unwrap();
    }

    fn containerfile(&self, text: &str) {
        self.write("Containerfile", text);
    }

    fn build_with(&self, options: &BuildOptions) -> layerstore::Result<BuildReport> {
        Builder::new(&self.store).build(&self.context, options, |_| {})
    }

    fn build(&self) -> BuildReport {
        self.build_with(&BuildOptions::default()).expect("build")
    }

    /// For each step, whether it came from the cache.
    fn cached(&self) -> Vec<bool> {
        self.build().steps.iter().map(|s| s.cached).collect()
    }

    fn content(&self, report: &BuildReport, path: &str) -> Vec<u8> {
        let tree = self.store.image_tree(&report.image).unwrap();
        match &tree.get(&TreePath::new(path).unwrap()).expect(path).kind {
            EntryKind::File { chunks, .. } => self.store.read_all(chunks).unwrap(),
            other => panic!("{path}: not a file: {other:?}"),
        }
    }
}

/// The error of a build that must fail: a build error, with its line.
fn build_error(fx: &Fixture) -> (usize, String) {
    match fx.build_with(&BuildOptions::default()) {
        Err(Error::Build { line, reason, .. }) => (line, reason),
        other => panic!("expected a build error, got {other:?}"),
    }
}

const SIMPLE: &str = "\
FROM scratch
COPY a.txt /a.txt
ENV X=1
COPY b.txt /b.txt
LABEL l=1
";

fn simple() -> Fixture {
    let fx = Fixture::new();
    fx.containerfile(SIMPLE);
    fx.write("a.txt", "alpha");
    fx.write("b.txt", "beta");
    fx
}

#[test]
fn an_identical_rebuild_is_all_hits_with_the_same_image() {
    let fx = simple();
    let first = fx.build();
    assert_eq!(first.steps.len(), 4);
    assert!(first.steps.iter().all(|s| !s.cached));
    assert!(first.steps[0].layer.is_some(), "COPY makes a layer");
    assert!(first.steps[1].layer.is_none(), "ENV makes none");
    let second = fx.build();
    assert!(second.steps.iter().all(|s| s.cached), "{second:?}");
    assert_eq!(second.image, first.image);
    assert_eq!(fx.content(&second, "b.txt"), b"beta");
    let image = fx.store.image(&second.image).unwrap();
    assert_eq!(image.layers().len(), 2);
    assert_eq!(image.history().len(), 4);
    assert_eq!(image.config().env, vec!["X=1".to_owned()]);
    assert_eq!(
        image.config().labels.get("l").map(String::as_str),
        Some("1")
    );
}

#[test]
fn cmd_and_entrypoint_reach_the_image_config_and_its_oci_form() {
    let fx = Fixture::new();
    fx.containerfile(
        "FROM scratch\nCMD [\"ignored\"]\nENTRYPOINT [\"/bin/app\", \"--flag\"]\nCMD serve --port=80\n",
    );
    let report = fx.build();
    let image = fx.store.image(&report.image).unwrap();
    // The last CMD wins; the shell form runs through /bin/sh -c.
    assert_eq!(image.config().entrypoint, ["/bin/app", "--flag"]);
    assert_eq!(image.config().cmd, ["/bin/sh", "-c", "serve --port=80"]);
    let blobs = fx.context.parent().unwrap().join("blobs");
    let export = layerstore::oci::Exchange::new(&fx.store)
        .export_blobs(
            &report.image,
            &blobs,
            &layerstore::oci::ExportOptions::new(layerstore::oci::Compression::None),
        )
        .unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&export.config.path).unwrap()).unwrap();
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/bin/app", "--flag"])
    );
    assert_eq!(
        config["config"]["Cmd"],
        serde_json::json!(["/bin/sh", "-c", "serve --port=80"])
    );
}

#[test]
fn a_context_change_invalidates_its_copy_and_every_later_step() {
    let fx = simple();
    fx.build();
    fx.write("b.txt", "BETA!");
    assert_eq!(fx.cached(), vec![true, true, false, false]);
    fx.write("a.txt", "ALPHA");
    assert_eq!(fx.cached(), vec![false, false, false, false]);
    assert_eq!(fx.cached(), vec![true, true, true, true]);
}

#[test]
fn an_instruction_change_invalidates_from_that_step() {
    let fx = simple();
    fx.build();
    fx.containerfile(&SIMPLE.replace("ENV X=1", "ENV X=2"));
    assert_eq!(fx.cached(), vec![true, false, false, false]);
}

#[test]
fn no_cache_rebuilds_every_step_and_gives_the_same_image() {
    let fx = simple();
    let first = fx.build();
    let again = fx
        .build_with(&BuildOptions::default().no_cache(true))
        .unwrap();
    assert!(again.steps.iter().all(|s| !s.cached));
    assert_eq!(
        again.image, first.image,
        "builds without RUN are reproducible"
    );
}

#[test]
fn touching_a_file_is_a_hit_and_chmod_is_a_miss() {
    let fx = simple();
    fx.build();
    let a = fx.context.join("a.txt");
    common::set_mtime(&a, 1_000_000_000, 5);
    assert_eq!(fx.cached(), vec![true, true, true, true]);
    std::fs::set_permissions(&a, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(fx.cached(), vec![false, false, false, false]);
}

#[test]
fn a_cache_entry_whose_image_is_gone_is_a_miss() {
    let fx = simple();
    fx.build();
    let refs = fx.store.path().join("refs/cache");
    let bogus = format!("blake3:{}", "ab".repeat(32));
    let mut entries = 0;
    for entry in std::fs::read_dir(&refs).unwrap() {
        std::fs::write(entry.unwrap().path(), format!("{bogus}\n")).unwrap();
        entries += 1;
    }
    assert_eq!(entries, 4);
    assert_eq!(fx.cached(), vec![false, false, false, false]);
    assert_eq!(fx.cached(), vec![true, true, true, true]);
}

#[test]
fn cache_entries_survive_gc() {
    let fx = simple();
    fx.build();
    fx.store.gc(&layerstore::GcOptions::default()).unwrap();
    assert_eq!(fx.cached(), vec![true, true, true, true]);
}

const STAGES: &str = "\
FROM scratch AS builder
COPY src/ /src/
COPY gen.txt /out/gen.txt

FROM scratch AS unused
COPY does-not-exist /x

FROM scratch
COPY --from=builder /out/ /app/
LABEL done=1
";

#[test]
fn a_later_stage_rebuilds_its_copy_from_only_when_the_copied_files_change() {
    let fx = Fixture::new();
    fx.containerfile(STAGES);
    fx.write("src/main.c", "int main;");
    fx.write("gen.txt", "generated 1");
    let first = fx.build();
    // The unused stage is not built: its missing source is no error.
    assert_eq!(first.steps.len(), 4);
    assert_eq!(fx.content(&first, "app/gen.txt"), b"generated 1");
    let stages: Vec<usize> = first.steps.iter().map(|s| s.stage).collect();
    assert_eq!(stages, vec![0, 0, 2, 2]);

    // Only the first stage sees src/: the final stage's COPY --from is a hit.
    fx.write("src/main.c", "int main(void);");
    assert_eq!(fx.cached(), vec![false, false, true, true]);
    // What the final stage copies changed: it rebuilds from that COPY.
    fx.write("gen.txt", "generated 2");
    assert_eq!(fx.cached(), vec![true, false, false, false]);
    assert_eq!(fx.content(&fx.build(), "app/gen.txt"), b"generated 2");
}

#[test]
fn copy_places_files_directories_globs_and_owners() {
    let fx = Fixture::new();
    fx.containerfile(
        "FROM scratch\nWORKDIR /w\nCOPY --chown=7:8 d/ sub/\nCOPY *.md docs/\nCOPY one.txt renamed\n",
    );
    fx.write("d/x/y.txt", "y");
    fx.write("a.md", "a");
    fx.write("b.md", "b");
    fx.write("one.txt", "1");
    let report = fx.build();
    let tree = fx.store.image_tree(&report.image).unwrap();
    let get = |p: &str| {
        tree.get(&TreePath::new(p).unwrap())
            .unwrap_or_else(|| panic!("no {p}"))
    };
    assert_eq!(fx.content(&report, "w/sub/x/y.txt"), b"y");
    assert_eq!(
        (get("w/sub/x/y.txt").meta.uid, get("w/sub/x").meta.gid),
        (7, 8)
    );
    assert_eq!(fx.content(&report, "w/docs/a.md"), b"a");
    assert_eq!(fx.content(&report, "w/docs/b.md"), b"b");
    assert_eq!(fx.content(&report, "w/renamed"), b"1");
    assert!(get("w").is_dir());
    assert_eq!(
        fx.store.image(&report.image).unwrap().config().workdir,
        "/w"
    );
}

#[test]
fn bad_containerfiles_and_sources_are_errors_naming_the_line_and_tag_nothing() {
    let fx = Fixture::new();
    fx.write("ok.txt", "ok");
    let tag: layerstore::TagName = "app:1".parse().unwrap();
    let cases = [
        (
            "FROM scratch\nCOPY ok.txt /ok\nFROBNICATE\n",
            3,
            "FROBNICATE",
        ),
        ("FROM nosuch:image\n", 1, "unknown image"),
        ("FROM scratch\nCOPY ../x /x\n", 2, "outside the context"),
        ("FROM scratch\nCOPY /etc/passwd /x\n", 2, "absolute"),
        ("FROM scratch\nCOPY missing /x\n", 2, "not found"),
        ("FROM scratch\nCOPY out /x\n", 2, "leading out"),
        (
            "FROM scratch\nCOPY through/passwd /x\n",
            2,
            "through the symbolic link",
        ),
        (
            "FROM scratch AS a\nCOPY --from=b /x /y\nFROM scratch AS b\nCOPY --from=a /y /z\n",
            2,
            "before it is defined",
        ),
    ];
    std::os::unix::fs::symlink("/etc/passwd", fx.context.join("out")).unwrap();
    std::os::unix::fs::symlink("/etc", fx.context.join("through")).unwrap();
    for (text, line, words) in cases {
        fx.containerfile(text);
        let result = fx.build_with(&BuildOptions::default().tag(tag.clone()));
        match result {
            Err(Error::Build {
                line: got, reason, ..
            }) => {
                assert_eq!(got, line, "{text}: {reason}");
                assert!(reason.contains(words), "{text}: {reason}");
            }
            other => panic!("{text}: expected a build error, got {other:?}"),
        }
        assert_eq!(fx.store.tag(&tag).unwrap(), None, "{text}: tagged");
    }
}

/// A store image of a minimal busybox root filesystem, tagged `busybox`.
fn busybox_image(fx: &Fixture) -> bool {
    if !common::require_root("RUN (overlayfs, chroot)") || !common::require_tool("busybox") {
        return false;
    }
    let root = fx.context.parent().unwrap().join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let busybox = which("busybox");
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    for applet in ["sh", "echo", "cat", "sleep", "id"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    let scanned = fx.store.scan(&root, &ScanOptions::default()).unwrap();
    let layer: Layer = Snapshot::empty().diff(&scanned.snapshot);
    let image = fx
        .store
        .put_child_image(None, &layer, &scanned.snapshot, None, History::default())
        .unwrap();
    fx.store
        .set_tag(&"busybox".parse().unwrap(), &image)
        .unwrap();
    true
}

fn which(tool: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| Path::new("/bin").join(tool))
}

#[test]
fn run_executes_in_the_image_and_its_changes_become_a_layer() {
    let fx = Fixture::new();
    if !busybox_image(&fx) {
        return;
    }
    fx.containerfile(
        "FROM busybox\nENV GREETING=hi\nWORKDIR /work\nRUN echo $GREETING > /x && pwd > where\nUSER 1000:1000\nRUN id -u > /tmp/uid\n",
    );
    let report = fx.build();
    assert_eq!(fx.content(&report, "x"), b"hi\n");
    assert_eq!(fx.content(&report, "work/where"), b"/work\n");
    assert_eq!(fx.content(&report, "tmp/uid"), b"1000\n");
    let run = &report.steps[2];
    assert!(run.layer.is_some() && !run.cached);
    let layer = fx.store.layer(&run.layer.unwrap()).unwrap();
    let paths: Vec<String> = layer
        .upserts()
        .iter()
        .map(|e| String::from_utf8_lossy(e.path.as_bytes()).into_owned())
        .collect();
    assert!(paths.contains(&"x".to_owned()), "{paths:?}");
    assert!(!paths.iter().any(|p| p.starts_with("bin")), "{paths:?}");
    let image = fx.store.image(&report.image).unwrap();
    assert_eq!(
        image.history()[image.history().len() - 1].created_by,
        "RUN id -u > /tmp/uid"
    );
    // Cached the second time, same image.
    let again = fx.build();
    assert!(again.steps.iter().all(|s| s.cached));
    assert_eq!(again.image, report.image);
}

#[test]
fn a_failing_or_hanging_run_fails_the_build_with_its_output_and_tags_nothing() {
    let fx = Fixture::new();
    if !busybox_image(&fx) {
        return;
    }
    let tag: layerstore::TagName = "app:1".parse().unwrap();
    fx.containerfile("FROM busybox\nRUN echo to-the-log && exit 3\n");
    let (line, reason) = build_error(&fx);
    assert_eq!(line, 2);
    assert!(reason.contains("to-the-log"), "{reason}");
    fx.containerfile("FROM busybox\nCOPY Containerfile /c\nRUN sleep 30\n");
    let started = std::time::Instant::now();
    let result = fx.build_with(
        &BuildOptions::default()
            .tag(tag.clone())
            .run_timeout(Duration::from_secs(1)),
    );
    match result {
        Err(Error::Build { line, reason, .. }) => {
            assert_eq!(line, 3);
            assert!(reason.contains("timed out"), "{reason}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(fx.store.tag(&tag).unwrap(), None);
    // No container is left behind.
    let left = std::fs::read_dir(fx.store.path().join("containers")).map_or(0, |d| {
        d.filter_map(Result::ok)
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .count()
    });
    assert_eq!(left, 0);
}
