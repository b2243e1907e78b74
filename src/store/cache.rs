//! A small cache of recently decompressed bytes, bounded by their size: the
//! store's frames (so that reading the chunks of one grouped frame one after
//! another decompresses it once), and the lazy view's chunks (`mount::fuse`).
//! Threads that want the same missing entry at once load it once: the others
//! wait for the first ([`ByteCache::get_or_load`]).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Condvar, Mutex};

/// Which frame: the pack's number in this process, and the payload offset.
pub(crate) type FrameKey = (u64, u64);

/// Byte buffers kept by key within a budget of bytes, least recently used
/// evicted first.
pub(crate) struct ByteCache<K> {
    budget: usize,
    inner: Mutex<Inner<K>>,
    /// Entries being loaded, for the threads that want them meanwhile.
    loading: Mutex<HashMap<K, Arc<Loading>>>,
}

/// A load in flight, and how it ended.
#[derive(Default)]
struct Loading {
    done: Mutex<Outcome>,
    ready: Condvar,
}

#[derive(Default, Clone)]
enum Outcome {
    #[default]
    Pending,
    Loaded(Arc<Vec<u8>>),
    Failed,
}

impl Loading {
    fn wait(&self) -> Option<Arc<Vec<u8>>> {
        let mut done = self
            .done
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        loop {
            match &*done {
                Outcome::Loaded(bytes) => return Some(Arc::clone(bytes)),
                Outcome::Failed => return None,
                Outcome::Pending => {}
            }
            done = self
                .ready
                .wait(done)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    fn finish(&self, result: Option<Arc<Vec<u8>>>) {
        *self
            .done
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            result.map_or(Outcome::Failed, Outcome::Loaded);
        self.ready.notify_all();
    }
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
            loading: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `key` is being loaded by [`ByteCache::get_or_load`] now.
    pub(crate) fn is_loading(&self, key: K) -> bool {
        self.loading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(&key)
    }

    /// The bytes under `key`: cached, or loaded by another thread that is
    /// loading them now (waiting for it), or loaded here with `load` and
    /// cached if `keep` (a failed load is not cached, and a thread that
    /// waited for it loads again, for an error of its own).
    ///
    /// # Errors
    /// `load`'s.
    pub(crate) fn get_or_load<E>(
        &self,
        key: K,
        keep: bool,
        load: impl FnOnce() -> Result<Vec<u8>, E>,
    ) -> Result<Arc<Vec<u8>>, E> {
        if let Some(bytes) = self.get(key) {
            return Ok(bytes);
        }
        let mine = {
            let mut loading = self
                .loading
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(other) = loading.get(&key) {
                Err(Arc::clone(other))
            } else {
                let entry = Arc::new(Loading::default());
                loading.insert(key, Arc::clone(&entry));
                Ok(entry)
            }
        };
        let entry = match mine {
            Ok(entry) => entry,
            Err(other) => {
                if let Some(bytes) = other.wait() {
                    return Ok(bytes);
                }
                return load().map(Arc::new);
            }
        };
        let result = load().map(Arc::new);
        let bytes = result.as_ref().ok().cloned();
        if keep && let Some(bytes) = &bytes {
            self.insert(key, Arc::clone(bytes));
        }
        self.loading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&key);
        entry.finish(bytes);
        result
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
        if inner.bytes > self.budget {
            // Down to three quarters of the budget in one pass, so that the
            // scan for the least recently used is paid once per quarter of
            // the budget inserted, not once per insert.
            let mut by_use: Vec<(u64, K)> = inner
                .frames
                .iter()
                .map(|(k, (_, used))| (*used, *k))
                .collect();
            by_use.sort_unstable_by_key(|(used, _)| *used);
            let keep = self.budget / 4 * 3;
            for (_, oldest) in by_use {
                if inner.bytes <= keep {
                    break;
                }
                if let Some((old, _)) = inner.frames.remove(&oldest) {
                    inner.bytes -= old.len();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_wanting_one_entry_load_it_once() {
        let cache = Arc::new(ByteCache::<u64>::new(1 << 20));
        let loads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (cache, loads) = (Arc::clone(&cache), Arc::clone(&loads));
                std::thread::spawn(move || {
                    cache
                        .get_or_load(7, true, || {
                            loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(50));
                            Ok::<_, ()>(vec![7; 10])
                        })
                        .unwrap()
                })
            })
            .collect();
        for t in threads {
            assert_eq!(*t.join().unwrap(), vec![7; 10]);
        }
        assert_eq!(loads.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(!cache.is_loading(7));
        // A failed load is not cached; the next one loads again.
        assert_eq!(
            cache.get_or_load(8, true, || Err::<Vec<u8>, _>("bad")),
            Err("bad")
        );
        assert_eq!(
            *cache
                .get_or_load(8, false, || Ok::<_, ()>(vec![1]))
                .unwrap(),
            vec![1]
        );
        assert!(cache.get(8).is_none(), "not kept");
    }

    #[test]
    fn evicts_least_recently_used_down_to_three_quarters_of_the_budget() {
        let cache = FrameCache::new(400);
        for i in 0..3 {
            cache.insert((0, i), Arc::new(vec![i as u8; 100]));
        }
        assert!(cache.get((0, 0)).is_some());
        cache.insert((0, 3), Arc::new(vec![3; 100]));
        assert!((0..4).all(|i| cache.get((0, i)).is_some()), "within budget");
        assert!(cache.get((0, 0)).is_some());
        cache.insert((0, 4), Arc::new(vec![4; 100]));
        // 500 bytes: the least recently used go until 300 are left.
        assert!(cache.get((0, 1)).is_none() && cache.get((0, 2)).is_none());
        assert_eq!(cache.get((0, 0)).unwrap()[0], 0);
        assert_eq!(cache.get((0, 3)).unwrap()[0], 3);
        assert_eq!(cache.get((0, 4)).unwrap()[0], 4);
        cache.insert((0, 5), Arc::new(vec![5; 1000]));
        assert!(
            cache.get((0, 5)).is_none(),
            "a frame over budget was cached"
        );
    }
}
