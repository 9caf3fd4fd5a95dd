//! The format contract: the 35 prediction columns, the arrays side file,
//! the `Prediction` row, nirs4all's row-id rule and dataset-name rules.
//!
//! nirs4all's own reader rejects a file whose column order or types differ
//! (int32 for int64, Arrow's `null` type for an all-null column), so every
//! column here is declared once, in contract order, and all writers go
//! through [`meta_schema`].

pub(crate) mod columns;

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The physical kind of a contract column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// utf8 (large_utf8 is accepted on read).
    Str,
    /// int64, nullable.
    Int,
    /// float64, nullable.
    Float,
}

/// The 35 columns of `<dataset>.meta.parquet`, in contract order.
pub const COLUMNS: [(&str, Kind); 35] = [
    ("id", Kind::Str),
    ("dataset_name", Kind::Str),
    ("dataset_path", Kind::Str),
    ("config_name", Kind::Str),
    ("config_path", Kind::Str),
    ("pipeline_uid", Kind::Str),
    ("step_idx", Kind::Int),
    ("op_counter", Kind::Int),
    ("model_name", Kind::Str),
    ("model_classname", Kind::Str),
    ("model_path", Kind::Str),
    ("model_artifact_id", Kind::Str),
    ("trace_id", Kind::Str),
    ("fold_id", Kind::Str),
    ("partition", Kind::Str),
    ("val_score", Kind::Float),
    ("test_score", Kind::Float),
    ("train_score", Kind::Float),
    ("metric", Kind::Str),
    ("task_type", Kind::Str),
    ("n_samples", Kind::Int),
    ("n_features", Kind::Int),
    ("preprocessings", Kind::Str),
    ("best_params", Kind::Str),
    ("metadata", Kind::Str),
    ("scores", Kind::Str),
    ("branch_id", Kind::Int),
    ("branch_name", Kind::Str),
    ("exclusion_count", Kind::Int),
    ("exclusion_rate", Kind::Float),
    ("y_true_id", Kind::Str),
    ("y_pred_id", Kind::Str),
    ("y_proba_id", Kind::Str),
    ("sample_indices_id", Kind::Str),
    ("weights_id", Kind::Str),
];

/// String columns whose values repeat row after row (the facets): read as
/// dictionaries by queries. Ids, paths, JSON and array references are
/// unique per row, and a dictionary would only cost.
pub fn is_facet(name: &str) -> bool {
    matches!(
        name,
        "dataset_name"
            | "dataset_path"
            | "config_name"
            | "pipeline_uid"
            | "model_name"
            | "model_classname"
            | "fold_id"
            | "partition"
            | "metric"
            | "task_type"
            | "preprocessings"
            | "branch_id"
            | "branch_name"
    )
}

/// The three score columns, in the order the summary keeps them.
pub const SCORE_COLUMNS: [&str; 3] = ["val_score", "test_score", "train_score"];

/// File-name suffix of the prediction rows.
pub const META_SUFFIX: &str = ".meta.parquet";
/// File-name suffix of the arrays side file.
pub const ARRAYS_SUFFIX: &str = ".arrays.parquet";
/// Footer key of the summary.
pub const SUMMARY_KEY: &str = "n4a_summary";
/// Footer key of the mergeable state's head (format 1.2: compact binary,
/// base64; see `summary::codec`).
pub const STATE_KEY: &str = "n4a_state";
/// Footer key of the mergeable state's runs (format 1.2).
pub const RUNS_KEY: &str = "n4a_runs";
/// Footer key of the Arrow schema pyarrow and arrow-rs embed. n4a 1.2 does
/// not write it: pyarrow shows a file's key/values only when it is absent.
pub const ARROW_SCHEMA_KEY: &str = "ARROW:schema";

fn arrow_type(kind: Kind) -> DataType {
    match kind {
        Kind::Str => DataType::Utf8,
        Kind::Int => DataType::Int64,
        Kind::Float => DataType::Float64,
    }
}

