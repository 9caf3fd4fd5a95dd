//! `import-store`: a store workspace copied into one `.meta.parquet` +
//! `.arrays.parquet` pair per dataset, with n4a's summaries.
//!
//! Each written dataset records its source in the footer key
//! [`SOURCE_KEY`]: the store's database path, the dataset and the
//! fingerprint of its rows and arrays file. A rerun reads every dataset's
//! rows from SQLite (the cheap part), and rewrites only the datasets whose
//! fingerprint changed; datasets gone from the store are removed from the
//! copy, but only files this store's import wrote. Every write goes through
//! [`PredictionWriter`], so each dataset is replaced atomically and a
//! failure leaves its old pair; one bad dataset is reported and the others
//! are imported.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::files::{dataset_paths, DatasetLock};
use crate::schema::{validate_dataset_name, META_SUFFIX};
use crate::writer::{PredictionWriter, WriterOptions};

use super::{arrays, Store};

/// The footer key naming where an imported dataset came from.
pub const SOURCE_KEY: &str = "n4a_store_source";

/// Options of [`import_store`].
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct ImportOptions {
    /// How the copies are written (directions of unknown metrics, top-k...).
    pub writer: WriterOptions,
}

/// What [`import_store`] did with one dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Its pair was (re)written.
    Written,
    /// The copy already held these rows: left as it was.
    Unchanged,
}

/// One dataset of an import.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetImport {
    /// The dataset's name.
    pub dataset: String,
    /// Its predictions in the store.
    pub predictions: u64,
    /// Of those, how many had their arrays in the arrays file (counted
    /// when written).
    pub with_arrays: u64,
    /// Written or unchanged.
    pub outcome: Outcome,
    /// What the user should know (arrays missing, labels left out...).
    pub notes: Vec<String>,
}

/// The result of [`import_store`].
#[derive(Debug)]
pub struct ImportReport {
    /// The store's database file.
    pub store: PathBuf,
    /// The folder written.
    pub out: PathBuf,
    /// The datasets imported or found unchanged, by name.
    pub datasets: Vec<DatasetImport>,
    /// Datasets removed from the copy because the store no longer has them.
    pub removed: Vec<String>,
    /// Datasets that could not be imported, each with its error.
    pub errors: Vec<(String, Error)>,
    /// Notes about the store as a whole (tombstones).
    pub notes: Vec<String>,
}

/// The value under [`SOURCE_KEY`].
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Source {
    store: String,
    dataset: String,
    fingerprint: String,
}

/// Imports the store workspace `store_dir` into `out_dir` (created if
/// needed). Cost: one SQLite pass per dataset; for each changed dataset,
/// two passes over its arrays file and the write. Memory: one dataset's
/// rows (no arrays) plus one batch of arrays and the writer's row group.
///
/// # Errors
/// What [`Store::open`] returns; [`Error::InvalidOption`] when `out_dir` is
/// the store's own folder; [`Error::Io`] when `out_dir` cannot be made.
/// Errors of one dataset are in [`ImportReport::errors`].
pub fn import_store(
    store_dir: &Path,
    out_dir: &Path,
    opts: &ImportOptions,
) -> Result<ImportReport> {
    let store = Store::open(store_dir)?;
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let canon = |p: &Path| p.canonicalize().map_err(|e| Error::io(p, e));
    let out = canon(out_dir)?;
    if out == canon(store_dir)? {
        return Err(Error::InvalidOption(format!(
            "{}: import-store writes beside the store's own files: give another folder",
            out_dir.display()
        )));
    }
    let db = canon(store.db_path())?.display().to_string();
    let mut report = ImportReport {
        store: store.db_path().to_path_buf(),
        out: out_dir.to_path_buf(),
        datasets: Vec::new(),
        removed: Vec::new(),
        errors: Vec::new(),
        notes: Vec::new(),
    };
    let tombs = match arrays::tombstones(store.dir()) {
        Ok(t) => t,
        Err(why) => {
            report.notes.push(format!(
                "tombstones not read ({why}); they do not change what is read"
            ));
            Default::default()
        }
    };
    let datasets = store.datasets()?;
    for d in &datasets {
        match import_one(&store, &db, &d.name, out_dir, opts) {
            Ok(done) => report.datasets.push(done),
            Err(e) => report.errors.push((d.name.clone(), e)),
        }
    }
    if !tombs.is_empty() {
        report.notes.push(format!(
            "{} tombstoned prediction(s) pending nirs4all's compaction: their stale arrays rows are skipped",
            tombs.len()
        ));
    }
    let live: std::collections::HashSet<&str> = datasets.iter().map(|d| d.name.as_str()).collect();
    remove_gone(out_dir, &db, &live, &mut report);
    Ok(report)
}

