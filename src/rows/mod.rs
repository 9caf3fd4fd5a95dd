//! Decoding prediction rows, for the few paths that need them: rebuilding a
//! summary a file lacks, re-encoding a file whose schema differs, and
//! tests; and the batch reading `scores` and `configs` build on.
//!
//! A file's `ARROW:schema` entry is followed (nirs4all's large types)
//! unless it declares dictionaries: pyarrow records a pandas categorical
//! there as `dictionary<int8, large_string>`, over a Parquet column of
//! plain strings, and such a file is read by its Parquet types, as the
//! strings it holds. Older nirs4all files
//! with fewer columns are read leniently (missing columns are null). A
//! column of the wrong type is an error naming the file and column.

pub mod arrays;
pub(crate) mod best;
pub mod configs;
pub mod scores;
pub mod source;

use crate::blob::Blob;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;

use crate::error::{Error, Result};
use crate::schema::{FillColumns, Kind, Prediction, PredictionRef, COLUMNS};
use crate::summary::{RowView, SummaryBuilder};

fn type_fits(kind: Kind, dt: &DataType, strict: bool) -> bool {
    match (kind, dt) {
        (Kind::Str, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) => true,
        (Kind::Str, DataType::Dictionary(k, v)) => {
            k.as_ref() == &DataType::Int32 && v.as_ref() == &DataType::Utf8
        }
        (Kind::Int, DataType::Int64) | (Kind::Float, DataType::Float64) => true,
        (_, DataType::Null) => !strict,
        _ => false,
    }
}

