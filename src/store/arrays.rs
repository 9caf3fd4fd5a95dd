//! A store's `arrays/<dataset>.parquet`: one row per prediction, keyed by
//! `prediction_id`, with the arrays as lists (nirs4all's `ArrayStore`).
//!
//! nirs4all appends a row per save and removes rows only when it compacts,
//! so a file may hold rows of predictions already deleted from SQLite
//! (their ids wait in `_tombstones.json`) and several rows of one id (an
//! upsert). The rule, nirs4all's own (`load_batch` and `compact`): SQLite
//! says which predictions exist; of an id's rows the last one holds its
//! arrays; rows of ids not in SQLite are dead. A tombstone on an id SQLite
//! still holds is stale and nirs4all keeps that prediction's arrays, so
//! tombstones never change what is read; they are counted for the report.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::Int32Type;
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;

use crate::error::{Error, Result};
use crate::rows::arrays::{list_values, strings};
use crate::schema::{ArrayData, PredictionArrays};

/// The tombstone file, beside the arrays files.
pub(crate) const TOMBSTONES: &str = "_tombstones.json";

/// The arrays file of `dataset` under the workspace `dir`: nirs4all's
/// `_sanitize_dataset_filename` (runs of `/\:*?"<>|`, whitespace and `.`
/// become `_`, `_` trimmed at both ends, `unnamed` if nothing is left).
pub(crate) fn path(dir: &Path, dataset: &str) -> PathBuf {
    let mut stem = String::with_capacity(dataset.len());
    let mut in_run = false;
    for c in dataset.chars() {
        if matches!(
            c,
            '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|' | '.'
        ) || c.is_whitespace()
        {
            if !in_run {
                stem.push('_');
            }
            in_run = true;
        } else {
            stem.push(c);
            in_run = false;
        }
    }
    let stem = stem.trim_matches('_');
    let stem = if stem.is_empty() { "unnamed" } else { stem };
    dir.join("arrays").join(format!("{stem}.parquet"))
}

/// The ids in `arrays/_tombstones.json` (none when the file is absent).
///
/// # Errors
/// The reason the file could not be read or is not a JSON object.
pub(crate) fn tombstones(dir: &Path) -> std::result::Result<HashSet<String>, String> {
    let p = dir.join("arrays").join(TOMBSTONES);
    match std::fs::read(&p) {
        Ok(bytes) => serde_json::from_slice::<HashMap<String, serde_json::Value>>(&bytes)
            .map(|m| m.into_keys().collect())
            .map_err(|e| format!("{}: not a JSON object: {e}", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HashSet::new()),
        Err(e) => Err(format!("{}: {e}", p.display())),
    }
}

/// What a pass over an arrays file met.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ArraysPass {
    /// Rows in the file.
    pub rows: u64,
    /// Live predictions whose arrays were taken.
    pub taken: u64,
    /// Rows of ids SQLite does not hold (deleted, awaiting compaction).
    pub dead: u64,
    /// Earlier rows of an id that has a later one (superseded by an upsert).
    pub superseded: u64,
    /// Targets stored as string class labels, which `.meta.parquet`
    /// arrays (float64) cannot hold: left out.
    pub string_labels: u64,
}

/// Calls `take(index, arrays)` for each live prediction found in `file`,
/// `live` mapping `prediction_id` to the caller's row index. Two passes:
/// the id column (to find each id's last row), then the arrays, batch by
/// batch. Memory: the live ids' last-row map plus one decoded batch.
///
/// # Errors
/// [`Error::Io`], [`Error::Parquet`], [`Error::DamagedData`] naming the
/// file; [`Error::Schema`] without a `prediction_id` column;
/// [`Error::Corrupt`] for a shape or label payload that does not decode.
pub(crate) fn for_each_live(
    file: &Path,
    live: &HashMap<String, usize>,
    take: &mut dyn FnMut(usize, PredictionArrays) -> Result<()>,
) -> Result<ArraysPass> {
    crate::footer::guard::guarded(file, || {
        let last = last_rows(file, live)?;
        let mut pass = ArraysPass::default();
        let builder = builder(file)?;
        let roots: Vec<usize> = builder
            .schema()
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| WANTED.contains(&f.name().as_str()))
            .map(|(i, _)| i)
            .collect();
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        let reader = builder
            .with_projection(mask)
            .with_batch_size(1024)
            .build()
            .map_err(|e| Error::parquet(file, e))?;
        let mut row = 0u64;
        for batch in reader {
            let b = batch.map_err(|e| Error::damaged(file, e))?;
            let ids = strings(b.column_by_name("prediction_id").map_or(
                &arrow_array::new_null_array(&DataType::Utf8, b.num_rows()) as &dyn Array,
                |c| c.as_ref(),
            ));
            for (i, id) in ids.iter().enumerate() {
                let at = row + i as u64;
                pass.rows += 1;
                let Some(id) = id else {
                    pass.dead += 1;
                    continue;
                };
                match (live.get(id), last.get(id)) {
                    (Some(&index), Some(&l)) if l == at => {
                        let arrays = row_arrays(file, &b, i, id, &mut pass)?;
                        pass.taken += 1;
                        take(index, arrays)?;
                    }
                    (Some(_), _) => pass.superseded += 1,
                    (None, _) => pass.dead += 1,
                }
            }
            row += b.num_rows() as u64;
        }
        Ok(pass)
    })
}

