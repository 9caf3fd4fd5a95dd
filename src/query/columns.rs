//! Reading just the columns a query needs from one file, as Arrow arrays:
//! facet strings as dictionaries (a key per row into the column chunk's
//! values, so a filter or a group-by looks at each distinct value once),
//! scores and counts as plain numbers, `id` and other free text as plain
//! strings (they are unique per row; a dictionary would only cost).
//!
//! One open, one footer parse (without decoding `ARROW:schema`: the types
//! come from the parquet schema, so nirs4all's 600 KB schema copy is never
//! base64-decoded), one projection, and optionally a row selection (only
//! the pages holding those rows are decompressed).

use crate::blob::Blob;
use std::path::Path;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, FieldRef, Schema};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};

use crate::error::{Error, Result};
use crate::footer::FileKey;
use crate::rows::{projection, row_selection};

/// Rows a batch holds at most: a whole nirs4all row group (up to 1M rows)
/// comes back as one batch, so per-batch work (a dictionary's predicate)
/// is done once per file.
const BATCH_ROWS: usize = 1 << 20;

/// String columns read as dictionaries: [`crate::schema::is_facet`].
pub(crate) fn is_dictionary(name: &str) -> bool {
    crate::schema::is_facet(name)
}

/// The footer as [`read_known`] parses it (types from the parquet schema).
///
/// # Errors
/// [`Error::Parquet`] naming the file.
pub(crate) fn load_meta(path: &Path, file: &Blob) -> Result<ArrowReaderMetadata> {
    ArrowReaderMetadata::load(
        file,
        ArrowReaderOptions::new().with_skip_arrow_metadata(true),
    )
    .map_err(|e| Error::parquet(path, e))
}

/// `m` without the footer's key/values, for keeping between reads: a
/// read of columns or rows never looks at them (the Arrow schema is
/// skipped, the summary is the footer layer's), and in a nirs4all file
/// they are 600 KB of JSON and schema copy, 60 MB over `big`'s 100 files
/// held by a server's cache for nothing. Cost: a copy of the row groups'
/// metadata (one row group of 35 column chunks in nirs4all's files).
///
/// # Errors
/// [`Error::Parquet`] naming the file if the schema does not convert
/// (it did once already, so never in practice).
pub(crate) fn without_key_values(
    path: &Path,
    m: &ArrowReaderMetadata,
) -> Result<ArrowReaderMetadata> {
    use parquet::file::metadata::{FileMetaData, ParquetMetaDataBuilder};
    let md = m.metadata();
    let f = md.file_metadata();
    if f.key_value_metadata().is_none() {
        return Ok(m.clone());
    }
    let bare = FileMetaData::new(
        f.version(),
        f.num_rows(),
        f.created_by().map(str::to_string),
        None,
        f.schema_descr_ptr(),
        f.column_orders().cloned(),
    );
    let rebuilt = ParquetMetaDataBuilder::new(bare)
        .set_row_groups(md.row_groups().to_vec())
        .build();
    ArrowReaderMetadata::try_new(
        Arc::new(rebuilt),
        ArrowReaderOptions::new().with_skip_arrow_metadata(true),
    )
    .map_err(|e| Error::parquet(path, e))
}

/// The columns `names` of the file at `path` (names the file lacks are
/// absent from the batches: callers read them as null), all rows or the
/// sorted, distinct `rows`; facet strings as dictionaries when
/// `dictionaries`, else as the file has them. Memory: the projected
/// columns of the file. `known`: the file's parsed footer when the caller
/// holds it (for the file at `key`; a file found changed is parsed
/// afresh), saving the footer parse (0.5 ms for a nirs4all footer with
/// 600 KB of key/values).
///
/// # Errors
/// [`Error::Io`] or [`Error::Parquet`] naming the file (a damaged page
/// included); a row past the end is [`Error::Corrupt`].
pub(crate) fn read_known(
    path: &Path,
    names: &[&str],
    rows: Option<&[u64]>,
    dictionaries: bool,
    known: Option<(ArrowReaderMetadata, FileKey)>,
) -> Result<Vec<RecordBatch>> {
    crate::footer::guard::guarded(path, || {
        read_unguarded(path, names, rows, dictionaries, known)
    })
}

