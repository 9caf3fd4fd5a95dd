//! The writer: contract layout, the summary where pyarrow reads it, arrays,
//! appends, atomicity and bad input.

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int32Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use n4a::files::dataset_paths;
use n4a::metric::Direction;
use n4a::rows;
use n4a::schema::{meta_schema, ArrayData, PredictionArrays, COLUMNS};
use n4a::writer::{PredictionWriter, WriterOptions};
use n4a::Error;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::util::{fixture, row, workspace_with};

fn opts() -> WriterOptions {
    WriterOptions::default().with_generated_at("2026-01-01T00:00:00.000000+00:00")
}

#[test]
fn written_file_has_contract_columns_and_the_summary_in_the_schema_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = PredictionWriter::create(dir.path(), "ds", opts()).unwrap();
    // Every int64/float64 column except the scores stays all-null.
    w.write(&row("c1", "PLS", "0", "val", 0.5)).unwrap();
    w.finish().unwrap();
    let meta = dataset_paths(dir.path(), "ds").meta;
    let file = std::fs::File::open(&meta).unwrap();
    let b = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let schema = b.schema().clone();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let expect: Vec<&str> = COLUMNS.iter().map(|c| c.0).collect();
    assert_eq!(names, expect);
    // Arrow readers follow `ARROW:schema`: nirs4all's types (strings as
    // large_string), so tables of our files and nirs4all's concatenate.
    for (f, want) in schema.fields().iter().zip(meta_schema().fields()) {
        let want = match want.data_type() {
            DataType::Utf8 => &DataType::LargeUtf8,
            other => other,
        };
        assert_eq!(f.data_type(), want, "{}", f.name());
        assert_ne!(f.data_type(), &DataType::Null);
    }
    assert_eq!(
        schema.field_with_name("branch_id").unwrap().data_type(),
        &DataType::Int64
    );
    assert_eq!(
        schema
            .field_with_name("exclusion_rate")
            .unwrap()
            .data_type(),
        &DataType::Float64
    );
    // The summary is inside `ARROW:schema` (what arrow readers, pyarrow
    // and arrow-rs, show as the schema metadata) and a plain key/value.
    let embedded = schema
        .metadata()
        .get("n4a_summary")
        .expect("summary in the schema metadata");
    let v: serde_json::Value = serde_json::from_str(embedded).unwrap();
    assert_eq!(v["n4a_version"], "1.5");
    assert_eq!(v["total_predictions"], 1);
    let footer = n4a::footer::Footer::read(&meta).unwrap();
    assert_eq!(footer.summary_text().unwrap(), Some(embedded.as_str()));
    assert!(footer.key_value("ARROW:schema").unwrap().is_some());
    let codec = footer
        .metadata()
        .unwrap()
        .row_group(0)
        .column(0)
        .compression();
    assert!(
        matches!(codec, parquet::basic::Compression::ZSTD(_)),
        "{codec:?}"
    );
}

#[test]
fn row_ids_follow_nirs4alls_rule_and_arrays_are_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = PredictionWriter::create(dir.path(), "ds", opts()).unwrap();
    let y = ArrayData::vector(vec![1.0, 2.0, 3.0]);
    for (i, part) in ["train", "val", "test"].iter().enumerate() {
        let mut p = row("c1", "PLS", "0", part, 0.1 * i as f64);
        p.arrays = Some(PredictionArrays {
            y_true: Some(y.clone()),
            y_pred: Some(y.clone()),
            sample_indices: Some(ArrayData::vector(vec![i as f64])),
            ..Default::default()
        });
        w.write(&p).unwrap();
    }
    w.finish().unwrap();
    let n4a::files::DatasetPaths { meta, arrays } = dataset_paths(dir.path(), "ds");
    let got = rows::read_predictions(&meta).unwrap();
    assert_eq!(got.len(), 3);
    for p in &got {
        assert_eq!(p.id.as_deref(), Some(n4a::schema::row_id(p).as_str()));
        assert_eq!(p.dataset_name.as_deref(), Some("ds"));
        assert_eq!(p.y_true_id, p.y_pred_id, "same content, one array");
        assert_eq!(
            p.y_true_id.as_deref(),
            Some(format!("array_{}", &y.content_hash()[..12]).as_str())
        );
    }
    // y (once) + three distinct index arrays.
    let n = n4a::footer::Footer::read(&arrays).unwrap().num_rows();
    assert_eq!(n, 4);
}

