//! The scan's unit tests: the stat cache's trust rule, the join of the
//! listings, and what happens when files vanish or change during a scan.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use rustix::io::Errno;

use super::read::file_kind;
use super::stat::{dev, file_stat, ino};
use super::statcache::{self, CacheFile};
use super::walk::{Found, Listed, PendingDir};
use super::*;
use crate::store::StoreOptions;
use crate::store::chunk_list::ChunkList;
use crate::tree::entry::{EntryKind, Metadata, Timestamp};

struct Fixture {
    _tmp: tempfile::TempDir,
    store: Store,
    tree: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::create(tmp.path().join("store"), &StoreOptions::default()).unwrap();
    let tree = tmp.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    Fixture {
        _tmp: tmp,
        store,
        tree,
    }
}

fn kinds(scan: &Scan<'_>) -> Vec<(String, ScanWarningKind)> {
    let warnings = scan.warnings.lock().unwrap();
    warnings
        .iter()
        .map(|w| (w.path.to_string(), w.kind))
        .collect()
}

fn content_of(fx: &Fixture, out: &ScanOutcome, path: &str) -> Vec<u8> {
    match &out
        .snapshot
        .get(&TreePath::new(path).unwrap())
        .unwrap()
        .kind
    {
        EntryKind::File { chunks, .. } => fx.store.read_all(chunks).unwrap(),
        other => panic!("{other:?}"),
    }
}

/// Rewrites the tree's stat cache: every file's chunks replaced by
/// `chunks` (if given) and the scan's start set to `started`.
fn tamper(fx: &Fixture, chunks: Option<&ChunkList>, started: Timestamp) {
    let canonical = std::fs::canonicalize(&fx.tree).unwrap();
    let root = canonical.as_os_str().as_bytes();
    let path = statcache::cache_path(&fx.store, root);
    let cache = CacheFile::decode(&std::fs::read(&path).unwrap(), root).unwrap();
    let (_, tree_id, records) = cache.into_parts();
    let mut entries = fx.store.snapshot(&tree_id).unwrap().into_entries();
    for entry in &mut entries {
        if let (Some(chunks), EntryKind::File { .. }) = (chunks, &entry.kind) {
            entry.kind = file_kind(chunks.clone());
        }
    }
    let tree_id = fx
        .store
        .put_snapshot(&Snapshot::from_sorted(entries).unwrap())
        .unwrap();
    let bytes = CacheFile::encode_parts(root, started, tree_id, records);
    CacheFile::write(&fx.store, &path, &bytes).unwrap();
}

/// A rescan that finds the same tree and reads nothing leaves the cache
/// file as it is; one that reads a file writes it again.
#[test]
fn an_unchanged_rescan_leaves_the_cache_file_alone() {
    use std::os::unix::fs::MetadataExt;
    let fx = fixture();
    std::fs::write(fx.tree.join("a"), b"alpha").unwrap();
    std::fs::write(fx.tree.join("b"), b"bravo").unwrap();
    let canonical = std::fs::canonicalize(&fx.tree).unwrap();
    let path = statcache::cache_path(&fx.store, canonical.as_os_str().as_bytes());
    let first = fx.store.scan(&fx.tree, &ScanOptions::default()).unwrap();
    assert_eq!(first.files_read, 2);
    // Files as new as the scan are racy; a scan start well after them
    // makes the cache trusted for them.
    tamper(&fx, None, Timestamp::new(Timestamp::now().secs + 10, 0));
    let written = std::fs::metadata(&path).unwrap().ino();
    let second = fx.store.scan(&fx.tree, &ScanOptions::default()).unwrap();
    assert_eq!(second.files_read, 0, "{second:?}");
    assert_eq!(second.snapshot.id(), first.snapshot.id());
    assert_eq!(std::fs::metadata(&path).unwrap().ino(), written);
    std::fs::write(fx.tree.join("b"), b"BRAVO").unwrap();
    let fourth = fx.store.scan(&fx.tree, &ScanOptions::default()).unwrap();
    assert_eq!(fourth.files_read, 1);
    assert_ne!(std::fs::metadata(&path).unwrap().ino(), written);
}

