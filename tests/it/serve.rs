//! `n4a serve` (issue 6), end to end over real sockets on loopback: every
//! endpoint checked against the query engine's answers, hostile input,
//! files changing under the server, shutdown, and a bounded load run from a
//! separate client process.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use crate::client::Client;
use n4a::generate::dataset_rows;
use n4a::query::{Filters, GroupKey, GroupQuery, PageQuery, QueryEngine, Sort, TopQuery};
use n4a::server::{App, Background, ServeOptions};
use n4a::writer::{PredictionWriter, WriterOptions};
use n4a::Workspace;
use serde_json::Value;

use crate::util::fixture;

/// A server in this process on 127.0.0.1:0; stops when dropped.
struct Server {
    app: Arc<App>,
    bg: Background,
}

impl Server {
    fn start(workspaces: &[(&str, &Path)], opts: ServeOptions) -> Server {
        let ws: Vec<(String, PathBuf)> = workspaces
            .iter()
            .map(|(id, p)| (id.to_string(), p.to_path_buf()))
            .collect();
        let app = App::new(&ws, ServeOptions { log: false, ..opts }).unwrap();
        let bg = Background::start(app.clone()).unwrap();
        Server { app, bg }
    }

    fn addr(&self) -> &str {
        self.bg.addr()
    }

    fn get(&self, target: &str) -> (u16, Value) {
        let r = Client::connect(self.addr()).unwrap().get(target).unwrap();
        assert_eq!(
            r.header("content-type"),
            Some("application/json"),
            "{target}"
        );
        (r.status, r.json())
    }
}

/// Three generated datasets with arrays, plus a corrupt file.
fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let opts = n4a::generate::GenOptions {
        datasets: 3,
        rows: 600,
        ..Default::default()
    };
    n4a::generate::generate(dir.path(), &opts).unwrap();
    std::fs::copy(
        fixture("truncated.meta.parquet"),
        dir.path().join("truncated.meta.parquet"),
    )
    .unwrap();
    // Quiet files (modified a minute ago), as a workspace between runs is:
    // the footer cache trusts only files not modified in the last second.
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let f = std::fs::File::options()
            .write(true)
            .open(e.unwrap().path())
            .unwrap();
        f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(60))
            .unwrap();
    }
    dir
}

fn without_time(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("generated_at");
    }
    v
}

