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

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection};
use serde::Serialize;
use xxhash_rust::xxh3::xxh3_128;

use crate::error::{Error, Result};
use crate::files::dataset_paths;
use crate::metric::Directions;
use crate::rows::{append_prediction_refs, for_each_batch};
use crate::schema::{validate_dataset_name, META_SUFFIX};
use crate::schema::{PredictionRef, COLUMNS};
use arrow_array::RecordBatch;

use super::{arrays, is_store, SCHEMA_VERSION, STORE_FILE};

mod arrays_out;
mod btree;
mod derive;

use crate::store::rows::refit_context_of;
use arrays_out::*;
use btree::{PredictionsWriter, Value};
use derive::{
    dedupe, observe_chain, observe_pipeline, ChainAgg, ChainFacts, ChainRow, PipelineAgg,
};

/// nirs4all 1.4.10's tables, indexes and view, verbatim.
pub const SCHEMA_SQL: &str = include_str!("../schema.sql");

/// How `runs`, `pipelines` and `chains` are derived from the rows (each
/// report carries these lines).
pub const DERIVATIONS: [&str; 4] = [
    "runs: one run for the source workspace (run_id: hash of its path, name: its folder name, status completed, datasets: the exported names)",
    "pipelines: one per pipeline_uid and dataset (name: config_name; best_val: the best val_score of its val rows in the metric's direction, best_test: that row's test_score; a pipeline_uid found in two datasets is stored as <uid>@<dataset> for the later one)",
    "chains: one per pipeline, step_idx, model_name and branch_id (chain_id: a hash of those; steps: [] as .meta.parquet has no steps; model_step_idx: step_idx, -1 when null; model_class and preprocessings: the first non-empty of its rows)",
    "chains' scores as nirs4all 1.4.10's bulk_update_chain_summaries computes them: cv_*_score the mean over the cross-validation rows (no refit context, folds other than avg, w_avg and *_agg), cv_fold_count their distinct folds, cv_scores their per-partition metric means; final_* from the refit rows (refit_context, kept in the metadata column on import), final_agg_* from the final_agg test row",
];

/// Columns of a `.meta.parquet` the store has no place for, left unread
/// (`model_path` alone is a tenth of the bench files' decoded bytes).
const UNUSED_COLUMNS: [&str; 3] = ["model_path", "model_artifact_id", "trace_id"];

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
/// its arrays file; the rows written as SQLite pages, each index sorted
/// once; three threads (one reads and derives, one makes the pages, one
/// writes them). Memory: up to three datasets' Arrow batches (rows are
/// viewed in them, no string copied a row; no arrays) plus one chunk's
/// arrays, 24 MiB of pages in flight, and the indexed columns of every
/// row (about 100 bytes a prediction).
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

/// The columns of nirs4all 1.4.10's `predictions` table, in order: what
/// each exported row gives, checked against the schema SQLite made.
const PREDICTION_COLUMNS: [&str; 36] = [
    "prediction_id",
    "pipeline_id",
    "chain_id",
    "dataset_name",
    "model_name",
    "model_class",
    "fold_id",
    "partition",
    "val_score",
    "test_score",
    "train_score",
    "metric",
    "task_type",
    "n_samples",
    "n_features",
    "scores",
    "best_params",
    "preprocessings",
    "branch_id",
    "branch_name",
    "exclusion_count",
    "exclusion_rate",
    "refit_context",
    "prediction_scope",
    "prediction_level",
    "evaluation_scope",
    "reduction_role",
    "reduction_id",
    "physical_sample_id",
    "origin_sample_id",
    "derived_unit_id",
    "unit_level",
    "unit_id",
    "row_id",
    "sample_influence_weight",
    "created_at",
];

