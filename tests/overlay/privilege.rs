//! Without `CAP_SYS_ADMIN`: a clear error naming the `copy` backend.

use layerstore::mount::{MountBackend, OverlayBackend};

use crate::new_store;

/// Runs in a child process without privilege (see the test below).
#[test]
#[ignore = "run by without_privilege_the_error_names_the_copy_backend as another user"]
fn unprivileged_child() {
    let Some(dir) = crate::common::child_arg() else {
        return; // only meaningful as the child of the test below
    };
    let store = new_store(std::path::Path::new(&dir));
    let err = OverlayBackend::new().check(&store).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("`copy` backend"), "{text}");
    assert!(text.contains("CAP_SYS_ADMIN"), "{text}");
    let io = std::io::Error::from(err);
    assert_eq!(io.kind(), std::io::ErrorKind::PermissionDenied);
}

#[test]
fn without_privilege_the_error_names_the_copy_backend() {
    let tmp = crate::common::mounts::MountDir::new();
    crate::common::open_to_all(tmp.path());
    crate::common::run_unprivileged("privilege::unprivileged_child", tmp.path());
}
