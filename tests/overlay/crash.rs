//! A process killed between mount and commit: the container survives, and can
//! be committed, unmounted, remounted (as after a reboot) or removed.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use layerstore::Store;
use layerstore::TreePath;
use layerstore::mount::CommitOptions;

use crate::{containers, image_of, new_store, require_root, target_options, write_tree};

/// Runs in a child process that the test below kills.
#[test]
#[ignore = "run by a_killed_process_leaves_a_container_that_can_be_committed_and_remounted"]
fn crash_child() {
    let Some(dir) = crate::common::child_arg() else {
        return; // only meaningful as the child of the test below
    };
    let dir = std::path::PathBuf::from(dir);
    let store = Store::open(dir.join("store")).unwrap();
    let image = store.resolve_image("base").unwrap();
    let containers = containers(&store);
    let target = dir.join("box");
    containers
        .prepare("box", &image, &target_options(&target))
        .unwrap();
    std::fs::write(target.join("written-before-the-kill"), "data").unwrap();
    std::fs::remove_file(target.join("doomed")).unwrap();
    println!("READY");
    std::thread::sleep(std::time::Duration::from_secs(600));
}

#[test]
fn a_killed_process_leaves_a_container_that_can_be_committed_and_remounted() {
    if !require_root("overlay crash") {
        return;
    }
    let tmp = crate::common::mounts::MountDir::new();
    let store = new_store(tmp.path());
    let v1 = tmp.path().join("v1");
    write_tree(&v1, &[("kept", "k"), ("doomed", "d")]);
    let image = image_of(&store, &[&v1]);
    store.set_tag(&"base".parse().unwrap(), &image).unwrap();
    drop(store);

    let mut child = crate::common::child("crash::crash_child", tmp.path().to_str().unwrap())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let ready = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|l| l.contains("READY"));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(ready, "the child did not get to mount");

    let store = Store::open(tmp.path().join("store")).unwrap();
    let containers = containers(&store);
    let target = tmp.path().join("box");
    // The mount outlives the process; the container is listed and live.
    assert!(containers.stat("box").unwrap().mounted);
    let committed = containers.commit("box", &CommitOptions::default()).unwrap();
    let tree = store.image_tree(&committed).unwrap();
    assert!(
        tree.get(&TreePath::new("written-before-the-kill").unwrap())
            .is_some()
    );
    assert!(tree.get(&TreePath::new("doomed").unwrap()).is_none());

    // As after a reboot: the mount is gone; mounting again shows the changes.
    containers.unmount("box").unwrap();
    assert!(!containers.stat("box").unwrap().mounted);
    containers.mount("box", None).unwrap();
    assert_eq!(
        std::fs::read_to_string(target.join("written-before-the-kill")).unwrap(),
        "data"
    );
    assert!(!target.join("doomed").exists());
    containers.remove("box").unwrap();
    assert!(containers.stat("box").is_err());
}
