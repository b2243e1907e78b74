//! Ports of the tree behaviour of containerd's snapshotter conformance cases
//! (`snapshots/testsuite`): each layer is committed as the diff from the
//! previous state, and flattening the layers must give every state back.

use layerstore::{ChangeKind, EntryKind, Layer, TreePath};

use crate::model::{Fs, chunks_of, commit_steps, content, p, paths};

fn upserted(layer: &Layer) -> Vec<String> {
    layer.upserts().iter().map(|e| e.path.to_string()).collect()
}
fn whited_out(layer: &Layer) -> Vec<String> {
    layer.whiteouts().iter().map(ToString::to_string).collect()
}

#[test]
fn layer_file_update() {
    let (layers, states) = commit_steps(&[
        &|fs: &mut Fs| {
            fs.mkdir("etc", 0o700)
                .write("etc/hosts", b"mydomain 10.0.0.1", 0o644)
                .write("etc/profile", b"PATH=/usr/bin", 0o644);
        },
        &|fs: &mut Fs| {
            fs.write("etc/hosts", b"mydomain 10.0.0.2", 0o644)
                .write("etc/profile", b"PATH=/usr/bin", 0o666)
                .mkdir("root", 0o700)
                .write("root/.bashrc", b"PATH=/usr/sbin:/usr/bin", 0o644);
        },
    ]);
    assert_eq!(
        upserted(&layers[1]),
        ["etc/hosts", "etc/profile", "root", "root/.bashrc"]
    );
    assert!(layers[1].whiteouts().is_empty());
    assert_eq!(
        content(&states[1], "etc/hosts"),
        chunks_of(b"mydomain 10.0.0.2")
    );
    assert_eq!(states[1].get(&p("etc/profile")).unwrap().meta.mode, 0o666);
}

#[test]
fn remove_directory_in_lower_layer() {
    let (layers, states) = commit_steps(&[
        &|fs: &mut Fs| {
            fs.mkdir("lib", 0o700).write("lib/hidden", b"", 0o644);
        },
        &|fs: &mut Fs| {
            fs.remove_all("lib")
                .mkdir("lib", 0o700)
                .write("lib/not-hidden", b"", 0o644);
        },
        &|fs: &mut Fs| {
            fs.write("lib/newfile", b"", 0o644);
        },
    ]);
    assert_eq!(whited_out(&layers[1]), ["lib/hidden"]);
    assert_eq!(upserted(&layers[1]), ["lib/not-hidden"]);
    assert_eq!(paths(&states[2]), ["lib", "lib/newfile", "lib/not-hidden"]);
}

#[test]
fn chown() {
    let (layers, states) = commit_steps(&[
        &|fs: &mut Fs| {
            fs.mkdir("opt/a/b", 0o700)
                .write("opt/a/b/file.txt", b"hello", 0o644);
        },
        &|fs: &mut Fs| {
            for path in ["opt", "opt/a", "opt/a/b", "opt/a/b/file.txt"] {
                fs.chown(path, 1, 1);
            }
        },
    ]);
    assert_eq!(
        upserted(&layers[1]),
        ["opt", "opt/a", "opt/a/b", "opt/a/b/file.txt"]
    );
    assert!(
        states[1]
            .iter()
            .skip(1)
            .all(|e| (e.meta.uid, e.meta.gid) == (1, 1))
    );
    assert_eq!(content(&states[1], "opt/a/b/file.txt"), chunks_of(b"hello"));
}

