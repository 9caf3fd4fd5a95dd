//! The arrays files of an export: nirs4all's `_PARQUET_SCHEMA`, each
//! prediction's arrays written once, in bounded chunks, part files merged.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{Float64Builder, Int32Builder, ListBuilder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::CHUNK;
use crate::error::{Error, Result};
use crate::rows::arrays::read_arrays;
use crate::schema::{ArrayData, PredictionRef};

/// nirs4all's `_PARQUET_SCHEMA` (array_store.py), column for column.
pub fn arrays_schema() -> SchemaRef {
    let list = |t: DataType| DataType::List(Arc::new(Field::new("item", t, true)));
    let utf8 = |n: &str| Field::new(n, DataType::Utf8, true);
    let f64s = |n: &str| Field::new(n, list(DataType::Float64), true);
    let i32s = |n: &str| Field::new(n, list(DataType::Int32), true);
    Arc::new(Schema::new(vec![
        utf8("prediction_id"),
        utf8("dataset_name"),
        utf8("model_name"),
        utf8("fold_id"),
        utf8("partition"),
        utf8("metric"),
        Field::new("val_score", DataType::Float64, true),
        utf8("task_type"),
        f64s("y_true"),
        i32s("y_true_shape"),
        f64s("y_pred"),
        i32s("y_pred_shape"),
        f64s("y_proba"),
        i32s("y_proba_shape"),
        f64s("X"),
        i32s("X_shape"),
        f64s("spectra"),
        i32s("spectra_shape"),
        i32s("sample_indices"),
        f64s("weights"),
        utf8("sample_metadata"),
        utf8("result_metadata"),
    ]))
}

/// The ids of the arrays a row references (y_true, y_pred, y_proba,
/// sample_indices, weights), those it has.
pub(super) fn array_ids<'a>(r: &PredictionRef<'a>) -> impl Iterator<Item = &'a str> {
    [
        r.y_true_id,
        r.y_pred_id,
        r.y_proba_id,
        r.sample_indices_id,
        r.weights_id,
    ]
    .into_iter()
    .flatten()
}

/// A new arrays file at `path`: nirs4all's schema, zstd level 3 as its
/// `ArrayStore` writes them.
pub(super) fn arrays_writer(path: &Path) -> Result<ArrowWriter<File>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("level 3 is valid"),
        ))
        .set_created_by(format!("n4a version {}", env!("CARGO_PKG_VERSION")))
        .build();
    ArrowWriter::try_new(file, arrays_schema(), Some(props)).map_err(|e| Error::parquet(path, e))
}

