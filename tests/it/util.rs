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
