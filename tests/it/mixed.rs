//! Issue 29: answers on a workspace that mixes metrics, tasks and
//! partitions as real nirs4all workspaces do. The fixture
//! `fixtures/mixed-workspace` (made by `fixtures/make-mixed-workspace.py`
//! from nirs4all's own files plus generated rows) holds `mse`, `rmse`,
//! `balanced_accuracy` and `accuracy` rows (one file of two metrics), a
//! model scored with two metrics, `avg`/`w_avg` rows, configs shared across
//! datasets and names with a space. Each answer is checked against an
//! oracle over the rows, as nirs4all wrote them (no n4a state: rows are
//! read) and after `n4a refresh` (answers from the footers).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};

use n4a::metric::builtin_direction;
use n4a::schema::Prediction;
use serde_json::Value;

use crate::util::{all_rows, copy_dir, fixture, round4};

type Rows = Vec<(String, u64, Prediction)>;

fn n4a(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_n4a"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `args` run, exit code 0, its stdout as JSON.
fn json(args: &[&str]) -> Value {
    let o = n4a(args);
    assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// A copy of the fixture: as nirs4all wrote it, or refreshed by n4a.
fn mixed(refreshed: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture("mixed-workspace"), dir.path());
    if refreshed {
        let o = n4a(&["refresh", dir.path().to_str().unwrap(), "--quiet"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    dir
}

fn path(d: &tempfile::TempDir) -> &str {
    d.path().to_str().unwrap()
}

/// The instance of a row: dataset, config, model, fold.
fn instance(ds: &str, p: &Prediction) -> (String, Option<String>, Option<String>, Option<String>) {
    (
        ds.to_string(),
        p.config_name.clone(),
        p.model_name.clone(),
        p.fold_id.clone(),
    )
}

/// The oracle's best `k` model instances of `metric` over the val rows:
/// best first by the metric's direction, ties by (dataset, row), one row
/// per instance.
fn oracle_top<'a>(rows: &'a Rows, metric: &str, k: usize) -> Vec<&'a (String, u64, Prediction)> {
    let dir = builtin_direction(metric).unwrap();
    let mut v: Vec<&(String, u64, Prediction)> = rows
        .iter()
        .filter(|(_, _, p)| {
            p.metric.as_deref() == Some(metric)
                && p.partition.as_deref() == Some("val")
                && p.val_score.is_some_and(f64::is_finite)
        })
        .collect();
    v.sort_by(|a, b| {
        dir.compare(a.2.val_score.unwrap(), b.2.val_score.unwrap())
            .then_with(|| a.0.cmp(&b.0))
            .then(a.1.cmp(&b.1))
    });
    let mut seen = BTreeSet::new();
    v.retain(|(d, _, p)| seen.insert(instance(d, p)));
    v.truncate(k);
    v
}

fn metrics_of(rows: &Rows) -> BTreeSet<String> {
    rows.iter()
        .filter_map(|(_, _, p)| p.metric.clone())
        .collect()
}

/// Checks a JSON best list against the oracle: the same rows in order,
/// each with its test and train scores beside the val score.
fn same_list(got: &Value, want: &[&(String, u64, Prediction)], what: &str) {
    let recs = got.as_array().unwrap();
    assert_eq!(recs.len(), want.len(), "{what}: {got}");
    for (r, (d, _, p)) in recs.iter().zip(want) {
        assert_eq!(r["id"].as_str(), p.id.as_deref(), "{what}");
        assert_eq!(r["dataset"].as_str(), Some(d.as_str()), "{what}");
        assert_eq!(r["val_score"].as_f64(), p.val_score, "{what}");
        assert_eq!(r["test_score"].as_f64(), p.test_score, "{what}");
        assert_eq!(r["train_score"].as_f64(), p.train_score, "{what}");
    }
}

/// `top` without `--metric`: one list per metric, each by its own
/// direction, one entry per model instance, with test and train scores;
/// the same from the rows (nirs4all's files) and from the footers
/// (refreshed), in the CLI and from the server.
#[test]
fn issue_29_top_gives_each_metric_its_own_list_of_model_instances() {
    for refreshed in [false, true] {
        let ws = mixed(refreshed);
        let rows = all_rows(ws.path());
        let metrics = metrics_of(&rows);
        assert_eq!(
            metrics,
            ["accuracy", "balanced_accuracy", "mse", "rmse"]
                .map(String::from)
                .into(),
        );
        let v = json(&["top", path(&ws), "--k", "5", "--format", "json"]);
        let lists = v["by_metric"].as_array().unwrap();
        let names: BTreeSet<String> = lists
            .iter()
            .map(|l| l["metric"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, metrics, "refreshed {refreshed}");
        for l in lists {
            let m = l["metric"].as_str().unwrap();
            let dir = builtin_direction(m).unwrap();
            assert_eq!(l["direction"], serde_json::to_value(dir).unwrap());
            same_list(
                &l["records"],
                &oracle_top(&rows, m, 5),
                &format!("{m} refreshed {refreshed}"),
            );
            if refreshed {
                assert_eq!(l["served_by"], "footers", "{m}");
            }
        }
        // One metric asked: one list, at the top level too.
        let one = json(&[
            "top",
            path(&ws),
            "--k",
            "3",
            "--metric",
            "rmse",
            "--format",
            "json",
        ]);
        assert_eq!(one["metric"], "rmse");
        same_list(&one["records"], &oracle_top(&rows, "rmse", 3), "rmse");
        // The server answers the same lists.
        let app = n4a::server::App::new(
            &[("w".to_string(), ws.path().to_path_buf())],
            n4a::server::ServeOptions {
                log: false,
                ..Default::default()
            },
        )
        .unwrap();
        let bg = n4a::server::Background::start(app).unwrap();
        let r = crate::client::Client::connect(bg.addr())
            .unwrap()
            .get("/api/workspaces/w/predictions/top?k=5")
            .unwrap();
        assert_eq!(r.status, 200);
        let served = r.json();
        for (a, b) in served["by_metric"].as_array().unwrap().iter().zip(lists) {
            assert_eq!(a["metric"], b["metric"]);
            assert_eq!(a["records"], b["records"]);
        }
    }
}

/// The summary never pools metrics: no workspace-wide statistics or model
/// averages (null, with a note), each metric's under `metrics[]`, equal to
/// the oracle over that metric's rows; a model scored with two metrics has
/// one average per metric; the best lists are per metric and per model
/// instance; `top_predictions` ranks the most frequent metric.
#[test]
fn issue_29_the_summary_keeps_each_metric_to_itself() {
    let ws = mixed(true);
    let rows = all_rows(ws.path());
    let v = json(&["summary", path(&ws), "--format", "json"]);
    assert!(v["stats"].is_null(), "{}", v["stats"]);
    assert!(v["models"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["avg_val_score"].is_null()));
    let notes = v["exactness"]["notes"].to_string();
    assert!(notes.contains("mixes metrics"), "{notes}");
    let metrics = v["metrics"].as_array().unwrap();
    assert_eq!(metrics.len(), 4);
    for m in metrics {
        let name = m["name"].as_str().unwrap();
        let of: Vec<&Prediction> = rows
            .iter()
            .map(|(_, _, p)| p)
            .filter(|p| p.metric.as_deref() == Some(name))
            .collect();
        assert_eq!(m["count"].as_u64(), Some(of.len() as u64), "{name}");
        let vals: Vec<f64> = of.iter().filter_map(|p| p.val_score).collect();
        let st = &m["stats"]["val_score"];
        assert_eq!(st["count"].as_u64(), Some(vals.len() as u64), "{name}");
        assert_eq!(st["min"].as_f64(), vals.iter().copied().reduce(f64::min));
        assert_eq!(st["max"].as_f64(), vals.iter().copied().reduce(f64::max));
        let mean = vals.iter().sum::<f64>() / vals.len() as f64;
        assert!((st["mean"].as_f64().unwrap() - mean).abs() < 1e-9, "{name}");
        // Models of this metric: count and average val score of its rows.
        let mut want: BTreeMap<String, (u64, f64, u64)> = BTreeMap::new();
        for p in &of {
            let e = want.entry(p.model_name.clone().unwrap()).or_default();
            e.0 += 1;
            if let Some(x) = p.val_score.filter(|x| x.is_finite()) {
                e.1 += x;
                e.2 += 1;
            }
        }
        let got: BTreeMap<String, (u64, Option<f64>)> = m["models"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                (
                    x["name"].as_str().unwrap().to_string(),
                    (x["count"].as_u64().unwrap(), x["avg_val_score"].as_f64()),
                )
            })
            .collect();
        let want: BTreeMap<String, (u64, Option<f64>)> = want
            .into_iter()
            .map(|(k, (n, s, c))| (k, (n, Some(round4(s / c as f64)))))
            .collect();
        assert_eq!(got, want, "{name}");
        // Best instances of this metric.
        let top = &v["top_by_metric"][name]["predictions"];
        same_list(top, &oracle_top(&rows, name, 10), name);
    }
    // LogisticRegression is scored by accuracy and by balanced_accuracy:
    // two averages, never one.
    let lr: Vec<&str> = metrics
        .iter()
        .filter(|m| {
            m["models"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["name"] == "LogisticRegression")
        })
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(lr, ["accuracy", "balanced_accuracy"]);
    // The dashboard's `top_predictions`: the most frequent metric's (mse),
    // rounded as nirs4all's keys are.
    assert_eq!(v["ranking"]["metric"], "mse");
    let ids: Vec<&str> = v["top_predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    let want: Vec<&str> = oracle_top(&rows, "mse", 10)
        .iter()
        .map(|(_, _, p)| p.id.as_deref().unwrap())
        .collect();
    assert_eq!(ids, want);
}

/// Runs are listed once, each with the datasets it touched: a config run
/// on two datasets of one metric has the better best of the two; on two
/// datasets of different metrics it has no best (they do not compare);
/// a file of two metrics names each run's own.
#[test]
fn issue_29_runs_are_listed_once_with_their_datasets_and_metric() {
    let ws = mixed(true);
    let rows = all_rows(ws.path());
    let v = json(&["summary", path(&ws), "--format", "json"]);
    let runs = v["runs"].as_array().unwrap();
    let configs: BTreeSet<&str> = rows
        .iter()
        .filter_map(|(_, _, p)| p.config_name.as_deref())
        .collect();
    let names: Vec<&str> = runs.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), configs.len(), "each config once: {names:?}");
    assert_eq!(names.iter().copied().collect::<BTreeSet<_>>(), configs);
    for r in runs {
        let name = r["name"].as_str().unwrap();
        let of: Vec<&(String, u64, Prediction)> = rows
            .iter()
            .filter(|(_, _, p)| p.config_name.as_deref() == Some(name))
            .collect();
        assert_eq!(r["n_predictions"].as_u64(), Some(of.len() as u64), "{name}");
        let datasets: Vec<String> = of
            .iter()
            .map(|(d, _, _)| d.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(r["datasets"], serde_json::json!(datasets), "{name}");
        let metrics: BTreeSet<&str> = of
            .iter()
            .filter_map(|(_, _, p)| p.metric.as_deref())
            .collect();
        if metrics.len() > 1 {
            assert!(
                r["metric"].is_null() && r["best_val_score"].is_null(),
                "{r}"
            );
            continue;
        }
        let m = *metrics.iter().next().unwrap();
        assert_eq!(r["metric"], m, "{name}");
        let dir = builtin_direction(m).unwrap();
        let best = of
            .iter()
            .filter_map(|(_, _, p)| p.val_score)
            .reduce(|a, b| if dir.is_better(b, a) { b } else { a })
            .unwrap();
        assert_eq!(r["best_val_score"].as_f64(), Some(round4(best)), "{name}");
    }
    let shared = runs
        .iter()
        .find(|r| r["name"] == "0001_ClfRun_3f9a03")
        .unwrap();
    assert_eq!(
        shared["datasets"],
        serde_json::json!(["grain_class", "seed lots"])
    );
    let mixed_run = runs
        .iter()
        .find(|r| r["name"] == "0002_RegSweep_f5fe97")
        .unwrap();
    assert_eq!(
        mixed_run["datasets"],
        serde_json::json!(["corn_moisture", "wheat protein"])
    );
    // The table names the datasets once per run too.
    let text = String::from_utf8(n4a(&["summary", path(&ws)]).stdout).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("0001_ClfRun_3f9a03"))
        .unwrap();
    assert!(line.contains("grain_class, seed lots"), "{line}");
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("0001_ClfRun_3f9a03"))
            .count(),
        1,
        "{text}"
    );
}

