//! Decoded columns kept between queries, for a long-running reader (the
//! dashboard backend): each file's filter, sort and score columns as the
//! scan reads them (facets as dictionary keys and values, scores as
//! numbers), keyed by the file's path and the same [`FileKey`] the footer
//! cache checks (size, mtime, ctime, inode, device), so a rewritten file
//! is never answered from its old columns. Within a byte budget, least
//! recently used first out; a column larger than the budget is not kept
//! (the query then scans as without a cache). Cost of a hit: a hash
//! lookup and an `Arc` clone, under one mutex held for the lookup only;
//! an eviction scans the entries for the oldest (O(columns held), a few
//! thousand at most for a workspace's scanned columns).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use arrow_array::{Array, ArrayRef};
use parquet::arrow::arrow_reader::ArrowReaderMetadata;

use crate::reader::cache::FileKey;

/// The cached columns of every file, within `budget` bytes.
pub struct ColumnCache {
    budget: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<(PathBuf, String), Entry>,
    /// Parsed footers, for reading a page's rows without parsing again.
    metas: HashMap<PathBuf, (FileKey, ArrowReaderMetadata, usize)>,
    used: usize,
    tick: u64,
    hits: u64,
    misses: u64,
}

struct Entry {
    key: FileKey,
    /// `None`: the file has no such column (read as null).
    array: Option<ArrayRef>,
    bytes: usize,
    used_at: u64,
}

/// What a [`ColumnCache`] holds and has served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    /// Bytes held.
    pub bytes: usize,
    /// The budget.
    pub budget: usize,
    /// Columns held.
    pub columns: usize,
    /// Lookups answered from memory.
    pub hits: u64,
    /// Lookups that read the file.
    pub misses: u64,
}

impl std::fmt::Debug for ColumnCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ColumnCache").field(&self.stats()).finish()
    }
}

impl ColumnCache {
    /// An empty cache holding at most `budget` bytes of columns.
    pub fn new(budget: usize) -> Self {
        ColumnCache {
            budget,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The column `name` of the file at `path` as it was at `key`:
    /// `Some(None)` when the file has no such column, `None` when not held
    /// (or held for another version of the file, which is dropped).
    pub(crate) fn get(&self, path: &Path, key: &FileKey, name: &str) -> Option<Option<ArrayRef>> {
        let mut g = self.lock();
        g.tick += 1;
        let tick = g.tick;
        let k = (path.to_path_buf(), name.to_string());
        match g.map.get_mut(&k) {
            Some(e) if e.key == *key => {
                e.used_at = tick;
                let a = e.array.clone();
                g.hits += 1;
                Some(a)
            }
            Some(_) => {
                if let Some(old) = g.map.remove(&k) {
                    g.used -= old.bytes;
                }
                g.misses += 1;
                None
            }
            None => {
                g.misses += 1;
                None
            }
        }
    }

    /// Keeps a column read from the file at `key`, evicting the least
    /// recently used columns to stay within the budget.
    pub(crate) fn put(&self, path: &Path, key: &FileKey, name: &str, array: Option<ArrayRef>) {
        let bytes = array.as_ref().map_or(0, |a| a.get_array_memory_size()) + 64;
        if bytes > self.budget {
            return;
        }
        let mut g = self.lock();
        g.tick += 1;
        let used_at = g.tick;
        let k = (path.to_path_buf(), name.to_string());
        if let Some(old) = g.map.remove(&k) {
            g.used -= old.bytes;
        }
        while g.used + bytes > self.budget {
            let Some(victim) = g
                .map
                .iter()
                .min_by_key(|(_, e)| e.used_at)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(e) = g.map.remove(&victim) {
                g.used -= e.bytes;
            }
        }
        g.used += bytes;
        g.map.insert(
            k,
            Entry {
                key: *key,
                array,
                bytes,
                used_at,
            },
        );
    }

    /// The parsed footer of the file at `path` as it was at `key`.
    pub(crate) fn meta(&self, path: &Path, key: &FileKey) -> Option<ArrowReaderMetadata> {
        let g = self.lock();
        g.metas
            .get(path)
            .filter(|(k, _, _)| k == key)
            .map(|(_, m, _)| m.clone())
    }

    /// Keeps a parsed footer (counted in the budget; not kept when the
    /// footers held would pass a quarter of it).
    pub(crate) fn put_meta(&self, path: &Path, key: &FileKey, meta: ArrowReaderMetadata) {
        let bytes = meta.metadata().memory_size();
        let mut g = self.lock();
        if let Some((_, _, old)) = g.metas.remove(path) {
            g.used -= old;
        }
        let held: usize = g.metas.values().map(|m| m.2).sum();
        if held + bytes > self.budget / 4 || g.used + bytes > self.budget {
            return;
        }
        g.used += bytes;
        g.metas.insert(path.to_path_buf(), (*key, meta, bytes));
    }

    /// Drops the columns of files no longer in `live` (deleted files).
    pub fn retain(&self, live: &[PathBuf]) {
        let live: std::collections::HashSet<&PathBuf> = live.iter().collect();
        let mut g = self.lock();
        let mut freed = 0;
        g.map.retain(|(p, _), e| {
            let keep = live.contains(p);
            if !keep {
                freed += e.bytes;
            }
            keep
        });
        g.metas.retain(|p, m| {
            let keep = live.contains(p);
            if !keep {
                freed += m.2;
            }
            keep
        });
        g.used -= freed;
    }

    /// What the cache holds and has served.
    pub fn stats(&self) -> CacheStats {
        let g = self.lock();
        CacheStats {
            bytes: g.used,
            budget: self.budget,
            columns: g.map.len(),
            hits: g.hits,
            misses: g.misses,
        }
    }
}