/// Everything of the export inside the temporary folder `dir`: SQLite
/// creates the database (nirs4all's schema), the `predictions` rows and
/// their indexes are written as pages ([`btree`]), then SQLite inserts
/// `runs`, `pipelines` and `chains` and turns the file to WAL mode.
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
    // The database is private to this folder until the rename: no journal
    // file and no sync are needed for atomicity, the rename gives it.
    let conn = Connection::open(&db).map_err(sql)?;
    conn.execute_batch("PRAGMA journal_mode = MEMORY; PRAGMA synchronous = OFF;")
        .map_err(sql)?;
    conn.execute_batch(SCHEMA_SQL).map_err(sql)?;
    let created_at: String = conn
        .query_row("SELECT current_timestamp", [], |r| r.get(0))
        .map_err(sql)?;
    let mut writer = PredictionsWriter::open(&db, &conn, &PREDICTION_COLUMNS)?;
    conn.close().map_err(|(_, e)| sql(e))?;
    let mut state = Shared::default();
    let mut parts: Vec<(PathBuf, PathBuf)> = Vec::new();
    let mut derived = Vec::new();
    let part_of = |ds: &str| {
        dir.join("arrays")
            .join(format!(".{}.part", hex128(ds.as_bytes())))
    };
    // Two stages on two threads: one reads each dataset, derives what it
    // can alone and writes its arrays ([`read_dataset`]), a dataset ahead
    // of this one, which settles what depends on the earlier datasets
    // ([`settle`]: ids and pipeline owners, cheap) and writes the rows.
    // At most three datasets' batches are held: one read, one waiting, one
    // written.
    //
    // A dataset written goes back to the reading thread to be dropped:
    // its buffers were allocated there, and freeing on the thread that
    // allocated measured 4 times cheaper than on the writing one (glibc's
    // arenas; measured when rows were one string a cell).
    std::thread::scope(|s| -> Result<()> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let (done_tx, done_rx) = std::sync::mpsc::channel::<Read>();
        s.spawn(move || {
            for ds in datasets {
                let read = read_dataset(source, ds, &part_of(ds), opts);
                if tx.send(read).is_err() {
                    return; // the export failed: stop reading
                }
                while let Ok(written) = done_rx.try_recv() {
                    drop(written);
                }
            }
            drop(tx);
            while let Ok(written) = done_rx.recv() {
                drop(written);
            }
        });
        for ds in datasets {
            let target = arrays::path(dir, ds);
            let part = part_of(ds);
            let read = rx.recv().expect("one result a dataset");
            let p = match read.and_then(|r| settle(r, ds, &target, &state)) {
                Ok(p) => p,
                Err(e) => {
                    let _ = std::fs::remove_file(&part);
                    if !opts.skip_bad {
                        return Err(e);
                    }
                    report.skipped.push((ds.clone(), e));
                    continue;
                }
            };
            state.ids.extend(p.hashes.iter().copied());
            for pid in p.pipes.keys() {
                state
                    .pipelines
                    .entry(pid.clone())
                    .or_insert_with(|| ds.to_string());
            }
            // A failure here is the output's, not the source's: it fails
            // the export whatever `skip_bad` says.
            push_rows(&mut writer, ds, &created_at, &p)?;
            if p.export.with_arrays > 0 {
                parts.push((part, target));
            } else {
                let _ = std::fs::remove_file(&part);
            }
            report.datasets.push(p.export);
            derived.push((ds.clone(), p.pipes, p.chains));
            let _ = done_tx.send(p.read);
        }
        drop(done_tx);
        Ok(())
    })?;
    writer.finish()?;
    let mut conn = Connection::open(&db).map_err(sql)?;
    conn.execute_batch("PRAGMA journal_mode = MEMORY; PRAGMA synchronous = OFF;")
        .map_err(sql)?;
    let tx = conn.transaction().map_err(sql)?;
    let names: Vec<&str> = report.datasets.iter().map(|d| d.dataset.as_str()).collect();
    tx.execute(
        "INSERT INTO runs (run_id, name, config, datasets, status, completed_at, summary)
         VALUES (?1, ?2, ?3, ?4, 'completed', current_timestamp, ?5)",
        params![
            report.run_id,
            run_name,
            serde_json::json!({ "exported_from": source }).to_string(),
            serde_json::to_string(&names).expect("names serialise"),
            serde_json::json!({ "exported_by": format!("n4a {}", env!("CARGO_PKG_VERSION")) })
                .to_string(),
        ],
    )
    .map_err(sql)?;
    let mut chains = 0;
    for (ds, pipes, ds_chains) in &derived {
        for (pid, p) in pipes {
            tx.prepare_cached(
                "INSERT INTO pipelines (pipeline_id, run_id, name, dataset_name, status,
                     completed_at, best_val, best_test, metric)
                 VALUES (?1, ?2, ?3, ?4, 'completed', current_timestamp, ?5, ?6, ?7)",
            )
            .map_err(sql)?
            .execute(params![
                pid,
                report.run_id,
                p.name,
                ds,
                p.best.map(|b| b.0),
                p.best.and_then(|b| b.1),
                p.metric
            ])
            .map_err(sql)?;
        }
        for (cid, c) in ds_chains {
            insert_chain(&tx, &db, cid, c, ds)?;
        }
        chains += ds_chains.len();
    }
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
    report.chains = chains as u64;
    merge_parts(parts)?;
    Ok(())
}

