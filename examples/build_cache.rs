//! Docker's layer caching, from a Containerfile: a rebuild reuses every
//! unchanged step, and the first changed step invalidates all later ones.
//!
//! ```text
//! cargo run --release --example build_cache
//! ```
//!
//! Builds a small Containerfile four times in a temporary store: once from
//! nothing, again (every step `CACHED`), after changing one file of the
//! context (the steps before its `COPY` cached, that `COPY` and every later
//! step `BUILT`), and with `--no-cache` (everything `BUILT`). No `RUN` step,
//! so it needs no privilege.

use layerstore::build::{BuildOptions, Builder};
use layerstore::{Store, StoreOptions};

const CONTAINERFILE: &str = "\
FROM scratch
COPY vendor/ /app/vendor/
ENV APP_HOME=/app
COPY src/ /app/src/
COPY config.toml /etc/app/config.toml
LABEL org.example.app=demo
CMD [\"/app/src/main\"]
";

fn build(
    store: &Store,
    context: &std::path::Path,
    title: &str,
    no_cache: bool,
) -> Result<Vec<bool>, Box<dyn std::error::Error>> {
    println!("== {title}");
    let options = BuildOptions::default().no_cache(no_cache);
    let report = Builder::new(store).build(context, &options, |step| {
        let what = if step.cached { "CACHED" } else { "BUILT " };
        let layer = step.layer.map_or_else(
            || "(config only)".to_owned(),
            |l| l.to_string()[..19].to_owned(),
        );
        println!("{what} {layer:<20} {}", step.instruction);
    })?;
    println!("image {}", report.image);
    Ok(report.steps.iter().map(|s| s.cached).collect())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let scratch = tempfile::tempdir()?;
    let store = Store::create(scratch.path().join("store"), &StoreOptions::default())?;
    let context = scratch.path().join("context");
    for (path, content) in [
        ("vendor/lib-a.txt", "third-party code A\n".repeat(2000)),
        ("vendor/lib-b.txt", "third-party code B\n".repeat(2000)),
        ("src/main", "the application, version 1\n".to_owned()),
        ("config.toml", "port = 8080\n".to_owned()),
    ] {
        let full = context.join(path);
        std::fs::create_dir_all(full.parent().expect("a parent"))?;
        std::fs::write(full, content)?;
    }
    std::fs::write(context.join("Containerfile"), CONTAINERFILE)?;

    let first = build(&store, &context, "first build", false)?;
    let second = build(&store, &context, "the same again", false)?;
    std::fs::write(context.join("src/main"), "the application, version 2\n")?;
    let third = build(&store, &context, "after changing src/main", false)?;
    let fourth = build(&store, &context, "--no-cache", true)?;

    let all = |v: &[bool], cached: bool| v.iter().all(|c| *c == cached);
    // src/ is copied by the third step (index 2): the two before it are hits.
    let expected_third = [true, true, false, false, false, false];
    let ok =
        all(&first, false) && all(&second, true) && third == expected_third && all(&fourth, false);
    println!();
    println!(
        "cache behaved as expected: {}",
        if ok { "yes" } else { "NO" }
    );
    if !ok {
        return Err(
            format!("unexpected cache use: {first:?} {second:?} {third:?} {fourth:?}").into(),
        );
    }
    Ok(())
}
