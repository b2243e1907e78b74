//! OCI image layout directories and `docker save` archives.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use oci_spec::image::{
    ANNOTATION_REF_NAME, Descriptor, ImageIndex, ImageIndexBuilder, ImageManifestBuilder, MediaType,
};

use crate::error::{Error, Result};
use crate::fsutil::durable;
use crate::id::ImageId;
use crate::oci::blobs::{
    ExportOptions, ImportOptions, blob_file, descriptor, export_blobs, import_blobs, read_json_blob,
};
use crate::oci::config::canonical_json;
use crate::oci::digest::sha256_digest;
use crate::store::Store;

const LAYOUT_FILE: &str = "oci-layout";
const LAYOUT_JSON: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

fn oci_err(what: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Oci {
        what: what.into(),
        reason: reason.into(),
    }
}

/// [`Exchange::export_layout`](super::Exchange::export_layout) of `store`.
pub(crate) fn export_layout(
    store: &Store,
    image: &ImageId,
    layout: &Path,
    reference: Option<&str>,
    options: &ExportOptions,
) -> Result<Descriptor> {
    let blobs = layout.join("blobs").join("sha256");
    fs_err::create_dir_all(&blobs).map_err(|e| Error::io("create directory", &blobs, e))?;
    let marker = layout.join(LAYOUT_FILE);
    if marker.exists() {
        check_layout_file(layout)?;
    } else {
        durable::write_atomic(layout, &marker, LAYOUT_JSON)?;
    }
    let export = export_blobs(store, image, &blobs, options)?;
    let mut manifest = export.manifest.descriptor.clone();
    let index_path = layout.join("index.json");
    let mut manifests: Vec<Descriptor> = if index_path.exists() {
        read_index(layout)?.manifests().clone()
    } else {
        Vec::new()
    };
    if let Some(name) = reference {
        manifests.retain(|d| ref_name(d) != Some(name));
        let mut notes = std::collections::HashMap::new();
        notes.insert(ANNOTATION_REF_NAME.to_owned(), name.to_owned());
        manifest.set_annotations(Some(notes));
    } else {
        manifests.retain(|d| !(d.digest() == manifest.digest() && ref_name(d).is_none()));
    }
    manifests.push(manifest.clone());
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests)
        .build()
        .map_err(|e| Error::InvalidArgument(format!("OCI index: {e}")))?;
    durable::write_atomic(layout, &index_path, &canonical_json(&index)?)?;
    Ok(manifest)
}

fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations()
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_REF_NAME))
        .map(String::as_str)
}

fn check_layout_file(layout: &Path) -> Result<()> {
    let path = layout.join(LAYOUT_FILE);
    let bytes = fs_err::read(&path).map_err(|e| Error::io("read", &path, e))?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| oci_err(path.display().to_string(), e.to_string()))?;
    match value.get("imageLayoutVersion").and_then(|v| v.as_str()) {
        Some(v) if v.starts_with("1.") => Ok(()),
        other => Err(oci_err(
            path.display().to_string(),
            format!("unsupported imageLayoutVersion {other:?}"),
        )),
    }
}

fn read_index(layout: &Path) -> Result<ImageIndex> {
    let path = layout.join("index.json");
    let file = File::open(&path).map_err(|e| Error::io("open", &path, e))?;
    ImageIndex::from_reader(file.take(8 << 20))
        .map_err(|e| oci_err(path.display().to_string(), e.to_string()))
}

