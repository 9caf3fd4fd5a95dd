//! Batch summary refresh: backfill, verify and repair the `n4a_summary` of
//! every prediction file of a workspace, unattended.
//!
//! For each file (in parallel on a pool of its own):
//!
//! 1. **Check the footer** (no row read). A file needs a refresh when its
//!    summary is missing (nirs4all before summaries existed), not JSON, of
//!    an older version (nirs4all's 1.0 has no mergeable state; n4a's 1.1
//!    kept it inside the JSON, stored twice), inconsistent with the file
//!    (`total_predictions` or the state's row count differs from the
//!    parquet metadata, or the state was not written with this summary
//!    text), or when an `ARROW:schema` entry would hide the summary from
//!    pyarrow (which then shows only the metadata inside it). A newer major
//!    version is refused and a newer minor version left alone: rewriting
//!    either would drop what a newer n4a wrote.
//! 2. **Recompute** when the file needs it, or for every file in
//!    [`Mode::Verify`]: the rows are streamed through a
//!    [`crate::summary::SummaryBuilder`] (twelve columns read, one batch of 8,192 rows in
//!    memory plus the scores kept for exact quartiles). Verification
//!    compares the stored summary with the recomputed one, ignoring
//!    `generated_at` and float noise (relative 1e-9: appends merge Welford
//!    states in another order than one pass), and reports the first
//!    differences by path.
//! 3. **Rewrite only the footer.** The new file is the old file's bytes up
//!    to its footer (row groups, page indexes, bloom filters: every value
//!    and every offset unchanged) followed by the old `FileMetaData` with
//!    only its key/value metadata replaced (`thrift::replace_key_values`):
//!    the summary and the compact state once each, `ARROW:schema` dropped
//!    (its other metadata kept as plain key/values), so the schema, column
//!    statistics and `created_by` are kept as they were. The new footer is
//!    parsed back before it replaces anything.
//!
//! Safety: a writing refresh holds the dataset's lock (the one
//! [`crate::writer::PredictionWriter`] takes) from the first read to the
//! rename, so n4a writers and refreshes serialise. A writer that does not
//! take the lock (nirs4all itself) is detected by the file's change markers
//! (`FileKey` of the opened file against a fresh `stat` just before the
//! rename): the refresh is then abandoned and the file reported as
//! `changed_during_refresh`. What remains is the window between that
//! `stat` and the `rename` (microseconds). Replacement is atomic (temporary
//! file in the same folder, fsync, rename, folder fsync), so a crash leaves
//! each file old or new. Files already current are not touched: a second
//! refresh changes nothing, byte for byte.

mod plan;

use crate::footer::rewrite::rewrite_footer;
use plan::plan;
use std::collections::HashMap;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::files::{self, dataset_paths, DatasetLock};
use crate::footer::FileKey;
use crate::summary::SummaryOptions;
use crate::workspace::Workspace;
use crate::workspace::{DatasetFile, FileError};

/// What a refresh looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Footer checks only; recompute files whose summary is missing, old,
    /// invalid or inconsistent.
    Refresh,
    /// Recompute every summary and compare it with the stored one.
    Verify,
}

/// A test hook run just before the final change check and rename.
pub type CommitHook = Arc<dyn Fn(&Path) + Send + Sync>;

/// Options of [`refresh_workspace`].
#[derive(Clone)]
pub struct RefreshOptions {
    /// What to look at.
    pub mode: Mode,
    /// Write the repairs. Off in [`Mode::Verify`] unless asked (`--fix`),
    /// on in [`Mode::Refresh`] unless dry-running.
    pub write: bool,
    /// Threads (0: one per CPU, 1: sequential).
    pub threads: usize,
    /// Also refresh files in sub-folders.
    pub recursive: bool,
    /// Directions of metrics not built in, top-k and exact-quartile limit
    /// for recomputed summaries. A file's stored state supplies its own
    /// directions and k unless these override them.
    pub summary: SummaryOptions,
    #[doc(hidden)]
    pub before_commit: Option<CommitHook>,
}

impl Default for RefreshOptions {
    fn default() -> Self {
        RefreshOptions {
            mode: Mode::Refresh,
            write: true,
            threads: 0,
            recursive: false,
            summary: SummaryOptions::default(),
            before_commit: None,
        }
    }
}

