//! Answers to Python objects: JSON answers (summaries, reports, the
//! metadata of a table) through Python's `json` module, Arrow batches as
//! `pyarrow.Table` through the C data interface (pyarrow takes ownership
//! of the Rust buffers; nothing is copied).

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_pyarrow::{IntoPyArrow, Table};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// The schema metadata key holding an answer's `total`, `served_by`,
/// `provenance` and the rest (read by `n4a.info`).
pub(crate) const INFO_KEY: &str = "n4a";

/// JSON text as Python objects (`json.loads`).
pub(crate) fn json_to_py<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    py.import("json")?.call_method1("loads", (text,))
}

/// `batch` as a `pyarrow.Table` whose schema metadata holds `info` (JSON)
/// under [`INFO_KEY`]. The batch's buffers are handed over, not copied.
pub(crate) fn table_with_info<'py>(
    py: Python<'py>,
    batch: RecordBatch,
    info: &serde_json::Value,
) -> PyResult<Bound<'py, PyAny>> {
    let mut meta: HashMap<String, String> = batch.schema().metadata().clone().into();
    meta.insert(INFO_KEY.to_string(), info.to_string());
    let schema = Arc::new(batch.schema().as_ref().clone().with_metadata(meta));
    let batch = batch
        .with_schema(schema.clone())
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    let table =
        Table::try_new(vec![batch], schema).map_err(|e| PyValueError::new_err(e.to_string()))?;
    table.into_pyarrow(py)
}

/// `value` as JSON with `field` removed (an answer without its rows: what
/// goes with the table).
pub(crate) fn without(mut value: serde_json::Value, field: &str) -> serde_json::Value {
    if let Some(m) = value.as_object_mut() {
        m.remove(field);
    }
    value
}
