//! nirs4all's `store.sqlite` workspaces (issue 14): read, imported and
//! answered, against nirs4all 1.4.10 itself (`tests/oracle/nirs4all_store.py`
//! in the venv `util::nirs4all_python` makes).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use n4a::store::{import_store, ImportOptions, Outcome};
use serde_json::Value;

use crate::util::{
    assert_same_columns, copy_dir, nirs4all_oracle, oracle_num as num, same_f64 as same,
};

/// A store written by nirs4all's own `WorkspaceStore` API (made once per
/// test process) and the id of the prediction it deleted (tombstoned).
fn nirs4all_store() -> (&'static Path, &'static str) {
    static STORE: OnceLock<(tempfile::TempDir, PathBuf, String)> = OnceLock::new();
    let s = STORE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("ws");
        let made = nirs4all_oracle("make", &ws);
        let deleted = made["deleted"].as_str().unwrap().to_string();
        (dir, ws, deleted)
    });
    (&s.1, &s.2)
}

/// A private copy of the nirs4all store, to damage or change.
fn store_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("store-ws");
    copy_dir(nirs4all_store().0, &ws);
    (dir, ws)
}

fn n4a(cache: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_n4a"))
        .env("N4A_CACHE_DIR", cache)
        .args(args)
        .output()
        .unwrap()
}

fn rows_by_id(dir: &Path) -> HashMap<String, n4a::Prediction> {
    let mut out = HashMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.to_string_lossy().ends_with(".meta.parquet") {
            for r in n4a::rows::read_predictions(&p).unwrap() {
                out.insert(r.id.clone().unwrap(), r);
            }
        }
    }
    out
}

#[test]
fn issue_14_a_store_written_by_nirs4all_is_imported_row_for_row_and_array_for_array() {
    let (store, deleted) = nirs4all_store();
    let expected = nirs4all_oracle("dump", store);
    let expected = expected.as_array().unwrap();
    assert_eq!(
        expected.len(),
        53,
        "nirs4all reads back 54 saved less 1 deleted"
    );
    let out = tempfile::tempdir().unwrap();
    let report = import_store(store, out.path(), &ImportOptions::default()).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let rows = rows_by_id(out.path());
    assert_eq!(rows.len(), expected.len());
    assert!(
        !rows.contains_key(deleted),
        "the tombstoned prediction is not imported"
    );
    let tombstoned = std::fs::read_to_string(store.join("arrays/_tombstones.json")).unwrap();
    assert!(
        tombstoned.contains(deleted),
        "its arrays row awaits compaction: {tombstoned}"
    );
    for e in expected {
        let id = e["id"].as_str().unwrap();
        let r = &rows[id];
        let int = |k: &str| e[k].as_i64();
        assert_eq!(
            r.dataset_name.as_deref(),
            e["dataset_name"].as_str(),
            "{id}"
        );
        assert_same_columns(r, e);
        assert_eq!(r.exclusion_count, int("exclusion_count"), "{id}");
        for (got, k) in [
            (r.val_score, "val_score"),
            (r.test_score, "test_score"),
            (r.train_score, "train_score"),
            (r.exclusion_rate, "exclusion_rate"),
        ] {
            assert!(same(got, num(&e[k])), "{id} {k}: {got:?} vs {}", e[k]);
        }
        for (got, k) in [(&r.scores, "scores"), (&r.best_params, "best_params")] {
            let got: Value = serde_json::from_str(got.as_deref().unwrap()).unwrap();
            assert_eq!(got, e[k], "{id} {k}");
        }
        let meta = out.path().join(format!(
            "{}.arrays.parquet",
            e["dataset_name"].as_str().unwrap()
        ));
        for (k, aid) in [
            ("y_true", &r.y_true_id),
            ("y_pred", &r.y_pred_id),
            ("y_proba", &r.y_proba_id),
            ("sample_indices", &r.sample_indices_id),
            ("weights", &r.weights_id),
        ] {
            let want = &e["arrays"][k];
            match aid {
                None => assert!(want.is_null(), "{id} {k}: nirs4all has {want}"),
                Some(aid) => {
                    let got = n4a::rows::arrays::read_arrays(&meta, &[aid.as_str()]).unwrap();
                    let a = &got[aid];
                    let values: Vec<Option<f64>> =
                        want["values"].as_array().unwrap().iter().map(num).collect();
                    assert_eq!(a.values.len(), values.len(), "{id} {k}");
                    for (x, y) in a.values.iter().zip(&values) {
                        assert!(same(Some(*x), *y), "{id} {k}: {x} vs {y:?}");
                    }
                    let shape: Vec<usize> = want["shape"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_u64().unwrap() as usize)
                        .collect();
                    assert_eq!(a.shape, shape, "{id} {k}");
                }
            }
        }
    }
}

