//! A store listed through the crate's API, in the text form that the second
//! reader (`reader.py`, written from `docs/FORMAT.md` alone) prints: the two
//! must agree byte for byte, and the golden store's listing is pinned.
//!
//! ```text
//! store packs <P> chunks <N>
//! tag <name:tag> <image id>             one a tag, sorted by file name
//! cache <key> <image id>                one a build-cache entry, sorted
//! pin <group>/<name> <id>               one an id of each pin, in file order
//! image <id>                            each image a ref reaches, sorted by id
//!  layer <id> tree <snapshot id>        a whole-tree layer (kind 5)
//!  layer <id> upserts <n> whiteouts <n> opaque <n>
//!  config <field>=<value> …             every field of the image config
//!  history <field>=<value> …            one a record
//!  rootfs <snapshot id>
//!  <path> <kind> mode=<oooo> owner=<uid>:<gid> mtime=<s>.<9 digits> [xattr=<name>:<hex>]… <detail>
//! ```
//!
//! Text is escaped by [`esc`]: bytes 0x21 to 0x7e other than `\` stand for
//! themselves, any other byte is `\xNN`. A path is written with a leading
//! `/` (the root is `/`). `<detail>` is `size=<n> chunks=<n> blake3=<hex of
//! the content>` for a file, `target=<esc>` for a symlink, `target=/<path>`
//! for a hard link, `rdev=<n>` for a device, nothing otherwise. A file of an
//! image being fetched lazily (named in `refs/lazy/`) whose chunks are not
//! all here is `size=<n> chunks=<n> missing=<n of them not here>`.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use layerstore::{ChunkId, EntryKind, ImageId, LayerId, Store, Timestamp};

