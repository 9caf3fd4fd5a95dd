//! `export-store`: a `.meta.parquet` workspace written out as a new
//! `store.sqlite` + `arrays/` workspace that nirs4all 1.4.10 opens.
//!
//! The database gets nirs4all's own DDL ([`SCHEMA_SQL`], copied verbatim
//! from `store_schema.py`) and `PRAGMA user_version` = [`SCHEMA_VERSION`],
//! in WAL mode as nirs4all leaves its stores. Every row becomes one
//! `predictions` row under its own id; `runs`, `pipelines` and `chains`
//! are derived as `docs/STORE.md` states (and [`DERIVATIONS`] repeats in
//! each report). Each arrays file is nirs4all's `_PARQUET_SCHEMA`, zstd
//! level 3, one row per prediction that has an array.
//!
//! Never in place, never partial: everything is written into a hidden
//! folder beside the output, synced, and renamed to the output only when
//! every dataset is in; any failure removes that folder. A crash leaves at
//! most a hidden `.<out>.n4a-export-*` folder, never a half store under the
//! output's name.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{Float64Builder, Int32Builder, ListBuilder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use rusqlite::{params, Connection};
use serde::Serialize;
use xxhash_rust::xxh3::xxh3_128;

use crate::error::{Error, Result};
use crate::files::dataset_paths;
use crate::metric::Directions;
use crate::reader::arrays::read_arrays;
use crate::reader::rows::read_predictions;
use crate::schema::{validate_dataset_name, ArrayData, Prediction, META_SUFFIX};

use super::{arrays, is_store, SCHEMA_VERSION, STORE_FILE};

/// nirs4all 1.4.10's tables, indexes and view, verbatim.
pub const SCHEMA_SQL: &str = include_str!("schema.sql");

/// How `runs`, `pipelines` and `chains` are derived from the rows (each
/// report carries these lines).
pub const DERIVATIONS: [&str; 4] = [
    "runs: one run for the source workspace (run_id: hash of its path, name: its folder name, status completed, datasets: the exported names)",
    "pipelines: one per pipeline_uid and dataset (name: config_name; best_val: the best val_score of its val rows in the metric's direction, best_test: that row's test_score; a pipeline_uid found in two datasets is stored as <uid>@<dataset> for the later one)",
    "chains: one per pipeline, step_idx, model_name, model_classname and branch_id (chain_id: a hash of those; steps: [] as .meta.parquet has no steps; model_step_idx: step_idx, -1 when null)",
    "chains' cross-validation scores: those of the chain's avg row (its val-partition row first), else its w_avg row, else nirs4all's own rule (the mean over numbered folds); cv_scores: that row's scores; cv_fold_count: the distinct fold ids other than avg, w_avg and *_agg",
];

/// Predictions whose arrays are read and written at once: bounds memory
/// to this many predictions' arrays.
const CHUNK: usize = 2048;

/// Options of [`export_store`].
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct ExportOptions {
    /// Directions of metrics the built-in table lacks (for `best_val`).
    pub directions: Directions,
    /// Export the readable datasets when some cannot be read (each listed
    /// in [`ExportReport::skipped`]); by default one bad file fails the
    /// export and nothing is written.
    pub skip_bad: bool,
}

/// One exported dataset.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetExport {
    /// The dataset's name.
    pub dataset: String,
    /// Predictions written to `predictions`.
    pub predictions: u64,
    /// Of those, how many have a row in the arrays file.
    pub with_arrays: u64,
    /// The arrays file, relative to the output (none without arrays).
    pub arrays_file: Option<String>,
    /// What the user should know (duplicates dropped, arrays missing...).
    pub notes: Vec<String>,
}

/// The result of [`export_store`].
#[derive(Debug)]
pub struct ExportReport {
    /// The source workspace.
    pub source: PathBuf,
    /// The store workspace written.
    pub out: PathBuf,
    /// The run id given to the source.
    pub run_id: String,
    /// The datasets written, by name.
    pub datasets: Vec<DatasetExport>,
    /// Rows of `pipelines` and `chains` written.
    pub pipelines: u64,
    /// Rows of `chains` written.
    pub chains: u64,
    /// Datasets left out under [`ExportOptions::skip_bad`], with why.
    pub skipped: Vec<(String, Error)>,
}

