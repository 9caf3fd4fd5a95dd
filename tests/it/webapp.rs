//! The nirs4all web app on `n4a serve` (issue 30): the contract of every
//! `/api/workspaces...` and `/api/dashboard` route its frontend calls
//! (GBeurier/nirs4all-webapp `8ee91f4`), checked field by field on
//! `fixtures/webapp-workspace/` (nirs4all's own files and run folders, made by
//! `fixtures/make-webapp-workspace.py`)
//! against the app's backend logic, re-derived here from its source
//! (`api/workspace.py`, `api/workspace_manager.py`, `api/dashboard.py`):
//! the rows read with arrow directly, the manifests with a YAML parser.
//! Where n4a answers differently on purpose (best scores by the metric's
//! direction, each pipeline once), the test says so and checks n4a's rule.
//! Linking is checked for safety (roots, `..`, symbolic links), CORS and
//! the built app's static files too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::Array;
use n4a::server::{App, Background, ServeOptions};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{json, Value};

use crate::client::Client;
use crate::util::{copy_dir, fixture};

struct Server {
    _app: Arc<App>,
    bg: Background,
}

impl Server {
    fn start(ws: &[&Path], opts: ServeOptions) -> Server {
        let given: Vec<(String, PathBuf)> = ws
            .iter()
            .map(|p| (String::new(), p.to_path_buf()))
            .collect();
        let app = App::new(&given, ServeOptions { log: false, ..opts }).unwrap();
        let bg = Background::start(app.clone()).unwrap();
        Server { _app: app, bg }
    }

    fn call(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, Value, Vec<(String, String)>) {
        let r = Client::connect(self.bg.addr())
            .unwrap()
            .send(method, target, headers, body.as_bytes())
            .unwrap();
        let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        (r.status, v, r.headers)
    }

    fn get(&self, target: &str) -> Value {
        let (s, v, _) = self.call("GET", target, &[("Content-Type", "application/json")], "");
        assert_eq!(s, 200, "{target}: {v}");
        v
    }
}

/// The fixture copied (its files quiet, as between runs).
fn workspace() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("corn study");
    copy_dir(&fixture("webapp-workspace"), &ws);
    (dir, ws)
}

/// One config of one file as the app's backend computes it (pandas
/// `groupby("config_name")`: size, nunique pipeline_uid, max val/test,
/// the first five distinct models), with the minimum beside.
#[derive(Debug, Default)]
struct Oracle {
    rows: u64,
    pipelines: std::collections::BTreeSet<String>,
    models: Vec<String>,
    metrics: Vec<String>,
    val: Vec<f64>,
    test: Vec<f64>,
}

fn oracle(path: &Path) -> BTreeMap<String, Oracle> {
    let f = std::fs::File::open(path).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap();
    let mut out: BTreeMap<String, Oracle> = BTreeMap::new();
    for b in reader {
        let b = b.unwrap();
        let s = |n: &str| -> Vec<Option<String>> {
            let c = b.column_by_name(n).unwrap();
            match c.data_type() {
                arrow_schema::DataType::LargeUtf8 => {
                    let a = c.as_string::<i64>();
                    (0..a.len())
                        .map(|i| a.is_valid(i).then(|| a.value(i).to_string()))
                        .collect()
                }
                _ => {
                    let a = c.as_string::<i32>();
                    (0..a.len())
                        .map(|i| a.is_valid(i).then(|| a.value(i).to_string()))
                        .collect()
                }
            }
        };
        let x = |n: &str| -> Vec<Option<f64>> {
            let a = b
                .column_by_name(n)
                .unwrap()
                .as_primitive::<Float64Type>()
                .clone();
            (0..a.len())
                .map(|i| a.is_valid(i).then(|| a.value(i)))
                .collect()
        };
        let (cfg, pipe, model, metric, val, test) = (
            s("config_name"),
            s("pipeline_uid"),
            s("model_name"),
            s("metric"),
            x("val_score"),
            x("test_score"),
        );
        for i in 0..b.num_rows() {
            let Some(c) = &cfg[i] else { continue };
            let e = out.entry(c.clone()).or_default();
            e.rows += 1;
            if let Some(p) = &pipe[i] {
                e.pipelines.insert(p.clone());
            }
            if let Some(m) = &model[i] {
                if !e.models.contains(m) {
                    e.models.push(m.clone());
                }
            }
            if let Some(m) = &metric[i] {
                if !e.metrics.contains(m) {
                    e.metrics.push(m.clone());
                }
            }
            e.val.extend(val[i].filter(|v| v.is_finite()));
            e.test.extend(test[i].filter(|v| v.is_finite()));
        }
    }
    out
}