/// `esc` of `bytes` (see the module docs).
pub(crate) fn esc(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if (0x21..=0x7e).contains(&b) && b != b'\\' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

fn list(items: &[String]) -> String {
    let parts: Vec<String> = items.iter().map(|s| esc(s.as_bytes())).collect();
    format!("[{}]", parts.join(","))
}

fn time(t: Option<Timestamp>) -> String {
    t.map_or_else(|| "-".to_owned(), |t| format!("{}.{:09}", t.secs, t.nanos))
}

/// The listing of the store at `store` (see the module docs).
pub(crate) fn listing(store: &Store) -> String {
    let mut out = String::new();
    let stats = store.stats().expect("stats");
    let _ = writeln!(
        out,
        "store packs {} chunks {}",
        stats.packs.len(),
        stats.chunks
    );
    let mut images = BTreeSet::new();
    let refs = store.path().join("refs");
    let names = |group: &str| -> Vec<String> {
        let mut names: Vec<String> = match std::fs::read_dir(refs.join(group)) {
            Ok(dir) => dir
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect(),
            Err(_) => Vec::new(),
        };
        names.sort();
        names
    };
    for (name, id) in store.tags().expect("tags") {
        let _ = writeln!(out, "tag {name} {id}");
        images.insert(id);
    }
    for key in names("cache") {
        let id = store
            .cache_entry(&key)
            .expect("cache entry")
            .expect("entry");
        let _ = writeln!(out, "cache {key} {id}");
        images.insert(id);
    }
    let mut groups = names("");
    groups.retain(|g| g != "tags" && g != "cache");
    for group in groups {
        for name in names(&group) {
            for id in store.pins(&group, &name).expect("pins") {
                let _ = writeln!(out, "pin {group}/{name} {id}");
                let bytes = store.read_chunk(&id).expect("pinned object");
                if bytes.get(..5) == Some(b"LSOB\x03") {
                    images.insert(ImageId::from_bytes(*id.as_bytes()));
                }
            }
        }
    }
    let lazy: BTreeSet<ImageId> = store
        .lazy_images()
        .expect("lazy marks")
        .into_iter()
        .collect();
    for id in images {
        image(store, &id, lazy.contains(&id), &mut out);
    }
    out
}

fn image(store: &Store, id: &ImageId, lazy: bool, out: &mut String) {
    let image = store.image(id).expect("image");
    let _ = writeln!(out, "image {id}");
    for layer in image.layers() {
        let _ = writeln!(out, " {}", layer_line(store, layer));
    }
    let c = image.config();
    let labels: Vec<String> = c
        .labels
        .iter()
        .map(|(k, v)| format!("{}:{}", esc(k.as_bytes()), esc(v.as_bytes())))
        .collect();
    let _ = writeln!(
        out,
        " config env={} cmd={} entrypoint={} workdir={} user={} labels={{{}}} created={} author={}",
        list(&c.env),
        list(&c.cmd),
        list(&c.entrypoint),
        esc(c.workdir.as_bytes()),
        esc(c.user.as_bytes()),
        labels.join(","),
        time(c.created),
        esc(c.author.as_bytes()),
    );
    for h in image.history() {
        let _ = writeln!(
            out,
            " history created_by={} comment={} created={} empty_layer={}",
            esc(h.created_by.as_bytes()),
            esc(h.comment.as_bytes()),
            time(h.created),
            u8::from(h.empty_layer),
        );
    }
    let _ = writeln!(out, " rootfs {}", image.rootfs());
    let tree = store.snapshot(&image.rootfs()).expect("tree");
    for e in &tree {
        let mut line = format!(
            " /{} {} mode={:04o} owner={}:{} mtime={}",
            esc(e.path.as_bytes()),
            match e.kind {
                EntryKind::File { .. } => "file",
                EntryKind::Dir => "dir",
                EntryKind::Symlink { .. } => "symlink",
                EntryKind::Hardlink { .. } => "hardlink",
                EntryKind::CharDevice { .. } => "char",
                EntryKind::BlockDevice { .. } => "block",
                EntryKind::Fifo => "fifo",
            },
            e.meta.mode,
            e.meta.uid,
            e.meta.gid,
            time(Some(e.meta.mtime)),
        );
        for (name, value) in &e.meta.xattrs {
            let _ = write!(line, " xattr={}:", esc(name));
            for b in value {
                let _ = write!(line, "{b:02x}");
            }
        }
        match &e.kind {
            EntryKind::File { size, chunks }
                if lazy && !chunks.chunks().iter().all(|c| store.contains(&c.id)) =>
            {
                let missing = chunks.chunks().iter().filter(|c| !store.contains(&c.id));
                let _ = write!(
                    line,
                    " size={size} chunks={} missing={}",
                    chunks.chunks().len(),
                    missing.count()
                );
            }
            EntryKind::File { size, chunks } => {
                let content = store.read_all(chunks).expect("content");
                let _ = write!(
                    line,
                    " size={size} chunks={} blake3={}",
                    chunks.chunks().len(),
                    blake3::hash(&content).to_hex()
                );
            }
            EntryKind::Symlink { target } => {
                let _ = write!(line, " target={}", esc(target));
            }
            EntryKind::Hardlink { target } => {
                let _ = write!(line, " target=/{}", esc(target.as_bytes()));
            }
            EntryKind::CharDevice { rdev } | EntryKind::BlockDevice { rdev } => {
                let _ = write!(line, " rdev={rdev}");
            }
            EntryKind::Dir | EntryKind::Fifo => {}
        }
        out.push_str(&line);
        out.push('\n');
    }
}

/// ` layer …` of the listing: a whole-tree layer by the tree it names, any
/// other by the lengths of its lists.
fn layer_line(store: &Store, id: &LayerId) -> String {
    let bytes = store.read_chunk(&ChunkId::from(*id)).expect("layer object");
    if bytes.get(4) == Some(&5) {
        let tree: [u8; 32] = bytes[8..40].try_into().expect("a tree id");
        return format!("layer {id} tree {}", ChunkId::from_bytes(tree));
    }
    let layer = store.layer(id).expect("layer");
    format!(
        "layer {id} upserts {} whiteouts {} opaque {}",
        layer.upserts().len(),
        layer.whiteouts().len(),
        layer.opaque_dirs().len()
    )
}
