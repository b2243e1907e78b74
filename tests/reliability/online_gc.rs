//! Online garbage collection: gc while other processes (children re-executing
//! this binary) hold the store open and write, while a reader reads across
//! repacks; leases of dead processes; `dry_run`.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Stdio};
use std::time::Duration;

use layerstore::{FsckOptions, GcOptions, ImageId, Store};

use super::{
    assert_image, child, child_arg, files, make_image, new_store, packs_with, put_image, read_image,
};

/// An image's files, by name.
type Files = Vec<(String, Vec<u8>)>;

/// The files a writer child puts: `files(41, …)` shares every chunk with the
/// garbage the parent made from `files(40, …)` (they are deduplicated
/// against chunks gc finds dead), plus its own.
fn writer_files() -> (Files, Files) {
    let mut first = files(40, 2, 8);
    first.extend(
        files(41, 1, 4)
            .into_iter()
            .map(|(n, b)| (format!("own-{n}"), b)),
    );
    (first, files(42, 1, 3))
}

/// Child: opens the store; with `wait-odd`, waits until a gc is deleting
/// (`leases/gc.gen` of odd length); puts the first image and flushes, puts the
/// second without flushing, says `READY`, then waits for a line on stdin,
/// tags both (`w1`, `w2`), reads them back and says `TAGGED`. With `sleep`,
/// never tags: it sleeps until killed.
#[test]
#[ignore = "child process of the online gc tests"]
fn child_writer() {
    let Some(arg) = child_arg() else { return };
    let mut parts = arg.split('|');
    let (dir, mode) = (parts.next().unwrap(), parts.next().unwrap());
    // libtest printed "test … " without a newline.
    println!();
    let store = Store::open(dir).unwrap();
    if mode == "wait-odd" {
        let generation = Path::new(dir).join("leases/gc.gen");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::fs::metadata(&generation)
            .map_or(0, |m| m.len())
            .is_multiple_of(2)
        {
            assert!(
                std::time::Instant::now() < deadline,
                "no gc deleted anything for a minute"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let (first, second) = writer_files();
    let w1 = put_image(&store, &first);
    store.flush().unwrap();
    let w2 = put_image(&store, &second);
    println!("READY {w1} {w2}");
    std::io::stdout().flush().unwrap();
    if mode == "sleep" {
        loop {
            std::thread::sleep(Duration::from_secs(60));
        }
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    store.set_tag(&"w1".parse().unwrap(), &w1).unwrap();
    store.set_tag(&"w2".parse().unwrap(), &w2).unwrap();
    assert_image(&store, &w1, &first);
    assert_image(&store, &w2, &second);
    println!("TAGGED");
}

/// Starts a writer child in `mode` and returns it with its stdout.
fn start_writer(path: &Path, mode: &str) -> (Child, BufReader<ChildStdout>) {
    let mut child = child(
        "online_gc::child_writer",
        &format!("{}|{mode}", path.display()),
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    (child, out)
}

/// Reads the child's lines until one starts with `word`; returns the rest.
fn wait_for(out: &mut BufReader<ChildStdout>, word: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the child ended before saying {word}"
        );
        if let Some(rest) = line.trim_end().strip_prefix(word) {
            return rest.trim().to_owned();
        }
    }
}

/// Lets the child tag and waits for it to finish.
fn finish_writer(mut child: Child, mut out: BufReader<ChildStdout>) {
    writeln!(child.stdin.as_mut().unwrap(), "go").unwrap();
    wait_for(&mut out, "TAGGED");
    assert!(child.wait().unwrap().success());
}

/// A store with a tagged image and the garbage the writer deduplicates
/// against (flushed, untagged), and a handle that did not make them (whose
/// lease would keep them).
fn store_with_garbage(dir: &Path) -> (Store, std::path::PathBuf, ImageId) {
    let (store, path) = new_store(dir);
    let kept = make_image(&store, "kept", &files(43, 1, 5));
    make_image(&store, "garbage", &files(40, 2, 8));
    store.flush().unwrap();
    store.remove_tag(&"garbage".parse().unwrap()).unwrap();
    drop(store);
    (Store::open(&path).unwrap(), path, kept)
}

/// After the writer tagged: a fresh handle reads both of its images and the
/// kept one, and fsck is clean.
fn check_after(path: &Path, kept: &ImageId) {
    let store = Store::open(path).unwrap();
    let (first, second) = writer_files();
    let w1 = store.tag(&"w1".parse().unwrap()).unwrap().unwrap();
    let w2 = store.tag(&"w2".parse().unwrap()).unwrap().unwrap();
    assert_image(&store, &w1, &first);
    assert_image(&store, &w2, &second);
    assert_image(&store, kept, &files(43, 1, 5));
    let fsck = store.fsck(&FsckOptions::default()).unwrap();
    assert!(fsck.is_clean(), "{:#?}", fsck.problems);
}

#[test]
fn gc_keeps_what_a_live_process_put_before_it_tags_it() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path, kept) = store_with_garbage(dir.path());
    let (child, mut out) = start_writer(&path, "now");
    wait_for(&mut out, "READY");
    // The writer's first image is flushed and untagged, its second not even
    // flushed; all of the old garbage is in the first.
    let report = store
        .gc(&GcOptions::default().repack_dead_fraction(0.0))
        .unwrap();
    assert_eq!(report.leases_live, 1, "{report:?}");
    assert!(report.leased_chunks_kept > 0, "{report:?}");
    // Of the garbage, only its image's own objects (image, layer, root
    // directory) go: the writer's lease holds every chunk of its files.
    assert!(report.chunks_freed <= 3, "{report:?}");
    finish_writer(child, out);
    check_after(&path, &kept);
    // Tagged now, and the lease gone with its process: nothing is garbage.
    let report = store.gc(&GcOptions::default()).unwrap();
    assert_eq!(
        (report.chunks_freed, report.leases_live),
        (0, 0),
        "{report:?}"
    );
}

/// A writer that deduplicates against chunks while a gc is deleting the
/// packs they are in: before the gc reads the leases again (`gc-intent`),
/// or after (`gc-fenced`). Either way it loses nothing.
#[test]
fn a_writer_that_puts_while_gc_deletes_loses_nothing() {
    for point in ["gc-intent", "gc-fenced"] {
        let dir = tempfile::tempdir().unwrap();
        let (store, path, kept) = store_with_garbage(dir.path());
        let (child, mut out) = start_writer(&path, "wait-odd");
        layerstore::fault::arm_pause(point, Duration::from_millis(1500));
        let gc = {
            let path = path.clone();
            std::thread::spawn(move || {
                let store = Store::open(&path).unwrap();
                store
                    .gc(&GcOptions::default().repack_dead_fraction(0.0))
                    .unwrap()
            })
        };
        wait_for(&mut out, "READY");
        let report = gc.join().unwrap();
        layerstore::fault::arm_pause(point, Duration::ZERO);
        eprintln!("{point}: {report:?}");
        finish_writer(child, out);
        check_after(&path, &kept);
        drop(store);
    }
}

#[test]
fn a_dead_processs_lease_does_not_protect_forever() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = new_store(dir.path());
    let (mut child, mut out) = start_writer(&path, "sleep");
    let ids = wait_for(&mut out, "READY");
    let w1: ImageId = ids.split(' ').next().unwrap().parse().unwrap();
    // Alive, its lease keeps what it put (each gc walks: one a lease kept
    // garbage in leaves no summary to skip by).
    for _ in 0..2 {
        let report = store.gc(&GcOptions::default()).unwrap();
        assert_eq!(report.leases_live, 1, "{report:?}");
        assert_eq!(report.chunks_freed, 0, "{report:?}");
        assert!(report.leased_chunks_kept > 0, "{report:?}");
        assert!(!report.walk_skipped, "{report:?}");
    }
    assert!(read_image(&store, &w1).is_ok());
    child.kill().unwrap();
    child.wait().unwrap();
    // Dead, its lease is removed and what it put collected.
    let report = store.gc(&GcOptions::default()).unwrap();
    assert_eq!(
        (report.leases_live, report.leases_removed),
        (0, 1),
        "{report:?}"
    );
    assert_eq!(report.leased_chunks_kept, 0, "{report:?}");
    assert!(report.chunks_freed > 0, "{report:?}");
    assert!(packs_with(&path, ".pack").is_empty(), "{report:?}");
    let leases: Vec<_> = std::fs::read_dir(path.join("leases"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".lease"))
        .collect();
    assert!(leases.is_empty(), "{leases:?}");
    assert!(store.fsck(&FsckOptions::default()).unwrap().is_clean());
}

