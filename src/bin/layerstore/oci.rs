//! OCI image layouts: `import-oci LAYOUT[:REF] [--tag NAME]` (also a
//! `docker save` archive) and `export-oci IMAGE LAYOUT[:REF]
//! [--compression gzip|zstd|zstd-seekable|none]`.

use std::path::PathBuf;

use layerstore::oci::{Exchange, ExportOptions, ImportOptions};
use serde_json::json;

use crate::output::{Output, outln};
use crate::{CmdResult, Ctx, tag_name};

#[derive(clap::Args)]
pub(crate) struct ImportArgs {
    /// The layout directory (or docker-save tar), optionally `:REF`.
    layout: String,
    #[arg(long, value_name = "NAME")]
    tag: Option<String>,
}

#[derive(clap::Args)]
pub(crate) struct ExportArgs {
    image: String,
    /// The layout directory, optionally `:REF`.
    layout: String,
    #[arg(
        long,
        default_value = "gzip",
        value_name = "gzip|zstd|zstd-seekable|none"
    )]
    compression: String,
}

#[derive(clap::Args)]
pub(crate) struct ExportArchiveArgs {
    image: String,
    /// The archive to write (replaced if present).
    file: PathBuf,
    /// The name the loader gives the image (`name:tag`); default: IMAGE,
    /// when it is a tag.
    #[arg(long, value_name = "NAME")]
    tag: Option<String>,
}

/// Import an image from a layout directory or a `docker save` archive (a
/// file); prints its id.
pub(crate) fn import(ctx: &Ctx, args: &ImportArgs) -> CmdResult {
    let layout = args.layout.as_str();
    let store = ctx.open()?;
    let (path, reference) = split_layout(layout);
    let bar = ctx.out.bar(format!("importing {layout}"), "bytes");
    let progress = Output::hook(bar.as_ref(), |e| {
        let layers = e.entries_total.unwrap_or(0);
        (
            e.bytes,
            e.bytes_total,
            format!("importing: {} of {layers} layers", e.entries),
        )
    });
    let options = ImportOptions::default().progress(progress);
    let id = if path.is_file() {
        Exchange::new(&store).import_docker_archive(&path, reference, &options)
    } else {
        Exchange::new(&store).import_layout(&path, reference, &options)
    };
    Output::finish(bar);
    let id = id?;
    if let Some(name) = &args.tag {
        store.set_tag(&tag_name(name)?, &id)?;
    }
    ctx.out
        .report(|| json!({ "image": id.to_string() }), || outln!("{id}"));
    Ok(())
}

/// Write an image into a layout (created or added to); prints the manifest
/// digest.
pub(crate) fn export(ctx: &Ctx, args: &ExportArgs) -> CmdResult {
    let layout = args.layout.as_str();
    let store = ctx.open()?;
    let id = store.resolve_image(&args.image)?;
    let (path, reference) = split_layout(layout);
    let bar = ctx.out.bar(format!("exporting {id} to {layout}"), "bytes");
    let progress = Output::hook(bar.as_ref(), |e| {
        let layers = e.entries_total.unwrap_or(0);
        (
            e.bytes,
            e.bytes_total,
            format!("exporting: {} of {layers} layers", e.entries),
        )
    });
    let options = ExportOptions::new(args.compression.parse()?).progress(progress);
    let desc = Exchange::new(&store).export_layout(&id, &path, reference, &options);
    Output::finish(bar);
    let desc = desc?;
    ctx.out.report(
        || json!({ "image": id.to_string(), "manifest": desc.digest().to_string(), "size": desc.size() }),
        || outln!("{}", desc.digest()),
    );
    Ok(())
}

/// Write an image into a `docker save` archive; prints nothing as text.
pub(crate) fn export_archive(ctx: &Ctx, args: &ExportArchiveArgs) -> CmdResult {
    let store = ctx.open()?;
    let id = store.resolve_image(&args.image)?;
    // A tag given as IMAGE names the image in the archive too.
    let repo_tags: Vec<String> = match &args.tag {
        Some(name) => vec![tag_name(name)?.to_string()],
        None => match args.image.parse::<layerstore::TagName>() {
            Ok(tag) if store.tag(&tag)? == Some(id) => vec![tag.to_string()],
            _ => Vec::new(),
        },
    };
    let bar = ctx
        .out
        .spinner(format!("exporting {id} to {}", args.file.display()));
    let done = Exchange::new(&store).export_docker_archive(&id, &args.file, &repo_tags);
    Output::finish(bar);
    done?;
    ctx.out.report(
        || json!({ "image": id.to_string(), "file": args.file, "repo_tags": repo_tags }),
        || {},
    );
    Ok(())
}

/// `LAYOUT[:REF]`: the reference is what follows the last `:` when it holds
/// no `/` (so a path with a colon in a directory name still works).
fn split_layout(arg: &str) -> (PathBuf, Option<&str>) {
    match arg.rsplit_once(':') {
        Some((path, reference))
            if !path.is_empty() && !reference.is_empty() && !reference.contains('/') =>
        {
            (PathBuf::from(path), Some(reference))
        }
        _ => (PathBuf::from(arg), None),
    }
}
