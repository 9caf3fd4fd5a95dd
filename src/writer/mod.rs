//! Streaming prediction rows into `<dataset>.meta.parquet` and its
//! `<dataset>.arrays.parquet`, with the `n4a_summary` footer kept up to date
//! as rows arrive.
//!
//! [`PredictionWriter::create`] starts a dataset afresh; [`PredictionWriter::append`]
//! keeps every old row: old row groups are copied without decoding (when
//! the old file has the contract's layout) and the summary continues from
//! the stored mergeable state, so appending never rescans old rows except to
//! keep quartiles exact (just the three score columns, and only while the
//! file stays within the exact limit) or when the old file has no n4a state.
//!
//! Both hold the dataset's lock from open to finish and write temporary
//! files that replace the real ones only in [`PredictionWriter::finish`]
//! (arrays file first: it only ever gains arrays, so a crash between the two
//! renames leaves a consistent pair). Dropping the writer, or an error,
//! leaves the old files byte-identical.

pub(crate) mod arrays;
pub(crate) mod sink;

use std::borrow::Cow;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use parquet::schema::types::SchemaDescriptor;

use crate::error::{Error, Result};
use crate::files::{self, dataset_paths, DatasetLock, TempFile};
use crate::footer::meta as footer;
use crate::metric::Direction;
use crate::rows::{self, scores};
use crate::schema::columns::MetaColumns;
use crate::schema::{meta_schema, validate_dataset_name, Prediction};
use crate::summary::{utc_now, RowView, Summary, SummaryBuilder, SummaryOptions};
use arrays::ArraysWriter;
use sink::ParquetSink;

/// Options of a [`PredictionWriter`]; defaults stated on each field.
#[derive(Debug, Clone)]
#[must_use]
pub struct WriterOptions {
    /// Rows per row group (default 65,536). Memory grows with this.
    pub row_group_rows: usize,
    /// Flush a row group early once its buffered bytes pass this (default 64 MiB).
    pub row_group_bytes: usize,
    /// Summary options: directions, top-k, exact-quartile limit.
    pub summary: SummaryOptions,
    /// Fixed `generated_at` (default: the current time). Tests and
    /// reproducible builds set it.
    pub generated_at: Option<String>,
    /// Footer key/values written before the summary's (default none):
    /// where a copy records its source (`import-store` does).
    pub key_values: Vec<(String, String)>,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            row_group_rows: 65_536,
            row_group_bytes: 64 << 20,
            summary: SummaryOptions::default(),
            generated_at: None,
            key_values: Vec::new(),
        }
    }
}

impl WriterOptions {
    /// Sets rows per row group (at least 1).
    pub fn with_row_group_rows(mut self, rows: usize) -> Self {
        self.row_group_rows = rows.max(1);
        self
    }

    /// Supplies the direction of a metric not in the built-in table.
    pub fn with_direction(mut self, metric: impl Into<String>, d: Direction) -> Self {
        self.summary.directions = self.summary.directions.with(metric, d);
        self
    }

    /// Sets k of the top lists (default 10).
    pub fn with_top_k(mut self, k: usize) -> Self {
        self.summary.top_k = k;
        self
    }

    /// Sets the row count up to which quartiles are exact (default 1,000,000).
    pub fn with_exact_limit(mut self, rows: u64) -> Self {
        self.summary.exact_limit = rows;
        self
    }

    /// Fixes `generated_at`.
    pub fn with_generated_at(mut self, at: impl Into<String>) -> Self {
        self.generated_at = Some(at.into());
        self
    }

    /// Adds a footer key/value, written before the summary's entries (so
    /// `n4a_state` stays last, where readers look for it).
    pub fn with_key_value(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.key_values.push((key.into(), value.into()));
        self
    }
}

/// True when two parquet schemas have the same leaves (names, physical
/// types, levels), so column chunks of one can be spliced into the other.
pub(crate) fn same_leaves(a: &SchemaDescriptor, b: &SchemaDescriptor) -> bool {
    a.num_columns() == b.num_columns()
        && a.columns().iter().zip(b.columns()).all(|(x, y)| {
            x.path() == y.path()
                && x.physical_type() == y.physical_type()
                && x.max_def_level() == y.max_def_level()
                && x.max_rep_level() == y.max_rep_level()
        })
}

