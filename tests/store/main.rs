//! Integration tests of the chunk store, one binary.

mod bad_input;
mod concurrency;
mod corruption;
mod crash;
mod roundtrip;

use std::path::Path;

use layerstore::{ChunkId, ChunkList, ChunkRef, Store, StoreOptions};

/// Deterministic incompressible bytes.
pub(crate) fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new_keyed(&[seed as u8; 32])
        .update(&seed.to_le_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}

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

/// Runs this test binary again as a child running only the test `name`, with
/// `LAYERSTORE_CHILD` set to `arg`.
pub(crate) fn child(name: &str, arg: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new(std::env::current_exe().expect("test binary"));
    cmd.args([
        name,
        "--exact",
        "--nocapture",
        "--test-threads=1",
        "--include-ignored",
    ])
    .env("LAYERSTORE_CHILD", arg);
    cmd
}

/// The argument a child was started with, or `None` in the parent test run.
pub(crate) fn child_arg() -> Option<String> {
    std::env::var("LAYERSTORE_CHILD").ok()
}

/// Whether tests that need root may skip; `.ci/run` sets
/// `LAYERSTORE_REQUIRE_PRIVILEGED=1` so that they cannot.
pub(crate) fn skip_unprivileged(why: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return false;
    }
    assert!(
        std::env::var_os("LAYERSTORE_REQUIRE_PRIVILEGED").is_none(),
        "this test needs root ({why}) and LAYERSTORE_REQUIRE_PRIVILEGED is set"
    );
    eprintln!("SKIPPED: needs root ({why})");
    true
}
