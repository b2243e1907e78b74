//! Without `CAP_SYS_ADMIN`: a clear error naming the `copy` backend.

use layerstore::mount::{MountBackend, OverlayBackend};

use crate::{new_store, require_root};

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
    if !require_root("dropping privilege with setpriv") || !crate::common::require_tool("setpriv") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(&exe)
        .args([
            "--exact",
            "privilege::unprivileged_child",
            "--ignored",
            "--test-threads=1",
        ])
        .env("LAYERSTORE_CHILD", tmp.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1 passed"), "{stdout}");
}
