//! The `predictions` rows of one dataset, joined with `pipelines` (the
//! config name) and `chains` (the model step), as `.meta.parquet` rows.
//! The column-by-column rule is `docs/STORE.md`'s table.

use std::path::Path;

use rusqlite::types::ValueRef;
use rusqlite::Connection;
use xxhash_rust::xxh3::Xxh3;

use crate::error::{Error, Result};
use crate::schema::Prediction;

/// The content of a dataset's rows, hashed (XXH3-128 over every bridged
/// value in the order nirs4all inserted the rows (`rowid`), plus the arrays file's size and
/// modification time once [`Fingerprint::add_file`] adds them): equal
/// fingerprints mean an import would write the same rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint(pub u128);

impl Fingerprint {
    /// The fingerprint as 32 hex digits.
    pub fn hex(&self) -> String {
        format!("{:032x}", self.0)
    }

    /// Mixes in a file's size and modification time (or its absence).
    /// Cost: one `stat`.
    pub fn add_file(self, path: &Path) -> Fingerprint {
        let mut h = Xxh3::new();
        h.update(&self.0.to_le_bytes());
        match std::fs::metadata(path) {
            Ok(m) => {
                h.update(&[1]);
                h.update(&m.len().to_le_bytes());
                let t = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                h.update(&t.to_le_bytes());
            }
            Err(_) => h.update(&[0]),
        }
        Fingerprint(h.digest128())
    }
}

/// The query: `docs/STORE.md`'s mapping, in [`Prediction`]'s field order.
const SQL: &str = "SELECT p.prediction_id, p.dataset_name, pl.name, p.pipeline_id, \
     c.model_step_idx, p.model_name, p.model_class, p.fold_id, p.partition, \
     p.val_score, p.test_score, p.train_score, p.metric, p.task_type, \
     p.n_samples, p.n_features, p.preprocessings, p.best_params, p.scores, \
     p.branch_id, p.branch_name, p.exclusion_count, p.exclusion_rate, p.refit_context \
     FROM predictions p \
     LEFT JOIN pipelines pl ON pl.pipeline_id = p.pipeline_id \
     LEFT JOIN chains c ON c.chain_id = p.chain_id \
     WHERE p.dataset_name = ?1 ORDER BY p.rowid";

/// The column names of [`SQL`], for error messages.
const NAMES: [&str; 24] = [
    "prediction_id",
    "dataset_name",
    "pipelines.name",
    "pipeline_id",
    "chains.model_step_idx",
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
    "preprocessings",
    "best_params",
    "scores",
    "branch_id",
    "branch_name",
    "exclusion_count",
    "exclusion_rate",
    "refit_context",
];

/// Reads `dataset`'s rows (see [`super::Store::predictions`]).
pub(crate) fn read(
    conn: &Connection,
    db: &Path,
    dataset: &str,
) -> Result<(Vec<Prediction>, Fingerprint)> {
    let sql = |e| Error::sqlite(db, e);
    let mut st = conn.prepare_cached(SQL).map_err(sql)?;
    let mut rows = st.query([dataset]).map_err(sql)?;
    let mut out = Vec::new();
    let mut h = Xxh3::new();
    while let Some(r) = rows.next().map_err(sql)? {
        let mut cells = Cells {
            row: r,
            db,
            id: None,
            hash: &mut h,
        };
        let id = cells.text(0)?;
        cells.id = id.clone();
        let p = Prediction {
            id,
            dataset_name: cells.text(1)?,
            config_name: cells.text(2)?,
            pipeline_uid: cells.text(3)?,
            step_idx: cells.int(4)?,
            model_name: cells.text(5)?,
            model_classname: cells.text(6)?,
            fold_id: cells.text(7)?,
            partition: cells.text(8)?,
            val_score: cells.float(9)?,
            test_score: cells.float(10)?,
            train_score: cells.float(11)?,
            metric: cells.text(12)?,
            task_type: cells.text(13)?,
            n_samples: cells.int(14)?,
            n_features: cells.int(15)?,
            preprocessings: cells.text(16)?,
            best_params: cells.text(17)?,
            scores: cells.text(18)?,
            branch_id: cells.int(19)?,
            branch_name: cells.text(20)?,
            exclusion_count: cells.int(21)?,
            exclusion_rate: cells.float(22)?,
            metadata: cells.text(23)?.map(|c| refit_metadata(&c)),
            ..Prediction::default()
        };
        out.push(p);
    }
    Ok((out, Fingerprint(h.digest128())))
}

