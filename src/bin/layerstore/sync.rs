//! `sync IMAGE --to DIR`: copy an image into another store.

use std::path::PathBuf;

use layerstore::{Store, StoreOptions, SyncOptions, SyncReport, TagName};
use serde_json::json;

use crate::output::{Output, human_size, outln};
use crate::{CmdResult, Ctx};

#[derive(clap::Args)]
pub(crate) struct Args {
    image: String,
    #[arg(long, value_name = "DIR")]
    to: PathBuf,
}

/// Copy IMAGE into the store at DIR (created if absent), moving only the
/// chunks it lacks; a tag given as IMAGE is set there too. Prints the chunks
/// and bytes moved and skipped.
pub(crate) fn run(ctx: &Ctx, args: &Args) -> CmdResult {
    let (reference, to) = (args.image.as_str(), args.to.as_path());
    let store = ctx.open()?;
    let id = store.resolve_image(reference)?;
    // A tag keeps its name in the target; an id stays untagged.
    let tag = reference
        .parse::<TagName>()
        .ok()
        .filter(|name| store.tag(name).ok().flatten() == Some(id));
    let target = Store::create(to, &StoreOptions::default())?;
    let bar = ctx.out.bar(
        format!("syncing {} to {}", reference, to.display()),
        "chunks",
    );
    let progress = |r: &SyncReport| {
        if let Some(bar) = &bar {
            bar.set_length(r.chunks_total);
            bar.set_position(r.chunks_moved + r.chunks_skipped);
            bar.set_message(format!("{} moved", human_size(r.bytes_moved)));
        }
    };
    let mut options = SyncOptions::default().progress(&progress);
    options.tag = tag.as_ref();
    let report = store.sync_image(&id, &target, &options);
    Output::finish(bar);
    let report = report?;
    ctx.out.report(
        || {
            json!({
                "image": id.to_string(),
                "chunks_moved": report.chunks_moved,
                "bytes_moved": report.bytes_moved,
                "chunks_skipped": report.chunks_skipped,
                "bytes_skipped": report.bytes_skipped,
                "objects_moved": report.objects_moved,
            })
        },
        || {
            outln!("chunks moved: {}", report.chunks_moved);
            outln!("bytes moved: {}", report.bytes_moved);
            outln!("chunks skipped: {}", report.chunks_skipped);
            outln!("bytes skipped: {}", report.bytes_skipped);
        },
    );
    Ok(())
}
