//! `history IMAGE [--no-trunc]`: the steps that made an image, newest
//! first, as `docker history` shows them.

use serde_json::json;

use crate::images::rfc3339;
use crate::output::{ago, table};
use crate::{CmdResult, Ctx};

#[derive(clap::Args)]
pub(crate) struct Args {
    image: String,
    /// Print layer ids and steps whole.
    #[arg(long)]
    no_trunc: bool,
}

/// How much of a step `CREATED BY` shows without `--no-trunc`, as Docker.
const CREATED_BY_WIDTH: usize = 45;

/// One row per history record, newest first: `LAYER  CREATED  CREATED BY
/// SIZE  COMMENT`.
pub(crate) fn run(ctx: &Ctx, args: &Args) -> CmdResult {
    let store = ctx.open()?;
    let id = store.resolve_image(&args.image)?;
    let mut steps = store.history(&id)?;
    steps.reverse();
    ctx.out.report(
        || {
            steps
                .iter()
                .map(|s| {
                    json!({
                        "layer": s.layer.map(|l| l.to_string()),
                        "created": s.history.created.map(rfc3339),
                        "created_by": s.history.created_by,
                        "size": s.size,
                        "comment": s.history.comment,
                        "empty_layer": s.history.empty_layer,
                    })
                })
                .collect()
        },
        || {
            let rows: Vec<Vec<String>> = steps
                .iter()
                .map(|s| {
                    let layer = match s.layer {
                        Some(l) if args.no_trunc => l.to_string(),
                        Some(l) => l.to_string()[..19].to_owned(),
                        None => "-".to_owned(),
                    };
                    let created = match s.history.created {
                        Some(t) if ctx.out.human() => ago(t.secs),
                        Some(t) => rfc3339(t),
                        None => "-".to_owned(),
                    };
                    vec![
                        layer,
                        created,
                        one_line(&s.history.created_by, !args.no_trunc),
                        ctx.out.size(s.size),
                        one_line(&s.history.comment, !args.no_trunc),
                    ]
                })
                .collect();
            table(
                &["LAYER", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
                &rows,
                &[3],
            );
        },
    );
    Ok(())
}

/// A step on one line (control characters escaped), cut to
/// [`CREATED_BY_WIDTH`] characters with `…` when `truncate`.
fn one_line(text: &str, truncate: bool) -> String {
    let escaped: String = text
        .chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect();
    if truncate && escaped.chars().count() > CREATED_BY_WIDTH {
        let mut cut: String = escaped.chars().take(CREATED_BY_WIDTH - 1).collect();
        cut.push('…');
        cut
    } else {
        escaped
    }
}