#[test]
fn directory_permission_on_commit() {
    let (layers, states) = commit_steps(&[
        &|fs: &mut Fs| {
            for d in ["dir1", "dir2", "dir3", "dir4", "dir5"] {
                fs.mkdir(d, 0o700);
            }
            fs.write("dir4/f1", b"...", 0o644)
                .write("dir5/f1", b"...", 0o644);
            for path in ["dir1", "dir2", "dir3", "dir5", "dir5/f1"] {
                fs.chown(path, 1, 1);
            }
        },
        &|fs: &mut Fs| {
            fs.chown("dir2", 0, 0)
                .remove_all("dir3")
                .chown("dir4", 1, 1)
                .chown("dir4/f1", 1, 1);
        },
        &|fs: &mut Fs| {
            fs.mkdir("dir3", 0o700)
                .chown("dir3", 1, 1)
                .remove_all("dir5")
                .mkdir("dir5", 0o700)
                .chown("dir5", 1, 1);
        },
    ]);
    assert_eq!(upserted(&layers[1]), ["dir2", "dir4", "dir4/f1"]);
    assert_eq!(whited_out(&layers[1]), ["dir3"]);
    // dir5 came back with its old metadata: only its child's removal shows.
    assert_eq!(upserted(&layers[2]), ["dir3"]);
    assert_eq!(whited_out(&layers[2]), ["dir5/f1"]);
    let owners: Vec<(String, u32, u32)> = states[2]
        .iter()
        .skip(1)
        .map(|e| (e.path.to_string(), e.meta.uid, e.meta.mode))
        .collect();
    assert_eq!(
        owners,
        [
            ("dir1".into(), 1, 0o700),
            ("dir2".into(), 0, 0o700),
            ("dir3".into(), 1, 0o700),
            ("dir4".into(), 1, 0o700),
            ("dir4/f1".into(), 1, 0o644),
            ("dir5".into(), 1, 0o700),
        ]
    );
}

#[test]
fn deleted_files_in_child_snapshot() {
    let (layers, states) = commit_steps(&[
        &|fs: &mut Fs| {
            fs.write("foo", b"foo\n", 0o777)
                .write("foobar", b"foobar\n", 0o777);
        },
        &|fs: &mut Fs| {
            fs.remove_all("foobar");
        },
        &|_: &mut Fs| {},
    ]);
    assert!(layers[2].is_empty());
    assert_eq!(paths(&states[2]), ["foo"]);
}

#[test]
fn move_file_from_lower_layer() {
    let (layers, states) = commit_steps(&[
        &|fs: &mut Fs| {
            fs.mkdir("dir1", 0o700)
                .write("dir1/f1", b"Hello", 0o644)
                .mkdir("dir2", 0o700)
                .write("dir2/f2", b"...", 0o644);
        },
        &|fs: &mut Fs| {
            fs.mkdir("dir3", 0o700)
                .write("dir3/f1", b"Hello", 0o644)
                .remove_all("dir1")
                .link("dir2/f2", "dir3/f2")
                .remove_all("dir2/f2");
        },
    ]);
    assert_eq!(whited_out(&layers[1]), ["dir1", "dir2/f2"]);
    assert_eq!(upserted(&layers[1]), ["dir3", "dir3/f1", "dir3/f2"]);
    assert_eq!(paths(&states[1]), ["dir2", "dir3", "dir3/f1", "dir3/f2"]);
    // The surviving name of the link group is a plain file now.
    assert!(states[1].get(&p("dir3/f2")).unwrap().is_file());
    assert_eq!(content(&states[1], "dir3/f2"), chunks_of(b"..."));
}

#[test]
fn rename() {
    let (layers, states) = commit_steps(&[
        &|fs: &mut Fs| {
            fs.mkdir("dir1", 0o700)
                .mkdir("somefiles", 0o700)
                .write("somefiles/f1", b"was here first!", 0o644)
                .write("somefiles/f2", b"nothing interesting", 0o644);
        },
        &|fs: &mut Fs| {
            fs.rename("dir1", "dir2")
                .write("somefiles/f1-overwrite", b"new content 1", 0o644)
                .rename("somefiles/f1-overwrite", "somefiles/f1")
                .rename("somefiles/f2", "somefiles/f3");
        },
    ]);
    let changes: Vec<String> = states[0]
        .changes(&states[1])
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        changes,
        [
            "D dir1",
            "A dir2",
            "M somefiles/f1",
            "D somefiles/f2",
            "A somefiles/f3"
        ]
    );
    assert_eq!(whited_out(&layers[1]), ["dir1", "somefiles/f2"]);
    assert_eq!(
        content(&states[1], "somefiles/f1"),
        chunks_of(b"new content 1")
    );
    assert_eq!(
        content(&states[1], "somefiles/f3"),
        chunks_of(b"nothing interesting")
    );
}