/// The Arrow schema of `<dataset>.meta.parquet`: 35 nullable columns.
pub fn meta_schema() -> SchemaRef {
    let fields: Vec<Field> = COLUMNS
        .iter()
        .map(|(name, kind)| Field::new(*name, arrow_type(*kind), true))
        .collect();
    Arc::new(Schema::new(fields))
}

/// The Arrow schema of `<dataset>.arrays.parquet`.
pub fn arrays_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("array_id", DataType::Utf8, true),
        Field::new(
            "array_data",
            DataType::List(Arc::new(Field::new("element", DataType::Float64, true))),
            true,
        ),
        Field::new("array_hash", DataType::Utf8, true),
        Field::new("array_size", DataType::Int64, true),
        Field::new("array_shape", DataType::Utf8, true),
        Field::new("array_type", DataType::Utf8, true),
    ]))
}

/// An array attached to a prediction (y_true, y_pred, ...): flattened
/// float64 values in C order plus the shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ArrayData {
    /// Flattened values, C order.
    pub values: Vec<f64>,
    /// The shape; `[values.len()]` for a plain vector.
    pub shape: Vec<usize>,
}

impl ArrayData {
    /// A one-dimensional array.
    pub fn vector(values: Vec<f64>) -> Self {
        let shape = vec![values.len()];
        ArrayData { values, shape }
    }

    /// SHA-256 hex of the little-endian float64 bytes: the contract's
    /// content hash, under which the arrays file stores each array once.
    pub fn content_hash(&self) -> String {
        let mut h = Sha256::new();
        for v in &self.values {
            h.update(v.to_le_bytes());
        }
        hex(&h.finalize())
    }
}

/// The arrays that travel with one prediction, stored in the arrays file
/// and referenced from the row's `*_id` columns.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PredictionArrays {
    /// Observed targets.
    pub y_true: Option<ArrayData>,
    /// Predicted targets.
    pub y_pred: Option<ArrayData>,
    /// Class probabilities (classification); regression rows get an empty array.
    pub y_proba: Option<ArrayData>,
    /// Sample indices.
    pub sample_indices: Option<ArrayData>,
    /// Sample or fold weights.
    pub weights: Option<ArrayData>,
}

/// One prediction row: the contract's 35 columns, all nullable as in the
/// files nirs4all writes, plus optional arrays to store in the side file.
///
/// ```
/// use n4a::schema::{ArrayData, PredictionArrays};
///
/// let p = n4a::Prediction {
///     id: Some("p1".into()),
///     dataset_name: Some("corn".into()),
///     model_name: Some("PLS".into()),
///     fold_id: Some("0".into()),
///     partition: Some("val".into()),
///     metric: Some("r2".into()),
///     val_score: Some(0.91),
///     arrays: Some(PredictionArrays {
///         y_true: Some(ArrayData::vector(vec![1.0, 2.0])),
///         y_pred: Some(ArrayData::vector(vec![1.1, 1.9])),
///         ..Default::default()
///     }),
///     ..Default::default()
/// };
/// assert_eq!(p.partition.as_deref(), Some("val"));
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
#[allow(missing_docs)] // the fields are the contract's columns, documented in FORMAT.md
pub struct Prediction {
    pub id: Option<String>,
    pub dataset_name: Option<String>,
    pub dataset_path: Option<String>,
    pub config_name: Option<String>,
    pub config_path: Option<String>,
    pub pipeline_uid: Option<String>,
    pub step_idx: Option<i64>,
    pub op_counter: Option<i64>,
    pub model_name: Option<String>,
    pub model_classname: Option<String>,
    pub model_path: Option<String>,
    pub model_artifact_id: Option<String>,
    pub trace_id: Option<String>,
    pub fold_id: Option<String>,
    pub partition: Option<String>,
    pub val_score: Option<f64>,
    pub test_score: Option<f64>,
    pub train_score: Option<f64>,
    pub metric: Option<String>,
    pub task_type: Option<String>,
    pub n_samples: Option<i64>,
    pub n_features: Option<i64>,
    pub preprocessings: Option<String>,
    pub best_params: Option<String>,
    pub metadata: Option<String>,
    pub scores: Option<String>,
    pub branch_id: Option<i64>,
    pub branch_name: Option<String>,
    pub exclusion_count: Option<i64>,
    pub exclusion_rate: Option<f64>,
    pub y_true_id: Option<String>,
    pub y_pred_id: Option<String>,
    pub y_proba_id: Option<String>,
    pub sample_indices_id: Option<String>,
    pub weights_id: Option<String>,
    /// Arrays to store in `<dataset>.arrays.parquet`; the writer fills the
    /// matching `*_id` columns. Not a column.
    #[serde(skip)]
    pub arrays: Option<PredictionArrays>,
}

