//! Containers, the copy-on-write views of images: `mount`, `umount`,
//! `containers`, `container commit`, `container rm`.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use layerstore::ImageId;
use layerstore::mount::{CommitOptions, Containers, PrepareOptions};
use serde_json::json;

use crate::output::Output;
use crate::{CmdResult, Ctx, Failure, tag_name};

#[derive(clap::Args)]
pub(crate) struct MountArgs {
    /// An image, or the name of an existing container.
    image: String,
    /// An empty directory (created if absent).
    target: PathBuf,
    /// overlay or copy (default: overlay where permitted, else copy).
    #[arg(long)]
    backend: Option<String>,
    /// The container's name (default: made up from the image).
    #[arg(long)]
    name: Option<String>,
    /// A read-only view.
    #[arg(long)]
    read_only: bool,
}

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
/// again; prints its name.
pub(crate) fn mount(ctx: &Ctx, args: &MountArgs) -> CmdResult {
    let (image, target) = (args.image.as_str(), args.target.as_path());
    let (backend, name) = (args.backend.as_deref(), args.name.as_deref());
    let store = ctx.open()?;
    let containers = Containers::new(&store);
    let existing = name.is_none() && backend.is_none() && containers.stat(image).is_ok();
    let info = if existing {
        if args.read_only {
            return Err(Failure::Usage(format!(
                "'{image}' is an existing container: --read-only applies to new ones"
            )));
        }
        containers.mount(image, Some(target))?
    } else {
        if backend == Some("memory") {
            return Err(Failure::Usage(
                "the memory backend lives in one process; the CLI mounts with overlay or copy"
                    .to_owned(),
            ));
        }
        let id = store.resolve_image(image)?;
        let name = match name {
            Some(name) => name.to_owned(),
            None => made_up_name(&containers, image),
        };
        let mut options = PrepareOptions::default()
            .target(target)
            .read_only(args.read_only);
        options.backend = backend.map(str::to_owned);
        containers.prepare(&name, &id, &options)?
    };
    ctx.out.report(
        || json!({ "name": info.name, "image": info.image.to_string(), "backend": info.backend, "target": info.target }),
        || println!("{}", info.name),
    );
    Ok(())
}

/// A container name made up from the image reference: its name part, made
/// safe, and a few hex digits that make it unique.
fn made_up_name(containers: &Containers<'_>, reference: &str) -> String {
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
            println!("{:w0$}  {:w1$}  {:8}  TARGET", "NAME", "IMAGE", "BACKEND");
            for (info, image) in &rows {
                let target = match (&info.target, info.mounted) {
                    (Some(t), true) => t.display().to_string(),
                    (Some(t), false) => format!("({}, unmounted)", t.display()),
                    (None, _) => "-".to_owned(),
                };
                println!(
                    "{:w0$}  {image:w1$}  {:8}  {target}",
                    info.name, info.backend
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
        || println!("{id}"),
    );
    Ok(())
}
