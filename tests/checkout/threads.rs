//! The tree written does not depend on the number of threads.

use layerstore::{CheckoutOptions, Entry, EntryKind, Metadata, Snapshot, Timestamp, TreePath};

use super::{assert_same, expected, make_removable, new_store, p, random_bytes, walk};

fn meta(mode: u32, i: u32) -> Metadata {
    let mut m = Metadata::new(mode);
    m.uid = rustix::process::geteuid().as_raw();
    m.gid = rustix::process::getegid().as_raw();
    m.mtime = Timestamp::new(1_600_000_000 + i64::from(i), i * 7919 % 1_000_000_000);
    m
}

#[test]
fn one_thread_and_four_threads_write_the_same_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let store = new_store(tmp.path());
    let mut entries = vec![Entry::dir(TreePath::ROOT, meta(0o755, 0))];
    let mut n = 1;
    for d in 0..8u32 {
        let dir = format!("d{d}");
        entries.push(Entry::dir(p(dir.clone()), meta(0o755 - (d % 2) * 0o200, n)));
        n += 1;
        entries.push(Entry::dir(p(format!("{dir}/sub")), meta(0o700, n)));
        n += 1;
        for f in 0..25u32 {
            // Mostly small files, a few of several chunks.
            let len = if f % 10 == 9 {
                300_000 + f as usize * 1000
            } else {
                f as usize * 97
            };
            let content = random_bytes(len, u64::from(d * 100 + f));
            let path = format!("{dir}/sub/f{f:02}");
            entries.push(Entry::file(
                p(path.clone()),
                store.put_bytes(&content).unwrap(),
                meta(0o644 | ((f % 3) * 0o100), n),
            ));
            n += 1;
            if f % 5 == 0 {
                entries.push(Entry::symlink(
                    p(format!("{dir}/sub/l{f:02}")),
                    format!("f{f:02}"),
                    meta(0o777, n),
                ));
                entries.push(Entry::hardlink(
                    p(format!("{dir}/sub/z-hard{f:02}")),
                    p(path),
                    meta(0o644, n),
                ));
                n += 1;
            }
        }
        entries.push(Entry::new(
            p(format!("{dir}/sub/pipe")),
            EntryKind::Fifo,
            meta(0o600, n),
        ));
        n += 1;
    }
    let snapshot = Snapshot::from_entries(entries).unwrap();

    let mut trees = Vec::new();
    let mut outcomes = Vec::new();
    for threads in [1, 4] {
        let dest = tmp.path().join(format!("out-{threads}"));
        let options = CheckoutOptions::default().threads(threads);
        outcomes.push(store.checkout(&snapshot, &dest, &options).unwrap());
        trees.push(walk(&dest));
        make_removable(&dest);
    }
    assert_eq!(outcomes[0], outcomes[1]);
    assert_eq!(outcomes[0].files, 8 * 25);
    assert_same(&trees[0], &trees[1]);
    assert_same(&trees[0], &expected(&store, &snapshot, &[]));
}
