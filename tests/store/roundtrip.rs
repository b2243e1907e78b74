//! Content put into the store comes back byte for byte, by reading and seeking.

use std::io::{Read, Seek, SeekFrom};

use quickcheck::{QuickCheck, TestResult};

use layerstore::Store;

use super::{new_store, random_bytes, text_bytes};

/// The store the properties share (quickcheck takes plain `fn`s, which
/// capture nothing).
fn prop_store() -> &'static Store {
    static STORE: std::sync::OnceLock<(tempfile::TempDir, Store)> = std::sync::OnceLock::new();
    &STORE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let store = new_store(dir.path());
            (dir, store)
        })
        .1
}

fn mixed(len: usize, seed: u64) -> Vec<u8> {
    let mut out = text_bytes(len / 2, seed);
    out.extend(random_bytes(len - out.len(), seed ^ 1));
    out
}

#[test]
fn random_content_reads_back() {
    fn prop(len: u32, seed: u64) -> bool {
        let store: &Store = prop_store();
        let data = mixed(len as usize % (3 << 20), seed);
        let list = store.put_bytes(&data).unwrap();
        assert_eq!(list.content_len(), data.len() as u64);
        store.read_all(&list).unwrap() == data
    }
    QuickCheck::new()
        .tests(40)
        .quickcheck(prop as fn(u32, u64) -> bool);
    // And again after the content is durable and the store reopened.
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let data = mixed(1 << 20, 5);
    let list = store.put_bytes(&data).unwrap();
    store.flush().unwrap();
    drop(store);
    let store = layerstore::Store::open(dir.path().join("store")).unwrap();
    assert_eq!(store.read_all(&list).unwrap(), data);
}

#[test]
fn seeking_reads_what_reading_from_the_start_reads() {
    fn fixture() -> &'static (Vec<u8>, layerstore::ChunkList) {
        static FIXTURE: std::sync::OnceLock<(Vec<u8>, layerstore::ChunkList)> =
            std::sync::OnceLock::new();
        FIXTURE.get_or_init(|| {
            let store: &Store = prop_store();
            let data = mixed(2 << 20, 11);
            let list = store.put_bytes(&data).unwrap();
            store.flush().unwrap();
            (data, list)
        })
    }
    fn prop(offset: u32, len: u16) -> bool {
        let store: &Store = prop_store();
        let (data, list) = fixture();
        let offset = u64::from(offset) % (data.len() as u64 + 10);
        let mut reader = store.reader(list);
        assert_eq!(reader.seek(SeekFrom::Start(offset)).unwrap(), offset);
        let mut got = vec![0u8; usize::from(len)];
        let mut filled = 0;
        loop {
            let n = reader.read(&mut got[filled..]).unwrap();
            if n == 0 {
                break;
            }
            filled += n;
        }
        let start = (offset as usize).min(data.len());
        let end = (start + usize::from(len)).min(data.len());
        got[..filled] == data[start..end] && filled == end - start
    }
    QuickCheck::new()
        .tests(200)
        .quickcheck(prop as fn(u32, u16) -> bool);
    let (data, list) = fixture();
    let store: &Store = prop_store();
    let mut reader = store.reader(list);
    assert!(reader.seek(SeekFrom::Current(-1)).is_err());
    assert_eq!(
        reader.seek(SeekFrom::End(-3)).unwrap(),
        data.len() as u64 - 3
    );
}

#[test]
fn an_insertion_changes_only_nearby_chunks() {
    #[allow(
        clippy::needless_pass_by_value,
        reason = "quickcheck passes owned values"
    )]
    fn prop(seed: u64, at: u32, insert: Vec<u8>) -> TestResult {
        let store: &Store = prop_store();
        if insert.is_empty() {
            return TestResult::discard();
        }
        let data = random_bytes(4 << 20, seed);
        // Near the front: within the first megabyte.
        let at = at as usize % (1 << 20);
        let mut edited = data[..at].to_vec();
        edited.extend_from_slice(&insert);
        edited.extend_from_slice(&data[at..]);
        let before = store.put_bytes(&data).unwrap();
        let after = store.put_bytes(&edited).unwrap();
        let old: std::collections::HashSet<_> = before.chunks().iter().map(|c| c.id).collect();
        let new_chunks: Vec<_> = after
            .chunks()
            .iter()
            .filter(|c| !old.contains(&c.id))
            .collect();
        // The chunks that changed cover the insertion and little else: a few
        // chunks (the cut after an insertion may skip an old boundary that now
        // falls inside the minimum size, so realigning can take a few cuts),
        // all ending within four maximum chunk sizes of the insertion point's
        // megabyte, while the input is 4 MiB long.
        let changed_bytes: u64 = new_chunks.iter().map(|c| u64::from(c.len)).sum();
        let last_changed_end = {
            let mut offset = 0u64;
            let mut end = 0u64;
            for c in after.chunks() {
                offset += u64::from(c.len);
                if !old.contains(&c.id) {
                    end = offset;
                }
            }
            end
        };
        TestResult::from_bool(
            new_chunks.len() <= 5
                && changed_bytes <= 5 * 256 * 1024 + insert.len() as u64
                && last_changed_end <= (1 << 20) + 4 * 256 * 1024 + insert.len() as u64,
        )
    }
    QuickCheck::new()
        .tests(20)
        .quickcheck(prop as fn(u64, u32, Vec<u8>) -> TestResult);
}

