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