/// `stats` groups within one metric and, over every partition, within one
/// partition at a time; counts and bests equal the oracle's.
#[test]
fn issue_29_stats_groups_within_one_metric_and_partition() {
    let ws = mixed(false);
    let rows = all_rows(ws.path());
    let v = json(&[
        "stats",
        path(&ws),
        "--group-by",
        "model",
        "--partition",
        "all",
        "--format",
        "json",
    ]);
    let splits = v["by_metric"].as_array().unwrap();
    let mut covered = 0u64;
    for s in splits {
        let (m, part) = (
            s["metric"].as_str().unwrap(),
            s["partition"].as_str().unwrap(),
        );
        let dir = builtin_direction(m).unwrap();
        for g in s["groups"].as_array().unwrap() {
            let model = g["key"].as_str().unwrap();
            let of: Vec<f64> = rows
                .iter()
                .map(|(_, _, p)| p)
                .filter(|p| {
                    p.metric.as_deref() == Some(m)
                        && p.partition.as_deref() == Some(part)
                        && p.model_name.as_deref() == Some(model)
                })
                .filter_map(|p| p.val_score)
                .collect();
            assert_eq!(
                g["count"].as_u64(),
                Some(of.len() as u64),
                "{m} {part} {model}"
            );
            covered += of.len() as u64;
            let best = of
                .iter()
                .copied()
                .reduce(|a, b| if dir.is_better(b, a) { b } else { a });
            assert_eq!(g["best"].as_f64(), best, "{m} {part} {model}");
        }
    }
    assert_eq!(covered, rows.len() as u64, "every row in one grouping");
    let dirs: BTreeSet<String> = splits
        .iter()
        .map(|s| s["direction"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(dirs, ["maximize", "minimize"].map(String::from).into());
}

/// Every listing command offers table, json and csv, and each works.
#[test]
fn issue_29_every_listing_command_answers_in_table_json_and_csv() {
    let ws = mixed(false);
    let p = path(&ws);
    let rows = all_rows(ws.path()).len();
    let cases: [(&[&str], usize); 5] = [
        (&["query", p, "--limit", "1000"], rows),
        (&["top", p, "--k", "3"], 12),
        (&["stats", p, "--group-by", "model"], 0),
        (&["summary", p], 4),
        (&["refresh", p, "--dry-run"], 4),
    ];
    for (args, want_rows) in cases {
        let help = String::from_utf8(n4a(&[args[0], "--help"]).stdout).unwrap();
        assert!(help.contains("table, json, csv"), "{}: {help}", args[0]);
        for format in ["table", "json", "csv"] {
            let mut a = args.to_vec();
            a.extend(["--format", format]);
            let o = n4a(&a);
            assert_eq!(o.status.code(), Some(0), "{a:?}: {}", stderr(&o));
            assert!(!o.stdout.is_empty(), "{a:?}");
            match format {
                "json" => {
                    serde_json::from_slice::<Value>(&o.stdout).unwrap();
                }
                "csv" => {
                    let mut r = csv::Reader::from_reader(o.stdout.as_slice());
                    let header = r.headers().unwrap().clone();
                    assert!(header.len() > 2, "{a:?}");
                    let recs: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
                    assert!(recs.iter().all(|x| x.len() == header.len()), "{a:?}");
                    if want_rows > 0 {
                        assert_eq!(recs.len(), want_rows, "{a:?}");
                    } else {
                        assert!(!recs.is_empty(), "{a:?}");
                    }
                }
                _ => {}
            }
        }
    }
    // The top CSV names each row's metric.
    let o = n4a(&["top", p, "--k", "3", "--format", "csv"]);
    let mut r = csv::Reader::from_reader(o.stdout.as_slice());
    let at = r
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "metric")
        .unwrap();
    let metrics: BTreeSet<String> = r.records().map(|x| x.unwrap()[at].to_string()).collect();
    assert_eq!(metrics.len(), 4);
}

/// An empty answer exits 0 and says why on stderr: the filter value that
/// matches nothing with the nearest that exist, or that the filters only
/// together match nothing.
#[test]
fn issue_29_an_empty_answer_names_the_nearest_values() {
    for refreshed in [false, true] {
        let ws = mixed(refreshed);
        let p = path(&ws);
        for (args, want) in [
            (
                &["query", p, "--model", "PLSX"][..],
                "nearest: PLSRegression",
            ),
            (&["top", p, "--model", "PLSX"][..], "nearest: PLSRegression"),
            (
                &["stats", p, "--group-by", "config", "--model", "PLSX"][..],
                "nearest: PLSRegression",
            ),
            (
                &["top", p, "--dataset", "wheat protien"][..],
                "nearest: wheat protein",
            ),
            (&["query", p, "--metric", "RMSE"][..], "nearest: rmse"),
            (
                &["query", p, "--dataset", "grain_class", "--model", "Ridge"][..],
                "these filters together",
            ),
        ] {
            let o = n4a(args);
            assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
            assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
        }
        // A non-empty answer adds no note.
        let o = n4a(&["query", p, "--model", "PLSRegression"]);
        assert!(stderr(&o).is_empty(), "{}", stderr(&o));
    }
}

/// A path with no prediction workspace is an error saying what was looked
/// for, on every command that reads one.
#[test]
fn issue_29_a_folder_without_predictions_is_an_error() {
    let empty = tempfile::tempdir().unwrap();
    let missing = empty.path().join("nope");
    for p in [empty.path(), missing.as_path()] {
        let p = p.to_str().unwrap();
        for args in [
            &["summary", p][..],
            &["query", p][..],
            &["top", p][..],
            &["stats", p, "--group-by", "model"][..],
            &["refresh", p][..],
        ] {
            let o = n4a(args);
            assert_eq!(o.status.code(), Some(1), "{args:?}");
            let e = stderr(&o);
            assert!(e.contains(".meta.parquet"), "{args:?}: {e}");
            assert!(e.contains(p), "{args:?} names the path: {e}");
        }
    }
}

/// `refresh --dry-run` reports and exits 0, writing nothing; `--check`
/// exits 1 while a file is stale and 0 once refreshed.
#[test]
fn issue_29_refresh_dry_run_reports_and_check_fails_on_stale_files() {
    let ws = mixed(false);
    let p = path(&ws);
    let before = snapshot(ws.path());
    let o = n4a(&["refresh", p, "--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(
        text.contains("stale") && text.contains("4 to refresh"),
        "{text}"
    );
    assert_eq!(snapshot(ws.path()), before, "a dry run writes nothing");
    assert_eq!(n4a(&["refresh", p, "--check"]).status.code(), Some(1));
    assert_eq!(n4a(&["refresh", p, "--quiet"]).status.code(), Some(0));
    assert_eq!(n4a(&["refresh", p, "--check"]).status.code(), Some(0));
    assert_eq!(n4a(&["refresh", p, "--dry-run"]).status.code(), Some(0));
}

fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (p.display().to_string(), std::fs::read(&p).unwrap())
        })
        .collect()
}

/// Tables speak plain words: which way is better, which rows, why a best
/// is missing; no internal shorthand.
#[test]
fn issue_29_tables_say_it_in_plain_words() {
    for refreshed in [false, true] {
        let ws = mixed(refreshed);
        let p = path(&ws);
        let mut all = String::new();
        for args in [
            &["summary", p][..],
            &["top", p, "--k", "3"][..],
            &["stats", p, "--group-by", "model"][..],
        ] {
            let o = n4a(args);
            assert_eq!(o.status.code(), Some(0));
            all.push_str(&String::from_utf8(o.stdout).unwrap());
        }
        for want in ["lower is better", "higher is better", "the val partition"] {
            assert!(all.contains(want), "{want}: {all}");
        }
        for shorthand in ["max only", "minimize", "maximize", "(1.0"] {
            assert!(!all.contains(shorthand), "{shorthand}: {all}");
        }
        if !refreshed {
            assert!(
                all.contains("nirs4all kept its worst: run n4a refresh"),
                "{all}"
            );
            assert!(all.contains("no summary: run n4a refresh"), "{all}");
        }
    }
}