/// Writes the `.meta.parquet` workspace `ws` as a new store workspace at
/// `out`, which must not exist or be an empty folder. Cost: one read of
/// every meta file and, per 2,048 predictions, one filtered pass over
/// its arrays file; SQLite inserts in one transaction. Memory: one
/// dataset's rows (no arrays) plus one chunk's arrays.
///
/// # Errors
/// [`Error::InvalidOption`] when `ws` is a store or `out` is taken;
/// the first dataset's error unless [`ExportOptions::skip_bad`];
/// [`Error::Io`]/[`Error::Sqlite`]/[`Error::Parquet`] naming the file
/// being written. On any error nothing is left at `out`.
pub fn export_store(ws: &Path, out: &Path, opts: &ExportOptions) -> Result<ExportReport> {
    if is_store(ws) {
        return Err(Error::InvalidOption(format!(
            "{}: already a store workspace (it holds {STORE_FILE})",
            ws.display()
        )));
    }
    let source = ws.canonicalize().map_err(|e| Error::io(ws, e))?;
    let datasets = list_datasets(&source)?;
    check_out(out)?;
    let name = out
        .file_name()
        .ok_or_else(|| Error::InvalidOption(format!("{}: not a folder name", out.display())))?
        .to_string_lossy()
        .into_owned();
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
    let tmp = TempDir::create(&parent, &name)?;
    let mut report = ExportReport {
        source: ws.to_path_buf(),
        out: out.to_path_buf(),
        run_id: hex128(source.to_string_lossy().as_bytes()),
        datasets: Vec::new(),
        pipelines: 0,
        chains: 0,
        skipped: Vec::new(),
    };
    let run_name = source.file_name().map_or_else(
        || "workspace".to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    write_store(tmp.path(), &source, &run_name, &datasets, opts, &mut report)?;
    tmp.commit(out)?;
    Ok(report)
}

/// The datasets of `ws`: its `*.meta.parquet` files, by name.
fn list_datasets(ws: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(ws).map_err(|e| Error::io(ws, e))? {
        let e = e.map_err(|e| Error::io(ws, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if let Some(ds) = name.strip_suffix(META_SUFFIX) {
            out.push(ds.to_string());
        }
    }
    out.sort();
    Ok(out)
}

/// Refuses an output that exists and is not an empty folder.
fn check_out(out: &Path) -> Result<()> {
    match std::fs::read_dir(out) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(Error::InvalidOption(format!(
                "{}: exists and is not empty; export-store writes a new workspace, never over one",
                out.display()
            ))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(_) if out.exists() => Err(Error::InvalidOption(format!(
            "{}: exists and is not a folder",
            out.display()
        ))),
        Err(e) => Err(Error::io(out, e)),
    }
}

/// XXH3-128 of `bytes`, as 32 hex digits.
fn hex128(bytes: &[u8]) -> String {
    format!("{:032x}", xxh3_128(bytes))
}

/// The hidden folder an export is built in, removed unless committed.
struct TempDir {
    path: PathBuf,
    done: bool,
}

impl TempDir {
    fn create(parent: &Path, name: &str) -> Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = parent.join(format!(".{name}.n4a-export-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&path).map_err(|e| Error::io(&path, e))?;
        let arrays = path.join("arrays");
        std::fs::create_dir(&arrays).map_err(|e| Error::io(&arrays, e))?;
        Ok(TempDir { path, done: false })
    }

    fn path(&self) -> &Path {
        &self.path
    }

    /// Syncs every file and renames the folder to `out` (an empty `out`
    /// is replaced; a non-empty one makes the rename fail).
    fn commit(mut self, out: &Path) -> Result<()> {
        sync_tree(&self.path)?;
        std::fs::rename(&self.path, out).map_err(|e| Error::io(out, e))?;
        self.done = true;
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            if let Ok(d) = File::open(parent) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// fsyncs every file and folder under `dir`.
fn sync_tree(dir: &Path) -> Result<()> {
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let p = e.map_err(|e| Error::io(dir, e))?.path();
        if p.is_dir() {
            sync_tree(&p)?;
        } else {
            File::open(&p)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io(&p, e))?;
        }
    }
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// Everything of the export inside the temporary folder `dir`.
fn write_store(
    dir: &Path,
    source: &Path,
    run_name: &str,
    datasets: &[String],
    opts: &ExportOptions,
    report: &mut ExportReport,
) -> Result<()> {
    let db = dir.join(STORE_FILE);
    let sql = |e| Error::sqlite(&db, e);
    let mut conn = Connection::open(&db).map_err(sql)?;
    // The database is private to this folder until the rename: no journal
    // is needed for atomicity, the rename gives it.
    conn.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;")
        .map_err(sql)?;
    conn.execute_batch(SCHEMA_SQL).map_err(sql)?;
    let tx = conn.transaction().map_err(sql)?;
    tx.execute(
        "INSERT INTO runs (run_id, name, config, datasets, status, completed_at, summary)
         VALUES (?1, ?2, ?3, '[]', 'completed', current_timestamp, ?4)",
        params![
            report.run_id,
            run_name,
            serde_json::json!({ "exported_from": source }).to_string(),
            serde_json::json!({ "exported_by": format!("n4a {}", env!("CARGO_PKG_VERSION")) })
                .to_string(),
        ],
    )
    .map_err(sql)?;
    let mut state = Shared::default();
    let mut parts: Vec<(PathBuf, PathBuf)> = Vec::new();
    for ds in datasets {
        let target = arrays::path(dir, ds);
        let part = dir
            .join("arrays")
            .join(format!(".{}.part", hex128(ds.as_bytes())));
        tx.execute_batch("SAVEPOINT dataset").map_err(sql)?;
        let before = state.clone();
        match export_one(
            &tx,
            &db,
            source,
            ds,
            &part,
            &target,
            &report.run_id,
            opts,
            &mut state,
        ) {
            Ok(done) => {
                tx.execute_batch("RELEASE dataset").map_err(sql)?;
                if done.with_arrays > 0 {
                    parts.push((part, target));
                } else {
                    let _ = std::fs::remove_file(&part);
                }
                report.datasets.push(done);
            }
            Err(e) => {
                let _ = std::fs::remove_file(&part);
                if !opts.skip_bad {
                    return Err(e);
                }
                tx.execute_batch("ROLLBACK TO dataset; RELEASE dataset")
                    .map_err(sql)?;
                state = before;
                report.skipped.push((ds.clone(), e));
            }
        }
    }
    let names: Vec<&str> = report.datasets.iter().map(|d| d.dataset.as_str()).collect();
    tx.execute(
        "UPDATE runs SET datasets = ?1 WHERE run_id = ?2",
        params![
            serde_json::to_string(&names).expect("names serialise"),
            report.run_id
        ],
    )
    .map_err(sql)?;
    tx.commit().map_err(sql)?;
    conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION};"))
        .map_err(sql)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(sql)?;
    if mode != "wal" {
        return Err(Error::InvalidOption(format!(
            "{}: SQLite refused WAL mode (got {mode})",
            db.display()
        )));
    }
    conn.close().map_err(|(_, e)| sql(e))?;
    report.pipelines = state.pipelines.len() as u64;
    report.chains = state.chains as u64;
    merge_parts(parts)?;
    Ok(())
}

/// What the datasets of one export share: ids must be unique across the
/// store, and a pipeline belongs to one dataset.
#[derive(Debug, Clone, Default)]
struct Shared {
    ids: HashSet<String>,
    /// pipeline_id → its dataset.
    pipelines: HashMap<String, String>,
    chains: usize,
}

/// A pipeline's rows as they are read, for its `pipelines` row.
#[derive(Default)]
struct PipelineAgg {
    name: String,
    metric: Option<String>,
    best: Option<(f64, Option<f64>)>,
    unknown_metric: bool,
}

/// A chain's rows, for its `chains` row.
#[derive(Default)]
struct ChainAgg {
    pipeline_id: String,
    step_idx: i64,
    model_name: String,
    model_class: String,
    preprocessings: Option<String>,
    metric: Option<String>,
    task_type: Option<String>,
    best_params: Option<String>,
    /// (rank: 0 avg/val, 1 avg, 2 w_avg/val, 3 w_avg; the row).
    cv_row: Option<(u8, [Option<f64>; 3], Option<String>)>,
    folds: HashSet<String>,
    fold_sums: [(f64, u64); 3],
}

/// Exports one dataset into the open transaction and its arrays part file.
#[allow(clippy::too_many_arguments)]
fn export_one(
    tx: &rusqlite::Transaction<'_>,
    db: &Path,
    source: &Path,
    ds: &str,
    part: &Path,
    target: &Path,
    run_id: &str,
    opts: &ExportOptions,
    state: &mut Shared,
) -> Result<DatasetExport> {
    validate_dataset_name(ds)?;
    let paths = dataset_paths(source, ds);
    let rows = read_predictions(&paths.meta)?;
    let mut notes = Vec::new();
    let rows = dedupe(rows, &paths.meta, &mut notes);
    let sql = |e| Error::sqlite(db, e);
    let mut pipes: HashMap<String, PipelineAgg> = HashMap::new();
    let mut chains: HashMap<String, ChainAgg> = HashMap::new();
    let mut renamed: HashSet<String> = HashSet::new();
    let mut nulls: HashMap<&'static str, u64> = HashMap::new();
    let mut keyed = Vec::with_capacity(rows.len());
    for r in &rows {
        let id = r.id.clone().unwrap_or_else(|| r.computed_id());
        if !state.ids.insert(id.clone()) {
            return Err(Error::Corrupt {
                path: paths.meta.clone(),
                reason: format!(
                    "prediction id {id} is also in another dataset: a store holds each id once"
                ),
            });
        }
        let uid = r.pipeline_uid.clone().unwrap_or_else(|| {
            *nulls.entry("pipeline_uid").or_default() += 1;
            format!(
                "n4a-{}",
                hex128(format!("{ds}\0{}", r.config_name.as_deref().unwrap_or("")).as_bytes())
            )
        });
        let pipeline_id = match state.pipelines.get(&uid) {
            Some(owner) if owner != ds => {
                renamed.insert(uid.clone());
                format!("{uid}@{ds}")
            }
            _ => uid,
        };
        let step = r.step_idx.unwrap_or(-1);
        let model_name = r.model_name.clone().unwrap_or_default();
        let model_class = r.model_classname.clone().unwrap_or_default();
        let chain_id = hex128(
            format!(
                "{pipeline_id}\0{step}\0{model_name}\0{model_class}\0{:?}",
                r.branch_id
            )
            .as_bytes(),
        );
        observe_pipeline(pipes.entry(pipeline_id.clone()).or_default(), r, opts);
        observe_chain(
            chains.entry(chain_id.clone()).or_insert_with(|| ChainAgg {
                pipeline_id: pipeline_id.clone(),
                step_idx: step,
                model_name: model_name.clone(),
                model_class: model_class.clone(),
                ..ChainAgg::default()
            }),
            r,
        );
        keyed.push((id, pipeline_id, chain_id));
    }
    for (pid, p) in &pipes {
        state
            .pipelines
            .entry(pid.clone())
            .or_insert_with(|| ds.to_string());
        tx.execute(
            "INSERT INTO pipelines (pipeline_id, run_id, name, dataset_name, status,
                 completed_at, best_val, best_test, metric)
             VALUES (?1, ?2, ?3, ?4, 'completed', current_timestamp, ?5, ?6, ?7)",
            params![
                pid,
                run_id,
                p.name,
                ds,
                p.best.map(|b| b.0),
                p.best.and_then(|b| b.1),
                p.metric
            ],
        )
        .map_err(sql)?;
        if p.unknown_metric {
            notes.push(format!(
                "pipeline {pid}: metric {:?} has no known direction: best_val left null (give --direction)",
                p.metric.as_deref().unwrap_or("")
            ));
        }
    }
    for (cid, c) in &chains {
        insert_chain(tx, db, cid, c, ds)?;
    }
    state.chains += chains.len();
    {
        let mut ins = tx
            .prepare(
                "INSERT INTO predictions (prediction_id, pipeline_id, chain_id, dataset_name,
                     model_name, model_class, fold_id, partition, val_score, test_score,
                     train_score, metric, task_type, n_samples, n_features, scores, best_params,
                     preprocessings, branch_id, branch_name, exclusion_count, exclusion_rate)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,
                     ?16, ?17, ?18, ?19, ?20, ?21, ?22)",
            )
            .map_err(sql)?;
        for (r, (id, pid, cid)) in rows.iter().zip(&keyed) {
            let mut text = |v: &Option<String>, col: &'static str| {
                v.clone().unwrap_or_else(|| {
                    *nulls.entry(col).or_default() += 1;
                    String::new()
                })
            };
            let fold = text(&r.fold_id, "fold_id");
            let partition = text(&r.partition, "partition");
            let metric = text(&r.metric, "metric");
            let task = text(&r.task_type, "task_type");
            ins.execute(params![
                id,
                pid,
                cid,
                ds,
                r.model_name.as_deref().unwrap_or(""),
                r.model_classname.as_deref().unwrap_or(""),
                fold,
                partition,
                r.val_score,
                r.test_score,
                r.train_score,
                metric,
                task,
                r.n_samples,
                r.n_features,
                r.scores,
                r.best_params,
                r.preprocessings.as_deref().unwrap_or(""),
                r.branch_id,
                r.branch_name,
                r.exclusion_count.unwrap_or(0),
                r.exclusion_rate.unwrap_or(0.0),
            ])
            .map_err(|e| Error::sqlite(db, e))?;
        }
    }
    for (col, n) in nulls {
        notes.push(format!(
            "{n} row(s) with a null {col}: written as '' (the store requires a value)"
        ));
    }
    if !renamed.is_empty() {
        let mut r: Vec<_> = renamed.into_iter().collect();
        r.sort();
        notes.push(format!(
            "pipeline_uid(s) {} also belong to another dataset: stored here as <uid>@{ds}",
            r.join(", ")
        ));
    }
    let with_arrays = write_arrays(&paths.arrays, part, ds, &rows, &keyed, &mut notes)?;
    let arrays_file = (with_arrays > 0).then(|| {
        let name = target.file_name().unwrap_or_default().to_string_lossy();
        format!("arrays/{name}")
    });
    Ok(DatasetExport {
        dataset: ds.to_string(),
        predictions: rows.len() as u64,
        with_arrays,
        arrays_file,
        notes,
    })
}

