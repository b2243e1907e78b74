//! OCI distribution registries: `push IMAGE REGISTRY/REPO[:TAG]` and
//! `pull REGISTRY/REPO[:TAG] [--tag NAME]`, each with `--insecure`.

use layerstore::oci::{
    Credentials, Exchange, PullReport, PushOptions, PushReport, Registry, RegistryOptions,
    RegistryRef,
};
use serde_json::json;

use crate::output::{Output, outln};
use crate::{CmdResult, Ctx, Failure, tag_name};

#[derive(clap::Args)]
pub(crate) struct PushArgs {
    image: String,
    #[arg(value_name = "REGISTRY/REPO[:TAG]")]
    dest: String,
    /// Plain http (a loopback registry only).
    #[arg(long)]
    insecure: bool,
    /// How layers are compressed: `zstd-seekable` (any current client reads
    /// it as zstd; layerstore pulls it a chunk at a time), `gzip` for the
    /// oldest clients, `zstd`, `none`.
    #[arg(
        long,
        default_value = "zstd-seekable",
        value_name = "zstd-seekable|gzip|zstd|none"
    )]
    compression: String,
    /// Seekable layers: list the files of FILE (one path a line, as
    /// `mount --lazy --record-prefetch` writes) as those a lazy view fetches
    /// first.
    #[arg(long, value_name = "FILE")]
    prefetch: Option<std::path::PathBuf>,
}

#[derive(clap::Args)]
pub(crate) struct PullArgs {
    #[arg(value_name = "REGISTRY/REPO[:TAG]")]
    src: String,
    #[arg(long, value_name = "NAME")]
    tag: Option<String>,
    /// Plain http (a loopback registry only).
    #[arg(long)]
    insecure: bool,
}

/// A registry client, with the credentials of the environment:
/// `$LAYERSTORE_REGISTRY_TOKEN` (a bearer token), else
/// `$LAYERSTORE_REGISTRY_USER` and `$LAYERSTORE_REGISTRY_PASSWORD`, else
/// anonymous. An empty variable counts as unset.
fn registry(host: &str, insecure: bool) -> Result<Registry, Failure> {
    registry_with(host, RegistryOptions::default().insecure(insecure))
}

/// A registry client with `options` and the credentials of the environment,
/// as [`registry`].
pub(crate) fn registry_with(host: &str, options: RegistryOptions) -> Result<Registry, Failure> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let credentials = match (
        var("LAYERSTORE_REGISTRY_USER"),
        var("LAYERSTORE_REGISTRY_PASSWORD"),
        var("LAYERSTORE_REGISTRY_TOKEN"),
    ) {
        (_, _, Some(token)) => Credentials::Bearer { token },
        (Some(username), Some(password), None) => Credentials::Basic { username, password },
        _ => Credentials::Anonymous,
    };
    Ok(Registry::new(host, &options.credentials(credentials))?)
}

/// The paths of a prefetch list file: one a line, `/` at the start or not,
/// blank lines skipped.
fn prefetch_list(path: &std::path::Path) -> Result<Vec<layerstore::TreePath>, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::Usage(format!("cannot read '{}': {e}", path.display())))?;
    text.lines()
        .map(|l| l.trim_start_matches('/'))
        .filter(|l| !l.is_empty())
        .map(|l| {
            layerstore::TreePath::new(l).map_err(|e| {
                Failure::Usage(format!("'{}': '{l}' is not a path: {e}", path.display()))
            })
        })
        .collect()
}

