//! Decoded columns kept between queries, for a long-running reader (the
//! dashboard backend): each file's filter, sort and score columns as the
//! scan reads them (facets as dictionary keys and values, scores as
//! numbers), keyed by the file's path and the same [`FileKey`] the footer
//! cache checks (size, mtime, ctime, inode, device), so a rewritten file
//! is never answered from its old columns. Within a byte budget (or the
//! lower limit a server bounded as a whole sets: `fit_beside`), least
//! recently used first out; a column larger than the budget is not kept
//! (the query then scans as without a cache). Cost of a hit: a hash
//! lookup and an `Arc` clone, under one mutex held for the lookup only;
//! an eviction scans the entries for the oldest (O(columns held), a few
//! thousand at most for a workspace's scanned columns).
//!
//! Beside the columns, the records of rows a page showed, keyed by path,
//! row and the columns shown, under the same file keys: reading one row
//! of a nirs4all file means decompressing every page before it in each of
//! its 26 shown columns (their files have no page index), 5-10 ms a file,
//! so a page whose rows lie in 30 files costs 150 ms of reading, and
//! dashboards ask for the same pages again (back, refresh, several users).
//! Records take at most a quarter of the budget; past it the older half
//! goes in one pass (O(records held) per eviction, amortised O(1)).
//!
//! And what a query derives from one file's columns, keyed by path and a
//! description of the derivation (the filters, the order, the group key):
//! the rows a filter keeps, those rows in a sort's order, a file's groups.
//! The page of a repeated filter and sort, at any offset, then costs
//! O(files x (offset + limit)) instead of a pass over every row, and a
//! repeated group-by O(groups). These take at most another quarter of the
//! budget, evicted as records are.

use std::any::Any;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arrow_array::{Array, ArrayRef};
use parquet::arrow::arrow_reader::ArrowReaderMetadata;

use crate::footer::FileKey;

/// The cached columns of every file, within `budget` bytes.
pub struct ColumnCache {
    budget: usize,
    /// What the cache may hold now: the budget, or less when its owner
    /// bounds the whole process ([`ColumnCache::fit_beside`]).
    limit: AtomicUsize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<(PathBuf, String), Entry>,
    /// Parsed footers, for reading a page's rows without parsing again.
    metas: HashMap<PathBuf, (FileKey, ArrowReaderMetadata, usize)>,
    /// Records shown by pages: (path, row, columns' signature).
    rows: HashMap<(PathBuf, u64, u64), RowEntry>,
    rows_used: usize,
    /// Derived per-file values: (path, description).
    derived: HashMap<(PathBuf, String), Derived>,
    derived_used: usize,
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

struct RowEntry {
    key: FileKey,
    record: Record,
    bytes: usize,
    used_at: u64,
}

struct Derived {
    key: FileKey,
    value: Arc<dyn Any + Send + Sync>,
    bytes: usize,
    used_at: u64,
}

/// One row as a page shows it (the query's record type).
pub(crate) type Record = serde_json::Map<String, serde_json::Value>;

/// An estimate of a record's heap bytes.
fn record_bytes(r: &Record) -> usize {
    fn value(v: &serde_json::Value) -> usize {
        match v {
            serde_json::Value::String(s) => 32 + s.len(),
            serde_json::Value::Array(a) => 32 + a.iter().map(value).sum::<usize>(),
            serde_json::Value::Object(o) => {
                32 + o
                    .iter()
                    .map(|(k, v)| 32 + k.len() + value(v))
                    .sum::<usize>()
            }
            _ => 16,
        }
    }
    64 + r
        .iter()
        .map(|(k, v)| 32 + k.len() + value(v))
        .sum::<usize>()
}

/// What a [`ColumnCache`] holds and has served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    /// Bytes held.
    pub bytes: usize,
    /// The budget.
    pub budget: usize,
    /// What the cache may hold now (the budget, or less when the process
    /// is bounded as a whole: [`ColumnCache::fit_beside`]).
    pub limit: usize,
    /// Columns held.
    pub columns: usize,
    /// Records of page rows held.
    pub rows: usize,
    /// Per-file selections, orders and groups held.
    pub derived: usize,
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

impl Inner {
    /// Drops the least recently used columns until at most `target` bytes
    /// are held (or no column is left). O(columns) per column dropped.
    fn evict_columns_to(&mut self, target: usize) {
        while self.used > target {
            let Some(victim) = self
                .map
                .iter()
                .min_by_key(|(_, e)| e.used_at)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(e) = self.map.remove(&victim) {
                self.used -= e.bytes;
            }
        }
    }

    /// Drops the older half of the derived values held.
    fn evict_older_derived(&mut self) {
        let freed = evict_older_half(&mut self.derived, |e| (e.used_at, e.bytes));
        self.derived_used -= freed;
        self.used -= freed;
    }

