//! A parquet file being written: row groups encoded from Arrow batches,
//! row groups copied byte-for-byte from another file, and a footer whose
//! key/value metadata (the summary, `ARROW:schema`) is known only at close,
//! sealed in the form every reader of our users accepts (`footer::seal`).
//!
//! Built on `SerializedFileWriter` with the Arrow column encoders rather than
//! `ArrowWriter`, because `ArrowWriter` cannot splice already-encoded column
//! chunks and fixes `ARROW:schema` at creation, before the summary exists.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::arrow_writer::{compute_leaves, ArrowRowGroupWriterFactory};
use parquet::arrow::ArrowSchemaConverter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::ParquetMetaData;

use crate::footer::keys::{self, OldKeys};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;

use crate::error::{Error, Result};
use crate::footer;
use crate::summary::FooterParts;

/// Uncompressed bytes a data page holds at most (the parquet crate's
/// default is 1 MiB). A query that wants one row (a page of results, a top
/// list's details) decompresses the page holding it in every column: with
/// 1 MiB pages of `scores` (about 290 bytes a row) and `id`, that was a
/// sixth of a deep page's time on the 1M-row store mirror. At 64 KiB the
/// files are no larger (51 against 52 MB for that mirror), writing is no
/// slower (import 5.5 s against 5.8-6.1 s), a full-scan group-by takes
/// the same time (A/B 0.99) and the first page of a sort 0.82 of it.
const PAGE_BYTES: usize = 64 << 10;

/// A parquet file under construction.
pub struct ParquetSink {
    writer: SerializedFileWriter<File>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    path: PathBuf,
    row_groups: usize,
    num_rows: u64,
    old_keys: OldKeys,
}

impl ParquetSink {
    /// Starts a ZSTD-compressed parquet file with `schema` on `file`
    /// (`path` is only for error messages).
    ///
    /// # Errors
    /// [`Error::Parquet`] if the schema cannot be converted.
    pub fn new(file: File, path: &Path, schema: SchemaRef) -> Result<Self> {
        let err = |e| Error::parquet(path, e);
        let descr = ArrowSchemaConverter::new().convert(&schema).map_err(err)?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            // Ids are unique: a dictionary only fills its 1 MiB page and
            // falls back, and any read of one id decodes that page.
            .set_column_dictionary_enabled(ColumnPath::from("id"), false)
            .set_data_page_size_limit(PAGE_BYTES)
            .set_created_by(format!("n4a version {}", env!("CARGO_PKG_VERSION")))
            .build();
        let writer =
            SerializedFileWriter::new(file, descr.root_schema_ptr(), props.into()).map_err(err)?;
        let factory = ArrowRowGroupWriterFactory::new(&writer, schema.clone());
        Ok(ParquetSink {
            writer,
            factory,
            schema,
            path: path.to_path_buf(),
            row_groups: 0,
            num_rows: 0,
            old_keys: OldKeys::default(),
        })
    }

    /// Encodes `batch` as one row group. Memory: the encoded, compressed
    /// row group is buffered until it is spliced into the file.
    ///
    /// # Errors
    /// [`Error::Parquet`] on an encoding or I/O failure.
    pub fn write_batch(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let err = |e| Error::parquet(&self.path, e);
        let mut writers = self
            .factory
            .create_column_writers(self.row_groups)
            .map_err(err)?;
        let mut it = writers.iter_mut();
        for (field, col) in self.schema.fields().iter().zip(batch.columns()) {
            for leaf in compute_leaves(field, col).map_err(err)? {
                let w = it.next().expect("one writer per leaf");
                w.write(&leaf).map_err(err)?;
            }
        }
        let mut rg = self.writer.next_row_group().map_err(err)?;
        for w in writers {
            w.close()
                .and_then(|chunk| chunk.append_to_row_group(&mut rg))
                .map_err(err)?;
        }
        rg.close().map_err(err)?;
        self.row_groups += 1;
        self.num_rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Copies every row group of `src` (whose parquet schema must have the
    /// same leaves as ours: the caller checks) without decoding a page.
    /// Cost: one sequential read and write of the compressed bytes.
    ///
    /// # Errors
    /// [`Error::Parquet`] naming the source on a read or splice failure.
    pub fn copy_row_groups(
        &mut self,
        src: &crate::blob::Blob,
        src_path: &Path,
        meta: &ParquetMetaData,
    ) -> Result<()> {
        for rg in meta.row_groups() {
            let mut out = self
                .writer
                .next_row_group()
                .map_err(|e| Error::parquet(&self.path, e))?;
            for column in rg.columns() {
                let close = ColumnCloseResult {
                    bytes_written: column.compressed_size() as u64,
                    rows_written: rg.num_rows() as u64,
                    metadata: column.clone(),
                    bloom_filter: None,
                    column_index: None,
                    offset_index: None,
                };
                out.append_column(src, close)
                    .map_err(|e| Error::parquet(src_path, e))?;
            }
            out.close().map_err(|e| Error::parquet(&self.path, e))?;
            self.row_groups += 1;
            self.num_rows += rg.num_rows() as u64;
        }
        Ok(())
    }

    /// Keeps the key/values of the file this one replaces (an append):
    /// its other key/values and, when it describes the same columns, its
    /// `ARROW:schema` types go into the new footer.
    pub fn carry_keys(&mut self, old: OldKeys) {
        self.old_keys = old;
    }

    /// Writes the tail (`footer::write_tail`): the summary's runs, then
    /// the footer with the carried key/values, `extra`, `ARROW:schema` and
    /// n4a's key/values (`footer::keys::compose`), and returns the file,
    /// not yet fsynced. `summary` is `None` for an arrays file.
    ///
    /// # Errors
    /// [`Error::Parquet`] or [`Error::Io`] on a write failure.
    pub fn finish(
        self,
        extra: &[(String, String)],
        summary: Option<&FooterParts<'_>>,
    ) -> Result<File> {
        let file = self
            .writer
            .into_inner()
            .map_err(|e| Error::parquet(&self.path, e))?;
        let len = file.metadata().map_err(|e| Error::io(&self.path, e))?.len();
        let (meta, body_end) = footer::footer_bytes(&file, &self.path, len)?;
        let (old, schema) = (&self.old_keys, &self.schema);
        footer::write_tail(
            &file,
            &self.path,
            body_end,
            &meta,
            summary.and_then(|s| s.body.as_deref()),
            |runs_at| {
                let entries = summary.map(|s| s.entries(runs_at)).unwrap_or_default();
                keys::compose(old, extra, schema, &entries)
            },
        )?;
        Ok(file)
    }
}
