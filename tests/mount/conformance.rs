//! The conformance suite: containerd's snapshotter suite
//! (`snapshots/testsuite/testsuite.go`), ported to our model, plus what it
//! does not check (usage, a remount after a restart, xattrs and mtime
//! through commit).
//!
//! The mapping: a containerd *active* snapshot is a container
//! (`Containers::prepare`), a *view* a read-only container
//! (`Containers::view`), a *committed* snapshot an image, named by a tag
//! (`Containers::commit` with `CommitOptions::tag`); `Remove` of a committed
//! snapshot is `Containers::remove_image`, refused while a container is a view
//! of it. Parents are images, so "parent" checks compare image ids;
//! containerd's `fstest.Link` + `RemoveAll` (a move through a hard link) is
//! a rename here, as `ViewFiles` has no hard links.
//!
//! Each case runs against a fresh store in a temporary directory, through
//! `ViewFiles` only, so that the same case runs on in-process and mounted
//! backends; mounted ones are also checked through their target directory
//! where it matters (read-only views, restart).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use layerstore::mount::{
    CommitOptions, ContainerInfo, Containers, MountBackend, NodeKind, PrepareOptions, ViewFiles,
};
use layerstore::{ImageId, Store, StoreOptions, TagName, TreePath};

/// Defines the suite for one backend: `conformance!(name, factory)`, where
/// `factory` makes a fresh `Arc<dyn MountBackend>` (called again to
/// simulate a restart). Each case becomes a `#[test]` in module `name`.
#[macro_export]
macro_rules! conformance {
    ($name:ident, $factory:expr) => {
        conformance!(@module $name, $factory, plain);
    };
    // The suite as ignored tests, for a parent test to run in a child
    // process (as another user, say).
    (ignored $name:ident, $factory:expr) => {
        conformance!(@module $name, $factory, ignored);
    };
    (@module $name:ident, $factory:expr, $how:ident) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            use super::conformance::Fixture;
            fn factory() -> std::sync::Arc<dyn layerstore::mount::MountBackend> {
                ($factory)()
            }
            conformance!(@cases factory, $how;
                basic, stat_active, stat_committed, transitivity, prepare_view_reused_key,
                update_labels, remove_and_key_reuse, walk_with_filters, layer_file_update,
                remove_directory_in_lower_layer, chown, directory_permission_on_commit,
                remove_intermediate_snapshot, deleted_files_in_child_snapshot,
                move_file_from_lower_layer, view_readonly, stat_in_walk, close_twice,
                root_permission, rename, layers_128, usage, remount_after_restart,
                xattrs_and_mtime_through_commit);
        }
    };
    (@cases $factory:ident, plain; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                if let Some(fx) = Fixture::new($factory) {
                    super::conformance::$case(&fx);
                }
            }
        )*
    };
    (@cases $factory:ident, ignored; $($case:ident),* $(,)?) => {
        $(
            #[test]
            #[ignore = "run by a parent test in a child process"]
            fn $case() {
                if let Some(fx) = Fixture::new($factory) {
                    super::conformance::$case(&fx);
                }
            }
        )*
    };
}

/// A store, a `Containers` with the one backend under test, and a work
/// directory for targets. Dropped, it removes every container, so that the
/// kernel mounts of the `overlay` and `copy` backends (which outlive the
/// process) go too, also when a case fails; `dir` then fails a case that
/// passed but left anything mounted.
pub struct Fixture {
    pub dir: crate::common::mounts::MountDir,
    pub store: Store,
    pub factory: fn() -> Arc<dyn MountBackend>,
    pub backend: Arc<dyn MountBackend>,
}

impl Fixture {
    /// `None` (after saying so loudly, or failing under
    /// `LAYERSTORE_REQUIRE_PRIVILEGED=1`) if the backend cannot be used here.
    pub fn new(factory: fn() -> Arc<dyn MountBackend>) -> Option<Self> {
        let dir = crate::common::mounts::MountDir::new();
        let store = Store::create(dir.path().join("store"), &StoreOptions::default()).unwrap();
        let backend = factory();
        if let Err(err) = backend.check(&store) {
            crate::skip(&format!(
                "the {} backend cannot run here: {err}",
                backend.name()
            ));
            return None;
        }
        Some(Self {
            dir,
            store,
            factory,
            backend,
        })
    }