/// What the datasets of one export share: ids must be unique across the
/// store (kept as XXH3-128 hashes: 16 bytes an id), and a pipeline belongs
/// to one dataset.
#[derive(Debug, Default)]
struct Shared {
    ids: foldhash::HashSet<u128>,
    /// pipeline_id → its dataset.
    pipelines: HashMap<String, String>,
}

/// One dataset read, derived as far as it can be alone and its arrays
/// written: [`settle`] gives it its place among the earlier datasets.
struct Read {
    /// The meta file's batches, as read: the rows are viewed in them
    /// ([`Read::rows`]), never copied out a string at a time.
    batches: Vec<RecordBatch>,
    /// The rows kept (indices into the batches' rows), when some repeated
    /// ones were left out.
    kept: Option<Vec<u32>>,
    /// Each kept row's prediction id when it has none of its own (the
    /// computed one), and each id's XXH3-128.
    computed_ids: Vec<Option<String>>,
    hashes: Vec<u128>,
    /// Each row's chain, an index into `chains`.
    row_chain: Vec<u32>,
    /// The chains, `pipeline_id` still the row's `pipeline_uid`.
    chains: Vec<ChainRow>,
    /// The pipelines by `pipeline_uid`.
    pipes: HashMap<String, PipelineAgg>,
    notes: Vec<String>,
    with_arrays: u64,
    meta: PathBuf,
}

impl Read {
    /// The rows kept, borrowed from the batches. Cost: one pass a column
    /// of every batch, one `Vec` of rows (no string copied).
    fn rows(&self) -> Result<Vec<PredictionRef<'_>>> {
        rows_of(&self.batches, self.kept.as_deref(), &self.meta)
    }

    /// Row `i`'s prediction id (of [`Read::rows`]).
    fn id<'a>(&'a self, i: usize, r: &PredictionRef<'a>) -> &'a str {
        match &self.computed_ids[i] {
            Some(id) => id,
            None => r.id.unwrap_or_default(),
        }
    }
}

/// The rows of `batches` (those at `kept` when given), borrowed.
fn rows_of<'a>(
    batches: &'a [RecordBatch],
    kept: Option<&[u32]>,
    meta: &Path,
) -> Result<Vec<PredictionRef<'a>>> {
    let ctx = meta.display().to_string();
    let mut all = Vec::with_capacity(batches.iter().map(RecordBatch::num_rows).sum());
    for b in batches {
        append_prediction_refs(b, &ctx, false, &mut all)?;
    }
    if let Some(k) = kept {
        // In place: kept indices ascend, so each row moves down or stays.
        for (to, &from) in k.iter().enumerate() {
            all[to] = all[from as usize];
        }
        all.truncate(k.len());
    }
    Ok(all)
}

/// A dataset ready to be written.
struct Prepared {
    export: DatasetExport,
    read: Read,
    hashes: Vec<u128>,
    pipes: HashMap<String, PipelineAgg>,
    chains: Vec<(String, ChainRow)>,
}

