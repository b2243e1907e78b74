//! An image's tree read straight from the store, nothing checked out:
//! `ls IMAGE [PATH] [-l] [-R]` and `cat IMAGE PATH`. Directories are read
//! one at a time as they are reached (`StoredTree`).

use layerstore::{Entry, EntryKind, Store, StoredTree, TreePath};
use serde_json::{Value, json};

use crate::images::rfc3339;
use crate::{CmdResult, Ctx, Failure, output};

#[derive(clap::Args)]
pub(crate) struct LsArgs {
    image: String,
    /// A path in the image (`/usr/bin`, `usr/bin`); the root when absent.
    path: Option<String>,
    /// Long form: mode, owner, group, size, modification time.
    #[arg(short = 'l')]
    long: bool,
    /// Everything beneath PATH, one path per line, relative to the root.
    #[arg(short = 'R')]
    recursive: bool,
}

#[derive(clap::Args)]
pub(crate) struct CatArgs {
    image: String,
    /// A regular file in the image (a hard link is read through).
    path: String,
}

/// A path given on the command line, as a path of the tree: leading and
/// trailing `/` dropped, `.` or `/` the root.
fn tree_path(text: &str) -> Result<TreePath, Failure> {
    let trimmed = text.trim_matches('/');
    let trimmed = if trimmed == "." { "" } else { trimmed };
    TreePath::new(trimmed.as_bytes().to_vec()).map_err(|e| Failure::Usage(format!("'{text}': {e}")))
}

/// The tree of IMAGE in the store.
fn stored<'s>(store: &'s Store, image: &str) -> Result<StoredTree<'s>, Failure> {
    let id = store.resolve_image(image)?;
    Ok(StoredTree::new(store, store.image(&id)?.rootfs()))
}

/// The entries of a directory (its children, or with `-R` everything
/// beneath it), or the one entry at PATH when it is not a directory.
pub(crate) fn ls(ctx: &Ctx, args: &LsArgs) -> CmdResult {
    let store = ctx.open()?;
    let tree = stored(&store, &args.image)?;
    let path = tree_path(args.path.as_deref().unwrap_or(""))?;
    let Some(at) = tree.get(&path)? else {
        return Err(Failure::Usage(format!(
            "no '{path}' in image '{}'",
            args.image
        )));
    };
    let entries = match (&at.kind, args.recursive) {
        (EntryKind::Dir, true) => tree.descendants(&path)?,
        (EntryKind::Dir, false) => tree.children(&path)?,
        _ => vec![at],
    };
    // Names relative to the directory listed, or paths with -R.
    let name = |e: &Entry| -> String {
        if args.recursive || e.path == path {
            e.path.to_string()
        } else {
            let bytes = e.path.file_name().unwrap_or_default();
            TreePath::new(bytes.to_vec()).map_or_else(|_| String::new(), |p| p.to_string())
        }
    };
    ctx.out.report(
        || Value::Array(entries.iter().map(entry_json).collect()),
        || {
            output::print(|out| {
                for e in &entries {
                    if args.long {
                        writeln!(out, "{}", long_line(ctx, e, &name(e)))?;
                    } else {
                        writeln!(out, "{}", name(e))?;
                    }
                }
                Ok(())
            });
        },
    );
    // The process exits next: freeing 80 000 entries one at a time would
    // lengthen `ls -R` of a large tree by a fifth.
    std::mem::forget(entries);
    std::mem::forget(tree);
    Ok(())
}

/// `-rw-r--r--  0  0  1.2kB  2026-01-31T12:00:00Z  name[ -> target]`.
fn long_line(ctx: &Ctx, e: &Entry, name: &str) -> String {
    let (size, suffix) = match &e.kind {
        EntryKind::File { size, .. } => (*size, String::new()),
        EntryKind::Symlink { target } => (
            target.len() as u64,
            format!(" -> {}", String::from_utf8_lossy(target).escape_debug()),
        ),
        EntryKind::Hardlink { target } => (0, format!(" => {target}")),
        _ => (0, String::new()),
    };
    format!(
        "{} {:>5} {:>5} {:>8}  {}  {name}{suffix}",
        mode_string(e),
        e.meta.uid,
        e.meta.gid,
        ctx.out.size(size),
        rfc3339(e.meta.mtime),
    )
}

