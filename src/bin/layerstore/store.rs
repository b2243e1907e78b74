//! The store as a whole: `init`, `du`, `gc [--wait SECS]`,
//! `fsck [--repair]`.

use std::collections::HashSet;
use std::time::Duration;

use layerstore::{FsckOptions, GcOptions, ImageId, Store, StoreOptions};
use serde_json::json;

use crate::images::tree_size;
use crate::output::{Output, outln, table, warn};
use crate::{CmdResult, Ctx, Failure};

#[derive(clap::Args)]
pub(crate) struct DuArgs {
    /// Per image: its size, the bytes it shares with other images and the
    /// bytes only it holds (what removing it would free).
    #[arg(short, long)]
    verbose: bool,
}

#[derive(clap::Args)]
pub(crate) struct GcArgs {
    /// Wait up to this many seconds for another gc (or a repair) to finish.
    #[arg(long, default_value_t = 10)]
    wait: u64,
    /// Only report what would be freed; change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(clap::Args)]
pub(crate) struct FsckArgs {
    /// Rebuild lost indexes, quarantine damaged packs, clean tmp/.
    #[arg(long)]
    repair: bool,
}

/// Create the store (idempotent); prints its path.
pub(crate) fn init(ctx: &Ctx) -> CmdResult {
    let dir = ctx.store_dir();
    Store::create(&dir, &StoreOptions::default())?;
    ctx.out
        .report(|| json!({ "store": dir }), || outln!("{}", dir.display()));
    Ok(())
}

/// Logical, unique and stored bytes, the chunk count and the dedup ratio;
/// with `-v`, per image too.
pub(crate) fn du(ctx: &Ctx, args: &DuArgs) -> CmdResult {
    let store = ctx.open()?;
    if args.verbose {
        return du_images(ctx, &store);
    }
    let mut logical = 0u64;
    let mut seen = HashSet::<ImageId>::new();
    for (_, id) in store.tags()? {
        if seen.insert(id) {
            logical += tree_size(&store.image_tree(&id)?);
        }
    }
    let stats = store.stats()?;
    let stored = stats.stored_bytes + stats.index_bytes;
    let ratio = if stats.unique_bytes == 0 {
        1.0
    } else {
        logical as f64 / stats.unique_bytes as f64
    };
    ctx.out.report(
        || json!({ "logical_bytes": logical, "unique_bytes": stats.unique_bytes, "stored_bytes": stored, "chunks": stats.chunks, "dedup_ratio": ratio }),
        || {
            outln!("logical bytes: {}", ctx.out.size(logical));
            outln!("unique bytes: {}", ctx.out.size(stats.unique_bytes));
            outln!("stored bytes: {}", ctx.out.size(stored));
            outln!("chunks: {}", stats.chunks);
            outln!("dedup ratio: {ratio:.2}");
        },
    );
    Ok(())
}

/// `du -v`: one row per tagged image, `IMAGE  ID  SIZE  STORED  SHARED
/// UNIQUE`.
fn du_images(ctx: &Ctx, store: &Store) -> CmdResult {
    let usage = store.image_usage()?;
    let names = |u: &layerstore::ImageUsage| {
        u.tags
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    ctx.out.report(
        || {
            usage
                .iter()
                .map(|u| {
                    json!({
                        "image": u.image.to_string(),
                        "tags": u.tags.iter().map(ToString::to_string).collect::<Vec<_>>(),
                        "logical_bytes": u.logical_bytes,
                        "stored_bytes": u.stored_bytes,
                        "shared_bytes": u.shared_bytes,
                        "unique_bytes": u.unique_bytes,
                    })
                })
                .collect()
        },
        || {
            let rows: Vec<Vec<String>> = usage
                .iter()
                .map(|u| {
                    vec![
                        names(u),
                        u.image.to_string()[..19].to_owned(),
                        ctx.out.size(u.logical_bytes),
                        ctx.out.size(u.stored_bytes),
                        ctx.out.size(u.shared_bytes),
                        ctx.out.size(u.unique_bytes),
                    ]
                })
                .collect();
            table(
                &["IMAGE", "IMAGE-ID", "SIZE", "STORED", "SHARED", "UNIQUE"],
                &rows,
                &[2, 3, 4, 5],
            );
        },
    );
    Ok(())
}

/// Remove everything no tag, cache entry or container reaches, then the
/// overlay backend's extracted layers nothing needs any more.
pub(crate) fn gc(ctx: &Ctx, args: &GcArgs) -> CmdResult {
    let store = ctx.open()?;
    // Roots walked, then (its length known once the walk is done) bytes of
    // packs rewritten.
    let bar = ctx.out.bar("collecting garbage".to_owned(), "bytes");
    let progress = Output::hook(bar.as_ref(), |e| match e.bytes_total {
        Some(total) => (e.bytes, Some(total), "rewriting packs".to_owned()),
        None => (
            0,
            None,
            format!(
                "walking {} of {} roots",
                e.entries,
                e.entries_total.unwrap_or(0)
            ),
        ),
    });
    let options = GcOptions::default()
        .lock_timeout(Duration::from_secs(args.wait))
        .dry_run(args.dry_run)
        .progress(progress);
    let report = store.gc(&options);
    Output::finish(bar);
    let report = report?;
    // Layers extracted for overlayfs that no tag or container needs any more.
    let pruned = if args.dry_run {
        Vec::new()
    } else {
        layerstore::mount::OverlayBackend::prune(&store)?
    };
    for (path, why) in &report.packs_skipped {
        warn(format_args!("left '{}' alone: {why}", path.display()));
    }
    let would = if args.dry_run { "would be " } else { "" };
    ctx.out.report(
        || {
            json!({
                "dry_run": args.dry_run,
                "bytes_freed": report.bytes_freed,
                "chunks_freed": report.chunks_freed,
                "packs_deleted": report.packs_deleted,
                "packs_repacked": report.packs_repacked,
                "live_chunks": report.live_chunks,
                "leased_chunks_kept": report.leased_chunks_kept,
                "leased_bytes_kept": report.leased_bytes_kept,
                "leases_live": report.leases_live,
                "leases_removed": report.leases_removed,
                "leased_roots": report.leased_roots,
                "walk_skipped": report.walk_skipped,
                "extracted_layers_deleted": pruned.len(),
            })
        },
        || {
            outln!("bytes {would}freed: {}", report.bytes_freed);
            outln!("chunks {would}freed: {}", report.chunks_freed);
            if report.leased_chunks_kept > 0 || report.leases_live > 0 {
                outln!(
                    "kept for live processes: {} chunks, {} bytes (leases of {} processes)",
                    report.leased_chunks_kept,
                    report.leased_bytes_kept,
                    report.leases_live
                );
            }
            if report.leased_roots > 0 {
                outln!("kept for live readers: {} roots", report.leased_roots);
            }
        },
    );
    Ok(())
}

/// Verify every pack, chunk, object and ref (and repair, with `--repair`);
/// exit 1 when anything is wrong.
pub(crate) fn fsck(ctx: &Ctx, args: &FsckArgs) -> CmdResult {
    let store = ctx.open()?;
    let bar = ctx.out.bar("verifying packs".to_owned(), "bytes");
    let progress = Output::hook(bar.as_ref(), |e| {
        (
            e.bytes,
            e.bytes_total,
            format!(
                "verifying {} of {} packs",
                e.entries,
                e.entries_total.unwrap_or(0)
            ),
        )
    });
    let options = FsckOptions::default()
        .repair(args.repair)
        .progress(progress);
    let report = store.fsck(&options);
    Output::finish(bar);
    let report = report?;
    ctx.out.report(
        || {
            let problems: Vec<_> = report
                .problems
                .iter()
                .map(|p| json!({ "path": p.path, "problem": p.what }))
                .collect();
            let repaired: Vec<_> = report
                .repaired
                .iter()
                .map(|p| json!({ "path": p.path, "repair": p.what }))
                .collect();
            let affected: Vec<_> = report
                .affected_images
                .iter()
                .map(|a| json!({ "tag": a.tag.to_string(), "image": a.image.to_string(), "missing": a.missing }))
                .collect();
            json!({
                "clean": report.is_clean(),
                "problems": problems,
                "repaired": repaired,
                "affected_images": affected,
                "garbage": report.garbage,
                "fetching": report.fetching.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "chunks_checked": report.chunks_checked,
                "bytes_checked": report.bytes_checked,
            })
        },
        || {
            for p in &report.problems {
                outln!("problem: {}: {}", p.path.display(), p.what);
            }
            for p in &report.repaired {
                outln!("repaired: {}: {}", p.path.display(), p.what);
            }
            for a in &report.affected_images {
                outln!("affected image: {} ({}): {}", a.tag, a.image, a.what);
            }
            for g in &report.garbage {
                outln!("unreferenced: {}", g.display());
            }
            for image in &report.fetching {
                outln!("still being fetched (lazy): {image}");
            }
            outln!(
                "checked {} chunks, {} bytes: {}",
                report.chunks_checked,
                report.bytes_checked,
                if report.is_clean() {
                    "clean"
                } else {
                    "problems found"
                }
            );
        },
    );
    if report.is_clean() {
        Ok(())
    } else {
        Err(Failure::Found)
    }
}
