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
//!    [`SummaryBuilder`] (twelve columns read, one batch of 8,192 rows in
//!    memory plus the scores kept for exact quartiles). Verification
//!    compares the stored summary with the recomputed one, ignoring
//!    `generated_at` and float noise (relative 1e-9: appends merge Welford
//!    states in another order than one pass), and reports the first
//!    differences by path.
//! 3. **Rewrite only the footer.** The new file is the old file's bytes up
//!    to its footer (row groups, page indexes, bloom filters: every value
//!    and every offset unchanged) followed by the old `FileMetaData` with
//!    only its key/value metadata replaced ([`thrift::replace_key_values`]):
//!    the summary and the compact state once each, `ARROW:schema` dropped
//!    (its other metadata kept as plain key/values), so the schema, column
//!    statistics and `created_by` are kept as they were. The new footer is
//!    parsed back before it replaces anything.
//!
//! Safety: a writing refresh holds the dataset's lock (the one
//! [`crate::writer::PredictionWriter`] takes) from the first read to the
//! rename, so n4a writers and refreshes serialise. A writer that does not
//! take the lock (nirs4all itself) is detected by the file's change markers
//! ([`FileKey`] of the opened file against a fresh `stat` just before the
//! rename): the refresh is then abandoned and the file reported as
//! `changed_during_refresh`. What remains is the window between that
//! `stat` and the `rename` (microseconds). Replacement is atomic (temporary
//! file in the same folder, fsync, rename, folder fsync), so a crash leaves
//! each file old or new. Files already current are not touched: a second
//! refresh changes nothing, byte for byte.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use rayon::prelude::*;
use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::reader::cache::FileKey;
use crate::reader::workspace::{DatasetFile, FileError};
use crate::reader::{footer, rows, thrift, Workspace};
use crate::schema::{ARROW_SCHEMA_KEY, RUNS_KEY, STATE_KEY, SUMMARY_KEY};
use crate::summary::codec;
use crate::summary::json::SUPPORTED_MAJOR;
use crate::summary::{utc_now, Summary, SummaryBuilder, SummaryOptions, N4A_VERSION};
use crate::writer::commit::{self, DatasetLock, TempFile};
use crate::writer::dataset_paths;

