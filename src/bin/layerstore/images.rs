//! The images and their tags: `images`, `inspect IMAGE`, `tag IMAGE NAME`,
//! `untag NAME`.

use layerstore::{EntryKind, Snapshot, Timestamp};
use serde_json::json;

use crate::output::outln;
use crate::{CmdResult, Ctx, Failure, tag_name};

#[derive(clap::Args)]
pub(crate) struct InspectArgs {
    image: String,
}

#[derive(clap::Args)]
pub(crate) struct TagArgs {
    image: String,
    name: String,
}

#[derive(clap::Args)]
pub(crate) struct UntagArgs {
    name: String,
}

/// The tagged images: `NAME  IMAGE-ID  LAYERS  SIZE  CREATED`.
pub(crate) fn images(ctx: &Ctx) -> CmdResult {
    let store = ctx.open()?;
    let mut rows = Vec::new();
    for (name, id) in store.tags()? {
        let image = store.image(&id)?;
        let size = tree_size(&store.snapshot(&image.rootfs())?);
        let created = image
            .config()
            .created
            .map_or_else(|| "-".to_owned(), rfc3339);
        rows.push((name.to_string(), id, image.layers().len(), size, created));
    }
    ctx.out.report(
        || {
            rows.iter()
                .map(|(n, id, l, s, c)| json!({ "name": n, "id": id.to_string(), "layers": l, "size": s, "created": c }))
                .collect()
        },
        || {
            let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(4);
            outln!(
                "{:width$}  {:19}  {:>6}  {:>12}  CREATED",
                "NAME", "IMAGE-ID", "LAYERS", "SIZE"
            );
            for (name, id, layers, size, created) in &rows {
                outln!(
                    "{name:width$}  {:19}  {layers:>6}  {:>12}  {created}",
                    &id.to_string()[..19],
                    ctx.out.size(*size)
                );
            }
        },
    );
    Ok(())
}

/// An image as pretty-printed JSON, with or without `--json`.
pub(crate) fn inspect(ctx: &Ctx, args: &InspectArgs) -> CmdResult {
    let store = ctx.open()?;
    let id = store.resolve_image(&args.image)?;
    let image = store.image(&id)?;
    let mut layers = Vec::new();
    for layer_id in image.layers() {
        let layer = store.layer(layer_id)?;
        let size: u64 = layer
            .upserts()
            .iter()
            .map(|e| match &e.kind {
                EntryKind::File { size, .. } => *size,
                _ => 0,
            })
            .sum();
        layers.push(json!({ "id": layer_id.to_string(), "size": size }));
    }
    let config = image.config();
    let history: Vec<_> = image
        .history()
        .iter()
        .map(|h| {
            json!({
                "created_by": h.created_by,
                "comment": h.comment,
                "created": h.created.map(rfc3339),
                "empty_layer": h.empty_layer,
            })
        })
        .collect();
    let doc = json!({
        "id": id.to_string(),
        "rootfs": image.rootfs().to_string(),
        "layers": layers,
        "config": {
            "env": config.env,
            "cmd": config.cmd,
            "entrypoint": config.entrypoint,
            "workdir": config.workdir,
            "user": config.user,
            "labels": config.labels,
            "created": config.created.map(rfc3339),
            "author": config.author,
        },
        "history": history,
    });
    // JSON is this command's text too, pretty-printed in both modes.
    outln!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    Ok(())
}

/// Point NAME at IMAGE. Prints nothing.
pub(crate) fn tag(ctx: &Ctx, args: &TagArgs) -> CmdResult {
    let store = ctx.open()?;
    let id = store.resolve_image(&args.image)?;
    store.set_tag(&tag_name(&args.name)?, &id)?;
    Ok(())
}

/// Remove the tag NAME; a tag that does not exist is bad input. Prints
/// nothing.
pub(crate) fn untag(ctx: &Ctx, args: &UntagArgs) -> CmdResult {
    let store = ctx.open()?;
    let name = tag_name(&args.name)?;
    if store.remove_tag(&name)? {
        Ok(())
    } else {
        Err(Failure::Usage(format!("no tag '{name}'")))
    }
}

/// The sum of a tree's file sizes.
pub(crate) fn tree_size(tree: &Snapshot) -> u64 {
    tree.iter()
        .map(|e| match &e.kind {
            EntryKind::File { size, .. } => *size,
            _ => 0,
        })
        .sum()
}

/// RFC 3339 in UTC, to the second.
pub(crate) fn rfc3339(t: Timestamp) -> String {
    let days = t.secs.div_euclid(86_400);
    let secs = t.secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}