#[test]
fn append_keeps_old_rows_and_copies_row_groups_without_reencoding() {
    let ws = workspace_with(&["corn_moisture.meta.parquet", "corn_moisture.arrays.parquet"]);
    let meta = ws.path().join("corn_moisture.meta.parquet");
    let before = rows::read_predictions(&meta).unwrap();
    let old_md = crate::util::metadata(&meta).unwrap();
    let old_arrays =
        n4a::footer::Footer::read(&ws.path().join("corn_moisture.arrays.parquet")).unwrap();
    let mut w = PredictionWriter::append(ws.path(), "corn_moisture", opts()).unwrap();
    let mut p = row("0009_new", "Ridge", "0", "val", 0.01);
    p.dataset_name = Some("corn_moisture".into());
    p.arrays = Some(PredictionArrays {
        y_true: Some(ArrayData::vector(vec![9.0, 8.0])),
        ..Default::default()
    });
    w.write(&p).unwrap();
    let s = w.finish().unwrap();
    let after = rows::read_predictions(&meta).unwrap();
    assert_eq!(after.len(), before.len() + 1);
    assert_eq!(&after[..before.len()], &before[..], "every old value kept");
    assert_eq!(s.total_predictions, 130);
    assert_eq!(
        s.top_predictions[0].val_score,
        Some(0.01),
        "mse: lowest is best"
    );
    // The old row group was spliced, not re-encoded: same compressed bytes.
    let new_md = crate::util::metadata(&meta).unwrap();
    for c in 0..35 {
        assert_eq!(
            new_md.row_group(0).column(c).compressed_size(),
            old_md.row_group(0).column(c).compressed_size()
        );
    }
    let arrays =
        n4a::footer::Footer::read(&ws.path().join("corn_moisture.arrays.parquet")).unwrap();
    assert_eq!(arrays.num_rows(), old_arrays.num_rows() + 1);
    // Nothing left behind but the pair and the lock file.
    let mut names: Vec<String> = std::fs::read_dir(ws.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ".corn_moisture.n4a.lock",
            "corn_moisture.arrays.parquet",
            "corn_moisture.meta.parquet"
        ]
    );
}

#[test]
fn dropped_writer_leaves_old_files_byte_identical() {
    let ws = workspace_with(&["grain_class.meta.parquet", "grain_class.arrays.parquet"]);
    let meta = ws.path().join("grain_class.meta.parquet");
    let arrays = ws.path().join("grain_class.arrays.parquet");
    let (m0, a0) = (
        std::fs::read(&meta).unwrap(),
        std::fs::read(&arrays).unwrap(),
    );
    let mut w =
        PredictionWriter::append(ws.path(), "grain_class", opts().with_row_group_rows(1)).unwrap();
    let mut p = row("c", "RF", "0", "val", 0.9);
    p.metric = Some("balanced_accuracy".into());
    for _ in 0..5 {
        w.write(&p).unwrap();
    }
    drop(w);
    assert_eq!(std::fs::read(&meta).unwrap(), m0);
    assert_eq!(std::fs::read(&arrays).unwrap(), a0);
    let leftovers = std::fs::read_dir(ws.path()).unwrap().count();
    assert_eq!(leftovers, 3, "the pair and the lock file only");
}

#[test]
fn unknown_metric_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = PredictionWriter::create(dir.path(), "ds", opts()).unwrap();
    let mut p = row("c", "PLS", "0", "val", 0.3);
    p.metric = Some("log_loss".into());
    let err = w.write(&p).unwrap_err();
    assert!(matches!(err, Error::UnknownMetricDirection { ref metric } if metric == "log_loss"));
    assert!(err.to_string().contains("--direction log_loss="));
    drop(w);
    let meta = dataset_paths(dir.path(), "ds").meta;
    assert!(!meta.exists());
    // With a direction supplied it is accepted and ranked by it.
    let mut w = PredictionWriter::create(
        dir.path(),
        "ds",
        opts().with_direction("log_loss", Direction::Minimize),
    )
    .unwrap();
    w.write(&p).unwrap();
    let s = w.finish().unwrap();
    assert_eq!(s.ranking.unwrap().direction, Direction::Minimize);
}

