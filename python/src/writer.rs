//! `n4a.Writer`'s Rust side: one [`PredictionWriter`] fed Arrow streams
//! (a pyarrow table or batch, a polars or pandas frame turned into one by
//! the package), batch by batch with the GIL released.
//!
//! The writer holds the dataset's lock from open to close, as the Rust
//! writer does; nothing is visible until `close`, which replaces both
//! files atomically. A batch that fails (a bad row, an unknown metric, a
//! column of the wrong type) aborts the whole writer: the temporary files
//! are removed and the old pair stays as it was, so a half-written batch
//! can never be committed.

use std::sync::{Arc, Mutex};

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch, RecordBatchReader};
use arrow_pyarrow::PyArrowType;
use arrow_schema::{DataType, Field, Schema};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use n4a::schema::{ArrayData, Kind, Prediction, PredictionArrays, COLUMNS};
use n4a::writer::{PredictionWriter, WriterOptions};
use n4a::Error;

use crate::convert::json_to_py;
use crate::errors::OrRaise;

/// The array columns a table may carry beside the contract's (stored in
/// the arrays file, their `*_id` columns filled by the writer): lists of
/// numbers, `y_proba` also a list of lists (one row per sample).
const ARRAY_COLUMNS: [&str; 5] = ["y_true", "y_pred", "y_proba", "sample_indices", "weights"];

/// What [`RawWriter::write`] was given, as the error messages name it.
const CONTEXT: &str = "the table given to Writer.write";

/// A dataset writer (wrapped by `n4a.Writer`).
#[pyclass(frozen, module = "n4a._n4a")]
pub(crate) struct RawWriter {
    /// `None` once closed or aborted.
    inner: Mutex<Option<PredictionWriter>>,
    dataset: String,
}

#[pymethods]
impl RawWriter {
    /// Opens `dataset` in `workspace` for appending (`append=True`: its
    /// rows are kept) or replacing. Blocks, with the GIL released, while
    /// another writer holds the dataset's lock.
    #[new]
    #[pyo3(signature = (workspace, dataset, *, append = true, directions = None, row_group_rows = None))]
    fn new(
        py: Python<'_>,
        workspace: std::path::PathBuf,
        dataset: String,
        append: bool,
        directions: Option<&Bound<'_, PyDict>>,
        row_group_rows: Option<usize>,
    ) -> PyResult<Self> {
        let mut opts = WriterOptions::default();
        opts.summary.directions = crate::workspace::parse_directions(directions)?;
        if let Some(n) = row_group_rows {
            opts = opts.with_row_group_rows(n);
        }
        let w = py
            .detach(|| {
                if append {
                    PredictionWriter::append(&workspace, &dataset, opts)
                } else {
                    PredictionWriter::create(&workspace, &dataset, opts)
                }
            })
            .or_raise()?;
        Ok(RawWriter {
            inner: Mutex::new(Some(w)),
            dataset,
        })
    }

    /// The dataset written.
    #[getter]
    fn dataset(&self) -> String {
        self.dataset.clone()
    }

    /// Rows in the dataset so far (old rows included when appending).
    #[getter]
    fn num_rows(&self) -> PyResult<u64> {
        self.with(|w| Ok(w.num_rows()))
    }

    /// Writes every batch of `stream` and returns the rows written. On
    /// any error the writer is aborted (see the module docs) and the
    /// exception raised.
    fn write(
        &self,
        py: Python<'_>,
        stream: PyArrowType<arrow_array::ffi_stream::RecordBatchStreamReader>,
    ) -> PyResult<u64> {
        let reader = stream.0;
        let mut slot = self.lock();
        let Some(w) = slot.as_mut() else {
            return Err(closed()).or_raise();
        };
        let result = py.detach(|| -> n4a::Result<u64> {
            check_names(reader.schema().as_ref())?;
            let mut n = 0u64;
            for batch in reader {
                let batch = batch?;
                n += batch.num_rows() as u64;
                write_batch(w, &batch)?;
            }
            Ok(n)
        });
        if result.is_err() {
            // Dropping the writer removes its temporary files and frees
            // the lock: the dataset keeps its old pair.
            *slot = None;
        }
        result.or_raise()
    }

    /// Seals the files, replaces the old pair atomically and returns the
    /// dataset's summary (the footer's `n4a_summary`) as a dict.
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let w = self.lock().take().ok_or_else(closed).or_raise()?;
        let summary = py.detach(|| w.finish()).or_raise()?;
        json_to_py(py, &summary.to_json())
    }

    /// Drops what was written: the old pair stays, the lock is freed. A
    /// no-op once closed.
    fn abort(&self, py: Python<'_>) {
        let w = self.lock().take();
        py.detach(|| drop(w));
    }

    /// True until `close` or `abort` (or a failed `write`).
    #[getter]
    fn is_open(&self) -> bool {
        self.lock().is_some()
    }
}

impl RawWriter {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<PredictionWriter>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn with<T>(&self, f: impl FnOnce(&PredictionWriter) -> n4a::Result<T>) -> PyResult<T> {
        match self.lock().as_ref() {
            Some(w) => f(w).or_raise(),
            None => Err(closed()).or_raise(),
        }
    }
}

fn closed() -> Error {
    Error::InvalidOption("the writer is closed (closed, aborted, or a write failed)".into())
}

