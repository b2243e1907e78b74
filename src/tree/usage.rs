//! What each tagged image costs the store, as `docker system df -v` shows
//! it for layers: its logical size, the bytes it shares with other images,
//! and the bytes only it holds (what untagging it and `gc` would free).

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::error::Result;
use crate::id::{ChunkId, ImageId};
use crate::store::Store;
use crate::tree::TagName;
use crate::tree::reach::{Root, Walk, roots};

/// One image's share of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUsage {
    /// The image.
    pub image: ImageId,
    /// Its tags, sorted.
    pub tags: Vec<TagName>,
    /// The sum of its tree's file sizes.
    pub logical_bytes: u64,
    /// The bytes the store keeps for everything it reaches (file chunks,
    /// directory, layer and image objects; compressed shares, see
    /// [`Store::chunk_stored_len`]).
    pub stored_bytes: u64,
    /// Of `stored_bytes`, what another root (another image, a build-cache
    /// entry, a container's pin) reaches too.
    pub shared_bytes: u64,
    /// Of `stored_bytes`, what nothing else reaches: what removing the image
    /// (its tags) and collecting garbage would free.
    pub unique_bytes: u64,
}

/// Usage
impl Store {
    /// Every tagged image's usage, in the order of its first tag. Roots that
    /// are not tags (build-cache entries, pins) count as sharers; a root
    /// that does not read is skipped.
    ///
    /// # Errors
    /// As [`Store::tags`]; as [`Store::image`] and [`Store::layer`] for an
    /// object an image reaches that does not read.
    pub fn image_usage(&self) -> Result<Vec<ImageUsage>> {
        let mut images: BTreeMap<ImageId, Vec<TagName>> = BTreeMap::new();
        for (tag, id) in self.tags()? {
            images.entry(id).or_default().push(tag);
        }
        // Each root's reach; an image tagged twice is walked once.
        let mut reached: Vec<(Option<ImageId>, HashSet<ChunkId>)> = Vec::new();
        for id in images.keys() {
            let mut walk = Walk::new(self, None);
            walk.image(*id)?;
            reached.push((Some(*id), walk.live));
        }
        for (_, root) in roots(self)? {
            let Ok(root) = root else { continue };
            let mut walk = Walk::new(self, None);
            let walked = match root {
                Root::Tag(..) => continue,
                Root::Cache(id) => walk.pinned(id),
                Root::Pinned(ids) => ids
                    .into_iter()
                    .try_for_each(|id| walk.pinned(id).map(drop))
                    .map(|()| crate::tree::reach::Damage::default()),
            };
            if walked.is_ok() {
                reached.push((None, walk.live));
            }
        }
        let mut holders: HashMap<ChunkId, u32> = HashMap::new();
        for (_, live) in &reached {
            for id in live {
                *holders.entry(*id).or_default() += 1;
            }
        }
        let mut out = Vec::new();
        for (image, live) in &reached {
            let Some(image) = image else { continue };
            let (mut shared, mut unique) = (0, 0);
            for id in live {
                let len = self.chunk_stored_len(id).unwrap_or(0);
                if holders.get(id).copied().unwrap_or(0) > 1 {
                    shared += len;
                } else {
                    unique += len;
                }
            }
            let logical_bytes = self
                .snapshot(&self.image(image)?.rootfs())?
                .iter()
                .map(|e| match &e.kind {
                    crate::tree::entry::EntryKind::File { size, .. } => *size,
                    _ => 0,
                })
                .sum();
            let mut tags = images.get(image).cloned().unwrap_or_default();
            tags.sort();
            out.push(ImageUsage {
                image: *image,
                tags,
                logical_bytes,
                stored_bytes: shared + unique,
                shared_bytes: shared,
                unique_bytes: unique,
            });
        }
        out.sort_by(|a, b| a.tags.cmp(&b.tags));
        Ok(out)
    }
}
