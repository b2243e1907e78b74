//! Writing a layer as a tar stream: members in path order, whiteouts and
//! opaque markers, PAX records for what ustar cannot hold.

use std::io::{self, Write};

use super::{OPAQUE, WHITEOUT, format_pax_time, oci_err};
use crate::error::{Error, Result};
use crate::fsutil::device;
use crate::store::Store;
use crate::store::chunk_list::ChunkRef;
use crate::tree::{Entry, EntryKind, Layer, Metadata, Timestamp, TreePath};

/// The largest value a ustar octal field of 8 bytes holds.
const USTAR_MAX_ID: u64 = 0o7_777_777;
/// The largest value a ustar octal field of 12 bytes holds.
const USTAR_MAX_12: u64 = 0o77_777_777_777;
const USTAR_MAX_12_SIGNED: i64 = 0o77_777_777_777;

/// Writing
///
/// [`Exchange::write_layer_tar`](crate::oci::Exchange::write_layer_tar) of a
/// layer of `store`.
pub(crate) fn write_layer_tar<W: Write>(store: &Store, layer: &Layer, out: W) -> Result<W> {
    write_layer_tar_marked(store, layer, out, None)
}

/// Told where each chunk of file content begins in a tar stream being
/// written: every byte before it has been written to the stream's writer
/// when [`chunk_starts`](Self::chunk_starts) is called (the seekable format
/// cuts its frames there).
pub(crate) trait ChunkMarks {
    /// The next byte written is the first of `chunk`.
    fn chunk_starts(&self, chunk: &ChunkRef) -> io::Result<()>;
}

/// [`write_layer_tar`], telling `marks` (if any) where each chunk begins.
pub(crate) fn write_layer_tar_marked<W: Write>(
    store: &Store,
    layer: &Layer,
    out: W,
    marks: Option<&dyn ChunkMarks>,
) -> Result<W> {
    // Every member, sorted by its path in the tar, so parents come first.
    enum Item<'a> {
        Entry(&'a Entry),
        Whiteout,
        Opaque,
    }
    let io_err = |e: io::Error| Error::io("write", "layer tar", e);
    let mut builder = tar::Builder::new(out);
    builder.mode(tar::HeaderMode::Complete);
    // Each member keyed by the path it concerns: a whiteout comes just before
    // an upsert of the path it deletes (so that extractors that apply members
    // in order delete, then create), an opaque marker just after its
    // directory and before the directory's children; parents come first.
    let mut items: Vec<(TreePath, u8, TreePath, Item<'_>)> = Vec::with_capacity(
        layer.upserts().len() + layer.whiteouts().len() + layer.opaque_dirs().len(),
    );
    for e in layer.upserts() {
        items.push((e.path.clone(), 1, e.path.clone(), Item::Entry(e)));
    }
    for w in layer.whiteouts() {
        let (Some(parent), Some(name)) = (w.parent(), w.file_name()) else {
            continue; // the root cannot be whited out (Layer refuses it)
        };
        let mut marker = WHITEOUT.to_vec();
        marker.extend_from_slice(name);
        items.push((w.clone(), 0, parent.join(&marker)?, Item::Whiteout));
    }
    for d in layer.opaque_dirs() {
        items.push((d.clone(), 2, d.join(OPAQUE)?, Item::Opaque));
    }
    items.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    for (_, _, path, item) in items {
        match item {
            Item::Entry(entry) => append_entry(&mut builder, store, entry, marks)?,
            Item::Whiteout | Item::Opaque => {
                let meta = Metadata::new(0o644);
                let header = header_for(
                    &mut builder,
                    path.as_bytes(),
                    tar::EntryType::Regular,
                    &meta,
                    0,
                    None,
                    None,
                )?;
                builder.append(&header, io::empty()).map_err(io_err)?;
            }
        }
    }
    builder.into_inner().map_err(io_err)
}

