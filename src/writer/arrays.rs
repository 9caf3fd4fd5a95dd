//! The `<dataset>.arrays.parquet` side file: each array stored once per
//! content hash (SHA-256 of its little-endian float64 bytes), whatever its
//! type, and referenced from the rows' `*_id` columns.
//!
//! Memory: the hash→id map (about 100 bytes per distinct array) plus one
//! buffered row group of array data (flushed at `row_group_bytes`).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{Float64Builder, Int64Builder, ListBuilder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field};

use super::sink::ParquetSink;
use crate::error::{Error, Result};
use crate::files::TempFile;
use crate::footer::meta as footer;
use crate::rows;
use crate::rows::arrays::{list_values, strings};
use crate::schema::{arrays_schema, ArrayData};

/// Streams arrays into a new arrays file, deduplicated by content hash.
pub struct ArraysWriter {
    target: PathBuf,
    tmp: TempFile,
    sink: ParquetSink,
    by_hash: HashMap<String, String>,
    ids: HashSet<String>,
    ids_b: StringBuilder,
    data_b: ListBuilder<Float64Builder>,
    hash_b: StringBuilder,
    size_b: Int64Builder,
    shape_b: StringBuilder,
    type_b: StringBuilder,
    buffered: usize,
    buffered_bytes: usize,
    row_group_bytes: usize,
}

impl ArraysWriter {
    /// Starts a new arrays file for `target`; with `carry`, if `target` exists its arrays
    /// are carried over (row groups copied without decoding when the schema
    /// matches) and its hashes are known, so nothing is stored twice.
    ///
    /// # Errors
    /// I/O or parquet errors naming the file; [`Error::Schema`] if the
    /// existing file lacks `array_id`/`array_hash`.
    pub fn open(target: &Path, row_group_bytes: usize, carry: bool) -> Result<Self> {
        let (tmp, file) = TempFile::create(target)?;
        let sink = ParquetSink::new(file, tmp.path(), arrays_schema())?;
        let mut w = ArraysWriter {
            target: target.to_path_buf(),
            tmp,
            sink,
            by_hash: HashMap::new(),
            ids: HashSet::new(),
            ids_b: StringBuilder::new(),
            data_b: ListBuilder::new(Float64Builder::new()).with_field(Arc::new(Field::new(
                "element",
                DataType::Float64,
                true,
            ))),
            hash_b: StringBuilder::new(),
            size_b: Int64Builder::new(),
            shape_b: StringBuilder::new(),
            type_b: StringBuilder::new(),
            buffered: 0,
            buffered_bytes: 0,
            row_group_bytes,
        };
        if carry && target.exists() {
            w.carry_over(target)?;
        }
        Ok(w)
    }

    fn carry_over(&mut self, target: &Path) -> Result<()> {
        let (file, meta) = footer::open_metadata(target)?;
        self.sink
            .carry_keys(crate::footer::keys::OldKeys::of(&meta));
        let ctx = target.display().to_string();
        rows::for_each_batch(target, Some(&["array_id", "array_hash"]), 65536, |b| {
            let (Some(ids), Some(hashes)) =
                (b.column_by_name("array_id"), b.column_by_name("array_hash"))
            else {
                return Err(Error::Schema {
                    context: ctx.clone(),
                    reason: "arrays file lacks array_id or array_hash".to_string(),
                });
            };
            let ids = strings(ids.as_ref());
            let hashes = strings(hashes.as_ref());
            for (id, h) in ids.into_iter().zip(hashes) {
                if let (Some(id), Some(h)) = (id, h) {
                    self.ids.insert(id.clone());
                    self.by_hash.entry(h).or_insert(id);
                }
            }
            Ok(())
        })?;
        let ours = parquet::arrow::ArrowSchemaConverter::new()
            .convert(&arrays_schema())
            .map_err(|e| Error::parquet(target, e))?;
        if super::same_leaves(&ours, meta.file_metadata().schema_descr()) {
            self.sink.copy_row_groups(&file, target, &meta)
        } else {
            self.reencode(target)
        }
    }

