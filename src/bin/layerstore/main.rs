//! The `layerstore` command line: a thin layer over the library.
//!
//! Its commands, output and exit codes are a contract, written down in
//! `docs/CLI.md`; change them only together with that page and the CHANGELOG.
//!
//! This file holds the top level: the clap definition of the commands, how
//! the store is found and opened, the dispatch, and the one mapping from
//! errors to exit codes ([`Failure`]). Each command (or group of commands)
//! lives in its own module with its flags (`Args`) and its `run`; every report
//! is printed through [`output::Output`], which renders it as text or, under
//! `--json`, as one JSON document.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use layerstore::{Error, ErrorKind, Store, TagName};

mod browse;
mod build;
mod checkout;
mod commit;
mod containers;
mod diff;
mod efficiency;
mod generate;
mod history;
mod images;
mod lazy;
mod oci;
mod output;
mod registry;
mod store;
mod sync;

use output::Output;

#[derive(Parser)]
#[command(
    name = "layerstore",
    version,
    about = "A content-addressed store for container-image layers"
)]
struct Cli {
    /// The store directory (else `$LAYERSTORE_DIR`, else `./.layerstore`).
    #[arg(long, global = true, value_name = "DIR")]
    store: Option<PathBuf>,
    /// Print one JSON document on stdout instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Show progress on stderr even when it is not a terminal.
    #[arg(long, global = true)]
    progress: bool,
    /// Sizes and times for people (`72.8MB`, `3 days ago`); the default
    /// when stdout is a terminal.
    #[arg(short = 'H', long, global = true)]
    human: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a store (idempotent).
    Init,
    /// Scan DIR; the new layer is its diff against the parent image's tree.
    Commit(commit::Args),
    /// Materialise the flattened image into DEST (absent or empty).
    Checkout(checkout::Args),
    /// Changes from A to B, each an image or a directory.
    Diff(diff::Args),
    /// List tagged images.
    Images,
    /// Show an image as JSON.
    Inspect(images::InspectArgs),
    /// The steps that made IMAGE, newest first: LAYER, CREATED, CREATED BY,
    /// SIZE, COMMENT.
    History(history::Args),
    /// How well IMAGE's layers use their bytes (dive's analysis, with the
    /// bytes the store keeps); with B, the two compared.
    Efficiency(efficiency::Args),
    /// List a directory of IMAGE (or with -R everything beneath it),
    /// straight from the store.
    Ls(browse::LsArgs),
    /// Print a file of IMAGE, straight from the store.
    Cat(browse::CatArgs),
    /// Point NAME at IMAGE.
    Tag(images::TagArgs),
    /// Remove the tag NAME.
    Untag(images::UntagArgs),
    /// Logical, unique and stored bytes; with -v, per image.
    Du(store::DuArgs),
    /// Remove everything no tag or cache entry reaches.
    Gc(store::GcArgs),
    /// Import an image from an OCI image layout (LAYOUT[:REF]) or a
    /// `docker save` archive (a file); the last line printed is its id.
    ImportOci(oci::ImportArgs),
    /// Write IMAGE into an OCI image layout (LAYOUT[:REF], created or added
    /// to); prints the manifest digest.
    ExportOci(oci::ExportArgs),
    /// Write IMAGE into FILE as a `docker save` archive (which `docker load`
    /// and `podman load` read).
    ExportDockerArchive(oci::ExportArchiveArgs),
    /// Verify every pack, chunk, object and ref; exit 1 if anything is wrong.
    Fsck(store::FsckArgs),
    /// A writable (or read-only) view of IMAGE at TARGET; or, given the name
    /// of an existing container, mount it again. Prints the container name.
    /// With --lazy, a read-only view of REGISTRY/REPO[:TAG] shown at once, its
    /// content fetched as it is read; prints the image id.
    Mount(containers::MountArgs),
    /// Unmount a container (by name or target), keeping its changes.
    Umount(containers::UmountArgs),
    /// List containers: NAME  IMAGE  BACKEND  TARGET.
    Containers,
    /// Commit or remove a container.
    Container {
        #[command(subcommand)]
        action: containers::ContainerCommand,
    },
    /// Build a Containerfile with the layer cache: one line per step
    /// (CACHED or BUILT and the layer id), the image id last.
    Build(build::Args),
    /// Copy IMAGE into the store at DIR (created if absent), moving only the
    /// chunks it lacks; a tag given as IMAGE is set there too.
    Sync(sync::Args),
    /// Push IMAGE to REGISTRY/REPO[:TAG], uploading only the blobs it lacks.
    /// Credentials: `$LAYERSTORE_REGISTRY_USER` and
    /// `$LAYERSTORE_REGISTRY_PASSWORD`, or `$LAYERSTORE_REGISTRY_TOKEN`.
    Push(registry::PushArgs),
    /// Pull REGISTRY/REPO[:TAG] into the store, fetching only what it lacks
    /// (of a seekable layer, only the missing chunks); prints the image id last.
    Pull(registry::PullArgs),
    /// Print a shell completion script (bash, zsh, fish) on stdout.
    Completions(generate::CompletionsArgs),
    /// Write man pages (layerstore.1 and one per command) into DIR.
    Man(generate::ManArgs),
}