/// Checks that `batch` has every contract column with a usable type
/// (`strict`), or that the columns it has are usable (lenient).
///
/// # Errors
/// [`Error::Schema`] naming `context` and the column.
pub fn check_columns(schema: &arrow_schema::Schema, context: &str, strict: bool) -> Result<()> {
    for (name, kind) in COLUMNS {
        match schema.column_with_name(name) {
            None if strict => {
                return Err(Error::Schema {
                    context: context.to_string(),
                    reason: format!("missing column {name:?}"),
                })
            }
            None => {}
            Some((_, f)) if !type_fits(kind, f.data_type(), strict) => {
                return Err(Error::Schema {
                    context: context.to_string(),
                    reason: format!(
                        "column {name:?} has type {}, expected {}",
                        f.data_type(),
                        match kind {
                            Kind::Str => "utf8",
                            Kind::Int => "int64",
                            Kind::Float => "float64",
                        }
                    ),
                })
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Converts a batch to rows. Missing columns read as null unless `strict`.
/// One allocation a non-null string: [`batch_to_prediction_refs`] reads
/// the same rows without any.
///
/// # Errors
/// [`Error::Schema`] as [`check_columns`].
pub fn batch_to_predictions(
    batch: &RecordBatch,
    context: &str,
    strict: bool,
) -> Result<Vec<Prediction>> {
    check_columns(batch.schema().as_ref(), context, strict)?;
    let mut rows = vec![Prediction::default(); batch.num_rows()];
    fill_rows(batch, &mut rows);
    Ok(rows)
}

/// The rows of a batch borrowed from its buffers (strings viewed in
/// place, dictionary-encoded ones included). Missing columns read as null
/// unless `strict`. Cost: one pass a column, one `Vec` of rows.
///
/// # Errors
/// [`Error::Schema`] as [`check_columns`].
pub fn batch_to_prediction_refs<'a>(
    batch: &'a RecordBatch,
    context: &str,
    strict: bool,
) -> Result<Vec<PredictionRef<'a>>> {
    let mut rows = Vec::new();
    append_prediction_refs(batch, context, strict, &mut rows)?;
    Ok(rows)
}

/// [`batch_to_prediction_refs`], appending the batch's rows to `rows`
/// (no copy of rows between vectors).
///
/// # Errors
/// [`Error::Schema`] as [`check_columns`].
pub fn append_prediction_refs<'a>(
    batch: &'a RecordBatch,
    context: &str,
    strict: bool,
    rows: &mut Vec<PredictionRef<'a>>,
) -> Result<()> {
    check_columns(batch.schema().as_ref(), context, strict)?;
    let start = rows.len();
    rows.resize(start + batch.num_rows(), PredictionRef::default());
    fill_rows(batch, &mut rows[start..]);
    Ok(())
}

/// Fills `rows` (one a row of `batch`) column by column from the batch's
/// contract columns (missing ones left as they are).
fn fill_rows<'a, R: FillColumns<'a>>(batch: &'a RecordBatch, rows: &mut [R]) {
    for (idx, (name, kind)) in COLUMNS.iter().enumerate() {
        let Some(col) = batch.column_by_name(name) else {
            continue;
        };
        if col.data_type() == &DataType::Null {
            continue;
        }
        match kind {
            Kind::Str => {
                let col = StrCol::of(batch, name);
                R::fill_str(rows, idx, |i| col.get(i));
            }
            Kind::Int => {
                let a = col.as_primitive::<Int64Type>();
                R::fill_int(rows, idx, |i| a.is_valid(i).then(|| a.value(i)));
            }
            Kind::Float => {
                let a = col.as_primitive::<Float64Type>();
                R::fill_float(rows, idx, |i| a.is_valid(i).then(|| a.value(i)));
            }
        }
    }
}

/// Streams the file's batches (`columns`: top-level names to read, all if
/// `None`; names the file lacks are skipped). Memory: one batch of
/// `batch_rows` rows at a time.
///
/// # Errors
/// [`Error::Io`]/[`Error::Parquet`] naming the file, or what `f` returns.
pub fn for_each_batch(
    path: &Path,
    columns: Option<&[&str]>,
    batch_rows: usize,
    f: impl FnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    for_each_batch_as(path, columns, batch_rows, false, f)
}

/// [`for_each_batch`], with string columns decoded as dictionaries
/// (`Dictionary(Int32, Utf8)`) when `dictionaries`: a dictionary-encoded
/// column (config, model, fold, partition, metric...) is then read as
/// keys into its values, not as one string per row.
pub(crate) fn for_each_batch_as(
    path: &Path,
    columns: Option<&[&str]>,
    batch_rows: usize,
    dictionaries: bool,
    f: impl FnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    crate::footer::guard::guarded(path, || {
        for_each_batch_unguarded(path, columns, batch_rows, dictionaries, f)
    })
}

fn for_each_batch_unguarded(
    path: &Path,
    columns: Option<&[&str]>,
    batch_rows: usize,
    dictionaries: bool,
    mut f: impl FnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    let file = Blob::open(path).map_err(|e| Error::io(path, e))?;
    let mut handle = file.remote_handle();
    let err = |e| Error::parquet(path, e);
    // The embedded ARROW:schema is kept (nirs4all's arrays are large lists)
    // unless it declares dictionaries, which are plain strings in Parquet.
    let plain = ArrowReaderOptions::new().with_skip_arrow_metadata(true);
    let mut builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(err)?;
    if builder
        .schema()
        .fields()
        .iter()
        .any(|f| matches!(f.data_type(), DataType::Dictionary(..)))
    {
        let file = Blob::open(path).map_err(|e| Error::io(path, e))?;
        handle = file.remote_handle();
        builder = ParquetRecordBatchReaderBuilder::try_new_with_options(file, plain.clone())
            .map_err(err)?;
    }
    if dictionaries {
        let hinted: Vec<arrow_schema::FieldRef> = builder
            .schema()
            .fields()
            .iter()
            .map(|fl| match fl.data_type() {
                DataType::Utf8 | DataType::LargeUtf8
                    if fl.name() != "id"
                        && COLUMNS
                            .iter()
                            .any(|(n, k)| n == fl.name() && *k == Kind::Str) =>
                {
                    let t =
                        DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
                    std::sync::Arc::new(fl.as_ref().clone().with_data_type(t))
                }
                _ => fl.clone(),
            })
            .collect();
        let schema = std::sync::Arc::new(arrow_schema::Schema::new(hinted));
        let meta = builder.metadata().clone();
        let file = Blob::open(path).map_err(|e| Error::io(path, e))?;
        let opts = plain.with_schema(schema);
        // A schema the file cannot take reads as it is.
        if let Ok(m) = parquet::arrow::arrow_reader::ArrowReaderMetadata::try_new(meta, opts) {
            handle = file.remote_handle();
            builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, m);
        }
    }
    let mask = match columns {
        Some(names) => projection(builder.schema(), builder.parquet_schema(), names),
        None => ProjectionMask::all(),
    };
    if let Some(h) = &handle {
        prefetch(path, h, builder.metadata(), &mask, None)?;
    }
    let builder = builder.with_projection(mask);
    let reader = builder.with_batch_size(batch_rows).build().map_err(err)?;
    for batch in reader {
        f(batch.map_err(|e| Error::damaged(path, e))?)?;
    }
    Ok(())
}