    /// Rewrites an arrays file of another layout (for example large_list)
    /// into ours, value by value.
    fn reencode(&mut self, target: &Path) -> Result<()> {
        let ctx = target.display().to_string();
        rows::for_each_batch(target, None, 4096, |b| {
            let col = |n: &str| {
                b.column_by_name(n).cloned().ok_or_else(|| Error::Schema {
                    context: ctx.clone(),
                    reason: format!("arrays file lacks column {n:?}"),
                })
            };
            let (ids, data, hashes) = (col("array_id")?, col("array_data")?, col("array_hash")?);
            let (shapes, types) = (col("array_shape")?, col("array_type")?);
            let (ids, hashes) = (strings(ids.as_ref()), strings(hashes.as_ref()));
            let (shapes, types) = (strings(shapes.as_ref()), strings(types.as_ref()));
            for i in 0..b.num_rows() {
                let values = list_values(data.as_ref(), i);
                self.push_row(
                    ids[i].clone(),
                    values,
                    hashes[i].clone(),
                    shapes[i].clone(),
                    types[i].clone(),
                )?;
            }
            Ok(())
        })
    }

    /// Stores `array` (unless its content is already stored) and returns its id.
    ///
    /// # Errors
    /// Parquet errors when a full row group is flushed.
    pub fn store(&mut self, array: &ArrayData, array_type: &str) -> Result<String> {
        let hash = array.content_hash();
        if let Some(id) = self.by_hash.get(&hash) {
            return Ok(id.clone());
        }
        let mut len = 12;
        let id = loop {
            let id = format!("array_{}", &hash[..len]);
            if !self.ids.contains(&id) {
                break id;
            }
            len += 2;
        };
        self.ids.insert(id.clone());
        self.by_hash.insert(hash.clone(), id.clone());
        let shape = format!(
            "[{}]",
            array
                .shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let values = Some(array.values.iter().map(|v| Some(*v)).collect());
        self.push_row(
            Some(id.clone()),
            values,
            Some(hash),
            Some(shape),
            Some(array_type.to_string()),
        )?;
        Ok(id)
    }

    fn push_row(
        &mut self,
        id: Option<String>,
        values: Option<Vec<Option<f64>>>,
        hash: Option<String>,
        shape: Option<String>,
        kind: Option<String>,
    ) -> Result<()> {
        self.ids_b.append_option(id);
        let n = values.as_ref().map_or(0, Vec::len);
        self.data_b.append_option(values);
        self.hash_b.append_option(hash);
        self.size_b.append_value(n as i64);
        self.shape_b.append_option(shape);
        self.type_b.append_option(kind);
        self.buffered += 1;
        self.buffered_bytes += 8 * n + 128;
        if self.buffered_bytes >= self.row_group_bytes {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.buffered == 0 {
            return Ok(());
        }
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.ids_b.finish()),
            Arc::new(self.data_b.finish()),
            Arc::new(self.hash_b.finish()),
            Arc::new(self.size_b.finish()),
            Arc::new(self.shape_b.finish()),
            Arc::new(self.type_b.finish()),
        ];
        let batch = RecordBatch::try_new(arrays_schema(), cols)?;
        self.buffered = 0;
        self.buffered_bytes = 0;
        self.sink.write_batch(&batch)
    }

    /// Writes the footer; the file is complete but not yet in place.
    ///
    /// # Errors
    /// Parquet errors naming the temporary file.
    pub fn close(mut self) -> Result<ClosedArrays> {
        self.flush()?;
        let file = self.sink.finish(&[], None)?;
        Ok(ClosedArrays {
            tmp: self.tmp,
            file,
            target: self.target,
        })
    }
}

/// A finished arrays file waiting to be renamed over its target (before the
/// meta file: see the writer's module docs).
pub struct ClosedArrays {
    tmp: TempFile,
    file: File,
    target: PathBuf,
}

impl ClosedArrays {
    /// fsync, rename into place, fsync the folder.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file.
    pub fn commit(self) -> Result<()> {
        self.tmp.commit(self.file, &self.target)
    }
}
