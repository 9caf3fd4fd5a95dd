//! A workspace: the `*.meta.parquet` files of one folder, their footers read
//! in parallel and cached, and a workspace summary merged from the footers
//! alone, without reading a single row.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::cache::{FileKey, FooterCache};
use super::cache_file;
use super::footer;
use crate::error::{Error, Result};
use crate::schema::META_SUFFIX;
use crate::summary::json::RawSummary;

/// One prediction file of a workspace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DatasetFile {
    /// The file's path.
    pub path: PathBuf,
    /// The dataset: the file name less `.meta.parquet`.
    pub dataset: String,
}

/// A file n4a could not serve, with why. Kinds: `io`, `parquet` (not a
/// parquet file, truncated, corrupt), `invalid_summary`,
/// `unsupported_version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// Its dataset, when the name gave one.
    pub dataset: Option<String>,
    /// The kind of failure.
    pub kind: String,
    /// The full message, naming the file.
    pub error: String,
}

impl FileError {
    /// The report of `e` about `path`.
    pub fn new(path: &Path, dataset: Option<&str>, e: &Error) -> Self {
        let kind = e.kind();
        FileError {
            path: path.to_path_buf(),
            dataset: dataset.map(str::to_string),
            kind: kind.to_string(),
            error: e.to_string(),
        }
    }
}

/// What one file's footer says.
#[derive(Debug)]
pub struct FooterInfo {
    /// Rows, from the parquet metadata.
    pub num_rows: u64,
    /// Row groups.
    pub num_row_groups: usize,
    /// File size in bytes.
    pub file_size: u64,
    /// The summary, if the file has one: raw top-level keys plus the typed
    /// mergeable state (see [`RawSummary`]).
    pub summary: Option<Arc<RawSummary>>,
}

/// One file's footer, or why it could not be read.
#[derive(Debug, Clone)]
pub struct FileFooter {
    /// The file.
    pub file: DatasetFile,
    /// Its footer, or its error (shared with the cache).
    pub footer: std::result::Result<Arc<FooterInfo>, Arc<FileError>>,
}

type Cached = std::result::Result<Arc<FooterInfo>, Arc<FileError>>;
/// The last merge and the file keys it was made from.
type MergedCache = (Vec<(PathBuf, FileKey)>, Arc<super::merge::WorkspaceSummary>);
/// Footers in path order, listing errors, and each footer's key when it
/// came from the cache.
type Keyed = (Vec<FileFooter>, Vec<FileError>, Vec<Option<FileKey>>);

/// A workspace folder. Cheap to keep: holds the footer cache and, for more
/// than one thread, a rayon pool of its own (named `n4a-footer-N`), so
/// footer reads never oversubscribe another pool.
pub struct Workspace {
    root: PathBuf,
    recursive: bool,
    threads: usize,
    pool: Option<rayon::ThreadPool>,
    cache: FooterCache<Cached>,
    reads: AtomicU64,
    cache_file_hits: AtomicU64,
    /// Whether to use `.n4a/summary-cache.json`, and whether it was tried.
    use_cache_file: bool,
    cache_file_tried: std::sync::atomic::AtomicBool,
    merged: std::sync::Mutex<Option<MergedCache>>,
}

