//! Fault injection (feature `fault-injection`): each write site of a commit
//! (scan + `put_child_image` + flush + `set_tag`) fails in turn with `ENOSPC`
//! and with `EIO`. The commit reports an I/O error naming the path and the
//! errno; the store stays sound (fsck clean, garbage at most), every image
//! tagged before reads back, and the same commit retried succeeds — on the
//! handle that saw the error, and after reopening.

use std::collections::BTreeMap;
use std::path::Path;

use layerstore::{
    Error, FsckOptions, History, ImageId, ScanOptions, ScanWarningKind, Snapshot, Store, fault,
};

use super::{files, new_store, read_image};

type Files = Vec<(String, Vec<u8>)>;

/// Writes `files` into a fresh directory `dir`.
pub(crate) fn write_tree(dir: &Path, files: &Files) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, content) in files {
        std::fs::write(dir.join(name), content).unwrap();
    }
}

/// A commit as the CLI does it: scan, store the image on `parent`, flush,
/// tag. Returns the image and whether the scan could not save its stat cache.
fn commit(
    store: &Store,
    src: &Path,
    parent: Option<&ImageId>,
    tag: &str,
) -> layerstore::Result<(ImageId, bool)> {
    let scanned = store.scan(src, &ScanOptions::default())?;
    let cache_lost = scanned
        .warnings
        .iter()
        .any(|w| w.kind == ScanWarningKind::StatCacheNotSaved);
    let base = match parent {
        Some(p) => store.image_tree(p)?,
        None => Snapshot::empty(),
    };
    let layer = base.diff(&scanned.snapshot);
    let id = store.put_child_image(parent, &layer, &scanned.snapshot, None, History::default())?;
    store.flush()?;
    store.set_tag(&tag.parse().unwrap(), &id)?;
    Ok((id, cache_lost))
}

/// Asserts that every tag in `expected` points at its image and reads back
/// as its files.
fn check_tags(store: &Store, expected: &BTreeMap<String, (ImageId, Files)>, when: &str) {
    for (tag, (id, files)) in expected {
        assert_eq!(
            store.tag(&tag.parse().unwrap()).unwrap(),
            Some(*id),
            "{when}: tag {tag}"
        );
        let mut read = read_image(store, id).unwrap_or_else(|e| panic!("{when}: {tag}: {e}"));
        read.sort();
        let mut want = files.clone();
        want.sort();
        assert!(read == want, "{when}: image {tag} reads back differently");
    }
}

/// Asserts that `fsck` of the store at `path` (opened afresh) finds no
/// problem (garbage, such as a pack without index that loses nothing, is fine).
pub(crate) fn fsck_clean(path: &Path, when: &str) {
    let store = Store::open(path).unwrap_or_else(|e| panic!("{when}: reopen: {e}"));
    let report = store.fsck(&FsckOptions::default()).unwrap();
    assert!(report.is_clean(), "{when}: {:#?}", report.problems);
}

/// Whether `err` is an I/O error on `path` with `errno`.
fn is_injected(err: &Error, path: &Path, errno: i32) -> bool {
    matches!(err, Error::Io { path: p, source, .. }
        if p == path && source.raw_os_error() == Some(errno))
}

fn every_write_site_fails_cleanly(errno: i32, name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = new_store(dir.path());
    let mut expected = BTreeMap::new();
    let base_files = files(1, 1, 6);
    let base_src = dir.path().join("src-base");
    write_tree(&base_src, &base_files);
    let (base, _) = commit(&store, &base_src, None, "base").unwrap();
    expected.insert("base".to_owned(), (base, base_files.clone()));
    let mut store = store;
    let mut sites = 0;
    for n in 1u64.. {
        assert!(n < 200, "the commit never ran out of write sites");
        // New content each time (the base's files plus new ones), so that
        // every commit writes a pack, an index, a stat cache and a ref.
        let mut tree = base_files.clone();
        tree.extend(
            files(100 + n, 1, 5)
                .into_iter()
                .map(|(f, c)| (format!("n{n}-{f}"), c)),
        );
        let src = dir.path().join(format!("src-{n}"));
        write_tree(&src, &tree);
        let tag = format!("t:{n}");
        fault::arm(&path, n, errno);
        let result = commit(&store, &src, Some(&base), &tag);
        let (reached, hit) = fault::disarm(&path);
        let when = format!("{name} at site {n} of {reached} ({hit:?})");
        let Some((_, hit_path)) = hit else {
            // Fewer than n sites: every one has been failed once.
            let (id, _) = result.unwrap_or_else(|e| panic!("{when}: {e}"));
            sites = n - 1;
            expected.insert(tag, (id, tree));
            break;
        };
        match &result {
            Err(err) => assert!(
                is_injected(err, &hit_path, errno),
                "{when}: not the injected error: {err:?}"
            ),
            // Only the stat cache may fail without failing the commit: it is
            // a hint, and the scan reports it as a warning.
            Ok((_, cache_lost)) => assert!(*cache_lost, "{when}: the fault was swallowed"),
        }
        // Another handle sees a sound store with every earlier image.
        fsck_clean(&path, &when);
        check_tags(&Store::open(&path).unwrap(), &expected, &when);
        // The same handle retries the same commit, without faults.
        let (id, _) = commit(&store, &src, Some(&base), &tag)
            .unwrap_or_else(|e| panic!("{when}: retry on the same handle: {e}"));
        expected.insert(tag.clone(), (id, tree.clone()));
        check_tags(&store, &expected, &when);
        // And after reopening.
        drop(store);
        fsck_clean(&path, &when);
        store = Store::open(&path).unwrap();
        check_tags(&store, &expected, &when);
    }
    assert!(sites >= 10, "only {sites} write sites in a commit");
    eprintln!("{name}: failed each of {sites} write sites of a commit");
}

/// The errno values, from the kernel's ABI.
pub(crate) const ENOSPC: i32 = 28;
pub(crate) const EIO: i32 = 5;

/// Leaves in the store at `path` the temporary file of a writer (another
/// process, now dead) killed mid-way. `Store::open` removes such files when it
/// is alone with the store: call this after opening, so that gc or repair
/// meets it.
pub(crate) fn leave_dead_writers_file(path: &Path) {
    std::fs::write(path.join("tmp").join("pack-999999999-0-0"), b"half a pack").unwrap();
}

/// Asserts that `err` is the injected fault: its message names `path` and
/// carries the errno (whatever the error's kind: I/O, xattr, checkout).
pub(crate) fn assert_names_fault(err: &Error, path: &Path, errno: i32, when: &str) {
    let text = err.to_string();
    assert!(
        text.contains(&format!("'{}'", path.display()))
            && text.contains(&format!("(os error {errno})")),
        "{when}: not the injected error on '{}': {text}",
        path.display()
    );
}

#[test]
fn every_write_site_of_a_commit_fails_cleanly_with_enospc() {
    every_write_site_fails_cleanly(ENOSPC, "ENOSPC");
}

#[test]
fn every_write_site_of_a_commit_fails_cleanly_with_eio() {
    every_write_site_fails_cleanly(EIO, "EIO");
}
