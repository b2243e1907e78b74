//! A small cache of recently decompressed bytes, bounded by their size: the
//! store's frames (so that reading the chunks of one grouped frame one after
//! another decompresses it once), and the lazy view's chunks (`mount::fuse`).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// Which frame: the pack's number in this process, and the payload offset.
pub(crate) type FrameKey = (u64, u64);

/// Byte buffers kept by key within a budget of bytes, least recently used
/// evicted first.
pub(crate) struct ByteCache<K> {
    budget: usize,
    inner: Mutex<Inner<K>>,
}

/// The store's cache of decompressed frames.
pub(crate) type FrameCache = ByteCache<FrameKey>;

struct Inner<K> {
    frames: HashMap<K, (Arc<Vec<u8>>, u64)>,
    bytes: usize,
    clock: u64,
}

impl<K: Hash + Eq + Copy> ByteCache<K> {
    /// A cache holding at most `budget` bytes.
    pub(crate) fn new(budget: usize) -> Self {
        Self {
            budget,
            inner: Mutex::new(Inner {
                frames: HashMap::new(),
                bytes: 0,
                clock: 0,
            }),
        }
    }

    /// The bytes under `key`, if cached.
    pub(crate) fn get(&self, key: K) -> Option<Arc<Vec<u8>>> {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        inner.clock += 1;
        let clock = inner.clock;
        inner.frames.get_mut(&key).map(|(frame, used)| {
            *used = clock;
            Arc::clone(frame)
        })
    }

    /// Caches `frame` under `key`, evicting the least recently used entries
    /// beyond the budget.
    pub(crate) fn insert(&self, key: K, frame: Arc<Vec<u8>>) {
        if frame.len() > self.budget {
            return;
        }
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        inner.clock += 1;
        let clock = inner.clock;
        let len = frame.len();
        if let Some((old, _)) = inner.frames.insert(key, (frame, clock)) {
            inner.bytes -= old.len();
        }
        inner.bytes += len;
        while inner.bytes > self.budget {
            let Some(oldest) = inner
                .frames
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| *k)
            else {
                break;
            };
            if let Some((old, _)) = inner.frames.remove(&oldest) {
                inner.bytes -= old.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_within_budget() {
        let cache = FrameCache::new(250);
        cache.insert((0, 0), Arc::new(vec![0; 100]));
        cache.insert((0, 1), Arc::new(vec![1; 100]));
        assert!(cache.get((0, 0)).is_some());
        cache.insert((0, 2), Arc::new(vec![2; 100]));
        assert!(cache.get((0, 1)).is_none(), "least recently used survived");
        assert_eq!(cache.get((0, 0)).unwrap()[0], 0);
        assert_eq!(cache.get((0, 2)).unwrap()[0], 2);
        cache.insert((0, 3), Arc::new(vec![3; 1000]));
        assert!(
            cache.get((0, 3)).is_none(),
            "a frame over budget was cached"
        );
    }
}
