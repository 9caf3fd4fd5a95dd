//! Reading arrays (y_true, y_pred, ...) back from `<dataset>.arrays.parquet`
//! by id, for the few rows that need them (the dashboard's scatter plot).
//!
//! The id column is read first and only the matching rows' values are
//! decoded (a parquet row filter), so the cost is one pass over the ids plus
//! the wanted arrays, not the whole file. Either layout is read: ours
//! (`list<float64>`) and nirs4all's (`large_list<float64>`).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, BooleanArray};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::{ArrowPredicateFn, ParquetRecordBatchReaderBuilder, RowFilter};
use parquet::arrow::ProjectionMask;

use crate::error::{Error, Result};
use crate::schema::ArrayData;

/// The strings of a utf8, large_utf8 or utf8_view column (nulls for any
/// other type).
pub fn strings(a: &dyn Array) -> Vec<Option<String>> {
    match a.data_type() {
        DataType::LargeUtf8 => a
            .as_string::<i64>()
            .iter()
            .map(|v| v.map(str::to_string))
            .collect(),
        DataType::Utf8 => a
            .as_string::<i32>()
            .iter()
            .map(|v| v.map(str::to_string))
            .collect(),
        DataType::Utf8View => a
            .as_string_view()
            .iter()
            .map(|v| v.map(str::to_string))
            .collect(),
        _ => vec![None; a.len()],
    }
}

/// The float64 values of row `i` of a list or large_list column.
pub fn list_values(a: &dyn Array, i: usize) -> Option<Vec<Option<f64>>> {
    if a.is_null(i) {
        return None;
    }
    let inner = match a.data_type() {
        DataType::LargeList(_) => a.as_list::<i64>().value(i),
        DataType::List(_) => a.as_list::<i32>().value(i),
        _ => return None,
    };
    let f = inner.as_primitive_opt::<arrow_array::types::Float64Type>()?;
    Some(f.iter().collect())
}

/// The arrays of `ids` stored in the arrays file `path`; ids it does not
/// hold are absent from the answer. Null values read as NaN. The shape is
/// the stored `array_shape` (JSON), or the flat length.
///
/// # Errors
/// [`Error::Io`]/[`Error::Parquet`] naming the file; [`Error::Schema`] if
/// it lacks `array_id` or `array_data`.
pub fn read_arrays(path: &Path, ids: &[&str]) -> Result<HashMap<String, ArrayData>> {
    crate::footer::guard::guarded(path, || read_arrays_unguarded(path, ids))
}

fn read_arrays_unguarded(path: &Path, ids: &[&str]) -> Result<HashMap<String, ArrayData>> {
    let err = |e| Error::parquet(path, e);
    let file = crate::blob::Blob::open(path).map_err(|e| Error::io(path, e))?;
    let handle = file.remote_handle();
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(err)?;
    let fields = builder.schema().fields().clone();
    let root = |name: &str| {
        fields
            .iter()
            .position(|f| f.name() == name)
            .ok_or_else(|| Error::Schema {
                context: path.display().to_string(),
                reason: format!("arrays file lacks column {name:?}"),
            })
    };
    let (id_col, data_col) = (root("array_id")?, root("array_data")?);
    let shape_col = root("array_shape").ok();
    let wanted: Arc<HashSet<String>> = Arc::new(ids.iter().map(|s| s.to_string()).collect());
    let schema = builder.parquet_schema();
    let id_mask = ProjectionMask::roots(schema, [id_col]);
    let keep = wanted.clone();
    let predicate = ArrowPredicateFn::new(id_mask, move |b| {
        let ids = strings(b.column(0).as_ref());
        Ok(BooleanArray::from(
            ids.iter()
                .map(|id| id.as_ref().is_some_and(|id| keep.contains(id)))
                .collect::<Vec<bool>>(),
        ))
    });
    let mut roots = vec![id_col, data_col];
    roots.extend(shape_col);
    let mask = ProjectionMask::roots(schema, roots);
    if let Some(h) = &handle {
        crate::rows::prefetch(path, h, builder.metadata(), &mask, None)?;
    }
    let reader = builder
        .with_projection(mask)
        .with_row_filter(RowFilter::new(vec![Box::new(predicate)]))
        .build()
        .map_err(err)?;
    let mut out = HashMap::new();
    for batch in reader {
        let b = batch.map_err(|e| Error::damaged(path, e))?;
        let col = |n: &str| b.column_by_name(n);
        let ids = col("array_id")
            .map(|c| strings(c.as_ref()))
            .unwrap_or_default();
        let shapes = col("array_shape").map(|c| strings(c.as_ref()));
        let Some(data) = col("array_data") else {
            continue;
        };
        for (i, id) in ids.into_iter().enumerate() {
            let (Some(id), Some(values)) = (id, list_values(data.as_ref(), i)) else {
                continue;
            };
            let values: Vec<f64> = values.into_iter().map(|v| v.unwrap_or(f64::NAN)).collect();
            let shape = shapes
                .as_ref()
                .and_then(|s| s[i].as_deref())
                .and_then(|s| serde_json::from_str::<Vec<usize>>(s).ok())
                .unwrap_or_else(|| vec![values.len()]);
            out.insert(id, ArrayData { values, shape });
        }
    }
    Ok(out)
}
