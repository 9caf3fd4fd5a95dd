//! Rows from JSON Lines, CSV, parquet or Arrow IPC, appended to their
//! datasets' files.
//!
//! Each row names its dataset in `dataset_name`; rows are routed to one
//! appending [`PredictionWriter`] per dataset, so memory stays at one row
//! group per dataset whatever the input size. Any bad line (unknown column,
//! wrong type, unknown metric direction, missing dataset) stops the ingest
//! before anything is committed: every dataset keeps its old files.
//!
//! JSON Lines: one object per line, keys are contract columns; the optional
//! keys `y_true`, `y_pred`, `y_proba`, `sample_indices`, `weights` carry
//! arrays (flat, or nested one level for 2-D) stored in the arrays file.
//! Bare `NaN`/`Infinity` tokens are read as null. CSV: a header of contract
//! columns; an empty cell is null. Parquet and Arrow IPC (the file format,
//! `.arrow`/`.feather`, or the stream format; uncompressed, lz4 or zstd, as
//! pyarrow, polars and DuckDB export them): contract columns, any subset,
//! read a record batch at a time.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use crate::error::{Error, Result};
use crate::schema::{ArrayData, Kind, Prediction, PredictionArrays, COLUMNS};
use crate::summary::json::sanitize_non_finite;
use crate::writer::{PredictionWriter, WriterOptions};

/// Input format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// One JSON object per line.
    JsonLines,
    /// Comma-separated with a header.
    Csv,
    /// A parquet file of contract columns (any subset; missing ones null),
    /// for instance the rows of another nirs4all file.
    Parquet,
    /// An Arrow IPC file or stream of contract columns.
    ArrowIpc,
}

impl InputFormat {
    /// Guesses from the extension: `.csv` is CSV, `.parquet` parquet,
    /// `.arrow`, `.feather`, `.ipc` and `.arrows` Arrow IPC, anything else
    /// JSON Lines.
    pub fn from_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("csv") => InputFormat::Csv,
            Some(e) if e.eq_ignore_ascii_case("parquet") => InputFormat::Parquet,
            Some(e)
                if ["arrow", "feather", "ipc", "arrows"]
                    .iter()
                    .any(|x| e.eq_ignore_ascii_case(x)) =>
            {
                InputFormat::ArrowIpc
            }
            _ => InputFormat::JsonLines,
        }
    }
}

/// Rows appended per dataset.
pub type IngestReport = BTreeMap<String, u64>;

const ARRAY_KEYS: [&str; 5] = ["y_true", "y_pred", "y_proba", "sample_indices", "weights"];

/// Parses one JSON Lines line into a row.
///
/// # Errors
/// [`Error::Input`] naming the line and the offending key.
pub fn parse_json_line(path: &Path, line_no: usize, line: &str) -> Result<Prediction> {
    let bad = |reason: String| Error::Input {
        path: path.to_path_buf(),
        line: line_no,
        reason,
    };
    let text = sanitize_non_finite(line);
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let serde_json::Value::Object(mut obj) = value else {
        return Err(bad("not a JSON object".to_string()));
    };
    let mut arrays = PredictionArrays::default();
    let mut any = false;
    for key in ARRAY_KEYS {
        if let Some(v) = obj.remove(key) {
            if v.is_null() {
                continue;
            }
            let a =
                json_array(&v).ok_or_else(|| bad(format!("{key:?} is not an array of numbers")))?;
            any = true;
            *match key {
                "y_true" => &mut arrays.y_true,
                "y_pred" => &mut arrays.y_pred,
                "y_proba" => &mut arrays.y_proba,
                "sample_indices" => &mut arrays.sample_indices,
                _ => &mut arrays.weights,
            } = Some(a);
        }
    }
    if let Some(k) = obj.keys().find(|k| !COLUMNS.iter().any(|(c, _)| c == k)) {
        return Err(bad(format!("unknown column {k:?}")));
    }
    let mut p: Prediction =
        serde_json::from_value(serde_json::Value::Object(obj)).map_err(|e| bad(e.to_string()))?;
    if any {
        p.arrays = Some(arrays);
    }
    Ok(p)
}