impl std::fmt::Debug for RefreshOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshOptions")
            .field("mode", &self.mode)
            .field("write", &self.write)
            .field("threads", &self.threads)
            .field("recursive", &self.recursive)
            .finish_non_exhaustive()
    }
}

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Its summary is current (and, verifying, equal to the recomputed one).
    Unchanged,
    /// Its footer was rewritten with a recomputed summary.
    Refreshed,
    /// It needs a refresh that was not written (dry run, or verify without fix).
    Stale,
    /// It could not be checked or refreshed; left as it was.
    Failed,
}

/// The report of one file.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    /// The file.
    pub path: PathBuf,
    /// Its dataset.
    pub dataset: String,
    /// What happened.
    pub status: Status,
    /// Why it was (or would be) refreshed, or why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The failure's kind (see [`Error::kind`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    /// Stored against recomputed values, by JSON path (verify).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<String>,
    /// Things noticed and left alone (no arrays file beside it, a newer
    /// minor version).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Rows in the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// Whether its summary was recomputed from the rows.
    pub recomputed: bool,
    /// Time spent on this file, in milliseconds.
    pub millis: f64,
}

/// The report of a workspace refresh.
#[derive(Debug, Clone, Serialize)]
pub struct RefreshReport {
    /// The workspace folder.
    pub workspace: PathBuf,
    /// What was looked at.
    pub mode: Mode,
    /// Whether repairs were written.
    pub write: bool,
    /// Files rewritten.
    pub refreshed: usize,
    /// Files already current.
    pub unchanged: usize,
    /// Files needing a refresh that was not written.
    pub stale: usize,
    /// Files that failed (left as they were).
    pub failed: usize,
    /// Rows recomputed.
    pub rows_recomputed: u64,
    /// Wall time, in seconds.
    pub seconds: f64,
    /// One report per file, in path order, then unlistable folders.
    pub files: Vec<FileReport>,
}

impl RefreshReport {
    /// True when nothing failed and nothing was left stale.
    pub fn is_clean(&self) -> bool {
        self.failed == 0 && self.stale == 0
    }

    /// The report of a refresh of `root` begun at `t0` that gave `files`.
    fn of(root: &Path, opts: &RefreshOptions, t0: Instant, files: Vec<FileReport>) -> Self {
        let count = |s: Status| files.iter().filter(|r| r.status == s).count();
        RefreshReport {
            workspace: root.to_path_buf(),
            mode: opts.mode,
            write: opts.write,
            refreshed: count(Status::Refreshed),
            unchanged: count(Status::Unchanged),
            stale: count(Status::Stale),
            failed: count(Status::Failed),
            rows_recomputed: files
                .iter()
                .filter(|r| r.recomputed)
                .filter_map(|r| r.rows)
                .sum(),
            seconds: t0.elapsed().as_secs_f64(),
            files,
        }
    }
}

