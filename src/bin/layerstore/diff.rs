//! `diff A B [--exit-code]`: the changes from one tree to another, each an
//! image or a directory.

use std::path::Path;

use layerstore::{ScanOptions, Snapshot, SnapshotId, Store};
use serde_json::json;

use crate::{CmdResult, Ctx, Failure, output};

#[derive(clap::Args)]
pub(crate) struct Args {
    a: String,
    b: String,
    /// Exit with 1 when there are differences.
    #[arg(long)]
    exit_code: bool,
}

/// One line per change (`A`, `M` or `D` and the path), sorted by path.
pub(crate) fn run(ctx: &Ctx, args: &Args) -> CmdResult {
    let (a, b) = (args.a.as_str(), args.b.as_str());
    let store = ctx.open()?;
    let changes = if Path::new(a).is_dir() || Path::new(b).is_dir() {
        tree_of(&store, a)?.changes(&tree_of(&store, b)?)
    } else {
        // Two images: only the directories that differ are read.
        let rootfs = |what: &str| -> Result<SnapshotId, Failure> {
            Ok(store.image(&store.resolve_image(what)?)?.rootfs())
        };
        store.changes_stored(&rootfs(a)?, &rootfs(b)?)?
    };
    ctx.out.report(
        || {
            changes
                .iter()
                .map(|c| json!({ "kind": c.kind.letter().to_string(), "path": String::from_utf8_lossy(c.path.as_bytes()) }))
                .collect()
        },
        || {
            output::print(|out| {
                for change in &changes {
                    writeln!(out, "{change}")?;
                }
                Ok(())
            });
        },
    );
    if args.exit_code && !changes.is_empty() {
        return Err(Failure::Found);
    }
    Ok(())
}

/// An image reference or a directory, as a tree.
fn tree_of(store: &Store, what: &str) -> Result<Snapshot, Failure> {
    let path = Path::new(what);
    if path.is_dir() {
        return Ok(store.scan(path, &ScanOptions::default())?.snapshot);
    }
    Ok(store.image_tree(&store.resolve_image(what)?)?)
}
