//! `export-store` (issue 14): a `.meta.parquet` workspace written as a
//! nirs4all store, checked by nirs4all 1.4.10 itself
//! (`tests/oracle/nirs4all_store.py dump`), round-tripped through
//! `import-store`, and refused or rolled back on bad input.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use n4a::store::{export_store, import_store, ExportOptions, ImportOptions};
use serde_json::Value;

use crate::util::{
    assert_same_columns, nirs4all_oracle, oracle_num as num, same_f64 as same, workspace_with,
};

/// The two real nirs4all file pairs: a regression (`mse`) and a
/// classification (`balanced_accuracy`) dataset, with arrays.
const REAL: [&str; 4] = [
    "corn_moisture.meta.parquet",
    "corn_moisture.arrays.parquet",
    "grain_class.meta.parquet",
    "grain_class.arrays.parquet",
];

fn source_rows(ws: &Path) -> HashMap<String, (String, n4a::Prediction)> {
    let mut out = HashMap::new();
    for ds in ["corn_moisture", "grain_class"] {
        let meta = ws.join(format!("{ds}.meta.parquet"));
        for r in n4a::rows::read_predictions(&meta).unwrap() {
            out.insert(r.id.clone().unwrap(), (ds.to_string(), r));
        }
    }
    out
}

/// Nothing but `keep` in `dir`: no temporary folder left behind.
fn only(dir: &Path, keep: &[&str]) {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, keep, "in {}", dir.display());
}