/// Imports one dataset, or finds it unchanged.
fn import_one(
    store: &Store,
    db: &str,
    dataset: &str,
    out: &Path,
    opts: &ImportOptions,
) -> Result<DatasetImport> {
    validate_dataset_name(dataset)?;
    let (rows, fp) = store.predictions(dataset)?;
    let arrays_file = store.arrays_path(dataset);
    let source = Source {
        store: db.to_string(),
        dataset: dataset.to_string(),
        fingerprint: fp.add_file(&arrays_file).hex(),
    };
    let mut done = DatasetImport {
        dataset: dataset.to_string(),
        predictions: rows.len() as u64,
        with_arrays: 0,
        outcome: Outcome::Unchanged,
        notes: Vec::new(),
    };
    let meta = dataset_paths(out, dataset).meta;
    if recorded_source(&meta).is_some_and(|s| s == source) {
        return Ok(done);
    }
    let wopts = opts.writer.clone().with_key_value(
        SOURCE_KEY,
        serde_json::to_string(&source).expect("source serialises"),
    );
    let mut w = PredictionWriter::create(out, dataset, wopts)?;
    let mut rows: Vec<Option<crate::schema::Prediction>> = rows.into_iter().map(Some).collect();
    if arrays_file.is_file() {
        let index: HashMap<String, usize> = rows
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some((p.as_ref()?.id.clone()?, i)))
            .collect();
        let pass = arrays::for_each_live(&arrays_file, &index, &mut |i, a| {
            let mut p = rows[i].take().expect("each live id is taken once");
            p.arrays = Some(a);
            w.write_owned(p)
        })?;
        done.with_arrays = pass.taken;
        if pass.string_labels > 0 {
            done.notes.push(format!(
                "{} target array(s) of string class labels left out (.meta.parquet arrays are float64)",
                pass.string_labels
            ));
        }
    } else if !rows.is_empty() {
        done.notes.push(format!(
            "{} is missing: {} prediction(s) imported without arrays",
            arrays_file.display(),
            rows.len()
        ));
    }
    let without = rows.iter().flatten().count() as u64;
    if without > 0 && arrays_file.is_file() {
        done.notes.push(format!(
            "{without} prediction(s) have no row in {}: imported without arrays",
            arrays_file.display()
        ));
    }
    for p in rows.into_iter().flatten() {
        w.write_owned(p)?;
    }
    w.finish()?;
    done.outcome = Outcome::Written;
    Ok(done)
}

/// The source recorded in an imported file's footer, if it has one.
fn recorded_source(meta: &Path) -> Option<Source> {
    let (_, m) = crate::footer::meta::open_metadata(meta).ok()?;
    serde_json::from_str(crate::footer::meta::key_value(&m, SOURCE_KEY)?).ok()
}

/// Removes the datasets this store's import wrote into `out` that the
/// store no longer has (under each dataset's lock).
fn remove_gone(
    out: &Path,
    db: &str,
    live: &std::collections::HashSet<&str>,
    report: &mut ImportReport,
) {
    let Ok(entries) = std::fs::read_dir(out) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(dataset) = name.strip_suffix(META_SUFFIX) else {
            continue;
        };
        if live.contains(dataset) || validate_dataset_name(dataset).is_err() {
            continue;
        }
        let Some(src) = recorded_source(&e.path()) else {
            continue;
        };
        if src.store != db || src.dataset != dataset {
            continue;
        }
        let removed = DatasetLock::acquire(out, dataset).and_then(|_lock| {
            let paths = dataset_paths(out, dataset);
            std::fs::remove_file(&paths.meta).map_err(|e| Error::io(&paths.meta, e))?;
            match std::fs::remove_file(&paths.arrays) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(Error::io(&paths.arrays, e))
                }
                _ => Ok(()),
            }
        });
        match removed {
            Ok(()) => report.removed.push(dataset.to_string()),
            Err(e) => report.errors.push((dataset.to_string(), e)),
        }
    }
    report.removed.sort();
}