/// Drops the earlier of two rows with the same id or the same natural key
/// of nirs4all's unique index (pipeline, chain, fold, partition, model,
/// branch: a repeated row, as an append of the same run leaves); the later
/// row wins, as in nirs4all's own migration. Each drop is noted.
fn dedupe(rows: Vec<Prediction>, meta: &Path, notes: &mut Vec<String>) -> Vec<Prediction> {
    let mut ids = HashSet::new();
    let mut keys = HashSet::new();
    let mut keep = vec![false; rows.len()];
    let mut dropped = Vec::new();
    for (i, r) in rows.iter().enumerate().rev() {
        let id = r.id.clone().unwrap_or_else(|| r.computed_id());
        // SQLite's unique index treats NULLs as distinct: rows without a
        // branch id never collide on it.
        let key = r.branch_id.map(|b| {
            (
                r.pipeline_uid.clone(),
                r.step_idx,
                r.model_name.clone(),
                r.model_classname.clone(),
                r.fold_id.clone(),
                r.partition.clone(),
                b,
            )
        });
        let fresh_key = key.as_ref().is_none_or(|k| !keys.contains(k));
        if ids.contains(&id) || !fresh_key {
            dropped.push(id);
            continue;
        }
        ids.insert(id);
        if let Some(k) = key {
            keys.insert(k);
        }
        keep[i] = true;
    }
    if !dropped.is_empty() {
        dropped.reverse();
        let shown: Vec<&str> = dropped.iter().take(5).map(String::as_str).collect();
        notes.push(format!(
            "{}: {} repeated row(s) (same id, or same pipeline, chain, fold, partition, model and branch) left out, the later row kept: {}{}",
            meta.display(),
            dropped.len(),
            shown.join(", "),
            if dropped.len() > 5 { ", ..." } else { "" }
        ));
    }
    rows.into_iter()
        .zip(keep)
        .filter_map(|(r, k)| k.then_some(r))
        .collect()
}