/// Writes one dataset's prediction rows; see the module docs.
///
/// ```
/// use n4a::{Prediction, PredictionWriter};
/// use n4a::writer::WriterOptions;
///
/// # fn main() -> n4a::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let mut w = PredictionWriter::create(dir.path(), "corn", WriterOptions::default())?;
/// w.write(&Prediction {
///     id: Some("p1".into()),
///     model_name: Some("PLS".into()),
///     partition: Some("val".into()),
///     metric: Some("rmse".into()),
///     val_score: Some(0.42),
///     ..Default::default()
/// })?;
/// // Nothing is visible until finish: then both files are renamed into
/// // place, and the summary the footer now holds is returned.
/// let summary = w.finish()?;
/// assert_eq!(summary.total_predictions, 1);
/// assert!(dir.path().join("corn.meta.parquet").exists());
/// # Ok(())
/// # }
/// ```
pub struct PredictionWriter {
    dataset: String,
    meta_path: PathBuf,
    old_meta: Option<PathBuf>,
    meta_tmp: TempFile,
    sink: ParquetSink,
    arrays: ArraysWriter,
    columns: MetaColumns,
    summary: SummaryBuilder,
    opts: WriterOptions,
    _lock: DatasetLock,
    /// For a dataset in a bucket: where the staged files go at
    /// [`Self::finish`] (dropped after the local files and lock).
    #[cfg(feature = "object-store")]
    remote: Option<(BucketDataset, files::Staging)>,
}

/// A dataset of a bucket written through a local folder: its lock in the
/// bucket taken (the one every n4a writer of a bucket takes, held until
/// dropped), its files staged in `dir` (fetched whole when appending) with
/// the versions read, put back by [`Self::commit`]. What
/// [`PredictionWriter`], `ingest` and `refresh` write a bucket with.
#[cfg(feature = "object-store")]
#[derive(Debug)]
pub(crate) struct BucketDataset {
    bucket: std::sync::Arc<crate::bucket::Bucket>,
    /// (staged file, object, ETag read or `None` for a new object), arrays
    /// first.
    files: Vec<(PathBuf, PathBuf, Option<String>)>,
    _lock: crate::bucket::BucketLock,
}

#[cfg(feature = "object-store")]
impl BucketDataset {
    /// Takes `dataset`'s lock in `bucket` and stages its two files in
    /// `dir` (their bytes only when `fetch`: an append). Cost: the lock,
    /// then two GETs when fetching (the files' bytes in memory one at a
    /// time), else two HEADs (the versions a replacement is conditional on).
    ///
    /// # Errors
    /// [`Error::Io`] naming the lock or the object.
    pub(crate) fn open(
        bucket: &std::sync::Arc<crate::bucket::Bucket>,
        dir: &Path,
        dataset: &str,
        fetch: bool,
    ) -> Result<BucketDataset> {
        let lock = bucket.lock(dataset)?;
        let local = dataset_paths(dir, dataset);
        let remote = dataset_paths(bucket.url(), dataset);
        let mut files = Vec::new();
        for (l, r) in [(local.arrays, remote.arrays), (local.meta, remote.meta)] {
            let tag = if fetch {
                match bucket.get_version(&r)? {
                    Some((bytes, tag)) => {
                        std::fs::write(&l, &bytes).map_err(|e| Error::io(&l, e))?;
                        Some(tag)
                    }
                    None => None,
                }
            } else {
                bucket.head_version(&r)?
            };
            files.push((l, r, tag));
        }
        Ok(BucketDataset {
            bucket: bucket.clone(),
            files,
            _lock: lock,
        })
    }

