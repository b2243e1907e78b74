//! `build CONTEXT [-f FILE] [--tag NAME] [--no-cache] [--run-timeout SECS]`:
//! build a Containerfile with the layer cache.

use std::path::PathBuf;
use std::time::Duration;

use layerstore::build::{BuildOptions, Builder};
use serde_json::json;

use crate::output::outln;
use crate::{CmdResult, Ctx, tag_name};

#[derive(clap::Args)]
pub(crate) struct Args {
    context: PathBuf,
    /// The Containerfile (default CONTEXT/Containerfile, else CONTEXT/Dockerfile).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<PathBuf>,
    #[arg(long, value_name = "NAME")]
    tag: Option<String>,
    /// Rebuild every step.
    #[arg(long)]
    no_cache: bool,
    /// Fail a RUN step that takes longer than this many seconds.
    #[arg(long, value_name = "SECONDS")]
    run_timeout: Option<u64>,
}

/// One line per step as it is done (`CACHED` or `BUILT`, the layer id and the
/// instruction), the image id last.
pub(crate) fn run(ctx: &Ctx, args: &Args) -> CmdResult {
    let store = ctx.open()?;
    let mut options = BuildOptions::default().no_cache(args.no_cache);
    options.file.clone_from(&args.file);
    options.tag = args.tag.as_deref().map(tag_name).transpose()?;
    options.run_timeout = args.run_timeout.map(Duration::from_secs);
    let report = Builder::new(&store).build(&args.context, &options, |step| {
        let what = if step.cached { "CACHED" } else { "BUILT" };
        let layer = step.layer.map_or_else(|| "-".to_owned(), |l| l.to_string());
        ctx.out
            .line(format_args!("{what} {layer}  {}", step.instruction));
    })?;
    ctx.out.report(
        || {
            let steps: Vec<_> = report
                .steps
                .iter()
                .map(|s| {
                    json!({
                        "line": s.line,
                        "instruction": s.instruction,
                        "cached": s.cached,
                        "layer": s.layer.map(|l| l.to_string()),
                        "image": s.image.to_string(),
                    })
                })
                .collect();
            json!({ "image": report.image.to_string(), "steps": steps })
        },
        || outln!("{}", report.image),
    );
    Ok(())
}