fn observe_pipeline(p: &mut PipelineAgg, r: &Prediction, opts: &ExportOptions) {
    if p.name.is_empty() {
        p.name = r.config_name.clone().unwrap_or_default();
    }
    if p.metric.is_none() {
        p.metric = r.metric.clone();
    }
    if r.partition.as_deref() != Some("val") {
        return;
    }
    let (Some(metric), Some(v)) = (r.metric.as_deref(), r.val_score) else {
        return;
    };
    if v.is_nan() {
        return;
    }
    match opts.directions.get(metric) {
        Ok(dir) => {
            if p.best.is_none_or(|(b, _)| dir.is_better(v, b)) {
                p.best = Some((v, r.test_score));
            }
        }
        Err(_) => p.unknown_metric = true,
    }
}

fn observe_chain(c: &mut ChainAgg, r: &Prediction) {
    let fill = |slot: &mut Option<String>, v: &Option<String>| {
        if slot.is_none() {
            slot.clone_from(v);
        }
    };
    fill(&mut c.preprocessings, &r.preprocessings);
    fill(&mut c.metric, &r.metric);
    fill(&mut c.task_type, &r.task_type);
    if c.best_params.is_none() && r.best_params.as_deref().is_some_and(|b| b != "{}") {
        c.best_params.clone_from(&r.best_params);
    }
    let fold = r.fold_id.as_deref().unwrap_or("");
    let val = r.partition.as_deref() == Some("val");
    let rank = match fold {
        "avg" => Some(if val { 0 } else { 1 }),
        "w_avg" => Some(if val { 2 } else { 3 }),
        _ => None,
    };
    match rank {
        Some(rank) => {
            if c.cv_row.as_ref().is_none_or(|(best, _, _)| rank < *best) {
                c.cv_row = Some((rank, r.score_values(), r.scores.clone()));
            }
        }
        None if fold.ends_with("_agg") => {}
        None => {
            if !fold.is_empty() {
                c.folds.insert(fold.to_string());
            }
            for (sum, v) in c.fold_sums.iter_mut().zip(r.score_values()) {
                if let Some(v) = v {
                    sum.0 += v;
                    sum.1 += 1;
                }
            }
        }
    }
}

