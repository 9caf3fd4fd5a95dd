//! The `n4a` binary end to end: demo, gen, inspect, ingest and its errors.

use std::process::Command;

use crate::util::fixture;

fn n4a(cwd: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_n4a"))
        .current_dir(cwd)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn demo_with_no_arguments_writes_file_pairs_and_prints_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let out = n4a(dir.path(), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The main job shows what the tool is for: the workspace's datasets,
    // the best model instances of each metric by its own direction, the
    // models per metric and the runs (issue 29).
    let text = String::from_utf8(out.stdout).unwrap();
    for want in [
        "corn_000",
        "Best model instances by mse (lower is better)",
        "Best model instances by balanced_accuracy (higher is better)",
        "Models scored by mse",
        "Runs (",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    let demo = dir.path().join("n4a-demo");
    let mut metas = 0;
    for e in std::fs::read_dir(&demo).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if let Some(ds) = name.strip_suffix(".meta.parquet") {
            metas += 1;
            assert!(
                demo.join(format!("{ds}.arrays.parquet")).exists(),
                "{ds} has its arrays file"
            );
        }
    }
    assert_eq!(metas, 4);
}

#[test]
fn gen_then_inspect_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = n4a(
        dir.path(),
        &[
            "gen",
            "ws",
            "--datasets",
            "2",
            "--rows",
            "300",
            "--seed",
            "5",
            "--format",
            "json",
        ],
    );
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["rows"], 600);
    assert!(v["peak_rss_bytes"].as_u64().unwrap() > 0);
    let out = n4a(
        dir.path(),
        &["inspect", "ws/grain_001.meta.parquet", "--format", "json"],
    );
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["num_rows"], 300);
    assert_eq!(v["columns"].as_array().unwrap().len(), 35);
    assert_eq!(v["columns"][6]["type"], "Int64");
    assert_eq!(v["summary"]["ranking"]["direction"], "maximize");
    assert_eq!(v["summary"]["total_predictions"], 300);
}

