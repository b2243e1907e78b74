//! `commit DIR [--parent IMAGE] [--tag NAME] [--message TEXT]`: scan a
//! directory into a new layer and image.

use std::path::PathBuf;

use layerstore::{History, ImageConfig, ScanOptions, Timestamp};
use serde_json::json;

use crate::output::{Output, outln, warn};
use crate::{CmdResult, Ctx, Failure, tag_name};

#[derive(clap::Args)]
pub(crate) struct Args {
    dir: PathBuf,
    #[arg(long, value_name = "IMAGE")]
    parent: Option<String>,
    #[arg(long, value_name = "NAME")]
    tag: Option<String>,
    #[arg(long, value_name = "TEXT")]
    message: Option<String>,
}

/// Scan DIR; the new layer is its diff against the parent image's tree (or
/// the whole tree), the new image the parent's layers and it. Prints its id.
pub(crate) fn run(ctx: &Ctx, args: &Args) -> CmdResult {
    let dir = &args.dir;
    let store = ctx.open()?;
    let tag = args.tag.as_deref().map(tag_name).transpose()?;
    let parent = args
        .parent
        .as_deref()
        .map(|p| store.resolve_image(p))
        .transpose()?;
    let bar = ctx
        .out
        .bar(format!("scanning {}", dir.display()), "entries");
    let progress = Output::hook(bar.as_ref(), |e| {
        let read = crate::output::human_size(e.bytes);
        (e.entries, e.entries_total, format!("{read} read"))
    });
    let scanned = store.scan(dir, &ScanOptions::default().progress(progress));
    Output::finish(bar);
    let scanned = scanned?;
    for warning in &scanned.warnings {
        warn(warning);
    }
    let rootfs = match scanned.snapshot_id {
        Some(id) => id,
        None => store.put_snapshot(&scanned.snapshot)?,
    };
    let created = Timestamp::now();
    let config = match &parent {
        Some(id) => store.image(id)?.config().clone(),
        None => ImageConfig::default(),
    };
    let config = ImageConfig {
        created: Some(created),
        ..config
    };
    let history = History {
        created_by: format!("layerstore commit {}", dir.display()),
        comment: args.message.clone().unwrap_or_default(),
        created: Some(created),
        empty_layer: false,
    };
    let id = match &parent {
        // The layer from the parent's tree reads only the directories that
        // differ.
        Some(parent) => {
            let layer = store.diff_stored(&store.image(parent)?.rootfs(), &rootfs)?;
            store.put_child_image_of(Some(parent), &layer, rootfs, Some(config), history)?
        }
        // Without a parent, the layer is the whole tree, stored as its id.
        None => store.put_tree_image(rootfs, config, history)?,
    };
    // Durable before it is named: a tag never points at a partial image.
    store.flush()?;
    if let Some(tag) = &tag {
        store.set_tag(tag, &id)?;
    }
    ctx.out.try_report(
        || {
            let layer = store.image(&id)?.layers().last().map(ToString::to_string);
            Ok::<_, Failure>(
                json!({ "image": id.to_string(), "layer": layer, "tag": tag.map(|t| t.to_string()) }),
            )
        },
        || outln!("{id}"),
    )?;
    // The process exits next: freeing a large tree's entries one at a time
    // would only lengthen the commit (by 30 ms for 84 000 entries).
    std::mem::forget(scanned);
    Ok(())
}
