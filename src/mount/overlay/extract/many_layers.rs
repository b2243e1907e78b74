//! Real overlayfs mounts of many layers: need root.

use super::tests_support::*;
use super::*;
use crate::mount::overlay::kernel::{self, OverlaySpec};
use crate::tree::{Entry, Layer, Metadata, TreePath};

/// An image of `n` layers: layer `i` adds `f<i>` and rewrites `top`.
fn stacked(store: &Store, n: usize) -> Image {
    let mut ids = Vec::new();
    let mut tree = Snapshot::empty();
    for i in 0..n {
        let mut upserts = vec![
            Entry::file(
                p(&format!("f{i}")),
                store.put_bytes(format!("{i}").as_bytes()).unwrap(),
                Metadata::new(0o644),
            ),
            Entry::file(
                p("top"),
                store.put_bytes(format!("top {i}").as_bytes()).unwrap(),
                Metadata::new(0o644),
            ),
        ];
        if i == 0 {
            upserts.push(Entry::dir(TreePath::ROOT, Metadata::new(0o755)));
        }
        let layer = Layer::new(upserts, vec![], vec![]).unwrap();
        tree = layer.apply(&tree).unwrap();
        ids.push(store.put_layer(&layer).unwrap());
    }
    let history = ids.iter().map(|_| crate::History::default()).collect();
    let rootfs = store.put_snapshot(&tree).unwrap();
    Image::new(ids, rootfs, crate::ImageConfig::default(), history).unwrap()
}

fn mount_and_check(n: usize) {
    let (tmp, store) = store();
    let image = stacked(&store, n);
    let cache = LayerCache::new(&store);
    let mut lowers = cache.ensure(&store, &image).unwrap();
    assert_eq!(lowers.len(), n.min(kernel::MAX_LOWER_LAYERS));
    lowers.reverse();
    let target = tmp.path().join("mnt");
    std::fs::create_dir(&target).unwrap();
    kernel::mount(
        &target,
        &OverlaySpec {
            lowers: &lowers,
            upper: None,
        },
    )
    .unwrap();
    let top = std::fs::read(target.join("top"));
    let files = std::fs::read_dir(&target).map(Iterator::count);
    let first = std::fs::read(target.join("f0"));
    kernel::unmount_at(&target).unwrap();
    assert_eq!(
        top.unwrap(),
        format!("top {}", n - 1).into_bytes(),
        "{n} layers"
    );
    assert_eq!(files.unwrap(), n + 1, "{n} layers");
    assert_eq!(first.unwrap(), b"0");
}

#[test]
fn images_of_128_500_and_600_layers_mount() {
    if !privileged("mounting many layers") {
        return;
    }
    for n in [128, 500, 600] {
        mount_and_check(n);
    }
}