/// The columns read: nirs4all's `_PARQUET_SCHEMA` less X, spectra and the
/// metadata texts, which `.meta.parquet` files do not carry.
const WANTED: [&str; 12] = [
    "prediction_id",
    "task_type",
    "y_true",
    "y_true_shape",
    "y_pred",
    "y_pred_shape",
    "y_proba",
    "y_proba_shape",
    "sample_indices",
    "weights",
    "y_true_labels",
    "y_pred_labels",
];

/// A reader of `file` that takes the parquet schema's own types (not the
/// embedded Arrow schema: polars, which nirs4all compacts with, writes
/// large and view types).
fn builder(file: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>> {
    let f = File::open(file).map_err(|e| Error::io(file, e))?;
    ParquetRecordBatchReaderBuilder::try_new_with_options(
        f,
        ArrowReaderOptions::new().with_skip_arrow_metadata(true),
    )
    .map_err(|e| Error::parquet(file, e))
}

/// The last row number of each live id in the file.
fn last_rows(file: &Path, live: &HashMap<String, usize>) -> Result<HashMap<String, u64>> {
    let builder = builder(file)?;
    let id_col = builder
        .schema()
        .fields()
        .iter()
        .position(|f| f.name() == "prediction_id")
        .ok_or_else(|| Error::Schema {
            context: file.display().to_string(),
            reason: "arrays file lacks column \"prediction_id\"".into(),
        })?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), [id_col]);
    let reader = builder
        .with_projection(mask)
        .build()
        .map_err(|e| Error::parquet(file, e))?;
    let mut last = HashMap::new();
    let mut row = 0u64;
    for batch in reader {
        let b = batch.map_err(|e| Error::damaged(file, e))?;
        for (i, id) in strings(b.column(0).as_ref()).into_iter().enumerate() {
            if let Some(id) = id.filter(|id| live.contains_key(id)) {
                last.insert(id, row + i as u64);
            }
        }
        row += b.num_rows() as u64;
    }
    Ok(last)
}

/// The arrays of row `i` of batch `b`.
fn row_arrays(
    file: &Path,
    b: &RecordBatch,
    i: usize,
    id: &str,
    pass: &mut ArraysPass,
) -> Result<PredictionArrays> {
    let bad = |what: &str| Error::corrupt(file, format!("prediction {id}: {what}"));
    let floats = |name: &str| -> Option<Vec<f64>> {
        let c = b.column_by_name(name)?;
        list_values(c.as_ref(), i).map(|v| v.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect())
    };
    let ints = |name: &str| -> Option<Vec<i64>> {
        let c = b.column_by_name(name)?;
        int_list(c.as_ref(), i)
    };
    let shaped = |name: &str| -> Result<Option<ArrayData>> {
        let Some(values) = floats(name) else {
            return Ok(None);
        };
        let shape = match ints(&format!("{name}_shape")) {
            Some(s) => dims(&s, values.len()).ok_or_else(|| {
                bad(&format!(
                    "{name}_shape {s:?} does not fit {} values",
                    values.len()
                ))
            })?,
            None => vec![values.len()],
        };
        Ok(Some(ArrayData { values, shape }))
    };
    let mut target = |name: &str| -> Result<Option<ArrayData>> {
        let labels = b
            .column_by_name(&format!("{name}_labels"))
            .and_then(|c| strings(c.as_ref()).swap_remove(i));
        match labels {
            Some(text) => {
                let decoded =
                    decode_labels(&text).map_err(|why| bad(&format!("{name}_labels: {why}")))?;
                if decoded.is_none() {
                    pass.string_labels += 1;
                }
                Ok(decoded)
            }
            None => shaped(name),
        }
    };
    Ok(PredictionArrays {
        y_true: target("y_true")?,
        y_pred: target("y_pred")?,
        y_proba: shaped("y_proba")?,
        sample_indices: ints("sample_indices")
            .map(|v| ArrayData::vector(v.into_iter().map(|x| x as f64).collect())),
        weights: floats("weights").map(ArrayData::vector),
    })
}