fn json_array(v: &serde_json::Value) -> Option<ArrayData> {
    let items = v.as_array()?;
    if items.iter().all(|x| x.is_array()) && !items.is_empty() {
        let rows: Vec<Vec<f64>> = items
            .iter()
            .map(|r| {
                r.as_array()?
                    .iter()
                    .map(|x| x.as_f64())
                    .collect::<Option<Vec<f64>>>()
            })
            .collect::<Option<_>>()?;
        let width = rows[0].len();
        if rows.iter().any(|r| r.len() != width) {
            return None;
        }
        let shape = vec![rows.len(), width];
        return Some(ArrayData {
            values: rows.concat(),
            shape,
        });
    }
    let values: Vec<f64> = items.iter().map(|x| x.as_f64()).collect::<Option<_>>()?;
    Some(ArrayData::vector(values))
}

/// Streams the rows of `input` to `f`, with their 1-based line (record,
/// or row for parquet) number.
///
/// # Errors
/// [`Error::Io`] or [`Error::Input`] naming the line; or what `f` returns.
pub fn for_each_row(
    input: &Path,
    format: InputFormat,
    mut f: impl FnMut(usize, Prediction) -> Result<()>,
) -> Result<()> {
    if matches!(format, InputFormat::Parquet | InputFormat::ArrowIpc) {
        let ctx = input.display().to_string();
        let mut line = 0usize;
        return for_each_input_batch(input, format, |b| {
            for p in crate::rows::batch_to_predictions(&b, &ctx, false)? {
                line += 1;
                f(line, p)?;
            }
            Ok(())
        });
    }
    let file = File::open(input).map_err(|e| Error::io(input, e))?;
    match format {
        InputFormat::Parquet | InputFormat::ArrowIpc => unreachable!("handled above"),
        InputFormat::JsonLines => {
            for (i, line) in BufReader::new(file).lines().enumerate() {
                let line = line.map_err(|e| Error::io(input, e))?;
                if line.trim().is_empty() {
                    continue;
                }
                f(i + 1, parse_json_line(input, i + 1, &line)?)?;
            }
        }
        InputFormat::Csv => {
            let mut rdr = csv::Reader::from_reader(file);
            let bad = |line: usize, reason: String| Error::Input {
                path: input.to_path_buf(),
                line,
                reason,
            };
            let header = rdr.headers().map_err(|e| bad(1, e.to_string()))?.clone();
            let mut cols = Vec::new();
            for h in &header {
                let idx = COLUMNS
                    .iter()
                    .position(|(c, _)| *c == h)
                    .ok_or_else(|| bad(1, format!("unknown column {h:?}")))?;
                cols.push(idx);
            }
            for (i, rec) in rdr.records().enumerate() {
                let line = i + 2;
                let rec = rec.map_err(|e| bad(line, e.to_string()))?;
                let mut p = Prediction::default();
                for (cell, &idx) in rec.iter().zip(&cols) {
                    set_cell(&mut p, idx, cell).map_err(|r| bad(line, r))?;
                }
                f(line, p)?;
            }
        }
    }
    Ok(())
}

fn set_cell(p: &mut Prediction, idx: usize, cell: &str) -> std::result::Result<(), String> {
    let (name, kind) = COLUMNS[idx];
    if cell.is_empty() {
        return Ok(());
    }
    match kind {
        Kind::Str => *p.str_mut(idx).expect("str") = Some(cell.to_string()),
        Kind::Int => {
            let v = cell
                .parse()
                .map_err(|_| format!("column {name:?}: {cell:?} is not an integer"))?;
            *p.int_mut(idx).expect("int") = Some(v);
        }
        Kind::Float => {
            let v = cell
                .parse()
                .map_err(|_| format!("column {name:?}: {cell:?} is not a number"))?;
            *p.float_mut(idx).expect("float") = Some(v);
        }
    }
    Ok(())
}

/// Appends every row of `input` to its dataset in `workspace`. All datasets
/// are committed only after the whole input parsed and validated.
///
/// # Errors
/// [`Error::Input`] for a row without `dataset_name` or a bad line;
/// everything [`PredictionWriter::append`] and `write` return.
pub fn ingest(
    workspace: &Path,
    input: &Path,
    format: InputFormat,
    opts: &WriterOptions,
) -> Result<IngestReport> {
    ingest_with_progress(workspace, input, format, opts, &|_| {})
}