/// Differences listed per file at most.
const MAX_DIFFERENCES: usize = 10;

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
    let t0 = Instant::now();
    let ws = Workspace::open(root)?
        .with_recursive(opts.recursive)
        .with_threads(1);
    let (files, list_errors) = ws.list()?;
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
                commit::temps_by_dataset(d)
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
    let count = |s: Status| reports.iter().filter(|r| r.status == s).count();
    Ok(RefreshReport {
        workspace: root.to_path_buf(),
        mode: opts.mode,
        write: opts.write,
        refreshed: count(Status::Refreshed),
        unchanged: count(Status::Unchanged),
        stale: count(Status::Stale),
        failed: count(Status::Failed),
        rows_recomputed: reports
            .iter()
            .filter(|r| r.recomputed)
            .filter_map(|r| r.rows)
            .sum(),
        seconds: t0.elapsed().as_secs_f64(),
        files: reports,
    })
}

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
        rewrite_footer(&f.path, &rewrite, opts)?;
        report.status = Status::Refreshed;
        Ok(())
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&mut report)))
        .unwrap_or_else(|_| {
            Err(Error::parquet(
                &f.path,
                parquet::errors::ParquetError::General("the decoder panicked on this file".into()),
            ))
        });
    if let Err(e) = outcome {
        report.status = Status::Failed;
        report.kind = Some(e.kind());
        report.reason = Some(e.to_string());
    }
    if !dataset_paths(dir, &f.dataset).1.exists() {
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

/// A footer rewrite decided on: the file as opened, its key then, its
/// metadata and the summary recomputed from its rows.
struct Rewrite {
    file: File,
    key: FileKey,
    meta: ParquetMetaData,
    fresh: Summary,
}

/// Why a file needs a refresh, from its footer alone.
fn footer_verdict(
    path: &Path,
    meta: &ParquetMetaData,
    report: &mut FileReport,
) -> Result<(Option<Summary>, Option<String>)> {
    let num_rows = meta.file_metadata().num_rows().max(0) as u64;
    let Some(text) = footer::summary_text(meta) else {
        return Ok((None, Some("no summary".to_string())));
    };
    let stored = match footer::decode_summary(path, meta) {
        Ok(s) => s.expect("the summary text is there"),
        Err(Error::InvalidSummary { reason, .. }) => {
            return Ok((None, Some(format!("invalid summary: {reason}"))))
        }
        Err(e) => return Err(e),
    };
    match compare_version(&stored.n4a_version) {
        std::cmp::Ordering::Less => {
            let reason = format!(
                "summary version {} (this build writes {N4A_VERSION}: the state in its own compact key)",
                stored.n4a_version
            );
            return Ok((Some(stored), Some(reason)));
        }
        std::cmp::Ordering::Greater => {
            report.warnings.push(format!(
                "summary version {} is newer than this build's {N4A_VERSION}: left as it is",
                stored.n4a_version
            ));
            return Ok((None, None));
        }
        std::cmp::Ordering::Equal => {}
    }
    let state_text = footer::key_value(meta, STATE_KEY);
    let reason = match &stored.state {
        None => Some("summary has no mergeable state".to_string()),
        Some(_) if stored.total_predictions != num_rows => Some(format!(
            "total_predictions is {} but the file has {num_rows} rows",
            stored.total_predictions
        )),
        Some(st) if st.rows != num_rows => Some(format!(
            "the summary state counts {} rows but the file has {num_rows}",
            st.rows
        )),
        Some(_) => {
            let check = state_text
                .and_then(|v| codec::split(v.as_bytes()).ok())
                .and_then(|e| e.head().ok())
                .map(|h| h.text);
            let keys: Vec<&str> = meta
                .file_metadata()
                .key_value_metadata()
                .map(|kv| kv.iter().map(|k| k.key.as_str()).collect())
                .unwrap_or_default();
            if !check.is_some_and(|c| c.matches(text.as_bytes())) {
                Some("the state was not written with this summary text".to_string())
            } else if footer::key_value(meta, ARROW_SCHEMA_KEY).is_some() {
                Some("an ARROW:schema entry hides the summary from pyarrow".to_string())
            } else if !keys.ends_with(&[RUNS_KEY, SUMMARY_KEY, STATE_KEY]) {
                Some(format!(
                    "n4a's key/values are not the footer's last ({}), so readers cannot find them from its end",
                    keys.join(", ")
                ))
            } else {
                None
            }
        }
    };
    Ok((Some(stored), reason))
}

/// `n4a_version` against this build's: older, same or newer (minor; a
/// newer major was refused by the decoder).
fn compare_version(v: &str) -> std::cmp::Ordering {
    let parse = |s: &str| -> (u64, u64) {
        let mut it = s.split('.').map(|p| p.trim().parse::<u64>().unwrap_or(0));
        (it.next().unwrap_or(0), it.next().unwrap_or(0))
    };
    let (mine, theirs) = (parse(N4A_VERSION), parse(v));
    debug_assert_eq!(mine.0, SUPPORTED_MAJOR);
    theirs.cmp(&mine)
}

/// Checks one file and, when it needs it (or verifying), recomputes its
/// summary; returns the rewrite to do, if any and if writing. Without
/// writing, a file needing one is marked [`Status::Stale`].
fn plan(
    f: &DatasetFile,
    opts: &RefreshOptions,
    report: &mut FileReport,
) -> Result<Option<Rewrite>> {
    let path = &f.path;
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let key = FileKey::from_metadata(&file.metadata().map_err(|e| Error::io(path, e))?);
    let meta = ParquetMetaDataReader::new()
        .parse_and_finish(&file)
        .map_err(|e| Error::parquet(path, e))?;
    let num_rows = meta.file_metadata().num_rows().max(0) as u64;
    report.rows = Some(num_rows);
    let (stored, mut reason) = footer_verdict(path, &meta, report)?;
    if reason.is_none() && (opts.mode == Mode::Refresh || stored.is_none()) {
        return Ok(None);
    }
    let fresh = recompute(path, stored.as_ref(), opts).map_err(|e| {
        if FileKey::of(path).ok() == Some(key) {
            e
        } else {
            Error::ChangedDuringRefresh {
                path: path.to_path_buf(),
            }
        }
    })?;
    report.recomputed = true;
    // The rows were read through a second open: make sure it was the same
    // file (an unlocked writer may have replaced it meanwhile).
    if FileKey::of(path).ok() != Some(key) {
        return Err(Error::ChangedDuringRefresh {
            path: path.to_path_buf(),
        });
    }
    if fresh.total_predictions != num_rows {
        return Err(Error::parquet(
            path,
            parquet::errors::ParquetError::General(format!(
                "{} rows read but the metadata says {num_rows}",
                fresh.total_predictions
            )),
        ));
    }
    if reason.is_none() {
        let stored = stored.as_ref().expect("checked above");
        report.differences = differences(stored, &fresh);
        if report.differences.is_empty() {
            return Ok(None);
        }
        reason = Some("the stored summary differs from the rows".to_string());
    }
    report.reason = reason;
    if !opts.write {
        report.status = Status::Stale;
        return Ok(None);
    }
    Ok(Some(Rewrite {
        file,
        key,
        meta,
        fresh,
    }))
}

/// The summary of the file's rows, with the stored state's directions and
/// k unless the options override them.
fn recompute(path: &Path, stored: Option<&Summary>, opts: &RefreshOptions) -> Result<Summary> {
    let mut so = opts.summary.clone();
    if let Some(st) = stored.and_then(|s| s.state.as_ref()) {
        for (metric, m) in &st.metrics {
            if so.directions.supplied(metric).is_none()
                && crate::metric::builtin_direction(metric) != Some(m.direction)
            {
                so.directions = so.directions.with(metric.clone(), m.direction);
            }
        }
        if st.top_k > 0 {
            so.top_k = st.top_k;
        }
    }
    let mut b = SummaryBuilder::new(so);
    rows::summarize(path, &mut b)?;
    Ok(b.finish(Some(utc_now())))
}

/// Decodes a base64 `ARROW:schema` value (an IPC schema message, with or
/// without the continuation marker).
fn decode_arrow_schema(encoded: &str) -> std::result::Result<arrow_schema::Schema, String> {
    let bytes = base64_simd::STANDARD
        .decode_to_vec(encoded)
        .map_err(|e| format!("ARROW:schema is not base64: {e}"))?;
    let slice = if bytes.len() > 8 && bytes[..4] == [0xff; 4] {
        &bytes[8..]
    } else {
        &bytes[..]
    };
    let msg = arrow_ipc::root_as_message(slice)
        .map_err(|e| format!("ARROW:schema is not an Arrow IPC message: {e}"))?;
    let fb = msg
        .header_as_schema()
        .ok_or("ARROW:schema is not an Arrow schema message")?;
    arrow_ipc::convert::try_fb_to_schema(fb).map_err(|e| format!("ARROW:schema: {e}"))
}

/// The key/values of the rewritten footer: the old ones in their order
/// without n4a's and without `ARROW:schema` (whose presence would make
/// pyarrow show only the metadata inside it: the schema-level metadata it
/// carried, other than n4a's keys, becomes plain key/values, so nothing a
/// reader saw is lost; arrow readers then take the types from the parquet
/// schema, and nirs4all's large_utf8 strings read as utf8, which the
/// contract allows), then n4a's `entries` last, in their order (the state's
/// head must be the footer's last key/value: readers find it from the end).
fn new_key_values(meta: &ParquetMetaData, entries: &[(String, String)]) -> Vec<(String, String)> {
    let ours = |k: &str| k == SUMMARY_KEY || k == STATE_KEY || k == RUNS_KEY;
    let mut kv: Vec<(String, String)> = Vec::new();
    let put = |kv: &mut Vec<(String, String)>, k: &str, v: String| match kv
        .iter_mut()
        .find(|(kk, _)| kk == k)
    {
        Some(slot) => slot.1 = v,
        None => kv.push((k.to_string(), v)),
    };
    let old = meta.file_metadata().key_value_metadata();
    for k in old.into_iter().flatten() {
        let value = k.value.clone().unwrap_or_default();
        if k.key == ARROW_SCHEMA_KEY {
            if let Ok(schema) = decode_arrow_schema(&value) {
                for (ik, iv) in schema.metadata() {
                    if !ours(ik) && !kv.iter().any(|(k, _)| k == ik) {
                        kv.push((ik.clone(), iv.clone()));
                    }
                }
            }
        } else if !ours(&k.key) {
            put(&mut kv, &k.key, value);
        }
    }
    kv.extend(entries.iter().cloned());
    kv
}

/// Writes the file's bytes up to its footer plus a footer with the new
/// key/values into a temporary file, checks it parses with the same rows
/// and row groups, and renames it over the file unless the file changed
/// since `key`.
fn rewrite_footer(path: &Path, rw: &Rewrite, opts: &RefreshOptions) -> Result<()> {
    let Rewrite {
        file,
        key,
        meta,
        fresh: summary,
    } = rw;
    let key = *key;
    let entries = summary.footer_entries();
    let text = entries
        .iter()
        .find(|(k, _)| k == SUMMARY_KEY)
        .map(|(_, v)| v.clone())
        .expect("a summary entry");
    let kv = new_key_values(meta, &entries);
    let (old_footer, data_len) = footer::footer_bytes(file, path, key.len)?;
    let pairs: Vec<(&str, &str)> = kv.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let new_footer = thrift::replace_key_values(&old_footer, &pairs).map_err(|e| {
        Error::parquet(
            path,
            parquet::errors::ParquetError::General(format!("footer not rewritable: {}", e.0)),
        )
    })?;
    let footer_len = u32::try_from(new_footer.len()).map_err(|_| Error::InvalidSummary {
        path: path.to_path_buf(),
        reason: "the new footer would exceed 4 GiB".to_string(),
    })?;
    let (tmp, mut out) = TempFile::create(path)?;
    let tmp_err = |e| Error::io(tmp.path(), e);
    let mut src = file;
    src.seek(SeekFrom::Start(0))
        .map_err(|e| Error::io(path, e))?;
    let copied = std::io::copy(&mut src.take(data_len), &mut out).map_err(tmp_err)?;
    if copied != data_len {
        return Err(if FileKey::of(path).ok() == Some(key) {
            Error::io(path, std::io::ErrorKind::UnexpectedEof.into())
        } else {
            Error::ChangedDuringRefresh {
                path: path.to_path_buf(),
            }
        });
    }
    out.write_all(&new_footer).map_err(tmp_err)?;
    out.write_all(&footer_len.to_le_bytes()).map_err(tmp_err)?;
    out.write_all(b"PAR1").map_err(tmp_err)?;
    out.flush().map_err(tmp_err)?;
    let check = ParquetMetaDataReader::new()
        .parse_and_finish(&out)
        .map_err(|e| Error::parquet(tmp.path(), e))?;
    let same = check.file_metadata().num_rows() == meta.file_metadata().num_rows()
        && check.num_row_groups() == meta.num_row_groups()
        && footer::summary_text(&check) == Some(text.as_str());
    if !same {
        return Err(Error::parquet(
            tmp.path(),
            parquet::errors::ParquetError::General(
                "the rewritten footer does not read back as written".into(),
            ),
        ));
    }
    if let Some(hook) = &opts.before_commit {
        hook(path);
    }
    if FileKey::of(path).ok() != Some(key) {
        return Err(Error::ChangedDuringRefresh {
            path: path.to_path_buf(),
        });
    }
    tmp.commit(out, path)
}

/// Differences between a stored summary and one recomputed from the rows,
/// as `path: stored X, rows give Y`, at most [`MAX_DIFFERENCES`].
/// `generated_at` is ignored; numbers compare with relative tolerance 1e-9;
/// sketched quartiles within their stated relative error of exact ones.
/// Memory: one field at a time is turned into a JSON tree (the `runs` of a
/// file with many configs is the largest), never the whole summary.
pub fn differences(stored: &Summary, fresh: &Summary) -> Vec<String> {
    let mut out = Vec::new();
    // Destructured without `..`: a field added to the summary must be
    // added here too.
    let Summary {
        n4a_version,
        generated_at: _,
        dataset_name,
        total_predictions,
        stats,
        facets,
        runs,
        top_predictions,
        ranking,
        metrics,
        top_by_metric,
        state,
    } = stored;
    part("n4a_version", n4a_version, &fresh.n4a_version, &mut out);
    part("dataset_name", dataset_name, &fresh.dataset_name, &mut out);
    part(
        "total_predictions",
        total_predictions,
        &fresh.total_predictions,
        &mut out,
    );
    stats_differences(stats, &fresh.stats, &mut out);
    part("facets", facets, &fresh.facets, &mut out);
    part("runs", runs, &fresh.runs, &mut out);
    part(
        "top_predictions",
        top_predictions,
        &fresh.top_predictions,
        &mut out,
    );
    part("ranking", ranking, &fresh.ranking, &mut out);
    part("metrics", metrics, &fresh.metrics, &mut out);
    part(
        "top_by_metric",
        top_by_metric,
        &fresh.top_by_metric,
        &mut out,
    );
    match (state, &fresh.state) {
        (Some(a), Some(b)) => {
            let crate::summary::SummaryState {
                rows,
                dataset_names,
                val_score,
                test_score,
                train_score,
                models,
                partitions,
                folds,
                task_types,
                runs,
                pipelines,
                metrics,
                top_k,
                top,
            } = a;
            part("state.rows", rows, &b.rows, &mut out);
            part(
                "state.dataset_names",
                dataset_names,
                &b.dataset_names,
                &mut out,
            );
            part("state.val_score", val_score, &b.val_score, &mut out);
            part("state.test_score", test_score, &b.test_score, &mut out);
            part("state.train_score", train_score, &b.train_score, &mut out);
            part("state.models", models, &b.models, &mut out);
            part("state.partitions", partitions, &b.partitions, &mut out);
            part("state.folds", folds, &b.folds, &mut out);
            part("state.task_types", task_types, &b.task_types, &mut out);
            part("state.runs", runs, &b.runs, &mut out);
            part("state.pipelines", pipelines, &b.pipelines, &mut out);
            part("state.metrics", metrics, &b.metrics, &mut out);
            part("state.top_k", top_k, &b.top_k, &mut out);
            part("state.top", top, &b.top, &mut out);
        }
        (a, b) => part("state", a, b, &mut out),
    }
    out.truncate(MAX_DIFFERENCES);
    out
}

/// Compares one field through its JSON form.
fn part<T: Serialize>(path: &str, a: &T, b: &T, out: &mut Vec<String>) {
    if out.len() >= MAX_DIFFERENCES {
        return;
    }
    let a = serde_json::to_value(a).unwrap_or(Value::Null);
    let b = serde_json::to_value(b).unwrap_or(Value::Null);
    diff_values(path, &a, &b, out);
}

/// `stats`, with quartiles computed two ways (sketch, exact) compared
/// within the sketch's stated error.
fn stats_differences(a: &crate::summary::Stats, b: &crate::summary::Stats, out: &mut Vec<String>) {
    let mut a = serde_json::to_value(a).unwrap_or(Value::Null);
    let mut b = serde_json::to_value(b).unwrap_or(Value::Null);
    for col in ["val_score", "test_score", "train_score"] {
        let (sa, sb) = (&a[col], &b[col]);
        let method = |s: &Value| s["quartiles_method"].as_str().map(str::to_string);
        if method(sa) == method(sb) {
            continue;
        }
        let err = [sa, sb]
            .iter()
            .filter_map(|s| s["quartiles_rel_error"].as_f64())
            .fold(0.0, f64::max);
        let qa: Vec<Option<f64>> = quartiles(sa);
        let qb: Vec<Option<f64>> = quartiles(sb);
        let ok = qa.len() == qb.len()
            && qa.iter().zip(&qb).all(|(x, y)| match (x, y) {
                (Some(x), Some(y)) => (x - y).abs() <= err * x.abs().max(y.abs()) + 1e-12,
                (None, None) => true,
                _ => false,
            });
        if !ok {
            out.push(format!(
                "stats.{col}.quartiles: stored {qa:?}, rows give {qb:?}"
            ));
        }
        for v in [&mut a, &mut b] {
            if let Some(o) = v[col].as_object_mut() {
                for k in ["quartiles", "quartiles_method", "quartiles_rel_error"] {
                    o.remove(k);
                }
            }
        }
    }
    diff_values("stats", &a, &b, out);
}

fn quartiles(s: &Value) -> Vec<Option<f64>> {
    s["quartiles"]
        .as_array()
        .map(|q| q.iter().map(Value::as_f64).collect())
        .unwrap_or_default()
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(77) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s,
    }
}

fn diff_values(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    if out.len() >= MAX_DIFFERENCES {
        return;
    }
    let at = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            if (x - y).abs() > 1e-9 * (1.0 + x.abs().max(y.abs())) {
                out.push(format!("{path}: stored {x}, rows give {y}"));
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let (va, vb) = (
                    x.get(k.as_str()).unwrap_or(&Value::Null),
                    y.get(k.as_str()).unwrap_or(&Value::Null),
                );
                diff_values(&at(k), va, vb, out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                diff_values(&format!("{path}[{i}]"), va, vb, out);
            }
        }
        (Value::Array(x), Value::Array(y)) => out.push(format!(
            "{path}: stored {} entries, rows give {}",
            x.len(),
            y.len()
        )),
        _ if a == b => {}
        _ => out.push(format!(
            "{path}: stored {}, rows give {}",
            short(a),
            short(b)
        )),
    }
}