#[test]
fn every_endpoint_answers_as_the_query_engine_does() {
    let dir = workspace();
    let srv = Server::start(&[("main", dir.path())], ServeOptions::default());
    let ws = Workspace::open(dir.path()).unwrap();
    let engine = QueryEngine::new(&ws);

    let (s, v) = srv.get("/healthz");
    assert_eq!((s, v["status"].as_str()), (200, Some("ok")));
    assert!(v["rss_bytes"].as_u64().unwrap() > 0);
    // The column cache's held bytes within its budget (issue 33).
    let budget = v["cache_budget"].as_u64().unwrap();
    assert_eq!(budget, ServeOptions::default().cache_mem as u64);
    assert!(v["cache_bytes"].as_u64().unwrap() <= budget, "{v}");

    let (s, v) = srv.get("/api/workspaces");
    assert_eq!(s, 200);
    assert_eq!(v["workspaces"][0]["id"], "main");
    assert_eq!(v["workspaces"][0]["files"], 4);

    let (s, v) = srv.get("/openapi.json");
    assert_eq!(s, 200);
    for p in [
        "/healthz",
        "/api/workspaces",
        "/api/workspaces/{id}/predictions/summary",
        "/api/workspaces/{id}/predictions/data",
        "/api/workspaces/{id}/predictions/top",
        "/api/workspaces/{id}/predictions/groups",
        "/api/workspaces/{id}/predictions/{prediction_id}/scatter",
    ] {
        assert!(v["paths"][p]["get"].is_object(), "{p} documented");
    }

    // Summary: the reader's, the corrupt file listed in errors (not a 500).
    let (s, v) = srv.get("/api/workspaces/main/predictions/summary");
    assert_eq!(s, 200);
    let direct: serde_json::Value = serde_json::from_slice(
        &ws.summary()
            .unwrap()
            .to_json(n4a::workspace::merge::Form::Full),
    )
    .unwrap();
    let (a, b) = (without_time(v.clone()), without_time(direct));
    for k in a
        .as_object()
        .unwrap()
        .keys()
        .chain(b.as_object().unwrap().keys())
    {
        assert_eq!(a[k], b[k], "summary key {k}");
    }
    assert_eq!(a, b);
    assert_eq!(v["total_datasets"], 3);
    assert_eq!(v["errors"][0]["kind"], "parquet");
    // Asked again with nothing changed: no footer is read again.
    let reads = srv.app.list()[0].ws.footer_reads();
    let (_, again) = srv.get("/api/workspaces/main/predictions/summary");
    assert_eq!(again, v);
    assert_eq!(srv.app.list()[0].ws.footer_reads(), reads);

    // Data pages against the engine.
    let cases: Vec<(&str, PageQuery)> = vec![
        (
            "",
            PageQuery {
                limit: 500,
                ..Default::default()
            },
        ),
        (
            "limit=7&offset=30&partition=val&sort=val_score&order=desc",
            PageQuery {
                filters: Filters::default().with("partition", ["val"]).unwrap(),
                sort: Some(Sort {
                    column: "val_score".into(),
                    descending: true,
                }),
                offset: 30,
                limit: 7,
                ..Default::default()
            },
        ),
        (
            "limit=5&dataset=corn_000,grain_001&model_class=SVR&metric=mse&val_score_min=0.1&val_score_max=2&sort=test_score:asc",
            PageQuery {
                filters: Filters::default()
                    .with("dataset", ["corn_000", "grain_001"])
                    .unwrap()
                    .with("model_classname", ["SVR"])
                    .unwrap()
                    .with("metric", ["mse"])
                    .unwrap()
                    .with_where("val_score>=0.1 and val_score<=2")
                    .unwrap(),
                sort: Some(Sort::parse("test_score:asc").unwrap()),
                limit: 5,
                ..Default::default()
            },
        ),
        (
            // The dashboard's 26 columns do not fit one value: repeats add up.
            "limit=3&sort=val_score&columns=id,dataset_name,config_name,model_name&columns=val_score,scores",
            PageQuery {
                columns: Some(
                    ["id", "dataset_name", "config_name", "model_name", "val_score", "scores"]
                        .map(str::to_string)
                        .to_vec(),
                ),
                sort: Some(Sort::parse("val_score").unwrap()),
                limit: 3,
                ..Default::default()
            },
        ),
        (
            "limit=0&where=train_score%3C0.5",
            PageQuery {
                filters: Filters::default().with_where("train_score<0.5").unwrap(),
                limit: 0,
                ..Default::default()
            },
        ),
    ];
    for (qs, q) in cases {
        let (s, v) = srv.get(&format!("/api/workspaces/main/predictions/data?{qs}"));
        assert_eq!(s, 200, "{qs}: {v}");
        let p = engine.page(&q).unwrap();
        assert_eq!(v["total"], p.total, "{qs}");
        assert_eq!(v["limit"], p.limit);
        assert_eq!(v["offset"], p.offset);
        assert_eq!(v["has_more"], p.has_more, "{qs}");
        // The web app's rows name their file: `source_dataset` (its
        // dataset) and `source_file`, besides the engine's record.
        let mut records = v["records"].clone();
        for r in records.as_array_mut().unwrap() {
            let r = r.as_object_mut().unwrap();
            // (Only when the page has the dataset column.)
            let file = r.remove("source_file");
            assert_eq!(r.remove("source_dataset").as_ref(), r.get("dataset"));
            assert_eq!(file.is_some(), r.contains_key("dataset"));
            assert!(file.is_none_or(|f| f.as_str().unwrap().ends_with(".meta.parquet")));
        }
        assert_eq!(records, serde_json::to_value(&p.records).unwrap(), "{qs}");
        assert_eq!(v["provenance"]["errors"][0]["kind"], "parquet");
    }

    // Top-k against the engine.
    let (s, v) = srv.get("/api/workspaces/main/predictions/top?k=4&metric=mse&partition=val");
    assert_eq!(s, 200);
    let t = engine
        .top(&TopQuery {
            filters: Filters::default()
                .with("metric", ["mse"])
                .unwrap()
                .with("partition", ["val"])
                .unwrap(),
            k: 4,
            direction: None,
            score: "val_score".into(),
        })
        .unwrap();
    assert_eq!(v["records"], serde_json::to_value(&t.records).unwrap());
    assert_eq!(v["direction"], "minimize");
    // Metrics mixed: one list per metric, each by its own direction
    // (issue 29), as the engine ranks them.
    let (s, v) = srv.get("/api/workspaces/main/predictions/top?k=3");
    assert_eq!(s, 200, "{v}");
    let lists = engine
        .top_by_metric(&TopQuery {
            // The val partition unless asked otherwise, as `n4a top`.
            filters: Filters::default().for_ranking().0,
            k: 3,
            direction: None,
            score: "val_score".into(),
        })
        .unwrap();
    assert!(lists.len() > 1);
    let by = v["by_metric"].as_array().unwrap();
    assert_eq!(by.len(), lists.len());
    for (got, (metric, t)) in by.iter().zip(&lists) {
        assert_eq!(got["metric"], serde_json::json!(metric));
        assert_eq!(got["records"], serde_json::to_value(&t.records).unwrap());
        assert_eq!(got["direction"], serde_json::to_value(t.direction).unwrap());
    }

    // Group-bys against the engine, every key, with filters and both forms.
    for (qs, key, direction, only) in [
        ("group_by=model&metric=mse", GroupKey::Model, None, false),
        (
            "group_by=config&partition=val&direction=max",
            GroupKey::Config,
            Some(n4a::metric::Direction::Maximize),
            false,
        ),
        (
            "group_by=dataset&count_mean_only=true",
            GroupKey::Dataset,
            None,
            true,
        ),
        (
            "group_by=partition&metric=mse",
            GroupKey::Partition,
            None,
            false,
        ),
        (
            "group_by=fold&metric=mse&where=val_score%3C1",
            GroupKey::Fold,
            None,
            false,
        ),
    ] {
        let (s, v) = srv.get(&format!("/api/workspaces/main/predictions/groups?{qs}"));
        assert_eq!(s, 200, "{qs}: {v}");
        let mut filters = Filters::default();
        for pair in qs.split('&').skip(1) {
            let (k, val) = pair.split_once('=').unwrap();
            filters = match k {
                "metric" | "partition" => filters.with(k, [val]).unwrap(),
                "where" => filters.with_where(&val.replace("%3C", "<")).unwrap(),
                _ => filters,
            };
        }
        let by = engine
            .group_by_metric(&GroupQuery {
                filters: filters.for_ranking().0,
                key,
                score: "val_score".into(),
                count_and_mean_only: only,
                direction,
            })
            .unwrap()
            .groupings;
        // One grouping per metric (and partition) where they mix.
        let answers = match v.get("by_metric") {
            Some(a) => a.as_array().unwrap().clone(),
            None => vec![v.clone()],
        };
        assert_eq!(answers.len(), by.len(), "{qs}");
        for (got, (split, g)) in answers.iter().zip(&by) {
            assert!(!g.groups.is_empty(), "{qs}");
            assert_eq!(got["metric"], serde_json::json!(split.metric), "{qs}");
            assert_eq!(got["partition"], serde_json::json!(split.partition), "{qs}");
            assert_eq!(
                got["groups"],
                serde_json::to_value(&g.groups).unwrap(),
                "{qs}"
            );
            assert_eq!(
                got["served_by"],
                serde_json::to_value(g.served_by).unwrap(),
                "{qs}"
            );
        }
        // One metric: one grouping (the val partition unless asked); else
        // one per metric.
        let one = qs.contains("metric=");
        assert_eq!(answers.len() == 1, one, "{qs}");
    }
    for bad in [
        "groups",
        "groups?group_by=seed",
        "groups?group_by=model&count_mean_only=yes",
        "groups?group_by=model&score=mse",
    ] {
        let (s, v) = srv.get(&format!("/api/workspaces/main/predictions/{bad}"));
        assert_eq!(s, 400, "{bad}: {v}");
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{bad}");
    }
}

