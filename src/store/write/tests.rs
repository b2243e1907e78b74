//! Tests of writing: what a flush does after a lost write, and objects too
//! large for a frame.

use super::*;

#[test]
fn a_flush_that_reports_lost_chunks_commits_nothing_put_since() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let store = Store::create(&path, &crate::StoreOptions::default()).unwrap();
    let before = store.put_bytes(b"put before the loss").unwrap();
    let lost = b"a chunk whose write failed after its put returned";
    let id = ChunkId::of(lost);
    let err = Error::io(
        "write",
        "/s/tmp/pack-1",
        std::io::Error::from_raw_os_error(28),
    );
    store.lock_pending().lose([id], &err);
    // An object put after the loss, which might name the lost chunk.
    let object = store.put_object(id.as_bytes()).unwrap();
    let err = store.flush().unwrap_err();
    assert!(err.to_string().contains("/s/tmp/pack-1"), "{err}");
    // Reported once; and nothing of it is committed, then or later.
    store.flush().unwrap();
    drop(store);
    let store = Store::open(&path).unwrap();
    assert!(!store.contains(&object));
    assert!(!store.contains(&before.chunks()[0].id));
    assert!(!store.contains(&id));
    // Put again, all of it is stored.
    store.put_bytes(b"put before the loss").unwrap();
    store.put_bytes(lost).unwrap();
    store.put_object(id.as_bytes()).unwrap();
    store.flush().unwrap();
    let store = Store::open(&path).unwrap();
    assert!(store.contains(&object) && store.contains(&id));
    assert!(store.contains(&before.chunks()[0].id));
}

#[test]
fn an_object_larger_than_a_frame_is_too_large() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path().join("s"), &crate::StoreOptions::default()).unwrap();
    let big = vec![0u8; frame::MAX_FRAME_RAW as usize + 1];
    let err = store.put_object(&big).unwrap_err();
    assert_eq!(err.kind(), crate::ErrorKind::TooLarge, "{err}");
    let err = store.put_object(&[]).unwrap_err();
    assert_eq!(err.kind(), crate::ErrorKind::InvalidInput, "{err}");
}

/// Small chunks put by different threads at once go to different frames:
/// each thread fills a group of its own, so a frame holds what one thread
/// stored one after another, not an interleaving of both (which would make
/// a reader of either thread's files decompress every frame).
#[test]
fn each_thread_fills_frames_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path().join("s"), &crate::StoreOptions::default()).unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    // 2 × 3 MiB of distinct, incompressible 16 KiB pieces: more than a frame
    // each, put in lockstep so that every put of one thread falls between
    // two of the other's.
    let piece = |thread: u8, i: u32| {
        let mut seed = [0u8; 32];
        seed[0] = thread;
        seed[1..5].copy_from_slice(&i.to_le_bytes());
        let mut out = vec![0u8; 16 << 10];
        blake3::Hasher::new_keyed(&seed)
            .finalize_xof()
            .fill(&mut out);
        out
    };
    let turn = std::sync::Mutex::new(0u32);
    let turned = std::sync::Condvar::new();
    let ids: Vec<Vec<ChunkId>> = pool.install(|| {
        (0..2u8)
            .into_par_iter()
            .map(|thread| {
                let mut ids = Vec::new();
                for i in 0..192u32 {
                    let mut at = turn.lock().unwrap();
                    while *at % 2 != u32::from(thread) {
                        at = turned.wait(at).unwrap();
                    }
                    let chunk = store.put_chunk(&piece(thread, i)).unwrap();
                    ids.push(chunk.id);
                    *at += 1;
                    turned.notify_all();
                }
                ids
            })
            .collect()
    });
    store.flush().unwrap();
    let frame_of = |id: &ChunkId| store.locality(id);
    let frames: Vec<std::collections::HashSet<(u64, u64)>> = ids
        .iter()
        .map(|ids| ids.iter().map(frame_of).collect())
        .collect();
    assert!(
        frames.iter().all(|f| f.len() >= 2),
        "each thread stored more than a frame: {frames:?}"
    );
    assert!(
        frames[0].is_disjoint(&frames[1]),
        "a frame holds both threads' chunks"
    );
    for id in ids.iter().flatten() {
        assert_eq!(store.read_chunk(id).unwrap().len(), 16 << 10);
    }
}