fn append_entry<W: Write>(
    builder: &mut tar::Builder<W>,
    store: &Store,
    e: &Entry,
    marks: Option<&dyn ChunkMarks>,
) -> Result<()> {
    let io_err = |err: io::Error| match err.into_inner() {
        Some(inner) => match inner.downcast::<Error>() {
            // The store's own error (Corrupt naming the pack, ChunkNotFound…).
            Ok(ours) => *ours,
            Err(other) => Error::io("write", "layer tar", io::Error::other(other)),
        },
        None => Error::io("write", "layer tar", io::Error::other("write failed")),
    };
    let mut name = if e.path.is_root() {
        b"./".to_vec()
    } else {
        e.path.as_bytes().to_vec()
    };
    match &e.kind {
        EntryKind::File { size, chunks } => {
            let header = header_for(
                builder,
                &name,
                tar::EntryType::Regular,
                &e.meta,
                *size,
                None,
                None,
            )?;
            match marks {
                None => builder.append(&header, store.reader(chunks)),
                Some(marks) => builder.append(
                    &header,
                    MarkedChunks {
                        store,
                        chunks: chunks.chunks(),
                        buf: Vec::new(),
                        pos: 0,
                        marks,
                    },
                ),
            }
            .map_err(io_err)
        }
        EntryKind::Dir => {
            if !e.path.is_root() {
                name.push(b'/');
            }
            let header = header_for(
                builder,
                &name,
                tar::EntryType::Directory,
                &e.meta,
                0,
                None,
                None,
            )?;
            builder.append(&header, io::empty()).map_err(io_err)
        }
        EntryKind::Symlink { target } => {
            let header = header_for(
                builder,
                &name,
                tar::EntryType::Symlink,
                &e.meta,
                0,
                Some(target),
                None,
            )?;
            builder.append(&header, io::empty()).map_err(io_err)
        }
        EntryKind::Hardlink { target } => {
            let header = header_for(
                builder,
                &name,
                tar::EntryType::Link,
                &e.meta,
                0,
                Some(target.as_bytes()),
                None,
            )?;
            builder.append(&header, io::empty()).map_err(io_err)
        }
        EntryKind::CharDevice { rdev } | EntryKind::BlockDevice { rdev } => {
            let kind = if matches!(e.kind, EntryKind::CharDevice { .. }) {
                tar::EntryType::Char
            } else {
                tar::EntryType::Block
            };
            let header = header_for(builder, &name, kind, &e.meta, 0, None, Some(*rdev))?;
            builder.append(&header, io::empty()).map_err(io_err)
        }
        EntryKind::Fifo => {
            let header = header_for(builder, &name, tar::EntryType::Fifo, &e.meta, 0, None, None)?;
            builder.append(&header, io::empty()).map_err(io_err)
        }
    }
}

/// A file's content read a chunk at a time, `marks` told before the first
/// byte of each is handed out. (`tar` copies with `io::copy`, which writes
/// all it has read before it reads again.)
struct MarkedChunks<'a> {
    store: &'a Store,
    chunks: &'a [ChunkRef],
    buf: Vec<u8>,
    pos: usize,
    marks: &'a dyn ChunkMarks,
}

impl io::Read for MarkedChunks<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.buf.len() {
            let Some((chunk, rest)) = self.chunks.split_first() else {
                return Ok(0);
            };
            self.marks.chunk_starts(chunk)?;
            self.buf = self
                .store
                .read_listed_chunk(*chunk)
                .map_err(io::Error::other)?;
            self.chunks = rest;
            self.pos = 0;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A ustar header for one member, after writing the PAX record it needs (if
/// any) into `builder`.
fn header_for<W: Write>(
    builder: &mut tar::Builder<W>,
    name: &[u8],
    kind: tar::EntryType,
    meta: &Metadata,
    size: u64,
    link: Option<&[u8]>,
    rdev: Option<u64>,
) -> Result<tar::Header> {
    use std::os::unix::ffi::OsStrExt as _;
    let shown = || String::from_utf8_lossy(name).into_owned();
    let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(meta.mode);
    header.set_uid(meta.uid.into());
    header.set_gid(meta.gid.into());
    if u64::from(meta.uid) > USTAR_MAX_ID {
        header.set_uid(0);
        pax.push(("uid".into(), meta.uid.to_string().into_bytes()));
    }
    if u64::from(meta.gid) > USTAR_MAX_ID {
        header.set_gid(0);
        pax.push(("gid".into(), meta.gid.to_string().into_bytes()));
    }
    let Timestamp { secs, nanos } = meta.mtime;
    match u64::try_from(secs) {
        Ok(s) if s <= USTAR_MAX_12 => header.set_mtime(s),
        _ => header.set_mtime(0),
    }
    if nanos != 0 || !(0..=USTAR_MAX_12_SIGNED).contains(&secs) {
        pax.push(("mtime".into(), format_pax_time(meta.mtime).into_bytes()));
    }
    if size > USTAR_MAX_12 {
        header.set_size(0);
        pax.push(("size".into(), size.to_string().into_bytes()));
    } else {
        header.set_size(size);
    }
    if header.set_path(std::ffi::OsStr::from_bytes(name)).is_err() {
        pax.push(("path".into(), name.to_vec()));
        let tail = &name[name.len().saturating_sub(99)..];
        header
            .set_path(std::ffi::OsStr::from_bytes(tail))
            .or_else(|_| header.set_path("long-name"))
            .map_err(|e| oci_err(shown(), format!("cannot name the member: {e}")))?;
    }
    if let Some(link) = link
        && (link.len() > 100 || header.set_link_name_literal(link).is_err())
    {
        pax.push(("linkpath".into(), link.to_vec()));
        header
            .set_link_name_literal("long-link")
            .map_err(|e| oci_err(shown(), format!("cannot name the link: {e}")))?;
    }
    if let Some(rdev) = rdev {
        header
            .set_device_major(device::major(rdev))
            .and_then(|()| header.set_device_minor(device::minor(rdev)))
            .map_err(|e| oci_err(shown(), format!("device number: {e}")))?;
    }
    for (key, value) in &meta.xattrs {
        let key = std::str::from_utf8(key)
            .map_err(|_| oci_err(shown(), "an xattr name is not UTF-8; PAX cannot hold it"))?;
        pax.push((format!("SCHILY.xattr.{key}"), value.clone()));
    }
    if !pax.is_empty() {
        builder
            .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            .map_err(|e| Error::io("write", "layer tar", e))?;
    }
    header.set_cksum();
    Ok(header)
}
