//! A workspace: the `*.meta.parquet` files of one folder (or of a nirs4all
//! store's mirror, [`source`]), their footers read in parallel and cached,
//! and a workspace summary merged from the footers alone, without reading a
//! single row.

pub(crate) mod cache;
mod disk;
pub mod listing;
pub mod merge;
pub mod source;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::footer::info::Footer;
use crate::footer::FileKey;
use crate::schema::META_SUFFIX;
use cache::FooterCache;
pub(crate) use listing::FileFooter;
pub use listing::{DatasetFile, FileError, Listing};
pub use merge::WorkspaceSummary;
use source::Source;
pub use source::{MirrorUpdate, SourceKind, Synced};

type Cached = std::result::Result<Arc<Footer>, Arc<FileError>>;

/// The least threads of a bucket workspace's pool by default: a query's
/// per-file column reads block on their requests, so this many files'
/// requests are in flight at once.
pub const BUCKET_THREADS: usize = 16;
/// The last merge and the file keys it was made from.
type MergedCache = (Vec<(PathBuf, FileKey)>, Arc<merge::WorkspaceSummary>);
/// Footers in path order, listing errors, and each footer's key when it
/// came from the cache.
type Keyed = (Vec<FileFooter>, Vec<FileError>, Vec<Option<FileKey>>);

/// A workspace: a folder of `.meta.parquet` files or a nirs4all
/// `store.sqlite` workspace (cargo feature `store`, read through its mirror,
/// [`source`]). Cheap to keep: holds the footer cache and, for more than
/// one thread, a rayon pool of its own (named `n4a-footer-N`, started on
/// first use), so footer reads never oversubscribe another pool.
///
/// A store's mirror is brought up to date by the first ask and, with
/// [`Self::with_recheck`], by later asks when the store changed; a
/// dataset that cannot be brought in is listed among the answer's errors
/// and the others are answered. What CLI commands, `n4a serve` and the
/// Python package open: none of them decides what a path is.
///
/// ```
/// # fn main() -> n4a::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # n4a::generate::generate(dir.path(), &n4a::generate::GenOptions { datasets: 2, rows: 50, ..Default::default() })?;
/// let ws = n4a::Workspace::open(dir.path())?;
/// // From the footers alone: no row is read.
/// let s = ws.summary()?;
/// assert_eq!((s.total_datasets, s.total_predictions), (2, 100));
/// assert!(s.errors.is_empty(), "a bad file would be listed here, the others served");
/// # Ok(())
/// # }
/// ```
pub struct Workspace {
    source: Source,
    recheck: Option<std::time::Duration>,
    synced: std::sync::Mutex<SyncState>,
    recursive: bool,
    threads: usize,
    pool: std::sync::OnceLock<Option<rayon::ThreadPool>>,
    caching: bool,
    summaries: bool,
    cache: FooterCache<Cached>,
    disk: Option<PathBuf>,
    reads: AtomicU64,
    merged: std::sync::Mutex<Option<MergedCache>>,
}