/// The int32 values of row `i` of a list column (None for a null row).
fn int_list(a: &dyn Array, i: usize) -> Option<Vec<i64>> {
    if a.is_null(i) {
        return None;
    }
    let inner = match a.data_type() {
        DataType::LargeList(_) => a.as_list::<i64>().value(i),
        DataType::List(_) => a.as_list::<i32>().value(i),
        _ => return None,
    };
    if let Some(p) = inner.as_primitive_opt::<Int32Type>() {
        return Some(p.iter().map(|v| i64::from(v.unwrap_or(0))).collect());
    }
    inner
        .as_primitive_opt::<arrow_array::types::Int64Type>()
        .map(|p| p.iter().map(|v| v.unwrap_or(0)).collect())
}

/// A stored shape as dimensions, if its product is `len`.
fn dims(shape: &[i64], len: usize) -> Option<Vec<usize>> {
    let d: Vec<usize> = shape
        .iter()
        .map(|&x| usize::try_from(x).ok())
        .collect::<Option<_>>()?;
    (d.iter().product::<usize>() == len).then_some(d)
}

/// nirs4all's typed class labels (`target_codec.encode_target_labels`):
/// `int64` labels become float64 values (exact below 2^53; beyond that an
/// error), `str` labels `None` (float64 arrays cannot hold them).
fn decode_labels(text: &str) -> std::result::Result<Option<ArrayData>, String> {
    #[derive(serde::Deserialize)]
    struct Payload {
        label_type: String,
        vocabulary: Vec<serde_json::Value>,
        indices: Vec<usize>,
        shape: Vec<usize>,
    }
    let p: Payload = serde_json::from_str(text).map_err(|e| format!("not a label payload: {e}"))?;
    if p.label_type == "str" {
        return Ok(None);
    }
    if p.label_type != "int64" {
        return Err(format!("unknown label_type {:?}", p.label_type));
    }
    let vocab: Vec<f64> = p
        .vocabulary
        .iter()
        .map(|v| {
            v.as_i64()
                .filter(|n| n.unsigned_abs() <= 1 << 53)
                .map(|n| n as f64)
                .ok_or_else(|| format!("label {v} is not an integer float64 holds exactly"))
        })
        .collect::<std::result::Result<_, _>>()?;
    let values: Vec<f64> = p
        .indices
        .iter()
        .map(|&k| {
            vocab
                .get(k)
                .copied()
                .ok_or_else(|| format!("index {k} outside the vocabulary"))
        })
        .collect::<std::result::Result<_, _>>()?;
    if p.shape.iter().product::<usize>() != values.len() {
        return Err(format!(
            "shape {:?} does not fit {} labels",
            p.shape,
            values.len()
        ));
    }
    Ok(Some(ArrayData {
        values,
        shape: p.shape,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_follow_nirs4all_sanitiser() {
        let name = |d: &str| {
            path(Path::new("w"), d)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        };
        assert_eq!(name("corn"), "corn.parquet");
        assert_eq!(name("my data.v2/x"), "my_data_v2_x.parquet");
        assert_eq!(name("..a..b.."), "a_b.parquet");
        assert_eq!(name("///"), "unnamed.parquet");
    }

    #[test]
    fn int_labels_decode_and_string_labels_are_left_out() {
        let ints = r#"{"schema_version":1,"label_type":"int64","vocabulary":[3,7],"indices":[1,0,1],"shape":[3]}"#;
        assert_eq!(
            decode_labels(ints).unwrap(),
            Some(ArrayData {
                values: vec![7.0, 3.0, 7.0],
                shape: vec![3]
            })
        );
        let strs = r#"{"schema_version":1,"label_type":"str","vocabulary":["a"],"indices":[0],"shape":[1]}"#;
        assert_eq!(decode_labels(strs).unwrap(), None);
        let bad = r#"{"schema_version":1,"label_type":"int64","vocabulary":[3],"indices":[4],"shape":[1]}"#;
        assert!(decode_labels(bad).unwrap_err().contains("outside"));
    }
}