/// One prediction row borrowed from where it was read (an Arrow batch's
/// buffers): [`Prediction`]'s 35 columns without an allocation a row.
/// Paths that read many rows and keep few of their strings (export) use
/// it; [`PredictionRef::to_prediction`] makes the owned row.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[allow(missing_docs)] // the fields are the contract's columns, documented in FORMAT.md
pub struct PredictionRef<'a> {
    pub id: Option<&'a str>,
    pub dataset_name: Option<&'a str>,
    pub dataset_path: Option<&'a str>,
    pub config_name: Option<&'a str>,
    pub config_path: Option<&'a str>,
    pub pipeline_uid: Option<&'a str>,
    pub step_idx: Option<i64>,
    pub op_counter: Option<i64>,
    pub model_name: Option<&'a str>,
    pub model_classname: Option<&'a str>,
    pub model_path: Option<&'a str>,
    pub model_artifact_id: Option<&'a str>,
    pub trace_id: Option<&'a str>,
    pub fold_id: Option<&'a str>,
    pub partition: Option<&'a str>,
    pub val_score: Option<f64>,
    pub test_score: Option<f64>,
    pub train_score: Option<f64>,
    pub metric: Option<&'a str>,
    pub task_type: Option<&'a str>,
    pub n_samples: Option<i64>,
    pub n_features: Option<i64>,
    pub preprocessings: Option<&'a str>,
    pub best_params: Option<&'a str>,
    pub metadata: Option<&'a str>,
    pub scores: Option<&'a str>,
    pub branch_id: Option<i64>,
    pub branch_name: Option<&'a str>,
    pub exclusion_count: Option<i64>,
    pub exclusion_rate: Option<f64>,
    pub y_true_id: Option<&'a str>,
    pub y_pred_id: Option<&'a str>,
    pub y_proba_id: Option<&'a str>,
    pub sample_indices_id: Option<&'a str>,
    pub weights_id: Option<&'a str>,
}

impl PredictionRef<'_> {
    /// The three scores in summary order.
    pub fn score_values(&self) -> [Option<f64>; 3] {
        [self.val_score, self.test_score, self.train_score]
    }

    /// nirs4all's row id for this row (see [`row_id`]).
    pub fn computed_id(&self) -> String {
        row_id_of(&self.cells())
    }
}

impl Prediction {
    /// The three scores in summary order.
    pub fn score_values(&self) -> [Option<f64>; 3] {
        [self.val_score, self.test_score, self.train_score]
    }

    /// nirs4all's row id for this row (see [`row_id`]).
    pub fn computed_id(&self) -> String {
        row_id(self)
    }

    /// The row borrowed (no allocation).
    pub fn as_row(&self) -> PredictionRef<'_> {
        let mut r = PredictionRef::default();
        for (idx, c) in self.cells().into_iter().enumerate() {
            r.set(idx, c);
        }
        r
    }
}

