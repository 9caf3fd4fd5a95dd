//! Regression tests named after the issues whose behaviour they pin.

use n4a::metric::Direction;
use n4a::writer::{PredictionWriter, WriterOptions};
use n4a::Workspace;

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
    use n4a::refresh::{refresh_workspace, RefreshOptions, Status};
    use n4a::rows;
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
    let md = crate::util::metadata(&meta).unwrap();
    assert!(md.file_metadata().key_value_metadata().is_none());

    let r = refresh_workspace(dir.path(), &RefreshOptions::default(), &|_, _| {}).unwrap();
    assert_eq!(r.files[0].status, Status::Refreshed, "{r:#?}");
    let md = crate::util::metadata(&meta).unwrap();
    let keys: Vec<&str> = md
        .file_metadata()
        .key_value_metadata()
        .unwrap()
        .iter()
        .map(|kv| kv.key.as_str())
        .collect();
    assert_eq!(keys, ["ARROW:schema", "n4a_summary", "n4a_state"]);
    let s = n4a::footer::Footer::read(&meta)
        .unwrap()
        .summary()
        .unwrap()
        .unwrap();
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
    use n4a::rows;
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
    assert!(s.stats.as_ref().unwrap().val_score.is_some());
    let rows = n4a::rows::read_predictions(&ws.path().join("corn_moisture.meta.parquet")).unwrap();
    let lowest = rows
        .iter()
        .filter_map(|p| p.val_score)
        .fold(f64::INFINITY, f64::min);
    assert_eq!(
        s.top_predictions[0].val_score,
        Some(crate::util::round4(lowest))
    );
    assert_eq!(
        s.top_by_metric["mse"].predictions[0].val_score,
        Some(lowest)
    );
}