/// Refreshes every prediction file of the workspace at `root` (see the
/// module docs). `progress` is called once per file as it finishes, from
/// the worker threads. Cost: one footer read per file, plus for each file
/// recomputed one streaming pass over twelve of its columns, and for each
/// file rewritten one sequential copy of its bytes.
///
/// # Errors
/// [`Error::Io`] if the workspace folder cannot be listed; failures of
/// single files are in the report.
pub fn refresh_workspace(
    root: &Path,
    opts: &RefreshOptions,
    progress: &(dyn Fn(&FileReport, usize) + Sync),
) -> Result<RefreshReport> {
    #[cfg(feature = "object-store")]
    if crate::bucket::is_url(root) {
        return refresh_bucket(root, opts, progress);
    }
    let t0 = Instant::now();
    let ws = Workspace::open(root)?
        .with_recursive(opts.recursive)
        .with_threads(1);
    let crate::workspace::Listing {
        files,
        errors: list_errors,
    } = ws.list()?;
    let total = files.len();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads)
        .thread_name(|i| format!("n4a-refresh-{i}"))
        .build()
        .map_err(|e| Error::io(root, std::io::Error::other(e)))?;
    let mut dirs: Vec<&Path> = files.iter().filter_map(|f| f.path.parent()).collect();
    dirs.sort();
    dirs.dedup();
    let temps: HashMap<PathBuf, Vec<PathBuf>> = if opts.write {
        dirs.iter()
            .flat_map(|d| {
                files::temps_by_dataset(d)
                    .into_iter()
                    .map(|(ds, t)| (d.join(ds), t))
            })
            .collect()
    } else {
        HashMap::new()
    };
    let mut reports: Vec<FileReport> = pool.install(|| {
        files
            .par_iter()
            .map(|f| {
                let dir = f.path.parent().unwrap_or(Path::new("."));
                let stale = temps
                    .get(&dir.join(&f.dataset))
                    .map_or(&[][..], Vec::as_slice);
                let r = refresh_file(f, opts, stale);
                progress(&r, total);
                r
            })
            .collect()
    });
    reports.extend(list_errors.iter().map(|e: &FileError| FileReport {
        path: e.path.clone(),
        dataset: e.dataset.clone().unwrap_or_default(),
        status: Status::Failed,
        reason: Some(e.error.clone()),
        kind: Some("io"),
        differences: Vec::new(),
        warnings: Vec::new(),
        rows: None,
        recomputed: false,
        millis: 0.0,
    }));
    Ok(RefreshReport::of(root, opts, t0, reports))
}

/// [`refresh_workspace`] of a bucket workspace (`s3://bucket/prefix`,
/// cargo feature `object-store`). Each file, under its dataset's lock in
/// the bucket (the one `ingest` takes: writers and refresh take turns), is
/// fetched whole into a staging folder, refreshed there as on disk, and,
/// when rewritten, put back by one PUT with `If-Match` on the ETag
/// fetched; when another writer (one that takes no lock: a job uploading
/// the file itself) replaced the object meanwhile, the PUT fails and the
/// file is fetched and refreshed again (up to [`BUCKET_TRIES`] times), so
/// the refresh never puts back an old version over that writer's rows.
/// Memory: one file's bytes a thread; disk: one file a thread, removed.
///
/// # Errors
/// [`Error::Io`] if the bucket cannot be listed; failures of single files
/// are in the report.
#[cfg(feature = "object-store")]
fn refresh_bucket(
    root: &Path,
    opts: &RefreshOptions,
    progress: &(dyn Fn(&FileReport, usize) + Sync),
) -> Result<RefreshReport> {
    let t0 = Instant::now();
    let bucket = Arc::new(crate::bucket::Bucket::open(root)?);
    let listed = bucket.list(opts.recursive)?;
    let total = listed.len();
    let staging = files::Staging::new("refresh")?;
    let stage = staging.path();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads)
        .thread_name(|i| format!("n4a-refresh-{i}"))
        .build()
        .map_err(|e| Error::io(root, std::io::Error::other(e)))?;
    let one = |i: usize, (path, dataset): &(PathBuf, String)| -> FileReport {
        let failed = |e: Error| FileReport {
            path: path.clone(),
            dataset: dataset.clone(),
            status: Status::Failed,
            reason: Some(e.to_string()),
            kind: Some(e.kind()),
            differences: Vec::new(),
            warnings: Vec::new(),
            rows: None,
            recomputed: false,
            millis: 0.0,
        };
        let dir = stage.join(i.to_string());
        let run = || -> Result<FileReport> {
            let _lock = if opts.write {
                Some(bucket.lock(dataset)?)
            } else {
                None
            };
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            let local = crate::files::dataset_paths(&dir, dataset).meta;
            for _ in 0..BUCKET_TRIES {
                let Some((bytes, tag)) = bucket.get_version(path)? else {
                    return Err(Error::io(
                        path,
                        std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            "the object is gone since it was listed",
                        ),
                    ));
                };
                std::fs::write(&local, &bytes).map_err(|e| Error::io(&local, e))?;
                let f = DatasetFile {
                    path: local.clone(),
                    dataset: dataset.clone(),
                };
                let mut r = refresh_file(&f, opts, &[]);
                r.path = path.clone();
                if let Some(reason) = r.reason.as_mut() {
                    *reason = reason.replace(&*local.to_string_lossy(), &path.to_string_lossy());
                }
                if r.status != Status::Refreshed || !opts.write {
                    return Ok(r);
                }
                let bytes = std::fs::read(&local).map_err(|e| Error::io(&local, e))?;
                if bucket.put(path, bytes::Bytes::from(bytes), Some(&tag))? {
                    return Ok(r);
                }
            }
            Err(Error::io(
                path,
                std::io::Error::other(format!(
                    "replaced by another writer during each of {BUCKET_TRIES} refreshes"
                )),
            ))
        };
        let r = run().unwrap_or_else(failed);
        let _ = std::fs::remove_dir_all(&dir);
        progress(&r, total);
        r
    };
    let indexed: Vec<(usize, &(PathBuf, String))> = listed.iter().enumerate().collect();
    let reports: Vec<FileReport> =
        pool.install(|| indexed.par_iter().map(|(i, f)| one(*i, f)).collect());
    Ok(RefreshReport::of(root, opts, t0, reports))
}