#[test]
fn scatter_returns_the_arrays_the_rows_were_written_with() {
    let dir = tempfile::tempdir().unwrap();
    let (name, rows) = dataset_rows(0, 40, 9, true);
    let mut w = PredictionWriter::create(dir.path(), &name, WriterOptions::default()).unwrap();
    for p in &rows {
        w.write(p).unwrap();
    }
    w.finish().unwrap();
    let written =
        n4a::rows::read_predictions(&dir.path().join(format!("{name}.meta.parquet"))).unwrap();
    std::fs::copy(
        fixture("corn_moisture.meta.parquet"),
        dir.path().join("corn_moisture.meta.parquet"),
    )
    .unwrap();
    std::fs::copy(
        fixture("corn_moisture.arrays.parquet"),
        dir.path().join("corn_moisture.arrays.parquet"),
    )
    .unwrap();
    let srv = Server::start(&[("w", dir.path())], ServeOptions::default());
    for (p, stored) in rows.iter().zip(&written).step_by(7) {
        let id = stored.id.clone().unwrap();
        let (s, v) = srv.get(&format!("/api/workspaces/w/predictions/{id}/scatter"));
        assert_eq!(s, 200, "{v}");
        let arrays = p.arrays.as_ref().unwrap();
        let want = |a: &Option<n4a::schema::ArrayData>| -> Value {
            serde_json::to_value(&a.as_ref().unwrap().values).unwrap()
        };
        assert_eq!(v["y_true"], want(&arrays.y_true));
        assert_eq!(v["y_pred"], want(&arrays.y_pred));
        assert_eq!(v["n_samples"], arrays.y_true.as_ref().unwrap().values.len());
        assert_eq!(v["dataset"], name.as_str());
    }
    // nirs4all's own arrays file (large_list layout, its own ids).
    let ws = Workspace::open(dir.path()).unwrap();
    let page = QueryEngine::new(&ws)
        .page(&PageQuery {
            filters: Filters::default()
                .with("dataset", ["corn_moisture"])
                .unwrap(),
            limit: 1,
            ..Default::default()
        })
        .unwrap();
    let rec = &page.records[0];
    let id = rec["id"].as_str().unwrap();
    let (s, v) = srv.get(&format!(
        "/api/workspaces/w/predictions/{id}/scatter?dataset=corn_moisture"
    ));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["n_samples"], v["y_true"].as_array().unwrap().len());
    assert_eq!(
        v["y_true"].as_array().unwrap().len(),
        v["y_pred"].as_array().unwrap().len()
    );
    let (s, _) = srv.get("/api/workspaces/w/predictions/ffffffffffffffff/scatter");
    assert_eq!(s, 404);
}