/// Fetches, for an object of a bucket, the column chunks a read of
/// `mask` will decode (of the row groups holding `rows`, or all), in one
/// batch of ranged requests in flight together, so the read after it
/// makes none; nothing for a local file ([`crate::blob`]).
///
/// # Errors
/// [`Error::Io`] naming the file when a request fails.
pub(crate) fn prefetch(
    path: &Path,
    file: &crate::blob::Blob,
    md: &parquet::file::metadata::ParquetMetaData,
    mask: &ProjectionMask,
    rows: Option<&[u64]>,
) -> Result<()> {
    if file.object().is_none() {
        return Ok(());
    }
    let mut ranges = Vec::new();
    let mut first = 0u64;
    let mut next = rows.map(|r| r.iter().peekable());
    for rg in md.row_groups() {
        let end = first + rg.num_rows().max(0) as u64;
        let wanted = match next.as_mut() {
            None => true,
            Some(it) => {
                let mut any = false;
                while let Some(&&r) = it.peek() {
                    if r >= end {
                        break;
                    }
                    any |= r >= first;
                    it.next();
                }
                any
            }
        };
        if wanted {
            for (j, c) in rg.columns().iter().enumerate() {
                if mask.leaf_included(j) {
                    let (at, len) = c.byte_range();
                    ranges.push(at..at + len);
                }
            }
        }
        first = end;
    }
    file.prefetch(&ranges).map_err(|e| Error::io(path, e))
}

/// The projection of the top-level columns named in `names` (names the
/// file lacks are left out).
pub(crate) fn projection(
    schema: &arrow_schema::Schema,
    parquet: &parquet::schema::types::SchemaDescriptor,
    names: &[&str],
) -> ProjectionMask {
    let roots: Vec<usize> = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| names.contains(&f.name().as_str()))
        .map(|(i, _)| i)
        .collect();
    ProjectionMask::roots(parquet, roots)
}

/// A row selection of the sorted, distinct `rows`: only the pages holding
/// them are decoded.
pub(crate) fn row_selection(rows: &[u64]) -> parquet::arrow::arrow_reader::RowSelection {
    use parquet::arrow::arrow_reader::RowSelector;
    let mut selectors = Vec::new();
    let mut at = 0u64;
    for &r in rows {
        if r > at {
            selectors.push(RowSelector::skip((r - at) as usize));
        }
        selectors.push(RowSelector::select(1));
        at = r + 1;
    }
    selectors.into()
}

/// Reads every row of a prediction file (lenient about missing columns).
///
/// # Errors
/// As [`for_each_batch`] and [`batch_to_predictions`].
pub fn read_predictions(path: &Path) -> Result<Vec<Prediction>> {
    let mut out = Vec::new();
    let ctx = path.display().to_string();
    for_each_batch(path, None, 8192, |b| {
        out.extend(batch_to_predictions(&b, &ctx, false)?);
        Ok(())
    })?;
    Ok(out)
}

/// The columns a summary is computed from.
pub const SUMMARY_COLUMNS: [&str; 12] = [
    "id",
    "dataset_name",
    "config_name",
    "pipeline_uid",
    "model_name",
    "fold_id",
    "partition",
    "metric",
    "task_type",
    "val_score",
    "test_score",
    "train_score",
];

