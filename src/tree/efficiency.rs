//! How well an image's layers use their bytes, computed from the stored
//! layers (no layer is extracted): what each layer adds, modifies and
//! removes; the efficiency score, wasted bytes and the user-wasted share as
//! `dive` defines them; the paths that waste most; and beside each figure
//! the bytes the store keeps for it after chunk dedup and compression.
//!
//! The figures follow dive (`filetree/efficiency.go`): every path that a
//! layer adds, modifies or removes is an *occurrence* of it, of the size it
//! has there (a removal counts the size the path had below; a removed
//! directory counts each path it held). The score is the sum over paths of
//! the smallest size of any occurrence over the sum of the sizes of all
//! occurrences; the wasted bytes are the sizes of all occurrences of the
//! paths that occur twice or more; the user-wasted share is the wasted
//! bytes over the bytes the layers above the base add or modify.
//! Directories count only through what they hold (as in dive, where only
//! leaves are visited).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;

use crate::error::Result;
use crate::id::{ImageId, LayerId};
use crate::store::Store;
use crate::store::chunk_list::ChunkRef;
use crate::tree::entry::EntryKind;
use crate::tree::path::TreePath;

/// Files and their bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileCount {
    /// Paths other than directories.
    pub files: u64,
    /// The sum of their sizes (regular files; links and devices are 0).
    pub bytes: u64,
}

impl FileCount {
    fn add(&mut self, size: u64) {
        self.files += 1;
        self.bytes += size;
    }
}

/// What one layer does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerEfficiency {
    /// The layer.
    pub id: LayerId,
    /// Paths new in this layer.
    pub added: FileCount,
    /// Paths the layer replaces (their new sizes).
    pub modified: FileCount,
    /// Paths the layer removes (their sizes below it).
    pub removed: FileCount,
    /// The bytes the store keeps for the added and modified files beyond
    /// what the layers below already hold: their distinct chunks that no
    /// lower layer's file has, compressed (see [`Store::chunk_stored_len`]).
    /// The layers' figures add up to the image's.
    pub stored_bytes: u64,
}

impl LayerEfficiency {
    /// The bytes the layer adds or modifies: its size as a layer tar holds it.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.added.bytes + self.modified.bytes
    }
}

/// A path that occurs in two or more layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WastedPath {
    /// The path.
    pub path: TreePath,
    /// How many times a layer adds, modifies or removes it.
    pub occurrences: u64,
    /// The sum of its sizes over those occurrences.
    pub bytes: u64,
    /// The bytes the store keeps for all its versions: their distinct
    /// chunks, compressed.
    pub stored_bytes: u64,
}

/// The efficiency report of one image: see the module's doc for what each
/// figure means.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Efficiency {
    /// The image.
    pub image: ImageId,
    /// Per layer, bottom first.
    pub layers: Vec<LayerEfficiency>,
    /// The smallest size of each path summed, over the sizes of all its
    /// occurrences summed: 1.0 when no path occurs twice.
    pub score: f64,
    /// The bytes all layers add or modify.
    pub size: u64,
    /// The bytes the store keeps for all of them (distinct chunks,
    /// compressed).
    pub stored_bytes: u64,
    /// The bytes the layers above the base add or modify.
    pub user_size: u64,
    /// The sizes of every occurrence of the paths that occur twice or more.
    pub wasted_bytes: u64,
    /// The bytes the store keeps for those versions (distinct chunks,
    /// compressed).
    pub wasted_stored_bytes: u64,
    /// `wasted_bytes / user_size` (0 when `user_size` is 0).
    pub user_wasted_share: f64,
    /// The paths that occur twice or more, most bytes first (then by path).
    pub wasted_paths: Vec<WastedPath>,
}

/// What is known of one path over the layers.
#[derive(Default)]
struct PathStats {
    occurrences: u64,
    bytes: u64,
    smallest: u64,
    /// The chunks of every version seen.
    chunks: Vec<ChunkRef>,
}

impl PathStats {
    fn occur(&mut self, size: u64, chunks: &[ChunkRef]) {
        self.smallest = if self.occurrences == 0 {
            size
        } else {
            self.smallest.min(size)
        };
        self.occurrences += 1;
        self.bytes += size;
        for chunk in chunks {
            if !self.chunks.contains(chunk) {
                self.chunks.push(*chunk);
            }
        }
    }
}

/// The figures of [`Store::efficiency`] over all paths.
struct Waste {
    score: f64,
    bytes: u64,
    stored_bytes: u64,
    paths: Vec<WastedPath>,
}

/// A path of the tree the layers so far flatten to. Its chunks are in its
/// [`PathStats`], which every version met was recorded into.
struct Live {
    dir: bool,
    size: u64,
}

