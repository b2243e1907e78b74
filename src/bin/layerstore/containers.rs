//! Containers, the copy-on-write views of images: `mount`, `umount`,
//! `containers`, `container commit`, `container rm`.

use std::path::{Path, PathBuf};

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::Arc;

use clap::Subcommand;
use layerstore::ImageId;
use layerstore::mount::{
    CommitOptions, ContainerInfo, Containers, FuseBackend, FuseOptions, PrepareOptions,
};
use serde_json::json;

use crate::output::{Output, outln};
use crate::{CmdResult, Ctx, Failure, tag_name};

#[derive(clap::Args)]
pub(crate) struct MountArgs {
    /// An image, or the name of an existing container; with `--lazy`,
    /// REGISTRY/REPO[:TAG].
    pub(crate) image: String,
    /// An empty directory (created if absent).
    pub(crate) target: PathBuf,
    /// overlay, copy or fuse (default: overlay where permitted, else copy).
    #[arg(long)]
    pub(crate) backend: Option<String>,
    /// The container's name (default: made up from the image).
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// A read-only view.
    #[arg(long)]
    pub(crate) read_only: bool,
    /// fuse: serve the view from this process until it is unmounted, instead
    /// of from a detached server.
    #[arg(long)]
    pub(crate) foreground: bool,
    /// fuse: let every user reach the view (needs root or `user_allow_other`).
    #[arg(long)]
    pub(crate) allow_other: bool,
    #[command(flatten)]
    pub(crate) lazy: crate::lazy::LazyArgs,
}

/// Set in a server's environment by the `mount` that starts it: the server
/// says "ready" on its standard output once the view is mounted, then logs
/// to the container's `server.log`.
pub(crate) const SERVER_NOTIFY: &str = "LAYERSTORE_SERVER_NOTIFY";

#[derive(clap::Args)]
pub(crate) struct UmountArgs {
    what: String,
}

#[derive(Subcommand)]
pub(crate) enum ContainerCommand {
    /// The container's changes become a new layer and image; prints its id.
    Commit {
        name: String,
        #[arg(long, value_name = "NAME")]
        tag: Option<String>,
        #[arg(long, value_name = "TEXT")]
        message: Option<String>,
    },
    /// Unmount and delete a container and its changes.
    Rm { name: String },
}

/// A new container of an image at a target, or an existing one mounted
/// again; prints its name. A `fuse` container is served by a detached
/// server process (started here, ready when this returns), or by this
/// process with `--foreground`.
pub(crate) fn mount(ctx: &Ctx, args: &MountArgs) -> CmdResult {
    if args.lazy.lazy {
        if args.backend.as_deref().is_some_and(|b| b != "fuse") {
            return Err(Failure::Usage(
                "--lazy makes a fuse container: no other --backend".to_owned(),
            ));
        }
        return crate::lazy::mount(ctx, args, None);
    }
    let (image, target) = (args.image.as_str(), args.target.as_path());
    let (backend, name) = (args.backend.as_deref(), args.name.as_deref());
    let store = ctx.open()?;
    let fuse = Arc::new(FuseBackend::with_options(
        FuseOptions::default().allow_other(args.allow_other),
    ));
    let containers = with_fuse(&store, &fuse);
    let existing = if name.is_none() && backend.is_none() {
        containers.stat(image).ok()
    } else {
        None
    };
    // A lazy container mounted again: its image still being fetched.
    if let Some(info) = &existing
        && info.backend == "fuse"
        && store.lazy_images()?.contains(&info.image)
    {
        let info = info.clone();
        drop(containers);
        return crate::lazy::mount(ctx, args, Some(&info));
    }
    if args.lazy.is_set() {
        return Err(Failure::Usage(
            "--insecure, --tag, --record-prefetch, --no-prefetch and --prefetch-rate apply to \
             --lazy, or to a lazy container mounted again"
                .to_owned(),
        ));
    }
    if existing.is_some() && args.read_only {
        return Err(Failure::Usage(format!(
            "'{image}' is an existing container: --read-only applies to new ones"
        )));
    }
    if backend == Some("memory") {
        return Err(Failure::Usage(
            "the memory backend lives in one process; the CLI mounts with overlay, copy or fuse"
                .to_owned(),
        ));
    }
    let is_fuse = existing
        .as_ref()
        .map_or(backend, |i| Some(i.backend.as_str()))
        == Some("fuse");
    if (args.foreground || args.allow_other) && !is_fuse {
        return Err(Failure::Usage(
            "--foreground and --allow-other apply to the fuse backend".to_owned(),
        ));
    }
    let name = match (&existing, name) {
        (Some(info), _) => info.name.clone(),
        (None, Some(name)) => name.to_owned(),
        (None, None) => made_up_name(&containers, image),
    };
    if is_fuse && !args.foreground {
        spawn_server(&name, args.name.is_none() && existing.is_none())?;
        let info = containers.stat(&name)?;
        report(ctx, &info);
        return Ok(());
    }
    let info = if existing.is_some() {
        containers.mount(&name, Some(target))?
    } else {
        let id = store.resolve_image(image)?;
        let mut options = PrepareOptions::default()
            .target(target)
            .read_only(args.read_only);
        options.backend = backend.map(str::to_owned);
        containers.prepare(&name, &id, &options)?
    };
    if !is_fuse {
        report(ctx, &info);
        return Ok(());
    }
    // The foreground server: say the view is ready, then serve until it is
    // unmounted.
    if std::env::var_os(SERVER_NOTIFY).is_some() {
        detach_output(&containers.state_dir(&name)?.join("server.log"), "")?;
    } else {
        report(ctx, &info);
    }
    fuse.wait()?;
    Ok(())
}