/// Reads dataset `ds`, leaves out repeated rows, derives its pipelines
/// and chains (keyed by the rows' own `pipeline_uid`) and writes its
/// arrays to `part`. Depends on no other dataset.
fn read_dataset(source: &Path, ds: &str, part: &Path, opts: &ExportOptions) -> Result<Read> {
    validate_dataset_name(ds)?;
    let paths = dataset_paths(source, ds);
    let mut batches = Vec::new();
    let columns: Vec<&str> = COLUMNS
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| !UNUSED_COLUMNS.contains(name))
        .collect();
    for_each_batch(&paths.meta, Some(&columns), 8192, |b| {
        batches.push(b);
        Ok(())
    })?;
    let mut notes = Vec::new();
    let (rows, kept) = dedupe(
        rows_of(&batches, None, &paths.meta)?,
        &paths.meta,
        &mut notes,
    );
    let mut pipes: HashMap<String, PipelineAgg> = HashMap::new();
    let mut chain_of: foldhash::HashMap<u128, u32> = foldhash::HashMap::default();
    let mut chains: Vec<ChainAgg> = Vec::new();
    let mut nulls: HashMap<&'static str, u64> = HashMap::new();
    let mut computed_ids = Vec::with_capacity(rows.len());
    let mut ids = Vec::with_capacity(rows.len());
    for r in &rows {
        computed_ids.push(r.id.is_none().then(|| r.computed_id()));
    }
    let mut hashes = Vec::with_capacity(rows.len());
    let mut row_chain = Vec::with_capacity(rows.len());
    for (r, own) in rows.iter().zip(&computed_ids) {
        let id = own.as_deref().or(r.id).unwrap_or_default();
        hashes.push(xxh3_128(id.as_bytes()));
        let computed;
        let uid = match r.pipeline_uid {
            Some(u) => u,
            None => {
                *nulls.entry("pipeline_uid").or_default() += 1;
                computed = format!(
                    "n4a-{}",
                    hex128(format!("{ds}\0{}", r.config_name.unwrap_or("")).as_bytes())
                );
                &computed
            }
        };
        let step = r.step_idx.unwrap_or(-1);
        let model_name = r.model_name.unwrap_or("");
        match pipes.get_mut(uid) {
            Some(p) => observe_pipeline(p, r, opts),
            None => observe_pipeline(pipes.entry(uid.to_string()).or_default(), r, opts),
        }
        // Not the row's model class: nirs4all's dag-ml engine fills it on a
        // chain's first row only (the chain takes the first non-empty one).
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(uid.as_bytes());
        h.update(&[0]);
        h.update(&step.to_le_bytes());
        h.update(model_name.as_bytes());
        h.update(&[0]);
        h.update(&r.branch_id.map_or([0xff; 9], |b| {
            let mut k = [0; 9];
            k[1..].copy_from_slice(&b.to_le_bytes());
            k
        }));
        let c = *chain_of.entry(h.digest128()).or_insert_with(|| {
            chains.push(ChainAgg {
                facts: ChainFacts {
                    pipeline_id: uid.to_string(),
                    step_idx: step,
                    model_name: model_name.to_string(),
                    branch_id: r.branch_id,
                    ..ChainFacts::default()
                },
                ..ChainAgg::default()
            });
            (chains.len() - 1) as u32
        });
        observe_chain(&mut chains[c as usize], r, id);
        row_chain.push(c);
        for (v, col) in [
            (r.fold_id, "fold_id"),
            (r.partition, "partition"),
            (r.metric, "metric"),
            (r.task_type, "task_type"),
        ] {
            if v.is_none() {
                *nulls.entry(col).or_default() += 1;
            }
        }
        ids.push(id);
    }
    let mut nulls: Vec<_> = nulls.into_iter().collect();
    nulls.sort_unstable();
    for (col, n) in nulls {
        notes.push(format!(
            "{n} row(s) with a null {col}: written as '' (the store requires a value)"
        ));
    }
    let with_arrays = write_arrays(&paths.arrays, part, ds, &rows, &ids, &mut notes)?;
    drop((rows, ids));
    Ok(Read {
        batches,
        kept,
        computed_ids,
        hashes,
        row_chain,
        chains: chains.into_iter().map(ChainAgg::into_row).collect(),
        pipes,
        notes,
        with_arrays,
        meta: paths.meta,
    })
}

/// Gives a dataset read its place after the earlier ones: its ids must be
/// new to the store, and a `pipeline_uid` an earlier dataset owns becomes
/// `<uid>@<dataset>` (which names its chains).
fn settle(mut read: Read, ds: &str, target: &Path, state: &Shared) -> Result<Prepared> {
    if let Some(i) = read.hashes.iter().position(|h| state.ids.contains(h)) {
        let rows = read.rows()?;
        return Err(Error::Corrupt {
            path: read.meta.clone(),
            reason: format!(
                "prediction id {} is also in another dataset: a store holds each id once",
                read.id(i, &rows[i])
            ),
        });
    }
    let mut renamed: Vec<String> = Vec::new();
    let final_id = |uid: &str| match state.pipelines.get(uid) {
        Some(owner) if owner != ds => format!("{uid}@{ds}"),
        _ => uid.to_string(),
    };
    let mut pipes = HashMap::with_capacity(read.pipes.len());
    let mut notes = std::mem::take(&mut read.notes);
    for (uid, p) in std::mem::take(&mut read.pipes) {
        let pid = final_id(&uid);
        if pid != uid {
            renamed.push(uid.clone());
        }
        if p.unknown_metric {
            notes.push(format!(
                "pipeline {pid}: metric {:?} has no known direction: best_val left null (give --direction)",
                p.metric.as_deref().unwrap_or("")
            ));
        }
        pipes.insert(pid, p);
    }
    if !renamed.is_empty() {
        renamed.sort_unstable();
        notes.push(format!(
            "pipeline_uid(s) {} also belong to another dataset: stored here as <uid>@{ds}",
            renamed.join(", ")
        ));
    }
    let mut chains = Vec::with_capacity(read.chains.len());
    for c in std::mem::take(&mut read.chains) {
        let mut c = c;
        c.facts.pipeline_id = final_id(&c.facts.pipeline_id);
        let cid = hex128(
            format!(
                "{}\0{}\0{}\0{:?}",
                c.facts.pipeline_id, c.facts.step_idx, c.facts.model_name, c.facts.branch_id
            )
            .as_bytes(),
        );
        chains.push((cid, c));
    }
    let arrays_file = (read.with_arrays > 0).then(|| {
        let name = target.file_name().unwrap_or_default().to_string_lossy();
        format!("arrays/{name}")
    });
    Ok(Prepared {
        export: DatasetExport {
            dataset: ds.to_string(),
            predictions: read.hashes.len() as u64,
            with_arrays: read.with_arrays,
            arrays_file,
            notes,
        },
        hashes: std::mem::take(&mut read.hashes),
        read,
        pipes,
        chains,
    })
}