#[test]
fn hard_link_to_lower_file_and_target_changes() {
    let (layers, states) = commit_steps(&[
        &|fs: &mut Fs| {
            fs.mkdir("a", 0o755).write("a/f", b"one", 0o644);
        },
        &|fs: &mut Fs| {
            fs.mkdir("b", 0o755).link("a/f", "b/l");
        },
        // Rewriting the shared inode changes the target; the link is re-emitted.
        &|fs: &mut Fs| {
            fs.write("a/f", b"two", 0o644);
        },
        // The group's first name goes; the link becomes the file.
        &|fs: &mut Fs| {
            fs.remove_all("a/f");
        },
    ]);
    assert_eq!(upserted(&layers[1]), ["b", "b/l"]);
    assert!(matches!(&layers[1].upserts()[1].kind,
        EntryKind::Hardlink { target } if *target == p("a/f")));
    assert_eq!(upserted(&layers[2]), ["a/f", "b/l"]);
    let changes = states[1].changes(&states[2]);
    assert!(changes.iter().all(|c| c.kind == ChangeKind::Modified));
    assert_eq!(whited_out(&layers[3]), ["a/f"]);
    assert_eq!(upserted(&layers[3]), ["b/l"]);
    assert_eq!(content(&states[3], "b/l"), chunks_of(b"two"));
}

#[test]
fn layers_128_stacked() {
    let mut fs = Fs::new();
    fs.write("bottom", b"way at the bottom\n", 0o777)
        .write("overwriteme", b"FIRST!\n", 0o777)
        .mkdir("ADDHERE", 0o755)
        .mkdir("ONLYME", 0o755)
        .write("ONLYME/bottom", b"bye!\n", 0o777);
    let mut prev = fs.snapshot();
    let mut layers = vec![layerstore::Snapshot::empty().diff(&prev)];
    for i in 1..=127 {
        fs.write("overwriteme", format!("{i} WAS HERE!\n").as_bytes(), 0o777)
            .write(&format!("ADDHERE/file-{i}"), b"same\n", 0o755)
            .remove_all("ONLYME")
            .mkdir("ONLYME", 0o755)
            .write(&format!("ONLYME/file-{i}"), b"only me!\n", 0o777);
        let state = fs.snapshot();
        let layer = prev.diff(&state);
        let gone = if i == 1 {
            "ONLYME/bottom".to_owned()
        } else {
            format!("ONLYME/file-{}", i - 1)
        };
        assert_eq!(whited_out(&layer), [gone]);
        assert_eq!(
            upserted(&layer),
            [
                format!("ADDHERE/file-{i}"),
                format!("ONLYME/file-{i}"),
                "overwriteme".to_owned()
            ]
        );
        layers.push(layer);
        assert_eq!(
            layerstore::flatten(&layers).unwrap(),
            state,
            "after layer {i}"
        );
        prev = state;
    }
    let flat = layerstore::flatten(&layers).unwrap();
    assert_eq!(flat.children_of(&p("ADDHERE")).count(), 127);
    let only: Vec<String> = flat
        .children_of(&p("ONLYME"))
        .map(|e| e.path.to_string())
        .collect();
    assert_eq!(only, ["ONLYME/file-127"]);
    assert_eq!(content(&flat, "overwriteme"), chunks_of(b"127 WAS HERE!\n"));
    assert_eq!(content(&flat, "bottom"), chunks_of(b"way at the bottom\n"));
    assert!(flat.get(&TreePath::ROOT).is_some());
}

#[test]
fn metadata_only_changes_are_upserts() {
    let (layers, states) = commit_steps(&[
        &|fs: &mut Fs| {
            fs.mkdir("d", 0o755)
                .write("d/f", b"x", 0o644)
                .symlink("d/f", "s");
        },
        &|fs: &mut Fs| {
            fs.setxattr("d/f", b"security.capability", b"\x01\x00")
                .chmod("d", 0o4755)
                .touch("s", 7);
        },
    ]);
    assert_eq!(upserted(&layers[1]), ["d", "d/f", "s"]);
    let changes: Vec<String> = states[0]
        .changes(&states[1])
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(changes, ["M d", "M d/f", "M s"]);
}
