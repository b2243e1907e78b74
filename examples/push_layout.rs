//! Push an OCI image layout to a registry, uploading only the blobs it lacks.
//!
//! ```text
//! cargo run --release --features registry --example push_layout -- \
//!     LAYOUT[:REF] REGISTRY/REPO[:TAG] [--insecure]
//! ```
//!
//! Prints the blobs uploaded and already present, and the seconds it took.
//! `scripts/bench-registry.sh` times it against `skopeo copy`.

use std::time::Instant;

use layerstore::oci::{PushOptions, Registry, RegistryOptions, RegistryRef};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let insecure = args.iter().any(|a| a == "--insecure");
    let positional: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let [layout, dest] = positional.as_slice() else {
        eprintln!("usage: push_layout LAYOUT[:REF] REGISTRY/REPO[:TAG] [--insecure]");
        std::process::exit(2);
    };
    let (layout, name) = match layout.rsplit_once(':') {
        Some((path, name)) => (path, Some(name)),
        None => (layout.as_str(), None),
    };
    let dest: RegistryRef = dest.parse()?;
    let start = Instant::now();
    let registry = Registry::new(&dest.host, &RegistryOptions::default().insecure(insecure))?;
    let report = registry.push_layout(
        std::path::Path::new(layout),
        name,
        &dest,
        &PushOptions::default(),
    )?;
    println!("blobs uploaded: {}", report.blobs_uploaded);
    println!("blobs already present: {}", report.blobs_present);
    println!("bytes uploaded: {}", report.bytes_uploaded);
    println!("seconds: {:.3}", start.elapsed().as_secs_f64());
    Ok(())
}
