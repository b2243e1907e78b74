//! Garbage collection: [`Store::gc`] and its options. The tree's half marks
//! what the roots reach (`tree::reach`, shared with fsck); the store's half
//! (`store::gc`) deletes and rewrites packs given that live set.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::id::ChunkId;
use crate::store::{GcReport, Store};
use crate::tree::reach::{Root, Walk, roots};

/// What [`Store::gc`](crate::Store::gc) keeps and how hard it works.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct GcOptions {
    /// A pack whose dead share (of its chunks' stored bytes, a chunk's share
    /// of a frame it shares counted pro rata) exceeds this is rewritten with
    /// only its live chunks. Default 0.10, the figure
    /// borg and restic use; `1.0` never rewrites, `0.0` rewrites every pack
    /// with any dead chunk.
    pub repack_dead_fraction: f64,
    /// How long to wait for other processes to close the store before giving
    /// up with [`Error::Locked`]. Default zero: one attempt.
    pub lock_timeout: Duration,
    /// Further roots kept with everything they reach: an image, layer or
    /// snapshot id (as a `ChunkId`) keeps that object and what it names; any
    /// other chunk id keeps that chunk. For pinned objects (containers'
    /// bases, say) that no tag names.
    pub extra_roots: Vec<ChunkId>,
    /// Only work out what would be freed; change nothing.
    pub dry_run: bool,
}

impl Default for GcOptions {
    fn default() -> Self {
        Self {
            repack_dead_fraction: 0.10,
            lock_timeout: Duration::ZERO,
            extra_roots: Vec::new(),
            dry_run: false,
        }
    }
}

impl GcOptions {
    /// Rewrites packs whose dead share exceeds `fraction`.
    #[must_use]
    pub fn repack_dead_fraction(mut self, fraction: f64) -> Self {
        self.repack_dead_fraction = fraction;
        self
    }

    /// Waits this long for other processes to close the store.
    #[must_use]
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// Keeps these further roots and all they reach.
    #[must_use]
    pub fn extra_roots(mut self, roots: Vec<ChunkId>) -> Self {
        self.extra_roots = roots;
        self
    }

    /// Only works out what would be freed; changes nothing.
    #[must_use]
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }
}

/// Garbage collection
impl Store {
    /// Deletes what no root reaches. Roots are the tags, the build-cache
    /// entries (`refs/cache/*`: the images build steps made) and `options.extra_roots`; an image
    /// keeps its layers and its tree, layers and trees keep the chunks of
    /// their files. Packs with no live chunk are deleted; packs whose dead
    /// share exceeds `options.repack_dead_fraction` are rewritten with only
    /// their live chunks.
    ///
    /// Garbage collection needs the store alone: this handle's lock is
    /// converted to exclusive, retrying for `options.lock_timeout` while other
    /// processes have the store open. Other threads using this handle wait
    /// until gc is done. Content this handle (or anyone) stored and did not
    /// yet reach from a root is garbage: tag images before collecting.
    ///
    /// Killed at any moment, gc leaves a valid store: rewritten packs and
    /// their indexes are durable before the packs they replace are deleted,
    /// and an index is deleted before its pack.
    ///
    /// # Errors
    /// [`Error::Locked`] if other processes keep the store open; the error of
    /// a tag that does not parse or an object that does not read (nothing is
    /// deleted then: run [`Store::fsck`]); [`Error::Io`] naming a file that
    /// could not be read, written or removed.
    pub fn gc(&self, options: &GcOptions) -> Result<GcReport> {
        self.flush()?;
        let exclusive = self.lock_exclusive(options.lock_timeout)?;
        let work = Store::open_unlocked(self.path())?;
        let mut walk = Walk::new(&work, None);
        for (path, root) in roots(&work)? {
            match root {
                Ok(Root::Tag(_, image)) => {
                    walk.image(image)?;
                }
                Ok(Root::Cache(id)) => match walk.pinned(id) {
                    // A cache entry whose object is gone keeps nothing.
                    Ok(_) | Err(Error::ObjectNotFound { .. }) => {}
                    Err(err) => return Err(err),
                },
                Ok(Root::Pinned(ids)) => {
                    for id in ids {
                        walk.pinned(id)?;
                    }
                }
                Err(reason) => return Err(Error::corrupt(path, 0, reason)),
            }
        }
        for id in &options.extra_roots {
            walk.pinned(*id)?;
        }
        // What the walk found dead stays dead only while no one else writes:
        // the lock is held from the walk to the end of the sweep.
        crate::fsutil::fault::pause("gc-walked");
        if !options.dry_run {
            exclusive.clean_tmp()?;
        }
        let report = work.sweep(&walk.live, options.repack_dead_fraction, options.dry_run)?;
        drop(work);
        drop(exclusive);
        Ok(report)
    }
}
