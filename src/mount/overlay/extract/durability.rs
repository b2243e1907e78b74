//! The rule that keeps a crash of the machine from stacking half-written
//! layers: an extraction not synced is used only by the boot that wrote it.
//! Needs root (the image holds a fifo and whiteouts, which are devices).

use super::tests_support::*;
use super::*;
use std::os::unix::fs::MetadataExt;

#[test]
fn unsynced_extractions_of_another_boot_are_never_used_and_gc_syncs_ours() {
    if !privileged("overlay extraction") {
        return;
    }
    let (_tmp, store) = store();
    let (image, _) = tricky_image(&store);
    let cache = LayerCache::new(&store);
    let chains = stack_keys(&image);
    let boot = boot_id().expect("a boot id on Linux");
    let dirs = cache.ensure(&store, &image).unwrap();
    for (dir, chain) in dirs.iter().zip(&chains) {
        assert_eq!(*dir, cache.path_of(&format!("{chain}{UNSYNCED}{boot}")));
    }

    // The bottom layer as an earlier boot left it: unsynced, and (after
    // the crash) missing a file. It is not stacked: extracted again.
    let other = if boot.starts_with('0') { "1" } else { "0" }.repeat(32);
    let stale = cache.path_of(&format!("{}{UNSYNCED}{other}", chains[0]));
    std::fs::rename(&dirs[0], &stale).unwrap();
    std::fs::remove_file(stale.join("a/f1")).unwrap();
    let again = cache.ensure(&store, &image).unwrap();
    assert_eq!(again, dirs);
    assert!(again[0].join("a/f1").is_file());

    // gc's prune: the stale one goes; ours are synced and renamed.
    let inode = std::fs::metadata(&dirs[1]).unwrap().ino();
    let removed = cache.prune(&chains.iter().cloned().collect()).unwrap();
    assert_eq!(removed, [stale]);
    let synced = cache.ensure(&store, &image).unwrap();
    for (dir, chain) in synced.iter().zip(&chains) {
        assert_eq!(*dir, cache.path_of(chain));
    }
    assert_eq!(std::fs::metadata(&synced[1]).unwrap().ino(), inode);

    // A synced extraction is used as it is, in any boot.
    std::fs::write(synced[2].join("planted"), b"kept").unwrap();
    assert_eq!(cache.ensure(&store, &image).unwrap(), synced);
    assert!(synced[2].join("planted").is_file());
}
