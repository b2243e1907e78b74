//! The scenario layerstore exists for: images built on a shared base store the
//! base once.
//!
//! ```text
//! cargo run --release --example assemble
//! ```
//!
//! Builds `baseImage` from three layers (base OS files, dependencies,
//! application libraries), then `imageA` and `imageB` on top of it with one
//! layer each, entirely in memory through the `memory` mount backend: each
//! layer is a container on the previous image whose changes are committed.
//! Then it prints every image's layers with their sizes and shows, from the
//! store's own statistics, that the three base layers are stored once for the
//! three images. Last, it pushes `imageA` and then `imageB` to a second store
//! (`Store::sync_image`): the first push moves the base and A's layer, the
//! second only the chunks of B's own layer. The data is generated here (no
//! download); the stores live in a temporary directory, deleted at the end.

use std::sync::Arc;

use layerstore::mount::{CommitOptions, Containers, MemoryBackend, PrepareOptions};
use layerstore::{
    EntryKind, ImageId, LayerId, Store, StoreOptions, SyncOptions, TagName, TreePath,
};

/// Deterministic bytes: half of each file is text-like (compresses), half
/// noise (does not), as in real binaries and libraries.
fn content(seed: &str, len: usize) -> Vec<u8> {
    let mut noise = vec![0u8; len / 2];
    blake3::Hasher::new()
        .update(seed.as_bytes())
        .finalize_xof()
        .fill(&mut noise);
    let mut out = Vec::with_capacity(len);
    let mut i = 0usize;
    while out.len() < len - noise.len() {
        out.extend_from_slice(format!("{seed} line {i} of generated content\n").as_bytes());
        i += 1;
    }
    out.truncate(len - noise.len());
    out.extend_from_slice(&noise);
    out
}

fn path(p: &str) -> TreePath {
    TreePath::new(p).expect("a valid path")
}

/// One layer's worth of files: `count` files of `size` bytes under `dir`.
struct Step {
    name: &'static str,
    dir: &'static str,
    count: usize,
    size: usize,
}

/// baseImage: base OS files, dependencies, application libraries.
const BASE: [Step; 3] = [
    Step {
        name: "os",
        dir: "usr/bin",
        count: 120,
        size: 96 << 10,
    },
    Step {
        name: "deps",
        dir: "usr/lib/deps",
        count: 60,
        size: 128 << 10,
    },
    Step {
        name: "applibs",
        dir: "opt/app/lib",
        count: 30,
        size: 160 << 10,
    },
];

/// Makes the image `parent` + one layer holding `step`'s files, tags it
/// `tag`, and returns its id. The layer is assembled in a `memory` container.
fn add_layer(
    containers: &Containers<'_>,
    parent: &ImageId,
    step: &Step,
    tag: Option<&str>,
) -> Result<ImageId, Box<dyn std::error::Error>> {
    let name = format!("build-{}", step.name);
    let options = PrepareOptions::default().backend("memory");
    containers.prepare(&name, parent, &options)?;
    {
        let files = containers.files(&name)?;
        let mut made = String::new();
        for component in step.dir.split('/') {
            if !made.is_empty() {
                made.push('/');
            }
            made.push_str(component);
            if files.list(&path(&made)).is_err() {
                files.create_dir(&path(&made), 0o755)?;
            }
        }
        for i in 0..step.count {
            let file = format!("{}/{}-{i:03}", step.dir, step.name);
            files.write(&path(&file), &content(&file, step.size))?;
        }
    }
    let image = containers.commit(&name, &{
        let mut options = CommitOptions::default().message(format!("add {}", step.name));
        options.tag = tag.map(str::parse::<TagName>).transpose()?;
        options
    })?;
    containers.remove(&name)?;
    Ok(image)
}

/// The bytes of file content a layer adds.
fn layer_size(store: &Store, id: &LayerId) -> Result<u64, layerstore::Error> {
    Ok(store
        .layer(id)?
        .upserts()
        .iter()
        .map(|e| match &e.kind {
            EntryKind::File { size, .. } => *size,
            _ => 0,
        })
        .sum())
}

