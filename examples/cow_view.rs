//! A copy-on-write view of an image: change files in a container, commit the
//! changes as a new layer, and see the new image share every layer below.
//!
//! ```text
//! cargo run --release --example cow_view
//! ```
//!
//! Makes an image of two layers, opens a container on it with the `copy`
//! backend (a real directory, no privilege needed; `overlay` does the same
//! with the kernel's overlayfs as root), edits, adds and deletes files there
//! with plain `std::fs`, and commits: the new image is the old one's layers
//! plus one holding exactly those changes. Everything lives in a temporary
//! directory, deleted at the end.

use std::sync::Arc;

use layerstore::mount::{CommitOptions, Containers, CopyBackend, MemoryBackend, PrepareOptions};
use layerstore::{Change, ChangeKind, ImageId, Store, StoreOptions, TreePath};

fn path(p: &str) -> TreePath {
    TreePath::new(p).expect("a valid path")
}

/// An image of two layers (base files, then an app), made in memory.
fn make_image(containers: &Containers<'_>) -> Result<ImageId, Box<dyn std::error::Error>> {
    let memory = PrepareOptions::default().backend("memory");
    let mut image = containers.empty_image()?;
    for (step, files) in [
        (
            "base",
            vec![("etc/os-release", "NAME=demo\n"), ("etc/motd", "welcome\n")],
        ),
        (
            "app",
            vec![
                ("srv/index.html", "<h1>v1</h1>\n"),
                ("srv/old.css", "body{}\n"),
            ],
        ),
    ] {
        containers.prepare(step, &image, &memory)?;
        {
            let view = containers.files(step)?;
            for (file, content) in files {
                let dir = path(file).parent().expect("a parent");
                if view.list(&dir).is_err() {
                    view.create_dir(&dir, 0o755)?;
                }
                view.write(&path(file), content.as_bytes())?;
            }
        }
        image = containers.commit(
            step,
            &CommitOptions::default().message(format!("add {step}")),
        )?;
        containers.remove(step)?;
    }
    Ok(image)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let scratch = tempfile::tempdir()?;
    let store = Store::create(scratch.path().join("store"), &StoreOptions::default())?;
    let containers = Containers::with_backends(
        &store,
        vec![Arc::new(CopyBackend::new()), Arc::new(MemoryBackend::new())],
    );

    let image = make_image(&containers)?;
    println!(
        "image {image}: {} layers",
        store.image(&image)?.layers().len()
    );

    // A container on it, as a directory: edit it with any tool.
    let target = scratch.path().join("web");
    let copy = PrepareOptions::default().backend("copy").target(&target);
    containers.prepare("web", &image, &copy)?;
    std::fs::write(target.join("srv/index.html"), "<h1>v2</h1>\n")?;
    std::fs::write(target.join("srv/new.js"), "console.log('hi')\n")?;
    std::fs::remove_file(target.join("srv/old.css"))?;
    println!("container 'web' at {}: 3 files changed", target.display());

    let committed = containers.commit(
        "web",
        &CommitOptions::default()
            .tag("web:v2".parse()?)
            .message("edit the site"),
    )?;
    let old = store.image(&image)?;
    let new = store.image(&committed)?;
    println!("committed {committed} (tagged web:v2)");
    for (i, layer) in new.layers().iter().enumerate() {
        let shared = old.layers().get(i) == Some(layer);
        println!(
            "  layer {}  {}",
            &layer.to_string()[..19],
            if shared {
                "shared with the parent image"
            } else {
                "new: the container's changes"
            }
        );
    }
    let top = store.layer(new.layers().last().expect("a layer"))?;
    let changes: Vec<Change> = top.changes(&store.image_tree(&image)?)?;
    for change in &changes {
        println!("    {change}");
    }
    let has =
        |kind: ChangeKind, p: &str| changes.iter().any(|c| c.kind == kind && c.path == path(p));
    containers.remove("web")?;
    let ok = new.layers().len() == old.layers().len() + 1
        && new.layers()[..old.layers().len()] == old.layers()[..]
        && has(ChangeKind::Modified, "srv/index.html")
        && has(ChangeKind::Added, "srv/new.js")
        && has(ChangeKind::Deleted, "srv/old.css");
    println!(
        "the new image shares the old layers and adds one: {}",
        if ok { "yes" } else { "NO" }
    );
    if !ok {
        return Err("unexpected layers".into());
    }
    Ok(())
}
