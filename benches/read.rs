//! Verified reads on one thread: a `ChunkReader` streaming a large stored file,
//! and random 4 KiB reads inside small chunks that share grouped frames, with
//! the frame cache warm.
//!
//! `cargo bench --bench read`

mod common;

use std::io::{Read, Seek, SeekFrom};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use layerstore::{ChunkList, Store, StoreOptions};

const SEQ_LEN: usize = 256 << 20;

fn read_to_end(store: &Store, list: &ChunkList, buf: &mut [u8]) -> u64 {
    let mut reader = store.reader(list);
    let mut total = 0u64;
    loop {
        let n = reader.read(buf).expect("read");
        if n == 0 {
            return total;
        }
        total += n as u64;
    }
}

fn sequential(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Store::create(dir.path().join("store"), &StoreOptions::default()).expect("store");
    let mixed = store
        .put_bytes(&common::mixed(SEQ_LEN, 0x5e9))
        .expect("put");
    let mut text_bytes = Vec::with_capacity(SEQ_LEN);
    common::text_fill(&mut common::Noise::new(0x7e47), &mut text_bytes, SEQ_LEN);
    let text = store.put_bytes(&text_bytes).expect("put");
    drop(text_bytes);
    let random = store
        .put_bytes(&common::random(SEQ_LEN, 0x0a4d))
        .expect("put");
    store.flush().expect("flush");

    let mut group = c.benchmark_group("read sequential 256MiB");
    group.throughput(Throughput::Bytes(SEQ_LEN as u64));
    group.sample_size(10);
    let mut buf = vec![0u8; 1 << 20];
    for (name, list) in [("mixed", &mixed), ("text", &text), ("random", &random)] {
        group.bench_function(name, |b| {
            b.iter(|| assert_eq!(read_to_end(&store, list, &mut buf), SEQ_LEN as u64));
        });
    }
    group.finish();
}

fn random_small(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Store::create(dir.path().join("store"), &StoreOptions::default()).expect("store");
    let mut noise = common::Noise::new(0x5a11);
    // 1000 small files of 8 to 16 KiB of text: below the chunker's minimum, so
    // one chunk each, grouped into shared frames (about 12 MiB in all, well
    // inside the frame cache).
    let lists: Vec<ChunkList> = (0..1000)
        .map(|_| {
            let len = 8192 + (noise.next_u64() % 8192) as usize;
            let mut bytes = Vec::with_capacity(len);
            common::text_fill(&mut noise, &mut bytes, len);
            store.put_bytes(&bytes).expect("put")
        })
        .collect();
    store.flush().expect("flush");
    assert!(lists.iter().all(|l| l.chunks().len() == 1));
    let mut buf = vec![0u8; 4096];
    for list in &lists {
        read_to_end(&store, list, &mut buf); // warms the frame cache
    }

    let mut group = c.benchmark_group("read random 4KiB");
    group.throughput(Throughput::Bytes(4096));
    group.bench_function("small chunk in grouped frame, warm cache", |b| {
        b.iter_batched(
            || {
                let list = &lists[(noise.next_u64() % lists.len() as u64) as usize];
                let at = noise.next_u64() % (list.content_len() - 4096);
                (list, at)
            },
            |(list, at)| {
                let mut reader = store.reader(list);
                reader.seek(SeekFrom::Start(at)).expect("seek");
                reader.read_exact(&mut buf).expect("read");
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group!(benches, sequential, random_small);
criterion_main!(benches);