#[test]
fn hostile_input_gets_a_json_400_or_404_and_opens_nothing() {
    let dir = workspace();
    let srv = Server::start(
        &[("main", dir.path())],
        ServeOptions {
            max_uri_bytes: 1024,
            ..ServeOptions::default()
        },
    );
    let base = "/api/workspaces/main/predictions";
    let cases: Vec<(String, u16)> = vec![
        // Workspace ids.
        ("/api/workspaces/../predictions/summary".into(), 400),
        (
            "/api/workspaces/..%2F..%2Fetc/predictions/summary".into(),
            400,
        ),
        ("/api/workspaces/%2e%2e/predictions/data".into(), 400),
        ("/api/workspaces/nope/predictions/summary".into(), 404),
        (
            format!("/api/workspaces/{}/predictions/summary", "a".repeat(65)),
            400,
        ),
        // Prediction ids.
        (format!("{base}/..%2F..%2Fetc%2Fpasswd/scatter"), 400),
        (format!("{base}/a.b/scatter"), 400),
        (format!("{base}/abc/scatter?dataset=../../etc"), 400),
        (format!("{base}/abc/scatter?other=1"), 400),
        // Dataset names and other parameters.
        (format!("{base}/data?dataset=../../etc/passwd"), 400),
        (format!("{base}/data?dataset=a/b"), 400),
        (format!("{base}/data?dataset=..%5Cx"), 400),
        (format!("{base}/data?dataset=.hidden"), 400),
        (format!("{base}/data?sort=../x"), 400),
        (format!("{base}/data?columns=id,../x"), 400),
        (format!("{base}/data?sort=val_score&order=sideways"), 400),
        (format!("{base}/data?order=asc"), 400),
        (format!("{base}/data?nonsense=1"), 400),
        (format!("{base}/data?partition=%00"), 400),
        (format!("{base}/data?where=val_score%3E%3E1"), 400),
        (format!("{base}/data?val_score_min=abc"), 400),
        (format!("{base}/data?val_score_min=NaN"), 400),
        (format!("{base}/top?score=../x"), 400),
        (format!("{base}/top?direction=up"), 400),
        (format!("{base}/summary?x=1"), 400),
        // Numbers: negative, malformed, huge.
        (format!("{base}/data?limit=-1"), 400),
        (format!("{base}/data?limit=1e3"), 400),
        (format!("{base}/data?limit=10001"), 400),
        (format!("{base}/data?limit=99999999999999999999999"), 400),
        (format!("{base}/data?offset=-5"), 400),
        (format!("{base}/data?offset=100000001"), 400),
        (format!("{base}/top?k=1001"), 400),
        (format!("{base}/top?k=x"), 400),
        // Long values and targets, unknown routes.
        (format!("{base}/data?partition={}", "v".repeat(300)), 400),
        (format!("{base}/data?partition={}", "v".repeat(2000)), 414),
        ("/etc/passwd".into(), 404),
        ("/api/workspaces/main/predictions/".into(), 404),
    ];
    for (target, want) in &cases {
        let (s, v) = srv.get(target);
        assert_eq!(s, *want, "{target}: {v}");
        assert_eq!(v["status"], *want, "{target}");
        assert!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{target}"
        );
    }
    let r = Client::connect(srv.addr())
        .unwrap()
        .request("DELETE", "/api/workspaces")
        .unwrap();
    assert_eq!(r.status, 405);
    // Still healthy after all of it.
    assert_eq!(srv.get("/healthz").0, 200);
}

