//! Many threads, and many processes, writing overlapping content into one store.

use std::collections::HashSet;

use layerstore::Store;

use super::{child, child_arg, decode_list, encode_list, new_store, random_bytes, text_bytes};

/// The content writer `w` of a concurrency test puts: pieces shared by all
/// writers, pieces shared with the next writer, and pieces of its own.
fn content_of(writer: u64) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for piece in 0..6u64 {
        out.push(random_bytes(300_000 + piece as usize * 1000, 1000 + piece));
        out.push(text_bytes(5000 + piece as usize, 2000 + piece));
    }
    for piece in 0..4u64 {
        out.push(random_bytes(200_000, 3000 + (writer + 1) * 10 + piece));
        out.push(random_bytes(200_000, 3000 + writer * 10 + piece));
        out.push(text_bytes(9000, 4000 + writer * 10 + piece));
    }
    out
}

fn assert_each_chunk_indexed_once(store: &Store, expected: &HashSet<layerstore::ChunkId>) {
    let stats = store.stats().unwrap();
    let indexed: u64 = stats.packs.iter().map(|p| p.chunks).sum();
    assert_eq!(stats.chunks, expected.len() as u64, "distinct chunks");
    assert_eq!(indexed, stats.chunks, "some chunk is indexed twice");
}

#[test]
fn eight_threads_store_each_chunk_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let results: Vec<Vec<(Vec<u8>, layerstore::ChunkList)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8u64)
            .map(|w| {
                let store = &store;
                s.spawn(move || {
                    content_of(w)
                        .into_iter()
                        .map(|c| {
                            let list = store.put_bytes(&c).unwrap();
                            (c, list)
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    store.flush().unwrap();
    let mut expected = HashSet::new();
    for (content, list) in results.iter().flatten() {
        expected.extend(list.chunks().iter().map(|c| c.id));
        assert_eq!(&store.read_all(list).unwrap(), content);
    }
    assert_each_chunk_indexed_once(&store, &expected);
    drop(store);
    let store = Store::open(dir.path().join("store")).unwrap();
    assert_each_chunk_indexed_once(&store, &expected);
    for (content, list) in results.iter().flatten() {
        assert_eq!(&store.read_all(list).unwrap(), content);
    }
}

/// Child side of `three_processes_store_each_chunk_once`.
#[test]
#[ignore = "child process of three_processes_store_each_chunk_once"]
fn child_concurrent_writer() {
    let Some(arg) = child_arg() else { return };
    let (store_dir, writer) = arg.split_once('|').unwrap();
    let writer: u64 = writer.parse().unwrap();
    let store = Store::open(store_dir).unwrap();
    // libtest printed "test … " without a newline; start reports on a line of their own.
    println!();
    for (i, content) in content_of(writer).into_iter().enumerate() {
        let list = store.put_bytes(&content).unwrap();
        if i % 5 == 4 {
            store.flush().unwrap();
        }
        println!("LIST {writer} {i} {}", encode_list(&list));
    }
    store.flush().unwrap();
}

#[test]
fn three_processes_store_each_chunk_once() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    drop(new_store(dir.path()));
    let children: Vec<_> = (0..3u64)
        .map(|w| {
            child(
                "concurrency::child_concurrent_writer",
                &format!("{}|{w}", store_dir.display()),
            )
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let mut reported = Vec::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "child failed: {out:?}");
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            if let Some(rest) = line.strip_prefix("LIST ") {
                let mut parts = rest.splitn(3, ' ');
                let w: u64 = parts.next().unwrap().parse().unwrap();
                let i: usize = parts.next().unwrap().parse().unwrap();
                reported.push((w, i, decode_list(parts.next().unwrap_or(""))));
            }
        }
    }
    assert_eq!(reported.len(), 3 * 24, "every child reported every piece");
    let store = Store::open(&store_dir).unwrap();
    let mut expected = HashSet::new();
    for (w, i, list) in &reported {
        expected.extend(list.chunks().iter().map(|c| c.id));
        assert_eq!(store.read_all(list).unwrap(), content_of(*w)[*i]);
    }
    assert_each_chunk_indexed_once(&store, &expected);
}

/// Opening a store takes its lock exclusively for a moment when nobody else
/// has it open (to clean `tmp/`); another handle opened at that moment
/// waits for it rather than failing as if gc held the store.
#[test]
fn handles_opened_at_once_all_open() {
    let dir = tempfile::tempdir().unwrap();
    drop(new_store(dir.path()));
    let path = dir.path().join("store");
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                for _ in 0..100 {
                    let store = Store::open(&path).unwrap_or_else(|e| panic!("{e}"));
                    drop(store);
                }
            });
        }
    });
}

/// Child side of `a_long_lived_handle_sees_packs_another_process_wrote_after_refresh`:
/// stores `random_bytes(300_000, seed)`, flushes, prints its list.
#[test]
#[ignore = "child process of a_long_lived_handle_sees_packs_another_process_wrote_after_refresh"]
fn child_one_writer() {
    let Some(arg) = child_arg() else { return };
    let (store_dir, seed) = arg.split_once('|').unwrap();
    let store = Store::open(store_dir).unwrap();
    let list = store
        .put_bytes(&random_bytes(300_000, seed.parse().unwrap()))
        .unwrap();
    store.flush().unwrap();
    println!();
    println!("LIST {}", encode_list(&list));
}

#[test]
fn a_long_lived_handle_sees_packs_another_process_wrote_after_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let mine = store
        .put_bytes(b"written before the other process")
        .unwrap();
    store.flush().unwrap();
    let out = child(
        "concurrency::child_one_writer",
        &format!("{}|77", store.path().display()),
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "child failed: {out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let theirs = decode_list(
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("LIST "))
            .expect("the child's list"),
    );
    // Until it refreshes, the handle knows only the indexes it loaded; a
    // read that misses refreshes before it reports a chunk missing.
    let first = theirs.chunks()[0].id;
    assert!(!store.contains(&first));
    assert_eq!(store.read_all(&theirs).unwrap(), random_bytes(300_000, 77));
    assert!(store.contains(&first));
    store.refresh().unwrap();
    assert_eq!(store.read_all(&theirs).unwrap(), random_bytes(300_000, 77));
    assert_eq!(
        store.read_all(&mine).unwrap(),
        b"written before the other process"
    );
    // Refreshing again (nothing new) changes nothing.
    store.refresh().unwrap();
    assert_eq!(store.read_all(&theirs).unwrap(), random_bytes(300_000, 77));
}