fn insert_chain(
    tx: &rusqlite::Transaction<'_>,
    db: &Path,
    cid: &str,
    c: &ChainAgg,
    ds: &str,
) -> Result<()> {
    let (scores, cv_scores) = match &c.cv_row {
        Some((_, s, text)) => (*s, text.clone()),
        None => {
            let mean = |(s, n): (f64, u64)| (n > 0).then(|| s / n as f64);
            (c.fold_sums.map(mean), None)
        }
    };
    tx.execute(
        "INSERT INTO chains (chain_id, pipeline_id, steps, model_step_idx, model_class,
             preprocessings, fold_strategy, model_name, metric, task_type, best_params,
             dataset_name, cv_val_score, cv_test_score, cv_train_score, cv_fold_count, cv_scores)
         VALUES (?1, ?2, '[]', ?3, ?4, ?5, 'per_fold', ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        params![
            cid,
            c.pipeline_id,
            c.step_idx,
            c.model_class,
            c.preprocessings.as_deref().unwrap_or(""),
            c.model_name,
            c.metric,
            c.task_type,
            c.best_params,
            ds,
            scores[0],
            scores[1],
            scores[2],
            c.folds.len() as i64,
            cv_scores,
        ],
    )
    .map_err(|e| Error::sqlite(db, e))?;
    Ok(())
}