#[test]
fn duplicate_content_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let data = random_bytes(3 << 20, 3);
    let first = store.put_bytes(&data).unwrap();
    store.flush().unwrap();
    let stored = store.stats().unwrap().stored_bytes;
    let second = store.put_bytes(&data).unwrap();
    store.flush().unwrap();
    assert_eq!(first, second);
    let stats = store.stats().unwrap();
    assert_eq!(
        stats.stored_bytes, stored,
        "duplicate content grew the store"
    );
    assert_eq!(stats.chunks, first.chunks().len() as u64);
    assert_eq!(stats.unique_bytes, data.len() as u64);
}

#[test]
fn small_chunks_share_frames_and_compress_together() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    // Many small "files" that, like source files, share boilerplate (a license
    // header): grouped, they compress far better than each alone.
    let header = text_bytes(1200, 999);
    let files: Vec<Vec<u8>> = (0..400)
        .map(|i| [header.clone(), text_bytes(2000 + i * 7, i as u64)].concat())
        .collect();
    let lists: Vec<_> = files.iter().map(|f| store.put_bytes(f).unwrap()).collect();
    store.flush().unwrap();
    let grouped = store.stats().unwrap().stored_bytes;
    let alone: usize = files
        .iter()
        .map(|f| zstd::bulk::compress(f, 3).unwrap().len())
        .sum();
    assert!(
        grouped * 100 < alone as u64 * 85,
        "grouped {grouped} bytes vs {alone} compressed alone"
    );
    for (file, list) in files.iter().zip(&lists) {
        assert_eq!(&store.read_all(list).unwrap(), file);
    }
}

#[test]
fn put_file_and_put_reader_agree_with_put_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let data = mixed(20 << 20, 8);
    let path = dir.path().join("input");
    std::fs::write(&path, &data).unwrap();
    let from_file = store.put_file(&path).unwrap();
    let from_bytes = store.put_bytes(&data).unwrap();
    let from_reader = store
        .put_reader(std::io::Cursor::new(&data), &path)
        .unwrap();
    assert_eq!(from_file, from_bytes);
    assert_eq!(layerstore::ChunkList::of(&data), from_bytes);
    assert_eq!(from_reader, from_bytes);
    assert!(store.put_bytes(&[]).unwrap().is_empty());
}

/// A reader that hands out at most a few bytes at a time and is sometimes
/// interrupted, as a pipe or a socket may be.
struct Stutter<'a> {
    data: &'a [u8],
    calls: usize,
}

impl std::io::Read for Stutter<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        self.calls += 1;
        if self.calls.is_multiple_of(7) {
            return Err(std::io::ErrorKind::Interrupted.into());
        }
        let n = out
            .len()
            .min(self.data.len())
            .min(1 + self.calls * 7919 % 300_000);
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

#[test]
fn put_reader_takes_short_and_interrupted_reads_and_any_length() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let data = mixed(19 << 20, 5);
    let path = dir.path().join("input");
    // Around the buffer each thread keeps (256 KiB) and a read block (8 MiB
    // and a chunk), where the buffer grows and the content is cut.
    for len in [
        0,
        1,
        4095,
        256 << 10,
        (256 << 10) + 1,
        3 << 20,
        (8 << 20) + (256 << 10) + 1,
        19 << 20,
    ] {
        let part = &data[..len];
        let stutter = Stutter {
            data: part,
            calls: 0,
        };
        let list = store.put_reader(stutter, &path).unwrap();
        assert_eq!(list, layerstore::ChunkList::of(part), "{len} bytes");
        assert_eq!(
            store.put_reader(std::io::Cursor::new(part), &path).unwrap(),
            list,
            "{len} bytes"
        );
    }
    store.flush().unwrap();
    let list = store
        .put_reader(
            Stutter {
                data: &data,
                calls: 0,
            },
            &path,
        )
        .unwrap();
    assert_eq!(store.read_all(&list).unwrap(), data);
}

#[test]
fn put_bytes_gives_one_chunk_list_whatever_the_thread_count() {
    let data = mixed(13 << 20, 21);
    let expected = layerstore::ChunkList::of(&data);
    for threads in [1, 2, 3] {
        let dir = tempfile::tempdir().unwrap();
        let store = new_store(dir.path());
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let list = pool.install(|| store.put_bytes(&data)).unwrap();
        assert_eq!(list, expected, "{threads} threads");
        store.flush().unwrap();
        assert_eq!(store.read_all(&list).unwrap(), data);
    }
}
