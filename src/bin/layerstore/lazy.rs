//! `mount REGISTRY/REPO[:TAG] TARGET --lazy`: a read-only view of a
//! registry's image shown once its manifest and tables of contents are here,
//! its content fetched as it is read and prefetched in the background; with
//! `--tag`, tagged once every chunk is here and checked.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use layerstore::mount::{FuseOptions, FuseView, ReadLog};
use layerstore::oci::{Exchange, PrefetchOptions, RegistryOptions, RegistryRef};
use serde_json::json;

use crate::containers::{MountArgs, SERVER_NOTIFY, detach_output, spawn_server};
use crate::output::outln;
use crate::{CmdResult, Ctx, Failure, tag_name};

/// How long a lazy read waits for the registry before it fails with `EIO`.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(clap::Args)]
pub(crate) struct LazyArgs {
    /// Show REGISTRY/REPO[:TAG] at once, fetching its content as it is read.
    #[arg(long)]
    pub(crate) lazy: bool,
    /// --lazy: plain http (a loopback registry only).
    #[arg(long)]
    insecure: bool,
    /// --lazy: tag the image NAME once all of it is here and checked.
    #[arg(long, value_name = "NAME")]
    tag: Option<String>,
    /// --lazy: write the files read, in the order of their first read, to
    /// FILE when the view is unmounted (for `push --prefetch FILE`).
    #[arg(long, value_name = "FILE")]
    record_prefetch: Option<PathBuf>,
    /// --lazy: fetch only what is read; no background prefetch.
    #[arg(long)]
    no_prefetch: bool,
    /// --lazy: the background prefetch's bandwidth, in bytes a second.
    #[arg(long, value_name = "BYTES")]
    prefetch_rate: Option<u64>,
}

impl LazyArgs {
    /// Whether any --lazy option is given.
    pub(crate) fn is_set(&self) -> bool {
        self.lazy
            || self.insecure
            || self.tag.is_some()
            || self.record_prefetch.is_some()
            || self.no_prefetch
            || self.prefetch_rate.is_some()
    }
}

/// Opens the image lazily and serves a view of it: from a detached server
/// started here (ready when this returns), or from this process with
/// `--foreground`, until the view is unmounted.
pub(crate) fn mount(ctx: &Ctx, args: &MountArgs) -> CmdResult {
    let lazy = &args.lazy;
    let src: RegistryRef = args.image.parse()?;
    let tag = lazy.tag.as_deref().map(tag_name).transpose()?;
    if !args.foreground {
        // The server does the work and says when its view is ready, and
        // which image it shows.
        let id = spawn_server(&args.image, false)?;
        ctx.out.report(
            || json!({ "image": id, "target": args.target }),
            || outln!("{id}"),
        );
        return Ok(());
    }
    let store = Arc::new(ctx.open()?);
    let options = RegistryOptions::default()
        .insecure(lazy.insecure)
        .timeout(READ_TIMEOUT);
    let registry = Arc::new(crate::registry::registry_with(&src.host, options)?);
    let image = Exchange::new(&store).pull_lazy(&registry, &src)?;
    store.set_chunk_source(Some(image.source()));
    std::fs::create_dir_all(&args.target)
        .map_err(|e| Failure::System(format!("cannot create '{}': {e}", args.target.display())))?;
    let log = ReadLog::new();
    let mut view_options = FuseOptions::default().allow_other(args.allow_other);
    if lazy.record_prefetch.is_some() {
        view_options = view_options.record_reads(log.clone());
    }
    let view = FuseView::mount(
        Arc::clone(&store),
        &image.image(),
        &args.target,
        &view_options,
    )?;
    let id = image.image();
    let opened = image.report().clone();
    if std::env::var_os(SERVER_NOTIFY).is_some() {
        detach_output(&FuseView::log_path(&store, &id)?, &id.to_string())?;
    } else {
        ctx.out.report(
            || json!({ "image": id.to_string(), "target": args.target }),
            || outln!("{id}"),
        );
    }
    eprintln!(
        "layerstore: {id} shown lazily from {src}: {} bytes fetched of the layers' {}",
        opened.bytes_fetched, opened.layers_size
    );

    // The background prefetch, stopped when the view is unmounted.
    let stop = Arc::new(AtomicBool::new(false));
    let prefetch = (!lazy.no_prefetch).then(|| {
        let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
        let tag = tag.clone();
        let rate = lazy.prefetch_rate;
        let image = &image;
        let mut options = PrefetchOptions::default().stop(stop);
        if let Some(rate) = rate {
            options = options.bytes_per_second(rate);
        }
        move || -> layerstore::Result<()> {
            let report = image.prefetch(&store, &options)?;
            eprintln!(
                "layerstore: prefetch of {id}: {} chunks, {} bytes fetched, {} missing{}",
                report.chunks_fetched,
                report.bytes_fetched,
                report.chunks_missing,
                if report.stopped { " (stopped)" } else { "" }
            );
            if image.complete(&store, tag.as_ref())? {
                eprintln!("layerstore: {id} is all here and checked");
            }
            Ok(())
        }
    });
    let served = std::thread::scope(|scope| {
        let worker = prefetch.map(|run| scope.spawn(run));
        let served = view.wait();
        stop.store(true, Ordering::Relaxed);
        if let Some(Ok(Err(err))) = worker.map(std::thread::ScopedJoinHandle::join) {
            eprintln!("layerstore: prefetch of {id}: {err}");
        }
        served
    });
    // What was fetched stays: the next lazy view of the image starts there.
    let flushed = store.flush();
    if let Some(path) = &lazy.record_prefetch {
        let mut text = String::new();
        for p in log.paths() {
            text.push_str(&String::from_utf8_lossy(p.as_bytes()));
            text.push('\n');
        }
        std::fs::write(path, text)
            .map_err(|e| Failure::System(format!("cannot write '{}': {e}", path.display())))?;
    }
    if lazy.no_prefetch && image.complete(&store, tag.as_ref())? {
        eprintln!("layerstore: {id} is all here and checked");
    }
    served?;
    flushed?;
    Ok(())
}
