//! Regression tests named after the issues whose behaviour they pin.

use n4a::metric::Direction;
use n4a::reader::Workspace;
use n4a::writer::{PredictionWriter, WriterOptions};

use crate::util::row;

/// Issue 2: "best" and "top" follow the metric's direction. nirs4all
/// calls the maximum `mse` the top prediction; n4a must not.
#[test]
fn issue_2_top_mse_is_the_lowest_and_the_direction_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = PredictionWriter::create(dir.path(), "ds", WriterOptions::default()).unwrap();
    for (i, v) in [0.9, 0.1, 0.5].iter().enumerate() {
        w.write(&row(&format!("c{i}"), "PLS", "0", "val", *v))
            .unwrap();
    }
    let s = w.finish().unwrap();
    assert_eq!(s.top_predictions[0].val_score, Some(0.1));
    assert_eq!(s.runs[0].best_val_score, Some(0.1));
    assert_eq!(s.ranking.unwrap().direction, Direction::Minimize);
}

/// Issue 2: a file mixing metrics keeps a top-k per metric, each by its
/// own direction.
#[test]
fn issue_2_mixed_metrics_keep_one_top_list_each() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = PredictionWriter::create(dir.path(), "ds", WriterOptions::default()).unwrap();
    for v in [0.2, 0.8] {
        let mut p = row("c", "PLS", "0", "val", v);
        w.write(&p).unwrap();
        p.metric = Some("r2".into());
        w.write(&p).unwrap();
    }
    let s = w.finish().unwrap();
    assert_eq!(s.top_by_metric["mse"].predictions[0].val_score, Some(0.2));
    assert_eq!(s.top_by_metric["r2"].predictions[0].val_score, Some(0.8));
    assert_eq!(s.top_by_metric["r2"].direction, Direction::Maximize);
}

/// Issue 3: one bad file in a workspace must not hide the good ones.
#[test]
fn issue_3_a_bad_file_does_not_hide_the_good_ones() {
    let ws = crate::util::workspace_with(&["grain_class.meta.parquet", "truncated.meta.parquet"]);
    let s = Workspace::open(ws.path()).unwrap().summary().unwrap();
    assert_eq!(s.total_datasets, 1);
    assert_eq!(s.errors.len(), 1);
    assert_eq!(s.errors[0].dataset.as_deref(), Some("truncated"));
}