/// The `metadata` JSON of an imported row with a refit context: the
/// `.meta.parquet` layout has no `refit_context` column, so it is carried
/// inside the JSON column (`{"refit_context": "standalone"}`), where
/// [`refit_context_of`] finds it again on export.
pub(crate) fn refit_metadata(context: &str) -> String {
    serde_json::json!({ REFIT_CONTEXT: context }).to_string()
}

/// The refit context a row's `metadata` JSON carries, if any.
pub(crate) fn refit_context_of(metadata: Option<&str>) -> Option<String> {
    let m = metadata?;
    if !m.contains(REFIT_CONTEXT) {
        return None;
    }
    match serde_json::from_str::<serde_json::Value>(m)
        .ok()?
        .get(REFIT_CONTEXT)?
    {
        serde_json::Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// The key of the refit context in the `metadata` JSON column.
pub(crate) const REFIT_CONTEXT: &str = "refit_context";

/// One row's cells, read leniently as SQLite stores them (a REAL column
/// may hold an integer) and hashed as read.
struct Cells<'a, 'r> {
    row: &'a rusqlite::Row<'r>,
    db: &'a Path,
    id: Option<String>,
    hash: &'a mut Xxh3,
}

impl Cells<'_, '_> {
    fn value(&self, i: usize) -> Result<ValueRef<'_>> {
        self.row.get_ref(i).map_err(|e| Error::sqlite(self.db, e))
    }

    fn wrong(&self, i: usize, found: &str, want: &str) -> Error {
        Error::corrupt(
            self.db,
            format!(
                "prediction {}: column {}: {found} where {want} was expected",
                self.id.as_deref().unwrap_or("?"),
                NAMES[i]
            ),
        )
    }

    fn text(&mut self, i: usize) -> Result<Option<String>> {
        let v = match self.value(i)? {
            ValueRef::Null => None,
            ValueRef::Text(t) => Some(
                std::str::from_utf8(t)
                    .map_err(|_| self.wrong(i, "text that is not UTF-8", "text"))?
                    .to_string(),
            ),
            ValueRef::Integer(n) => Some(n.to_string()),
            ValueRef::Real(x) => Some(x.to_string()),
            ValueRef::Blob(_) => return Err(self.wrong(i, "a blob", "text")),
        };
        match &v {
            None => self.hash.update(&[0]),
            Some(s) => {
                self.hash.update(&[1]);
                self.hash.update(&(s.len() as u64).to_le_bytes());
                self.hash.update(s.as_bytes());
            }
        }
        Ok(v)
    }

    fn int(&mut self, i: usize) -> Result<Option<i64>> {
        let v = match self.value(i)? {
            ValueRef::Null => None,
            ValueRef::Integer(n) => Some(n),
            ValueRef::Real(x) if x.fract() == 0.0 && x.abs() < 9.0e15 => Some(x as i64),
            ValueRef::Real(_) => return Err(self.wrong(i, "a real", "an integer")),
            ValueRef::Text(_) => return Err(self.wrong(i, "text", "an integer")),
            ValueRef::Blob(_) => return Err(self.wrong(i, "a blob", "an integer")),
        };
        match v {
            None => self.hash.update(&[2]),
            Some(n) => {
                self.hash.update(&[3]);
                self.hash.update(&n.to_le_bytes());
            }
        }
        Ok(v)
    }

    fn float(&mut self, i: usize) -> Result<Option<f64>> {
        let v = match self.value(i)? {
            ValueRef::Null => None,
            ValueRef::Real(x) => Some(x),
            ValueRef::Integer(n) => Some(n as f64),
            ValueRef::Text(_) => return Err(self.wrong(i, "text", "a number")),
            ValueRef::Blob(_) => return Err(self.wrong(i, "a blob", "a number")),
        };
        match v {
            None => self.hash.update(&[4]),
            Some(x) => {
                self.hash.update(&[5]);
                self.hash.update(&x.to_bits().to_le_bytes());
            }
        }
        Ok(v)
    }
}