fn main() -> ExitCode {
    #[cfg(feature = "fault-injection")]
    let kill_plan = arm_kill_from_env();
    #[cfg(feature = "fault-injection")]
    arm_pause_from_env();
    let cli = Cli::parse();
    let ctx = Ctx {
        store: cli.store,
        out: Output::new(cli.json, cli.progress, cli.human),
    };
    let result = match &cli.command {
        Command::Init => store::init(&ctx),
        Command::Commit(args) => commit::run(&ctx, args),
        Command::Checkout(args) => checkout::run(&ctx, args),
        Command::Diff(args) => diff::run(&ctx, args),
        Command::Images => images::images(&ctx),
        Command::Inspect(args) => images::inspect(&ctx, args),
        Command::History(args) => history::run(&ctx, args),
        Command::Efficiency(args) => efficiency::run(&ctx, args),
        Command::Ls(args) => browse::ls(&ctx, args),
        Command::Cat(args) => browse::cat(&ctx, args),
        Command::Tag(args) => images::tag(&ctx, args),
        Command::Untag(args) => images::untag(&ctx, args),
        Command::Du(args) => store::du(&ctx, args),
        Command::Gc(args) => store::gc(&ctx, args),
        Command::Fsck(args) => store::fsck(&ctx, args),
        Command::ImportOci(args) => oci::import(&ctx, args),
        Command::ExportOci(args) => oci::export(&ctx, args),
        Command::ExportDockerArchive(args) => oci::export_archive(&ctx, args),
        Command::Mount(args) => containers::mount(&ctx, args),
        Command::Umount(args) => containers::umount(&ctx, args),
        Command::Containers => containers::list(&ctx),
        Command::Container { action } => containers::container(&ctx, action),
        Command::Build(args) => build::run(&ctx, args),
        Command::Sync(args) => sync::run(&ctx, args),
        Command::Push(args) => registry::push(&ctx, args),
        Command::Pull(args) => registry::pull(&ctx, args),
        Command::Completions(args) => {
            generate::completions(args);
            Ok(())
        }
        Command::Man(args) => generate::man(args),
    };
    #[cfg(feature = "fault-injection")]
    if let Some(root) = kill_plan {
        let (seen, _) = layerstore::fault::disarm(&root);
        eprintln!("fault: {seen} write sites reached");
    }
    result.map_or_else(Failure::exit, |()| ExitCode::SUCCESS)
}

/// Test builds only (feature `fault-injection`): `LAYERSTORE_FAULT_KILL` set
/// to `<nth>:<root>` kills this process with SIGKILL just before its `nth`
/// write site beneath `root` (`0` only counts them); the count is reported on
/// stderr at exit. For the crash harness (`tests/cli/crash.rs`).
#[cfg(feature = "fault-injection")]
fn arm_kill_from_env() -> Option<PathBuf> {
    let spec = std::env::var("LAYERSTORE_FAULT_KILL").ok()?;
    let parsed = spec
        .split_once(':')
        .and_then(|(nth, root)| Some((nth.parse().ok()?, PathBuf::from(root))));
    let Some((nth, root)) = parsed else {
        eprintln!("layerstore: LAYERSTORE_FAULT_KILL={spec:?} is not <nth>:<root>");
        std::process::exit(2);
    };
    layerstore::fault::arm_kill(&root, nth);
    Some(root)
}