/// nirs4all's `_PARQUET_SCHEMA` (array_store.py), column for column.
pub fn arrays_schema() -> SchemaRef {
    let list = |t: DataType| DataType::List(Arc::new(Field::new("item", t, true)));
    let utf8 = |n: &str| Field::new(n, DataType::Utf8, true);
    let f64s = |n: &str| Field::new(n, list(DataType::Float64), true);
    let i32s = |n: &str| Field::new(n, list(DataType::Int32), true);
    Arc::new(Schema::new(vec![
        utf8("prediction_id"),
        utf8("dataset_name"),
        utf8("model_name"),
        utf8("fold_id"),
        utf8("partition"),
        utf8("metric"),
        Field::new("val_score", DataType::Float64, true),
        utf8("task_type"),
        f64s("y_true"),
        i32s("y_true_shape"),
        f64s("y_pred"),
        i32s("y_pred_shape"),
        f64s("y_proba"),
        i32s("y_proba_shape"),
        f64s("X"),
        i32s("X_shape"),
        f64s("spectra"),
        i32s("spectra_shape"),
        i32s("sample_indices"),
        f64s("weights"),
        utf8("sample_metadata"),
        utf8("result_metadata"),
    ]))
}

/// The ids of the arrays a row references (y_true, y_pred, y_proba,
/// sample_indices, weights), those it has.
fn array_ids(r: &Prediction) -> impl Iterator<Item = &String> {
    [
        &r.y_true_id,
        &r.y_pred_id,
        &r.y_proba_id,
        &r.sample_indices_id,
        &r.weights_id,
    ]
    .into_iter()
    .flatten()
}

/// A new arrays file at `path`: nirs4all's schema, zstd level 3 as its
/// `ArrayStore` writes them.
fn arrays_writer(path: &Path) -> Result<ArrowWriter<File>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("level 3 is valid"),
        ))
        .set_created_by(format!("n4a version {}", env!("CARGO_PKG_VERSION")))
        .build();
    ArrowWriter::try_new(file, arrays_schema(), Some(props)).map_err(|e| Error::parquet(path, e))
}