/// A string column of any Arrow string layout (dictionary-encoded
/// included), or a missing one (null).
pub(crate) enum StrCol<'a> {
    Utf8(&'a arrow_array::StringArray),
    Large(&'a arrow_array::LargeStringArray),
    View(&'a arrow_array::StringViewArray),
    Dict(&'a arrow_array::Int32Array, &'a arrow_array::StringArray),
    Missing,
}

impl<'a> StrCol<'a> {
    /// The column `name` of `batch` (missing or of another type: null).
    pub(crate) fn of(batch: &'a RecordBatch, name: &str) -> Self {
        match batch.column_by_name(name) {
            Some(c) => match c.data_type() {
                DataType::Utf8 => StrCol::Utf8(c.as_string::<i32>()),
                DataType::LargeUtf8 => StrCol::Large(c.as_string::<i64>()),
                DataType::Utf8View => StrCol::View(c.as_string_view()),
                DataType::Dictionary(k, v)
                    if k.as_ref() == &DataType::Int32 && v.as_ref() == &DataType::Utf8 =>
                {
                    let d = c.as_dictionary::<arrow_array::types::Int32Type>();
                    StrCol::Dict(d.keys(), d.values().as_string::<i32>())
                }
                _ => StrCol::Missing,
            },
            None => StrCol::Missing,
        }
    }

    /// Row `i`'s value, `None` for null.
    pub(crate) fn get(&self, i: usize) -> Option<&'a str> {
        match self {
            StrCol::Utf8(a) => a.is_valid(i).then(|| a.value(i)),
            StrCol::Large(a) => a.is_valid(i).then(|| a.value(i)),
            StrCol::View(a) => a.is_valid(i).then(|| a.value(i)),
            StrCol::Dict(k, v) => k.is_valid(i).then(|| v.value(k.value(i) as usize)),
            StrCol::Missing => None,
        }
    }
}

/// A string column as [`for_each_view`] reads it, a row at a time: a
/// dictionary's values are located once, so a row's value is its key's
/// slot (through [`StrCol::get`] each row checked the key's bounds and
/// read two offsets: 13% of a summary's building on the 1M-row store).
enum ViewCol<'a> {
    Table {
        keys: &'a [i32],
        nulls: Option<&'a arrow_buffer::NullBuffer>,
        values: Vec<&'a str>,
    },
    Other(StrCol<'a>),
}

impl<'a> ViewCol<'a> {
    fn of(c: StrCol<'a>) -> Self {
        match c {
            StrCol::Dict(k, v) => ViewCol::Table {
                keys: k.values(),
                nulls: k.nulls(),
                values: (0..v.len()).map(|j| v.value(j)).collect(),
            },
            c => ViewCol::Other(c),
        }
    }

    /// Row `i`'s value, as [`StrCol::get`].
    #[inline]
    fn get(&self, i: usize) -> Option<&'a str> {
        match self {
            ViewCol::Table {
                keys,
                nulls,
                values,
            } => {
                if nulls.is_some_and(|n| n.is_null(i)) {
                    None
                } else {
                    Some(values[keys[i] as usize])
                }
            }
            ViewCol::Other(c) => c.get(i),
        }
    }
}

/// Feeds every row of `path` to `builder`, reading only the twelve
/// [`SUMMARY_COLUMNS`] and viewing strings in place (no per-row
/// allocation). Memory: one batch of 8,192 rows plus the builder. Row
/// numbers in errors are the file's.
///
/// # Errors
/// As [`for_each_batch`]; [`Error::Schema`] for a mistyped column;
/// what [`SummaryBuilder::observe`] returns (an unknown metric), wrapped
/// with the file's path.
pub fn summarize(path: &Path, builder: &mut SummaryBuilder) -> Result<u64> {
    let ctx = path.display().to_string();
    let mut n = 0u64;
    for_each_batch_as(path, Some(&SUMMARY_COLUMNS), 8192, true, |b| {
        n += summarize_batch(&b, builder, &ctx).map_err(|e| match e {
            // Already names the file.
            e @ Error::Schema { .. } => e,
            e => Error::WithPath {
                path: path.to_path_buf(),
                source: Box::new(e),
            },
        })?;
        Ok(())
    })?;
    Ok(n)
}

/// Feeds the rows of one batch (any superset of [`SUMMARY_COLUMNS`]; a
/// missing column reads as null) to `builder`, viewing strings in place.
/// Returns the rows fed.
///
/// # Errors
/// [`Error::Schema`] naming `context` for a mistyped column; what
/// [`SummaryBuilder::observe`] returns.
pub fn summarize_batch(
    b: &RecordBatch,
    builder: &mut SummaryBuilder,
    context: &str,
) -> Result<u64> {
    for_each_view(b, context, |_, view| {
        builder.observe(builder.rows() as usize, view)
    })?;
    Ok(b.num_rows() as u64)
}