/// Prints each image's layers with their sizes; returns the sum over all.
fn print_images(store: &Store, images: &[(&str, &ImageId)]) -> Result<u64, layerstore::Error> {
    let mut logical = 0u64;
    for (name, id) in images {
        let img = store.image(id)?;
        println!("{name}  {id}");
        let mut total = 0;
        for (layer, history) in img.layers().iter().zip(img.history()) {
            let size = layer_size(store, layer)?;
            total += size;
            println!(
                "  layer {}  {:>10}  {}",
                &layer.to_string()[..19],
                mib(size),
                history.comment
            );
        }
        println!("  total {:>27}", mib(total));
        logical += total;
    }
    Ok(logical)
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / f64::from(1 << 20))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let scratch = tempfile::tempdir()?;
    let store = Store::create(scratch.path().join("store"), &StoreOptions::default())?;
    let containers = Containers::with_backends(&store, vec![Arc::new(MemoryBackend::new())]);

    // baseImage: three layers.
    let mut image = containers.empty_image()?;
    for (i, step) in BASE.iter().enumerate() {
        let tag = (i + 1 == BASE.len()).then_some("base-image");
        image = add_layer(&containers, &image, step, tag)?;
    }
    let base = image;
    let after_base = store.stats()?;

    // imageA and imageB: one layer each on top of baseImage.
    let image_a = add_layer(
        &containers,
        &base,
        &Step {
            name: "appA",
            dir: "opt/app/a",
            count: 10,
            size: 64 << 10,
        },
        Some("image-a"),
    )?;
    let image_b = add_layer(
        &containers,
        &base,
        &Step {
            name: "appB",
            dir: "opt/app/b",
            count: 12,
            size: 64 << 10,
        },
        Some("image-b"),
    )?;
    let after_all = store.stats()?;

    let logical = print_images(
        &store,
        &[
            ("baseImage", &base),
            ("imageA", &image_a),
            ("imageB", &image_b),
        ],
    )?;

    let base_bytes: u64 = store
        .image(&base)?
        .layers()
        .iter()
        .map(|l| layer_size(&store, l))
        .sum::<Result<_, _>>()?;
    let own_a = layer_size(
        &store,
        store.image(&image_a)?.layers().last().expect("a layer"),
    )?;
    let own_b = layer_size(
        &store,
        store.image(&image_b)?.layers().last().expect("a layer"),
    )?;
    let added = after_all.unique_bytes - after_base.unique_bytes;
    println!();
    println!("three images, logical content:      {}", mib(logical));
    println!(
        "the store, unique content:          {}",
        mib(after_all.unique_bytes)
    );
    println!(
        "the store, on disk (zstd):          {}",
        mib(after_all.stored_bytes)
    );
    println!(
        "imageA and imageB added to the store: {} (their own layers: {} + {})",
        mib(added),
        mib(own_a),
        mib(own_b)
    );
    // The base layers are stored once: the unique content is the base plus
    // each image's own layer (and a little metadata), not three bases.
    let expected = base_bytes + own_a + own_b;
    let shared_once =
        after_all.unique_bytes < expected + expected / 20 && after_all.unique_bytes >= expected;
    println!(
        "base layers stored once for three images: {}",
        if shared_once { "yes" } else { "NO" }
    );
    if !shared_once {
        return Err("the base layers were stored more than once".into());
    }
    push_to_second_store(&store, scratch.path(), &image_a, &image_b, own_b)
}

/// Pushes imageA, then imageB, into a second store and shows what moved.
fn push_to_second_store(
    store: &Store,
    scratch: &std::path::Path,
    image_a: &ImageId,
    image_b: &ImageId,
    own_b: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let remote = Store::create(scratch.join("second-store"), &StoreOptions::default())?;
    println!();
    let mut moved_b = 0;
    for (name, id) in [("imageA", image_a), ("imageB", image_b)] {
        let report = store.sync_image(id, &remote, &SyncOptions::default())?;
        println!(
            "push {name} to a second store: moved {} chunks ({}), skipped {} chunks ({}) it had",
            report.chunks_moved,
            mib(report.bytes_moved),
            report.chunks_skipped,
            mib(report.bytes_skipped)
        );
        moved_b = report.bytes_moved;
    }
    let only_own = moved_b <= own_b + own_b / 20;
    println!(
        "the second push moved only imageB's own layer: {}",
        if only_own { "yes" } else { "NO" }
    );
    if !only_own {
        return Err("the second push moved more than imageB's own layer".into());
    }
    Ok(())
}
