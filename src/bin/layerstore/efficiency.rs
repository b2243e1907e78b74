//! `efficiency IMAGE [B] [--ci] [--lowest-efficiency F]
//! [--highest-wasted-bytes N] [--highest-user-wasted-percent F] [--top N]`:
//! dive's analysis of an image's layers (or two images side by side), with
//! the bytes the store keeps beside each figure.

use layerstore::Efficiency;
use serde_json::{Value, json};

use crate::output::{outln, table};
use crate::{CmdResult, Ctx, Failure};

#[derive(clap::Args)]
pub(crate) struct Args {
    image: String,
    /// A second image, compared with the first.
    other: Option<String>,
    /// Check thresholds and exit 1 when one is breached (dive's `--ci`):
    /// those given, else dive's defaults (lowest efficiency 0.9, highest
    /// user-wasted share 0.1).
    #[arg(long)]
    ci: bool,
    /// Fail `--ci` when the efficiency score is below this (0 to 1).
    #[arg(long, value_name = "RATIO", requires = "ci")]
    lowest_efficiency: Option<f64>,
    /// Fail `--ci` when more bytes than this are wasted.
    #[arg(long, value_name = "BYTES", requires = "ci")]
    highest_wasted_bytes: Option<u64>,
    /// Fail `--ci` when the user-wasted share is above this (0 to 1).
    #[arg(long, value_name = "RATIO", requires = "ci")]
    highest_user_wasted_percent: Option<f64>,
    /// How many of the paths that waste most to show.
    #[arg(long, value_name = "N", default_value_t = 10)]
    top: usize,
}

/// One `--ci` rule, checked.
struct Check {
    rule: &'static str,
    value: f64,
    limit: f64,
    passed: bool,
}

/// The report of one image, or of two side by side; under `--ci`, exit 1
/// when a threshold is breached (each image is checked).
pub(crate) fn run(ctx: &Ctx, args: &Args) -> CmdResult {
    let store = ctx.open()?;
    let mut reports = vec![store.efficiency(&store.resolve_image(&args.image)?)?];
    if let Some(other) = &args.other {
        reports.push(store.efficiency(&store.resolve_image(other)?)?);
    }
    let checks: Vec<Vec<Check>> = if args.ci {
        reports.iter().map(|r| checks(args, r)).collect()
    } else {
        Vec::new()
    };
    let failed = checks.iter().flatten().any(|c| !c.passed);
    ctx.out.report(
        || {
            let docs: Vec<Value> = reports
                .iter()
                .enumerate()
                .map(|(i, r)| report_json(r, args.top, checks.get(i)))
                .collect();
            match docs.as_slice() {
                [one] => one.clone(),
                [a, b] => json!({ "a": a, "b": b }),
                _ => Value::Null,
            }
        },
        || {
            match reports.as_slice() {
                [one] => text(ctx, one, args.top),
                [a, b] => compare(ctx, a, b),
                _ => {}
            }
            for (i, image_checks) in checks.iter().enumerate() {
                outln!();
                let which = match (i, &args.other) {
                    (1, Some(other)) => format!(" [{other}]"),
                    (_, Some(_)) => format!(" [{}]", args.image),
                    _ => String::new(),
                };
                for c in image_checks {
                    outln!(
                        "{}: {}: {} (limit {}){which}",
                        if c.passed { "PASS" } else { "FAIL" },
                        c.rule,
                        c.shown(c.value),
                        c.shown(c.limit),
                    );
                }
            }
        },
    );
    if failed {
        return Err(Failure::Found);
    }
    Ok(())
}

impl Check {
    /// A value of this rule as text: bytes whole, ratios to four places.
    fn shown(&self, value: f64) -> String {
        if self.rule == "highest-wasted-bytes" {
            format!("{value:.0}")
        } else {
            format!("{value:.4}")
        }
    }
}

/// The rules `--ci` checks: those given, else dive's two defaults.
fn checks(args: &Args, r: &Efficiency) -> Vec<Check> {
    let given = args.lowest_efficiency.is_some()
        || args.highest_wasted_bytes.is_some()
        || args.highest_user_wasted_percent.is_some();
    let (lowest, wasted, user) = if given {
        (
            args.lowest_efficiency,
            args.highest_wasted_bytes,
            args.highest_user_wasted_percent,
        )
    } else {
        (Some(0.9), None, Some(0.1))
    };
    let mut out = Vec::new();
    if let Some(limit) = lowest {
        out.push(Check {
            rule: "lowest-efficiency",
            value: r.score,
            limit,
            passed: r.score >= limit,
        });
    }
    if let Some(limit) = wasted {
        out.push(Check {
            rule: "highest-wasted-bytes",
            value: r.wasted_bytes as f64,
            limit: limit as f64,
            passed: r.wasted_bytes <= limit,
        });
    }
    if let Some(limit) = user {
        out.push(Check {
            rule: "highest-user-wasted-percent",
            value: r.user_wasted_share,
            limit,
            passed: r.user_wasted_share <= limit,
        });
    }
    out
}