/// The arrays of `rows` (read from the source arrays file by id, a chunk
/// at a time) written to `part` in nirs4all's layout. Returns how many
/// predictions got a row.
pub(super) fn write_arrays(
    src: &Path,
    part: &Path,
    ds: &str,
    rows: &[PredictionRef<'_>],
    ids: &[&str],
    notes: &mut Vec<String>,
) -> Result<u64> {
    let referenced = |r: &PredictionRef<'_>| array_ids(r).count();
    let wanted: usize = rows.iter().map(referenced).sum();
    if wanted == 0 {
        return Ok(0);
    }
    if !src.is_file() {
        notes.push(format!(
            "{} is missing: {} prediction(s) exported without arrays",
            src.display(),
            rows.iter().filter(|r| referenced(r) > 0).count()
        ));
        return Ok(0);
    }
    let schema = arrays_schema();
    let mut w = arrays_writer(part)?;
    let (mut written, mut missing) = (0u64, 0u64);
    for (chunk, keys) in rows.chunks(CHUNK).zip(ids.chunks(CHUNK)) {
        let ids: Vec<&str> = chunk.iter().flat_map(array_ids).collect();
        if ids.is_empty() {
            continue;
        }
        let found = read_arrays(src, &ids)?;
        let mut b = ArraysBatch::default();
        for (r, id) in chunk.iter().zip(keys) {
            if referenced(r) == 0 {
                continue;
            }
            let get = |aid: Option<&str>, missing: &mut u64| {
                let aid = aid?;
                let a = found.get(aid);
                if a.is_none() {
                    *missing += 1;
                }
                a
            };
            let arrays = [
                get(r.y_true_id, &mut missing),
                get(r.y_pred_id, &mut missing),
                get(r.y_proba_id, &mut missing),
                get(r.sample_indices_id, &mut missing),
                get(r.weights_id, &mut missing),
            ];
            if arrays.iter().all(Option::is_none) {
                continue;
            }
            b.push(id, ds, r, arrays).map_err(|reason| Error::Corrupt {
                path: src.to_path_buf(),
                reason: format!("prediction {id}: {reason}"),
            })?;
            written += 1;
        }
        if b.rows > 0 {
            w.write(&b.finish(&schema, part)?)
                .map_err(|e| Error::parquet(part, e))?;
        }
    }
    close_arrays(w, part)?;
    if missing > 0 {
        notes.push(format!(
            "{missing} array id(s) referenced by rows are not in {}: those arrays are absent",
            src.display()
        ));
    }
    Ok(written)
}

/// Column builders of one arrays batch.
#[derive(Default)]
struct ArraysBatch {
    rows: usize,
    text: [StringBuilder; 7],
    val: Float64Builder,
    y_true: ListBuilder<Float64Builder>,
    y_true_shape: ListBuilder<Int32Builder>,
    y_pred: ListBuilder<Float64Builder>,
    y_pred_shape: ListBuilder<Int32Builder>,
    y_proba: ListBuilder<Float64Builder>,
    y_proba_shape: ListBuilder<Int32Builder>,
    x: ListBuilder<Float64Builder>,
    x_shape: ListBuilder<Int32Builder>,
    spectra: ListBuilder<Float64Builder>,
    spectra_shape: ListBuilder<Int32Builder>,
    sample_indices: ListBuilder<Int32Builder>,
    weights: ListBuilder<Float64Builder>,
    metadata: [StringBuilder; 2],
}

/// A target's shape when it is not a plain vector. nirs4all's own writer
/// keeps it only for matrices of more than one column, so a column vector
/// `[n, 1]` would read back as `[n]`; its reader reshapes by any stored
/// shape, so the source's shape is kept and reads back equal.
pub(super) fn target_shape(a: Option<&ArrayData>) -> Option<&[usize]> {
    a.filter(|a| a.shape.len() > 1).map(|a| a.shape.as_slice())
}

pub(super) fn put_f64s(b: &mut ListBuilder<Float64Builder>, a: Option<&ArrayData>) {
    match a {
        Some(a) => {
            b.values().append_slice(&a.values);
            b.append(true);
        }
        None => b.append(false),
    }
}

pub(super) fn put_shape(
    b: &mut ListBuilder<Int32Builder>,
    shape: Option<&[usize]>,
) -> std::result::Result<(), String> {
    match shape {
        Some(s) => {
            for d in s {
                let d = i32::try_from(*d).map_err(|_| format!("dimension {d} exceeds int32"))?;
                b.values().append_value(d);
            }
            b.append(true);
        }
        None => b.append(false),
    }
    Ok(())
}

impl ArraysBatch {
    /// Adds one prediction's row; `arrays` are y_true, y_pred, y_proba,
    /// sample_indices and weights.
    fn push(
        &mut self,
        id: &str,
        ds: &str,
        r: &PredictionRef<'_>,
        arrays: [Option<&ArrayData>; 5],
    ) -> std::result::Result<(), String> {
        let [y_true, y_pred, y_proba, indices, weights] = arrays;
        let texts = [
            Some(id),
            Some(ds),
            Some(r.model_name.unwrap_or("")),
            Some(r.fold_id.unwrap_or("")),
            Some(r.partition.unwrap_or("")),
            Some(r.metric.unwrap_or("")),
            Some(r.task_type.unwrap_or("")),
        ];
        // nirs4all's column order: the 6 names, val_score, then task_type.
        for (b, t) in self.text.iter_mut().zip(texts) {
            b.append_option(t);
        }
        self.val.append_option(r.val_score);
        // A target's shape only for a matrix; y_proba's always.
        put_f64s(&mut self.y_true, y_true);
        put_shape(&mut self.y_true_shape, target_shape(y_true))?;
        put_f64s(&mut self.y_pred, y_pred);
        put_shape(&mut self.y_pred_shape, target_shape(y_pred))?;
        put_f64s(&mut self.y_proba, y_proba);
        put_shape(&mut self.y_proba_shape, y_proba.map(|a| a.shape.as_slice()))?;
        put_f64s(&mut self.x, None);
        put_shape(&mut self.x_shape, None)?;
        put_f64s(&mut self.spectra, None);
        put_shape(&mut self.spectra_shape, None)?;
        match indices {
            Some(a) => {
                for v in &a.values {
                    if v.fract() != 0.0 || *v < f64::from(i32::MIN) || *v > f64::from(i32::MAX) {
                        return Err(format!("sample index {v} is not an int32"));
                    }
                    self.sample_indices.values().append_value(*v as i32);
                }
                self.sample_indices.append(true);
            }
            None => self.sample_indices.append(false),
        }
        put_f64s(&mut self.weights, weights);
        for b in &mut self.metadata {
            b.append_null();
        }
        self.rows += 1;
        Ok(())
    }

    fn finish(mut self, schema: &SchemaRef, part: &Path) -> Result<RecordBatch> {
        let [id, ds, model, fold, partition, metric, task] =
            self.text.each_mut().map(|b| b.finish());
        let [sm, rm] = self.metadata.each_mut().map(|b| b.finish());
        let cols: Vec<ArrayRef> = vec![
            Arc::new(id),
            Arc::new(ds),
            Arc::new(model),
            Arc::new(fold),
            Arc::new(partition),
            Arc::new(metric),
            Arc::new(self.val.finish()),
            Arc::new(task),
            Arc::new(self.y_true.finish()),
            Arc::new(self.y_true_shape.finish()),
            Arc::new(self.y_pred.finish()),
            Arc::new(self.y_pred_shape.finish()),
            Arc::new(self.y_proba.finish()),
            Arc::new(self.y_proba_shape.finish()),
            Arc::new(self.x.finish()),
            Arc::new(self.x_shape.finish()),
            Arc::new(self.spectra.finish()),
            Arc::new(self.spectra_shape.finish()),
            Arc::new(self.sample_indices.finish()),
            Arc::new(self.weights.finish()),
            Arc::new(sm),
            Arc::new(rm),
        ];
        RecordBatch::try_new(schema.clone(), cols).map_err(|e| Error::parquet(part, e.into()))
    }
}

/// Moves each dataset's part file to its arrays file; datasets whose
/// names sanitise to the same file (nirs4all keys rows by id, so one file
/// may hold several datasets) are concatenated into it.
pub(super) fn merge_parts(parts: Vec<(PathBuf, PathBuf)>) -> Result<()> {
    let mut by_target: HashMap<PathBuf, Vec<PathBuf>> = HashMap::new();
    for (part, target) in parts {
        by_target.entry(target).or_default().push(part);
    }
    for (target, parts) in by_target {
        if let [one] = parts.as_slice() {
            std::fs::rename(one, &target).map_err(|e| Error::io(&target, e))?;
            continue;
        }
        let mut w = arrays_writer(&target)?;
        for p in &parts {
            let f = File::open(p).map_err(|e| Error::io(p, e))?;
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
                .and_then(|b| b.build())
                .map_err(|e| Error::parquet(p, e))?;
            for batch in reader {
                let batch = batch.map_err(|e| Error::parquet(p, e.into()))?;
                w.write(&batch).map_err(|e| Error::parquet(&target, e))?;
            }
            std::fs::remove_file(p).map_err(|e| Error::io(p, e))?;
        }
        close_arrays(w, &target)?;
    }
    Ok(())
}

/// Writes an arrays file's footer and seals it for every reader
/// (`footer::seal`: column orders older readers know).
pub(super) fn close_arrays(w: ArrowWriter<File>, path: &Path) -> Result<()> {
    let file = w.into_inner().map_err(|e| Error::parquet(path, e))?;
    crate::footer::seal(&file, path)
}