/// The arrays of `rows` (read from the source arrays file by id, a chunk
/// at a time) written to `part` in nirs4all's layout. Returns how many
/// predictions got a row.
fn write_arrays(
    src: &Path,
    part: &Path,
    ds: &str,
    rows: &[Prediction],
    keyed: &[(String, String, String)],
    notes: &mut Vec<String>,
) -> Result<u64> {
    let referenced = |r: &Prediction| array_ids(r).count();
    let wanted: usize = rows.iter().map(referenced).sum();
    if wanted == 0 {
        return Ok(0);
    }
    if !src.is_file() {
        notes.push(format!(
            "{} is missing: {} prediction(s) exported without arrays",
            src.display(),
            rows.iter().filter(|r| referenced(r) > 0).count()
        ));
        return Ok(0);
    }
    let schema = arrays_schema();
    let mut w = arrays_writer(part)?;
    let (mut written, mut missing) = (0u64, 0u64);
    for (chunk, keys) in rows.chunks(CHUNK).zip(keyed.chunks(CHUNK)) {
        let ids: Vec<&str> = chunk
            .iter()
            .flat_map(array_ids)
            .map(String::as_str)
            .collect();
        if ids.is_empty() {
            continue;
        }
        let found = read_arrays(src, &ids)?;
        let mut b = ArraysBatch::default();
        for (r, (id, _, _)) in chunk.iter().zip(keys) {
            if referenced(r) == 0 {
                continue;
            }
            let get = |aid: &Option<String>, missing: &mut u64| {
                let aid = aid.as_ref()?;
                let a = found.get(aid);
                if a.is_none() {
                    *missing += 1;
                }
                a
            };
            let arrays = [
                get(&r.y_true_id, &mut missing),
                get(&r.y_pred_id, &mut missing),
                get(&r.y_proba_id, &mut missing),
                get(&r.sample_indices_id, &mut missing),
                get(&r.weights_id, &mut missing),
            ];
            if arrays.iter().all(Option::is_none) {
                continue;
            }
            b.push(id, ds, r, arrays).map_err(|reason| Error::Corrupt {
                path: src.to_path_buf(),
                reason: format!("prediction {id}: {reason}"),
            })?;
            written += 1;
        }
        if b.rows > 0 {
            w.write(&b.finish(&schema, part)?)
                .map_err(|e| Error::parquet(part, e))?;
        }
    }
    close_arrays(w, part)?;
    if missing > 0 {
        notes.push(format!(
            "{missing} array id(s) referenced by rows are not in {}: those arrays are absent",
            src.display()
        ));
    }
    Ok(written)
}

/// Column builders of one arrays batch.
#[derive(Default)]
struct ArraysBatch {
    rows: usize,
    text: [StringBuilder; 7],
    val: Float64Builder,
    y_true: ListBuilder<Float64Builder>,
    y_true_shape: ListBuilder<Int32Builder>,
    y_pred: ListBuilder<Float64Builder>,
    y_pred_shape: ListBuilder<Int32Builder>,
    y_proba: ListBuilder<Float64Builder>,
    y_proba_shape: ListBuilder<Int32Builder>,
    x: ListBuilder<Float64Builder>,
    x_shape: ListBuilder<Int32Builder>,
    spectra: ListBuilder<Float64Builder>,
    spectra_shape: ListBuilder<Int32Builder>,
    sample_indices: ListBuilder<Int32Builder>,
    weights: ListBuilder<Float64Builder>,
    metadata: [StringBuilder; 2],
}

/// A target's shape when it is not a plain vector. nirs4all's own writer
/// keeps it only for matrices of more than one column, so a column vector
/// `[n, 1]` would read back as `[n]`; its reader reshapes by any stored
/// shape, so the source's shape is kept and reads back equal.
fn target_shape(a: Option<&ArrayData>) -> Option<&[usize]> {
    a.filter(|a| a.shape.len() > 1).map(|a| a.shape.as_slice())
}

fn put_f64s(b: &mut ListBuilder<Float64Builder>, a: Option<&ArrayData>) {
    match a {
        Some(a) => {
            b.values().append_slice(&a.values);
            b.append(true);
        }
        None => b.append(false),
    }
}

fn put_shape(
    b: &mut ListBuilder<Int32Builder>,
    shape: Option<&[usize]>,
) -> std::result::Result<(), String> {
    match shape {
        Some(s) => {
            for d in s {
                let d = i32::try_from(*d).map_err(|_| format!("dimension {d} exceeds int32"))?;
                b.values().append_value(d);
            }
            b.append(true);
        }
        None => b.append(false),
    }
    Ok(())
}

