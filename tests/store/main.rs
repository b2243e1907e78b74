//! Integration tests of the chunk store, one binary.

mod bad_input;
mod combined;
#[path = "../common/mod.rs"]
mod common;
mod concurrency;
mod corruption;
#[cfg(feature = "fault-injection")]
mod crash;
mod roundtrip;
pub(crate) use common::{child, child_arg, random_bytes, require_root};

use std::path::Path;

use layerstore::{ChunkId, ChunkList, ChunkRef, Store, StoreOptions};

/// Deterministic text-like, compressible bytes.
pub(crate) fn text_bytes(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: [&str; 12] = [
        "layer", "image", "chunk", "store", "pack", "index", "frame", "mount", "overlay",
        "whiteout", "opaque", "\n",
    ];
    let noise = random_bytes(len / 4 + 16, seed);
    let mut out = Vec::with_capacity(len + 16);
    for b in noise {
        out.extend_from_slice(WORDS[usize::from(b) % WORDS.len()].as_bytes());
        out.push(b' ');
        if out.len() >= len {
            break;
        }
    }
    out.truncate(len);
    out
}

pub(crate) fn new_store(dir: &Path) -> Store {
    Store::create(dir.join("store"), &StoreOptions::default()).expect("create store")
}

/// `id:len,id:len,…` — how child processes report chunk lists.
pub(crate) fn encode_list(list: &ChunkList) -> String {
    list.chunks()
        .iter()
        .map(|c| format!("{}:{}", c.id.to_hex(), c.len))
        .collect::<Vec<_>>()
        .join(",")
}

pub(crate) fn decode_list(text: &str) -> ChunkList {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(|pair| {
            let (id, len) = pair.split_once(':').expect("id:len");
            ChunkRef {
                id: ChunkId::from_hex(id).expect("hex id"),
                len: len.parse().expect("length"),
            }
        })
        .collect()
}