/// The JSON a command prints, less the fields that name where it ran.
fn json_of(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn issue_14_summary_query_top_and_stats_answer_a_store_as_its_import() {
    let (store, _) = nirs4all_store();
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    import_store(store, out.path(), &ImportOptions::default()).unwrap();
    let s = store.to_str().unwrap();
    let o = out.path().to_str().unwrap();
    for args in [
        vec![
            "query",
            "{}",
            "--sort",
            "val_score:desc",
            "--limit",
            "7",
            "--format",
            "json",
        ],
        vec![
            "query",
            "{}",
            "--partition",
            "val",
            "--dataset",
            "corn",
            "--format",
            "json",
        ],
        vec![
            "top", "{}", "--metric", "rmse", "--k", "3", "--format", "json",
        ],
        vec![
            "stats",
            "{}",
            "--group-by",
            "model_name",
            "--format",
            "json",
        ],
    ] {
        let with = |ws: &str| -> Vec<String> { args.iter().map(|a| a.replace("{}", ws)).collect() };
        let a: Vec<String> = with(s);
        let b: Vec<String> = with(o);
        let from_store = json_of(&n4a(
            cache.path(),
            &a.iter().map(String::as_str).collect::<Vec<_>>(),
        ));
        let from_copy = json_of(&n4a(
            cache.path(),
            &b.iter().map(String::as_str).collect::<Vec<_>>(),
        ));
        assert!(
            from_store.to_string().contains("\"PLS\""),
            "{args:?}: {from_store}"
        );
        assert_eq!(
            same_answer(&from_store),
            same_answer(&from_copy),
            "{args:?}"
        );
    }
    let from_store = json_of(&n4a(cache.path(), &["summary", s, "--format", "json"]));
    let from_copy = json_of(&n4a(cache.path(), &["summary", o, "--format", "json"]));
    assert_eq!(from_store["total_predictions"], 53);
    assert_eq!(
        from_store["total_predictions"],
        from_copy["total_predictions"]
    );
    assert_eq!(from_store["datasets"].as_array().map(Vec::len), Some(3));
    // Direction rules: rmse's best is its minimum, r2's and accuracy's their maximum.
    let text = String::from_utf8(n4a(cache.path(), &["summary", s]).stdout).unwrap();
    let line = |ds: &str| {
        text.lines()
            .find(|l| l.starts_with(ds))
            .unwrap_or_default()
            .to_string()
    };
    assert!(line("corn ").contains("lower"), "{text}");
    assert!(
        line("wheat v2").contains("higher") && line("seeds").contains("higher"),
        "{text}"
    );
    assert!(
        text.contains(&format!("Workspace {s}:")),
        "names the store: {text}"
    );
}

#[test]
fn issue_14_reading_a_store_never_writes_it() {
    let (_d, ws) = store_copy();
    let digest = |p: &Path| {
        std::fs::read(p)
            .map(|b| xxhash_rust::xxh3::xxh3_128(&b))
            .ok()
    };
    let files = [
        "store.sqlite",
        "arrays/corn.parquet",
        "arrays/seeds.parquet",
        "arrays/_tombstones.json",
    ];
    let before: Vec<_> = files.iter().map(|f| digest(&ws.join(f))).collect();
    let cache = tempfile::tempdir().unwrap();
    let s = ws.to_str().unwrap();
    for args in [
        vec!["summary", s],
        vec!["top", s, "--metric", "r2"],
        vec!["query", s],
    ] {
        let out = n4a(cache.path(), &args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = tempfile::tempdir().unwrap();
    import_store(&ws, out.path(), &ImportOptions::default()).unwrap();
    let after: Vec<_> = files.iter().map(|f| digest(&ws.join(f))).collect();
    assert_eq!(before, after);
    // Nothing but SQLite's own coordination files (-wal, -shm) appears.
    let mut names: Vec<String> = std::fs::read_dir(&ws)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.retain(|n| !n.starts_with("store.sqlite-"));
    assert_eq!(names, ["arrays", "artifacts", "store.sqlite"]);
}

/// Runs SQL on a store copy (the test plays nirs4all writing it).
fn sql(ws: &Path, statements: &str) {
    let c = rusqlite::Connection::open(ws.join("store.sqlite")).unwrap();
    c.execute_batch(statements).unwrap();
}

#[test]
fn issue_14_a_rerun_rewrites_only_changed_datasets_and_drops_gone_ones() {
    let (_d, ws) = store_copy();
    let out = tempfile::tempdir().unwrap();
    let first = import_store(&ws, out.path(), &ImportOptions::default()).unwrap();
    assert!(first.datasets.iter().all(|d| d.outcome == Outcome::Written));
    let again = import_store(&ws, out.path(), &ImportOptions::default()).unwrap();
    assert!(
        again
            .datasets
            .iter()
            .all(|d| d.outcome == Outcome::Unchanged),
        "{:?}",
        again.datasets
    );
    let seeds_meta = out.path().join("seeds.meta.parquet");
    let seeds_before = std::fs::read(&seeds_meta).unwrap();
    sql(
        &ws,
        "UPDATE predictions SET val_score = 0.05 WHERE dataset_name = 'corn' AND fold_id = '0' AND partition = 'val';
         DELETE FROM predictions WHERE dataset_name = 'wheat v2';",
    );
    let third = import_store(&ws, out.path(), &ImportOptions::default()).unwrap();
    let outcome: HashMap<&str, Outcome> = third
        .datasets
        .iter()
        .map(|d| (d.dataset.as_str(), d.outcome))
        .collect();
    assert_eq!(outcome["corn"], Outcome::Written);
    assert_eq!(outcome["seeds"], Outcome::Unchanged);
    assert_eq!(third.removed, ["wheat v2"]);
    assert!(!out.path().join("wheat v2.meta.parquet").exists());
    assert_eq!(
        std::fs::read(&seeds_meta).unwrap(),
        seeds_before,
        "unchanged dataset not rewritten"
    );
    let corn = n4a::rows::read_predictions(&out.path().join("corn.meta.parquet")).unwrap();
    assert_eq!(
        corn.iter().filter(|p| p.val_score == Some(0.05)).count(),
        2,
        "cfg_0 and cfg_1"
    );
    // Files n4a did not import from this store are never removed.
    std::fs::copy(
        crate::util::fixture("grain_class.meta.parquet"),
        out.path().join("other.meta.parquet"),
    )
    .unwrap();
    import_store(&ws, out.path(), &ImportOptions::default()).unwrap();
    assert!(out.path().join("other.meta.parquet").exists());
}

#[test]
fn issue_14_a_store_of_another_schema_version_names_both_versions() {
    let (_d, ws) = store_copy();
    sql(&ws, "PRAGMA user_version = 4;");
    let out = tempfile::tempdir().unwrap();
    let e = import_store(&ws, out.path(), &ImportOptions::default()).expect_err("refused");
    assert_eq!(e.kind(), "unsupported_store_version");
    let msg = e.to_string();
    assert!(
        msg.contains("store.sqlite") && msg.contains("version 4") && msg.contains("version 5"),
        "{msg}"
    );
    let cache = tempfile::tempdir().unwrap();
    let cli = n4a(cache.path(), &["summary", ws.to_str().unwrap()]);
    assert!(!cli.status.success());
    let err = String::from_utf8_lossy(&cli.stderr);
    assert_eq!(err.matches("version 4").count(), 1, "said once: {err}");
}

#[test]
fn issue_14_a_missing_arrays_file_keeps_the_predictions_and_says_so() {
    let (_d, ws) = store_copy();
    std::fs::remove_file(ws.join("arrays/corn.parquet")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let r = import_store(&ws, out.path(), &ImportOptions::default()).unwrap();
    let corn = r.datasets.iter().find(|d| d.dataset == "corn").unwrap();
    assert_eq!((corn.predictions, corn.with_arrays), (17, 0));
    assert!(
        corn.notes
            .iter()
            .any(|n| n.contains("corn.parquet is missing")),
        "{:?}",
        corn.notes
    );
    let seeds = r.datasets.iter().find(|d| d.dataset == "seeds").unwrap();
    assert_eq!(seeds.with_arrays, 18, "the other datasets keep theirs");
    assert!(rows_by_id(out.path())
        .values()
        .filter(|p| p.dataset_name.as_deref() == Some("corn"))
        .all(|p| p.y_true_id.is_none()));
}

#[test]
fn issue_14_tombstones_never_resurrect_a_deleted_prediction_nor_hide_a_live_one() {
    let (_d, ws) = store_copy();
    let (_, deleted) = nirs4all_store();
    // A stale tombstone on a live prediction (a crash between nirs4all's
    // SQLite write and its tombstone write): nirs4all keeps the row and
    // its arrays, so does n4a.
    let c = rusqlite::Connection::open(ws.join("store.sqlite")).unwrap();
    let live: String = c
        .query_row(
            "SELECT prediction_id FROM predictions WHERE dataset_name = 'corn' LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    drop(c);
    let tomb = ws.join("arrays/_tombstones.json");
    let mut t: serde_json::Map<String, Value> =
        serde_json::from_slice(&std::fs::read(&tomb).unwrap()).unwrap();
    assert!(t.contains_key(deleted), "nirs4all tombstoned its deletion");
    t.insert(
        live.clone(),
        Value::String("2026-03-01T00:00:00+00:00".into()),
    );
    std::fs::write(&tomb, serde_json::to_vec(&t).unwrap()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let r = import_store(&ws, out.path(), &ImportOptions::default()).unwrap();
    let rows = rows_by_id(out.path());
    assert!(!rows.contains_key(deleted));
    assert!(rows[&live].y_true_id.is_some(), "live row keeps its arrays");
    assert_eq!(r.datasets.iter().map(|d| d.with_arrays).sum::<u64>(), 53);
}

#[test]
fn issue_14_a_locked_store_fails_after_the_busy_timeout_naming_the_file() {
    let (_d, ws) = store_copy();
    let c = rusqlite::Connection::open(ws.join("store.sqlite")).unwrap();
    c.execute_batch("PRAGMA journal_mode = DELETE; BEGIN EXCLUSIVE; UPDATE runs SET name = 'x';")
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    let e = import_store(&ws, out.path(), &ImportOptions::default()).expect_err("locked");
    assert_eq!(e.kind(), "sqlite");
    let msg = e.to_string();
    assert!(
        msg.contains("store.sqlite") && msg.contains("locked"),
        "{msg}"
    );
    c.execute_batch("ROLLBACK").unwrap();
}

#[test]
fn issue_14_reads_go_on_while_nirs4all_holds_a_write_transaction() {
    let (_d, ws) = store_copy();
    let c = rusqlite::Connection::open(ws.join("store.sqlite")).unwrap();
    let mode: String = c
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    c.execute_batch("BEGIN IMMEDIATE; DELETE FROM predictions WHERE dataset_name = 'corn';")
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    let r = import_store(&ws, out.path(), &ImportOptions::default()).unwrap();
    let corn = r
        .datasets
        .iter()
        .find(|d| d.dataset == "corn")
        .expect("the committed snapshot");
    assert_eq!(corn.predictions, 17);
    c.execute_batch("COMMIT").unwrap();
    let r = import_store(&ws, out.path(), &ImportOptions::default()).unwrap();
    assert!(r.datasets.iter().all(|d| d.dataset != "corn"));
    assert_eq!(r.removed, ["corn"]);
}

#[test]
fn issue_14_a_store_sqlite_that_is_not_sqlite_is_refused_once_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("store.sqlite"),
        b"these are not the bytes of a database, just text\n".repeat(20),
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let e = import_store(dir.path(), out.path(), &ImportOptions::default()).expect_err("refused");
    assert_eq!(e.kind(), "sqlite");
    assert!(
        e.to_string()
            .contains("store.sqlite: sqlite: file is not a database"),
        "{e}"
    );
    let cache = tempfile::tempdir().unwrap();
    let cli = n4a(
        cache.path(),
        &["top", dir.path().to_str().unwrap(), "--metric", "r2"],
    );
    assert!(!cli.status.success());
    let err = String::from_utf8_lossy(&cli.stderr);
    assert_eq!(err.matches("not a database").count(), 1, "{err}");
}

#[test]
fn issue_14_one_bad_dataset_does_not_hide_the_others() {
    let (_d, ws) = store_copy();
    sql(
        &ws,
        "UPDATE predictions SET dataset_name = 'bad/name' WHERE dataset_name = 'corn';",
    );
    let out = tempfile::tempdir().unwrap();
    let r = import_store(&ws, out.path(), &ImportOptions::default()).unwrap();
    assert_eq!(r.errors.len(), 1);
    assert_eq!(r.errors[0].0, "bad/name");
    assert_eq!(r.errors[0].1.kind(), "invalid_dataset_name");
    assert_eq!(r.datasets.len(), 2);
    let cache = tempfile::tempdir().unwrap();
    let cli = n4a(
        cache.path(),
        &["summary", ws.to_str().unwrap(), "--format", "json"],
    );
    let v: Value = serde_json::from_slice(&cli.stdout).unwrap();
    assert_eq!(v["total_predictions"], 36, "seeds and wheat v2 answered");
    // The failed dataset is the answer's one error, naming the store and it.
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{v}");
    assert_eq!(errors[0]["dataset"], "bad/name");
    assert_eq!(errors[0]["kind"], "invalid_dataset_name");
    assert!(errors[0]["path"]
        .as_str()
        .unwrap()
        .ends_with("store.sqlite"));
    // In plain words too.
    let text = n4a(cache.path(), &["summary", ws.to_str().unwrap()]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&text.stdout),
        String::from_utf8_lossy(&text.stderr)
    );
    assert_eq!(all.matches("bad/name").count(), 1, "once: {all}");
    assert_eq!(text.status.code(), Some(1));
    assert_eq!(
        cli.status.code(),
        Some(1),
        "the failed dataset fails the command"
    );
}

#[test]
fn issue_14_import_refuses_to_write_into_the_store_folder() {
    let (_d, ws) = store_copy();
    let e = import_store(&ws, &ws, &ImportOptions::default()).expect_err("refused");
    assert_eq!(e.kind(), "invalid_option");
    assert!(!ws.join("corn.meta.parquet").exists());
}

/// The ids of a workspace's val rows, sorted, through the query engine.
fn val_ids(ws: &n4a::Workspace) -> Vec<String> {
    let q = n4a::query::PageQuery {
        filters: n4a::query::Filters::default()
            .with("partition", ["val"])
            .unwrap(),
        limit: 1000,
        ..Default::default()
    };
    let page = n4a::QueryEngine::new(ws).page(&q).unwrap();
    let mut ids: Vec<String> = page
        .records
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[test]
fn issue_31_a_store_opens_through_workspace_only() {
    let (_d, store) = store_copy();
    let cache = tempfile::tempdir().unwrap();
    let ws = n4a::Workspace::open(&store)
        .unwrap()
        .with_mirror_root(cache.path())
        .unwrap();
    assert_eq!(ws.kind(), n4a::workspace::SourceKind::Store);
    assert_eq!(ws.origin(), store.as_path());
    assert!(ws.root().starts_with(cache.path()), "the mirror is read");
    // The first ask imports; the answer names the store, as its import.
    let s = ws.summary().unwrap();
    assert_eq!((s.total_predictions, s.total_datasets), (53, 3));
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(s.workspace, store);
    let copy = tempfile::tempdir().unwrap();
    import_store(&store, copy.path(), &ImportOptions::default()).unwrap();
    let folder = n4a::Workspace::open(copy.path()).unwrap();
    assert_eq!(folder.kind(), n4a::workspace::SourceKind::Folder);
    let ids = val_ids(&ws);
    assert!(!ids.is_empty());
    assert_eq!(ids, val_ids(&folder), "the same rows as the store's import");

    // Without a re-check, a change is seen only after `sync`.
    sql(
        &store,
        "DELETE FROM predictions WHERE dataset_name = 'seeds';",
    );
    assert_eq!(ws.summary().unwrap().total_predictions, 53);
    let synced = ws.sync().unwrap();
    assert!(synced.changed && synced.errors.is_empty());
    let s = ws.summary().unwrap();
    assert_eq!(s.total_datasets, 2, "the gone dataset left the mirror");
    assert!(s.total_predictions < 53);

    // Re-checked on every ask: a bad dataset is one error naming the store
    // and the dataset, the others answered.
    let ws = n4a::Workspace::open(&store)
        .unwrap()
        .with_mirror_root(cache.path())
        .unwrap()
        .with_recheck(Some(std::time::Duration::ZERO));
    let before = ws.summary().unwrap().total_predictions;
    sql(
        &store,
        "UPDATE predictions SET dataset_name = 'bad/name' WHERE dataset_name = 'corn';",
    );
    let s = ws.summary().unwrap();
    assert_eq!(s.errors.len(), 1, "{:?}", s.errors);
    assert_eq!(s.errors[0].path, store.join("store.sqlite"));
    assert_eq!(s.errors[0].dataset.as_deref(), Some("bad/name"));
    assert_eq!(s.errors[0].kind, "invalid_dataset_name");
    assert_eq!(s.total_datasets, 1);
    assert!(s.total_predictions < before);
}

#[test]
fn issue_31_a_watched_store_is_brought_up_to_date_in_the_background() {
    let (_d, store) = store_copy();
    let cache = tempfile::tempdir().unwrap();
    let ws = std::sync::Arc::new(
        n4a::Workspace::open(&store)
            .unwrap()
            .with_mirror_root(cache.path())
            .unwrap(),
    );
    assert_eq!(ws.summary().unwrap().total_datasets, 3);
    n4a::workspace::watch(&ws, std::time::Duration::from_millis(20), |_, e| {
        panic!("{e}")
    });
    sql(
        &store,
        "DELETE FROM predictions WHERE dataset_name = 'seeds';",
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while ws.summary().unwrap().total_datasets != 2 {
        assert!(std::time::Instant::now() < deadline, "never re-checked");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // A folder needs no thread, and the thread ends with the workspace.
    let folder = std::sync::Arc::new(n4a::Workspace::open(cache.path()).unwrap());
    n4a::workspace::watch(&folder, std::time::Duration::from_millis(1), |_, _| {});
    assert_eq!(std::sync::Arc::strong_count(&folder), 1);
}

/// Where two of nirs4all's views of a workspace differ: each section's
/// first differing entry, or nothing.
fn first_differences(a: &Value, b: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for key in ["predictions", "chains", "top_chains", "top_predictions"] {
        let (x, y) = (&a[key], &b[key]);
        if x == y {
            continue;
        }
        let pairs: Vec<(String, &Value, &Value)> = match (x, y) {
            (Value::Array(xs), Value::Array(ys)) if xs.len() == ys.len() => xs
                .iter()
                .zip(ys)
                .enumerate()
                .map(|(i, (p, q))| (format!("{key}[{i}]"), p, q))
                .collect(),
            (Value::Object(xs), Value::Object(ys)) => xs
                .iter()
                .map(|(k, p)| (format!("{key}.{k}"), p, ys.get(k).unwrap_or(&Value::Null)))
                .collect(),
            _ => vec![(key.to_string(), x, y)],
        };
        if let Some((at, p, q)) = pairs.into_iter().find(|(_, p, q)| p != q) {
            out.push(format!("{at}:\n  nirs4all: {p}\n  round trip: {q}"));
        }
    }
    out
}

#[test]
fn issue_32_a_round_trip_keeps_what_nirs4all_computes() {
    // Real nirs4all 1.4.10 runs (dag-ml engine): a regression with refit,
    // an `_or_` with a winner and a score-only loser chain, a
    // classification, two datasets, and a deleted run.
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("nirs4all ws");
    let made = nirs4all_oracle("pipelines", &original);
    assert_eq!(made["deleted"].as_array().map(Vec::len), Some(1), "{made}");
    let copy = dir.path().join("copy");
    let report = import_store(&original, &copy, &ImportOptions::default()).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let back = dir.path().join("back");
    n4a::store::export_store(&copy, &back, &n4a::store::ExportOptions::default()).unwrap();

    let want = nirs4all_oracle("views", &original);
    let got = nirs4all_oracle("views", &back);
    // The views hold what a user reads: the refit (final) scores, one chain
    // per nirs4all chain with its model class, cross-validation scores by
    // nirs4all's rule, and the rankings built on them.
    let chains = want["chains"].as_array().unwrap();
    assert!(chains.len() >= 4, "{want}");
    assert!(
        chains
            .iter()
            .filter(|c| c["final_test_score"].is_number())
            .count()
            >= 3,
        "the refit chains have final scores: {want}"
    );
    let diff = first_differences(&want, &got);
    assert!(diff.is_empty(), "{}", diff.join("\n"));
}

/// `n4a serve STORE` in a child process on a free port, its mirror under
/// `cache`; returns the child and its address.
/// A server process, stopped when dropped (a failed assertion included).
struct Served(std::process::Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve_store(store: &Path, cache: &Path) -> (Served, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_n4a"))
        .env("N4A_CACHE_DIR", cache)
        .args(["serve", store.to_str().unwrap(), "--addr", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let addr = crate::util::served_address(&mut child);
    (Served(child), addr)
}

#[test]
fn issue_32_a_served_store_sees_nirs4all_writes_within_2_seconds_without_blocking_them() {
    let (_d, store) = store_copy();
    let cache = tempfile::tempdir().unwrap();
    let (server, addr) = serve_store(&store, cache.path());
    let get = |target: &str| {
        let r = crate::client::Client::connect(&addr)
            .unwrap()
            .get(target)
            .unwrap();
        (r.status, r.json())
    };
    let (status, list) = get("/api/workspaces");
    assert_eq!(status, 200, "{list}");
    let id = list["workspaces"][0]["id"].as_str().unwrap().to_string();
    let summary = format!("/api/workspaces/{id}/predictions/summary?datasets=brief");
    let page = format!("/api/workspaces/{id}/predictions/data?dataset=corn&limit=5");
    let total = |v: &Value| v["total_predictions"].as_u64().unwrap();
    let (_, s) = get(&summary);
    let before = total(&s);

    // nirs4all writes 20 commits of 3 predictions, 0.1 s apart, through its
    // own API, while the server is asked again and again.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/nirs4all_store.py");
    let mut writer = Command::new(crate::util::nirs4all_python())
        .arg(&script)
        .arg("append")
        .arg(&store)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut asked = 0;
    let mut seen_growing = false;
    let done = loop {
        for target in [&summary, &page] {
            let (status, body) = get(target);
            assert_eq!(status, 200, "{target} while nirs4all writes: {body}");
            asked += 1;
            if target == &summary && total(&body) > before {
                seen_growing = true;
            }
        }
        if let Some(st) = writer.try_wait().unwrap() {
            break (st, std::time::Instant::now());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let out = writer.wait_with_output().unwrap();
    assert!(
        done.0.success(),
        "nirs4all's writes: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["failed"], 0, "no write of nirs4all failed: {report}");
    let written = report["written"].as_u64().unwrap();
    assert_eq!(written, 60);
    // Every new prediction in the answers within 2 seconds of the last commit.
    loop {
        let (status, s) = get(&summary);
        assert_eq!(status, 200);
        if total(&s) == before + written {
            break;
        }
        assert!(
            done.1.elapsed() < std::time::Duration::from_secs(2),
            "after 2 s the server answers {} predictions, nirs4all wrote {}",
            total(&s),
            before + written
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        asked > 20 && seen_growing,
        "asked {asked} times while it wrote"
    );
    drop(server);
}

/// An answer less what legitimately differs between the same answer from
/// a store read in place and from a `.meta.parquet` copy: how it was
/// served (footers or a scan, and the provenance's counts), the files'
/// names and versions, when it was made.
fn same_answer(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(k, _)| {
                    ![
                        "elapsed_ms",
                        "workspace",
                        "provenance",
                        "served_by",
                        "seconds",
                        "generated_at",
                        "path",
                        "num_row_groups",
                    ]
                    .contains(&k.as_str())
                })
                .map(|(k, x)| (k.clone(), same_answer(x)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(same_answer).collect()),
        // A mean from the import's stored group aggregates adds the rows'
        // scores in another order than a scan of the rows in place: equal
        // to 12 significant digits, not bit for bit.
        v @ Value::Number(_) => crate::util::rounded(v),
        v => v.clone(),
    }
}

/// Asks `args` (with `{}` for the workspace) of the store `store`, never
/// seen (a fresh cache: answered in place), and of `copy`, its import;
/// asserts the answers are the same. Returns the store's answer.
fn in_place_as_copy(store: &Path, copy: &Path, args: &[&str]) -> Value {
    let with = |ws: &Path| -> Vec<String> {
        args.iter()
            .map(|a| a.replace("{}", ws.to_str().unwrap()))
            .collect()
    };
    let fresh = tempfile::tempdir().unwrap();
    let a = with(store);
    let b = with(copy);
    let from_store = json_of(&n4a(
        fresh.path(),
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    let from_copy = json_of(&n4a(
        fresh.path(),
        &b.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    let (x, y) = (same_answer(&from_store), same_answer(&from_copy));
    assert!(
        x == y,
        "{args:?}: in place and the copy differ: {:?}",
        first_differences(&x, &y)
    );
    from_store
}

/// The queries a dashboard and a notebook send, each answered in place.
const IN_PLACE_ASKS: &[&[&str]] = &[
    &["summary", "{}", "--format", "json"],
    &["query", "{}", "--format", "json"],
    &["query", "{}", "--limit", "0", "--format", "json"],
    &[
        "query",
        "{}",
        "--sort",
        "val_score:desc",
        "--limit",
        "7",
        "--format",
        "json",
    ],
    &[
        "query",
        "{}",
        "--partition",
        "val",
        "--sort",
        "val_score:asc",
        "--offset",
        "3",
        "--limit",
        "5",
        "--format",
        "json",
    ],
    &[
        "query",
        "{}",
        "--partition",
        "test",
        "--sort",
        "model_classname:asc",
        "--limit",
        "4",
        "--format",
        "json",
    ],
    &["top", "{}", "--k", "5", "--format", "json"],
    &[
        "top",
        "{}",
        "--metric",
        "rmse",
        "--k",
        "3",
        "--score",
        "test_score",
        "--format",
        "json",
    ],
    &[
        "stats",
        "{}",
        "--group-by",
        "model_name",
        "--format",
        "json",
    ],
    &[
        "stats",
        "{}",
        "--group-by",
        "partition",
        "--partition",
        "all",
        "--format",
        "json",
    ],
    &[
        "stats",
        "{}",
        "--group-by",
        "fold",
        "--metric",
        "rmse",
        "--format",
        "json",
    ],
    &["stats", "{}", "--group-by", "dataset", "--format", "json"],
    &["stats", "{}", "--group-by", "config", "--format", "json"],
];

#[test]
fn issue_32_b_a_store_never_seen_is_answered_in_place_as_its_import() {
    let (store, _) = nirs4all_store();
    let copy = tempfile::tempdir().unwrap();
    import_store(store, copy.path(), &ImportOptions::default()).unwrap();
    for args in IN_PLACE_ASKS {
        let v = in_place_as_copy(store, copy.path(), args);
        if args[0] == "summary" {
            // Answered from the store itself, not from a mirror made first.
            let paths: Vec<&str> = v["datasets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["path"].as_str().unwrap())
                .collect();
            assert_eq!(paths.len(), 3, "{v}");
            assert!(
                paths.iter().all(|p| p.contains("store.sqlite#")),
                "{paths:?}"
            );
            assert_eq!(v["total_predictions"], 53);
        }
    }
}

#[test]
fn issue_32_b_a_large_store_read_on_two_connections_answers_as_its_import() {
    // 3 datasets x 30,000 rows: past the one-connection limit (50,000), so
    // the rows are read in two halves and joined.
    let dir = tempfile::tempdir().unwrap();
    let (ws, store, copy) = (
        dir.path().join("ws"),
        dir.path().join("store"),
        dir.path().join("copy"),
    );
    n4a::generate::generate(
        &ws,
        &n4a::generate::GenOptions {
            datasets: 3,
            rows: 30_000,
            arrays: false,
            ..Default::default()
        },
    )
    .unwrap();
    n4a::store::export_store(&ws, &store, &n4a::store::ExportOptions::default()).unwrap();
    import_store(&store, &copy, &ImportOptions::default()).unwrap();
    let metric = {
        let s = json_of(&n4a(
            dir.path(),
            &["summary", copy.to_str().unwrap(), "--format", "json"],
        ));
        s["metrics"][0]["name"].as_str().unwrap().to_string()
    };
    for args in IN_PLACE_ASKS {
        let args: Vec<&str> = args
            .iter()
            .map(|a| if *a == "rmse" { metric.as_str() } else { a })
            .collect();
        in_place_as_copy(&store, &copy, &args);
    }
    for offset in ["0", "1000", "44990"] {
        in_place_as_copy(
            &store,
            &copy,
            &[
                "query",
                "{}",
                "--partition",
                "val",
                "--metric",
                &metric,
                "--sort",
                "val_score:asc",
                "--offset",
                offset,
                "--limit",
                "50",
                "--format",
                "json",
            ],
        );
    }
}

#[test]
fn issue_32_b_the_mirror_is_brought_up_to_date_beside_the_first_answer() {
    let (store, _) = nirs4all_store();
    let cache = tempfile::tempdir().unwrap();
    let s = store.to_str().unwrap();
    let first = json_of(&n4a(cache.path(), &["summary", s, "--format", "json"]));
    let in_place = |v: &Value| {
        v["datasets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["path"].as_str().unwrap().contains("store.sqlite#"))
    };
    assert!(in_place(&first), "{first}");
    // The detached `n4a __mirror-store` writes the mirror; the command
    // after it reads the mirror's footers.
    let stamp = || {
        std::fs::read_dir(cache.path().join("stores"))
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .is_some_and(|e| e.path().join(".n4a-store-stamp").is_file())
    };
    let t0 = std::time::Instant::now();
    while !stamp() {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(60),
            "no mirror after 60 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let later = json_of(&n4a(cache.path(), &["summary", s, "--format", "json"]));
    assert!(!in_place(&later), "{later}");
    assert_eq!(same_answer(&first), same_answer(&later));
}

#[test]
fn issue_32_b_a_library_workspace_answers_in_place_then_from_its_mirror() {
    let (store, _) = nirs4all_store();
    let cache = tempfile::tempdir().unwrap();
    let ws = n4a::Workspace::open(store)
        .unwrap()
        .with_mirror_root(cache.path())
        .unwrap()
        .with_recheck(Some(std::time::Duration::ZERO));
    let first = ws.summary().unwrap();
    assert!(first
        .datasets
        .iter()
        .all(|d| d.path.to_string_lossy().contains("store.sqlite#")));
    let t0 = std::time::Instant::now();
    loop {
        let s = ws.summary().unwrap();
        if s.datasets
            .iter()
            .all(|d| !d.path.to_string_lossy().contains('#'))
        {
            assert_eq!(s.total_predictions, first.total_predictions);
            break;
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(60),
            "no mirror after 60 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn issue_32_b_the_database_file_read_directly_answers_as_sqlite_does() {
    // A store with what a direct reader of SQLite's file must get right:
    // records past a page (overflow chains), integers in REAL columns,
    // NULL scores, a column added by ALTER TABLE (short records read with
    // its default), and enough rows for a b-tree of two interior levels.
    let dir = tempfile::tempdir().unwrap();
    let (ws, store) = (dir.path().join("ws"), dir.path().join("store"));
    n4a::generate::generate(
        &ws,
        &n4a::generate::GenOptions {
            datasets: 3,
            rows: 20_000,
            arrays: false,
            ..Default::default()
        },
    )
    .unwrap();
    n4a::store::export_store(&ws, &store, &n4a::store::ExportOptions::default()).unwrap();
    let big = "x".repeat(9_000);
    sql(
        &store,
        &format!(
            "UPDATE predictions SET best_params = '{{\"note\": \"{big}\"}}' WHERE rowid % 97 = 0;
             UPDATE predictions SET val_score = 1 WHERE rowid % 101 = 0;
             UPDATE predictions SET test_score = NULL WHERE rowid % 103 = 0;
             PRAGMA journal_mode = DELETE;"
        ),
    );
    let asks: Vec<Vec<&str>> = IN_PLACE_ASKS
        .iter()
        .map(|a| a.to_vec())
        .chain([vec![
            "query",
            "{}",
            "--sort",
            "best_params:desc",
            "--limit",
            "3",
            "--format",
            "json",
        ]])
        .collect();
    let ask = |env: &str, args: &[&str]| -> Value {
        let cache = tempfile::tempdir().unwrap();
        let args: Vec<String> = args
            .iter()
            .map(|a| a.replace("{}", store.to_str().unwrap()))
            .collect();
        let out = Command::new(env!("CARGO_BIN_EXE_n4a"))
            .args(&args)
            .env("N4A_CACHE_DIR", cache.path())
            .env("N4A_STORE_MIRROR", "off")
            .env("N4A_STORE_DIRECT", env)
            .output()
            .unwrap();
        json_of(&out)
    };
    for args in &asks {
        let direct = ask("require", args);
        let through = ask("off", args);
        assert_eq!(
            same_answer(&direct),
            same_answer(&through),
            "{args:?}: {:?}",
            first_differences(&same_answer(&direct), &same_answer(&through))
        );
    }
    // A column added later (as nirs4all's migrations add `refit_context`):
    // the rows written before it hold no value and read as its default.
    let cols: Vec<String> = {
        let c = rusqlite::Connection::open(store.join("store.sqlite")).unwrap();
        let mut st = c
            .prepare("SELECT name FROM pragma_table_info('predictions')")
            .unwrap();
        st.query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(Result::unwrap)
            .filter(|n| n != "exclusion_count")
            .collect()
    };
    sql(
        &store,
        &format!(
            "PRAGMA legacy_alter_table = ON;
             CREATE TABLE p2 AS SELECT {0} FROM predictions ORDER BY rowid;
             DROP TABLE predictions;
             ALTER TABLE p2 RENAME TO predictions;
             ALTER TABLE predictions ADD COLUMN exclusion_count INTEGER DEFAULT 7;
             UPDATE predictions SET exclusion_count = 3 WHERE rowid % 89 = 0;",
            cols.join(", ")
        ),
    );
    for args in [
        vec!["summary", "{}", "--format", "json"],
        vec![
            "query",
            "{}",
            "--sort",
            "exclusion_count:asc",
            "--limit",
            "5",
            "--format",
            "json",
        ],
        vec!["stats", "{}", "--group-by", "model", "--format", "json"],
    ] {
        let direct = ask("require", &args);
        assert_eq!(
            same_answer(&direct),
            same_answer(&ask("off", &args)),
            "{args:?}"
        );
        if args[0] == "query" {
            assert_eq!(direct["records"][0]["exclusion_count"], 3, "{direct}");
        }
    }
}

#[test]
fn issue_32_b_rows_only_in_the_wal_are_read_through_sqlite() {
    let (_d, ws) = store_copy();
    // nirs4all's connection, open in WAL mode with frames not yet copied
    // into the database file: a direct read of the file would miss them.
    let writer = rusqlite::Connection::open(ws.join("store.sqlite")).unwrap();
    writer
        .execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;
             UPDATE predictions SET val_score = 0.000001 WHERE rowid = (SELECT min(rowid) FROM predictions);",
        )
        .unwrap();
    let ask = |env: &str| -> std::process::Output {
        let cache = tempfile::tempdir().unwrap();
        Command::new(env!("CARGO_BIN_EXE_n4a"))
            .args([
                "query",
                ws.to_str().unwrap(),
                "--sort",
                "val_score:asc",
                "--limit",
                "1",
                "--format",
                "json",
            ])
            .env("N4A_CACHE_DIR", cache.path())
            .env("N4A_STORE_MIRROR", "off")
            .env("N4A_STORE_DIRECT", env)
            .output()
            .unwrap()
    };
    let refused = ask("require");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("not read directly"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let page = json_of(&ask(""));
    assert_eq!(page["records"][0]["val_score"], 0.000001, "{page}");
    drop(writer);
}

#[test]
fn issue_32_b_text_that_is_not_utf8_fails_its_dataset_read_in_place_either_way() {
    // A facet's cells are looked up by their bytes before they are checked
    // as UTF-8 (only a value not held yet is checked): a cell that is not
    // UTF-8 still fails its dataset, naming the column, on the direct read
    // and through SQLite, and the other datasets are answered.
    let (_d, ws) = store_copy();
    sql(
        &ws,
        "UPDATE predictions SET model_name = CAST(x'ff41' AS TEXT)
           WHERE rowid = (SELECT max(rowid) FROM predictions WHERE dataset_name = 'corn');
         PRAGMA journal_mode = DELETE;",
    );
    for how in ["require", "off"] {
        let cache = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_n4a"))
            .env("N4A_CACHE_DIR", cache.path())
            .env("N4A_STORE_MIRROR", "off")
            .env("N4A_STORE_DIRECT", how)
            .args(["summary", ws.to_str().unwrap(), "--format", "json"])
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{how}: {e}: {}", String::from_utf8_lossy(&out.stderr)));
        assert_eq!(
            v["total_predictions"], 36,
            "{how}: seeds and wheat v2 answered"
        );
        let errors = v["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 1, "{how}: {v}");
        assert_eq!(errors[0]["dataset"], "corn", "{how}");
        let msg = errors[0].to_string();
        assert!(
            msg.contains("model_name") && msg.contains("not UTF-8"),
            "{how}: {msg}"
        );
        assert_eq!(out.status.code(), Some(1), "{how}");
    }
}