#[test]
fn issue_14_an_exported_workspace_opens_in_nirs4all_with_every_prediction_and_array() {
    let ws = workspace_with(&REAL);
    let parent = tempfile::tempdir().unwrap();
    let out = parent.path().join("store-ws");
    let report = export_store(ws.path(), &out, &ExportOptions::default()).unwrap();
    assert!(report.skipped.is_empty());
    assert_eq!(report.datasets.len(), 2);
    only(parent.path(), &["store-ws"]);
    // The predictions table and its indexes are written as pages by n4a
    // (store::export::btree): SQLite's own check of every page and index.
    let db = rusqlite::Connection::open(out.join("store.sqlite")).unwrap();
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    drop(db);
    let dumped = nirs4all_oracle("dump", &out);
    let dumped = dumped.as_array().unwrap();
    let src = source_rows(ws.path());
    assert_eq!(dumped.len(), src.len(), "every prediction, once");
    let mut arrays_checked = 0;
    for e in dumped {
        let id = e["id"].as_str().unwrap();
        let (ds, r) = &src[id];
        let int = |k: &str| e[k].as_i64();
        assert_eq!(e["dataset_name"].as_str(), Some(ds.as_str()), "{id}");
        assert_same_columns(r, e);
        assert_eq!(
            r.exclusion_count.unwrap_or(0),
            int("exclusion_count").unwrap(),
            "{id}"
        );
        for (want, k) in [
            (r.val_score, "val_score"),
            (r.test_score, "test_score"),
            (r.train_score, "train_score"),
            (Some(r.exclusion_rate.unwrap_or(0.0)), "exclusion_rate"),
        ] {
            assert!(same(want, num(&e[k])), "{id} {k}: {want:?} vs {}", e[k]);
        }
        for (want, k) in [(&r.scores, "scores"), (&r.best_params, "best_params")] {
            let want: Value = serde_json::from_str(want.as_deref().unwrap()).unwrap();
            assert_eq!(want, e[k], "{id} {k}");
        }
        let arrays = ws.path().join(format!("{ds}.arrays.parquet"));
        for (k, aid) in [
            ("y_true", &r.y_true_id),
            ("y_pred", &r.y_pred_id),
            ("y_proba", &r.y_proba_id),
            ("sample_indices", &r.sample_indices_id),
            ("weights", &r.weights_id),
        ] {
            let got = &e["arrays"][k];
            let Some(aid) = aid else {
                assert!(got.is_null(), "{id} {k}: nirs4all reads {got}");
                continue;
            };
            let want = &n4a::rows::arrays::read_arrays(&arrays, &[aid.as_str()]).unwrap()[aid];
            let values: Vec<Option<f64>> =
                got["values"].as_array().unwrap().iter().map(num).collect();
            assert_eq!(values.len(), want.values.len(), "{id} {k}");
            for (x, y) in want.values.iter().zip(&values) {
                assert!(same(Some(*x), *y), "{id} {k}: {x} vs {y:?}");
            }
            let shape: Vec<usize> = got["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(shape, want.shape, "{id} {k}");
            arrays_checked += 1;
        }
    }
    assert!(
        arrays_checked > 300,
        "y_true, y_pred, y_proba... compared: {arrays_checked}"
    );
}

#[test]
fn issue_14_export_derives_pipelines_and_chains_in_each_metrics_direction() {
    let ws = workspace_with(&REAL);
    let parent = tempfile::tempdir().unwrap();
    let out = parent.path().join("store-ws");
    export_store(ws.path(), &out, &ExportOptions::default()).unwrap();
    let src = source_rows(ws.path());
    let c = rusqlite::Connection::open_with_flags(
        out.join("store.sqlite"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let v: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 5);
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal", "as nirs4all leaves its stores");
    let mut q = c
        .prepare(
            "SELECT pipeline_id, name, dataset_name, best_val, best_test, metric FROM pipelines",
        )
        .unwrap();
    let pipes: Vec<(String, String, String, f64, Option<f64>, String)> = q
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(pipes.len(), 5, "4 corn_moisture configs, 1 grain_class");
    let mut saw_nirs4all_fault = false;
    for (pid, name, ds, best_val, best_test, metric) in &pipes {
        let vals: Vec<&n4a::Prediction> = src
            .values()
            .filter(|(d, r)| d == ds && r.pipeline_uid.as_deref() == Some(pid.as_str()))
            .map(|(_, r)| r)
            .collect();
        assert!(vals
            .iter()
            .all(|r| r.config_name.as_deref() == Some(name.as_str())));
        let val_rows: Vec<&&n4a::Prediction> = vals
            .iter()
            .filter(|r| r.partition.as_deref() == Some("val"))
            .collect();
        let scores = val_rows.iter().filter_map(|r| r.val_score);
        let (best, worst) = if metric == "mse" {
            (
                scores.clone().fold(f64::INFINITY, f64::min),
                scores.fold(f64::NEG_INFINITY, f64::max),
            )
        } else {
            assert_eq!(metric, "balanced_accuracy");
            (
                scores.clone().fold(f64::NEG_INFINITY, f64::max),
                scores.fold(f64::INFINITY, f64::min),
            )
        };
        assert_eq!(*best_val, best, "{pid}: the best in {metric}'s direction");
        saw_nirs4all_fault |= metric == "mse" && best != worst;
        let row = val_rows.iter().find(|r| r.val_score == Some(best)).unwrap();
        assert_eq!(
            *best_test, row.test_score,
            "{pid}: the best row's test score"
        );
    }
    assert!(
        saw_nirs4all_fault,
        "some mse pipeline's minimum is not its maximum"
    );
    let mut q = c
        .prepare("SELECT chain_id, pipeline_id, model_step_idx, model_name, cv_val_score, cv_test_score, cv_fold_count FROM chains")
        .unwrap();
    type Chain = (String, String, i64, String, Option<f64>, Option<f64>, i64);
    let chains: Vec<Chain> = q
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(!chains.is_empty());
    for (cid, pid, step, model, cv_val, cv_test, folds) in &chains {
        let branch: Option<i64> = c
            .query_row(
                "SELECT MIN(branch_id) FROM predictions WHERE chain_id = ?1",
                [cid],
                |r| r.get(0),
            )
            .unwrap();
        let rows: Vec<&n4a::Prediction> = src
            .values()
            .map(|(_, r)| r)
            .filter(|r| {
                r.pipeline_uid.as_deref() == Some(pid.as_str())
                    && r.step_idx == Some(*step)
                    && r.model_name.as_deref() == Some(model.as_str())
                    && r.branch_id == branch
            })
            .collect();
        // nirs4all's rule (issue 32): the mean over the cross-validation
        // rows (every partition, folds other than avg, w_avg and *_agg),
        // not the avg row's pooled score.
        let cv_rows: Vec<&&n4a::Prediction> = rows
            .iter()
            .filter(|r| {
                let f = r.fold_id.as_deref().unwrap_or("");
                !matches!(f, "avg" | "w_avg") && !f.ends_with("_agg")
            })
            .collect();
        let mean = |f: fn(&n4a::Prediction) -> Option<f64>| {
            let v: Vec<f64> = cv_rows.iter().filter_map(|r| f(r)).collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        };
        let close = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => (a - b).abs() <= 1e-12 * a.abs().max(1.0),
            (a, b) => a == b,
        };
        assert!(
            close(*cv_val, mean(|r| r.val_score)) && close(*cv_test, mean(|r| r.test_score)),
            "{cid}: {cv_val:?} {cv_test:?}"
        );
        let numbered: std::collections::HashSet<&str> = rows
            .iter()
            .filter_map(|r| r.fold_id.as_deref())
            .filter(|f| !matches!(*f, "avg" | "w_avg") && !f.ends_with("_agg"))
            .collect();
        assert_eq!(*folds, numbered.len() as i64, "{cid}");
        let linked: i64 = c
            .query_row(
                "SELECT COUNT(*) FROM predictions WHERE chain_id = ?1",
                [cid],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            linked,
            rows.len() as i64,
            "{cid}: its predictions point at it"
        );
    }
    let runs: (i64, String) = c
        .query_row("SELECT COUNT(*), MAX(datasets) FROM runs", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(runs, (1, r#"["corn_moisture","grain_class"]"#.to_string()));
}

fn summary_json(dir: &Path) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_n4a"))
        .args(["summary", dir.to_str().unwrap(), "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut v: Value = serde_json::from_slice(&out.stdout).unwrap();
    // What names the folder or the moment, not the predictions.
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for k in ["generated_at", "path", "workspace"] {
                    m.remove(k);
                }
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}

#[test]
fn issue_14_export_then_import_gives_the_same_rows_and_summaries() {
    let ws = workspace_with(&REAL);
    // n4a's own summaries on the source (a 1.0 summary has no state to
    // compare): what a refreshed workspace serves.
    let refreshed = n4a::refresh::refresh_workspace(
        ws.path(),
        &n4a::refresh::RefreshOptions::default(),
        &|_, _| {},
    )
    .unwrap();
    assert_eq!((refreshed.refreshed, refreshed.failed), (2, 0));
    let parent = tempfile::tempdir().unwrap();
    let store = parent.path().join("store-ws");
    export_store(ws.path(), &store, &ExportOptions::default()).unwrap();
    let back = parent.path().join("back");
    let r = import_store(&store, &back, &ImportOptions::default()).unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    for ds in ["corn_moisture", "grain_class"] {
        let read = |dir: &Path| {
            n4a::rows::read_predictions(&dir.join(format!("{ds}.meta.parquet"))).unwrap()
        };
        let (a, b) = (read(ws.path()), read(&back));
        assert_eq!(a.len(), b.len(), "{ds}");
        for (x, y) in a.iter().zip(&b) {
            let bridged = |p: &n4a::Prediction| {
                let mut p = p.clone();
                // Not in a store (docs/STORE.md): paths, op counter,
                // artifacts, metadata; array ids are content hashes again.
                p.dataset_path = None;
                p.config_path = None;
                p.op_counter = None;
                p.model_path = None;
                p.model_artifact_id = None;
                p.trace_id = None;
                p.metadata = None;
                p.y_true_id = None;
                p.y_pred_id = None;
                p.y_proba_id = None;
                p.sample_indices_id = None;
                p.weights_id = None;
                p.exclusion_count = Some(p.exclusion_count.unwrap_or(0));
                p.exclusion_rate = Some(p.exclusion_rate.unwrap_or(0.0));
                format!("{p:?}")
            };
            assert_eq!(bridged(x), bridged(y), "{ds}: same rows in the same order");
        }
    }
    assert_eq!(summary_json(ws.path()), summary_json(&back));
}

#[test]
fn issue_14_a_failed_export_leaves_nothing_and_skip_bad_exports_the_rest() {
    let ws = workspace_with(&[REAL[0], REAL[1], "truncated.meta.parquet"]);
    let parent = tempfile::tempdir().unwrap();
    let out = parent.path().join("store-ws");
    let e =
        export_store(ws.path(), &out, &ExportOptions::default()).expect_err("a bad file fails it");
    assert!(e.to_string().contains("truncated.meta.parquet"), "{e}");
    only(parent.path(), &[]);
    let opts = ExportOptions {
        skip_bad: true,
        ..ExportOptions::default()
    };
    let r = export_store(ws.path(), &out, &opts).unwrap();
    assert_eq!(
        r.datasets
            .iter()
            .map(|d| d.dataset.as_str())
            .collect::<Vec<_>>(),
        ["corn_moisture"]
    );
    assert_eq!(r.skipped.len(), 1);
    assert_eq!(r.skipped[0].0, "truncated");
    assert!(r.skipped[0]
        .1
        .to_string()
        .contains("truncated.meta.parquet"));
    let c = rusqlite::Connection::open(out.join("store.sqlite")).unwrap();
    let n: i64 = c
        .query_row("SELECT COUNT(*) FROM predictions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 129);
    only(&out.join("arrays"), &["corn_moisture.parquet"]);
}

#[test]
fn issue_14_export_never_writes_in_place_nor_over_a_workspace() {
    let ws = workspace_with(&REAL);
    let before: Vec<Vec<u8>> = REAL
        .iter()
        .map(|n| std::fs::read(ws.path().join(n)).unwrap())
        .collect();
    let e = export_store(ws.path(), ws.path(), &ExportOptions::default()).expect_err("in place");
    assert_eq!(e.kind(), "invalid_option");
    assert!(e.to_string().contains("not empty"), "{e}");
    let after: Vec<Vec<u8>> = REAL
        .iter()
        .map(|n| std::fs::read(ws.path().join(n)).unwrap())
        .collect();
    assert_eq!(before, after);
    let mut names: Vec<String> = std::fs::read_dir(ws.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 4, "nothing added: {names:?}");
    // A store is not a source, and an empty folder is a fine target.
    let parent = tempfile::tempdir().unwrap();
    let out = parent.path().join("empty");
    std::fs::create_dir(&out).unwrap();
    export_store(ws.path(), &out, &ExportOptions::default()).unwrap();
    let again = export_store(&out, &parent.path().join("x"), &ExportOptions::default())
        .expect_err("a store is not a .meta.parquet workspace");
    assert!(again.to_string().contains("already a store"), "{again}");
}

#[test]
fn issue_14_an_id_in_two_datasets_is_refused_naming_the_file() {
    // nan_summary holds grain_class's rows: the same prediction ids.
    let ws = workspace_with(&["grain_class.meta.parquet", "nan_summary.meta.parquet"]);
    let parent = tempfile::tempdir().unwrap();
    let out = parent.path().join("store-ws");
    let e = export_store(ws.path(), &out, &ExportOptions::default()).expect_err("ids clash");
    let msg = e.to_string();
    assert!(
        msg.contains("nan_summary.meta.parquet") && msg.contains("another dataset"),
        "{msg}"
    );
    only(parent.path(), &[]);
}

#[test]
fn issue_14_export_store_on_the_command_line_reports_and_states_its_derivations() {
    let ws = workspace_with(&REAL);
    let parent = tempfile::tempdir().unwrap();
    let out = parent.path().join("store-ws");
    let run = Command::new(env!("CARGO_BIN_EXE_n4a"))
        .args([
            "export-store",
            ws.path().to_str().unwrap(),
            out.to_str().unwrap(),
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let v: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(v["datasets"][0]["predictions"], 129);
    assert_eq!(v["datasets"][0]["with_arrays"], 129);
    assert_eq!(
        v["datasets"][1]["arrays_file"],
        "arrays/grain_class.parquet"
    );
    assert_eq!(v["derivations"].as_array().unwrap().len(), 4);
    // The exported store is read back by n4a's own commands.
    let top = Command::new(env!("CARGO_BIN_EXE_n4a"))
        .env("N4A_CACHE_DIR", parent.path().join("cache"))
        .args(["summary", out.to_str().unwrap(), "--format", "json"])
        .output()
        .unwrap();
    assert!(
        top.status.success(),
        "{}",
        String::from_utf8_lossy(&top.stderr)
    );
    let s: Value = serde_json::from_slice(&top.stdout).unwrap();
    assert_eq!(s["total_predictions"], 144);
}

#[test]
fn issue_14_datasets_whose_names_share_an_arrays_file_are_both_read_back_by_nirs4all() {
    // nirs4all's sanitiser maps "wheat v2" and "wheat_v2" to one file.
    let ws = tempfile::tempdir().unwrap();
    for (src, ds) in [("corn_moisture", "wheat v2"), ("grain_class", "wheat_v2")] {
        for kind in ["meta", "arrays"] {
            std::fs::copy(
                crate::util::fixture(&format!("{src}.{kind}.parquet")),
                ws.path().join(format!("{ds}.{kind}.parquet")),
            )
            .unwrap();
        }
    }
    let parent = tempfile::tempdir().unwrap();
    let out = parent.path().join("store-ws");
    let r = export_store(ws.path(), &out, &ExportOptions::default()).unwrap();
    assert!(r
        .datasets
        .iter()
        .all(|d| d.arrays_file.as_deref() == Some("arrays/wheat_v2.parquet")));
    only(&out.join("arrays"), &["wheat_v2.parquet"]);
    let dumped = nirs4all_oracle("dump", &out);
    let mut with_y_true: HashMap<String, usize> = HashMap::new();
    for e in dumped.as_array().unwrap() {
        if !e["arrays"]["y_true"].is_null() {
            *with_y_true
                .entry(e["dataset_name"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    assert_eq!(with_y_true["wheat v2"], 129);
    assert_eq!(with_y_true["wheat_v2"], 15);
}