/// Push an image, uploading only the blobs the registry lacks; prints what
/// was uploaded and the manifest digest.
pub(crate) fn push(ctx: &Ctx, args: &PushArgs) -> CmdResult {
    let store = ctx.open()?;
    let id = store.resolve_image(&args.image)?;
    let dest: RegistryRef = args.dest.parse()?;
    let reg = registry(&dest.host, args.insecure)?;
    // A bar of blobs: the layers and the config.
    let blobs = store.image(&id)?.layers().len() as u64 + 1;
    let bar = ctx.out.bar(format!("pushing {id} to {dest}"), "blobs");
    if let Some(bar) = &bar {
        bar.set_length(blobs);
    }
    let progress = |r: &PushReport| {
        if let Some(bar) = &bar {
            bar.set_position(r.blobs_uploaded + r.blobs_present + r.blobs_mounted);
            bar.set_message(format!(
                "pushing to {dest}: {} uploaded ({} bytes), {} present",
                r.blobs_uploaded, r.bytes_uploaded, r.blobs_present
            ));
        }
    };
    let prefetch = match &args.prefetch {
        Some(path) => prefetch_list(path)?,
        None => Vec::new(),
    };
    let options = PushOptions::default()
        .progress(&progress)
        .compression(args.compression.parse()?)
        .prefetch(&prefetch);
    let report = Exchange::new(&store).push(&reg, &id, &dest, &options);
    Output::finish(bar);
    let report = report?;
    ctx.out.report(
        || {
            json!({
                "image": id.to_string(),
                "manifest": report.manifest_digest,
                "blobs_uploaded": report.blobs_uploaded,
                "bytes_uploaded": report.bytes_uploaded,
                "blobs_present": report.blobs_present,
                "blobs_mounted": report.blobs_mounted,
                "layers_exported": report.layers_exported,
                "layers_reused": report.layers_reused,
            })
        },
        || {
            outln!("blobs uploaded: {}", report.blobs_uploaded);
            outln!("blobs already present: {}", report.blobs_present);
            outln!("layers exported: {}", report.layers_exported);
            outln!(
                "layers reused from an earlier export: {}",
                report.layers_reused
            );
            outln!("manifest: {}", report.manifest_digest);
        },
    );
    Ok(())
}

/// Pull an image, fetching only the layers the store lacks; prints the image
/// id last.
pub(crate) fn pull(ctx: &Ctx, args: &PullArgs) -> CmdResult {
    let store = ctx.open()?;
    let src: RegistryRef = args.src.parse()?;
    let tag = args.tag.as_deref().map(tag_name).transpose()?;
    let reg = registry(&src.host, args.insecure)?;
    // A bar of bytes against the layers' size (known once the manifest is):
    // a pull fetches at most that, and less where it skips or fetches chunks.
    let bar = ctx.out.bar(format!("pulling {src}"), "bytes");
    let progress = |r: &PullReport| {
        if let Some(bar) = &bar {
            bar.set_length(r.layers_size.max(r.bytes_fetched));
            bar.set_position(r.bytes_fetched);
            bar.set_message(format!(
                "pulling {src}: {} blobs, {} layers a chunk at a time, {} already here",
                r.blobs_fetched, r.layers_partial, r.layers_skipped
            ));
        }
    };
    let result = Exchange::new(&store).pull(&reg, &src, tag.as_ref(), &progress);
    Output::finish(bar);
    let (id, report) = result?;
    ctx.out.report(
        || {
            json!({
                "image": id.to_string(),
                "manifest": report.manifest_digest,
                "blobs_fetched": report.blobs_fetched,
                "bytes_fetched": report.bytes_fetched,
                "layers_skipped": report.layers_skipped,
                "layers_partial": report.layers_partial,
                "chunks_fetched": report.chunks_fetched,
                "layers_size": report.layers_size,
                "fetched_whole": report.fetched_whole,
            })
        },
        || {
            outln!("blobs fetched: {}", report.blobs_fetched);
            outln!("layers already present: {}", report.layers_skipped);
            if report.layers_partial > 0 {
                outln!(
                    "layers pulled a chunk at a time: {} ({} chunks)",
                    report.layers_partial,
                    report.chunks_fetched
                );
            }
            for why in &report.fetched_whole {
                outln!("fetched whole: {why}");
            }
            outln!(
                "bytes fetched: {} of the layers' {}",
                report.bytes_fetched,
                report.layers_size
            );
            outln!("{id}");
        },
    );
    Ok(())
}