impl ArraysBatch {
    /// Adds one prediction's row; `arrays` are y_true, y_pred, y_proba,
    /// sample_indices and weights.
    fn push(
        &mut self,
        id: &str,
        ds: &str,
        r: &Prediction,
        arrays: [Option<&ArrayData>; 5],
    ) -> std::result::Result<(), String> {
        let [y_true, y_pred, y_proba, indices, weights] = arrays;
        let texts = [
            Some(id),
            Some(ds),
            Some(r.model_name.as_deref().unwrap_or("")),
            Some(r.fold_id.as_deref().unwrap_or("")),
            Some(r.partition.as_deref().unwrap_or("")),
            Some(r.metric.as_deref().unwrap_or("")),
            Some(r.task_type.as_deref().unwrap_or("")),
        ];
        // nirs4all's column order: the 6 names, val_score, then task_type.
        for (b, t) in self.text.iter_mut().zip(texts) {
            b.append_option(t);
        }
        self.val.append_option(r.val_score);
        // A target's shape only for a matrix; y_proba's always.
        put_f64s(&mut self.y_true, y_true);
        put_shape(&mut self.y_true_shape, target_shape(y_true))?;
        put_f64s(&mut self.y_pred, y_pred);
        put_shape(&mut self.y_pred_shape, target_shape(y_pred))?;
        put_f64s(&mut self.y_proba, y_proba);
        put_shape(&mut self.y_proba_shape, y_proba.map(|a| a.shape.as_slice()))?;
        put_f64s(&mut self.x, None);
        put_shape(&mut self.x_shape, None)?;
        put_f64s(&mut self.spectra, None);
        put_shape(&mut self.spectra_shape, None)?;
        match indices {
            Some(a) => {
                for v in &a.values {
                    if v.fract() != 0.0 || *v < f64::from(i32::MIN) || *v > f64::from(i32::MAX) {
                        return Err(format!("sample index {v} is not an int32"));
                    }
                    self.sample_indices.values().append_value(*v as i32);
                }
                self.sample_indices.append(true);
            }
            None => self.sample_indices.append(false),
        }
        put_f64s(&mut self.weights, weights);
        for b in &mut self.metadata {
            b.append_null();
        }
        self.rows += 1;
        Ok(())
    }

    fn finish(mut self, schema: &SchemaRef, part: &Path) -> Result<RecordBatch> {
        let [id, ds, model, fold, partition, metric, task] =
            self.text.each_mut().map(|b| b.finish());
        let [sm, rm] = self.metadata.each_mut().map(|b| b.finish());
        let cols: Vec<ArrayRef> = vec![
            Arc::new(id),
            Arc::new(ds),
            Arc::new(model),
            Arc::new(fold),
            Arc::new(partition),
            Arc::new(metric),
            Arc::new(self.val.finish()),
            Arc::new(task),
            Arc::new(self.y_true.finish()),
            Arc::new(self.y_true_shape.finish()),
            Arc::new(self.y_pred.finish()),
            Arc::new(self.y_pred_shape.finish()),
            Arc::new(self.y_proba.finish()),
            Arc::new(self.y_proba_shape.finish()),
            Arc::new(self.x.finish()),
            Arc::new(self.x_shape.finish()),
            Arc::new(self.spectra.finish()),
            Arc::new(self.spectra_shape.finish()),
            Arc::new(self.sample_indices.finish()),
            Arc::new(self.weights.finish()),
            Arc::new(sm),
            Arc::new(rm),
        ];
        RecordBatch::try_new(schema.clone(), cols).map_err(|e| Error::parquet(part, e.into()))
    }
}

/// Moves each dataset's part file to its arrays file; datasets whose
/// names sanitise to the same file (nirs4all keys rows by id, so one file
/// may hold several datasets) are concatenated into it.
fn merge_parts(parts: Vec<(PathBuf, PathBuf)>) -> Result<()> {
    let mut by_target: HashMap<PathBuf, Vec<PathBuf>> = HashMap::new();
    for (part, target) in parts {
        by_target.entry(target).or_default().push(part);
    }
    for (target, parts) in by_target {
        if let [one] = parts.as_slice() {
            std::fs::rename(one, &target).map_err(|e| Error::io(&target, e))?;
            continue;
        }
        let mut w = arrays_writer(&target)?;
        for p in &parts {
            let f = File::open(p).map_err(|e| Error::io(p, e))?;
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
                .and_then(|b| b.build())
                .map_err(|e| Error::parquet(p, e))?;
            for batch in reader {
                let batch = batch.map_err(|e| Error::parquet(p, e.into()))?;
                w.write(&batch).map_err(|e| Error::parquet(&target, e))?;
            }
            std::fs::remove_file(p).map_err(|e| Error::io(p, e))?;
        }
        close_arrays(w, &target)?;
    }
    Ok(())
}

/// Writes an arrays file's footer and seals it for every reader
/// (`footer::seal`: column orders older readers know).
fn close_arrays(w: ArrowWriter<File>, path: &Path) -> Result<()> {
    let file = w.into_inner().map_err(|e| Error::parquet(path, e))?;
    crate::footer::seal(&file, path)
}