/// [`ingest`], calling `progress` with the rows read since its last call
/// (each row of JSON Lines and CSV, each batch of parquet and Arrow IPC).
///
/// # Errors
/// As [`ingest`].
pub fn ingest_with_progress(
    workspace: &Path,
    input: &Path,
    format: InputFormat,
    opts: &WriterOptions,
    progress: &dyn Fn(u64),
) -> Result<IngestReport> {
    let mut writers: BTreeMap<String, PredictionWriter> = BTreeMap::new();
    let mut report = IngestReport::new();
    if matches!(format, InputFormat::Parquet | InputFormat::ArrowIpc) {
        ingest_batches(
            workspace,
            input,
            format,
            opts,
            &mut writers,
            &mut report,
            progress,
        )?;
        for (_, w) in writers {
            w.finish()?;
        }
        return Ok(report);
    }
    for_each_row(input, format, |line, p| {
        let Some(ds) = p.dataset_name.clone() else {
            return Err(Error::Input {
                path: input.to_path_buf(),
                line,
                reason: "no dataset_name: n4a cannot tell which file it belongs to".to_string(),
            });
        };
        if !writers.contains_key(&ds) {
            let w = PredictionWriter::append(workspace, &ds, opts.clone()).map_err(|e| {
                Error::Input {
                    path: input.to_path_buf(),
                    line,
                    reason: e.to_string(),
                }
            })?;
            writers.insert(ds.clone(), w);
        }
        let w = writers.get_mut(&ds).expect("inserted");
        w.write_owned(p).map_err(|e| Error::Input {
            path: input.to_path_buf(),
            line,
            reason: e.to_string(),
        })?;
        *report.entry(ds).or_default() += 1;
        progress(1);
        Ok(())
    })?;
    for (_, w) in writers {
        w.finish()?;
    }
    Ok(report)
}