#[test]
fn the_cache_is_trusted_only_for_files_older_than_the_scan_start() {
    let fx = fixture();
    std::fs::write(fx.tree.join("f"), b"real").unwrap();
    let first = fx.store.scan(&fx.tree, &ScanOptions::default()).unwrap();
    assert_eq!(content_of(&fx, &first, "f"), b"real");

    // A cache whose scan started well after the file's last change is
    // trusted: its (false) chunks are taken without reading the file.
    let fake = fx.store.put_bytes(b"fake").unwrap();
    let later = Timestamp::new(Timestamp::now().secs + 10, 0);
    tamper(&fx, Some(&fake), later);
    let trusted = fx.store.scan(&fx.tree, &ScanOptions::default()).unwrap();
    assert_eq!(content_of(&fx, &trusted, "f"), b"fake");
    assert_eq!((trusted.files_read, trusted.files_from_cache), (0, 1));

    // The same cache written by a scan that started in the second of the
    // file's ctime: racily clean, so the file is read.
    let ctime = file_stat(&rustix::fs::lstat(fx.tree.join("f")).unwrap()).ctime;
    for started in [ctime, Timestamp::new(ctime.secs + 1, 999_999_999)] {
        tamper(&fx, Some(&fake), started);
        let racy = fx.store.scan(&fx.tree, &ScanOptions::default()).unwrap();
        assert_eq!(content_of(&fx, &racy, "f"), b"real", "started {started:?}");
        assert_eq!(racy.files_read, 1);
    }
    // Two seconds on, the file is settled.
    tamper(&fx, Some(&fake), Timestamp::new(ctime.secs + 2, 0));
    let settled = fx.store.scan(&fx.tree, &ScanOptions::default()).unwrap();
    assert_eq!(content_of(&fx, &settled, "f"), b"fake");
}

#[test]
fn listings_join_in_path_order_without_what_was_not_listed() {
    let path = |p: &str| TreePath::new(p).unwrap();
    let meta = Metadata::default();
    let dir = |p: &str| Found::Entry(Entry::dir(path(p), meta.clone()), None);
    let file = |p: &str| Found::Entry(Entry::new(path(p), EntryKind::Fifo, meta.clone()), None);
    let sub = |p: &str| {
        Found::Dir(PendingDir {
            path: path(p),
            expect: Some((0, 0)),
        })
    };
    let root = Found::Entry(Entry::dir(TreePath::ROOT, meta.clone()), None);
    let mut dirs = vec![
        Listed {
            path: path("a/b"),
            items: vec![dir("a/b"), file("a/b/z")],
        },
        // "gone" has no listing (the walk gives a vanished directory
        // an empty one); the `Gone` is a linked file that vanished
        // before its group was read.
        Listed {
            path: TreePath::ROOT,
            items: vec![
                root,
                sub("a"),
                file("a-c"),
                sub("gone"),
                file("h"),
                Found::Gone,
                sub("z"),
            ],
        },
        Listed {
            path: path("a"),
            items: vec![dir("a"), sub("a/b"), file("a/c")],
        },
        Listed {
            path: path("z"),
            items: vec![dir("z"), sub("z/y")],
        },
    ];
    dirs.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    let entries: Vec<Entry> = depth_first(dirs).into_iter().map(|(e, _)| e).collect();
    let paths: Vec<String> = entries.iter().map(|e| e.path.to_string()).collect();
    assert_eq!(paths, [".", "a", "a/b", "a/b/z", "a/c", "a-c", "h", "z"]);
    Snapshot::from_sorted(entries).unwrap();
}