/// How many times a bucket refresh fetches and refreshes a file another
/// writer keeps replacing ([`refresh_workspace`] on a bucket).
pub const BUCKET_TRIES: usize = 5;

/// Refreshes one file (see the module docs); never panics outward.
/// `stale_temps` are temporary files of its dataset found in its folder
/// (removed under the dataset's lock). The file is checked and recomputed
/// without the lock; the lock is taken only to write (or to remove
/// temporary files), and if the file changed in the meantime (an n4a
/// writer got there first) it is checked again under the lock.
pub fn refresh_file(f: &DatasetFile, opts: &RefreshOptions, stale_temps: &[PathBuf]) -> FileReport {
    let t0 = Instant::now();
    let mut report = FileReport {
        path: f.path.clone(),
        dataset: f.dataset.clone(),
        status: Status::Unchanged,
        reason: None,
        kind: None,
        differences: Vec::new(),
        warnings: Vec::new(),
        rows: None,
        recomputed: false,
        millis: 0.0,
    };
    let dir = f.path.parent().unwrap_or(Path::new("."));
    let run = |report: &mut FileReport| -> Result<()> {
        // Without the lock an n4a writer may replace the file while it is
        // read: that is a retry (under the lock when writing), not a failure.
        let decided = match plan(f, opts, report) {
            Ok(d) => Some(d),
            Err(Error::ChangedDuringRefresh { .. }) => None,
            Err(e) => return Err(e),
        };
        if !opts.write {
            if decided.is_none() {
                reset(report);
                plan(f, opts, report)?;
            }
            return Ok(());
        }
        if matches!(decided, Some(None)) && stale_temps.is_empty() {
            return Ok(());
        }
        let _lock = DatasetLock::acquire(dir, &f.dataset)?;
        for t in stale_temps {
            let _ = std::fs::remove_file(t);
        }
        let rewrite = match decided {
            Some(None) => return Ok(()),
            Some(Some(rw)) if FileKey::of(&f.path).ok() == Some(rw.key) => rw,
            _ => {
                reset(report);
                match plan(f, opts, report)? {
                    Some(rw) => rw,
                    None => return Ok(()),
                }
            }
        };
        rewrite_footer(
            &f.path,
            &rewrite.file,
            rewrite.key,
            &rewrite.meta,
            &rewrite.fresh,
            opts.before_commit.as_deref().map(|h| h as &dyn Fn(&Path)),
        )?;
        report.status = Status::Refreshed;
        Ok(())
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&mut report)))
        .unwrap_or_else(|_| Err(Error::corrupt(&f.path, "the decoder panicked on this file")));
    if let Err(e) = outcome {
        report.status = Status::Failed;
        report.kind = Some(e.kind());
        report.reason = Some(e.to_string());
    }
    if !dataset_paths(dir, &f.dataset).arrays.exists() {
        report.warnings.push(format!(
            "no {}.arrays.parquet beside it: nirs4all refuses to load a dataset without it",
            f.dataset
        ));
    }
    report.millis = t0.elapsed().as_secs_f64() * 1e3;
    report
}

/// Forgets what a first look at a file found, before a second one.
fn reset(report: &mut FileReport) {
    report.status = Status::Unchanged;
    report.reason = None;
    report.differences.clear();
    report.warnings.clear();
    report.recomputed = false;
}
