//! A writer killed with SIGKILL at random moments loses nothing it had reported
//! written (flushed), and the store stays openable.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use layerstore::Store;

use super::{child, child_arg, decode_list, encode_list, new_store, random_bytes, text_bytes};

fn piece(seed: u64) -> Vec<u8> {
    let len = (seed as usize * 7919) % 700_000;
    if seed % 3 == 0 {
        text_bytes(len, seed)
    } else {
        random_bytes(len, seed)
    }
}

/// Child side: puts pieces forever, reporting each after a flush.
#[test]
#[ignore = "child process of killed_writers_lose_nothing_reported"]
fn child_crash_writer() {
    let Some(arg) = child_arg() else { return };
    let (dir, start) = arg.split_once('|').unwrap();
    let start: u64 = start.parse().unwrap();
    let store = Store::open(dir).unwrap();
    // libtest printed "test … " without a newline; start reports on a line of their own.
    println!();
    let mut seed = start;
    loop {
        let mut batch = Vec::new();
        for _ in 0..3 {
            batch.push((seed, store.put_bytes(&piece(seed)).unwrap()));
            seed += 1;
        }
        store.flush().unwrap();
        for (seed, list) in batch {
            println!("DONE {seed} {}", encode_list(&list));
        }
    }
}

#[test]
fn killed_writers_lose_nothing_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    drop(new_store(dir.path()));
    let mut reported = Vec::new();
    let mut next_seed = 1u64;
    for round in 0..50u64 {
        let mut proc = child(
            "crash::child_crash_writer",
            &format!("{}|{next_seed}", store_dir.display()),
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
        next_seed += 1000;
        // Kill after 20 to 220 ms, a different moment each round.
        let wait = 20 + (round * 37) % 200;
        std::thread::sleep(Duration::from_millis(wait));
        proc.kill().unwrap();
        proc.wait().unwrap();
        let out = BufReader::new(proc.stdout.take().unwrap());
        for line in out.lines() {
            let line = line.unwrap();
            // A line cut by the kill is not complete: only whole lines count.
            if let Some(rest) = line.strip_prefix("DONE ") {
                let (seed, list) = rest.split_once(' ').unwrap_or((rest, ""));
                let list = decode_list(list);
                let seed: u64 = seed.parse().unwrap();
                if list.content_len() == piece(seed).len() as u64 {
                    reported.push((seed, list));
                }
            }
        }
        let store = Store::open(&store_dir).unwrap();
        for (seed, list) in &reported {
            assert_eq!(
                store.read_all(list).unwrap(),
                piece(*seed),
                "round {round}: piece {seed} lost"
            );
        }
        // Opening alone cleaned what the killed writer left in tmp/.
        assert_eq!(std::fs::read_dir(store_dir.join("tmp")).unwrap().count(), 0);
    }
    assert!(
        reported.len() > 50,
        "the children reported only {} pieces",
        reported.len()
    );
}
