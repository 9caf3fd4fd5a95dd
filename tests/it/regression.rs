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

/// Issue 5: a file whose footer has no key/value metadata at all (a plain
/// parquet writer: no `ARROW:schema`, no summary) is refreshed: the footer
/// gains both, the key/value field inserted in its place in the Thrift
/// struct, and the rows are kept.
#[test]
fn issue_5_a_footer_without_any_key_value_metadata_gets_the_summary() {
    use n4a::reader::{footer, rows};
    use n4a::refresh::{refresh_workspace, RefreshOptions, Status};
    let dir = tempfile::tempdir().unwrap();
    let mut w = PredictionWriter::create(dir.path(), "ds", WriterOptions::default()).unwrap();
    for (i, v) in [0.9, 0.1, 0.5].iter().enumerate() {
        w.write(&row(&format!("c{i}"), "PLS", "0", "val", *v))
            .unwrap();
    }
    w.finish().unwrap();
    let meta = dir.path().join("ds.meta.parquet");
    let before = rows::read_predictions(&meta).unwrap();
    let b = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&meta).unwrap(),
    )
    .unwrap();
    let schema = std::sync::Arc::new(
        b.schema()
            .as_ref()
            .clone()
            .with_metadata(std::collections::HashMap::<String, String>::new()),
    );
    let batches: Vec<_> = b.build().unwrap().map(|r| r.unwrap()).collect();
    let plain = dir.path().join("plain.tmp");
    let opts =
        parquet::arrow::arrow_writer::ArrowWriterOptions::new().with_skip_arrow_metadata(true);
    let mut aw = parquet::arrow::ArrowWriter::try_new_with_options(
        std::fs::File::create(&plain).unwrap(),
        schema.clone(),
        opts,
    )
    .unwrap();
    for b in batches {
        aw.write(&arrow_array::RecordBatch::try_new(schema.clone(), b.columns().to_vec()).unwrap())
            .unwrap();
    }
    aw.close().unwrap();
    std::fs::rename(&plain, &meta).unwrap();
    let (_, md) = footer::open_metadata(&meta).unwrap();
    assert!(md.file_metadata().key_value_metadata().is_none());

    let r = refresh_workspace(dir.path(), &RefreshOptions::default(), &|_, _| {}).unwrap();
    assert_eq!(r.files[0].status, Status::Refreshed, "{r:#?}");
    let (_, md) = footer::open_metadata(&meta).unwrap();
    let keys: Vec<&str> = md
        .file_metadata()
        .key_value_metadata()
        .unwrap()
        .iter()
        .map(|kv| kv.key.as_str())
        .collect();
    assert_eq!(keys, ["n4a_runs", "n4a_summary", "n4a_state"]);
    let s = footer::read_footer(&meta).unwrap().summary.unwrap();
    assert_eq!(s.top_predictions[0].val_score, Some(0.1));
    assert_eq!(rows::read_predictions(&meta).unwrap(), before);
}

/// Issue 6: the dashboard's default data page (no sort, at most a dataset
/// filter) is found by counting rows from the footers and reads only the
/// files that hold it, in file order (dataset, then row), as the dashboard
/// itself concatenates files.
#[test]
fn issue_6_default_page_reads_only_the_files_holding_it() {
    use n4a::query::{PageQuery, QueryEngine};
    use n4a::reader::rows;
    let dir = tempfile::tempdir().unwrap();
    let mut all = Vec::new();
    for i in 0..4 {
        let (name, rws) = n4a::generate::dataset_rows(i, 30, 5, false);
        let mut w = PredictionWriter::create(dir.path(), &name, WriterOptions::default()).unwrap();
        rws.into_iter().for_each(|p| w.write_owned(p).unwrap());
        w.finish().unwrap();
        let back =
            rows::read_predictions(&dir.path().join(format!("{name}.meta.parquet"))).unwrap();
        all.extend(back.into_iter().map(|p| (name.clone(), p.id.unwrap())));
    }
    all.sort_by(|a, b| a.0.cmp(&b.0)); // dataset order, rows in file order
    let ws = Workspace::open(dir.path()).unwrap();
    let engine = QueryEngine::new(&ws);
    for (offset, limit) in [(0, 5), (27, 6), (58, 40), (119, 5), (120, 5), (500, 1)] {
        let page = engine
            .page(&PageQuery {
                offset,
                limit,
                ..Default::default()
            })
            .unwrap();
        let got: Vec<(String, String)> = page
            .records
            .iter()
            .map(|r| {
                (
                    r["dataset"].as_str().unwrap().into(),
                    r["id"].as_str().unwrap().into(),
                )
            })
            .collect();
        let want: Vec<(String, String)> = all.iter().skip(offset).take(limit).cloned().collect();
        assert_eq!(got, want, "offset {offset} limit {limit}");
        assert_eq!(page.total, 120);
        assert_eq!(page.has_more, offset + limit < 120);
        let files = want
            .iter()
            .map(|w| &w.0)
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        assert_eq!(page.provenance.files_scanned, files, "offset {offset}");
    }
}

/// Issue 10: a workspace of nirs4all 1.0 footers (no n4a state) had an
/// empty dashboard: no models, runs, top predictions or stats; and for
/// `mse` the stored "top" rows are the worst, which must not be shown.
#[test]
fn issue_10_a_nirs4all_1_0_workspace_has_models_runs_stats_and_the_lowest_mse() {
    let ws = crate::util::workspace_with(&["corn_moisture.meta.parquet"]);
    let s = Workspace::open(ws.path()).unwrap().summary().unwrap();
    assert!(!s.models.is_empty());
    assert!(!s.runs().is_empty());
    assert!(s.stats.val_score.is_some());
    let rows =
        n4a::reader::rows::read_predictions(&ws.path().join("corn_moisture.meta.parquet")).unwrap();
    let lowest = rows
        .iter()
        .filter_map(|p| p.val_score)
        .fold(f64::INFINITY, f64::min);
    assert_eq!(
        s.top_predictions[0].val_score,
        Some(n4a::summary::round4(lowest))
    );
    assert_eq!(
        s.top_by_metric["mse"].predictions[0].val_score,
        Some(lowest)
    );
}
