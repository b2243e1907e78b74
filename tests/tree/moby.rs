//! Ports of moby's `pkg/archive` change tests: the A/M/D list between trees.
//!
//! One deliberate difference: moby ignores a directory's mtime, layerstore
//! keeps it (a directory checked out again has its mtime to the nanosecond),
//! so touching `dir3` is a change here.

use layerstore::{Change, ChangeKind, Entry, Layer, Metadata, Timestamp};

use crate::model::{Fs, chunks_of, p};

/// moby's `createSampleDir`, with the same names, contents and modes.
fn sample() -> Fs {
    let mut fs = Fs::new();
    for (name, content, mode) in [
        ("file1", "file1\n", 0o600),
        ("file2", "file2\n", 0o666),
        ("file3", "file3\n", 0o404),
        ("file4", "file4\n", 0o600),
        ("file5", "file5\n", 0o600),
        ("file6", "file6\n", 0o600),
        ("file7", "file7\n", 0o600),
    ] {
        fs.write(name, content.as_bytes(), mode);
    }
    fs.mkdir("dir1", 0o740)
        .write("dir1/file1-1", b"file1-1\n", 0o1444)
        .write("dir1/file1-2", b"file1-2\n", 0o666)
        .mkdir("dir2", 0o700)
        .write("dir2/file2-1", b"file2-1\n", 0o666)
        .write("dir2/file2-2", b"file2-2\n", 0o666)
        .mkdir("dir3", 0o700)
        .write("dir3/file3-1", b"file3-1\n", 0o666)
        .write("dir3/file3-2", b"file3-2\n", 0o666)
        .mkdir("dir4", 0o700)
        .write("dir4/file3-1", b"file4-1\n", 0o666)
        .write("dir4/file3-2", b"file4-2\n", 0o666)
        .symlink("target1", "symlink1")
        .symlink("target2", "symlink2")
        .symlink("/root/file1", "symlink3")
        .symlink("/root/symlink3", "symlink4")
        .symlink("/root/dir1", "dirSymlink");
    fs
}

/// moby's `mutateSampleDir`.
fn mutate(fs: &mut Fs) {
    fs.remove_all("file1") // remove a regular file
        .remove_all("dir1") // remove a directory
        .remove_all("symlink1") // remove a symlink
        .write("file2", b"fileNN\n", 0o777) // rewrite a file
        .remove_all("file3") // replace a file
        .write("file3", b"fileMM\n", 0o404)
        .touch("file4", 1) // touch a file
        .remove_all("file5") // replace a file with a directory
        .mkdir("file5", 0o666)
        .write("filenew", b"filenew\n", 0o777) // new file
        .mkdir("dirnew", 0o766) // new directory
        .symlink("targetnew", "symlinknew") // new symlink
        .remove_all("symlink2") // retarget a symlink
        .symlink("target2change", "symlink2")
        .remove_all("dir2") // replace a directory with a file
        .write("dir2", b"dir2\n", 0o777)
        .touch("dir3", 1); // touch a directory
}

fn shown(changes: &[Change]) -> Vec<String> {
    changes.iter().map(ToString::to_string).collect()
}

#[test]
fn change_strings() {
    let change = |kind| Change {
        kind,
        path: p("change"),
    };
    assert_eq!(change(ChangeKind::Modified).to_string(), "M change");
    assert_eq!(change(ChangeKind::Added).to_string(), "A change");
    assert_eq!(change(ChangeKind::Deleted).to_string(), "D change");
    let root = Change {
        kind: ChangeKind::Modified,
        path: layerstore::TreePath::ROOT,
    };
    assert_eq!(root.to_string(), "M .");
}

#[test]
fn no_changes_between_identical_trees() {
    let a = sample().snapshot();
    let b = sample().snapshot();
    assert!(a.changes(&b).is_empty());
    assert!(a.diff(&b).is_empty());
    assert_eq!(a.id(), b.id());
}

#[test]
fn dirs_mutated() {
    let before = sample().snapshot();
    let mut fs = sample();
    mutate(&mut fs);
    let after = fs.snapshot();
    assert_eq!(
        shown(&before.changes(&after)),
        [
            "D dir1",
            "M dir2", // its old children are not listed
            "M dir3", // moby ignores directory mtimes; we do not
            "A dirnew",
            "D file1",
            "M file2",
            "M file3",
            "M file4",
            "M file5",
            "A filenew",
            "D symlink1",
            "M symlink2",
            "A symlinknew",
        ]
    );
    // moby's TestApplyLayer: the layer turns the old tree into the new one.
    let layer = before.diff(&after);
    assert_eq!(layer.apply(&before).unwrap(), after);
    assert!(after.changes(&layer.apply(&before).unwrap()).is_empty());
    // One whiteout per deleted directory; dir2's children go with its
    // replacement, without whiteouts.
    let whiteouts: Vec<String> = layer.whiteouts().iter().map(ToString::to_string).collect();
    assert_eq!(whiteouts, ["dir1", "file1", "symlink1"]);
    assert_eq!(layer.changes(&before).unwrap(), before.changes(&after));
}

#[test]
fn changes_of_a_layer_with_whiteouts() {
    // moby's TestChangesWithChanges: a read-write layer over the sample tree.
    let mut fs = sample();
    fs.mkdir("dir1/subfolder", 0o740);
    let lower = fs.snapshot();
    let mut dir_meta = Metadata::new(0o740);
    dir_meta.mtime = Timestamp::new(1, 0);
    let layer = Layer::new(
        vec![
            Entry::dir(p("dir1"), dir_meta.clone()),
            Entry::file(p("dir1/file1-1"), chunks_of(b"\0"), Metadata::new(0o1444)),
            Entry::dir(p("dir1/subfolder"), dir_meta),
            Entry::file(
                p("dir1/subfolder/newFile"),
                chunks_of(b""),
                Metadata::new(0o740),
            ),
        ],
        vec![p("dir1/file1-2")],
        vec![],
    )
    .unwrap();
    assert_eq!(
        shown(&layer.changes(&lower).unwrap()),
        [
            "M dir1",
            "M dir1/file1-1",
            "D dir1/file1-2",
            "M dir1/subfolder",
            "A dir1/subfolder/newFile",
        ]
    );
}