impl Workspace {
    /// Opens the workspace at `dir`: its `.meta.parquet` files (directly in
    /// it, as nirs4all and its dashboard glob them; see
    /// [`Self::with_recursive`]), or, when it holds a `store.sqlite`, that
    /// store through its mirror. Reads nothing yet: a store is imported
    /// into its mirror by the first ask (or [`Self::sync`]), only what
    /// changed since the mirror was last made.
    ///
    /// # Errors
    /// [`Error::Io`] if `dir` is not a readable folder (or a store's
    /// database cannot be resolved).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let source = Source::open(dir.as_ref())?;
        Ok(Workspace {
            source,
            recheck: None,
            synced: std::sync::Mutex::new(SyncState::default()),
            recursive: false,
            threads: 0,
            pool: std::sync::OnceLock::new(),
            caching: true,
            summaries: true,
            cache: FooterCache::default(),
            disk: None,
            reads: AtomicU64::new(0),
            merged: std::sync::Mutex::new(None),
        }
        .with_threads(0))
    }

    /// How often an ask re-checks a store for changes (one `stat` per
    /// store file) and brings its mirror up to date: `None` (the default)
    /// only on the first ask, `Some(Duration::ZERO)` on every ask (the
    /// Python package), `Some(2 s)` at most every two seconds. A folder
    /// has nothing to re-check. See also [`watch`] (a background re-check).
    #[must_use]
    pub fn with_recheck(mut self, every: Option<std::time::Duration>) -> Self {
        self.recheck = every;
        self
    }

    /// Directions of metrics outside the built-in table for the files a
    /// store's mirror writes (a folder's files carry their own).
    #[must_use]
    pub fn with_directions(mut self, directions: &crate::metric::Directions) -> Self {
        self.source.set_directions(directions);
        self
    }

    /// Keeps a store's mirror under `root` (default: the cache folder,
    /// [`crate::store::cache_root`] with the `store` feature); nothing for
    /// a folder.
    ///
    /// # Errors
    /// [`Error::Io`] when the store's database cannot be resolved.
    pub fn with_mirror_root(mut self, root: &Path) -> Result<Self> {
        self.source.set_mirror_root(root)?;
        Ok(self)
    }

    /// How a store's mirror is brought up to date when an ask finds it
    /// stale (default [`MirrorUpdate::Background`]: the ask is answered in
    /// place meanwhile); nothing for a folder.
    #[must_use]
    pub fn with_mirror_update(mut self, how: MirrorUpdate) -> Self {
        self.source.set_update(how);
        self
    }

    /// Also finds files in sub-folders.
    #[must_use]
    pub fn with_recursive(mut self, recursive: bool) -> Self {
        self.recursive = recursive;
        self
    }

    /// Footer reads on `n` threads: 1 is the sequential twin (no pool), 0
    /// the number of CPUs (for a bucket, at least [`BUCKET_THREADS`]: its
    /// reads wait on the network, one request batch a thread).
    #[must_use]
    pub fn with_threads(mut self, n: usize) -> Self {
        let n = if n == 0 {
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            if self.source.kind() == SourceKind::Bucket {
                cpus.max(BUCKET_THREADS)
            } else {
                cpus
            }
        } else {
            n
        };
        self.threads = n;
        self.pool = std::sync::OnceLock::new();
        self
    }

    /// Whether footers (and the last merged summary) are kept for the next
    /// ask: on by default. A one-shot reader (a CLI command that asks
    /// once) turns it off and saves the cache's bookkeeping, a few
    /// microseconds a file.
    #[must_use]
    pub fn with_cache(mut self, on: bool) -> Self {
        self.caching = on;
        self
    }

    /// Keeps the footers this workspace reads in a file under `cache_root`
    /// (normally [`crate::files::cache_root`]) for the next process over
    /// the same folder, and serves unchanged files from it: a one-shot
    /// command over an unchanged workspace then costs a listing and one
    /// `stat` a file, no open and no read (see `disk`'s module docs for
    /// what is kept, when it is trusted and what a write costs; folders
    /// of fewer than 64 files are not cached; read without summaries, only
    /// footers with n4a state are kept, those being the same either way).
    /// Off (`None`) by default; the CLI's `summary`, `query`, `top` and
    /// `stats` turn it on.
    #[must_use]
    pub fn with_disk_cache(mut self, cache_root: Option<PathBuf>) -> Self {
        self.disk = cache_root;
        self
    }

    /// Whether summaries without n4a state (nirs4all's 1.0, n4a's 1.1) are
    /// decoded: on by default. A one-shot row query turns it off (such a
    /// footer then reads as having no summary, the 1.2 state still read
    /// for pruning), saving the JSON of every 1.0 file.
    #[must_use]
    pub fn with_summaries(mut self, on: bool) -> Self {
        self.summaries = on;
        self
    }

    /// The footer pool, started on first use; `None` for one thread (or
    /// when the pool cannot start: reads are then sequential).
    fn pool(&self) -> Option<&rayon::ThreadPool> {
        self.pool
            .get_or_init(|| {
                (self.threads > 1)
                    .then(|| {
                        rayon::ThreadPoolBuilder::new()
                            .num_threads(self.threads)
                            .thread_name(|i| format!("n4a-footer-{i}"))
                            .start_handler(|_| crate::memory::grow_thread_heap())
                            .build()
                            .ok()
                    })
                    .flatten()
            })
            .as_ref()
    }

    /// `f` over `items` on the workspace's pool (in order; sequential for
    /// one thread): queries fan their per-file scans out on the same
    /// threads as footer reads, so nothing is oversubscribed.
    pub(crate) fn par_map<T: Sync, R: Send>(
        &self,
        items: &[T],
        f: impl Fn(&T) -> R + Sync + Send,
    ) -> Vec<R> {
        use rayon::prelude::*;
        match self.pool() {
            Some(p) if items.len() > 1 => p.install(|| items.par_iter().map(&f).collect()),
            _ => items.iter().map(f).collect(),
        }
    }

    /// Runs `f` inside the workspace's pool (directly for one thread), so
    /// rayon work in `f` (a parallel sort) uses the same threads as scans.
    pub(crate) fn install<R: Send>(&self, f: impl FnOnce(bool) -> R + Send) -> R {
        match self.pool() {
            Some(p) => p.install(|| f(true)),
            None => f(false),
        }
    }

    /// The folder the engine reads: the workspace folder, or a store's
    /// mirror.
    pub fn root(&self) -> &Path {
        self.source.dir()
    }

    /// What was opened: the folder, or the store workspace.
    pub fn origin(&self) -> &Path {
        self.source.origin()
    }

    /// The kind of workspace.
    pub fn kind(&self) -> SourceKind {
        self.source.kind()
    }

    /// Brings the folder the engine reads up to date with its origin now
    /// (see [`source`] for the cost) and returns what that did; a dataset
    /// that failed stays among the listing's errors until a later sync
    /// brings it in.
    ///
    /// # Errors
    /// When the origin cannot be read at all (a store that is not a SQLite
    /// database, of another schema version, locked too long).
    pub fn sync(&self) -> Result<Synced> {
        let mut st = self.synced.lock().unwrap_or_else(|e| e.into_inner());
        self.sync_locked(&mut st)
    }

    fn sync_locked(&self, st: &mut SyncState) -> Result<Synced> {
        let done = self.source.sync()?;
        st.at = Some(std::time::Instant::now());
        // A fresh mirror had no failed dataset (its stamp is written only
        // after an import without one): the errors are always the last
        // sync's.
        let at = self.source.error_path();
        st.errors = done
            .errors
            .iter()
            .map(|(d, e)| FileError::new(&at, Some(d), e))
            .collect();
        Ok(done)
    }

    /// Syncs when due (the first ask, then as [`Self::with_recheck`] says)
    /// and returns the datasets that failed. A store that cannot be read on
    /// a re-check is reported beside the answer from the mirror as it is.
    fn synced_errors(&self) -> Result<Vec<FileError>> {
        if self.source.kind() == SourceKind::Folder {
            return Ok(Vec::new());
        }
        let mut st = self.synced.lock().unwrap_or_else(|e| e.into_inner());
        let due = match (st.at, self.recheck) {
            (None, _) => true,
            (Some(at), Some(every)) => at.elapsed() >= every,
            (Some(_), None) => false,
        };
        if due {
            if let Err(e) = self.sync_locked(&mut st) {
                if st.at.is_none() {
                    return Err(e);
                }
                let mut out = st.errors.clone();
                out.push(FileError::new(&self.source.error_path(), None, &e));
                return Ok(out);
            }
        }
        Ok(st.errors.clone())
    }

    /// Threads used for footer reads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Footer reads done so far (cache misses): what the cache saves.
    pub fn footer_reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// The workspace's prediction files, sorted by path, plus the folders
    /// that could not be listed. Cost: one `readdir` per folder.
    ///
    /// # Errors
    /// [`Error::Io`] if the workspace folder itself cannot be listed.
    pub fn list(&self) -> Result<Listing> {
        let mut files = Vec::new();
        let mut errors = self.synced_errors()?;
        #[cfg(feature = "store")]
        if let Some(ip) = self.source.inplace() {
            let (ip, list, bad) = self.inplace_load(ip, &[])?;
            for (d, e) in bad {
                errors.push(FileError::new(ip.db(), Some(&d), &e));
            }
            let files = list
                .into_iter()
                .map(|(d, _, _)| DatasetFile {
                    path: ip.path_of(&d),
                    dataset: d,
                })
                .collect();
            return Ok(Listing { files, errors });
        }
        #[cfg(feature = "object-store")]
        if let Some(b) = self.source.bucket() {
            let mut files: Vec<DatasetFile> = b
                .list(self.recursive)?
                .into_iter()
                .map(|(path, dataset)| DatasetFile { path, dataset })
                .collect();
            files.sort_unstable_by(|a, b| a.path.as_os_str().cmp(b.path.as_os_str()));
            return Ok(Listing { files, errors });
        }
        let root = self.source.dir();
        let mut dirs = vec![root.to_path_buf()];
        while let Some(dir) = dirs.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if dir == root => return Err(Error::io(&dir, e)),
                Err(e) => {
                    errors.push(FileError::new(&dir, None, &Error::io(&dir, e)));
                    continue;
                }
            };
            for entry in entries.flatten() {
                // Names are looked at as bytes: a folder holds as many
                // arrays files as prediction files, allocated for nothing.
                let name = entry.file_name();
                let bytes = name.as_encoded_bytes();
                if bytes.first() == Some(&b'.') {
                    continue;
                }
                if let Some(ds) = bytes.strip_suffix(META_SUFFIX.as_bytes()) {
                    files.push(DatasetFile {
                        dataset: String::from_utf8_lossy(ds).into_owned(),
                        path: dir.join(&name),
                    });
                } else if self.recursive && entry.file_type().is_ok_and(|t| t.is_dir()) {
                    dirs.push(entry.path());
                }
            }
        }
        // Byte order of the paths: the same as Path order within a folder,
        // several times cheaper to sort than component-wise comparison.
        files.sort_unstable_by(|a, b| a.path.as_os_str().cmp(b.path.as_os_str()));
        Ok(Listing { files, errors })
    }

    /// Reads (or takes from the cache) the footer of every file, in
    /// parallel, for a query that will read the columns `names`: a store
    /// answered in place reads them with its rows' first pass (one pass
    /// over SQLite, not two); folders ignore the hint. Results come back
    /// in path order, each error with its path. Cost: one `stat` per file,
    /// plus for each changed or new file an open and two reads at its end
    /// (never a row group) and the summary decode.
    ///
    /// # Errors
    /// [`Error::Io`] if the workspace folder cannot be listed; per-file
    /// failures are in the answer, not errors.
    #[cfg_attr(not(feature = "store"), allow(unused_variables))]
    pub(crate) fn footers_reading(
        &self,
        names: &[&str],
    ) -> Result<(Vec<FileFooter>, Vec<FileError>)> {
        #[cfg(feature = "store")]
        {
            let errors = self.synced_errors()?;
            if let Some(ip) = self.source.inplace() {
                return self.inplace_footers(&ip, names, errors, false);
            }
        }
        let (footers, errors, _) = self.footers_keyed()?;
        Ok((footers, errors))
    }

    /// True when the workspace holds a prediction file (a folder), or a
    /// prediction (a store). Cost: a listing; for a store answered in
    /// place, one SQLite step instead of reading its rows.
    ///
    /// # Errors
    /// As [`Self::list`].
    pub fn has_predictions(&self) -> Result<bool> {
        #[cfg(feature = "store")]
        {
            self.synced_errors()?;
            if let Some(ip) = self.source.inplace() {
                return ip.has_rows();
            }
        }
        Ok(!self.list()?.files.is_empty())
    }

    /// The arrays of prediction `id` of `dataset` when the workspace is a
    /// store answered in place (from the store's arrays file); `None` for
    /// a folder or a store read through its mirror, whose arrays are in
    /// each dataset's `.arrays.parquet`.
    ///
    /// # Errors
    /// Reading the store's arrays file.
    #[cfg_attr(not(feature = "store"), allow(unused_variables))]
    pub fn inplace_arrays(
        &self,
        dataset: &str,
        id: &str,
    ) -> Option<Result<Option<crate::schema::PredictionArrays>>> {
        #[cfg(feature = "store")]
        if let Some(ip) = self.source.inplace() {
            return Some(ip.arrays(dataset, id));
        }
        None
    }

    /// [`crate::store::inplace::InPlace::load`], on a fresh snapshot when
    /// the store changed between the snapshot's passes (rows appended or
    /// deleted while a server answers): up to three snapshots are tried.
    #[cfg(feature = "store")]
    #[allow(clippy::type_complexity)]
    fn inplace_load(
        &self,
        mut ip: Arc<crate::store::inplace::InPlace>,
        names: &[&str],
    ) -> Result<(
        Arc<crate::store::inplace::InPlace>,
        Vec<(String, Arc<dyn crate::rows::source::RowSource>, u64)>,
        Vec<(String, Arc<Error>)>,
    )> {
        let mut tries = 0;
        loop {
            match ip.load(names) {
                Ok((list, bad)) => return Ok((ip, list, bad)),
                Err(Error::ChangedDuringRefresh { .. }) if tries < 2 => {
                    tries += 1;
                    ip = self.source.reopen_inplace(&ip)?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The datasets of a store read in place as files: footers held in
    /// memory (with summaries when `summaries`), rows from SQLite.
    #[cfg(feature = "store")]
    fn inplace_footers(
        &self,
        ip: &Arc<crate::store::inplace::InPlace>,
        names: &[&str],
        mut errors: Vec<FileError>,
        summaries: bool,
    ) -> Result<(Vec<FileFooter>, Vec<FileError>)> {
        let (ip, list, bad) = self.inplace_load(ip.clone(), names)?;
        let ip = &ip;
        for (d, e) in bad {
            errors.push(FileError::new(ip.db(), Some(&d), &e));
        }
        let opts = self.source.summary_options();
        let make = |(d, src, n): &(String, Arc<dyn crate::rows::source::RowSource>, u64)| {
            let footer = if summaries {
                ip.footer(d, &opts)
                    .map_err(|e| Arc::new(FileError::new(&ip.path_of(d), Some(d), &e)))
            } else {
                Ok(Arc::new(ip.plain_footer(d, src.as_ref(), *n)))
            };
            FileFooter {
                file: DatasetFile {
                    path: ip.path_of(d),
                    dataset: d.clone(),
                },
                footer,
                rows: Some(src.clone()),
            }
        };
        let footers = match self.pool() {
            Some(pool) => pool.install(|| list.par_iter().map(make).collect()),
            None => list.iter().map(make).collect(),
        };
        Ok((footers, errors))
    }

    /// [`Self::footers_reading`] of a folder plus each file's key, `None` for a file whose
    /// footer cannot be trusted to stay what was read (modified within the
    /// racy window before the read).
    fn footers_keyed(&self) -> Result<Keyed> {
        let Listing { files, errors } = self.list()?;
        let disk = self
            .disk
            .as_deref()
            .filter(|_| files.len() >= disk::MIN_FILES)
            .map(|root| disk::DiskCache::load(self.source.dir(), root));
        #[cfg(feature = "object-store")]
        if let Some(b) = self.source.bucket() {
            // The footers not held yet, fetched together (one GET a file,
            // many in flight) before the pool reads them one by one; the
            // first alone, read at once: how far before its end its
            // footer and its summary's reads reach sizes the others' GET
            // (the files of a workspace are alike).
            let held = |f: &DatasetFile| {
                FileKey::of(&f.path).is_ok_and(|k| {
                    (self.caching && self.cache.get(&f.path, &k).is_some())
                        || disk.as_ref().is_some_and(|d| d.has(&f.path, &k))
                })
            };
            let need: Vec<&Path> = files
                .iter()
                .filter(|f| !held(f))
                .map(|f| f.path.as_path())
                .collect();
            if let Some((first, rest)) = need.split_first() {
                // 1 MiB: a footer of nirs4all's (~620 KB) with n4a's body
                // parts in one GET.
                b.warm_footers(std::slice::from_ref(first), 1 << 20);
                let reach = crate::blob::remote(first).and_then(|o| {
                    let f = Footer::read(first).ok()?;
                    let body = f.body_range().map_or(o.len, |r| r.start);
                    Some(o.len.saturating_sub(body))
                });
                if let Some(reach) = reach {
                    // A quarter more: the others' footers and bodies are
                    // alike, not the same length.
                    crate::blob::grow_tail_hint(reach + reach / 4);
                }
                b.warm_footers(rest, 0);
            }
        }
        let read = |f: &DatasetFile| {
            let (footer, key) = self.footer_of(f, disk.as_ref());
            (
                FileFooter {
                    footer,
                    file: f.clone(),
                    rows: None,
                },
                key,
            )
        };
        let out: Vec<(FileFooter, Option<FileKey>)> = match self.pool() {
            Some(pool) => pool.install(|| files.par_iter().map(read).collect()),
            None => files.iter().map(read).collect(),
        };
        if self.caching {
            let live: Vec<PathBuf> = files.iter().map(|f| f.path.clone()).collect();
            self.cache.retain(&live);
        }
        if let Some(disk) = disk {
            disk.save();
        }
        let (footers, keys) = out.into_iter().unzip();
        Ok((footers, errors, keys))
    }

    /// For a bucket, fetches what the summary reads of each file beyond
    /// its footer where the footer came from a cache (`Footer::body_range`:
    /// its text kept in the file and its runs), one GET a file, many in
    /// flight (the merge would read them one by one); nothing for a folder.
    #[cfg_attr(not(feature = "object-store"), allow(unused_variables))]
    fn warm_bodies(&self, footers: &[FileFooter]) {
        #[cfg(feature = "object-store")]
        if let Some(b) = self.source.bucket() {
            let wants: Vec<(&Path, std::ops::Range<u64>)> = footers
                .iter()
                .filter_map(|ff| {
                    let r = ff.footer.as_ref().ok()?.body_range()?;
                    Some((ff.file.path.as_path(), r))
                })
                .collect();
            b.keep_ranges(&wants);
        }
    }

    /// The footer of one file and its key when the answer is trusted (from
    /// the cache, or read from a quiet file).
    fn footer_of(
        &self,
        f: &DatasetFile,
        disk: Option<&disk::DiskCache>,
    ) -> (Cached, Option<FileKey>) {
        let read_at = SystemTime::now();
        let io_err = |e| {
            let err = FileError::new(&f.path, Some(&f.dataset), &Error::io(&f.path, e));
            (Err(Arc::new(err)), None)
        };
        // A file a cache may know is checked by a `stat`; otherwise it is
        // opened at once and its key taken from the open descriptor (one
        // path lookup, not two).
        let (key, file) = if disk.is_some() || (self.caching && self.cache.contains(&f.path)) {
            match FileKey::of(&f.path) {
                Ok(k) => (k, None),
                Err(e) => return io_err(e),
            }
        } else {
            let opened = crate::blob::Blob::open(&f.path)
                .and_then(|file| FileKey::of_blob(&file).map(|k| (k, file)));
            match opened {
                Ok((k, file)) => (k, Some(file)),
                Err(e) => return io_err(e),
            }
        };
        if self.caching {
            if let Some(hit) = self.cache.get(&f.path, &key) {
                return ((*hit).clone(), Some(key));
            }
        }
        let (key, value) = match disk.and_then(|d| d.get(&f.path, &key)) {
            Some(footer) => (key, Ok(Arc::new(footer))),
            None => {
                self.reads.fetch_add(1, Ordering::Relaxed);
                // Opened after the `stat`: the key of what is read is the
                // open descriptor's (the file may have been replaced).
                let (key, file) = match file {
                    Some(file) => (key, file),
                    None => {
                        let opened = crate::blob::Blob::open(&f.path)
                            .and_then(|file| FileKey::of_blob(&file).map(|k| (k, file)));
                        match opened {
                            Ok(k) => k,
                            Err(e) => return io_err(e),
                        }
                    }
                };
                let value = read_footer_info(&f.path, key, file, self.summaries).map(Arc::new);
                let quiet = !key.is_racy(read_at);
                // Read without summaries, a footer without state reads as
                // having none: kept only when it is the same either way.
                let same = |f: &Footer| self.summaries || f.has_packed_state();
                if let (Some(d), Ok(footer), true) = (disk, &value, quiet) {
                    if same(footer) {
                        d.put(&f.path, key, footer);
                    }
                }
                (key, value)
            }
        };
        let value = value.map_err(|e| Arc::new(FileError::new(&f.path, Some(&f.dataset), &e)));
        if !self.caching {
            return (value, None);
        }
        let trusted = self
            .cache
            .put(&f.path, key, read_at, Arc::new(value.clone()));
        (value, trusted.then_some(key))
    }

    /// The workspace summary, merged from footers alone (see [`merge`]).
    /// While every file is unchanged since the previous answer, that answer
    /// is returned as it is (its `generated_at` is when it was merged): the
    /// call then costs the listing and one `stat` per file.
    ///
    /// # Errors
    /// As `Self::footers_reading`.
    pub fn summary(&self) -> Result<Arc<merge::WorkspaceSummary>> {
        #[cfg(feature = "store")]
        {
            let errors = self.synced_errors()?;
            if let Some(ip) = self.source.inplace() {
                let (footers, errors) =
                    self.inplace_footers(&ip, &crate::store::inplace::SUMMARY_READS, errors, true)?;
                let merged = merge::merge_with(self.origin(), &footers, errors, self.pool());
                return Ok(Arc::new(merged));
            }
        }
        if !self.caching {
            let (footers, errors, _) = self.footers_keyed()?;
            self.warm_bodies(&footers);
            let merged = merge::merge_with(self.origin(), &footers, errors, self.pool());
            return Ok(Arc::new(merged));
        }
        if let Some(hit) = self.unchanged_summary()? {
            return Ok(hit);
        }
        let (footers, errors, keys) = self.footers_keyed()?;
        self.warm_bodies(&footers);
        let keyed: Option<Vec<(PathBuf, FileKey)>> = footers
            .iter()
            .zip(&keys)
            .map(|(f, k)| k.map(|k| (f.file.path.clone(), k)))
            .collect();
        let mut slot = self.merged.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some(keyed), Some((prev, merged))) = (&keyed, slot.as_ref()) {
            if keyed == prev && errors.is_empty() {
                return Ok(merged.clone());
            }
        }
        let merged = Arc::new(merge::merge_with(
            self.origin(),
            &footers,
            errors,
            self.pool(),
        ));
        *slot = keyed.map(|k| (k, merged.clone()));
        Ok(merged)
    }

    /// The previous answer when the listed files and their keys are exactly
    /// those it was made from.
    fn unchanged_summary(&self) -> Result<Option<Arc<merge::WorkspaceSummary>>> {
        let have_prev = self
            .merged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some();
        if !have_prev {
            return Ok(None);
        }
        let Listing { files, errors } = self.list()?;
        if !errors.is_empty() {
            return Ok(None);
        }
        let current: Option<Vec<(PathBuf, FileKey)>> = files
            .iter()
            .map(|f| FileKey::of(&f.path).ok().map(|k| (f.path.clone(), k)))
            .collect();
        let Some(current) = current else {
            return Ok(None);
        };
        let slot = self.merged.lock().unwrap_or_else(|e| e.into_inner());
        Ok(slot
            .as_ref()
            .filter(|(prev, _)| *prev == current)
            .map(|(_, s)| s.clone()))
    }
}

/// A store's last sync: when, and the datasets that failed.
#[derive(Default)]
struct SyncState {
    at: Option<std::time::Instant>,
    errors: Vec<FileError>,
}

/// Re-checks `ws` every `every` in a background thread (named
/// `n4a-recheck`), so that asks never wait for a store's import: what
/// `n4a serve` does for a store (every second). The thread ends with
/// the last other reference to `ws`; `on_error` hears a failed re-check (a
/// locked store) or a dataset that failed, once per sync. A folder needs
/// no thread: none is started.
pub fn watch(
    ws: &Arc<Workspace>,
    every: std::time::Duration,
    on_error: impl Fn(&Workspace, &str) + Send + Sync + 'static,
) {
    let on_error = Arc::new(on_error);
    let heard = on_error.clone();
    if ws.kind() == SourceKind::Folder {
        return;
    }
    let weak = Arc::downgrade(ws);
    let spawned = std::thread::Builder::new()
        .name("n4a-recheck".into())
        .spawn(move || loop {
            std::thread::sleep(every);
            let Some(ws) = weak.upgrade() else { return };
            match ws.sync() {
                Ok(s) => {
                    for (d, e) in &s.errors {
                        heard(&ws, &format!("dataset {d}: {e}"));
                    }
                }
                Err(e) => heard(&ws, &e.to_string()),
            }
        });
    if let Err(e) = spawned {
        on_error(ws, &format!("cannot start the re-check thread: {e}"));
    }
}

/// Reads one file's footer, containing any decoder panic as an error.
fn read_footer_info(
    path: &Path,
    key: FileKey,
    file: crate::blob::Blob,
    summaries: bool,
) -> Result<Footer> {
    let run = || crate::footer::info::read_info_for(path, file, key, summaries);
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run))
        .unwrap_or_else(|_| Err(Error::corrupt(path, "the decoder panicked on this file")))
}