/// `ls -l`'s mode column: the type letter and the nine permission bits with
/// setuid, setgid and sticky.
fn mode_string(e: &Entry) -> String {
    let kind = match &e.kind {
        EntryKind::Dir => 'd',
        EntryKind::Symlink { .. } => 'l',
        EntryKind::CharDevice { .. } => 'c',
        EntryKind::BlockDevice { .. } => 'b',
        EntryKind::Fifo => 'p',
        _ => '-',
    };
    let m = e.meta.mode;
    let bit = |mask: u32, c: char| if m & mask == 0 { '-' } else { c };
    let special = |exec: u32, special: u32, set: char| match (m & exec != 0, m & special != 0) {
        (true, true) => set,
        (false, true) => set.to_ascii_uppercase(),
        (true, false) => 'x',
        (false, false) => '-',
    };
    [
        kind,
        bit(0o400, 'r'),
        bit(0o200, 'w'),
        special(0o100, 0o4000, 's'),
        bit(0o040, 'r'),
        bit(0o020, 'w'),
        special(0o010, 0o2000, 's'),
        bit(0o004, 'r'),
        bit(0o002, 'w'),
        special(0o001, 0o1000, 't'),
    ]
    .iter()
    .collect()
}

/// One entry in `ls --json`.
fn entry_json(e: &Entry) -> Value {
    let (kind, size, target) = match &e.kind {
        EntryKind::File { size, .. } => ("file", *size, None),
        EntryKind::Dir => ("dir", 0, None),
        EntryKind::Symlink { target } => (
            "symlink",
            target.len() as u64,
            Some(String::from_utf8_lossy(target).into_owned()),
        ),
        EntryKind::Hardlink { target } => (
            "hardlink",
            0,
            Some(String::from_utf8_lossy(target.as_bytes()).into_owned()),
        ),
        EntryKind::CharDevice { .. } => ("char-device", 0, None),
        EntryKind::BlockDevice { .. } => ("block-device", 0, None),
        EntryKind::Fifo => ("fifo", 0, None),
    };
    json!({
        "path": String::from_utf8_lossy(e.path.as_bytes()),
        "kind": kind,
        "mode": e.meta.mode,
        "uid": e.meta.uid,
        "gid": e.meta.gid,
        "size": size,
        "mtime": rfc3339(e.meta.mtime),
        "target": target,
    })
}

/// The content of a regular file of the image, on stdout, verified chunk by
/// chunk as it is read.
pub(crate) fn cat(ctx: &Ctx, args: &CatArgs) -> CmdResult {
    let store = ctx.open()?;
    let tree = stored(&store, &args.image)?;
    let path = tree_path(&args.path)?;
    let missing = || Failure::Usage(format!("no '{path}' in image '{}'", args.image));
    let mut entry = tree.get(&path)?.ok_or_else(missing)?;
    if let EntryKind::Hardlink { target } = &entry.kind {
        entry = tree.get(target)?.ok_or_else(missing)?;
    }
    let chunks = match &entry.kind {
        EntryKind::File { chunks, .. } => chunks,
        EntryKind::Dir => return Err(Failure::Usage(format!("'{path}' is a directory"))),
        EntryKind::Symlink { target } => {
            return Err(Failure::Usage(format!(
                "'{path}' is a symbolic link to '{}'",
                String::from_utf8_lossy(target)
            )));
        }
        _ => return Err(Failure::Usage(format!("'{path}' is not a regular file"))),
    };
    let mut failed = None;
    output::print(|out| {
        let mut reader = store.reader(chunks);
        match std::io::copy(&mut reader, out) {
            Ok(_) => Ok(()),
            // A closed pipe ends the process in `print`; any other error is
            // reported below.
            Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Err(err),
            Err(err) => {
                failed = Some(err);
                Ok(())
            }
        }
    });
    match failed {
        None => Ok(()),
        Some(err) => Err(Failure::System(format!(
            "could not copy '{path}' to stdout: {err}"
        ))),
    }
}