/// The built-in backends, with `fuse` (this process's fuse server) in its
/// place, over `store`.
pub(crate) fn with_fuse<'a>(
    store: &'a layerstore::Store,
    fuse: &Arc<FuseBackend>,
) -> Containers<'a> {
    let backends = layerstore::mount::builtin_backends()
        .into_iter()
        .map(|b| {
            if b.name() == "fuse" {
                fuse.clone() as Arc<dyn layerstore::mount::MountBackend>
            } else {
                b
            }
        })
        .collect();
    Containers::with_backends(store, backends)
}

pub(crate) fn report(ctx: &Ctx, info: &ContainerInfo) {
    ctx.out.report(
        || json!({ "name": info.name, "image": info.image.to_string(), "backend": info.backend, "target": info.target }),
        || outln!("{}", info.name),
    );
}

/// Starts this program again as the container's foreground server, in a
/// process group of its own with no terminal, and waits until it says the
/// view is ready, or fails (its message and exit code are then this one's).
/// Returns what the server said after "ready" on that line.
pub(crate) fn spawn_server(name: &str, add_name: bool) -> Result<String, Failure> {
    let exe = std::env::current_exe()
        .map_err(|e| Failure::System(format!("cannot find this program to start a server: {e}")))?;
    let mut command = std::process::Command::new(exe);
    command
        .args(std::env::args_os().skip(1))
        .arg("--foreground");
    if add_name {
        command.arg("--name").arg(name);
    }
    let mut child = command
        .env(SERVER_NOTIFY, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| Failure::System(format!("cannot start a server: {e}")))?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    if let Some(said) = line.strip_prefix("ready") {
        return Ok(said.trim().to_owned());
    }
    let mut message = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut message);
    }
    let status = child
        .wait()
        .map_err(|e| Failure::System(format!("cannot wait for the server: {e}")))?;
    let message = message.trim().trim_start_matches("layerstore: ").to_owned();
    let message = if message.is_empty() {
        format!("the server of '{name}' stopped before its view was ready ({status})")
    } else {
        message
    };
    Err(match status.code() {
        Some(2) => Failure::Usage(message),
        _ => Failure::System(message),
    })
}

/// A server started by [`spawn_server`], once its view is mounted: says
/// "ready" (and `said`) on its standard output, which then goes to
/// /dev/null, and sends its standard error (the view's log: damaged chunks,
/// with pack and offset) to `log`.
pub(crate) fn detach_output(log: &Path, said: &str) -> CmdResult {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| Failure::System(format!("cannot open '{}': {e}", log.display())))?;
    let null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .map_err(|e| Failure::System(format!("cannot open /dev/null: {e}")))?;
    let mut stdout = std::io::stdout().lock();
    let ready = writeln!(stdout, "ready {said}").and_then(|()| stdout.flush());
    drop(stdout);
    ready.map_err(|e| Failure::System(format!("cannot say the view is ready: {e}")))?;
    rustix::stdio::dup2_stdout(&null)
        .and_then(|()| rustix::stdio::dup2_stderr(&file))
        .map_err(|e| Failure::System(format!("cannot detach the server's output: {e}")))?;
    Ok(())
}