/// Test builds only (feature `fault-injection`): `LAYERSTORE_FAULT_PAUSE`
/// set to `<point>:<milliseconds>` (several separated by commas) makes the
/// operation sleep at each point (`gc-walked`: gc between its walk and its
/// sweep; `gc-intent`, `gc-fenced`: after it published what it may delete,
/// after it read the leases again), saying `fault: paused at <point>` on
/// stderr. For the soak and the crash tests (`tests/cli/`).
#[cfg(feature = "fault-injection")]
fn arm_pause_from_env() {
    let Ok(spec) = std::env::var("LAYERSTORE_FAULT_PAUSE") else {
        return;
    };
    for one in spec.split(',') {
        let parsed = one
            .split_once(':')
            .and_then(|(point, ms)| Some((point, ms.parse().ok()?)));
        let Some((point, ms)) = parsed else {
            eprintln!(
                "layerstore: LAYERSTORE_FAULT_PAUSE={spec:?} is not <point>:<milliseconds>[,…]"
            );
            std::process::exit(2);
        };
        layerstore::fault::arm_pause(point, std::time::Duration::from_millis(ms));
    }
}

/// What every command is given: where the store is and how to print.
struct Ctx {
    /// `--store`, if given.
    store: Option<PathBuf>,
    out: Output,
}

impl Ctx {
    /// The store directory: `--store`, else `$LAYERSTORE_DIR`, else
    /// `./.layerstore`.
    fn store_dir(&self) -> PathBuf {
        self.store
            .clone()
            .or_else(|| std::env::var_os("LAYERSTORE_DIR").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(".layerstore"))
    }

    /// The store, opened; a missing store is bad usage (2), with a hint.
    fn open(&self) -> Result<Store, Failure> {
        let dir = self.store_dir();
        let missing = || {
            Failure::Usage(format!(
                "no store at '{}' (create one with `layerstore init`, or give --store)",
                dir.display()
            ))
        };
        Store::open(&dir).map_err(|err| match err {
            Error::NotAStore { .. } => missing(),
            Error::Io { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                missing()
            }
            other => other.into(),
        })
    }
}

/// How a command failed; [`Failure::exit`] maps it to the exit codes of
/// `docs/CLI.md` (0 is success).
enum Failure {
    /// 1: the command ran and found a problem (`fsck`, `diff --exit-code`).
    /// Nothing is printed on stderr: the report on stdout says it.
    Found,
    /// 2: bad usage or bad input.
    Usage(String),
    /// 3: the store or the system failed.
    System(String),
}

impl Failure {
    /// The exit code, after printing the message (if any) on stderr.
    fn exit(self) -> ExitCode {
        match self {
            Failure::Found => ExitCode::from(1),
            Failure::Usage(msg) => {
                eprintln!("layerstore: {msg}");
                ExitCode::from(2)
            }
            Failure::System(msg) => {
                eprintln!("layerstore: {msg}");
                ExitCode::from(3)
            }
        }
    }
}

/// The one mapping from the library's errors to exit codes, by
/// [`ErrorKind`]: the store, the machine or a registry failing is 3; what the
/// user can fix by asking differently (an unknown image, a malformed name or
/// file, a path escaping its root, a non-empty destination, …) is 2.
impl From<Error> for Failure {
    fn from(err: Error) -> Self {
        let text = err.to_string();
        let system = match &err {
            // Not found, but named by the store itself (an image whose layer
            // is gone), not by the user: the store is incomplete.
            Error::ChunkNotFound { .. } | Error::ObjectNotFound { .. } => true,
            // Kept at 2, as they were before errors had kinds (docs/CLI.md):
            // an undecodable object (kind `Corrupt`) and a checkout that
            // failed to write (the kind of what it wraps).
            Error::Malformed { .. } | Error::Checkout { .. } => false,
            // Every other kind (not found, invalid input, too large, already
            // exists, permission denied, and any kind added later) is bad
            // input.
            _ => matches!(
                err.kind(),
                ErrorKind::Io
                    | ErrorKind::Corrupt
                    | ErrorKind::Locked
                    | ErrorKind::Unsupported
                    | ErrorKind::Remote
            ),
        };
        if system {
            Failure::System(text)
        } else {
            Failure::Usage(text)
        }
    }
}

/// What a command returns.
type CmdResult = Result<(), Failure>;

/// A tag name given on the command line; a malformed one is bad usage.
fn tag_name(text: &str) -> Result<TagName, Failure> {
    text.parse()
        .map_err(|e: Error| Failure::Usage(e.to_string()))
}