fn max(v: &[f64]) -> Option<f64> {
    v.iter().copied().reduce(f64::max)
}

fn min(v: &[f64]) -> Option<f64> {
    v.iter().copied().reduce(f64::min)
}

/// The manifests nirs4all wrote, as the app reads them: (dataset folder,
/// pipeline folder, manifest).
fn manifests(ws: &Path) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    let mut ds: Vec<_> = std::fs::read_dir(ws.join("runs"))
        .unwrap()
        .flatten()
        .collect();
    ds.sort_by_key(|e| e.file_name());
    for d in ds {
        let dn = d.file_name().to_string_lossy().into_owned();
        if dn.starts_with('_') || !d.path().is_dir() {
            continue;
        }
        let mut ps: Vec<_> = std::fs::read_dir(d.path()).unwrap().flatten().collect();
        ps.sort_by_key(|e| e.file_name());
        for p in ps {
            let pn = p.file_name().to_string_lossy().into_owned();
            let mf = p.path().join("manifest.yaml");
            if pn.starts_with('_') || !mf.is_file() {
                continue;
            }
            let m: Value = serde_saphyr::from_str(&std::fs::read_to_string(mf).unwrap()).unwrap();
            out.push((dn.clone(), pn, m));
        }
    }
    out
}

#[test]
fn issue_30_workspaces_list_names_the_active_one_as_the_app_reads_it() {
    let (_d, ws) = workspace();
    let srv = Server::start(&[&ws], ServeOptions::default());
    let v = srv.get("/api/workspaces");
    assert_eq!(v["total"], json!(1));
    let w = &v["workspaces"][0];
    // Predictions and Results pick `is_active`; Runs and Settings
    // `active_workspace_id`: both must say the same.
    assert_eq!(w["is_active"], json!(true));
    assert_eq!(v["active_workspace_id"], w["id"]);
    assert_eq!(w["name"], json!("corn study"));
    assert_eq!(
        w["path"].as_str().map(PathBuf::from),
        Some(ws.canonicalize().unwrap())
    );
    assert!(w["linked_at"].is_string() && w["last_scanned"].is_string());
    // discovered: manifest runs (the app counts run folders only), the
    // datasets they name, exports, templates.
    let m = manifests(&ws);
    let datasets: std::collections::BTreeSet<&String> = m.iter().map(|(d, _, _)| d).collect();
    assert_eq!(
        w["discovered"],
        json!({"runs_count": m.len(), "datasets_count": datasets.len(), "exports_count": 4, "templates_count": 2})
    );
}

