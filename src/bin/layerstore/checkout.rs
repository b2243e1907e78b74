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
    let bar = ctx
        .out
        .spinner(format!("checking out {id} into {}", dest.display()));
    let outcome = store.checkout(&tree, dest, &CheckoutOptions::default());
    Output::finish(bar);
    let outcome = outcome?;
    ctx.out.report(
        || json!({ "image": id.to_string(), "files": outcome.files, "bytes": outcome.bytes }),
        || {},
    );
    Ok(())
}