    /// Drops the older half of the records held.
    fn evict_older_rows(&mut self) {
        let freed = evict_older_half(&mut self.rows, |e| (e.used_at, e.bytes));
        self.rows_used -= freed;
        self.used -= freed;
    }
}

/// Drops the older half of `map` by last use (`age` gives an entry's last
/// use and bytes) in one pass; returns the bytes freed. O(entries).
fn evict_older_half<K, V>(map: &mut HashMap<K, V>, age: impl Fn(&V) -> (u64, usize)) -> usize {
    let mut ages: Vec<u64> = map.values().map(|e| age(e).0).collect();
    if ages.is_empty() {
        return 0;
    }
    let mid = ages.len() / 2;
    let (_, cut, _) = ages.select_nth_unstable(mid);
    let cut = *cut;
    let mut freed = 0;
    map.retain(|_, e| {
        let (used_at, bytes) = age(e);
        let keep = used_at > cut;
        if !keep {
            freed += bytes;
        }
        keep
    });
    freed
}

impl ColumnCache {
    /// An empty cache holding at most `budget` bytes of columns.
    pub fn new(budget: usize) -> Self {
        ColumnCache {
            budget,
            limit: AtomicUsize::new(budget),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// What the cache may hold now.
    fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Sets what the cache may hold to `room` (what the rest of the
    /// process leaves of a bound on the whole), at most the budget and
    /// never below an eighth of it, and evicts down to it: the older half
    /// of records and derived values while either passes a quarter of the
    /// limit, then the least recently used columns. Cost: O(entries) per
    /// eviction pass.
    pub fn fit_beside(&self, room: usize) {
        let limit = room.clamp(self.budget / 8, self.budget);
        self.limit.store(limit, Ordering::Relaxed);
        let mut g = self.lock();
        while g.rows_used > limit / 4 {
            g.evict_older_rows();
        }
        while g.derived_used > limit / 4 {
            g.evict_older_derived();
        }
        g.evict_columns_to(limit);
        while g.used > limit && g.rows_used + g.derived_used > 0 {
            g.evict_older_rows();
            g.evict_older_derived();
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
        if bytes > self.limit() {
            return;
        }
        let mut g = self.lock();
        g.tick += 1;
        let used_at = g.tick;
        let k = (path.to_path_buf(), name.to_string());
        if let Some(old) = g.map.remove(&k) {
            g.used -= old.bytes;
        }
        g.evict_columns_to(self.limit().saturating_sub(bytes));
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
        if held + bytes > self.limit() / 4 || g.used + bytes > self.limit() {
            return;
        }
        g.used += bytes;
        g.metas.insert(path.to_path_buf(), (*key, meta, bytes));
    }

    /// The record of row `row` of the file at `path` as it was at `key`,
    /// shown with the columns whose signature is `columns`.
    pub(crate) fn row(&self, path: &Path, key: &FileKey, columns: u64, row: u64) -> Option<Record> {
        let mut g = self.lock();
        g.tick += 1;
        let tick = g.tick;
        let k = (path.to_path_buf(), row, columns);
        match g.rows.get_mut(&k) {
            Some(e) if e.key == *key => {
                e.used_at = tick;
                Some(e.record.clone())
            }
            Some(_) => {
                if let Some(old) = g.rows.remove(&k) {
                    g.rows_used -= old.bytes;
                    g.used -= old.bytes;
                }
                None
            }
            None => None,
        }
    }

    /// Keeps records read from the file at `key`; past a quarter of the
    /// budget, the older half of the records held goes first.
    pub(crate) fn put_rows(
        &self,
        path: &Path,
        key: &FileKey,
        columns: u64,
        records: impl IntoIterator<Item = (u64, Record)>,
    ) {
        let quarter = self.limit() / 4;
        let mut g = self.lock();
        for (row, record) in records {
            let bytes = record_bytes(&record);
            if bytes > quarter {
                continue;
            }
            if g.rows_used + bytes > quarter || g.used + bytes > self.limit() {
                g.evict_older_rows();
            }
            if g.used + bytes > self.limit() {
                continue;
            }
            g.tick += 1;
            let used_at = g.tick;
            let entry = RowEntry {
                key: *key,
                record,
                bytes,
                used_at,
            };
            if let Some(old) = g.rows.insert((path.to_path_buf(), row, columns), entry) {
                g.rows_used -= old.bytes;
                g.used -= old.bytes;
            }
            g.rows_used += bytes;
            g.used += bytes;
        }
    }

    /// What `what` derived from the file at `path` as it was at `key`.
    pub(crate) fn derived<T: Any + Send + Sync>(
        &self,
        path: &Path,
        key: &FileKey,
        what: &str,
    ) -> Option<Arc<T>> {
        let mut g = self.lock();
        g.tick += 1;
        let tick = g.tick;
        let k = (path.to_path_buf(), what.to_string());
        match g.derived.get_mut(&k) {
            Some(e) if e.key == *key => {
                e.used_at = tick;
                e.value.clone().downcast::<T>().ok()
            }
            Some(_) => {
                if let Some(old) = g.derived.remove(&k) {
                    g.derived_used -= old.bytes;
                    g.used -= old.bytes;
                }
                None
            }
            None => None,
        }
    }

    /// Keeps `value` (about `bytes` bytes), derived as `what` from the file
    /// at `key`; past a quarter of the budget the older half goes first.
    pub(crate) fn put_derived<T: Any + Send + Sync>(
        &self,
        path: &Path,
        key: &FileKey,
        what: &str,
        value: Arc<T>,
        bytes: usize,
    ) {
        let bytes = bytes + 64 + what.len();
        let quarter = self.limit() / 4;
        if bytes > quarter {
            return;
        }
        let mut g = self.lock();
        if g.derived_used + bytes > quarter || g.used + bytes > self.limit() {
            g.evict_older_derived();
        }
        if g.used + bytes > self.limit() {
            return;
        }
        g.tick += 1;
        let entry = Derived {
            key: *key,
            value,
            bytes,
            used_at: g.tick,
        };
        if let Some(old) = g
            .derived
            .insert((path.to_path_buf(), what.to_string()), entry)
        {
            g.derived_used -= old.bytes;
            g.used -= old.bytes;
        }
        g.derived_used += bytes;
        g.used += bytes;
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
        let mut rows_freed = 0;
        g.rows.retain(|(p, _, _), e| {
            let keep = live.contains(p);
            if !keep {
                rows_freed += e.bytes;
            }
            keep
        });
        g.rows_used -= rows_freed;
        let mut derived_freed = 0;
        g.derived.retain(|(p, _), e| {
            let keep = live.contains(p);
            if !keep {
                derived_freed += e.bytes;
            }
            keep
        });
        g.derived_used -= derived_freed;
        g.used -= freed + rows_freed + derived_freed;
    }

    /// What the cache holds and has served.
    pub fn stats(&self) -> CacheStats {
        let g = self.lock();
        CacheStats {
            bytes: g.used,
            budget: self.budget,
            limit: self.limit(),
            columns: g.map.len(),
            rows: g.rows.len(),
            derived: g.derived.len(),
            hits: g.hits,
            misses: g.misses,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> FileKey {
        FileKey {
            len: 1,
            mtime_ns: 2,
            ctime_ns: 3,
            ino: 4,
            dev: 5,
        }
    }

    fn column(n: usize) -> Option<ArrayRef> {
        Some(Arc::new(arrow_array::Float64Array::from(vec![0.5; n])))
    }

    /// Issue 33: with a bound on the whole process, the cache holds what
    /// the rest leaves: least recently used columns go first, never below
    /// an eighth of the budget, and it grows back when the rest shrinks.
    #[test]
    fn issue_33_the_cache_fits_beside_what_the_process_holds() {
        let cache = ColumnCache::new(8 << 20);
        let (p, k) = (Path::new("/w/a.meta.parquet"), key());
        for i in 0..6 {
            cache.put(p, &k, &format!("c{i}"), column(128 << 10)); // 1 MiB each
        }
        assert!(cache.get(p, &k, "c0").is_some()); // c0 now the most recent
        let held = cache.stats().bytes;
        assert!(held > 6 << 20 && held <= 8 << 20, "{held}");

        cache.fit_beside(3 << 20);
        let s = cache.stats();
        assert_eq!(s.limit, 3 << 20);
        assert!(s.bytes <= 3 << 20 && s.columns == 2, "{s:?}");
        assert!(cache.get(p, &k, "c0").is_some(), "the most recent stays");
        assert!(cache.get(p, &k, "c1").is_none(), "the oldest went");
        // Puts now respect the lower limit.
        cache.put(p, &k, "c6", column(128 << 10));
        assert!(cache.stats().bytes <= 3 << 20);

        cache.fit_beside(0);
        assert_eq!(
            cache.stats().limit,
            1 << 20,
            "an eighth of the budget at least"
        );
        cache.fit_beside(usize::MAX);
        assert_eq!(cache.stats().limit, 8 << 20, "never past the budget");
        for i in 0..6 {
            cache.put(p, &k, &format!("d{i}"), column(128 << 10));
        }
        assert!(
            cache.stats().bytes > 5 << 20,
            "room again once the rest shrank"
        );
    }

    /// Records and derived values are cut to a quarter of the limit each.
    #[test]
    fn fitting_cuts_records_and_derived_values_to_a_quarter_each() {
        let cache = ColumnCache::new(8 << 20);
        let (p, k) = (Path::new("/w/a.meta.parquet"), key());
        for i in 0..16 {
            cache.put_derived(p, &k, &format!("d{i}"), Arc::new(()), 100 << 10);
        }
        let mut rec = Record::new();
        rec.insert(
            "scores".into(),
            serde_json::Value::from("x".repeat(50 << 10)),
        );
        cache.put_rows(p, &k, 1, (0..16).map(|r| (r, rec.clone())));
        cache.fit_beside(2 << 20);
        let g = cache.lock();
        assert!(g.derived_used <= (2 << 20) / 4, "{}", g.derived_used);
        assert!(g.rows_used <= (2 << 20) / 4, "{}", g.rows_used);
        assert!(g.used <= 2 << 20);
        assert!(
            !g.derived.is_empty() && !g.rows.is_empty(),
            "the newer kept"
        );
    }
}