#[test]
fn vanished_and_replaced_paths_are_warnings_not_errors() {
    let fx = fixture();
    std::fs::create_dir(fx.tree.join("d")).unwrap();
    std::fs::write(fx.tree.join("f"), b"x").unwrap();
    std::os::unix::fs::symlink("d", fx.tree.join("l")).unwrap();
    let scan = Scan::new(&fx.store, ConfinedDir::open(&fx.tree).unwrap(), false);
    let root_dir = scan.root.open_dir(b"").unwrap();

    // Listed, then gone before it is examined.
    assert!(
        scan.examine(&root_dir, &TreePath::ROOT, b"gone", &(0..0))
            .unwrap()
            .is_none()
    );
    // A directory gone, replaced by another, or by a link, before it is listed.
    let pending = |path: &str, expect| PendingDir {
        path: TreePath::new(path).unwrap(),
        expect: Some(expect),
    };
    let d = rustix::fs::lstat(fx.tree.join("d")).unwrap();
    assert!(scan.list(&pending("gone", (0, 0))).unwrap().is_empty());
    assert!(scan.list(&pending("d", (dev(&d), 0))).unwrap().is_empty());
    assert!(
        scan.list(&pending("l", (dev(&d), ino(&d))))
            .unwrap()
            .is_empty()
    );
    assert!(scan.list(&pending("f", (0, 0))).unwrap().is_empty());
    assert_eq!(
        scan.list(&pending("d", (dev(&d), ino(&d)))).unwrap().len(),
        1
    );

    // A file replaced by another inode between lstat and open.
    let f = TreePath::new("f").unwrap();
    let shown = fx.tree.join("f");
    let got = scan
        .read_content(&f, &d, &shown, || root_dir.open_file(b"f"))
        .unwrap();
    assert!(got.is_none());
    // A file replaced by a link between lstat and open.
    let st = rustix::fs::lstat(&shown).unwrap();
    let got = scan
        .read_content(&f, &st, &shown, || root_dir.open_file(b"l"))
        .unwrap();
    assert!(got.is_none());

    assert_eq!(
        kinds(&scan),
        [
            ("gone".to_owned(), ScanWarningKind::Vanished),
            ("gone".to_owned(), ScanWarningKind::Vanished),
            ("d".to_owned(), ScanWarningKind::Replaced),
            ("l".to_owned(), ScanWarningKind::Replaced),
            ("f".to_owned(), ScanWarningKind::Replaced),
            ("f".to_owned(), ScanWarningKind::Replaced),
            ("f".to_owned(), ScanWarningKind::Replaced),
        ]
    );
    assert_eq!(scan.files_read.load(Ordering::Relaxed), 0);
}

#[test]
fn a_file_that_keeps_changing_is_read_twice_and_kept_with_a_warning() {
    // A /proc file reports size 0 but has content: every read looks like
    // the file changed under it.
    let fx = fixture();
    let scan = Scan::new(&fx.store, ConfinedDir::open("/proc/self").unwrap(), true);
    let dir = scan.root.open_dir(b"").unwrap();
    let st = dir.lstat(b"status").unwrap();
    let path = TreePath::new("status").unwrap();
    let read = scan
        .read_content(&path, &st, Path::new("/proc/self/status"), || {
            dir.open_file(b"status")
        })
        .unwrap()
        .unwrap();
    assert!(read.chunks.content_len() > 0);
    assert_eq!(scan.files_read.load(Ordering::Relaxed), 2);
    assert_eq!(
        kinds(&scan),
        [("status".to_owned(), ScanWarningKind::ChangedWhileRead)]
    );
    // What changed while read is not remembered for the cache.
    assert!(!read.stable);
}

#[test]
fn an_unreadable_file_is_an_error_naming_it() {
    let fx = fixture();
    std::fs::write(fx.tree.join("f"), b"x").unwrap();
    let scan = Scan::new(&fx.store, ConfinedDir::open(&fx.tree).unwrap(), false);
    let shown = fx.tree.join("f");
    let st = rustix::fs::lstat(&shown).unwrap();
    let denied = || {
        let source = io::Error::from_raw_os_error(Errno::ACCESS.raw_os_error());
        Err(Error::io("open", &shown, source))
    };
    let err = scan
        .read_content(&TreePath::new("f").unwrap(), &st, &shown, denied)
        .unwrap_err();
    assert!(err.to_string().contains(&*shown.to_string_lossy()), "{err}");
    assert!(kinds(&scan).is_empty());
}

#[test]
fn a_scan_reports_monotone_progress_ending_at_the_total() {
    let fx = fixture();
    crate::testing::progress_tree(&fx.tree, 6, 5);
    let (progress, events) = crate::testing::recording_progress();
    let options = ScanOptions::default().progress(progress);
    let out = fx.store.scan(&fx.tree, &options).unwrap();
    let events = events.lock().unwrap();
    let last = crate::testing::monotone_to_the_end(&events);
    let entries = out.snapshot.entries().len() as u64;
    assert_eq!(last.stage, ProgressStage::Scan);
    assert_eq!((last.entries, last.entries_total), (entries, Some(entries)));
    assert_eq!((last.bytes, last.bytes_total), (out.bytes_read, None));

    // A rescan counts the bytes of the files it takes from the cache as
    // well as those it reads (all of them here: they are racily new).
    let (progress, events) = crate::testing::recording_progress();
    fx.store
        .scan(&fx.tree, &options.progress(progress))
        .unwrap();
    let last = crate::testing::monotone_to_the_end(&events.lock().unwrap());
    assert_eq!((last.entries, last.bytes), (entries, out.bytes_read));
}
