//! Shared helpers of the integration tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use n4a::schema::Prediction;

/// Path of a file in `fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// Copies fixture files into a fresh temporary workspace.
pub fn workspace_with(names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for n in names {
        std::fs::copy(fixture(n), dir.path().join(n)).unwrap();
    }
    dir
}

/// Rewrites the prediction file `src` into `dst` with ArrowWriter (as a
/// tool other than n4a would), its footer carrying `summary` as a plain
/// key/value entry and, when `embed`, inside the Arrow schema too; `None`
/// writes no summary at all (nirs4all before summaries existed).
pub fn rewrite_with_summary(src: &Path, dst: &Path, summary: Option<&str>, embed: bool) {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let b = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(src).unwrap()).unwrap();
    let mut md = b.schema().metadata().clone();
    md.remove("n4a_summary");
    if let (Some(s), true) = (summary, embed) {
        md.insert("n4a_summary".to_string(), s.to_string());
    }
    let schema = std::sync::Arc::new(b.schema().as_ref().clone().with_metadata(md));
    let batches: Vec<_> = b.build().unwrap().map(|r| r.unwrap()).collect();
    let kv = summary.map(|s| {
        vec![parquet::file::metadata::KeyValue::new(
            "n4a_summary".into(),
            s.to_string(),
        )]
    });
    let props = parquet::file::properties::WriterProperties::builder()
        .set_key_value_metadata(kv)
        .build();
    let tmp = dst.with_extension("tmp-rewrite");
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&tmp).unwrap(),
        schema.clone(),
        Some(props),
    )
    .unwrap();
    for b in batches {
        let b = arrow_array::RecordBatch::try_new(schema.clone(), b.columns().to_vec()).unwrap();
        w.write(&b).unwrap();
    }
    w.close().unwrap();
    std::fs::rename(&tmp, dst).unwrap();
}

/// Relative closeness for floats computed along different paths.
pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
}

/// Option-aware [`close`].
pub fn close_opt(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => close(x, y),
        (None, None) => true,
        _ => false,
    }
}

/// A simple regression row.
pub fn row(config: &str, model: &str, fold: &str, partition: &str, val: f64) -> Prediction {
    Prediction {
        dataset_path: Some("ds".into()),
        config_name: Some(config.into()),
        config_path: Some(format!("ds/{config}")),
        pipeline_uid: Some(config.into()),
        step_idx: Some(3),
        op_counter: Some(1),
        model_name: Some(model.into()),
        model_classname: Some(model.into()),
        fold_id: Some(fold.into()),
        partition: Some(partition.into()),
        val_score: Some(val),
        test_score: Some(val * 1.1),
        train_score: Some(val * 0.5),
        metric: Some("mse".into()),
        task_type: Some("regression".into()),
        ..Default::default()
    }
}