/// Images `a<k>` each in its own pack beside garbage-to-be `b<k>` (both
/// tagged): untagging `b<k>` and collecting with a zero threshold rewrites
/// the pack of `a<k>`.
fn interleaved(store: &Store, n: u64) -> Vec<(ImageId, Files)> {
    let mut kept = Vec::new();
    for k in 0..n {
        let a = files(60 + k, 2, 6);
        let a_id = put_image(store, &a);
        let b_id = put_image(store, &files(80 + k, 2, 6));
        store
            .set_tag(&format!("a{k}").parse().unwrap(), &a_id)
            .unwrap();
        store
            .set_tag(&format!("b{k}").parse().unwrap(), &b_id)
            .unwrap();
        store.flush().unwrap();
        kept.push((a_id, a));
    }
    kept
}

#[test]
fn a_reader_reads_an_image_across_repacks() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = new_store(dir.path());
    store.set_auto_maintenance(false);
    let images = interleaved(&store, 6);
    let old_packs = packs_with(&path, ".pack");
    // A reader that has read every image (its packs open, its frames cached)
    // and one that has opened the store and read nothing yet.
    let warm = Store::open(&path).unwrap();
    for (id, expected) in &images {
        assert_image(&warm, id, expected);
    }
    let cold = Store::open(&path).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let reads = std::thread::scope(|scope| {
        // A third reads continuously, each round through a fresh handle too.
        let reader = scope.spawn(|| {
            let mut rounds = 0u64;
            let long = Store::open(&path).unwrap();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) || rounds < 2 {
                let fresh = Store::open(&path).unwrap();
                for (id, expected) in &images {
                    assert_image(&long, id, expected);
                    assert_image(&fresh, id, expected);
                }
                rounds += 1;
            }
            rounds
        });
        for k in 0..images.len() {
            store.remove_tag(&format!("b{k}").parse().unwrap()).unwrap();
            let report = store
                .gc(&GcOptions::default().repack_dead_fraction(0.0))
                .unwrap();
            assert!(report.packs_repacked >= 1, "{report:?}");
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        reader.join().unwrap()
    });
    // Every pack the readers first saw is gone.
    assert!(old_packs.iter().all(|p| !p.exists()));
    for (id, expected) in &images {
        assert_image(&warm, id, expected);
        assert_image(&cold, id, expected);
    }
    eprintln!("{reads} rounds of reads across {} repacks", images.len());
    assert!(store.fsck(&FsckOptions::default()).unwrap().is_clean());
}

