//! `mount REGISTRY/REPO[:TAG] TARGET --lazy`: a container of a registry's
//! image, started once the image's manifest and tables of contents are here;
//! its content is fetched as it is read and prefetched in the background,
//! and once all of it is here and checked, the image is an ordinary one
//! (tagged with `--tag`). A lazy container mounted again (`mount NAME
//! TARGET`) fetches from where it was.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use layerstore::mount::{ContainerInfo, FuseBackend, FuseOptions, PrepareOptions, ReadLog};
use layerstore::oci::{Exchange, PrefetchOptions, RegistryOptions, RegistryRef};

use crate::containers::{
    MountArgs, SERVER_NOTIFY, detach_output, made_up_name, report, spawn_server, with_fuse,
};
use crate::{CmdResult, Ctx, Failure, tag_name};

/// How long a lazy read waits for the registry before it fails with `EIO`.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The file in a lazy container's state directory naming where its image
/// comes from: `REGISTRY/REPO@DIGEST`, then `insecure` or `tls`, then the
/// tag to set once all of it is here (an empty line for none).
const SOURCE_FILE: &str = "lazy-source";

#[derive(clap::Args)]
pub(crate) struct LazyArgs {
    /// Start a container of REGISTRY/REPO[:TAG] at once, its content fetched
    /// as it is read.
    #[arg(long)]
    pub(crate) lazy: bool,
    /// --lazy: plain http (a loopback registry only).
    #[arg(long)]
    insecure: bool,
    /// --lazy: tag the image NAME once all of it is here and checked.
    #[arg(long, value_name = "NAME")]
    tag: Option<String>,
    /// --lazy: write the files read, in the order of their first read, to
    /// FILE when the container is unmounted (for `push --prefetch FILE`).
    #[arg(long, value_name = "FILE")]
    record_prefetch: Option<std::path::PathBuf>,
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

/// A new lazy container (`existing` none: `--lazy`), or one mounted again:
/// served by a detached server started here (ready when this returns, its
/// name printed), or by this process with `--foreground` until unmounted.
pub(crate) fn mount(ctx: &Ctx, args: &MountArgs, existing: Option<&ContainerInfo>) -> CmdResult {
    let lazy = &args.lazy;
    if !args.foreground {
        let name = match (existing, &args.name) {
            (Some(info), _) => info.name.clone(),
            (None, Some(name)) => name.clone(),
            (None, None) => {
                let store = ctx.open()?;
                made_up_name(&layerstore::mount::Containers::new(&store), &args.image)
            }
        };
        let name = spawn_server(&name, existing.is_none() && args.name.is_none())?;
        ctx.out.report(
            || serde_json::json!({ "name": name, "target": args.target }),
            || crate::output::outln!("{name}"),
        );
        return Ok(());
    }
    let store = Arc::new(ctx.open()?);
    // Where the image comes from: the command line, or what the container
    // recorded when it was made.
    let (src, insecure, tag) = match existing {
        None => (
            args.image.parse::<RegistryRef>()?,
            lazy.insecure,
            lazy.tag.clone(),
        ),
        Some(info) => recorded_source(&layerstore::mount::Containers::new(&store), &info.name)?,
    };
    let tag = tag.as_deref().map(tag_name).transpose()?;
    let options = RegistryOptions::default()
        .insecure(insecure)
        .timeout(READ_TIMEOUT);
    let registry = Arc::new(crate::registry::registry_with(&src.host, options)?);
    let image = Exchange::new(&store).pull_lazy(&registry, &src)?;
    let id = image.image();
    if let Some(info) = existing
        && info.image != id
    {
        return Err(Failure::System(format!(
            "container '{}' is of {}, but {src} is now {id}",
            info.name, info.image
        )));
    }
    let log = ReadLog::new();
    let mut view_options = FuseOptions::default()
        .allow_other(args.allow_other)
        .chunk_source(image.source());
    if lazy.record_prefetch.is_some() {
        view_options = view_options.record_reads(log.clone());
    }
    let fuse = Arc::new(FuseBackend::with_options(view_options));
    let containers = with_fuse(&store, &fuse);
    let info = if let Some(info) = existing {
        containers.mount(&info.name, Some(&args.target))?
    } else {
        let name = match &args.name {
            Some(name) => name.clone(),
            None => made_up_name(&containers, &args.image),
        };
        let mut options = PrepareOptions::default()
            .target(&args.target)
            .read_only(args.read_only);
        options.backend = Some("fuse".to_owned());
        let info = containers.prepare(&name, &id, &options)?;
        let digest = &image.report().manifest_digest;
        let text = format!(
            "{}/{}@{digest}\n{}\n{}\n",
            src.host,
            src.repository,
            if insecure { "insecure" } else { "tls" },
            tag.as_ref().map(ToString::to_string).unwrap_or_default()
        );
        let path = containers.state_dir(&info.name)?.join(SOURCE_FILE);
        std::fs::write(&path, text)
            .map_err(|e| Failure::System(format!("cannot write '{}': {e}", path.display())))?;
        info
    };
    let state = containers.state_dir(&info.name)?;
    if std::env::var_os(SERVER_NOTIFY).is_some() {
        detach_output(&state.join("server.log"), &info.name)?;
    } else {
        report(ctx, &info);
    }
    let opened = image.report();
    eprintln!(
        "layerstore: {} of {id} from {src}: {} bytes fetched of the layers' {} to start",
        info.name, opened.bytes_fetched, opened.layers_size
    );

    serve(&store, &image, &fuse, lazy, tag.as_ref(), &log)
}

/// Serves the container until it is unmounted, the background prefetch
/// beside it (stopped then); then makes what was fetched durable, writes the
/// prefetch list, and completes the image if it is all here.
fn serve(
    store: &Arc<layerstore::Store>,
    image: &layerstore::oci::LazyImage,
    fuse: &FuseBackend,
    lazy: &LazyArgs,
    tag: Option<&layerstore::TagName>,
    log: &ReadLog,
) -> CmdResult {
    let id = image.image();
    let stop = Arc::new(AtomicBool::new(false));
    let finish = || -> layerstore::Result<()> {
        if image.complete(store, tag)? {
            eprintln!("layerstore: {id} is all here and checked: an ordinary image now");
        }
        Ok(())
    };
    let prefetch = (!lazy.no_prefetch).then(|| {
        let mut options = PrefetchOptions::default().stop(Arc::clone(&stop));
        if let Some(rate) = lazy.prefetch_rate {
            options = options.bytes_per_second(rate);
        }
        let finish = &finish;
        move || -> layerstore::Result<()> {
            let report = image.prefetch(store, &options)?;
            eprintln!(
                "layerstore: prefetch of {id}: {} chunks, {} bytes fetched, {} missing{}",
                report.chunks_fetched,
                report.bytes_fetched,
                report.chunks_missing,
                if report.stopped { " (stopped)" } else { "" }
            );
            finish()
        }
    });
    let served = std::thread::scope(|scope| {
        let worker = prefetch.map(|run| scope.spawn(run));
        let served = fuse.wait();
        stop.store(true, Ordering::Relaxed);
        if let Some(Ok(Err(err))) = worker.map(std::thread::ScopedJoinHandle::join) {
            eprintln!("layerstore: prefetch of {id}: {err}");
        }
        served
    });
    // What was fetched stays: the container mounted again starts there.
    let flushed = store.flush();
    if let Some(path) = &lazy.record_prefetch {
        write_list(path, log)?;
    }
    if lazy.no_prefetch {
        finish()?;
    }
    served?;
    flushed?;
    Ok(())
}

/// The source a lazy container recorded: its image's registry reference
/// (by digest), whether it is plain http, and the tag to set at the end.
fn recorded_source(
    containers: &layerstore::mount::Containers<'_>,
    name: &str,
) -> Result<(RegistryRef, bool, Option<String>), Failure> {
    let path = containers.state_dir(name)?.join(SOURCE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Failure::System(format!(
            "container '{name}' is of an image still being fetched, but '{}' cannot be read: {e}",
            path.display()
        ))
    })?;
    let mut lines = text.lines();
    let src = lines
        .next()
        .unwrap_or_default()
        .parse()
        .map_err(|e| Failure::System(format!("'{}': {e}", path.display())))?;
    let insecure = lines.next() == Some("insecure");
    let tag = lines.next().filter(|t| !t.is_empty()).map(str::to_owned);
    Ok((src, insecure, tag))
}

/// Writes the paths of `log`, one a line.
fn write_list(path: &Path, log: &ReadLog) -> CmdResult {
    let mut text = String::new();
    for p in log.paths() {
        text.push_str(&String::from_utf8_lossy(p.as_bytes()));
        text.push('\n');
    }
    std::fs::write(path, text)
        .map_err(|e| Failure::System(format!("cannot write '{}': {e}", path.display())))
}