#[test]
fn inspect_reads_nirs4all_files_with_their_1_0_summary() {
    let out = n4a(
        std::path::Path::new("."),
        &[
            "inspect",
            fixture("corn_moisture.meta.parquet").to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("129 rows") && text.contains("n4a_version 1.0"),
        "{text}"
    );
}

#[test]
fn ingest_csv_appends_and_a_bad_line_is_named_with_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("rows.csv");
    std::fs::write(
        &good,
        "dataset_name,config_name,model_name,fold_id,partition,val_score,metric,step_idx\n\
         ds,c1,PLS,0,val,0.5,rmse,3\nds,c1,PLS,0,test,0.25,rmse,3\nother,c1,PLS,0,val,0.9,r2,\n",
    )
    .unwrap();
    let out = n4a(dir.path(), &["ingest", ".", "rows.csv", "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["appended"]["ds"], 2);
    assert_eq!(v["appended"]["other"], 1);
    let before = std::fs::read(dir.path().join("ds.meta.parquet")).unwrap();
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "dataset_name,val_score,metric\nds,0.1,rmse\nds,zero,rmse\n",
    )
    .unwrap();
    let out = n4a(dir.path(), &["ingest", ".", "bad.csv"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("bad.csv:3: column \"val_score\": \"zero\" is not a number"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("ds.meta.parquet")).unwrap(),
        before,
        "nothing written"
    );
    // Unknown metric: refused with the flag to pass, then accepted with it.
    std::fs::write(&bad, "dataset_name,val_score,metric\nds,0.1,log_loss\n").unwrap();
    let out = n4a(dir.path(), &["ingest", ".", "bad.csv"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("bad.csv:2: metric \"log_loss\" has no known direction"));
    let out = n4a(
        dir.path(),
        &["ingest", ".", "bad.csv", "--direction", "log_loss=min"],
    );
    assert!(out.status.success());
}

#[test]
fn summary_lists_datasets_best_by_direction_and_errors_with_exit_code_1() {
    let dir = tempfile::tempdir().unwrap();
    let out = n4a(
        dir.path(),
        &[
            "gen",
            "ws",
            "--datasets",
            "2",
            "--rows",
            "200",
            "--no-arrays",
        ],
    );
    assert!(out.status.success());
    let out = n4a(dir.path(), &["summary", "ws", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["total_predictions"], 400);
    assert_eq!(v["top_by_metric"]["mse"]["direction"], "minimize");
    std::fs::copy(
        fixture("not_parquet.meta.parquet"),
        dir.path().join("ws/not_parquet.meta.parquet"),
    )
    .unwrap();
    let out = n4a(dir.path(), &["summary", "ws", "--threads", "1"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a bad file makes the exit code 1"
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("400 predictions in 2 datasets"), "{text}");
    assert!(
        text.contains("Best model instances by mse (lower is better)") && text.contains("corn_000"),
        "{text}"
    );
    assert!(
        text.contains("[parquet]") && text.contains("not_parquet.meta.parquet"),
        "{text}"
    );
}

#[test]
fn ingest_names_the_line_of_a_bad_dataset_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("in.jsonl"),
        "{\"dataset_name\": \"ok\"}\n{\"dataset_name\": \"../escape\"}\n",
    )
    .unwrap();
    let out = n4a(dir.path(), &["ingest", ".", "in.jsonl"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(
            "in.jsonl:2: invalid dataset name \"../escape\": it contains a path separator"
        ),
        "{err}"
    );
    assert!(
        !dir.path().join("ok.meta.parquet").exists(),
        "nothing committed"
    );
}

#[test]
fn query_top_and_stats_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    assert!(n4a(
        dir.path(),
        &[
            "gen",
            "ws",
            "--datasets",
            "3",
            "--rows",
            "300",
            "--no-arrays"
        ]
    )
    .status
    .success());
    let out = n4a(
        dir.path(),
        &[
            "query",
            "ws",
            "--partition",
            "val",
            "--sort",
            "val_score:desc",
            "--limit",
            "3",
            "--format",
            "json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["records"].as_array().unwrap().len(), 3);
    assert_eq!(v["limit"], 3);
    assert!(v["has_more"].as_bool().unwrap());
    let scores: Vec<f64> = v["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["val_score"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    let out = n4a(
        dir.path(),
        &[
            "top", "ws", "--k", "2", "--metric", "mse", "--format", "json",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["direction"], "minimize");
    assert_eq!(v["served_by"], "footers");
    // Without --metric: one ranked list per metric, each by its own
    // direction (issue 29).
    let out = n4a(dir.path(), &["top", "ws", "--k", "2", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let lists = v["by_metric"].as_array().unwrap();
    assert!(lists.len() >= 2, "{v}");
    for l in lists {
        let want = if l["metric"] == "mse" {
            "minimize"
        } else {
            "maximize"
        };
        assert_eq!(l["direction"], want, "{l}");
        assert_eq!(l["records"].as_array().unwrap().len(), 2);
    }
    // CSV is offered by stats and top, and works.
    let out = n4a(
        dir.path(),
        &["stats", "ws", "--group-by", "model", "--format", "csv"],
    );
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.lines().next(),
        Some("metric,partition,model_name,count,mean,min,max,best")
    );
    let out = n4a(dir.path(), &["top", "ws", "--k", "2", "--format", "csv"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("metric,rank,dataset,id,"), "{text}");
    assert_eq!(text.lines().count(), 1 + 2 * lists.len());
    let out = n4a(
        dir.path(),
        &["stats", "ws", "--group-by", "model", "--metric", "r2"],
    );
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("best: higher is better"));
    let out = n4a(dir.path(), &["query", "ws", "--where", "val_score >= x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("expected a number, found \"x\" at column 14"));
    let out = n4a(
        dir.path(),
        &[
            "query",
            "ws",
            "--limit",
            "2",
            "--format",
            "csv",
            "--columns",
            "dataset,id,val_score",
        ],
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().next(), Some("dataset,id,val_score"));
    assert_eq!(text.lines().count(), 3);
}

#[test]
fn refresh_reports_as_json_exits_by_outcome_and_writes_the_cache() {
    let ws = crate::util::workspace_with(&[
        "no_summary.meta.parquet",
        "grain_class.meta.parquet",
        "grain_class.arrays.parquet",
    ]);
    let dir = ws.path().to_str().unwrap();
    let json = |args: &[&str]| {
        let out = n4a(ws.path(), args);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        assert!(
            out.stderr.is_empty(),
            "no progress line when not on a terminal"
        );
        (out.status.code(), v)
    };
    // A dry run that worked exits 0 and reports; --check fails on stale
    // files (issue 29).
    let (code, v) = json(&["refresh", dir, "--dry-run", "--format", "json"]);
    assert_eq!(code, Some(0), "a dry run that worked");
    assert_eq!(v["stale"], 2);
    assert_eq!(v["write"], false);
    let (code, v) = json(&["refresh", dir, "--check", "--format", "json"]);
    assert_eq!(code, Some(1), "something left to refresh");
    assert_eq!(
        (v["stale"].as_u64(), v["write"].as_bool()),
        (Some(2), Some(false))
    );
    let (code, v) = json(&["refresh", dir, "--format", "json"]);
    assert_eq!(code, Some(0));
    assert_eq!(
        (v["refreshed"].as_u64(), v["failed"].as_u64()),
        (Some(2), Some(0))
    );
    assert!(v["seconds"].as_f64().is_some() && v["peak_rss_bytes"].as_u64().is_some());
    assert_eq!(v["files"][0]["status"], "refreshed");
    let (code, v) = json(&["refresh", dir, "--verify", "--format", "json"]);
    assert_eq!(code, Some(0));
    assert_eq!(v["unchanged"], 2);
    // --fix means nothing without --verify.
    let out = n4a(ws.path(), &["refresh", dir, "--fix"]);
    assert_eq!(out.status.code(), Some(2));
    // A bad file: reported with its reason, exit 1, the rest still done.
    std::fs::copy(
        fixture("truncated.meta.parquet"),
        ws.path().join("truncated.meta.parquet"),
    )
    .unwrap();
    let out = n4a(ws.path(), &["refresh", dir]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("truncated.meta.parquet") && text.contains("failed"),
        "{text}"
    );
    assert!(
        text.contains("3 files: 0 refreshed, 2 unchanged, 1 failed"),
        "{text}"
    );
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    use std::io::Read;
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_n4a"))
        .current_dir(dir.path())
        .args([
            "gen",
            "ws",
            "--datasets",
            "60",
            "--rows",
            "20",
            "--no-arrays",
            "--format",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut head = [0u8; 10];
    child.stdout.take().unwrap().read_exact(&mut head).unwrap();
    // stdout's read end is dropped here: the rest of the JSON (more than a
    // pipe buffer) cannot be written.
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Issue 13: `top` and `stats` rank one row per prediction (the val
/// partition unless `--partition` says otherwise), `stats` groups by metric
/// too when metrics mix, and the headers say which rows.
#[test]
fn issue_13_rankings_take_one_row_per_prediction_and_group_by_metric_when_mixed() {
    let dir = tempfile::tempdir().unwrap();
    let out = n4a(
        dir.path(),
        &["gen", "ws", "--datasets", "4", "--rows", "600"],
    );
    assert!(out.status.success());
    let json = |args: &[&str]| -> serde_json::Value {
        let out = n4a(dir.path(), args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let v = json(&[
        "top", "ws", "--k", "12", "--metric", "mse", "--format", "json",
    ]);
    let recs = v["records"].as_array().unwrap();
    assert_eq!(recs.len(), 12);
    assert!(recs.iter().all(|r| r["partition"] == "val"), "{v}");
    let v = json(&[
        "top",
        "ws",
        "--k",
        "12",
        "--metric",
        "mse",
        "--partition",
        "all",
        "--format",
        "json",
    ]);
    // Every partition is ranked, and each model instance (dataset, config,
    // model, fold) still appears once: issue 29.
    let recs = v["records"].as_array().unwrap();
    assert_eq!(recs.len(), 12);
    let instances: std::collections::BTreeSet<String> = recs
        .iter()
        .map(|r| {
            format!(
                "{}|{}|{}|{}",
                r["dataset"], r["config_name"], r["model_name"], r["fold_id"]
            )
        })
        .collect();
    assert_eq!(instances.len(), recs.len(), "one row per instance: {v}");
    // Regression and classification mixed: one grouping per metric.
    let v = json(&["stats", "ws", "--group-by", "model", "--format", "json"]);
    let by = v["by_metric"].as_array().unwrap();
    assert!(by.len() >= 2, "{v}");
    for m in by {
        let metric = m["metric"].as_str().unwrap();
        let want = if ["mse", "rmse", "mae"].contains(&metric) {
            "minimize"
        } else {
            "maximize"
        };
        assert_eq!(m["direction"], want, "{metric}");
        assert!(!m["groups"].as_array().unwrap().is_empty());
    }
    let total: u64 = by
        .iter()
        .flat_map(|m| m["groups"].as_array().unwrap())
        .map(|g| g["count"].as_u64().unwrap())
        .sum();
    let val = json(&[
        "query",
        "ws",
        "--partition",
        "val",
        "--limit",
        "0",
        "--format",
        "json",
    ]);
    assert_eq!(
        total,
        val["total"].as_u64().unwrap(),
        "every val row in one grouping"
    );
    let out = n4a(dir.path(), &["stats", "ws", "--group-by", "model"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("metric mse, over the val partition") && text.contains("lower is better"),
        "{text}"
    );
    assert!(
        text.contains("over the val partition (the default"),
        "{text}"
    );
    // The demo's top table names each row's dataset.
    let out = n4a(dir.path(), &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    let table = text.split("Best model instances by mse").nth(1).unwrap();
    assert!(table.lines().nth(2).unwrap().contains("corn_000"), "{text}");
}

/// Issue 13: `ingest` takes Arrow IPC files and streams (as pyarrow,
/// polars and DuckDB export them) with the same validation and
/// all-or-nothing commit as the other formats.
#[test]
fn issue_13_ingest_takes_arrow_ipc_files_and_streams() {
    use n4a::ingest::{ingest, InputFormat};
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("corn_moisture.meta.parquet");
    let want = n4a::rows::read_predictions(&src).unwrap();
    let file = std::fs::File::open(&src).unwrap();
    let batches: Vec<arrow_array::RecordBatch> =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
            .map(Result::unwrap)
            .collect();
    let schema = batches[0].schema();
    let as_file = dir.path().join("rows.arrow");
    let mut w =
        arrow_ipc::writer::FileWriter::try_new(std::fs::File::create(&as_file).unwrap(), &schema)
            .unwrap();
    batches.iter().for_each(|b| w.write(b).unwrap());
    w.finish().unwrap();
    let as_stream = dir.path().join("rows.arrows");
    let mut w = arrow_ipc::writer::StreamWriter::try_new(
        std::fs::File::create(&as_stream).unwrap(),
        &schema,
    )
    .unwrap();
    batches.iter().for_each(|b| w.write(b).unwrap());
    w.finish().unwrap();
    for input in [&as_file, &as_stream] {
        assert_eq!(InputFormat::from_path(input), InputFormat::ArrowIpc);
        let ws = tempfile::tempdir().unwrap();
        let report = ingest(ws.path(), input, InputFormat::ArrowIpc, &Default::default()).unwrap();
        assert_eq!(report["corn_moisture"], want.len() as u64);
        let got =
            n4a::rows::read_predictions(&ws.path().join("corn_moisture.meta.parquet")).unwrap();
        let ids = |v: &[n4a::schema::Prediction]| {
            v.iter()
                .map(|p| (p.id.clone(), p.val_score))
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&got), ids(&want), "{}", input.display());
        // Again from the command line, into the same dataset: appended.
        let out = n4a(
            ws.path(),
            &["ingest", ".", input.to_str().unwrap(), "--format", "json"],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let again =
            n4a::rows::read_predictions(&ws.path().join("corn_moisture.meta.parquet")).unwrap();
        assert_eq!(again.len(), 2 * want.len());
    }
    // A damaged IPC file: a named error, nothing committed.
    let ws = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(&as_file).unwrap();
    bytes.truncate(bytes.len() / 2);
    let cut = dir.path().join("cut.arrow");
    std::fs::write(&cut, bytes).unwrap();
    let e = ingest(ws.path(), &cut, InputFormat::ArrowIpc, &Default::default()).unwrap_err();
    assert!(e.to_string().contains("cut.arrow"), "{e}");
    assert!(
        !ws.path().join("corn_moisture.meta.parquet").exists(),
        "nothing committed"
    );
}