#[test]
fn dataset_names_with_separators_or_meta_are_refused_before_any_file_exists() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["../escape", "a/b", "x.meta", "a\\b", ".."] {
        let err = PredictionWriter::create(dir.path(), bad, opts())
            .err()
            .expect(bad);
        assert!(
            matches!(err, Error::InvalidDatasetName { .. }),
            "{bad}: {err}"
        );
        assert!(err.to_string().contains(&format!("{bad:?}")));
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn row_of_another_dataset_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = PredictionWriter::create(dir.path(), "ds", opts()).unwrap();
    let mut p = row("c", "PLS", "0", "val", 0.3);
    p.dataset_name = Some("other".into());
    let err = w.write(&p).unwrap_err().to_string();
    assert!(
        err.contains("\"other\" differs from the file's dataset \"ds\""),
        "{err}"
    );
}

fn contract_batch(drop_col: Option<&str>, mistype: Option<&str>) -> RecordBatch {
    let mut fields = Vec::new();
    let mut cols: Vec<ArrayRef> = Vec::new();
    for f in meta_schema().fields() {
        if Some(f.name().as_str()) == drop_col {
            continue;
        }
        if Some(f.name().as_str()) == mistype {
            fields.push(Field::new(f.name(), DataType::Int32, true));
            cols.push(Arc::new(Int32Array::from(vec![1, 2])));
            continue;
        }
        fields.push(f.as_ref().clone());
        cols.push(match f.data_type() {
            DataType::Utf8 => Arc::new(StringArray::from(match f.name().as_str() {
                "metric" => vec![Some("rmse"), Some("rmse")],
                "dataset_name" => vec![Some("ds"), None],
                "id" => vec![None, None],
                _ => vec![Some("x"), Some("y")],
            })),
            DataType::Float64 => Arc::new(Float64Array::from(vec![Some(0.5), None])),
            _ => Arc::new(arrow_array::Int64Array::from(vec![Some(1), None])),
        });
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap()
}

#[test]
fn record_batches_are_checked_whole_before_any_row_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = PredictionWriter::create(dir.path(), "ds", opts()).unwrap();
    let err = w
        .write_batch(&contract_batch(Some("val_score"), None))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "record batch: schema mismatch: missing column \"val_score\""
    );
    let err = w
        .write_batch(&contract_batch(None, Some("step_idx")))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "record batch: schema mismatch: column \"step_idx\" has type Int32, expected int64"
    );
    assert_eq!(w.num_rows(), 0, "nothing taken");
    w.write_batch(&contract_batch(None, None)).unwrap();
    let s = w.finish().unwrap();
    assert_eq!(s.total_predictions, 2);
    let got = rows::read_predictions(&dataset_paths(dir.path(), "ds").meta).unwrap();
    assert_eq!(got[1].dataset_name.as_deref(), Some("ds"), "filled");
    assert!(got
        .iter()
        .all(|p| p.id.as_deref() == Some(n4a::schema::row_id(p).as_str())));
}

#[test]
fn appending_to_a_file_without_summary_rebuilds_it_from_rows() {
    // A nirs4all file as written before summaries existed: strip the footer key.
    let ws = tempfile::tempdir().unwrap();
    let src = rows::read_predictions(&fixture("grain_class.meta.parquet")).unwrap();
    let mut w = PredictionWriter::create(ws.path(), "grain_class", opts()).unwrap();
    for p in &src {
        w.write(p).unwrap();
    }
    w.finish().unwrap();
    let stored = n4a::footer::Footer::read(&fixture("grain_class.meta.parquet"))
        .unwrap()
        .summary()
        .unwrap()
        .unwrap();
    let ours = n4a::footer::Footer::read(&ws.path().join("grain_class.meta.parquet"))
        .unwrap()
        .summary()
        .unwrap()
        .unwrap();
    assert_eq!(ours.facets, stored.facets);
    assert_eq!(ours.runs, stored.runs);
    assert_eq!(
        ours.stats.val_score.unwrap().quartiles,
        stored.stats.val_score.unwrap().quartiles
    );
}