/// Issue 12: a file whose footer is intact but one of whose data pages is
/// damaged, beside good files, is a per-file error with one clear cause on
/// every path that reads rows: `query`, `top`, `stats`, `refresh` and the
/// server; the good files are answered.
#[test]
fn issue_12_a_damaged_data_page_is_one_named_error_and_the_good_files_are_answered() {
    use std::process::Command;
    let dir = tempfile::tempdir().unwrap();
    let opts = n4a::generate::GenOptions {
        datasets: 3,
        rows: 300,
        ..Default::default()
    };
    let made = n4a::generate::generate(dir.path(), &opts).unwrap();
    let names: Vec<String> = made.iter().map(|d| d.name.clone()).collect();
    let bad = dir.path().join(format!("{}.meta.parquet", names[1]));
    crate::util::damage_column(&bad, "val_score");
    // A nirs4all file (no n4a state: refresh must read its rows) damaged too.
    let old = dir.path().join("corn_moisture.meta.parquet");
    std::fs::copy(crate::util::fixture("corn_moisture.meta.parquet"), &old).unwrap();
    crate::util::damage_column(&old, "model_name");
    let good_rows = 2 * 300;
    let n4a = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_n4a"))
            .args(args)
            .arg(dir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        (out.status.code(), stdout, stderr)
    };
    // One error per damaged file it read, named, said once.
    let check_errors = |errors: &serde_json::Value, what: &str| {
        let errors = errors.as_array().unwrap();
        assert!(!errors.is_empty(), "{what}: the damaged file is reported");
        for e in errors {
            let msg = e["error"].as_str().unwrap();
            let path = e["path"].as_str().unwrap();
            assert!(
                path.ends_with(&format!("{}.meta.parquet", names[1]))
                    || path.ends_with("corn_moisture.meta.parquet"),
                "{what}: {path}"
            );
            assert_eq!(e["kind"], "damaged_data", "{what}: {msg}");
            assert_eq!(msg.matches("damaged row data").count(), 1, "{what}: {msg}");
            let cause = msg.rsplit(": ").next().unwrap();
            assert_eq!(msg.matches(cause).count(), 1, "{what}: said once: {msg}");
        }
    };
    // A page that must read every file's scores.
    let (code, out, err) = n4a(&[
        "query",
        "--where",
        "val_score>-1e300",
        "--limit",
        "5000",
        "--format",
        "json",
    ]);
    assert_eq!(code, Some(1), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let good: Vec<&str> = v["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["dataset"].as_str().unwrap())
        .collect();
    assert_eq!(
        v["total"], good_rows,
        "the good files' rows, the bad left out"
    );
    assert!(good.iter().all(|d| *d == names[0] || *d == names[2]));
    check_errors(&v["provenance"]["errors"], "query --where");
    // Sorted, in file order and on the damaged dataset alone.
    for args in [
        &[
            "query",
            "--sort",
            "val_score:desc",
            "--limit",
            "3",
            "--format",
            "json",
        ][..],
        &[
            "query",
            "--dataset",
            &names[1],
            "--limit",
            "3",
            "--format",
            "json",
        ][..],
        &[
            "query", "--limit", "1000", "--offset", "250", "--format", "json",
        ][..],
    ] {
        let (code, out, err) = n4a(args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        check_errors(&v["provenance"]["errors"], &format!("{args:?}"));
    }
    // The file-order page skips the damaged file: rows 250.. of the others.
    let (_, out, _) = n4a(&[
        "query", "--limit", "1000", "--offset", "250", "--format", "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["records"].as_array().unwrap().len(), good_rows - 250);
    // Top-k and group-bys.
    // The datasets' metrics differ: one list per metric (issue 29), each
    // full, the damaged file's error in the lists that read it.
    let (code, out, err) = n4a(&["top", "--k", "50", "--format", "json"]);
    assert_eq!(code, Some(1), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let lists = v["by_metric"].as_array().unwrap();
    assert!(lists.len() > 1, "{out}");
    let mut errors = Vec::new();
    for l in lists {
        // The damaged file's metric is its own: that list is empty, and
        // says why.
        let failed = !l["provenance"]["errors"].as_array().unwrap().is_empty();
        assert!(
            failed || !l["records"].as_array().unwrap().is_empty(),
            "{l}"
        );
        errors.extend(
            l["provenance"]["errors"]
                .as_array()
                .unwrap()
                .iter()
                .cloned(),
        );
    }
    check_errors(&serde_json::Value::Array(errors), "top");
    // Group-bys: the n4a files' stored group aggregates (issue 33) answer
    // by model, dataset, partition and fold without reading a row, so the
    // damaged n4a file's rows count there; a group-by that must read rows
    // reports what it could not read. The nirs4all file (no aggregates)
    // is always read: its damage is in model_name, so only the group-by
    // by model fails it.
    for key in ["model", "config", "dataset", "partition", "fold"] {
        let (code, out, err) = n4a(&[
            "stats",
            "--partition",
            "all",
            "--group-by",
            key,
            "--format",
            "json",
        ]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        // One grouping per metric and partition (issue 29).
        let splits = v["by_metric"].as_array().unwrap();
        let count: u64 = splits
            .iter()
            .flat_map(|s| s["groups"].as_array().unwrap())
            .map(|g| g["count"].as_u64().unwrap())
            .sum();
        let errors: Vec<serde_json::Value> = splits
            .iter()
            .flat_map(|s| s["provenance"]["errors"].as_array().unwrap().clone())
            .collect();
        let (readable, failing) = match key {
            "model" => (good_rows + 300, Some("corn_moisture")),
            "config" => (good_rows + 129, Some(names[1].as_str())),
            _ => (good_rows + 300 + 129, None),
        };
        assert_eq!(count, readable as u64, "{key}");
        match failing {
            Some(name) => {
                assert_eq!(code, Some(1), "{key}: {err} {out}");
                check_errors(&serde_json::Value::Array(errors.clone()), key);
                assert!(
                    errors
                        .iter()
                        .all(|e| e["path"].as_str().unwrap().contains(name)),
                    "{key}: {errors:?}"
                );
            }
            None => assert_eq!((code, errors.len()), (Some(0), 0), "{key}: {err} {out}"),
        }
    }
    // A row filter makes every file's rows be read: each damaged file is
    // one named error, the good files answered.
    let (code, out, err) = n4a(&[
        "stats",
        "--partition",
        "all",
        "--group-by",
        "dataset",
        "--where",
        "val_score>-1e300",
        "--format",
        "json",
    ]);
    assert_eq!(code, Some(1), "{err} {out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let errors: Vec<serde_json::Value> = v["by_metric"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["provenance"]["errors"].as_array().unwrap().clone())
        .collect();
    check_errors(&serde_json::Value::Array(errors.clone()), "stats --where");
    assert!(errors
        .iter()
        .any(|e| e["path"].as_str().unwrap().contains(names[1].as_str())));
    // Refresh: the damaged files fail, each named once; the rest refresh.
    for args in [
        &["refresh", "--verify", "--format", "json"][..],
        &["refresh", "--format", "json"][..],
    ] {
        let (code, out, err) = n4a(args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let failed: Vec<&serde_json::Value> = v["files"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["status"] == "failed")
            .collect();
        assert!(!failed.is_empty(), "{args:?}: {out}");
        for f in failed {
            let msg = f["reason"].as_str().unwrap();
            assert!(msg.contains("damaged row data"), "{msg}");
            assert_eq!(msg.matches("damaged row data").count(), 1, "{msg}");
        }
    }
    // The server: pages, top-k, groups carry the error; scatter of a
    // prediction in the damaged file says the file could not be read.
    let app = n4a::server::App::new(
        &[("w".to_string(), dir.path().to_path_buf())],
        n4a::server::ServeOptions {
            log: false,
            ..Default::default()
        },
    )
    .unwrap();
    let bg = n4a::server::Background::start(app).unwrap();
    let get = |t: &str| {
        let r = crate::client::Client::connect(bg.addr())
            .unwrap()
            .get(t)
            .unwrap();
        (r.status, r.json())
    };
    for t in [
        "data?where=val_score%3E-1e300&limit=2000",
        "data?sort=val_score:desc&limit=3",
        "top?k=5",
        "groups?group_by=model",
    ] {
        let (s, v) = get(&format!("/api/workspaces/w/predictions/{t}"));
        assert_eq!(s, 200, "{t}: {v}");
        // Rankings and groupings come per metric (issue 29): the errors of
        // every list.
        let answers = match v.get("by_metric") {
            Some(lists) => lists.as_array().unwrap().clone(),
            None => vec![v.clone()],
        };
        let errors: Vec<serde_json::Value> = answers
            .iter()
            .flat_map(|a| a["provenance"]["errors"].as_array().unwrap().clone())
            .collect();
        check_errors(&serde_json::Value::Array(errors), t);
    }
    let id = n4a::rows::read_predictions(&dir.path().join(format!("{}.meta.parquet", names[0])))
        .unwrap()[3]
        .id
        .clone()
        .unwrap();
    let (s, _) = get(&format!("/api/workspaces/w/predictions/{id}/scatter"));
    assert_eq!(s, 200, "a prediction in a good file is served");
}

/// Issue 13: error variants say what happened, and `kind()` names each:
/// an address refused, a bad workspace id and a short token are
/// `invalid_option` (not `invalid_query`), a failing CSV output is `csv`
/// (not `io` on a made-up path), a file whose metadata promises more rows
/// than it holds is `corrupt` (not `parquet`).
#[test]
fn issue_13_error_variants_say_what_happened() {
    use n4a::server::{BearerToken, ServeOptions};
    let ws = tempfile::tempdir().unwrap();
    let remote = ServeOptions {
        addr: "0.0.0.0:0".parse().unwrap(),
        log: false,
        ..Default::default()
    };
    let e = n4a::server::run(&[(String::new(), ws.path().to_path_buf())], remote).unwrap_err();
    assert_eq!(e.kind(), "invalid_option", "{e}");
    assert!(e.to_string().contains("--allow-remote"), "{e}");
    let bad_id = n4a::server::App::new(
        &[("no spaces!".to_string(), ws.path().to_path_buf())],
        ServeOptions::default(),
    )
    .err()
    .expect("an invalid id is refused");
    assert_eq!(bad_id.kind(), "invalid_option", "{bad_id}");
    let short = BearerToken::new("short").unwrap_err();
    assert_eq!(short.kind(), "invalid_option", "{short}");

    struct Full;
    impl std::io::Write for Full {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "disk full",
            ))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut rec = serde_json::Map::new();
    rec.insert("id".into(), "a".into());
    let e = n4a::query::to_csv(&[rec], &["id".to_string()], Full).unwrap_err();
    assert_eq!(e.kind(), "csv", "{e}");
    assert!(e.to_string().contains("disk full"), "{e}");
    assert!(!e.to_string().contains("<output>"), "{e}");

    // A footer whose row count says one more row than its row groups hold.
    let mut w = n4a::PredictionWriter::create(ws.path(), "short", Default::default()).unwrap();
    for i in 0..5 {
        let mut p = crate::util::row(&format!("c{i}"), "PLS", "0", "val", i as f64);
        p.id = Some(format!("id{i}"));
        w.write(&p).unwrap();
    }
    w.finish().unwrap();
    let meta = ws.path().join("short.meta.parquet");
    crate::util::set_num_rows(&meta, 6);
    let r = n4a::refresh::refresh_workspace(
        ws.path(),
        &n4a::refresh::RefreshOptions {
            mode: n4a::refresh::Mode::Verify,
            ..Default::default()
        },
        &|_, _| {},
    )
    .unwrap();
    let f = r
        .files
        .iter()
        .find(|f| f.path.ends_with("short.meta.parquet"))
        .unwrap();
    assert_eq!(f.kind, Some("corrupt"), "{f:?}");
}

/// Issue 15: the Arrow answers the Python package hands over hold what the
/// JSON answers hold: a top-k's batch its records in order, a group-by's
/// batch its groups under the key's column; rankings default to the val
/// partition; mixed metrics group once per metric; errors carry their file.
#[test]
fn issue_15_arrow_answers_hold_the_json_answers() {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, UInt64Type};
    use arrow_array::Array;
    use n4a::query::{Filters, GroupKey, GroupQuery, QueryEngine, TopQuery};
    let dir = tempfile::tempdir().unwrap();
    n4a::generate::generate(
        dir.path(),
        &n4a::generate::GenOptions {
            datasets: 3,
            rows: 300,
            ..Default::default()
        },
    )
    .unwrap();
    let ws = Workspace::open(dir.path()).unwrap();
    let engine = QueryEngine::new(&ws);

    let (f, said) = Filters::default().for_ranking();
    assert_eq!(f.get("partition"), Some(&["val".to_string()][..]), "{said}");
    let (all, _) = Filters::default()
        .with("partition", ["all"])
        .unwrap()
        .for_ranking();
    assert_eq!(all.get("partition"), None);

    let top = engine
        .top(&TopQuery {
            filters: f.clone().with("metric", ["mse"]).unwrap(),
            k: 7,
            direction: None,
            score: "val_score".into(),
        })
        .unwrap();
    let b = top.to_batch().unwrap();
    assert_eq!(b.num_rows(), 7);
    let ids = b.column_by_name("id").unwrap().as_string::<i32>();
    let scores = b
        .column_by_name("val_score")
        .unwrap()
        .as_primitive::<Float64Type>();
    let rows = b
        .column_by_name("row")
        .unwrap()
        .as_primitive::<UInt64Type>();
    for (i, r) in top.records.iter().enumerate() {
        assert_eq!(Some(ids.value(i)), r.id.as_deref());
        assert_eq!(Some(scores.value(i)), r.val_score);
        assert_eq!(rows.value(i), r.row);
    }

    let q = GroupQuery {
        filters: f,
        key: GroupKey::Model,
        score: "val_score".into(),
        count_and_mean_only: false,
        direction: None,
    };
    let split = engine.group_by_metric(&q).unwrap().groupings;
    let metrics: Vec<&str> = split
        .iter()
        .map(|(m, _)| m.metric.as_deref().unwrap())
        .collect();
    assert_eq!(metrics, ["balanced_accuracy", "mse", "r2"]);
    for (m, g) in &split {
        let want = if m.metric.as_deref() == Some("mse") {
            Direction::Minimize
        } else {
            Direction::Maximize
        };
        assert_eq!(g.direction, Some(want), "{m:?}");
        let b = g.to_batch(GroupKey::Model).unwrap();
        assert_eq!(b.schema().field(0).name(), "model_name");
        let counts = b
            .column_by_name("count")
            .unwrap()
            .as_primitive::<UInt64Type>();
        let best = b
            .column_by_name("best")
            .unwrap()
            .as_primitive::<Float64Type>();
        for (i, grp) in g.groups.iter().enumerate() {
            assert_eq!(counts.value(i), grp.count);
            assert_eq!(best.is_valid(i).then(|| best.value(i)), grp.best);
        }
    }
    let forced = engine
        .group_by_metric(&GroupQuery {
            direction: Some(Direction::Maximize),
            ..q
        })
        .unwrap()
        .groupings;
    // A forced direction never ranks metrics together (issue 29): still
    // one grouping per metric.
    assert_eq!(forced.len(), 3);

    let missing = dir.path().join("nope");
    let e = Workspace::open(&missing).and_then(|w| w.list().map(drop));
    let e = e.unwrap_err();
    assert_eq!(e.path(), Some(missing.as_path()), "{e}");
    assert_eq!(n4a::Error::InvalidQuery("x".into()).path(), None);
}

/// Issue 15: a file pandas wrote through pyarrow records its categorical
/// columns in `ARROW:schema` as `dictionary<int8, large_string>`, over
/// Parquet columns of plain strings. Every path reads them as the strings
/// they are: before, a query, a refresh and an append refused the file
/// ("Dictionary(Int8, LargeUtf8), expected utf8").
#[test]
fn issue_15_pandas_categorical_columns_read_as_strings() {
    use std::sync::Arc;

    use arrow_array::cast::AsArray;
    use arrow_array::types::Int8Type;
    use arrow_array::{Array, ArrayRef, DictionaryArray, LargeStringArray, RecordBatch};
    use n4a::query::{Filters, PageQuery, QueryEngine, Sort, TopQuery};
    use n4a::refresh::{refresh_workspace, RefreshOptions};

    let plain = tempfile::tempdir().unwrap();
    n4a::generate::generate(
        plain.path(),
        &n4a::generate::GenOptions {
            datasets: 1,
            rows: 400,
            ..Default::default()
        },
    )
    .unwrap();
    let meta = std::fs::read_dir(plain.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".meta.parquet"))
        .unwrap();
    let name = meta.file_name().unwrap().to_string_lossy().to_string();
    let cat = tempfile::tempdir().unwrap();
    let out = std::fs::File::create(cat.path().join(&name)).unwrap();
    let mut writer = None;
    n4a::rows::for_each_batch(&meta, None, 1 << 20, |b| {
        let (fields, cols): (Vec<_>, Vec<ArrayRef>) = b
            .schema()
            .fields()
            .iter()
            .zip(b.columns())
            .map(|(f, c)| {
                if !["model_name", "partition", "metric"].contains(&f.name().as_str()) {
                    return (f.as_ref().clone(), c.clone());
                }
                // n4a's own files declare nirs4all's large_string (issue 28).
                let d: DictionaryArray<Int8Type> = match c.data_type() {
                    arrow_schema::DataType::LargeUtf8 => c.as_string::<i64>().iter().collect(),
                    _ => c.as_string::<i32>().iter().collect(),
                };
                let values = LargeStringArray::from_iter(d.values().as_string::<i32>().iter());
                let d = DictionaryArray::try_new(d.keys().clone(), Arc::new(values)).unwrap();
                let f = arrow_schema::Field::new(f.name(), d.data_type().clone(), true);
                (f, Arc::new(d) as ArrayRef)
            })
            .unzip();
        let b = RecordBatch::try_new(Arc::new(arrow_schema::Schema::new(fields)), cols).unwrap();
        let w = writer.get_or_insert_with(|| {
            parquet::arrow::ArrowWriter::try_new(out.try_clone().unwrap(), b.schema(), None)
                .unwrap()
        });
        w.write(&b).unwrap();
        Ok(())
    })
    .unwrap();
    writer.unwrap().close().unwrap();
    let stored = crate::util::metadata(&cat.path().join(&name)).unwrap();
    let arrow_schema = stored
        .file_metadata()
        .key_value_metadata()
        .unwrap()
        .iter()
        .find(|kv| kv.key == "ARROW:schema");
    assert!(arrow_schema.is_some(), "the file records its dictionaries");

    // Before any summary: the scan answers as on the plain file.
    let answers = |dir: &std::path::Path| {
        let ws = Workspace::open(dir).unwrap();
        let engine = QueryEngine::new(&ws);
        let page = engine
            .page(&PageQuery {
                filters: Filters::default().with("partition", ["val"]).unwrap(),
                columns: None,
                sort: Some(Sort {
                    column: "val_score".into(),
                    descending: false,
                }),
                offset: 3,
                limit: 20,
            })
            .unwrap();
        assert!(page.provenance.errors.is_empty(), "{:?}", page.provenance);
        let top = engine
            .top(&TopQuery {
                filters: Filters::default().with("partition", ["val"]).unwrap(),
                k: 5,
                direction: None,
                score: "val_score".into(),
            })
            .unwrap();
        let ids = |rs: Vec<Option<String>>| rs.into_iter().map(Option::unwrap).collect::<Vec<_>>();
        (
            page.total,
            serde_json::to_value(&page.records).unwrap(),
            ids(top.records.iter().map(|r| r.id.clone()).collect()),
        )
    };
    let want = answers(plain.path());
    assert!(want.0 > 0);
    assert_eq!(answers(cat.path()), want);

    let report = refresh_workspace(cat.path(), &RefreshOptions::default(), &|_, _| {}).unwrap();
    assert_eq!((report.refreshed, report.failed), (1, 0), "{report:?}");
    assert_eq!(answers(cat.path()), want);
    let summary = |dir: &std::path::Path| {
        let s = n4a::footer::Footer::read(&dir.join(&name))
            .unwrap()
            .summary()
            .unwrap()
            .unwrap();
        serde_json::to_value((&s.runs, &s.top_predictions, &s.facets)).unwrap()
    };
    assert_eq!(summary(cat.path()), summary(plain.path()));

    // An append keeps the old rows' strings.
    let dataset = name.trim_end_matches(".meta.parquet");
    let mut w = PredictionWriter::append(cat.path(), dataset, WriterOptions::default()).unwrap();
    w.write(&row("cfg_new", "PLS", "0", "val", 0.5)).unwrap();
    w.finish().unwrap();
    let old = n4a::rows::read_predictions(&meta).unwrap();
    let now = n4a::rows::read_predictions(&cat.path().join(&name)).unwrap();
    assert_eq!(now.len(), old.len() + 1);
    for (a, b) in old.iter().zip(&now) {
        assert_eq!(
            (&a.model_name, &a.partition, &a.metric, &a.id),
            (&b.model_name, &b.partition, &b.metric, &b.id)
        );
    }
}

/// Issue 28: polars before 1.42 refused every file n4a wrote (`Invalid
/// thrift: bad data`) because the parquet crate writes the IEEE 754 total
/// column order for DOUBLE columns; and a refresh dropped `ARROW:schema`, so
/// pyarrow read nirs4all's large_string columns as string. Every path that
/// writes a file (a new dataset, an append to nirs4all's file, refresh,
/// export-store's arrays, import-store) now writes type-defined orders and
/// an `ARROW:schema` with nirs4all's types and the summary inside. The
/// readers themselves run in `python/tests/test_compat.py`.
#[test]
fn issue_28_every_file_n4a_writes_has_a_footer_older_readers_accept() {
    use n4a::refresh::{refresh_workspace, RefreshOptions};
    use n4a::store::{export_store, import_store, ExportOptions, ImportOptions};
    use parquet::basic::ColumnOrder;

    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    for f in ["corn_moisture.meta.parquet", "corn_moisture.arrays.parquet"] {
        std::fs::copy(crate::util::fixture(f), ws.join(f)).unwrap();
    }
    let mut w = PredictionWriter::create(&ws, "new", WriterOptions::default()).unwrap();
    let mut p = row("c1", "PLS", "0", "val", 0.5);
    p.test_score = Some(f64::NAN);
    w.write(&p).unwrap();
    w.finish().unwrap();
    let mut w = PredictionWriter::append(&ws, "corn_moisture", WriterOptions::default()).unwrap();
    w.write(&row("c9", "PLS", "0", "val", 0.01)).unwrap();
    w.finish().unwrap();
    let refreshed = dir.path().join("refreshed");
    std::fs::create_dir(&refreshed).unwrap();
    std::fs::copy(
        crate::util::fixture("grain_class.meta.parquet"),
        refreshed.join("grain_class.meta.parquet"),
    )
    .unwrap();
    refresh_workspace(&refreshed, &RefreshOptions::default(), &|_, _| {}).unwrap();
    let store = dir.path().join("store");
    export_store(&ws, &store, &ExportOptions::default()).unwrap();
    let back = dir.path().join("back");
    import_store(&store, &back, &ImportOptions::default()).unwrap();

    let mut files: Vec<std::path::PathBuf> = Vec::new();
    for d in [&ws, &refreshed, &back, &store.join("arrays")] {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "parquet") {
                files.push(p);
            }
        }
    }
    assert!(files.len() >= 9, "{files:?}");
    for p in &files {
        let md = crate::util::metadata(p).unwrap();
        let fm = md.file_metadata();
        for i in 0..fm.schema_descr().num_columns() {
            assert!(
                matches!(fm.column_order(i), ColumnOrder::TYPE_DEFINED_ORDER(_)),
                "{}: column {i} has {:?}",
                p.display(),
                fm.column_order(i)
            );
        }
        for rg in md.row_groups() {
            for c in rg.columns() {
                if let Some(parquet::file::statistics::Statistics::Double(s)) = c.statistics() {
                    assert!(
                        !s.min_opt().is_some_and(|v| v.is_nan()),
                        "{}: a NaN bound",
                        p.display()
                    );
                }
            }
        }
        let kv = crate::util::key_values_of(p);
        assert!(
            kv.iter().any(|(k, _)| k == "ARROW:schema"),
            "{}: {kv:?}",
            p.display()
        );
        if p.to_string_lossy().ends_with(".meta.parquet") {
            let seen = crate::summary::pyarrow_metadata(p);
            let plain = kv.iter().find(|(k, _)| k == "n4a_summary").unwrap();
            assert_eq!(seen.get("n4a_summary"), Some(&plain.1), "{}", p.display());
            let arrow =
                parquet::arrow::parquet_to_arrow_schema(fm.schema_descr(), fm.key_value_metadata())
                    .unwrap();
            assert_eq!(
                arrow.field_with_name("config_name").unwrap().data_type(),
                &arrow_schema::DataType::LargeUtf8,
                "{}: nirs4all's string type",
                p.display()
            );
        }
    }
}

/// Issue 28 (format 1.3): a state's runs live in the file's body just
/// before the footer, raw, named by the head (offset, length, hash). A
/// rewrite replaces them (the file never accumulates old runs), and
/// damaged runs are reported by name while the rest is served; an append
/// then rebuilds the state from the rows.
#[test]
fn issue_28_runs_in_the_body_are_replaced_checked_and_rebuilt_when_damaged() {
    use n4a::refresh::{refresh_workspace, RefreshOptions};
    let ws = tempfile::tempdir().unwrap();
    let mut w = PredictionWriter::create(ws.path(), "ds", WriterOptions::default()).unwrap();
    for i in 0..60 {
        w.write(&row(
            &format!("c{}", i % 7),
            "PLS",
            "0",
            "val",
            f64::from(i),
        ))
        .unwrap();
    }
    w.finish().unwrap();
    let p = ws.path().join("ds.meta.parquet");
    let count = |p: &std::path::Path| {
        let b = std::fs::read(p).unwrap();
        b.windows(4).filter(|w| w == b"N4R3").count()
    };
    assert_eq!(count(&p), 1);
    // A summary text the state was not written with (a tool edited the
    // footer, keeping the body): refresh rewrites the tail, replacing the
    // runs; then an append. Still one copy of the runs.
    let kv = crate::util::key_values_of(&p);
    let text = kv
        .iter()
        .find(|(k, _)| k == "n4a_summary")
        .unwrap()
        .1
        .clone();
    let state = kv.iter().find(|(k, _)| k == "n4a_state").unwrap().1.clone();
    let edited = text.replacen("\"generated_at\":\"", "\"generated_at\":\"1", 1);
    let entries = crate::util::with_arrow_schema(
        &p,
        &[("n4a_summary".into(), edited), ("n4a_state".into(), state)],
    );
    let pairs: Vec<(&str, &str)> = entries
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    crate::util::set_key_values(&p, &pairs);
    let r = refresh_workspace(ws.path(), &RefreshOptions::default(), &|_, _| {}).unwrap();
    assert_eq!(r.refreshed, 1, "{r:#?}");
    assert_eq!(count(&p), 1);
    let mut w = PredictionWriter::append(ws.path(), "ds", WriterOptions::default()).unwrap();
    w.write(&row("c1", "PLS", "1", "val", 0.5)).unwrap();
    w.finish().unwrap();
    assert_eq!(count(&p), 1);

    // Damage the runs: the summary still answers from the head, the full
    // state says what is wrong, an append rebuilds it from the rows.
    let mut bytes = std::fs::read(&p).unwrap();
    let at = bytes.windows(4).position(|w| w == b"N4R3").unwrap();
    bytes[at + 12] ^= 0xff;
    std::fs::write(&p, &bytes).unwrap();
    let s = Workspace::open(ws.path()).unwrap().summary().unwrap();
    assert_eq!(s.total_predictions, 61);
    let e = n4a::footer::Footer::read(&p)
        .unwrap()
        .summary()
        .expect_err("damaged runs");
    assert_eq!(e.kind(), "invalid_summary");
    assert!(e.to_string().contains("ds.meta.parquet"), "{e}");
    let mut w = PredictionWriter::append(ws.path(), "ds", WriterOptions::default()).unwrap();
    w.write(&row("c2", "PLS", "1", "val", 0.25)).unwrap();
    let st = w.finish().unwrap();
    assert_eq!(st.state.unwrap().rows, 62);
    assert_eq!(st.runs.len(), 7);
    assert_eq!(count(&p), 1);
}