/// [`Exchange::import_layout`](super::Exchange::import_layout) into `store`.
pub(crate) fn import_layout(
    store: &Store,
    layout: &Path,
    reference: Option<&str>,
    options: &ImportOptions,
) -> Result<ImageId> {
    check_layout_file(layout)?;
    let index = read_index(layout)?;
    let shown = layout.display().to_string();
    let names = || {
        index
            .manifests()
            .iter()
            .map(|d| ref_name(d).map_or_else(|| d.digest().to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let chosen: Vec<&Descriptor> = match reference {
        Some(name) => index
            .manifests()
            .iter()
            .filter(|d| ref_name(d) == Some(name))
            .collect(),
        None => index.manifests().iter().collect(),
    };
    let desc = match (chosen.as_slice(), reference) {
        ([one], _) => *one,
        ([], Some(name)) => {
            return Err(oci_err(
                shown,
                format!("no manifest named '{name}' (there are: {})", names()),
            ));
        }
        ([], None) => return Err(oci_err(shown, "index.json lists no manifest")),
        (_, Some(name)) => {
            return Err(oci_err(shown, format!("several manifests named '{name}'")));
        }
        (_, None) => {
            return Err(oci_err(
                shown,
                format!(
                    "index.json lists several manifests; name one with LAYOUT:REF ({})",
                    names()
                ),
            ));
        }
    };
    if *desc.media_type() == MediaType::ImageIndex {
        return Err(oci_err(
            shown,
            "the manifest is a nested image index (multi-platform); not supported yet",
        ));
    }
    let blobs = layout.join("blobs").join("sha256");
    let open = |d: &Descriptor| -> Result<File> {
        let path = blob_file(&blobs, d)?;
        File::open(&path).map_err(|e| Error::io("open", &path, e))
    };
    let manifest = read_json_blob(open(desc)?, desc, options)?;
    import_blobs(store, &manifest, open, options)
}

/// One image of a `docker save` archive's `manifest.json`.
#[derive(serde::Deserialize)]
struct DockerItem {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// [`Exchange::import_docker_archive`](super::Exchange::import_docker_archive) into `store`.
#[allow(
    clippy::too_many_lines,
    reason = "one pass over the archive, one over its images"
)]
pub(crate) fn import_docker_archive(
    store: &Store,
    archive: &Path,
    reference: Option<&str>,
    options: &ImportOptions,
) -> Result<ImageId> {
    let shown = archive.display().to_string();
    // Pass one: where each member's data lies.
    let mut members: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut manifest_json: Option<Vec<u8>> = None;
    {
        let file = File::open(archive).map_err(|e| Error::io("open", archive, e))?;
        let mut tar = tar::Archive::new(file);
        let entries = tar
            .entries_with_seek()
            .map_err(|e| oci_err(shown.clone(), e.to_string()))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| oci_err(shown.clone(), e.to_string()))?;
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let name = name.trim_start_matches("./").to_owned();
            if name == "manifest.json" {
                let mut buf = Vec::new();
                (&mut entry)
                    .take(options.max_json_size)
                    .read_to_end(&mut buf)
                    .map_err(|e| oci_err(shown.clone(), e.to_string()))?;
                manifest_json = Some(buf);
            }
            if entry.header().entry_type().is_file() {
                members.insert(name, (entry.raw_file_position(), entry.size()));
            }
        }
    }
    let manifest_json = manifest_json
        .ok_or_else(|| oci_err(shown.clone(), "no manifest.json: not a docker save archive"))?;
    let items: Vec<DockerItem> = serde_json::from_slice(&manifest_json)
        .map_err(|e| oci_err(format!("{shown}: manifest.json"), e.to_string()))?;
    let item = match reference {
        Some(r) => items
            .iter()
            .find(|i| i.repo_tags.iter().flatten().any(|t| t == r))
            .ok_or_else(|| oci_err(shown.clone(), format!("no image tagged '{r}'")))?,
        None => match items.as_slice() {
            [one] => one,
            _ => {
                return Err(oci_err(
                    shown,
                    format!("{} images in the archive; name one by its tag", items.len()),
                ));
            }
        },
    };
    let locate = |name: &str| {
        members
            .get(name)
            .copied()
            .ok_or_else(|| oci_err(shown.clone(), format!("no member '{name}'")))
    };
    let open_member = |offset: u64, len: u64| -> Result<std::io::Take<File>> {
        let mut f = File::open(archive).map_err(|e| Error::io("open", archive, e))?;
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| Error::io("seek", archive, e))?;
        Ok(f.take(len))
    };
    // The config: its digest is computed (classic archives name it by it).
    let (off, len) = locate(&item.config)?;
    if len > options.max_json_size {
        return Err(oci_err(shown, "config too large"));
    }
    let mut config = Vec::new();
    open_member(off, len)?
        .read_to_end(&mut config)
        .map_err(|e| Error::io("read", archive, e))?;
    let config_desc = descriptor(MediaType::ImageConfig, len, &sha256_digest(&config))?;
    let diff_ids: Vec<String> = serde_json::from_slice::<serde_json::Value>(&config)
        .ok()
        .and_then(|v| {
            v.get("rootfs")?.get("diff_ids")?.as_array().map(|a| {
                a.iter()
                    .filter_map(|d| d.as_str().map(str::to_owned))
                    .collect()
            })
        })
        .ok_or_else(|| oci_err(format!("{shown}: {}", item.config), "no rootfs.diff_ids"))?;
    if diff_ids.len() != item.layers.len() {
        return Err(oci_err(shown, "as many layers as diff_ids are needed"));
    }
    // Layers: a blob named by its digest (Docker 25+), else an uncompressed
    // tar whose digest is its DiffID (classic).
    let mut layer_descs = Vec::new();
    let mut sources: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    sources.insert(config_desc.digest().to_string(), (off, len));
    for (name, diff_id) in item.layers.iter().zip(&diff_ids) {
        let (off, len) = locate(name)?;
        let digest = match name.strip_prefix("blobs/sha256/") {
            Some(hex) => format!("sha256:{hex}"),
            None => diff_id.clone(),
        };
        let desc = descriptor(MediaType::ImageLayer, len, &digest)?;
        sources.insert(desc.digest().to_string(), (off, len));
        layer_descs.push(desc);
    }
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config_desc)
        .layers(layer_descs)
        .build()
        .map_err(|e| Error::InvalidArgument(format!("OCI manifest: {e}")))?;
    let manifest = canonical_json(&manifest)?;
    import_blobs(
        store,
        &manifest,
        |d: &Descriptor| {
            let (off, len) = sources
                .get(&d.digest().to_string())
                .copied()
                .ok_or_else(|| oci_err(shown.clone(), format!("no blob {}", d.digest())))?;
            open_member(off, len)
        },
        options,
    )
}