/// [`ingest_with_progress`] into a bucket workspace (`s3://bucket/prefix`,
/// cargo feature `object-store`). The input is first ingested into an
/// empty staging folder (which parses and validates all of it and names
/// its datasets); then, under each dataset's lock in the bucket
/// ([`crate::bucket::Bucket::lock`], taken in name order), the datasets'
/// objects are fetched whole into a second staging folder, the input
/// appended there as on disk, and each file put back by one conditional
/// PUT (`If-Match` on the ETag fetched, `If-None-Match: *` for a new
/// one), arrays before predictions. A writer killed at any point leaves
/// every object as it was or as the last complete PUT made it; two
/// writers of one dataset take turns; a PUT whose condition fails (a
/// stale lock was taken over meanwhile) is an error naming the object and
/// commits nothing more. Memory: the largest object of a touched dataset
/// (its bytes are held for the PUT); disk: the touched datasets' files
/// twice, in the cache folder's `staging`, removed at the end.
///
/// # Errors
/// As [`ingest`]; [`Error::Io`] naming the object for a failed request.
#[cfg(feature = "object-store")]
pub fn ingest_into_bucket(
    url: &Path,
    input: &Path,
    format: InputFormat,
    opts: &WriterOptions,
    progress: &dyn Fn(u64),
) -> Result<IngestReport> {
    let bucket = std::sync::Arc::new(crate::bucket::Bucket::open(url)?);
    let stage = crate::files::Staging::new("ingest")?;
    let (dry, work) = (stage.path().join("dry"), stage.path().join("work"));
    for d in [&dry, &work] {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    let planned = ingest_with_progress(&dry, input, format, opts, progress)?;
    let targets = planned
        .keys()
        .map(|d| crate::writer::BucketDataset::open(&bucket, &work, d, true))
        .collect::<Result<Vec<_>>>()?;
    let report = ingest_with_progress(&work, input, format, opts, &|_| {})?;
    for t in targets {
        t.commit()?;
    }
    Ok(report)
}

/// The record batches of a parquet or Arrow IPC input, to `f` in order.
///
/// # Errors
/// [`Error::Io`], [`Error::Parquet`] or [`Error::Input`] naming the file;
/// what `f` returns.
fn for_each_input_batch(
    input: &Path,
    format: InputFormat,
    mut f: impl FnMut(arrow_array::RecordBatch) -> Result<()>,
) -> Result<()> {
    if format == InputFormat::Parquet {
        return crate::rows::for_each_batch(input, None, 65536, f);
    }
    let bad = |reason: String| Error::Input {
        path: input.to_path_buf(),
        line: 0,
        reason: format!("not a readable Arrow IPC file or stream: {reason}"),
    };
    crate::footer::guard::guarded(input, || {
        let mut file = File::open(input).map_err(|e| Error::io(input, e))?;
        let mut magic = [0u8; 6];
        let is_file =
            std::io::Read::read_exact(&mut file, &mut magic).is_ok() && &magic == b"ARROW1";
        let file = File::open(input).map_err(|e| Error::io(input, e))?;
        let batches: Box<
            dyn Iterator<
                Item = std::result::Result<arrow_array::RecordBatch, arrow_schema::ArrowError>,
            >,
        > = if is_file {
            Box::new(
                arrow_ipc::reader::FileReader::try_new(file, None)
                    .map_err(|e| bad(e.to_string()))?,
            )
        } else {
            Box::new(
                arrow_ipc::reader::StreamReader::try_new(BufReader::new(file), None)
                    .map_err(|e| bad(e.to_string()))?,
            )
        };
        for b in batches {
            f(b.map_err(|e| bad(e.to_string()))?)?;
        }
        Ok(())
    })
}

/// Parquet or Arrow IPC input, a batch at a time: each run of rows of one
/// dataset goes to its writer as a record batch (written columnar when
/// complete, see [`PredictionWriter::write_batch`]), not row by row.
fn ingest_batches(
    workspace: &Path,
    input: &Path,
    format: InputFormat,
    opts: &WriterOptions,
    writers: &mut BTreeMap<String, PredictionWriter>,
    report: &mut IngestReport,
    progress: &dyn Fn(u64),
) -> Result<()> {
    use arrow_array::cast::AsArray;
    let bad = |line: usize, reason: String| Error::Input {
        path: input.to_path_buf(),
        line,
        reason,
    };
    let mut seen = 0usize;
    for_each_input_batch(input, format, |b| {
        let ctx = input.display().to_string();
        crate::rows::check_columns(b.schema().as_ref(), &ctx, false)?;
        let names: Vec<Option<String>> = match b.column_by_name("dataset_name") {
            None => vec![None; b.num_rows()],
            Some(c) => match c.data_type() {
                arrow_schema::DataType::LargeUtf8 => c
                    .as_string::<i64>()
                    .iter()
                    .map(|v| v.map(str::to_string))
                    .collect(),
                arrow_schema::DataType::Utf8View => c
                    .as_string_view()
                    .iter()
                    .map(|v| v.map(str::to_string))
                    .collect(),
                _ => c
                    .as_string::<i32>()
                    .iter()
                    .map(|v| v.map(str::to_string))
                    .collect(),
            },
        };
        let mut start = 0;
        while start < names.len() {
            let line = seen + start + 1;
            let Some(ds) = names[start].clone() else {
                return Err(bad(
                    line,
                    "no dataset_name: n4a cannot tell which file it belongs to".to_string(),
                ));
            };
            let end = start
                + names[start..]
                    .iter()
                    .take_while(|n| n.as_deref() == Some(ds.as_str()))
                    .count();
            if !writers.contains_key(&ds) {
                let w = PredictionWriter::append(workspace, &ds, opts.clone())
                    .map_err(|e| bad(line, e.to_string()))?;
                writers.insert(ds.clone(), w);
            }
            let w = writers.get_mut(&ds).expect("inserted");
            let part = b.slice(start, end - start);
            let complete = crate::schema::COLUMNS
                .iter()
                .all(|(c, _)| part.column_by_name(c).is_some());
            let written = if complete {
                w.write_batch(&part)
            } else {
                // An older layout: its rows one by one, missing columns null.
                crate::rows::batch_to_predictions(&part, &ctx, false)?
                    .into_iter()
                    .try_for_each(|p| w.write_owned(p))
            };
            written.map_err(|e| match e {
                Error::InvalidRow { row, reason } => bad(line + row, reason),
                e => bad(line, e.to_string()),
            })?;
            *report.entry(ds).or_default() += (end - start) as u64;
            start = end;
        }
        seen += names.len();
        progress(names.len() as u64);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line_with_arrays_and_nan() {
        let p = parse_json_line(
            Path::new("in.jsonl"),
            1,
            r#"{"dataset_name": "d", "val_score": NaN, "step_idx": 3, "y_true": [1, 2], "y_proba": [[0.1, 0.9], [0.8, 0.2]]}"#,
        )
        .unwrap();
        assert_eq!(p.val_score, None);
        assert_eq!(p.step_idx, Some(3));
        let a = p.arrays.unwrap();
        assert_eq!(a.y_true.unwrap().values, vec![1.0, 2.0]);
        assert_eq!(a.y_proba.unwrap().shape, vec![2, 2]);
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_the_line() {
        let e = parse_json_line(Path::new("in.jsonl"), 7, r#"{"val_scor": 1}"#).unwrap_err();
        assert_eq!(e.to_string(), "in.jsonl:7: unknown column \"val_scor\"");
        let e = parse_json_line(Path::new("in.jsonl"), 8, r#"{"step_idx": "x"}"#).unwrap_err();
        assert!(e.to_string().starts_with("in.jsonl:8: invalid type"), "{e}");
    }
}