    pub fn containers(&self) -> Containers<'_> {
        Containers::with_backends(&self.store, vec![self.backend.clone()])
    }

    pub fn target(&self, name: &str) -> Option<PathBuf> {
        self.backend
            .needs_target()
            .then(|| self.dir.path().join("work").join(name))
    }

    pub fn options(&self, name: &str) -> PrepareOptions {
        let mut options = PrepareOptions::default();
        options.target = self.target(name);
        options
    }

    pub fn prepare(&self, c: &Containers<'_>, name: &str, image: &ImageId) -> ContainerInfo {
        c.prepare(name, image, &self.options(name)).unwrap()
    }

    pub fn view(&self, c: &Containers<'_>, name: &str, image: &ImageId) -> ContainerInfo {
        c.view(name, image, &self.options(name)).unwrap()
    }

    /// Commits `name`, tagging the image `tag`.
    pub fn commit(&self, c: &Containers<'_>, name: &str, tag: &str) -> ImageId {
        c.commit(name, &CommitOptions::default().tag(tag.parse().unwrap()))
            .unwrap()
    }

    /// The empty image.
    pub fn empty(&self, c: &Containers<'_>) -> ImageId {
        c.empty_image().unwrap()
    }

    fn is_root(&self) -> bool {
        rustix::process::geteuid().is_root()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let c = self.containers();
        let removed = c
            .walk(|_| true)
            .and_then(|all| all.iter().try_for_each(|info| c.remove(&info.name)));
        if let Err(err) = removed {
            assert!(
                std::thread::panicking(),
                "removing the containers of a case: {err}"
            );
        }
    }
}

pub fn p(path: &str) -> TreePath {
    if path.is_empty() || path == "." {
        TreePath::ROOT
    } else {
        TreePath::new(path.trim_start_matches('/')).unwrap()
    }
}