    /// Puts the staged files back, arrays first, each by one PUT
    /// conditional on the version read (a staged file absent is skipped:
    /// a dataset without arrays).
    ///
    /// # Errors
    /// [`Error::Io`] naming the object: a request failed, or another
    /// writer replaced it meanwhile (a lock taken over as stale: nothing
    /// more is put).
    pub(crate) fn commit(self) -> Result<()> {
        for (l, r, tag) in &self.files {
            let bytes = match std::fs::read(l) {
                Ok(b) => bytes::Bytes::from(b),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(l, e)),
            };
            if !self.bucket.put(r, bytes, tag.as_deref())? {
                return Err(Error::io(
                    r,
                    std::io::Error::other(
                        "another writer replaced this object while this one held its \
                         dataset's lock (a lock taken over as stale); nothing more was put",
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl PredictionWriter {
    /// Starts `dataset` afresh in `dir`: at [`Self::finish`] its files are
    /// replaced by the rows written. Blocks while another writer holds the
    /// dataset.
    ///
    /// `dir` may be a bucket URL (`s3://bucket/prefix`, cargo feature
    /// `object-store`): the dataset's lock in the bucket is taken (the one
    /// `ingest` and `refresh` take; held until the writer finishes or is
    /// dropped), its files are staged in the cache folder (fetched whole
    /// for [`Self::append`]) and written there as on disk, and
    /// [`Self::finish`] puts them back, arrays first, each by one PUT
    /// conditional on the version read; a writer dropped or killed before
    /// leaves the objects as they were.
    ///
    /// # Errors
    /// [`Error::InvalidDatasetName`]; I/O errors naming the file.
    pub fn create(dir: &Path, dataset: &str, opts: WriterOptions) -> Result<Self> {
        Self::open(dir, dataset, opts, false)
    }

    /// Opens `dataset` in `dir` for appending (creating it if absent). Cost
    /// at open: the old footer, a copy of the old row groups' bytes, the old
    /// arrays' ids and hashes; plus a full decode of the old rows only if
    /// the old file has no n4a state (a nirs4all-written file).
    ///
    /// # Errors
    /// [`Error::InvalidDatasetName`]; I/O, parquet or summary errors naming
    /// the old file; [`Error::Schema`] if an old column has a wrong type.
    pub fn append(dir: &Path, dataset: &str, opts: WriterOptions) -> Result<Self> {
        Self::open(dir, dataset, opts, true)
    }

    fn open(dir: &Path, dataset: &str, opts: WriterOptions, append: bool) -> Result<Self> {
        validate_dataset_name(dataset)?;
        #[cfg(feature = "object-store")]
        if crate::bucket::is_url(dir) {
            let bucket = std::sync::Arc::new(crate::bucket::Bucket::open(dir)?);
            let stage = files::Staging::new("writer")?;
            let target = BucketDataset::open(&bucket, stage.path(), dataset, append)?;
            let mut w = Self::open(stage.path(), dataset, opts, append)?;
            w.remote = Some((target, stage));
            return Ok(w);
        }
        let lock = DatasetLock::acquire(dir, dataset)?;
        files::remove_stale_temps(dir, dataset);
        let files::DatasetPaths {
            meta: meta_path,
            arrays: arrays_path,
        } = dataset_paths(dir, dataset);
        let arrays = ArraysWriter::open(&arrays_path, opts.row_group_bytes, append)?;
        let (meta_tmp, file) = TempFile::create(&meta_path)?;
        let sink = ParquetSink::new(file, meta_tmp.path(), meta_schema())?;
        let mut w = PredictionWriter {
            dataset: dataset.to_string(),
            meta_path: meta_path.clone(),
            old_meta: None,
            meta_tmp,
            sink,
            arrays,
            columns: MetaColumns::default(),
            summary: SummaryBuilder::new(opts.summary.clone()),
            opts,
            _lock: lock,
            #[cfg(feature = "object-store")]
            remote: None,
        };
        if append && meta_path.exists() {
            w.carry_over(&meta_path)?;
        }
        Ok(w)
    }

    /// Brings the old file's rows and summary state into this writer.
    fn carry_over(&mut self, old: &Path) -> Result<()> {
        let (file, meta) = footer::open_metadata(old)?;
        let num_rows = meta.file_metadata().num_rows().max(0) as u64;
        // A state that does not decode (its runs damaged, say) is rebuilt
        // from the rows, as for a file without one: the rows are the truth.
        // A state of before 1.3 that mixes metrics has no per-metric
        // statistics to continue: rebuilt from the rows too.
        let state = match footer::decode_state(old, &meta) {
            Ok(st) => st
                .map(|mut st| {
                    st.fill_by_metric();
                    st
                })
                .filter(|st| st.rows == num_rows && st.by_metric),
            Err(Error::InvalidSummary { .. }) => None,
            Err(e) => return Err(e),
        };
        let ours = parquet::arrow::ArrowSchemaConverter::new()
            .convert(&meta_schema())
            .map_err(|e| Error::parquet(old, e))?;
        let raw_copy = same_leaves(&ours, meta.file_metadata().schema_descr());
        self.sink
            .carry_keys(crate::footer::keys::OldKeys::of(&meta));
        match state {
            Some(st) => self.summary = SummaryBuilder::from_state(self.opts.summary.clone(), st),
            None => self.rebuild_summary(old)?,
        }
        if raw_copy {
            self.sink.copy_row_groups(&file, old, &meta)?;
        } else {
            self.reencode(old)?;
        }
        self.old_meta = Some(old.to_path_buf());
        Ok(())
    }

    /// Observes every old row (the old file has no usable n4a state); the
    /// old rows' values are then in memory, so quartiles can stay exact.
    fn rebuild_summary(&mut self, old: &Path) -> Result<()> {
        rows::summarize(old, &mut self.summary).map(drop)
    }

    /// Rewrites an old file of another layout (fewer columns, large_utf8
    /// stored differently) into the contract's, row group by row group.
    fn reencode(&mut self, old: &Path) -> Result<()> {
        let ctx = old.display().to_string();
        let mut cols = MetaColumns::default();
        rows::for_each_batch(old, None, self.opts.row_group_rows, |b| {
            for p in rows::batch_to_predictions(&b, &ctx, false)? {
                cols.push(&p);
            }
            self.sink.write_batch(&cols.take_batch()?)
        })
    }

    /// The dataset being written.
    pub fn dataset(&self) -> &str {
        &self.dataset
    }

    /// Rows in the dataset so far, old rows of an append included.
    pub fn num_rows(&self) -> u64 {
        self.summary.rows()
    }

    fn validate(&self, row: usize, p: &Prediction) -> Result<()> {
        if let Some(d) = p.dataset_name.as_deref() {
            if d != self.dataset {
                return Err(Error::InvalidRow {
                    row,
                    reason: format!(
                        "dataset_name {d:?} differs from the file's dataset {:?}",
                        self.dataset
                    ),
                });
            }
        }
        self.summary.check(row, &RowView::of(p)).map(|_| ())
    }

    /// Writes one row. Fills what the caller left out: `dataset_name`, the
    /// `*_id` columns of attached arrays (stored once per content hash), and
    /// the row id by nirs4all's rule. Cost: O(1) amortised plus the arrays'
    /// hashing; a row group is encoded every `row_group_rows` rows.
    ///
    /// # Errors
    /// [`Error::UnknownMetricDirection`] or [`Error::InvalidRow`], with
    /// nothing written; parquet errors when a row group is flushed.
    pub fn write(&mut self, p: &Prediction) -> Result<()> {
        self.validate(0, p)?;
        let needs_fill = p.id.is_none() || p.dataset_name.is_none() || p.arrays.is_some();
        let row = if needs_fill {
            Cow::Owned(self.fill(p.clone())?)
        } else {
            Cow::Borrowed(p)
        };
        self.push(&row)
    }

    /// Like [`Self::write`], taking the row by value (no clone when filling).
    ///
    /// # Errors
    /// As [`Self::write`].
    pub fn write_owned(&mut self, p: Prediction) -> Result<()> {
        self.validate(0, &p)?;
        let p = self.fill(p)?;
        self.push(&p)
    }

    fn fill(&mut self, mut p: Prediction) -> Result<Prediction> {
        if p.dataset_name.is_none() {
            p.dataset_name = Some(self.dataset.clone());
        }
        if let Some(a) = p.arrays.take() {
            let slots = [
                (a.y_true, &mut p.y_true_id, "y_true"),
                (a.y_pred, &mut p.y_pred_id, "y_pred"),
                (a.y_proba, &mut p.y_proba_id, "y_proba"),
                (a.sample_indices, &mut p.sample_indices_id, "indices"),
                (a.weights, &mut p.weights_id, "weights"),
            ];
            for (array, id, kind) in slots {
                if let Some(array) = array {
                    *id = Some(self.arrays.store(&array, kind)?);
                }
            }
        }
        if p.id.is_none() {
            p.id = Some(p.computed_id());
        }
        Ok(p)
    }

    fn push(&mut self, p: &Prediction) -> Result<()> {
        let n = self.summary.rows() as usize;
        self.summary.observe(n, &RowView::of(p))?;
        self.columns.push(p);
        if self.columns.len() >= self.opts.row_group_rows
            || self.columns.bytes() >= self.opts.row_group_bytes
        {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes a record batch with the contract's 35 columns (utf8 or
    /// large_utf8 strings). The whole batch is checked before any row of it
    /// is taken. A batch whose rows all carry an id and this dataset's name
    /// is written columnar: its rows observed in place and its columns
    /// encoded as they are (strings re-typed to utf8), one row group per
    /// `row_group_rows`; otherwise row by row, filling ids and names.
    ///
    /// # Errors
    /// [`Error::Schema`] naming a missing or mistyped column;
    /// [`Error::InvalidRow`] / [`Error::UnknownMetricDirection`] naming the
    /// first bad row. In each case nothing of the batch is written.
    pub fn write_batch(&mut self, batch: &RecordBatch) -> Result<()> {
        rows::check_columns(batch.schema().as_ref(), "record batch", true)?;
        let full = |name: &str| {
            batch
                .column_by_name(name)
                .is_some_and(|c| c.null_count() == 0)
        };
        if full("id") && full("dataset_name") {
            return self.write_batch_columnar(batch);
        }
        let rows = rows::batch_to_predictions(batch, "record batch", true)?;
        for (i, p) in rows.iter().enumerate() {
            self.validate(i, p)?;
        }
        rows.into_iter().try_for_each(|p| self.write_owned(p))
    }

    fn write_batch_columnar(&mut self, batch: &RecordBatch) -> Result<()> {
        let ds = self.dataset.clone();
        rows::for_each_view(batch, "record batch", |i, v| {
            if v.dataset_name != Some(ds.as_str()) {
                return Err(Error::InvalidRow {
                    row: i,
                    reason: format!(
                        "dataset_name {:?} differs from the file's dataset {ds:?}",
                        v.dataset_name.unwrap_or_default()
                    ),
                });
            }
            self.summary.check(i, v).map(drop)
        })?;
        let contract = rows::to_contract(batch)?;
        let summary = &mut self.summary;
        rows::for_each_view(batch, "record batch", |_, v| {
            summary.observe(summary.rows() as usize, v)
        })?;
        self.flush()?;
        let step = self.opts.row_group_rows.max(1);
        for at in (0..contract.num_rows()).step_by(step) {
            let n = step.min(contract.num_rows() - at);
            self.sink.write_batch(&contract.slice(at, n))?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.columns.is_empty() {
            return Ok(());
        }
        let batch = self.columns.take_batch()?;
        self.sink.write_batch(&batch)
    }

    /// Seals both files and atomically replaces the dataset's old ones.
    /// Returns the summary written into the footer.
    ///
    /// # Errors
    /// I/O or parquet errors naming the file; the old files are then intact.
    pub fn finish(mut self) -> Result<Summary> {
        self.flush()?;
        if self.summary.needs_prefix_values() {
            if let Some(old) = &self.old_meta {
                self.summary
                    .provide_prefix_values(scores::read_score_values(old)?);
            }
        }
        let at = self.opts.generated_at.clone().unwrap_or_else(utc_now);
        let summary = self.summary.finish(Some(at));
        // `ARROW:schema` (with the summary inside, for pyarrow), the plain
        // summary (DuckDB, polars) and n4a's state: `footer::keys`.
        let extra = std::mem::take(&mut self.opts.key_values);
        let parts = summary.footer_parts();
        let arrays = self.arrays.close()?;
        let meta_file: File = self.sink.finish(&extra, Some(&parts))?;
        arrays.commit()?;
        self.meta_tmp.commit(meta_file, &self.meta_path)?;
        #[cfg(feature = "object-store")]
        if let Some((target, _stage)) = self.remote.take() {
            target.commit()?;
        }
        Ok(summary)
    }
}