/// The rows of each row group but the last when they are all the same,
/// and the last has no more (what n4a's writer and most writers leave):
/// then batches of that size are the row groups, one each.
fn row_group_rows(meta: &parquet::file::metadata::ParquetMetaData) -> Option<usize> {
    let rgs = meta.row_groups();
    let (last, rest) = rgs.split_last()?;
    let first = rest.first()?.num_rows();
    (rest.iter().all(|r| r.num_rows() == first) && last.num_rows() <= first && first > 0)
        .then_some(first as usize)
}

fn read_unguarded(
    path: &Path,
    names: &[&str],
    rows: Option<&[u64]>,
    dictionaries: bool,
    known: Option<(ArrowReaderMetadata, FileKey)>,
) -> Result<Vec<RecordBatch>> {
    let err = |e| Error::parquet(path, e);
    let file = Blob::open(path).map_err(|e| Error::io(path, e))?;
    let handle = file.remote_handle();
    let plain = ArrowReaderOptions::new().with_skip_arrow_metadata(true);
    let meta = match known {
        Some((m, key)) if FileKey::of_blob(&file).is_ok_and(|k| k == key) => m,
        _ => load_meta(path, &file)?,
    };
    let hinted: Vec<FieldRef> = meta
        .schema()
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 if dictionaries && is_dictionary(f.name()) => {
                let t = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
                Arc::new(Field::new(f.name(), t, true))
            }
            _ => f.clone(),
        })
        .collect();
    let meta = ArrowReaderMetadata::try_new(
        meta.metadata().clone(),
        plain.with_schema(Arc::new(Schema::new(hinted))),
    )
    .or_else(|_| {
        ArrowReaderMetadata::load(
            &file,
            ArrowReaderOptions::new().with_skip_arrow_metadata(true),
        )
    })
    .map_err(err)?;
    let total = meta.metadata().file_metadata().num_rows().max(0) as u64;
    let mask = projection(meta.schema(), meta.parquet_schema(), names);
    let batch = match row_group_rows(meta.metadata()) {
        // Strings read as dictionaries: a batch across two row groups
        // meets two dictionaries and arrow-rs rebuilds one by hashing
        // every value (a sixth of a deep page's decoding on the 1M-row
        // store mirror, 2 row groups a file); a batch a row group keeps
        // each row group's own.
        Some(rg) if dictionaries && rows.is_none() => rg,
        _ => total as usize,
    };
    if let Some(h) = &handle {
        crate::rows::prefetch(path, h, meta.metadata(), &mask, rows)?;
    }
    let mut builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta)
        .with_projection(mask)
        .with_batch_size(batch.clamp(1, BATCH_ROWS));
    if let Some(rows) = rows {
        if let Some(&last) = rows.last() {
            if last >= total {
                return Err(Error::corrupt(
                    path,
                    format!("row {last} asked of a file of {total} rows"),
                ));
            }
        }
        builder = builder.with_row_selection(row_selection(rows));
    }
    let reader = builder.build().map_err(err)?;
    reader
        .map(|b| b.map_err(|e| Error::damaged(path, e)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a server's cache keeps for reading rows has no key/values
    /// (nirs4all's 600 KB of JSON) and reads the same rows as the whole
    /// footer does.
    #[test]
    fn kept_metadata_has_no_key_values_and_reads_the_same_rows() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/corn_moisture.meta.parquet");
        let file = Blob::open(&path).unwrap();
        let key = FileKey::of_blob(&file).unwrap();
        let whole = load_meta(&path, &file).unwrap();
        assert!(whole
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .is_some());
        let bare = without_key_values(&path, &whole).unwrap();
        assert!(bare
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .is_none());
        assert!(bare.metadata().memory_size() < whole.metadata().memory_size());
        let names = ["id", "model_name", "val_score", "scores"];
        let rows = [0u64, 3, 7];
        let a = read_known(&path, &names, Some(&rows), true, Some((whole, key))).unwrap();
        let b = read_known(&path, &names, Some(&rows), true, Some((bare, key))).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.iter().map(RecordBatch::num_rows).sum::<usize>(), 3);
    }
}