/// One value of a row, borrowed, by contract column.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    /// A utf8 column.
    Str(Option<&'a str>),
    /// An int64 column.
    Int(Option<i64>),
    /// A float64 column.
    Float(Option<f64>),
}

/// Rows filled a column at a time (what a batch is decoded into): the
/// owned [`Prediction`] (one `String` a cell) and the borrowed
/// [`PredictionRef`]. Each call sets column `idx` of every row of `rows`
/// to `get(i)`, `i` the row's position; a column of another kind, or an
/// index past the last, sets nothing.
pub trait FillColumns<'a>: Sized {
    /// A utf8 column.
    fn fill_str(rows: &mut [Self], idx: usize, get: impl Fn(usize) -> Option<&'a str>);
    /// An int64 column.
    fn fill_int(rows: &mut [Self], idx: usize, get: impl Fn(usize) -> Option<i64>);
    /// A float64 column.
    fn fill_float(rows: &mut [Self], idx: usize, get: impl Fn(usize) -> Option<f64>);
}

/// Generates by-index accessors from one table, so the column order lives
/// in [`COLUMNS`] and here only.
macro_rules! column_access {
    ($($idx:literal => $field:ident : $kind:ident),* $(,)?) => {
        impl Prediction {
            /// The row's 35 values in contract order.
            pub fn cells(&self) -> [Cell<'_>; 35] {
                [$(column_access!(@cell self, $field, $kind)),*]
            }

            /// Mutable access to the utf8 column at `idx` (None if not utf8).
            pub fn str_mut(&mut self, idx: usize) -> Option<&mut Option<String>> {
                match idx {
                    $($idx => column_access!(@str_mut self, $field, $kind),)*
                    _ => None,
                }
            }

            /// Mutable access to the int64 column at `idx` (None if not int64).
            pub fn int_mut(&mut self, idx: usize) -> Option<&mut Option<i64>> {
                match idx {
                    $($idx => column_access!(@int_mut self, $field, $kind),)*
                    _ => None,
                }
            }

            /// Mutable access to the float64 column at `idx` (None if not float64).
            pub fn float_mut(&mut self, idx: usize) -> Option<&mut Option<f64>> {
                match idx {
                    $($idx => column_access!(@float_mut self, $field, $kind),)*
                    _ => None,
                }
            }
        }

        impl<'a> PredictionRef<'a> {
            /// The row's 35 values in contract order.
            pub fn cells(&self) -> [Cell<'a>; 35] {
                [$(column_access!(@ref_cell self, $field, $kind)),*]
            }

            /// Sets column `idx` to `cell`; a cell of another kind than the
            /// column's, or an index past the last column, is ignored.
            pub fn set(&mut self, idx: usize, cell: Cell<'a>) {
                match (idx, cell) {
                    $(column_access!(@set_pat $idx, v, $kind) => self.$field = v,)*
                    _ => {}
                }
            }

            /// The owned row (one allocation a string).
            pub fn to_prediction(&self) -> Prediction {
                Prediction {
                    $($field: column_access!(@own self, $field, $kind),)*
                    arrays: None,
                }
            }
        }

        column_access!(@fill_impl PredictionRef<'a>, |v| v; $($idx => $field: $kind),*);
        column_access!(@fill_impl Prediction, |v: Option<&'a str>| v.map(str::to_string); $($idx => $field: $kind),*);
    };
    (@ref_cell $s:ident, $f:ident, Str) => { Cell::Str($s.$f) };
    (@ref_cell $s:ident, $f:ident, Int) => { Cell::Int($s.$f) };
    (@ref_cell $s:ident, $f:ident, Float) => { Cell::Float($s.$f) };
    (@set_pat $i:literal, $v:ident, Str) => { ($i, Cell::Str($v)) };
    (@set_pat $i:literal, $v:ident, Int) => { ($i, Cell::Int($v)) };
    (@set_pat $i:literal, $v:ident, Float) => { ($i, Cell::Float($v)) };
    // One `FillColumns` impl; `$own` makes a utf8 cell the row's own.
    (@fill_impl $t:ty, $own:expr; $($idx:literal => $field:ident : $kind:ident),*) => {
        impl<'a> FillColumns<'a> for $t {
            fn fill_str(rows: &mut [Self], idx: usize, get: impl Fn(usize) -> Option<&'a str>) {
                let own = $own;
                let get = |i| own(get(i));
                match idx {
                    $($idx => column_access!(@fill rows, get, $field, $kind, Str),)*
                    _ => {}
                }
            }
            fn fill_int(rows: &mut [Self], idx: usize, get: impl Fn(usize) -> Option<i64>) {
                match idx {
                    $($idx => column_access!(@fill rows, get, $field, $kind, Int),)*
                    _ => {}
                }
            }
            fn fill_float(rows: &mut [Self], idx: usize, get: impl Fn(usize) -> Option<f64>) {
                match idx {
                    $($idx => column_access!(@fill rows, get, $field, $kind, Float),)*
                    _ => {}
                }
            }
        }
    };
    (@fill $rows:ident, $get:ident, $f:ident, Str, Str) => { column_access!(@fill_loop $rows, $get, $f) };
    (@fill $rows:ident, $get:ident, $f:ident, Int, Int) => { column_access!(@fill_loop $rows, $get, $f) };
    (@fill $rows:ident, $get:ident, $f:ident, Float, Float) => { column_access!(@fill_loop $rows, $get, $f) };
    (@fill $rows:ident, $get:ident, $f:ident, $k:ident, $want:ident) => { {} };
    (@fill_loop $rows:ident, $get:ident, $f:ident) => {
        for (i, r) in $rows.iter_mut().enumerate() {
            r.$f = $get(i);
        }
    };
    (@own $s:ident, $f:ident, Str) => { $s.$f.map(str::to_string) };
    (@own $s:ident, $f:ident, $k:ident) => { $s.$f };
    (@cell $s:ident, $f:ident, Str) => { Cell::Str($s.$f.as_deref()) };
    (@cell $s:ident, $f:ident, Int) => { Cell::Int($s.$f) };
    (@cell $s:ident, $f:ident, Float) => { Cell::Float($s.$f) };
    (@str_mut $s:ident, $f:ident, Str) => { Some(&mut $s.$f) };
    (@str_mut $s:ident, $f:ident, $k:ident) => { None };
    (@int_mut $s:ident, $f:ident, Int) => { Some(&mut $s.$f) };
    (@int_mut $s:ident, $f:ident, $k:ident) => { None };
    (@float_mut $s:ident, $f:ident, Float) => { Some(&mut $s.$f) };
    (@float_mut $s:ident, $f:ident, $k:ident) => { None };
}

column_access! {
    0 => id: Str, 1 => dataset_name: Str, 2 => dataset_path: Str, 3 => config_name: Str,
    4 => config_path: Str, 5 => pipeline_uid: Str, 6 => step_idx: Int, 7 => op_counter: Int,
    8 => model_name: Str, 9 => model_classname: Str, 10 => model_path: Str,
    11 => model_artifact_id: Str, 12 => trace_id: Str, 13 => fold_id: Str, 14 => partition: Str,
    15 => val_score: Float, 16 => test_score: Float, 17 => train_score: Float, 18 => metric: Str,
    19 => task_type: Str, 20 => n_samples: Int, 21 => n_features: Int, 22 => preprocessings: Str,
    23 => best_params: Str, 24 => metadata: Str, 25 => scores: Str, 26 => branch_id: Int,
    27 => branch_name: Str, 28 => exclusion_count: Int, 29 => exclusion_rate: Float,
    30 => y_true_id: Str, 31 => y_pred_id: Str, 32 => y_proba_id: Str,
    33 => sample_indices_id: Str, 34 => weights_id: Str,
}

/// nirs4all's row id: the first 16 hex chars of SHA-256 over 11 fields
/// joined by `|`, a null written as `None` (Python's `str(None)`).
pub fn row_id(p: &Prediction) -> String {
    row_id_of(&p.cells())
}

/// [`row_id`] of a row's cells in contract order.
fn row_id_of(c: &[Cell<'_>; 35]) -> String {
    fn text(c: Cell<'_>) -> String {
        match c {
            Cell::Str(Some(v)) => v.to_string(),
            Cell::Int(Some(v)) => v.to_string(),
            Cell::Float(Some(v)) => v.to_string(),
            _ => "None".to_string(),
        }
    }
    // dataset_name, dataset_path, config_name, config_path, model_name,
    // model_classname, fold_id, partition, step_idx, op_counter,
    // sample_indices_id.
    let key = [1, 2, 3, 4, 8, 9, 13, 14, 6, 7, 33]
        .map(|i| text(c[i]))
        .join("|");
    let digest = Sha256::digest(key.as_bytes());
    hex(&digest[..8])
}

/// Lower-case hex of `bytes` (sha2 0.11 no longer formats digests itself).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

/// Checks that `name` can safely become `<name>.meta.parquet` inside a
/// workspace folder: not empty, no path separator, not `.`/`..`, no
/// leading dot (n4a's own temporary and lock files start with one), no
/// control characters, and no `.meta`/`.arrays` inside (which would make the
/// file name ambiguous).
///
/// # Errors
/// [`Error::InvalidDatasetName`] with the reason.
pub fn validate_dataset_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.contains('/') || name.contains('\\') {
        Some("it contains a path separator")
    } else if name.starts_with('.') {
        Some("it starts with a dot")
    } else if name.chars().any(char::is_control) {
        Some("it contains a control character")
    } else if name.contains(".meta") || name.contains(".arrays") {
        Some("it contains \".meta\" or \".arrays\", which would make the file name ambiguous")
    } else if name.len() > 200 {
        Some("it is longer than 200 bytes")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidDatasetName {
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_has_contract_order_and_types() {
        let s = meta_schema();
        assert_eq!(s.fields().len(), 35);
        assert_eq!(s.field(6).name(), "step_idx");
        assert_eq!(s.field(6).data_type(), &DataType::Int64);
        assert_eq!(s.field(29).data_type(), &DataType::Float64);
        assert_eq!(s.field(34).name(), "weights_id");
    }

    #[test]
    fn dataset_names_that_escape_the_folder_are_refused() {
        for bad in [
            "",
            "a/b",
            "..",
            "a\\b",
            ".hidden",
            "x.meta",
            "x.arrays.y",
            "a\nb",
        ] {
            assert!(validate_dataset_name(bad).is_err(), "{bad:?}");
        }
        validate_dataset_name("corn_moisture").unwrap();
        validate_dataset_name("wheat v2 (2024)").unwrap();
    }

    #[test]
    fn accessors_follow_contract_order() {
        let mut p = Prediction::default();
        for (i, (_, kind)) in COLUMNS.iter().enumerate() {
            match kind {
                Kind::Str => *p.str_mut(i).unwrap() = Some(format!("c{i}")),
                Kind::Int => *p.int_mut(i).unwrap() = Some(i as i64),
                Kind::Float => *p.float_mut(i).unwrap() = Some(i as f64),
            }
        }
        assert_eq!(p.model_name.as_deref(), Some("c8"));
        assert_eq!(p.step_idx, Some(6));
        assert_eq!(p.exclusion_rate, Some(29.0));
        assert_eq!(p.cells()[34], Cell::Str(Some("c34")));
    }

    #[test]
    fn hex_formats_bytes() {
        assert_eq!(hex(&[0, 15, 255]), "000fff");
    }
}