/// [`Exchange::export_docker_archive`](super::Exchange::export_docker_archive) of `store`.
pub(crate) fn export_docker_archive(
    store: &Store,
    image: &ImageId,
    archive: &Path,
    repo_tags: &[String],
) -> Result<()> {
    let parent = match archive.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let blobs = durable::unique_tmp_path(&parent, ".layerstore-archive-blobs");
    let tmp = durable::unique_tmp_path(&parent, ".layerstore-archive");
    let written = write_docker_archive(store, image, &blobs, &tmp, repo_tags)
        .and_then(|()| durable::rename_durable(&tmp, archive));
    let _ = fs_err::remove_dir_all(&blobs);
    if written.is_err() {
        let _ = fs_err::remove_file(&tmp);
    }
    written
}

/// The archive of [`export_docker_archive`] written to `tmp`, its blobs
/// exported (uncompressed, as `docker save` writes them) into `blobs` first.
fn write_docker_archive(
    store: &Store,
    image: &ImageId,
    blobs: &Path,
    tmp: &Path,
    repo_tags: &[String],
) -> Result<()> {
    let options = ExportOptions::new(crate::oci::Compression::None);
    let export = export_blobs(store, image, blobs, &options)?;
    let member = |blob: &crate::oci::ExportedBlob| {
        format!("blobs/sha256/{}", blob.descriptor.digest().digest())
    };
    let manifest = serde_json::json!([{
        "Config": member(&export.config),
        "RepoTags": repo_tags,
        "Layers": export.layers.iter().map(member).collect::<Vec<_>>(),
    }]);
    let manifest = serde_json::to_vec(&manifest)
        .map_err(|e| Error::InvalidArgument(format!("manifest.json: {e}")))?;
    let file = File::create(tmp).map_err(|e| Error::io("create", tmp, e))?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    let io = |e: std::io::Error| Error::io("write", tmp, e);
    let header = |size: u64, mode: u32, kind: tar::EntryType| {
        let mut h = tar::Header::new_ustar();
        h.set_size(size);
        h.set_mode(mode);
        h.set_mtime(0);
        h.set_entry_type(kind);
        h
    };
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut h = header(0, 0o755, tar::EntryType::Directory);
        tar.append_data(&mut h, dir, std::io::empty()).map_err(io)?;
    }
    let mut done = std::collections::HashSet::new();
    for blob in std::iter::once(&export.config).chain(&export.layers) {
        if !done.insert(blob.descriptor.digest().to_string()) {
            continue;
        }
        let file = File::open(&blob.path).map_err(|e| Error::io("open", &blob.path, e))?;
        let mut h = header(blob.descriptor.size(), 0o644, tar::EntryType::Regular);
        tar.append_data(&mut h, member(blob), file).map_err(io)?;
    }
    let mut h = header(manifest.len() as u64, 0o644, tar::EntryType::Regular);
    tar.append_data(&mut h, "manifest.json", manifest.as_slice())
        .map_err(io)?;
    let out = tar.into_inner().map_err(io)?;
    let file = out.into_inner().map_err(|e| io(e.into_error()))?;
    durable::sync_file(&file, tmp)
}