/// One change to a tree, as containerd's `fstest` appliers make them.
#[derive(Clone, Debug)]
pub enum Op {
    File(&'static str, &'static [u8], u32),
    Dir(&'static str, u32),
    RemoveAll(&'static str),
    Rename(&'static str, &'static str),
    Chown(&'static str, u32, u32),
    Symlink(&'static str, &'static str),
}

pub fn apply(files: &dyn ViewFiles, ops: &[Op]) {
    for op in ops {
        match op {
            Op::File(path, content, mode) => {
                files.write(&p(path), content).unwrap();
                set_mode(files, path, *mode);
            }
            Op::Dir(path, mode) => {
                files.create_dir(&p(path), *mode).unwrap();
                set_mode(files, path, *mode);
            }
            Op::RemoveAll(path) => files.remove(&p(path)).unwrap(),
            Op::Rename(from, to) => files.rename(&p(from), &p(to)).unwrap(),
            Op::Chown(path, uid, gid) => {
                let mut meta = files.metadata(&p(path)).unwrap().meta;
                meta.uid = *uid;
                meta.gid = *gid;
                files.set_metadata(&p(path), &meta).unwrap();
            }
            Op::Symlink(path, target) => files.symlink(&p(path), target.as_bytes()).unwrap(),
        }
    }
}

fn set_mode(files: &dyn ViewFiles, path: &str, mode: u32) {
    let mut meta = files.metadata(&p(path)).unwrap().meta;
    meta.mode = mode;
    files.set_metadata(&p(path), &meta).unwrap();
}

/// What the suite compares of a tree: per path, kind, content, mode, owner
/// (mtimes differ between a view and the reference, which are written at
/// other moments; the xattrs-and-mtime case checks them separately).
pub type Listing = BTreeMap<String, (String, Vec<u8>, u32, u32, u32)>;

pub fn listing(files: &dyn ViewFiles) -> Listing {
    let mut out = BTreeMap::new();
    let mut stack = vec![TreePath::ROOT];
    while let Some(dir) = stack.pop() {
        let node = files.metadata(&dir).unwrap();
        out.insert(
            dir.to_string(),
            (
                "dir".to_owned(),
                Vec::new(),
                node.meta.mode,
                node.meta.uid,
                node.meta.gid,
            ),
        );
        for name in files.list(&dir).unwrap() {
            let path = dir.join(&name).unwrap();
            // The copy backend's stat-cache clock probe never stays behind.
            assert!(
                !name.starts_with(b".layerstore-clock"),
                "{path} left behind"
            );
            let node = files.metadata(&path).unwrap();
            let (kind, content) = match &node.kind {
                NodeKind::Dir => {
                    stack.push(path);
                    continue;
                }
                NodeKind::File => ("file".to_owned(), files.read(&path).unwrap()),
                NodeKind::Symlink(t) => ("symlink".to_owned(), t.clone()),
                other => (format!("{other:?}"), Vec::new()),
            };
            out.insert(
                path.to_string(),
                (kind, content, node.meta.mode, node.meta.uid, node.meta.gid),
            );
        }
    }
    out
}

/// The tree the ops make when applied, in order, to a plain directory
/// (containerd's `fstest.CheckDirectoryEqualWithApplier` reference).
pub fn reference(fx: &Fixture, ops: &[&[Op]]) -> Listing {
    let dir = tempfile::tempdir_in(fx.dir.path()).unwrap();
    let files = layerstore::mount::DirFiles::new(dir.path(), false).unwrap();
    // The root as a fresh container's root: 0755, the process's owner.
    let mut meta = files.metadata(&TreePath::ROOT).unwrap().meta;
    meta.mode = 0o755;
    files.set_metadata(&TreePath::ROOT, &meta).unwrap();
    for ops in ops {
        apply(&files, ops);
    }
    let mut out = listing(&files);
    // The root's owner is the image's (0:0 for the empty image), where the
    // backend can give it (in memory, or as root).
    if (fx.is_root() || !fx.backend.needs_target())
        && let Some(root) = out.get_mut(".")
    {
        root.3 = 0;
        root.4 = 0;
    }
    out
}

/// containerd's `checkSnapshots`: each applier in a container on the
/// previous image, committed; then every image checked in a view.
pub fn check_layers(fx: &Fixture, layers: &[&[Op]]) -> Vec<ImageId> {
    let c = fx.containers();
    let mut image = fx.empty(&c);
    let mut images = Vec::new();
    for (i, ops) in layers.iter().enumerate() {
        let name = format!("layer-{i}");
        fx.prepare(&c, &name, &image);
        apply(c.files(&name).unwrap().as_ref(), ops);
        image = fx.commit(&c, &name, &format!("layer-{i}"));
        c.remove(&name).unwrap();
        images.push(image);
        let check = format!("check-{i}");
        fx.view(&c, &check, &image);
        let got = listing(c.files(&check).unwrap().as_ref());
        let want = reference(fx, &layers[..=i]);
        assert_eq!(got, want, "layer {i} on {}", fx.backend.name());
        c.remove(&check).unwrap();
    }
    images
}

pub fn basic(fx: &Fixture) {
    let initial: &[Op] = &[
        Op::File("/foo", b"foo\n", 0o777),
        Op::Dir("/a", 0o755),
        Op::Dir("/a/b", 0o755),
        Op::Dir("/a/b/c", 0o755),
    ];
    let diff: &[Op] = &[
        Op::File("/bar", b"bar\n", 0o777),
        Op::File("/foo", b"bar\n", 0o777),
        Op::RemoveAll("/a/b"),
    ];
    let c = fx.containers();
    let empty = fx.empty(&c);
    fx.prepare(&c, "preparing", &empty);
    apply(c.files("preparing").unwrap().as_ref(), initial);
    let committed = fx.commit(&c, "preparing", "committed");
    assert_eq!(fx.store.image(&committed).unwrap().layers().len(), 1);
    assert_eq!(c.stat("preparing").unwrap().committed, Some(committed));
    c.remove("preparing").unwrap();
    assert!(
        c.stat("preparing").is_err(),
        "removed container still stats"
    );

    let next = fx.prepare(&c, "nextlayer", &committed);
    assert_eq!(next.image, committed);
    assert_eq!(
        listing(c.files("nextlayer").unwrap().as_ref()),
        reference(fx, &[initial])
    );
    apply(c.files("nextlayer").unwrap().as_ref(), diff);
    let next_committed = fx.commit(&c, "nextlayer", "committed-next");
    let image = fx.store.image(&next_committed).unwrap();
    assert_eq!(image.layers().len(), 2);
    assert_eq!(
        image.layers()[0],
        fx.store.image(&committed).unwrap().layers()[0],
        "the child image is the parent's layers plus one"
    );
    c.remove("nextlayer").unwrap();

    fx.view(&c, "nextnextlayer", &next_committed);
    assert_eq!(
        listing(c.files("nextnextlayer").unwrap().as_ref()),
        reference(fx, &[initial, diff])
    );
    // Removing the committed parent is refused while a container uses it.
    fx.prepare(&c, "user", &committed);
    let err = c
        .remove_image(&"committed".parse::<TagName>().unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("user"), "{err}");
    c.remove("user").unwrap();
    c.remove("nextnextlayer").unwrap();
    assert!(c.remove_image(&"committed-next".parse().unwrap()).unwrap());
    assert!(c.remove_image(&"committed".parse().unwrap()).unwrap());
}

pub fn stat_active(fx: &Fixture) {
    let c = fx.containers();
    let empty = fx.empty(&c);
    fx.prepare(&c, "preparing", &empty);
    c.files("preparing")
        .unwrap()
        .write(&p("foo"), b"foo\n")
        .unwrap();
    let info = c.stat("preparing").unwrap();
    assert_eq!(info.name, "preparing");
    assert!(!info.read_only, "an active container is writable");
    assert!(info.mounted);
    assert_eq!(info.image, empty);
    assert_eq!(info.committed, None);
    assert_eq!(info.backend, fx.backend.name());
}

pub fn stat_committed(fx: &Fixture) {
    let c = fx.containers();
    let empty = fx.empty(&c);
    fx.prepare(&c, "preparing", &empty);
    c.files("preparing")
        .unwrap()
        .write(&p("foo"), b"foo\n")
        .unwrap();
    let committed = fx.commit(&c, "preparing", "committed");
    let info = c.stat("preparing").unwrap();
    assert_eq!(info.committed, Some(committed));
    assert_eq!(
        fx.store.tag(&"committed".parse().unwrap()).unwrap(),
        Some(committed)
    );
    let image = fx.store.image(&committed).unwrap();
    assert_eq!(image.layers().len(), 1, "the empty image has no layers");
    let tree = fx.store.image_tree(&committed).unwrap();
    assert!(tree.get(&p("foo")).is_some());
}

pub fn transitivity(fx: &Fixture) {
    let c = fx.containers();
    let empty = fx.empty(&c);
    fx.prepare(&c, "preparing", &empty);
    c.files("preparing")
        .unwrap()
        .write(&p("foo"), b"foo\n")
        .unwrap();
    let snap_a = fx.commit(&c, "preparing", "snap-a");
    fx.prepare(&c, "next", &snap_a);
    c.files("next")
        .unwrap()
        .write(&p("foo"), b"foo bar\n")
        .unwrap();
    let snap_b = fx.commit(&c, "next", "snap-b");
    let a = fx.store.image(&snap_a).unwrap();
    let b = fx.store.image(&snap_b).unwrap();
    // B's parent is A (its first layers are A's), A's parent is the empty image.
    assert_eq!(&b.layers()[..a.layers().len()], a.layers());
    assert_eq!(b.layers().len(), 2);
    assert_eq!(c.stat("next").unwrap().image, snap_a);
    assert_eq!(c.stat("preparing").unwrap().image, empty);
}

pub fn prepare_view_reused_key(fx: &Fixture) {
    let c = fx.containers();
    let empty = fx.empty(&c);
    fx.prepare(&c, "preparing", &empty);
    let snap_a = fx.commit(&c, "preparing", "snap-a");
    fx.prepare(&c, "newlayer", &snap_a);
    let err = c
        .view("newlayer", &snap_a, &fx.options("newlayer-2"))
        .unwrap_err();
    assert!(err.to_string().contains("exists"), "{err}");
    fx.prepare(&c, "prep-layer", &snap_a);
    assert!(
        c.prepare("prep-layer", &snap_a, &fx.options("prep-layer-2"))
            .is_err()
    );
    fx.view(&c, "view-layer", &snap_a);
    assert!(
        c.view("view-layer", &snap_a, &fx.options("view-layer-2"))
            .is_err()
    );
    // The failed attempts changed nothing of the first containers.
    assert!(c.stat("view-layer").unwrap().read_only);
    assert!(!c.stat("prep-layer").unwrap().read_only);
}

pub fn update_labels(fx: &Fixture) {
    let c = fx.containers();
    let empty = fx.empty(&c);
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    fx.prepare(&c, "a1", &empty);
    fx.view(&c, "v1", &empty);
    for name in ["a1", "v1"] {
        let info = c.stat(name).unwrap();
        assert!(u64::try_from(info.created.secs).unwrap() >= before);
        assert!(info.labels.is_empty());
        let labels: BTreeMap<String, String> = [("l1", "v1"), ("l2", "v2"), ("l3", "v3")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let updated = c.update_labels(name, labels.clone()).unwrap();
        assert_eq!(updated.labels, labels);
        assert_eq!(updated.created, info.created, "created is immutable");
        assert_eq!(updated.image, info.image, "the parent is immutable");
        assert_eq!(c.stat(name).unwrap().labels, labels, "labels are durable");
        let fewer: BTreeMap<String, String> =
            [("l4".to_owned(), "v4".to_owned())].into_iter().collect();
        assert_eq!(c.update_labels(name, fewer.clone()).unwrap().labels, fewer);
    }
    assert!(c.update_labels("doesnotexist", BTreeMap::new()).is_err());
}

pub fn remove_and_key_reuse(fx: &Fixture) {
    let c = fx.containers();
    let empty = fx.empty(&c);
    fx.prepare(&c, "committed-a", &empty);
    let committed = fx.commit(&c, "committed-a", "committed-1");
    fx.prepare(&c, "reuse-1", &committed);
    c.remove("reuse-1").unwrap();
    fx.view(&c, "reuse-1", &committed);
    c.remove("reuse-1").unwrap();
    fx.prepare(&c, "reuse-1", &empty);
    c.remove("committed-a").unwrap();
    assert!(c.remove_image(&"committed-1".parse().unwrap()).unwrap());
    let again = fx.commit(&c, "reuse-1", "committed-1");
    assert_eq!(
        fx.store.tag(&"committed-1".parse().unwrap()).unwrap(),
        Some(again)
    );
    assert!(c.remove("never-made").is_err());
}

pub fn walk_with_filters(fx: &Fixture) {
    let c = fx.containers();
    let empty = fx.empty(&c);
    fx.prepare(&c, "c1-a", &empty);
    let c1 = fx.commit(&c, "c1-a", "c1");
    fx.prepare(&c, "c2-a", &c1);
    let c2 = fx.commit(&c, "c2-a", "c2");
    fx.prepare(&c, "a1", &c2);
    fx.prepare(&c, "a2", &empty);
    fx.view(&c, "v1", &c2);
    fx.view(&c, "v2", &empty);
    let mut labels = BTreeMap::new();
    labels.insert("team".to_owned(), "x".to_owned());
    c.update_labels("a1", labels.clone()).unwrap();
    c.update_labels("v2", labels).unwrap();

    let names = |f: &dyn Fn(&ContainerInfo) -> bool| -> Vec<String> {
        c.walk(|i| f(i))
            .unwrap()
            .into_iter()
            .map(|i| i.name)
            .collect()
    };
    assert_eq!(names(&|_| true), ["a1", "a2", "c1-a", "c2-a", "v1", "v2"]);
    assert_eq!(names(&|i| i.read_only), ["v1", "v2"]);
    assert_eq!(names(&|i| i.image == c2), ["a1", "v1"]);
    assert_eq!(
        names(&|i| i.labels.get("team").map(String::as_str) == Some("x")),
        ["a1", "v2"]
    );
    assert_eq!(names(&|i| i.committed.is_some()), ["c1-a", "c2-a"]);
    assert!(names(&|i| i.name == "nothing").is_empty());
}

pub fn layer_file_update(fx: &Fixture) {
    check_layers(
        fx,
        &[
            &[
                Op::File("/foo", b"foo\n", 0o777),
                Op::File("/bar", b"bar\n", 0o777),
            ],
            // Same sizes, new content: a scan that trusted sizes would miss it.
            &[
                Op::File("/foo", b"FOO\n", 0o777),
                Op::File("/bar", b"bar\n", 0o700),
            ],
            &[Op::File("/foo", b"foo", 0o777)],
        ],
    );
}

pub fn remove_directory_in_lower_layer(fx: &Fixture) {
    check_layers(
        fx,
        &[
            &[
                Op::Dir("/lib", 0o700),
                Op::File("/lib/hidden", b"", 0o644),
                Op::Dir("/lib/sub", 0o755),
                Op::File("/lib/sub/keep", b"", 0o644),
            ],
            &[
                Op::RemoveAll("/lib"),
                Op::Dir("/lib", 0o755),
                Op::File("/lib/not-hidden", b"", 0o644),
            ],
            &[Op::File("/lib/newfile", b"", 0o644)],
        ],
    );
}

pub fn chown(fx: &Fixture) {
    if fx.backend.needs_target() && !crate::require_root("chown in a directory view") {
        return;
    }
    let images = check_layers(
        fx,
        &[
            &[
                Op::Dir("/opt", 0o700),
                Op::Dir("/opt/a", 0o700),
                Op::Dir("/opt/a/b", 0o700),
                Op::File("/opt/a/b/file.txt", b"hello", 0o644),
            ],
            &[
                Op::Chown("/opt", 1, 1),
                Op::Chown("/opt/a", 1, 1),
                Op::Chown("/opt/a/b", 1, 1),
                Op::Chown("/opt/a/b/file.txt", 1, 1),
            ],
        ],
    );
    let tree = fx.store.image_tree(&images[1]).unwrap();
    let file = tree.get(&p("opt/a/b/file.txt")).unwrap();
    assert_eq!((file.meta.uid, file.meta.gid), (1, 1));
}

pub fn directory_permission_on_commit(fx: &Fixture) {
    if fx.backend.needs_target() && !crate::require_root("chown in a directory view") {
        return;
    }
    check_layers(
        fx,
        &[
            &[
                Op::Dir("/dir1", 0o700),
                Op::Dir("/dir2", 0o700),
                Op::Dir("/dir3", 0o700),
                Op::Chown("/dir3", 1, 1),
            ],
            &[
                Op::Dir("/dir4", 0o700),
                Op::Chown("/dir4", 1, 1),
                Op::Dir("/dir5", 0o700),
                Op::Chown("/dir5", 1, 1),
                Op::Chown("/dir5", 0, 0),
            ],
        ],
    );
}

pub fn remove_intermediate_snapshot(fx: &Fixture) {
    let c = fx.containers();
    let empty = fx.empty(&c);
    fx.prepare(&c, "base", &empty);
    let base = fx.commit(&c, "base", "committed-base");
    fx.prepare(&c, "intermediate", &base);
    let inter = fx.commit(&c, "intermediate", "committed-inter");
    fx.prepare(&c, "toplayer", &inter);
    assert!(
        c.remove_image(&"committed-inter".parse().unwrap()).is_err(),
        "removing an image a container uses must fail"
    );
    c.remove("toplayer").unwrap();
    c.remove("intermediate").unwrap();
    assert!(c.remove_image(&"committed-inter".parse().unwrap()).unwrap());
    c.remove("base").unwrap();
    assert!(c.remove_image(&"committed-base".parse().unwrap()).unwrap());
}

pub fn deleted_files_in_child_snapshot(fx: &Fixture) {
    let images = check_layers(
        fx,
        &[
            &[
                Op::File("/foo", b"foo\n", 0o777),
                Op::File("/foobar", b"foobar\n", 0o777),
            ],
            &[Op::RemoveAll("/foobar")],
            &[],
        ],
    );
    assert!(
        fx.store
            .image_tree(&images[2])
            .unwrap()
            .get(&p("foobar"))
            .is_none()
    );
}

pub fn move_file_from_lower_layer(fx: &Fixture) {
    check_layers(
        fx,
        &[
            &[
                Op::Dir("/dir1", 0o700),
                Op::File("/dir1/f1", b"Hello", 0o644),
                Op::Dir("dir2", 0o700),
                Op::File("dir2/f2", b"...", 0o644),
            ],
            &[
                Op::Dir("/dir3", 0o700),
                Op::File("/dir3/f1", b"Hello", 0o644),
                Op::RemoveAll("/dir1"),
                Op::Rename("dir2/f2", "dir3/f2"),
            ],
        ],
    );
}

pub fn view_readonly(fx: &Fixture) {
    let c = fx.containers();
    let empty = fx.empty(&c);
    fx.prepare(&c, "preparing", &empty);
    c.files("preparing")
        .unwrap()
        .write(&p("keep"), b"x")
        .unwrap();
    let committed = fx.commit(&c, "preparing", "committed");
    let view = fx.view(&c, "view", &committed);
    let files = c.files("view").unwrap();
    let err = files.write(&p("testfile"), b"testcontent").unwrap_err();
    assert!(is_erofs(&err), "{err}");
    assert!(is_erofs(&files.remove(&p("keep")).unwrap_err()));
    assert!(is_erofs(&files.create_dir(&p("d"), 0o755).unwrap_err()));
    assert_eq!(files.read(&p("keep")).unwrap(), b"x");
    drop(files);
    if let Some(target) = &view.target {
        // The directory itself refuses writes, when the backend can enforce it.
        if crate::require_root("a read-only bind mount") {
            let err = std::fs::write(target.join("testfile"), b"x").unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc_erofs()), "{err}");
        }
    }
    let err = c.commit("view", &CommitOptions::default()).unwrap_err();
    assert!(err.to_string().contains("read-only"), "{err}");
    c.remove("view").unwrap();
    if let Some(target) = &view.target {
        assert_eq!(std::fs::read_dir(target).unwrap().count(), 0);
    }
}

fn libc_erofs() -> i32 {
    rustix::io::Errno::ROFS.raw_os_error()
}

fn is_erofs(err: &layerstore::Error) -> bool {
    match err {
        layerstore::Error::Io { source, .. } => source.raw_os_error() == Some(libc_erofs()),
        _ => false,
    }
}

pub fn stat_in_walk(fx: &Fixture) {
    let c = fx.containers();
    let empty = fx.empty(&c);
    for name in ["a", "b", "c"] {
        fx.prepare(&c, name, &empty);
    }
    let mut seen = Vec::new();
    c.walk(|info| {
        // A stat (and a usage) inside the walk's callback neither deadlocks
        // nor disagrees with the walk.
        let again = c.stat(&info.name).unwrap();
        assert_eq!(&again, info);
        c.usage(&info.name).unwrap();
        seen.push(info.name.clone());
        true
    })
    .unwrap();
    assert_eq!(seen, ["a", "b", "c"]);
}

pub fn close_twice(fx: &Fixture) {
    let c = fx.containers();
    let empty = fx.empty(&c);
    fx.prepare(&c, "close-twice-prepare", &empty);
    fx.commit(&c, "close-twice-prepare", "close-twice");
    c.unmount("close-twice-prepare").unwrap();
    c.unmount("close-twice-prepare").unwrap();
    assert!(!c.stat("close-twice-prepare").unwrap().mounted);
    c.remove("close-twice-prepare").unwrap();
    drop(c);
    let again = fx.containers();
    assert!(again.walk(|_| true).unwrap().is_empty());
    drop(again);
}

pub fn root_permission(fx: &Fixture) {
    let c = fx.containers();
    let empty = fx.empty(&c);
    let info = fx.prepare(&c, "preparing", &empty);
    let root = c
        .files("preparing")
        .unwrap()
        .metadata(&TreePath::ROOT)
        .unwrap();
    assert_eq!(root.meta.mode, 0o755);
    if let Some(target) = info.target {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(target).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o755);
    }
}

pub fn rename(fx: &Fixture) {
    check_layers(
        fx,
        &[
            &[
                Op::Dir("/dir1", 0o700),
                Op::Dir("/somefiles", 0o700),
                Op::File("/somefiles/f1", b"was here first!", 0o644),
                Op::File("/somefiles/f2", b"nothing interesting", 0o644),
                Op::Symlink("/link", "somefiles/f1"),
            ],
            &[
                Op::Rename("/dir1", "/dir2"),
                Op::File("/somefiles/f1-overwrite", b"new content 1", 0o644),
                Op::Rename("/somefiles/f1-overwrite", "/somefiles/f1"),
                Op::Rename("/somefiles/f2", "/somefiles/f3"),
            ],
            &[Op::Rename("/dir2", "/dir1")],
        ],
    );
}

pub fn layers_128(fx: &Fixture) {
    let c = fx.containers();
    let mut image = fx.empty(&c);
    for i in 0..128 {
        let name = format!("layer-{i}");
        fx.prepare(&c, &name, &image);
        let files = c.files(&name).unwrap();
        files
            .write(&p("bottom-up"), format!("layer {i}").as_bytes())
            .unwrap();
        files
            .write(&p(&format!("file-{i}")), format!("{i}").as_bytes())
            .unwrap();
        drop(files);
        image = c.commit(&name, &CommitOptions::default()).unwrap();
        c.remove(&name).unwrap();
    }
    assert_eq!(fx.store.image(&image).unwrap().layers().len(), 128);
    fx.view(&c, "top", &image);
    let files = c.files("top").unwrap();
    assert_eq!(files.read(&p("bottom-up")).unwrap(), b"layer 127");
    assert_eq!(files.list(&TreePath::ROOT).unwrap().len(), 129);
    assert_eq!(files.read(&p("file-0")).unwrap(), b"0");
    assert_eq!(files.read(&p("file-127")).unwrap(), b"127");
}

/// 100 000 bytes.
const BIG: &[u8] = &[7u8; 100_000];

pub fn usage(fx: &Fixture) {
    let c = fx.containers();
    let empty = fx.empty(&c);
    fx.prepare(&c, "base", &empty);
    apply(
        c.files("base").unwrap().as_ref(),
        &[Op::Dir("/d", 0o755), Op::File("/d/big", BIG, 0o644)],
    );
    let base = fx.commit(&c, "base", "base");
    fx.prepare(&c, "u", &base);
    assert_eq!(
        c.usage("u").unwrap().size,
        0,
        "an unchanged view uses nothing"
    );
    assert_eq!(c.usage("u").unwrap().inodes, 0);
    let files = c.files("u").unwrap();
    files.write(&p("a"), &[1u8; 4096]).unwrap();
    files.write(&p("b"), &[2u8; 1000]).unwrap();
    files.remove(&p("d/big")).unwrap();
    drop(files);
    let usage = c.usage("u").unwrap();
    assert_eq!(usage.size, 5096);
    // a, b, the whiteout of d/big, and d and the root, whose mtimes changed.
    assert_eq!(usage.inodes, 5, "{usage:?}");
}

pub fn remount_after_restart(fx: &Fixture) {
    {
        let c = fx.containers();
        let empty = fx.empty(&c);
        fx.prepare(&c, "survivor", &empty);
        apply(
            c.files("survivor").unwrap().as_ref(),
            &[
                Op::Dir("/etc", 0o755),
                Op::File("/etc/hostname", b"box\n", 0o644),
            ],
        );
        c.unmount("survivor").unwrap();
        if let Some(target) = fx.target("survivor") {
            assert_eq!(
                std::fs::read_dir(target).unwrap().count(),
                0,
                "unmount empties"
            );
        }
    }
    // A new process: a fresh backend and a fresh store handle.
    let store = Store::open(fx.store.path()).unwrap();
    let c = Containers::with_backends(&store, vec![(fx.factory)()]);
    let info = c.stat("survivor").unwrap();
    assert!(!info.mounted);
    assert_eq!(c.walk(|_| true).unwrap().len(), 1);
    c.mount("survivor", None).unwrap();
    assert_eq!(
        c.files("survivor")
            .unwrap()
            .read(&p("etc/hostname"))
            .unwrap(),
        b"box\n"
    );
    if let Some(target) = fx.target("survivor") {
        assert_eq!(
            std::fs::read(target.join("etc/hostname")).unwrap(),
            b"box\n"
        );
    }
    let err = c.mount("survivor", None).unwrap_err();
    assert!(err.to_string().contains("already mounted"), "{err}");
    let image = c.commit("survivor", &CommitOptions::default()).unwrap();
    let tree = store.image_tree(&image).unwrap();
    assert!(tree.get(&p("etc/hostname")).is_some());
    // Committing an unmounted container works too.
    c.unmount("survivor").unwrap();
    let again = c.commit("survivor", &CommitOptions::default()).unwrap();
    assert_eq!(
        store.image(&again).unwrap().rootfs(),
        store.image(&image).unwrap().rootfs()
    );
}

pub fn xattrs_and_mtime_through_commit(fx: &Fixture) {
    let c = fx.containers();
    let empty = fx.empty(&c);
    fx.prepare(&c, "x", &empty);
    let files = c.files("x").unwrap();
    files.create_dir(&p("dir"), 0o750).unwrap();
    files.write(&p("dir/file"), b"content").unwrap();
    let mut meta = files.metadata(&p("dir/file")).unwrap().meta;
    meta.mtime = layerstore::Timestamp::new(1_234_567_890, 123_456_789);
    meta.xattrs.insert(b"user.test".to_vec(), b"value".to_vec());
    match files.set_metadata(&p("dir/file"), &meta) {
        Ok(()) => {}
        Err(err) => {
            crate::skip(&format!("user xattrs are not supported here: {err}"));
            return;
        }
    }
    let mut dir_meta = files.metadata(&p("dir")).unwrap().meta;
    dir_meta.mtime = layerstore::Timestamp::new(1_000_000_000, 1);
    files.set_metadata(&p("dir"), &dir_meta).unwrap();
    drop(files);
    let image = c.commit("x", &CommitOptions::default()).unwrap();
    let tree = fx.store.image_tree(&image).unwrap();
    let file = tree.get(&p("dir/file")).unwrap();
    assert_eq!(file.meta.mtime, meta.mtime);
    assert_eq!(
        file.meta.xattrs.get(b"user.test".as_slice()).unwrap(),
        b"value"
    );
    assert_eq!(tree.get(&p("dir")).unwrap().meta.mtime, dir_meta.mtime);
    // And back out through a new view.
    fx.view(&c, "back", &image);
    let back = c.files("back").unwrap().metadata(&p("dir/file")).unwrap();
    assert_eq!(back.meta.mtime, meta.mtime);
    assert_eq!(back.meta.xattrs, meta.xattrs);
    assert_eq!(
        c.files("back")
            .unwrap()
            .metadata(&p("dir"))
            .unwrap()
            .meta
            .mtime,
        dir_meta.mtime
    );
}