fn report_json(r: &Efficiency, top: usize, checks: Option<&Vec<Check>>) -> Value {
    let count = |c: &layerstore::FileCount| json!({ "files": c.files, "bytes": c.bytes });
    let layers: Vec<Value> = r
        .layers
        .iter()
        .map(|l| {
            json!({
                "id": l.id.to_string(),
                "added": count(&l.added),
                "modified": count(&l.modified),
                "removed": count(&l.removed),
                "size": l.size(),
                "stored_bytes": l.stored_bytes,
            })
        })
        .collect();
    let paths: Vec<Value> = r
        .wasted_paths
        .iter()
        .take(top)
        .map(|p| {
            json!({
                "path": String::from_utf8_lossy(p.path.as_bytes()),
                "occurrences": p.occurrences,
                "bytes": p.bytes,
                "stored_bytes": p.stored_bytes,
            })
        })
        .collect();
    let ci = checks.map(|checks| {
        let rules: Vec<Value> = checks
            .iter()
            .map(|c| json!({ "rule": c.rule, "value": c.value, "limit": c.limit, "passed": c.passed }))
            .collect();
        json!({ "passed": checks.iter().all(|c| c.passed), "rules": rules })
    });
    json!({
        "image": r.image.to_string(),
        "score": r.score,
        "size": r.size,
        "stored_bytes": r.stored_bytes,
        "user_size": r.user_size,
        "wasted_bytes": r.wasted_bytes,
        "wasted_stored_bytes": r.wasted_stored_bytes,
        "user_wasted_share": r.user_wasted_share,
        "wasted_paths_total": r.wasted_paths.len(),
        "layers": layers,
        "wasted_paths": paths,
        "ci": ci,
    })
}

fn percent(ratio: f64) -> String {
    format!("{:.2} %", ratio * 100.0)
}

fn text(ctx: &Ctx, r: &Efficiency, top: usize) {
    let size = |b| ctx.out.size(b);
    outln!("image: {}", r.image);
    outln!("efficiency: {}", percent(r.score));
    outln!("size: {} (stored: {})", size(r.size), size(r.stored_bytes));
    outln!(
        "wasted: {} (stored: {})",
        size(r.wasted_bytes),
        size(r.wasted_stored_bytes)
    );
    outln!("user wasted: {}", percent(r.user_wasted_share));
    outln!();
    let count = |c: &layerstore::FileCount| format!("{} ({})", c.files, size(c.bytes));
    let rows: Vec<Vec<String>> = r
        .layers
        .iter()
        .map(|l| {
            vec![
                l.id.to_string()[..19].to_owned(),
                count(&l.added),
                count(&l.modified),
                count(&l.removed),
                size(l.size()),
                size(l.stored_bytes),
            ]
        })
        .collect();
    table(
        &["LAYER", "ADDED", "MODIFIED", "REMOVED", "SIZE", "STORED"],
        &rows,
        &[1, 2, 3, 4, 5],
    );
    if !r.wasted_paths.is_empty() {
        outln!();
        let rows: Vec<Vec<String>> = r
            .wasted_paths
            .iter()
            .take(top)
            .map(|p| {
                vec![
                    p.occurrences.to_string(),
                    size(p.bytes),
                    size(p.stored_bytes),
                    p.path.to_string(),
                ]
            })
            .collect();
        table(&["COUNT", "WASTED", "STORED", "PATH"], &rows, &[0, 1, 2]);
    }
}

fn compare(ctx: &Ctx, a: &Efficiency, b: &Efficiency) {
    let size = |n| ctx.out.size(n);
    let signed = |x: u64, y: u64| {
        if y >= x {
            format!("+{}", size(y - x))
        } else {
            format!("-{}", size(x - y))
        }
    };
    let rows = vec![
        vec![
            "image".to_owned(),
            a.image.to_string()[..19].to_owned(),
            b.image.to_string()[..19].to_owned(),
            String::new(),
        ],
        vec![
            "layers".to_owned(),
            a.layers.len().to_string(),
            b.layers.len().to_string(),
            if b.layers.len() >= a.layers.len() {
                format!("+{}", b.layers.len() - a.layers.len())
            } else {
                format!("-{}", a.layers.len() - b.layers.len())
            },
        ],
        vec![
            "efficiency".to_owned(),
            percent(a.score),
            percent(b.score),
            format!("{:+.2} %", (b.score - a.score) * 100.0),
        ],
        vec![
            "size".to_owned(),
            size(a.size),
            size(b.size),
            signed(a.size, b.size),
        ],
        vec![
            "stored".to_owned(),
            size(a.stored_bytes),
            size(b.stored_bytes),
            signed(a.stored_bytes, b.stored_bytes),
        ],
        vec![
            "wasted".to_owned(),
            size(a.wasted_bytes),
            size(b.wasted_bytes),
            signed(a.wasted_bytes, b.wasted_bytes),
        ],
        vec![
            "wasted stored".to_owned(),
            size(a.wasted_stored_bytes),
            size(b.wasted_stored_bytes),
            signed(a.wasted_stored_bytes, b.wasted_stored_bytes),
        ],
        vec![
            "user wasted".to_owned(),
            percent(a.user_wasted_share),
            percent(b.user_wasted_share),
            format!(
                "{:+.2} %",
                (b.user_wasted_share - a.user_wasted_share) * 100.0
            ),
        ],
    ];
    table(&["", "A", "B", "CHANGE"], &rows, &[1, 2, 3]);
}