#[test]
fn changed_added_and_removed_files_are_picked_up_without_a_restart() {
    let dir = workspace();
    let srv = Server::start(&[("main", dir.path())], ServeOptions::default());
    let summary = |srv: &Server| srv.get("/api/workspaces/main/predictions/summary").1;
    let total =
        |srv: &Server| srv.get("/api/workspaces/main/predictions/data?limit=0").1["total"].clone();
    let before = summary(&srv);
    assert_eq!(before["total_datasets"], 3);
    assert_eq!(total(&srv), 1800);

    // Appended to, while the server runs.
    let mut w = PredictionWriter::append(dir.path(), "corn_000", WriterOptions::default()).unwrap();
    let (_, rows) = dataset_rows(0, 25, 77, false);
    rows.into_iter().for_each(|p| w.write_owned(p).unwrap());
    w.finish().unwrap();
    assert_eq!(summary(&srv)["total_predictions"], 1825);
    assert_eq!(total(&srv), 1825);

    // A new dataset, then a removed one.
    let (name, rows) = dataset_rows(5, 10, 3, false);
    let mut w = PredictionWriter::create(dir.path(), &name, WriterOptions::default()).unwrap();
    rows.into_iter().for_each(|p| w.write_owned(p).unwrap());
    w.finish().unwrap();
    assert_eq!(summary(&srv)["total_datasets"], 4);
    std::fs::remove_file(dir.path().join("corn_000.meta.parquet")).unwrap();
    let after = summary(&srv);
    assert_eq!(after["total_datasets"], 3);
    assert_eq!(total(&srv), 1800 - 600 + 10);
}