#[test]
fn issue_30_runs_list_each_pipeline_once_with_its_best_by_direction() {
    let (_d, ws) = workspace();
    let srv = Server::start(&[&ws], ServeOptions::default());
    let id = srv.get("/api/workspaces")["active_workspace_id"]
        .as_str()
        .unwrap()
        .to_string();
    let v = srv.get(&format!("/api/workspaces/{id}/runs"));
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(v["total"], json!(runs.len()));
    assert_eq!(v["workspace_id"], json!(id));

    let mut expected = 0;
    let manifests = manifests(&ws);
    let mut files: Vec<_> = std::fs::read_dir(&ws)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    for f in files
        .iter()
        .filter(|p| p.to_string_lossy().ends_with(".meta.parquet"))
    {
        let dataset = f
            .file_name()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches(".meta.parquet")
            .to_string();
        for (config, o) in oracle(f) {
            expected += 1;
            let found: Vec<&Value> = runs
                .iter()
                .filter(|r| r["dataset"] == json!(dataset) && r["pipeline_id"] == json!(config))
                .collect();
            // The app listed a nirs4all pipeline twice (its folder, its
            // config): n4a once.
            assert_eq!(found.len(), 1, "{dataset}/{config}: {found:?}");
            let r = found[0];
            let manifest = manifests
                .iter()
                .find(|(d, p, _)| *d == dataset && *p == config);
            match manifest {
                Some((_, _, m)) => {
                    // The folder's run: the app's v1 fields from the manifest.
                    assert_eq!(r["format"], json!("v1"));
                    assert_eq!(r["id"], m["uid"]);
                    assert_eq!(r["name"], m["name"]);
                    assert_eq!(r["created_at"], m["created_at"]);
                    assert_eq!(r["schema_version"], m["schema_version"]);
                    assert_eq!(
                        r["artifact_count"],
                        json!(m["artifacts"]["items"].as_array().unwrap().len())
                    );
                }
                None => {
                    // A config whose folder was deleted: the app's
                    // parquet-derived item.
                    assert_eq!(r["format"], json!("parquet_derived"));
                    assert_eq!((&r["id"], &r["name"]), (&json!(config), &json!(config)));
                    assert_eq!(r["created_at"], Value::Null);
                    assert_eq!(r["datasets"], json!([{"name": dataset}]));
                }
            }
            assert_eq!(r["predictions_count"], json!(o.rows));
            assert_eq!(r["pipeline_count"], json!(o.pipelines.len()));
            o.models
                .iter()
                .take(5)
                .zip(r["models"].as_array().unwrap())
                .for_each(|(a, b)| assert_eq!(b, a));
            assert_eq!(r["models"].as_array().unwrap().len(), o.models.len().min(5));
            assert_eq!(o.metrics.len(), 1);
            let metric = &o.metrics[0];
            assert_eq!(r["metric"], json!(metric));
            // The app: the maximum whatever the metric. n4a: the best by
            // the metric's direction, the same for a score to maximise.
            let lower = matches!(metric.as_str(), "mse" | "rmse");
            let (want_val, want_test) = if lower {
                (min(&o.val), min(&o.test))
            } else {
                (max(&o.val), max(&o.test))
            };
            assert_eq!(r["best_val_score"].as_f64(), want_val, "{dataset}/{config}");
            assert_eq!(
                r["best_test_score"].as_f64(),
                want_test,
                "{dataset}/{config}"
            );
            if lower {
                assert_ne!(
                    r["best_val_score"].as_f64(),
                    max(&o.val),
                    "the app's maximum is the worst here"
                );
            }
        }
    }
    // Plus the folders whose predictions are gone (no rows): still runs.
    let orphans: Vec<&Value> = runs
        .iter()
        .filter(|r| r["pipeline_id"] == json!("0005_RegDeleted_0badc0"))
        .collect();
    assert_eq!(orphans.len(), 1);
    assert_eq!(orphans[0]["predictions_count"], json!(0));
    assert_eq!(runs.len(), expected + 1);
    // Newest first; the undated configs last.
    let dates: Vec<&str> = runs
        .iter()
        .map(|r| r["created_at"].as_str().unwrap_or(""))
        .collect();
    let mut sorted = dates.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(dates, sorted);

    // source=manifests: the folders only; parquet: the configs only.
    let m = srv.get(&format!("/api/workspaces/{id}/runs?source=manifests"));
    assert_eq!(m["total"], json!(manifests.len()));
    let p = srv.get(&format!("/api/workspaces/{id}/runs?source=parquet"));
    assert_eq!(p["total"], json!(expected));
    assert!(p["runs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["format"] == json!("parquet_derived")));
}

#[test]
fn issue_30_discovery_lists_predictions_exports_and_templates() {
    let (_d, ws) = workspace();
    let srv = Server::start(&[&ws], ServeOptions::default());
    let id = srv.get("/api/workspaces")["active_workspace_id"]
        .as_str()
        .unwrap()
        .to_string();
    let p = srv.get(&format!("/api/workspaces/{id}/predictions"));
    let items = p["predictions"].as_array().unwrap();
    assert_eq!(p["count"], json!(items.len()));
    let names: Vec<&str> = items
        .iter()
        .map(|i| i["dataset"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["corn_moisture", "grain_class", "wheat protein"]);
    for i in items {
        let path = PathBuf::from(i["path"].as_str().unwrap());
        assert_eq!(i["format"], json!("parquet"));
        assert_eq!(
            i["size_bytes"],
            json!(std::fs::metadata(&path).unwrap().len())
        );
    }
    let e = srv.get(&format!("/api/workspaces/{id}/exports"));
    let kinds: Vec<(&str, &str)> = e["exports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["type"].as_str().unwrap(), x["dataset"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        // Name order: the `corn_moisture` folder, then `corn_pls.n4a`.
        [
            ("pipeline_json", "corn_moisture"),
            ("predictions_csv", "corn_moisture"),
            ("summary_json", "corn_moisture"),
            ("n4a_bundle", ""),
        ]
    );
    let summary = &e["exports"][2];
    assert_eq!(
        (
            summary["val_score"].as_f64(),
            summary["export_mode"].as_str()
        ),
        (Some(0.2093), Some("best"))
    );
    assert_eq!(e["exports"][0]["steps_count"], json!(3));
    let t = srv.get(&format!("/api/workspaces/{id}/templates"));
    let t: Vec<(&str, &str)> = t["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["type"].as_str().unwrap(), x["name"].as_str().unwrap()))
        .collect();
    assert_eq!(
        t,
        [
            ("template", "pls baseline"),
            ("trained_pipeline", "corn_pls")
        ]
    );
    // A scan answers the app's summary and the `discovered` its Settings
    // page reads (the app's own scan answer lacked it and broke the page).
    let (s, v, _) = srv.call("POST", &format!("/api/workspaces/{id}/scan"), &[], "");
    assert_eq!(s, 200);
    assert_eq!(v["discovered"]["runs_count"], v["summary"]["runs_count"]);
    // Every run counted, as the discovery panel lists them (the app counted
    // run folders only), and every dataset, prediction files' included.
    let all = srv.get(&format!("/api/workspaces/{id}/runs"));
    assert_eq!(v["discovered"]["runs_count"], all["total"]);
    assert_eq!(v["discovered"]["datasets_count"], json!(3));
    let listed = srv.get("/api/workspaces");
    assert_eq!(listed["workspaces"][0]["discovered"], v["discovered"]);
    assert_eq!(v["summary"]["predictions_count"], json!(3));
    assert_eq!(v["runs"].as_array().unwrap().len(), manifests(&ws).len());
}

#[test]
fn issue_30_dashboard_and_data_rows_have_what_the_pages_read() {
    let (_d, ws) = workspace();
    let srv = Server::start(&[&ws], ServeOptions::default());
    let d = srv.get("/api/dashboard");
    for k in ["datasets", "pipelines", "runs", "avgMetric"] {
        assert!(d["stats"]["trends"][k]["value"].is_number(), "{k}");
        assert!(d["stats"][k].is_number(), "{k}");
    }
    assert_eq!(d["stats"]["datasets"], json!(3));
    let recent = d["recent_runs"].as_array().unwrap();
    assert!(!recent.is_empty() && recent.len() <= 6);
    for r in recent {
        // The page calls metric_value.toFixed: never a name without a value.
        assert_eq!(
            r["metric_name"].is_null(),
            r["metric_value"].is_null(),
            "{r}"
        );
    }
    let id = srv.get("/api/workspaces")["active_workspace_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Rows in file-name order, each with its file's dataset.
    let page = srv.get(&format!("/api/workspaces/{id}/predictions/data?limit=500"));
    let order: Vec<&str> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["source_dataset"].as_str().unwrap())
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted);
    assert_eq!(page["total"], json!(order.len()));
    let runs = srv.get("/api/runs?status=running,queued");
    assert_eq!(runs, json!({"runs": [], "total": 0}));
}

#[test]
fn issue_30_linking_stays_inside_the_roots() {
    let (d, ws) = workspace();
    let root = d.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let inside = root.join("lab");
    copy_dir(&fixture("webapp-workspace"), &inside);
    let outside = d.path().join("elsewhere");
    copy_dir(&fixture("webapp-workspace"), &outside);
    std::os::unix::fs::symlink(&outside, root.join("link-out")).unwrap();

    // No root: linking is off.
    let srv = Server::start(&[&ws], ServeOptions::default());
    let body = json!({"path": inside}).to_string();
    let (s, v, _) = srv.call("POST", "/api/workspaces/link", &[], &body);
    assert_eq!(s, 403, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("--root"));

    let srv = Server::start(
        &[&ws],
        ServeOptions {
            roots: vec![root.clone()],
            ..Default::default()
        },
    );
    let before = srv.get("/api/workspaces");
    for bad in [
        outside.display().to_string(),
        format!("{}/../elsewhere", root.display()),
        root.join("link-out").display().to_string(),
        root.join("link-out/runs/..").display().to_string(),
        "relative/path".to_string(),
        format!("{}/no-such-folder-outside", d.path().display()),
    ] {
        let (s, v, _) = srv.call(
            "POST",
            "/api/workspaces/link",
            &[],
            &json!({"path": bad}).to_string(),
        );
        assert_eq!(s, 403, "{bad}: {v}");
        // The same words whether the path exists or not.
        assert!(
            v["detail"]
                .as_str()
                .unwrap()
                .contains("outside the folders"),
            "{v}"
        );
    }
    assert_eq!(srv.get("/api/workspaces"), before, "nothing linked");

    let (s, v, _) = srv.call(
        "POST",
        "/api/workspaces/link",
        &[],
        &json!({"path": inside, "name": "Lab"}).to_string(),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["name"].as_str(), v["is_active"].as_bool()),
        (Some("Lab"), Some(false))
    );
    let (s, _, _) = srv.call(
        "POST",
        "/api/workspaces/link",
        &[],
        &json!({"path": inside}).to_string(),
    );
    assert_eq!(s, 400, "already linked");
    let (s, v, _) = srv.call(
        "POST",
        "/api/workspaces/link",
        &[],
        &json!({"path": root}).to_string(),
    );
    assert_eq!(s, 400, "not a workspace: {v}");
    assert!(v["detail"]
        .as_str()
        .unwrap()
        .starts_with("Invalid nirs4all workspace"));
    let (s, _, _) = srv.call("POST", "/api/workspaces/link", &[], "{}");
    assert_eq!(s, 422);

    let lab = v_id(&srv, "Lab");
    let (s, v, _) = srv.call("POST", &format!("/api/workspaces/{lab}/activate"), &[], "");
    assert_eq!((s, &v["is_active"]), (200, &json!(true)));
    let list = srv.get("/api/workspaces");
    assert_eq!(list["active_workspace_id"], json!(lab));
    assert_eq!(
        srv.get(&format!("/api/workspaces/{lab}/runs"))["total"],
        srv.get(&format!(
            "/api/workspaces/{}/runs",
            before["workspaces"][0]["id"].as_str().unwrap()
        ))["total"]
    );
    let (s, _, _) = srv.call("DELETE", &format!("/api/workspaces/{lab}"), &[], "");
    assert_eq!(s, 200);
    assert_eq!(
        srv.get("/api/workspaces")["active_workspace_id"],
        before["active_workspace_id"]
    );
    assert!(
        inside.join("corn_moisture.meta.parquet").exists(),
        "unlink touches no file"
    );
}

fn v_id(srv: &Server, name: &str) -> String {
    let l = srv.get("/api/workspaces");
    l["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == json!(name))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn issue_30_errors_carry_detail_and_cors_answers_preflights() {
    let (_d, ws) = workspace();
    let srv = Server::start(
        &[&ws],
        ServeOptions {
            cors_origins: vec!["http://localhost:5173".into()],
            ..Default::default()
        },
    );
    let (s, v, _) = srv.call("GET", "/api/workspaces/nope/runs", &[], "");
    assert_eq!(s, 404);
    assert_eq!(
        (v["detail"].is_string(), &v["error"], &v["status"]),
        (true, &v["detail"], &json!(404))
    );
    let pre = [
        ("Origin", "http://localhost:5173"),
        ("Access-Control-Request-Method", "GET"),
        ("Access-Control-Request-Headers", "content-type"),
    ];
    let (s, _, h) = srv.call("OPTIONS", "/api/workspaces", &pre, "");
    let get =
        |h: &[(String, String)], k: &str| h.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(s, 200);
    assert_eq!(
        get(&h, "access-control-allow-origin").as_deref(),
        Some("http://localhost:5173")
    );
    assert!(get(&h, "access-control-allow-headers")
        .unwrap()
        .contains("content-type"));
    let (_, _, h) = srv.call(
        "GET",
        "/api/workspaces",
        &[("Origin", "http://localhost:5173")],
        "",
    );
    assert_eq!(
        get(&h, "access-control-allow-origin").as_deref(),
        Some("http://localhost:5173")
    );
    let (_, _, h) = srv.call(
        "GET",
        "/api/workspaces",
        &[("Origin", "http://evil.example")],
        "",
    );
    assert_eq!(get(&h, "access-control-allow-origin"), None);
}

#[test]
fn issue_30_ui_serves_the_app_with_its_single_page_fallback() {
    let (d, ws) = workspace();
    let ui = d.path().join("dist");
    std::fs::create_dir_all(ui.join("assets")).unwrap();
    std::fs::write(ui.join("index.html"), "<!doctype html><div id=root></div>").unwrap();
    std::fs::write(ui.join("assets/app.js"), "console.log(1)").unwrap();
    let srv = Server::start(
        &[&ws],
        ServeOptions {
            ui: Some(ui),
            ..Default::default()
        },
    );
    let raw = |t: &str| Client::connect(srv.bg.addr()).unwrap().get(t).unwrap();
    let r = raw("/predictions");
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, b"<!doctype html><div id=root></div>".as_slice())
    );
    let r = raw("/assets/app.js");
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, b"console.log(1)".as_slice())
    );
    let r = raw("/api/no-such-route");
    assert_eq!(r.status, 404);
    assert!(r.json()["detail"].is_string());
    assert_eq!(raw("/api/workspaces").status, 200);
    let r = raw("/../../etc/passwd");
    assert!(
        !String::from_utf8_lossy(&r.body).contains("root:"),
        "no way out of the folder"
    );
}
