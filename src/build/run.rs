//! `RUN`: a command executed in a container of the step's parent image.
//!
//! The container is an `overlay` view (the image's layers shared, the
//! command's changes in the container's upper directory) mounted at a
//! private directory; the command runs with that directory as its root
//! (`chroot`), in new mount and PID namespaces, through util-linux's
//! `unshare --root --wd --setuid --setgid --kill-child`, with the image's
//! `ENV` as its whole environment (plus a default `PATH`), `WORKDIR` as its
//! working directory (made if missing) and `USER` as its numeric uid:gid.
//! Its changes are committed as the step's layer; on failure, or after the
//! timeout, the container is removed and the error carries the output.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::fsutil::confine::ConfinedDir;
use crate::id::ImageId;
use crate::mount::{CommitOptions, Containers, OverlayBackend, PrepareOptions};
use crate::store::Store;
use crate::tree::ImageConfig;

/// The `PATH` a command gets when the image's `ENV` sets none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// How much of a failed command's output an error keeps (its end).
const OUTPUT_KEPT: usize = 8 << 10;

/// Where a step runs, for errors.
pub(crate) struct At<'a> {
    pub(crate) file: &'a str,
    pub(crate) line: usize,
}

impl At<'_> {
    fn err(&self, reason: impl Into<String>) -> Error {
        Error::Build {
            file: self.file.to_owned(),
            line: self.line,
            reason: reason.into(),
        }
    }
}

/// Runs `argv` in a container of `image`; returns the image of its result
/// (the image's layers plus the command's changes).
pub(crate) fn run(
    store: &Store,
    image: &ImageId,
    config: &ImageConfig,
    argv: &[String],
    timeout: Option<Duration>,
    at: &At<'_>,
) -> Result<ImageId> {
    if !rustix::process::geteuid().is_root() {
        return Err(at.err(
            "RUN needs root here (an overlayfs container, chroot and namespaces); \
             build as root, or without RUN steps",
        ));
    }
    let (uid, gid) = super::containerfile::parse_owner(&config.user)
        .map_err(|r| at.err(format!("USER '{}': {r}", config.user)))?;
    let containers = Containers::with_backends(store, vec![Arc::new(OverlayBackend::new())]);
    let name = format!("build-{}-{}", std::process::id(), unique());
    let target = std::env::temp_dir().join(format!("layerstore-{name}"));
    let options = PrepareOptions::default().backend("overlay").target(&target);
    containers.prepare(&name, image, &options)?;
    let outcome = execute(&target, config, argv, (uid, gid), timeout, at)
        .and_then(|()| containers.commit(&name, &CommitOptions::default()));
    let removed = containers.remove(&name);
    let _ = std::fs::remove_dir(&target);
    let committed = outcome?;
    removed?;
    Ok(committed)
}

/// A number no other build of this process uses.
fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn execute(
    root: &Path,
    config: &ImageConfig,
    argv: &[String],
    (uid, gid): (u32, u32),
    timeout: Option<Duration>,
    at: &At<'_>,
) -> Result<()> {
    let workdir = if config.workdir.is_empty() {
        "/".to_owned()
    } else {
        config.workdir.clone()
    };
    let relative = workdir.trim_start_matches('/');
    if !relative.is_empty() {
        ConfinedDir::open(root)?.create_dir_all(relative.as_bytes(), 0o755)?;
    }
    let mut cmd = Process::new("unshare");
    cmd.args(["--mount", "--pid", "--fork", "--kill-child"])
        .arg(format!("--root={}", root.display()))
        .arg(format!("--wd={workdir}"))
        .args(["--setuid", &uid.to_string(), "--setgid", &gid.to_string()])
        .arg("--")
        .args(argv)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut has_path = false;
    for pair in &config.env {
        if let Some((k, v)) = pair.split_once('=') {
            has_path |= k == "PATH";
            cmd.env(k, v);
        }
    }
    if !has_path {
        cmd.env("PATH", DEFAULT_PATH);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| at.err(format!("cannot start unshare(1) (util-linux) for RUN: {e}")))?;
    let mut readers = Vec::new();
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        readers.push(std::thread::spawn(move || {
            let mut out = Vec::new();
            let mut stream = stream;
            let _ = stream.read_to_end(&mut out);
            out
        }));
    }
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| Error::io("wait for", PathBuf::from("unshare"), e))?
        {
            break Some(status);
        }
        if timeout.is_some_and(|t| started.elapsed() > t) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut output = Vec::new();
    for reader in readers {
        output.extend(reader.join().unwrap_or_default());
    }
    let shown = || {
        let start = output.len().saturating_sub(OUTPUT_KEPT);
        String::from_utf8_lossy(&output[start..]).into_owned()
    };
    match status {
        None => Err(at.err(format!(
            "RUN {argv:?} timed out after {:.1} s; its output:\n{}",
            timeout.unwrap_or_default().as_secs_f64(),
            shown()
        ))),
        Some(s) if !s.success() => Err(at.err(format!(
            "RUN {argv:?} failed ({s}); its output:\n{}",
            shown()
        ))),
        Some(_) => Ok(()),
    }
}
