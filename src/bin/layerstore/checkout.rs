//! `checkout IMAGE DEST`: materialise an image's flattened tree.

use std::path::PathBuf;

use layerstore::CheckoutOptions;
use serde_json::json;

use crate::output::Output;
use crate::{CmdResult, Ctx};

#[derive(clap::Args)]
pub(crate) struct Args {
    image: String,
    dest: PathBuf,
}

/// Materialise IMAGE into DEST (absent or empty). Prints nothing as text.
pub(crate) fn run(ctx: &Ctx, args: &Args) -> CmdResult {
    let dest = &args.dest;
    let store = ctx.open()?;
    let id = store.resolve_image(&args.image)?;
    let tree = store.image_tree(&id)?;
    // Kept from an online gc while its files are read, tagged or not (the
    // tag may go meanwhile). Where the store cannot be written (read-only
    // media, another user's store), the checkout goes on unprotected.
    let _lease = store.lease_root(id).ok();
    let bar = ctx.out.bar(
        format!("checking out {} into {}", args.image, dest.display()),
        "bytes",
    );
    let progress = Output::hook(bar.as_ref(), |e| {
        let entries = e.entries_total.unwrap_or(e.entries);
        (
            e.bytes,
            e.bytes_total,
            format!("{}/{entries} entries", e.entries),
        )
    });
    let options = CheckoutOptions::default().progress(progress);
    let outcome = store.checkout(&tree, dest, &options);
    Output::finish(bar);
    let outcome = outcome?;
    ctx.out.report(
        || json!({ "image": id.to_string(), "files": outcome.files, "bytes": outcome.bytes }),
        || {},
    );
    Ok(())
}
