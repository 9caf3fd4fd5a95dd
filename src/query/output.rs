//! Turning query answers into what people and programs read: JSON records
//! in the dashboard's data shape (`best_params` and `scores` parsed from
//! their JSON text, NaN and infinities as null), CSV, and Arrow batches
//! (pages, top-k and groups, for the Python package and library users).

use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, Float64Array, RecordBatch, RecordBatchOptions, StringArray, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema};
use serde_json::{Map, Value};

use super::model::{Group, GroupAnswer, GroupKey, TopAnswer};
use crate::summary::topk::TopEntry;

use crate::error::{Error, Result};
use crate::summary::json::sanitize_non_finite;

/// Columns holding JSON text that records carry parsed.
pub const JSON_COLUMNS: [&str; 2] = ["best_params", "scores"];

/// JSON text parsed (bare NaN read as null); the text itself if it is not JSON.
pub fn parse_json_text(s: &str) -> Value {
    serde_json::from_str::<Value>(&sanitize_non_finite(s))
        .unwrap_or_else(|_| Value::String(s.to_string()))
}

/// Records as CSV with a header of `columns`; JSON values are written as
/// compact JSON text, null as an empty cell.
///
/// # Errors
/// [`Error::Csv`] on a write failure (of the output or the writer).
pub fn to_csv(
    records: &[Map<String, Value>],
    columns: &[String],
    out: impl std::io::Write,
) -> Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(columns)?;
    for r in records {
        let cells: Vec<String> = columns
            .iter()
            .map(|c| match r.get(c) {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
            })
            .collect();
        w.write_record(&cells)?;
    }
    w.flush().map_err(|e| Error::Csv(e.into()))
}

/// A page's rows as one batch of `columns`, in order: `dataset` from the
/// file, the others with the contract's types (JSON columns as their
/// text, as the file holds them).
///
/// # Errors
/// Arrow errors (none expected: the columns were checked by the query).
pub(crate) fn page_batch(
    rows: &[(String, crate::schema::Prediction)],
    columns: &[String],
) -> Result<RecordBatch> {
    let mut all = crate::schema::columns::MetaColumns::default();
    for (_, p) in rows {
        all.push(p);
    }
    let all = all.take_batch()?;
    let mut fields = Vec::with_capacity(columns.len());
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len());
    for c in columns {
        if c == "dataset" {
            fields.push(Field::new("dataset", DataType::Utf8, false));
            arrays.push(Arc::new(StringArray::from_iter_values(
                rows.iter().map(|(d, _)| d.as_str()),
            )));
        } else {
            let (i, f) = all
                .schema()
                .column_with_name(c)
                .map(|(i, f)| (i, f.clone()))
                .ok_or_else(|| Error::InvalidQuery(format!("unknown column {c:?}")))?;
            fields.push(f);
            arrays.push(all.column(i).clone());
        }
    }
    let options = RecordBatchOptions::new().with_row_count(Some(rows.len()));
    Ok(RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        arrays,
        &options,
    )?)
}

impl TopAnswer {
    /// The records as one batch: `dataset`, `id`, `model_name`,
    /// `config_name`, `fold_id`, `partition`, `val_score` (the ranked
    /// score, as in the JSON answer), `test_score`, `train_score` (the
    /// instance's scores beside it, as nirs4all shows them) and `row` (the
    /// row in its file), best first.
    ///
    /// # Errors
    /// Arrow errors (none expected).
    pub fn to_batch(&self) -> Result<RecordBatch> {
        let r = &self.records;
        let text = |f: fn(&TopEntry) -> Option<&str>| -> ArrayRef {
            Arc::new(r.iter().map(f).collect::<StringArray>())
        };
        let num = |f: fn(&TopEntry) -> Option<f64>| -> ArrayRef {
            Arc::new(r.iter().map(f).collect::<Float64Array>())
        };
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("dataset", text(|e| e.dataset.as_deref())),
            ("id", text(|e| e.id.as_deref())),
            ("model_name", text(|e| e.model_name.as_deref())),
            ("config_name", text(|e| e.config_name.as_deref())),
            ("fold_id", text(|e| e.fold_id.as_deref())),
            ("partition", text(|e| e.partition.as_deref())),
            ("val_score", num(|e| e.val_score)),
            ("test_score", num(|e| e.test_score)),
            ("train_score", num(|e| e.train_score)),
            (
                "row",
                Arc::new(r.iter().map(|e| e.row).collect::<UInt64Array>()),
            ),
        ];
        batch_of(columns, r.len())
    }
}

impl GroupAnswer {
    /// The groups as one batch: the key column (named as `key` groups it:
    /// `model_name`, `config_name`, `dataset`, `partition`, `fold_id`,
    /// `metric`), then `count`, `mean`, `min`, `max` and `best`, in key
    /// order (null last).
    ///
    /// # Errors
    /// Arrow errors (none expected).
    pub fn to_batch(&self, key: GroupKey) -> Result<RecordBatch> {
        let g = &self.groups;
        let num = |f: fn(&Group) -> Option<f64>| -> ArrayRef {
            Arc::new(g.iter().map(f).collect::<Float64Array>())
        };
        let columns: Vec<(&str, ArrayRef)> = vec![
            (
                key.column(),
                Arc::new(g.iter().map(|x| x.key.as_deref()).collect::<StringArray>()),
            ),
            (
                "count",
                Arc::new(g.iter().map(|x| x.count).collect::<UInt64Array>()),
            ),
            ("mean", num(|x| x.mean)),
            ("min", num(|x| x.min)),
            ("max", num(|x| x.max)),
            ("best", num(|x| x.best)),
        ];
        batch_of(columns, g.len())
    }
}

/// A batch of named, nullable columns of `rows` rows.
fn batch_of(columns: Vec<(&str, ArrayRef)>, rows: usize) -> Result<RecordBatch> {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
        .collect();
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    Ok(RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        columns.into_iter().map(|(_, a)| a).collect(),
        &options,
    )?)
}