#[test]
fn a_dry_run_frees_nothing_and_says_what_gc_then_frees() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = new_store(dir.path());
    let kept = make_image(&store, "kept", &files(90, 1, 4));
    store.flush().unwrap();
    for k in 0..3 {
        make_image(&store, &format!("g{k}"), &files(91 + k, 1, 4));
        store.flush().unwrap();
    }
    for k in 0..3 {
        store.remove_tag(&format!("g{k}").parse().unwrap()).unwrap();
    }
    let listing = |path: &Path| {
        let mut names: Vec<_> = std::fs::read_dir(path.join("packs"))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.file_name(), e.metadata().unwrap().len())
            })
            .collect();
        names.sort();
        names
    };
    let before = listing(&path);
    // Packs wholly dead are deleted: the estimate is exact then.
    let options = GcOptions::default().repack_dead_fraction(1.0);
    let dry = store.gc(&options.clone().dry_run(true)).unwrap();
    assert_eq!(listing(&path), before, "a dry run changed packs/");
    assert!(dry.bytes_freed > 0 && dry.chunks_freed > 0, "{dry:?}");
    let real = store.gc(&options).unwrap();
    assert_eq!(
        (dry.bytes_freed, dry.chunks_freed, dry.packs_deleted),
        (real.bytes_freed, real.chunks_freed, real.packs_deleted),
        "dry run {dry:?}\nreal {real:?}"
    );
    assert_image(&store, &kept, &files(90, 1, 4));
}