/// Refuses a column that is neither the contract's nor an array column:
/// a misspelt `val_scor` would otherwise be dropped without a word.
fn check_names(schema: &Schema) -> n4a::Result<()> {
    for f in schema.fields() {
        let name = f.name().as_str();
        if !COLUMNS.iter().any(|(c, _)| *c == name) && !ARRAY_COLUMNS.contains(&name) {
            return Err(Error::Schema {
                context: CONTEXT.into(),
                reason: format!(
                    "unknown column {name:?} (the contract's 35 columns, and the arrays {})",
                    ARRAY_COLUMNS.join(", ")
                ),
            });
        }
    }
    Ok(())
}

/// One batch into the writer: columnar when it holds the 35 contract
/// columns and no arrays (the writer's fast path), else row by row.
fn write_batch(w: &mut PredictionWriter, batch: &RecordBatch) -> n4a::Result<()> {
    let contract = to_contract_types(batch)?;
    let has_arrays = ARRAY_COLUMNS
        .iter()
        .any(|a| batch.column_by_name(a).is_some());
    let complete = COLUMNS
        .iter()
        .all(|(c, _)| contract.column_by_name(c).is_some());
    if complete && !has_arrays {
        return w.write_batch(&contract);
    }
    let mut rows = n4a::rows::batch_to_predictions(&contract, CONTEXT, false)?;
    if has_arrays {
        attach_arrays(batch, &mut rows)?;
    }
    rows.into_iter().try_for_each(|p| w.write_owned(p))
}

/// The contract columns of `batch`, each cast to its contract type when
/// it has another (pandas' int32 folds, float32 scores, categorical
/// strings): a value that does not convert is an error naming the column.
fn to_contract_types(batch: &RecordBatch) -> n4a::Result<RecordBatch> {
    let mut fields = Vec::new();
    let mut cols: Vec<ArrayRef> = Vec::new();
    for (name, kind) in COLUMNS {
        let Some(col) = batch.column_by_name(name) else {
            continue;
        };
        let fits = match (kind, col.data_type()) {
            (_, DataType::Null) => true,
            (Kind::Str, t) => {
                matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
            }
            (Kind::Int, t) => t == &DataType::Int64,
            (Kind::Float, t) => t == &DataType::Float64,
        };
        let col = if fits {
            col.clone()
        } else {
            let to = match kind {
                Kind::Str => DataType::Utf8,
                Kind::Int => DataType::Int64,
                Kind::Float => DataType::Float64,
            };
            cast(col, &to, name)?
        };
        fields.push(Field::new(name, col.data_type().clone(), true));
        cols.push(col);
    }
    let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        cols,
        &options,
    )?)
}

/// `col` cast to `to`, strictly (a value that does not fit is an error).
fn cast(col: &ArrayRef, to: &DataType, name: &str) -> n4a::Result<ArrayRef> {
    let options = arrow_cast::CastOptions {
        safe: false,
        ..Default::default()
    };
    arrow_cast::cast_with_options(col, to, &options).map_err(|e| Error::Schema {
        context: CONTEXT.into(),
        reason: format!(
            "column {name:?} of type {} does not convert to {to}: {e}",
            col.data_type()
        ),
    })
}

/// Sets each row's arrays from the batch's array columns: a list of
/// numbers is a vector, a list of lists a matrix (rows of equal length).
fn attach_arrays(batch: &RecordBatch, rows: &mut [Prediction]) -> n4a::Result<()> {
    for name in ARRAY_COLUMNS {
        let Some(col) = batch.column_by_name(name) else {
            continue;
        };
        let nested = match col.data_type() {
            DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
                matches!(
                    f.data_type(),
                    DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(_, _)
                )
            }
            DataType::Null => continue,
            t => {
                return Err(Error::Schema {
                    context: CONTEXT.into(),
                    reason: format!(
                        "array column {name:?} has type {t}, expected a list of numbers"
                    ),
                })
            }
        };
        let f64s = Arc::new(Field::new_list_field(DataType::Float64, true));
        let to = if nested {
            DataType::List(Arc::new(Field::new_list_field(DataType::List(f64s), true)))
        } else {
            DataType::List(f64s)
        };
        let col = cast(col, &to, name)?;
        let list = col.as_list::<i32>();
        for (i, p) in rows.iter_mut().enumerate() {
            if list.is_null(i) {
                continue;
            }
            let data = if nested {
                matrix(list.value(i).as_list::<i32>(), name, i)?
            } else {
                ArrayData::vector(numbers(&list.value(i)))
            };
            let arrays = p.arrays.get_or_insert_with(PredictionArrays::default);
            let slot = match name {
                "y_true" => &mut arrays.y_true,
                "y_pred" => &mut arrays.y_pred,
                "y_proba" => &mut arrays.y_proba,
                "sample_indices" => &mut arrays.sample_indices,
                _ => &mut arrays.weights,
            };
            *slot = Some(data);
        }
    }
    Ok(())
}

/// A list of float64 as values, nulls as NaN.
fn numbers(a: &ArrayRef) -> Vec<f64> {
    let a = a.as_primitive::<arrow_array::types::Float64Type>();
    (0..a.len())
        .map(|i| if a.is_valid(i) { a.value(i) } else { f64::NAN })
        .collect()
}

/// A list of lists of float64 as a row-major matrix.
fn matrix(rows: &arrow_array::ListArray, name: &str, row: usize) -> n4a::Result<ArrayData> {
    let mut values = Vec::new();
    let mut width = None;
    for r in 0..rows.len() {
        let v = numbers(&rows.value(r));
        if *width.get_or_insert(v.len()) != v.len() {
            return Err(Error::InvalidRow {
                row,
                reason: format!("{name}: rows of different lengths"),
            });
        }
        values.extend(v);
    }
    Ok(ArrayData {
        values,
        shape: vec![rows.len(), width.unwrap_or(0)],
    })
}