/// Calls `f` with each row of a batch (any superset of [`SUMMARY_COLUMNS`];
/// a missing column reads as null) as the summary's borrowed view: strings
/// viewed in place, nothing allocated per row.
///
/// # Errors
/// [`Error::Schema`] naming `context` for a mistyped column; what `f`
/// returns.
pub fn for_each_view(
    b: &RecordBatch,
    context: &str,
    mut f: impl FnMut(usize, &RowView<'_>) -> Result<()>,
) -> Result<()> {
    check_columns(b.schema().as_ref(), context, false)?;
    let s = |name| ViewCol::of(StrCol::of(b, name));
    let (id, ds, cfg, uid, model) = (
        s("id"),
        s("dataset_name"),
        s("config_name"),
        s("pipeline_uid"),
        s("model_name"),
    );
    let (fold, part, metric, task) = (s("fold_id"), s("partition"), s("metric"), s("task_type"));
    let fl = |name: &str| {
        b.column_by_name(name)
            .filter(|c| c.data_type() == &DataType::Float64)
            .map(|c| c.as_primitive::<Float64Type>())
    };
    let scores = [fl("val_score"), fl("test_score"), fl("train_score")];
    let score = |k: usize, i: usize| scores[k].and_then(|a| a.is_valid(i).then(|| a.value(i)));
    for i in 0..b.num_rows() {
        let view = RowView {
            id: id.get(i),
            dataset_name: ds.get(i),
            config_name: cfg.get(i),
            pipeline_uid: uid.get(i),
            model_name: model.get(i),
            fold_id: fold.get(i),
            partition: part.get(i),
            metric: metric.get(i),
            task_type: task.get(i),
            scores: [score(0, i), score(1, i), score(2, i)],
        };
        f(i, &view)?;
    }
    Ok(())
}

/// A batch with the contract's 35 columns (checked by the caller) in the
/// contract's exact Arrow types: large_utf8 and utf8-view strings become
/// utf8 (values shared where the layout allows), all-null columns typed.
///
/// # Errors
/// [`Error::Arrow`] when a string column holds over 2 GiB (utf8's limit).
pub fn to_contract(b: &RecordBatch) -> Result<RecordBatch> {
    use arrow_array::{new_null_array, ArrayRef, StringArray};
    let schema = crate::schema::meta_schema();
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(COLUMNS.len());
    for (field, (name, _)) in schema.fields().iter().zip(COLUMNS) {
        let col = b
            .column_by_name(name)
            .cloned()
            .unwrap_or_else(|| new_null_array(field.data_type(), b.num_rows()));
        let col: ArrayRef = match col.data_type() {
            DataType::LargeUtf8 => {
                let a = col.as_string::<i64>();
                let offsets: Vec<i32> = a
                    .value_offsets()
                    .iter()
                    .map(|o| i32::try_from(*o))
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|_| {
                        arrow_schema::ArrowError::ComputeError(format!(
                            "column {name:?} holds over 2 GiB of strings"
                        ))
                    })?;
                let offsets = arrow_buffer::OffsetBuffer::new(offsets.into());
                std::sync::Arc::new(StringArray::try_new(
                    offsets,
                    a.values().clone(),
                    a.nulls().cloned(),
                )?)
            }
            DataType::Utf8View => {
                let s: StringArray = col.as_string_view().iter().collect();
                std::sync::Arc::new(s)
            }
            DataType::Null => new_null_array(field.data_type(), b.num_rows()),
            _ => col,
        };
        cols.push(col);
    }
    Ok(RecordBatch::try_new(schema, cols)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The borrowed rows are the owned ones without the copies: on real
    /// files (nirs4all's, an older layout, n4a's), strings read plain and
    /// as dictionaries.
    #[test]
    fn borrowed_rows_equal_owned_rows() {
        for name in [
            "corn_moisture.meta.parquet",
            "grain_class.meta.parquet",
            "old_layout.meta.parquet",
            "n4a_1_3.meta.parquet",
        ] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures")
                .join(name);
            for dictionaries in [false, true] {
                let mut rows = 0;
                for_each_batch_as(&path, None, 1000, dictionaries, |b| {
                    let owned = batch_to_predictions(&b, name, false)?;
                    let refs = batch_to_prediction_refs(&b, name, false)?;
                    assert_eq!(owned.len(), refs.len());
                    for (o, r) in owned.iter().zip(&refs) {
                        assert_eq!(&r.to_prediction(), o, "{name}");
                        assert_eq!(&o.as_row(), r, "{name}");
                    }
                    rows += owned.len();
                    Ok(())
                })
                .unwrap();
                assert!(rows > 0, "{name}");
            }
        }
    }
}
