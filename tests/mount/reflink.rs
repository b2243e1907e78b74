//! The copy backend's reflink path on real XFS and Btrfs filesystems, made
//! in loop files by the test: ten containers of one image share the base
//! checkout's extents, so they cost little more disk than one.

use std::path::{Path, PathBuf};
use std::process::Command;

use layerstore::mount::{CommitOptions, Containers, PrepareOptions};
use layerstore::{Store, StoreOptions, TreePath};

/// A filesystem of `kind` in a loop file, mounted for the test's lifetime.
struct LoopFs {
    _dir: tempfile::TempDir,
    mnt: PathBuf,
}

impl LoopFs {
    fn new(kind: &str) -> Option<Self> {
        let mkfs = format!("mkfs.{kind}");
        if !crate::require_root("mounting a loop filesystem") || !crate::require_tool(&mkfs) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("fs.img");
        let file = std::fs::File::create(&image).unwrap();
        file.set_len(768 << 20).unwrap();
        drop(file);
        let mut mkfs_cmd = Command::new(&mkfs);
        mkfs_cmd.arg("-q");
        if kind == "xfs" {
            mkfs_cmd.args(["-m", "reflink=1"]);
        }
        let out = mkfs_cmd.arg(&image).output().unwrap();
        assert!(
            out.status.success(),
            "{mkfs}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let out = Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&mnt)
            .output()
            .unwrap();
        if !out.status.success() {
            crate::skip(&format!(
                "cannot mount a {kind} loop file: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
            return None;
        }
        Some(Self { _dir: dir, mnt })
    }

    /// Bytes in use on the filesystem.
    fn used(&self) -> u64 {
        // Btrfs frees and accounts lazily; make the figure current.
        let _ = Command::new("sync").status();
        let st = rustix::fs::statvfs(&self.mnt).unwrap();
        (st.f_blocks - st.f_bfree) * st.f_frsize
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mnt).status();
    }
}

/// `n` files of 1 MiB of incompressible bytes.
fn write_base(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for i in 0..n {
        let mut data = vec![0u8; 1 << 20];
        for chunk in data.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        std::fs::write(dir.join(format!("file-{i}")), data).unwrap();
    }
}

fn ten_containers(kind: &str) {
    let Some(fs) = LoopFs::new(kind) else {
        return;
    };
    let store = Store::create(fs.mnt.join("store"), &StoreOptions::default()).unwrap();
    let src = fs.mnt.join("src");
    write_base(&src, 32);
    let scanned = store
        .scan(&src, &layerstore::ScanOptions::default())
        .unwrap();
    let base = store
        .put_child_image(
            None,
            &layerstore::Snapshot::empty().diff(&scanned.snapshot),
            &scanned.snapshot,
            None,
            layerstore::History::default(),
        )
        .unwrap();
    store.flush().unwrap();
    // `src` stays: XFS frees a deleted file's blocks in the background,
    // which would blur the figures below.
    let image_bytes = 32u64 << 20;
    let c = Containers::new(&store);
    let options = |i: usize| {
        PrepareOptions::default()
            .backend("copy")
            .target(fs.mnt.join(format!("c{i}")))
    };

    let before = fs.used();
    c.prepare("c0", &base, &options(0)).unwrap();
    let one = fs.used().saturating_sub(before);
    for i in 1..10 {
        c.prepare(&format!("c{i}"), &base, &options(i)).unwrap();
    }
    let ten = fs.used().saturating_sub(before);
    eprintln!(
        "{kind}: image {} MiB; disk used by 1 copy container {:.1} MiB (with the shared base \
         checkout), by 10 {:.1} MiB; the 9 more cost {:.1} MiB",
        image_bytes >> 20,
        one as f64 / f64::from(1 << 20),
        ten as f64 / f64::from(1 << 20),
        (ten.saturating_sub(one)) as f64 / f64::from(1 << 20)
    );
    // The base checkout holds the image once; ten reflinked copies add
    // metadata only (far below one more image).
    assert!(
        one >= image_bytes,
        "the base checkout holds the image: {one}"
    );
    assert!(
        ten.saturating_sub(one) < image_bytes / 4,
        "nine more containers cost {} bytes: the files were copied, not reflinked",
        ten.saturating_sub(one)
    );
    // Every container still sees, changes and commits its own files.
    for i in 0..10 {
        let target = fs.mnt.join(format!("c{i}"));
        assert_eq!(
            std::fs::metadata(target.join("file-3")).unwrap().len(),
            1 << 20
        );
    }
    std::fs::write(fs.mnt.join("c4/file-3"), b"changed").unwrap();
    let image = c.commit("c4", &CommitOptions::default()).unwrap();
    let tree = store.image_tree(&image).unwrap();
    let file = tree.get(&TreePath::new("file-3").unwrap()).unwrap();
    assert!(matches!(
        file.kind,
        layerstore::EntryKind::File { size: 7, .. }
    ));
    assert_eq!(
        std::fs::metadata(fs.mnt.join("c5/file-3")).unwrap().len(),
        1 << 20
    );
    for i in 0..10 {
        c.remove(&format!("c{i}")).unwrap();
    }
    drop(store);
}

#[test]
fn ten_copy_containers_share_extents_on_xfs() {
    ten_containers("xfs");
}

#[test]
fn ten_copy_containers_share_extents_on_btrfs() {
    ten_containers("btrfs");
}
