//! Real overlayfs mounts: need root (`CAP_SYS_ADMIN`, `CAP_MKNOD`).

use super::tests_support::*;
use super::*;
use crate::mount::overlay::kernel::{self, OverlaySpec};

#[test]
fn a_read_only_overlay_of_extracted_layers_shows_the_image_tree() {
    if !privileged("overlay extraction") {
        return;
    }
    let (tmp, store) = store();
    let (image, tree) = tricky_image(&store);
    let cache = LayerCache::new(&store);
    let dirs = cache.ensure(&store, &image).unwrap();
    assert_eq!(dirs.len(), 4);
    // A second call extracts nothing (the directories are reused).
    let before = std::fs::metadata(&dirs[0]).unwrap();
    assert_eq!(cache.ensure(&store, &image).unwrap(), dirs);
    let again = std::fs::metadata(&dirs[0]).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&before),
        std::os::unix::fs::MetadataExt::ino(&again)
    );

    let target = tmp.path().join("mnt");
    std::fs::create_dir(&target).unwrap();
    let mut lowers: Vec<PathBuf> = dirs.iter().rev().cloned().collect();
    lowers.push(cache.empty_dir(0).unwrap());
    kernel::mount(
        &target,
        &OverlaySpec {
            lowers: &lowers,
            upper: None,
        },
    )
    .unwrap();
    let scanned = store.scan(
        &target,
        &crate::ScanOptions::default().use_stat_cache(false),
    );
    let write = std::fs::write(target.join("new"), b"x");
    kernel::unmount_at(&target).unwrap();
    assert_eq!(
        write.unwrap_err().raw_os_error(),
        Some(rustix::io::Errno::ROFS.raw_os_error())
    );
    assert_eq!(unlink(&scanned.unwrap().snapshot), unlink(&tree));
}