/// Efficiency
impl Store {
    /// The efficiency report of image `id`, from its stored layers: each
    /// layer is decoded once, and only the paths they name are kept.
    ///
    /// # Errors
    /// As [`Store::image`] and [`Store::layer`].
    pub fn efficiency(&self, id: &ImageId) -> Result<Efficiency> {
        let image = self.image(id)?;
        let mut live: BTreeMap<TreePath, Live> = BTreeMap::new();
        let mut paths: HashMap<TreePath, PathStats> = HashMap::new();
        let mut layers = Vec::new();
        let mut all_chunks = HashSet::new();
        let mut stored_bytes = 0;
        for layer_id in image.layers() {
            let layer = self.layer(layer_id)?;
            let mut report = LayerEfficiency {
                id: *layer_id,
                added: FileCount::default(),
                modified: FileCount::default(),
                removed: FileCount::default(),
                stored_bytes: 0,
            };
            for path in layer.whiteouts() {
                remove(&mut live, &mut paths, path, true, &mut report);
            }
            for path in layer.opaque_dirs() {
                remove(&mut live, &mut paths, path, false, &mut report);
            }
            for entry in layer.upserts() {
                let (size, chunks) = match &entry.kind {
                    EntryKind::Dir => {
                        if live.get(&entry.path).is_some_and(|l| !l.dir) {
                            remove(&mut live, &mut paths, &entry.path, true, &mut report);
                        }
                        live.entry(entry.path.clone())
                            .or_insert(Live { dir: true, size: 0 });
                        continue;
                    }
                    EntryKind::File { size, chunks } => (*size, chunks.chunks()),
                    _ => (0, &[][..]),
                };
                match live.get(&entry.path) {
                    Some(old) if old.dir => {
                        remove(&mut live, &mut paths, &entry.path, true, &mut report);
                        report.added.add(size);
                    }
                    Some(_) => report.modified.add(size),
                    None => report.added.add(size),
                }
                for chunk in chunks {
                    if all_chunks.insert(chunk.id) {
                        let len = self.stored_len(chunk);
                        report.stored_bytes += len;
                        stored_bytes += len;
                    }
                }
                paths
                    .entry(entry.path.clone())
                    .or_default()
                    .occur(size, chunks);
                live.insert(entry.path.clone(), Live { dir: false, size });
            }
            layers.push(report);
        }
        drop(live);

        let waste = self.waste(paths);
        let size = layers.iter().map(LayerEfficiency::size).sum();
        let user_size = layers.iter().skip(1).map(LayerEfficiency::size).sum();
        Ok(Efficiency {
            image: *id,
            layers,
            score: waste.score,
            size,
            stored_bytes,
            user_size,
            wasted_bytes: waste.bytes,
            wasted_stored_bytes: waste.stored_bytes,
            user_wasted_share: ratio(waste.bytes, user_size, 0.0),
            wasted_paths: waste.paths,
        })
    }

    /// The score and the waste of the paths' occurrences.
    fn waste(&self, paths: HashMap<TreePath, PathStats>) -> Waste {
        let (mut smallest, mut total) = (0u64, 0u64);
        let mut wasted_bytes = 0;
        let mut wasted_chunks = HashSet::new();
        let mut wasted_stored_bytes = 0;
        let mut wasted_paths = Vec::new();
        for (path, stats) in paths {
            smallest += stats.smallest;
            total += stats.bytes;
            if stats.occurrences < 2 {
                continue;
            }
            wasted_bytes += stats.bytes;
            let mut stored = 0;
            for chunk in &stats.chunks {
                let len = self.stored_len(chunk);
                stored += len;
                if wasted_chunks.insert(chunk.id) {
                    wasted_stored_bytes += len;
                }
            }
            wasted_paths.push(WastedPath {
                path,
                occurrences: stats.occurrences,
                bytes: stats.bytes,
                stored_bytes: stored,
            });
        }
        wasted_paths.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.path.cmp(&b.path)));
        Waste {
            score: ratio(smallest, total, 1.0),
            bytes: wasted_bytes,
            stored_bytes: wasted_stored_bytes,
            paths: wasted_paths,
        }
    }

    /// What the store keeps for one chunk: its compressed share when
    /// committed, else its length.
    fn stored_len(&self, chunk: &ChunkRef) -> u64 {
        self.chunk_stored_len(&chunk.id)
            .unwrap_or(u64::from(chunk.len))
    }
}

/// Takes `path` (with `with_self`) and every path beneath it out of the
/// flattened tree, counting each non-directory as removed by this layer.
fn remove(
    live: &mut BTreeMap<TreePath, Live>,
    paths: &mut HashMap<TreePath, PathStats>,
    path: &TreePath,
    with_self: bool,
    report: &mut LayerEfficiency,
) {
    let start = if with_self {
        Bound::Included(path)
    } else {
        Bound::Excluded(path)
    };
    let gone: Vec<TreePath> = live
        .range::<TreePath, _>((start, Bound::Unbounded))
        .take_while(|(p, _)| *p == path || path.is_ancestor_of(p))
        .map(|(p, _)| p.clone())
        .collect();
    for p in gone {
        if let Some(old) = live.remove(&p)
            && !old.dir
        {
            report.removed.add(old.size);
            paths.entry(p).or_default().occur(old.size, &[]);
        }
    }
}

/// `a / b`, or `if_empty` when `b` is 0.
fn ratio(a: u64, b: u64, if_empty: f64) -> f64 {
    if b == 0 {
        if_empty
    } else {
        a as f64 / b as f64
    }
}