#[test]
fn appending_to_an_older_layout_reencodes_every_old_value() {
    let ws = workspace_with(&["old_layout.meta.parquet"]);
    std::fs::rename(
        ws.path().join("old_layout.meta.parquet"),
        ws.path().join("grain_class.meta.parquet"),
    )
    .unwrap();
    let meta = ws.path().join("grain_class.meta.parquet");
    let before = rows::read_predictions(&meta).unwrap();
    assert!(before
        .iter()
        .all(|p| p.y_true_id.is_none() && p.branch_name.is_none()));
    let mut w = PredictionWriter::append(ws.path(), "grain_class", opts()).unwrap();
    let mut p = row("c", "RF", "0", "val", 0.99);
    p.metric = Some("balanced_accuracy".into());
    w.write(&p).unwrap();
    let s = w.finish().unwrap();
    let after = rows::read_predictions(&meta).unwrap();
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "old values kept, missing columns null"
    );
    assert_eq!(s.total_predictions, 16);
    assert_eq!(s.top_predictions[0].val_score, Some(1.0));
    let file = std::fs::File::open(&meta).unwrap();
    let schema = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .schema()
        .clone();
    assert_eq!(schema.fields().len(), 35, "now in the contract's layout");
}

#[test]
fn appending_to_a_mistyped_file_names_file_and_column_and_changes_nothing() {
    let ws = workspace_with(&["mistyped.meta.parquet"]);
    let meta = ws.path().join("mistyped.meta.parquet");
    let before = std::fs::read(&meta).unwrap();
    let err = PredictionWriter::append(ws.path(), "mistyped", opts())
        .err()
        .expect("refused");
    let msg = err.to_string();
    assert!(msg.contains("mistyped.meta.parquet"), "{msg}");
    assert!(msg.contains("column \"val_score\" has type Utf8"), "{msg}");
    assert_eq!(std::fs::read(&meta).unwrap(), before);
}

#[test]
fn columnar_batches_equal_row_by_row_writes() {
    // nirs4all's rows (large_utf8 strings), written as record batches (the
    // columnar path) and row by row: the same rows, the same summary.
    let src = fixture("corn_moisture.meta.parquet");
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut wa =
        PredictionWriter::create(a.path(), "corn_moisture", opts().with_row_group_rows(50))
            .unwrap();
    let mut wb =
        PredictionWriter::create(b.path(), "corn_moisture", opts().with_row_group_rows(50))
            .unwrap();
    rows::for_each_batch(&src, None, 40, |batch| {
        wa.write_batch(&batch)?;
        for p in rows::batch_to_predictions(&batch, "b", true)? {
            wb.write_owned(p)?;
        }
        Ok(())
    })
    .unwrap();
    let (sa, sb) = (wa.finish().unwrap(), wb.finish().unwrap());
    assert_eq!(sa, sb);
    let read = |d: &std::path::Path| {
        rows::read_predictions(&d.join("corn_moisture.meta.parquet")).unwrap()
    };
    assert_eq!(read(a.path()), read(b.path()));
    assert_eq!(read(a.path()), rows::read_predictions(&src).unwrap());
    // A batch of another dataset is refused whole, by row.
    let mut w = PredictionWriter::create(a.path(), "other", opts()).unwrap();
    let mut err = None;
    rows::for_each_batch(&src, None, 200, |batch| {
        err = w.write_batch(&batch).err();
        Ok(())
    })
    .unwrap();
    assert!(
        matches!(err, Some(Error::InvalidRow { row: 0, .. })),
        "{err:?}"
    );
    assert_eq!(w.num_rows(), 0);
}

#[test]
fn parquet_input_is_ingested_by_dataset() {
    let ws = tempfile::tempdir().unwrap();
    let report = n4a::ingest::ingest(
        ws.path(),
        &fixture("grain_class.meta.parquet"),
        n4a::ingest::InputFormat::Parquet,
        &opts(),
    )
    .unwrap();
    assert_eq!(report.get("grain_class"), Some(&15));
    let stored = rows::read_predictions(&fixture("grain_class.meta.parquet")).unwrap();
    let ours = rows::read_predictions(&ws.path().join("grain_class.meta.parquet")).unwrap();
    assert_eq!(ours, stored);
}