fn n4a() -> Command {
    Command::new(env!("CARGO_BIN_EXE_n4a"))
}

/// Starts `n4a serve` as a child process on a free port; returns it and
/// its address (read from its "listening on" line).
fn spawn_server(dir: &Path, extra: &[&str]) -> (std::process::Child, String) {
    let mut child = n4a()
        .args(["serve", dir.to_str().unwrap(), "--addr", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = crate::util::served_address(&mut child);
    (child, addr)
}

#[test]
fn sigterm_stops_the_server_gracefully_and_remote_binding_is_refused() {
    let dir = workspace();
    let (mut child, addr) = spawn_server(dir.path(), &[]);
    let mut c = Client::connect(&addr).unwrap();
    assert_eq!(c.get("/healthz").unwrap().status, 200);
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");

    let out = n4a()
        .args(["serve", dir.path().to_str().unwrap(), "--addr", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a loopback address"));
    // Issue 12: beyond loopback, a token or an explicit --no-auth.
    let out = n4a()
        .args([
            "serve",
            dir.path().to_str().unwrap(),
            "--addr",
            "0.0.0.0:0",
            "--allow-remote",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("without a bearer token"), "{err}");
    assert_eq!(err.matches("without a bearer token").count(), 1, "{err}");
}

/// Issue 12: with `--token-file`, every request but `/healthz` needs the
/// token (401 otherwise, `WWW-Authenticate: Bearer`), over a real socket
/// to a separate process; the token never reaches the log.
#[test]
fn issue_12_a_bearer_token_is_required_and_never_logged() {
    let dir = workspace();
    let token = "s3cret-token-0123456789";
    let file = dir.path().join("token.txt");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let mut child = n4a()
        .args([
            "serve",
            dir.path().to_str().unwrap(),
            "--addr",
            "127.0.0.1:0",
        ])
        .args(["--token-file", file.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("server printed its address").unwrap();
        if let Some(a) = line.strip_prefix("n4a serve: listening on http://") {
            break a.to_string();
        }
    };
    let log = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    let targets = [
        "/api/workspaces",
        "/api/workspaces/x/predictions/summary",
        "/api/workspaces/x/predictions/data?limit=3",
        "/openapi.json",
        "/nowhere",
    ];
    for t in targets {
        let r = Client::connect(&addr).unwrap().get(t).unwrap();
        assert_eq!(r.status, 401, "{t}");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{t}");
        for wrong in [
            "Bearer s3cret-token-0123456788",
            "Bearer s3cret-token-012345678",
            "Basic s3cret-token-0123456789",
            token,
        ] {
            let r = Client::connect(&addr)
                .unwrap()
                .request_with("GET", t, &[("Authorization", wrong)])
                .unwrap();
            assert_eq!(r.status, 401, "{t} with {wrong:?}");
        }
    }
    let mut c = Client::connect(&addr).unwrap().with_bearer(Some(token));
    let r = c.get("/api/workspaces").unwrap();
    assert_eq!(r.status, 200);
    let id = r.json()["workspaces"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = c
        .get(&format!("/api/workspaces/{id}/predictions/data?limit=3"))
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(
        Client::connect(&addr)
            .unwrap()
            .get("/healthz")
            .unwrap()
            .status,
        200
    );
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let log = log.join().unwrap().join("\n");
    assert!(log.contains("401"), "{log}");
    assert!(!log.contains("s3cret"), "the token is never logged: {log}");
    // A token file too short is refused at start.
    std::fs::write(&file, "short\n").unwrap();
    let out = n4a()
        .args([
            "serve",
            dir.path().to_str().unwrap(),
            "--addr",
            "127.0.0.1:0",
        ])
        .args(["--token-file", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 16 bytes"));
}

/// Issue 12: a heavy query past `--query-timeout` is stopped with a 503
/// that says so, and one whose client disconnects is stopped: its slot
/// (`--max-heavy 1`) is free again and `/healthz` counts it.
#[test]
fn issue_12_heavy_queries_stop_on_timeout_and_when_the_client_goes() {
    let dir = tempfile::tempdir().unwrap();
    let opts = n4a::generate::GenOptions {
        datasets: 40,
        rows: 3000,
        arrays: false,
        ..Default::default()
    };
    n4a::generate::generate(dir.path(), &opts).unwrap();
    let slow = "/api/workspaces/w/predictions/groups?group_by=config&direction=max&where=val_score%3E-1e300";
    // A time limit of 1 ms: the group-by over 40 files cannot make it.
    let srv = Server::start(
        &[("w", dir.path())],
        ServeOptions {
            query_timeout: std::time::Duration::from_millis(1),
            cache_mem: 0,
            max_heavy: 1,
            ..ServeOptions::default()
        },
    );
    let (s, v) = srv.get(slow);
    assert_eq!(s, 503, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("--query-timeout"),
        "{v}"
    );
    let wait_idle = |srv: &Server| {
        let t0 = std::time::Instant::now();
        loop {
            let (_, h) = srv.get("/healthz");
            if h["heavy_running"] == 0 {
                return h;
            }
            assert!(t0.elapsed().as_secs() < 60, "the stopped query ended");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    };
    let h = wait_idle(&srv);
    assert_eq!(h["heavy_cancelled"], 1);
    drop(srv);
    // A client that sends the slow query and hangs up: the query stops
    // (counted), and the next one gets the single slot.
    let srv = Server::start(
        &[("w", dir.path())],
        ServeOptions {
            cache_mem: 0,
            max_heavy: 1,
            ..ServeOptions::default()
        },
    );
    let mut stopped = false;
    for _ in 0..5 {
        {
            use std::io::Write;
            let mut raw = std::net::TcpStream::connect(srv.addr()).unwrap();
            write!(raw, "GET {slow} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let t0 = std::time::Instant::now();
            while srv.get("/healthz").1["heavy_running"] == 0 && t0.elapsed().as_secs() < 10 {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            raw.shutdown(std::net::Shutdown::Both).unwrap();
        }
        if wait_idle(&srv)["heavy_cancelled"].as_u64() > Some(0) {
            stopped = true;
            break;
        }
    }
    assert!(stopped, "a disconnected client's query is stopped");
    let (s, _) = srv.get("/api/workspaces/w/predictions/top?k=3&metric=mse");
    assert_eq!(s, 200);
}

/// Drives the `n4a-bench` harness, so only with `--features bench` (the
/// README's test command).
#[cfg(feature = "bench")]
#[test]
fn bounded_load_from_another_process_has_no_errors_and_memory_does_not_grow() {
    let dir = workspace();
    let (mut child, addr) = spawn_server(dir.path(), &["--quiet"]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_n4a-bench"))
        .args([
            "serve",
            &addr,
            "--requests",
            "1200",
            "--warmup",
            "1000",
            "--summary-per-data",
            "3",
            "--data-query",
            "limit=10&partition=val&sort=val_score",
            "--concurrency",
            "32",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["load"]["requests"], 1200);
    assert_eq!(
        (v["load"]["errors"].as_u64(), v["warmup"]["errors"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(v["load"]["summary"]["requests"], 900);
    assert!(v["load"]["data"]["p99_ms"].as_f64().unwrap() > 0.0);
    let (before, after) = (
        v["server_rss_bytes"]["before"].as_u64().unwrap(),
        v["server_rss_bytes"]["after"].as_u64().unwrap(),
    );
    // After the warm-up the resident memory stays flat (measured: under
    // 1 MiB of growth per run; the bound leaves room for noise).
    assert!(
        after < before + (8 << 20),
        "server memory grew from {before} to {after} bytes"
    );
}

/// Issue 10: the summary compressed when the client accepts it, the same
/// answer once decoded, and a light form without runs.
#[test]
fn summary_is_compressed_on_request_and_has_a_brief_form() {
    let ws = workspace();
    let srv = Server::start(&[("main", ws.path())], ServeOptions::default());
    let target = "/api/workspaces/main/predictions/summary";
    let mut c = Client::connect(srv.addr()).unwrap();
    let plain = c.get(target).unwrap();
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.header("vary"), Some("accept-encoding"));
    let zstd = c
        .request_with("GET", target, &[("Accept-Encoding", "gzip, zstd")])
        .unwrap();
    assert_eq!(zstd.header("content-encoding"), Some("zstd"));
    let unz = zstd::bulk::decompress(&zstd.body, plain.body.len() * 2).unwrap();
    assert_eq!(unz, plain.body);
    assert!(zstd.body.len() < plain.body.len() / 3);
    let gz = c
        .request_with("GET", target, &[("Accept-Encoding", "gzip")])
        .unwrap();
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    let mut ungz = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz.body[..]), &mut ungz).unwrap();
    assert_eq!(ungz, plain.body);

    let brief = c.get(&format!("{target}?datasets=brief")).unwrap();
    let (b, f) = (brief.json(), plain.json());
    assert!(b.get("runs").is_none());
    assert!(b["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d.get("runs").is_none()));
    assert_eq!(b["models"], f["models"]);
    assert!(brief.body.len() < plain.body.len());
    let bad = c.get(&format!("{target}?datasets=all")).unwrap();
    assert_eq!(bad.status, 400);
    assert!(bad.json()["error"].as_str().unwrap().contains("datasets"));
    let openapi = c.get("/openapi.json").unwrap().json();
    let params = &openapi["paths"]["/api/workspaces/{id}/predictions/summary"]["get"]["parameters"];
    assert!(params
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "datasets"));
}

/// Issue 33: with `--mem-limit`, the column cache holds what the rest of
/// the process leaves of the limit (here nothing: a limit of 0, so the
/// cache falls to its floor, an eighth of its budget, and holds no more), and `/healthz` states the heap in
/// use beside the resident size. Without it the cache may hold its budget.
#[test]
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn issue_33_a_memory_limit_bounds_the_cache_beside_what_the_process_holds() {
    let dir = workspace();
    let page = "/api/workspaces/w/predictions/data?partition=val&sort=val_score:asc&limit=5";
    let budget = 64usize << 20;
    let srv = Server::start(
        &[("w", dir.path())],
        ServeOptions {
            cache_mem: budget,
            mem_limit: Some(0),
            ..ServeOptions::default()
        },
    );
    assert_eq!(srv.get(page).0, 200);
    // The cache is fitted off the answer's path, just after it.
    let t0 = std::time::Instant::now();
    let h = loop {
        let (_, h) = srv.get("/healthz");
        if h["cache_limit"].as_u64() != Some(budget as u64) || t0.elapsed().as_secs() > 10 {
            break h;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    assert!(h["heap_bytes"].as_u64().unwrap() > 0, "{h}");
    assert_eq!(h["cache_limit"].as_u64(), Some(budget as u64 / 8), "{h}");
    assert!(
        h["cache_bytes"].as_u64().unwrap() <= budget as u64 / 8,
        "{h}"
    );
    drop(srv);

    let srv = Server::start(
        &[("w", dir.path())],
        ServeOptions {
            cache_mem: budget,
            ..ServeOptions::default()
        },
    );
    assert_eq!(srv.get(page).0, 200);
    assert_eq!(
        srv.get("/healthz").1["cache_limit"].as_u64(),
        Some(budget as u64)
    );
}