/// A container name made up from the image reference: its name part, made
/// safe, and a few hex digits that make it unique.
pub(crate) fn made_up_name(containers: &Containers<'_>, reference: &str) -> String {
    let stem: String = reference
        .rsplit('/')
        .next()
        .unwrap_or(reference)
        .split([':', '@'])
        .next()
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(32)
        .collect();
    let stem = if stem.is_empty() || stem.starts_with('-') {
        format!("c{stem}")
    } else {
        stem
    };
    for attempt in 0u32.. {
        let seed = format!(
            "{:?}{}{attempt}",
            std::time::SystemTime::now(),
            std::process::id()
        );
        let name = format!("{stem}-{}", &ImageId::of(seed.as_bytes()).to_hex()[..8]);
        if containers.stat(&name).is_err() {
            return name;
        }
    }
    unreachable!("u32 attempts exhausted")
}

/// Unmount a container, given by name or by target, keeping its changes.
/// Prints nothing.
pub(crate) fn umount(ctx: &Ctx, args: &UmountArgs) -> CmdResult {
    let what = args.what.as_str();
    let store = ctx.open()?;
    let containers = Containers::new(&store);
    let name = if layerstore::mount::validate_name(what).is_ok() && containers.stat(what).is_ok() {
        what.to_owned()
    } else {
        containers.by_target(Path::new(what))?.ok_or_else(|| {
            Failure::Usage(format!("no container is named or mounted at '{what}'"))
        })?
    };
    containers.unmount(&name)?;
    Ok(())
}

/// The containers: `NAME  IMAGE  BACKEND  TARGET`, IMAGE a tag of the image
/// where there is one.
pub(crate) fn list(ctx: &Ctx) -> CmdResult {
    let store = ctx.open()?;
    let containers = Containers::new(&store);
    let tags = store.tags()?;
    let rows: Vec<_> = containers
        .walk(|_| true)?
        .into_iter()
        .map(|info| {
            let image = tags.iter().find(|(_, id)| *id == info.image).map_or_else(
                || info.image.to_string()[..19].to_owned(),
                |(t, _)| t.to_string(),
            );
            (info, image)
        })
        .collect();
    ctx.out.report(
        || {
            rows.iter()
                .map(|(i, image)| {
                    json!({
                        "name": i.name,
                        "image": i.image.to_string(),
                        "image_name": image,
                        "backend": i.backend,
                        "target": i.target,
                        "mounted": i.mounted,
                        "read_only": i.read_only,
                        "committed": i.committed.map(|c| c.to_string()),
                    })
                })
                .collect()
        },
        || {
            let w0 = rows
                .iter()
                .map(|r| r.0.name.len())
                .max()
                .unwrap_or(0)
                .max(4);
            let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).max(5);
            outln!("{:w0$}  {:w1$}  {:8}  TARGET", "NAME", "IMAGE", "BACKEND");
            for (info, image) in &rows {
                let target = match (&info.target, info.mounted) {
                    (Some(t), true) => t.display().to_string(),
                    (Some(t), false) => format!("({}, unmounted)", t.display()),
                    (None, _) => "-".to_owned(),
                };
                outln!(
                    "{:w0$}  {image:w1$}  {:8}  {target}",
                    info.name,
                    info.backend
                );
            }
        },
    );
    Ok(())
}

/// `container commit` (prints the new image's id) and `container rm`
/// (prints nothing).
pub(crate) fn container(ctx: &Ctx, action: &ContainerCommand) -> CmdResult {
    match action {
        ContainerCommand::Commit { name, tag, message } => {
            commit(ctx, name, tag.as_deref(), message.as_deref())
        }
        ContainerCommand::Rm { name } => {
            let store = ctx.open()?;
            Containers::new(&store).remove(name)?;
            Ok(())
        }
    }
}

fn commit(ctx: &Ctx, name: &str, tag: Option<&str>, message: Option<&str>) -> CmdResult {
    let store = ctx.open()?;
    let tag = tag.map(tag_name).transpose()?;
    let containers = Containers::new(&store);
    let bar = ctx.out.spinner(format!("committing {name}"));
    let id = containers.commit(name, &{
        let mut options = CommitOptions::default().message(message.unwrap_or_default());
        options.tag.clone_from(&tag);
        options
    });
    Output::finish(bar);
    let id = id?;
    ctx.out.report(
        || json!({ "image": id.to_string(), "container": name, "tag": tag.map(|t| t.to_string()) }),
        || outln!("{id}"),
    );
    Ok(())
}