/// Writes one dataset's rows, in order, as [`PREDICTION_COLUMNS`].
fn push_rows(
    writer: &mut PredictionsWriter,
    ds: &str,
    created_at: &str,
    p: &Prepared,
) -> Result<()> {
    fn text(v: Option<&str>) -> Value<'_> {
        Value::Text(v.unwrap_or(""))
    }
    let read = &p.read;
    let rows = read.rows()?;
    for (i, (r, &c)) in rows.iter().zip(&read.row_chain).enumerate() {
        let (cid, chain) = &p.chains[c as usize];
        let id = read.id(i, r);
        let refit = refit_context_of(r.metadata);
        let mut values = [Value::Null; PREDICTION_COLUMNS.len()];
        values[..23].copy_from_slice(&[
            Value::Text(id),
            Value::Text(&chain.facts.pipeline_id),
            Value::Text(cid),
            Value::Text(ds),
            text(r.model_name),
            text(r.model_classname),
            text(r.fold_id),
            text(r.partition),
            Value::real(r.val_score),
            Value::real(r.test_score),
            Value::real(r.train_score),
            text(r.metric),
            text(r.task_type),
            Value::int(r.n_samples),
            Value::int(r.n_features),
            Value::text(r.scores),
            Value::text(r.best_params),
            text(r.preprocessings),
            Value::int(r.branch_id),
            Value::text(r.branch_name),
            Value::Int(r.exclusion_count.unwrap_or(0)),
            Value::real(Some(r.exclusion_rate.unwrap_or(0.0))),
            Value::text(refit.as_deref()),
        ]);
        values[35] = Value::Text(created_at);
        writer.push(&values)?;
    }
    Ok(())
}

fn insert_chain(
    tx: &rusqlite::Transaction<'_>,
    db: &Path,
    cid: &str,
    c: &ChainRow,
    ds: &str,
) -> Result<()> {
    let (final_test, final_train, final_scores) = &c.finals;
    let (agg_test, agg_train, agg_scores) = &c.final_agg;
    let f = &c.facts;
    tx.prepare_cached(
        "INSERT INTO chains (chain_id, pipeline_id, steps, model_step_idx, model_class,
             preprocessings, fold_strategy, model_name, metric, task_type, best_params,
             dataset_name, cv_val_score, cv_test_score, cv_train_score, cv_fold_count, cv_scores,
             final_test_score, final_train_score, final_scores,
             final_agg_test_score, final_agg_train_score, final_agg_scores)
         VALUES (?1, ?2, '[]', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
             ?17, ?18, ?19, ?20, ?21, ?22)",
    )
    .map_err(|e| Error::sqlite(db, e))?
    .execute(params![
        cid,
        f.pipeline_id,
        f.step_idx,
        f.model_class,
        f.preprocessings,
        c.fold_strategy,
        f.model_name,
        f.metric,
        f.task_type,
        f.best_params,
        ds,
        c.cv[0],
        c.cv[1],
        c.cv[2],
        c.cv_fold_count,
        c.cv_scores,
        final_test,
        final_train,
        final_scores,
        agg_test,
        agg_train,
        agg_scores,
    ])
    .map_err(|e| Error::sqlite(db, e))?;
    Ok(())
}