impl Workspace {
    /// Opens the workspace at `dir` (files directly in it, as nirs4all and
    /// its dashboard glob them; see [`Self::with_recursive`]). Reads nothing yet.
    ///
    /// # Errors
    /// [`Error::Io`] if `dir` is not a readable folder.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let root = dir.as_ref().to_path_buf();
        let m = std::fs::metadata(&root).map_err(|e| Error::io(&root, e))?;
        if !m.is_dir() {
            return Err(Error::io(&root, std::io::Error::other("not a directory")));
        }
        Ok(Workspace {
            root,
            recursive: false,
            threads: 0,
            pool: None,
            cache: FooterCache::default(),
            reads: AtomicU64::new(0),
            cache_file_hits: AtomicU64::new(0),
            use_cache_file: true,
            cache_file_tried: std::sync::atomic::AtomicBool::new(false),
            merged: std::sync::Mutex::new(None),
        }
        .with_threads(0))
    }

    /// Also finds files in sub-folders.
    #[must_use]
    pub fn with_recursive(mut self, recursive: bool) -> Self {
        self.recursive = recursive;
        self
    }

    /// Whether the first [`Self::summary`] may be answered from the
    /// workspace cache file (`.n4a/summary-cache.json`, see [`cache_file`])
    /// when every file's key matches it; on by default.
    #[must_use]
    pub fn with_cache_file(mut self, use_it: bool) -> Self {
        self.use_cache_file = use_it;
        self
    }

    /// Footer reads on `n` threads: 1 is the sequential twin (no pool), 0
    /// the number of CPUs.
    #[must_use]
    pub fn with_threads(mut self, n: usize) -> Self {
        let n = if n == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            n
        };
        self.threads = n;
        self.pool = (n > 1)
            .then(|| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .thread_name(|i| format!("n4a-footer-{i}"))
                    .build()
                    .ok()
            })
            .flatten();
        self
    }

    /// The workspace folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Threads used for footer reads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Footer reads done so far (cache misses): what the cache saves.
    pub fn footer_reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// Files whose footer the workspace cache file stood in for.
    pub fn cache_file_hits(&self) -> u64 {
        self.cache_file_hits.load(Ordering::Relaxed)
    }

    /// The workspace's prediction files, sorted by path, plus the folders
    /// that could not be listed. Cost: one `readdir` per folder.
    ///
    /// # Errors
    /// [`Error::Io`] if the workspace folder itself cannot be listed.
    pub fn list(&self) -> Result<(Vec<DatasetFile>, Vec<FileError>)> {
        let mut files = Vec::new();
        let mut errors = Vec::new();
        let mut dirs = vec![self.root.clone()];
        while let Some(dir) = dirs.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if dir == self.root => return Err(Error::io(&dir, e)),
                Err(e) => {
                    errors.push(FileError::new(&dir, None, &Error::io(&dir, e)));
                    continue;
                }
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let path = entry.path();
                if name.starts_with('.') {
                    continue;
                }
                if let Some(ds) = name.strip_suffix(META_SUFFIX) {
                    files.push(DatasetFile {
                        path,
                        dataset: ds.to_string(),
                    });
                } else if self.recursive && entry.file_type().is_ok_and(|t| t.is_dir()) {
                    dirs.push(path);
                }
            }
        }
        files.sort();
        Ok((files, errors))
    }

    /// Reads (or takes from the cache) the footer of every file, in
    /// parallel; results come back in path order, each error with its path.
    /// Cost: one `stat` per file, plus for each changed or new file an open
    /// and two reads at its end (never a row group) and the summary decode.
    ///
    /// # Errors
    /// [`Error::Io`] if the workspace folder cannot be listed; per-file
    /// failures are in the answer, not errors.
    pub fn footers(&self) -> Result<(Vec<FileFooter>, Vec<FileError>)> {
        let (footers, errors, _) = self.footers_keyed()?;
        Ok((footers, errors))
    }

    /// [`Self::footers`] plus each file's key, `None` for a file whose
    /// footer cannot be trusted to stay what was read (modified within the
    /// racy window before the read).
    fn footers_keyed(&self) -> Result<Keyed> {
        let (files, errors) = self.list()?;
        let read = |f: &DatasetFile| {
            let (footer, key) = self.footer_of(f);
            (
                FileFooter {
                    footer,
                    file: f.clone(),
                },
                key,
            )
        };
        let out: Vec<(FileFooter, Option<FileKey>)> = match &self.pool {
            Some(pool) => pool.install(|| files.par_iter().map(read).collect()),
            None => files.iter().map(read).collect(),
        };
        let live: Vec<PathBuf> = files.iter().map(|f| f.path.clone()).collect();
        self.cache.retain(&live);
        let (footers, keys) = out.into_iter().unzip();
        Ok((footers, errors, keys))
    }

    /// The footer of one file and its key when the answer is trusted (from
    /// the cache, or read from a quiet file).
    fn footer_of(&self, f: &DatasetFile) -> (Cached, Option<FileKey>) {
        let read_at = SystemTime::now();
        let key = match FileKey::of(&f.path) {
            Ok(k) => k,
            Err(e) => {
                let err = FileError::new(&f.path, Some(&f.dataset), &Error::io(&f.path, e));
                return (Err(Arc::new(err)), None);
            }
        };
        if let Some(hit) = self.cache.get(&f.path, &key) {
            return ((*hit).clone(), Some(key));
        }
        self.reads.fetch_add(1, Ordering::Relaxed);
        let value = read_footer_info(&f.path, key.len)
            .map(Arc::new)
            .map_err(|e| Arc::new(FileError::new(&f.path, Some(&f.dataset), &e)));
        let trusted = self
            .cache
            .put(&f.path, key, read_at, Arc::new(value.clone()));
        (value, trusted.then_some(key))
    }

    /// The workspace summary, merged from footers alone (see [`super::merge`]).
    /// While every file is unchanged since the previous answer, that answer
    /// is returned as it is (its `generated_at` is when it was merged): the
    /// call then costs the listing and one `stat` per file. The first call
    /// of a new `Workspace` is answered the same way from the workspace
    /// cache file when it records exactly the current files with their
    /// current keys (see [`cache_file`]).
    ///
    /// # Errors
    /// As [`Self::footers`].
    pub fn summary(&self) -> Result<Arc<super::merge::WorkspaceSummary>> {
        if let Some(hit) = self.unchanged_summary()? {
            return Ok(hit);
        }
        let (footers, errors, keys) = self.footers_keyed()?;
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
        let merged = Arc::new(super::merge::merge_with(
            &self.root,
            &footers,
            errors,
            self.pool.as_ref(),
        ));
        *slot = keyed.map(|k| (k, merged.clone()));
        Ok(merged)
    }

    /// The previous answer (or, on the first call, the cache file's) when
    /// the listed files and their keys are exactly those it was made from.
    fn unchanged_summary(&self) -> Result<Option<Arc<super::merge::WorkspaceSummary>>> {
        let first = self.use_cache_file && !self.cache_file_tried.swap(true, Ordering::Relaxed);
        let from_file = first.then(|| cache_file::load(&self.root)).flatten();
        let have_prev = self
            .merged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some();
        if from_file.is_none() && !have_prev {
            return Ok(None);
        }
        let (files, errors) = self.list()?;
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
        let mut slot = self.merged.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((keys, summary)) = from_file {
            if keys == current {
                self.cache_file_hits
                    .fetch_add(keys.len() as u64, Ordering::Relaxed);
                let s = Arc::new(summary);
                *slot = Some((keys, s.clone()));
                return Ok(Some(s));
            }
        }
        Ok(slot
            .as_ref()
            .filter(|(prev, _)| *prev == current)
            .map(|(_, s)| s.clone()))
    }

    /// [`Self::summary`] plus, for the cache file, the key and read time of
    /// every file it was made from, all trusted (not racy); `None` for the
    /// keys when some file's entry is not trusted or a folder could not be
    /// listed.
    ///
    /// # Errors
    /// As [`Self::summary`].
    pub fn summary_with_keys(&self) -> Result<SummaryWithKeys> {
        let summary = self.summary()?;
        let paths = summary
            .datasets
            .iter()
            .map(|d| &d.path)
            .chain(summary.errors.iter().map(|e| &e.path));
        let mut keys: Option<Vec<(PathBuf, FileKey, SystemTime)>> = paths
            .map(|p| self.cache.trusted_key(p).map(|(k, at)| (p.clone(), k, at)))
            .collect();
        if let Some(k) = keys.as_mut() {
            k.sort_by(|a, b| a.0.cmp(&b.0));
        }
        Ok((summary, keys))
    }
}

/// A workspace summary and the trusted key and read time of each file it
/// was made from (see [`Workspace::summary_with_keys`]).
pub type SummaryWithKeys = (
    Arc<super::merge::WorkspaceSummary>,
    Option<Vec<(PathBuf, FileKey, SystemTime)>>,
);

/// Reads one file's footer, containing any decoder panic as an error.
fn read_footer_info(path: &Path, file_size: u64) -> Result<FooterInfo> {
    let run = || -> Result<FooterInfo> {
        let q = footer::read_quick(path, file_size)?;
        Ok(FooterInfo {
            num_rows: q.num_rows,
            num_row_groups: q.num_row_groups,
            file_size,
            summary: q.summary.map(Arc::new),
        })
    };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).unwrap_or_else(|_| {
        Err(Error::parquet(
            path,
            parquet::errors::ParquetError::General("the decoder panicked on this file".into()),
        ))
    })
}
