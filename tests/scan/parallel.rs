//! The snapshot does not depend on the number of threads or the walk's order.

use std::os::unix::fs::symlink;

use layerstore::ScanOptions;

use crate::Fixture;

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// About `files` files in a few hundred directories up to five deep, with
/// symlinks, hard links, empty files, a few larger ones and odd names.
fn generate(fx: &Fixture, files: usize, seed: u64) {
    let mut rng = Rng(seed);
    let mut dirs: Vec<Vec<u8>> = vec![Vec::new()];
    let mut made: Vec<Vec<u8>> = Vec::new();
    for i in 0..files {
        if rng.below(10) == 0 && dirs.len() < 400 {
            let parent = dirs[rng.below(dirs.len() as u64) as usize].clone();
            if parent.split(|b| *b == b'/').count() < 5 {
                let mut dir = parent;
                if !dir.is_empty() {
                    dir.push(b'/');
                }
                dir.extend_from_slice(format!("d{i}").as_bytes());
                std::fs::create_dir(fx.at(&dir)).unwrap();
                dirs.push(dir);
            }
        }
        let mut path = dirs[rng.below(dirs.len() as u64) as usize].clone();
        if !path.is_empty() {
            path.push(b'/');
        }
        match rng.below(50) {
            0 => {
                path.extend_from_slice(b"odd\n\xe9\xff");
                path.extend_from_slice(i.to_string().as_bytes());
            }
            _ => path.extend_from_slice(format!("f{i}.txt").as_bytes()),
        }
        match rng.below(40) {
            0 if !made.is_empty() => {
                let target = &made[rng.below(made.len() as u64) as usize];
                std::fs::hard_link(fx.at(target), fx.at(&path)).unwrap();
            }
            1 => symlink(format!("../target-{i}"), fx.at(&path)).unwrap(),
            2 => std::fs::write(fx.at(&path), b"").unwrap(),
            3 => {
                let len = 100_000 + rng.below(300_000) as usize;
                let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                std::fs::write(fx.at(&path), bytes).unwrap();
                made.push(path);
            }
            _ => {
                let len = rng.below(3000) as usize;
                let bytes: Vec<u8> = (0..len).map(|j| b"abcdefgh\n"[(j + i) % 9]).collect();
                std::fs::write(fx.at(&path), bytes).unwrap();
                made.push(path);
            }
        }
    }
}

#[test]
fn one_thread_and_four_give_the_same_snapshot() {
    let fx = Fixture::new();
    generate(&fx, 3000, 0x5eed);
    let serial = ScanOptions::default().use_stat_cache(false).threads(1);
    let parallel = ScanOptions::default().use_stat_cache(false).threads(4);
    let one = fx.scan_with(&serial);
    let four = fx.scan_with(&parallel);
    assert!(
        one.snapshot.entries().len() > 3000,
        "{}",
        one.snapshot.entries().len()
    );
    assert!(one.warnings.is_empty(), "{:?}", one.warnings);
    assert_eq!(one.snapshot, four.snapshot);
    assert_eq!(one.snapshot.id(), four.snapshot.id());
    assert_eq!(
        (one.files_read, one.bytes_read),
        (four.files_read, four.bytes_read)
    );
    // The global pool, with the stat cache filling up, agrees too.
    let global = fx.scan();
    assert_eq!(global.snapshot.id(), one.snapshot.id());
}
