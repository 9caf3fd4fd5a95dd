//! `/openapi.json` of `n4a serve` (derived by utoipa from the handlers and
//! the answers' types): every route the router registers is documented and
//! nothing else is, every `$ref` resolves, the filter parameters follow
//! `FIELDS`, live answers of every route have the documented members and
//! types, and the routes whose bodies were `json!` objects still write
//! their keys sorted (the bytes they wrote before).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use n4a::server::{App, Background, ServeOptions};
use serde_json::{json, Value};

use crate::client::Client;
use crate::util::{copy_dir, fixture};

/// The router's sources: `(path, method)` of every `.route(...)` in them.
const ROUTER_SOURCES: [&str; 2] = [
    include_str!("../../src/server/mod.rs"),
    include_str!("../../src/server/webapp/mod.rs"),
];

/// The catch-all of `--ui` (unknown `/api` paths answer a JSON 404).
const NOT_ROUTES: [&str; 1] = ["/api/{*rest}"];

const METHODS: [&str; 7] = ["get", "post", "put", "delete", "patch", "head", "options"];

/// `(path, method)` of every route registered in `src`: each
/// `.route("PATH", get(h).post(h2))` gives one pair per method.
fn routes_in(src: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (at, _) in src.match_indices(".route(") {
        let rest = &src[at + ".route(".len()..];
        let rest = rest.trim_start();
        let Some(rest) = rest.strip_prefix('"') else {
            continue;
        };
        let end = rest.find('"').unwrap();
        let path = &rest[..end];
        // The handler expression: up to the `)` closing `.route(`.
        let mut depth = 1;
        let expr_end = rest[end + 1..]
            .char_indices()
            .find(|&(_, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                depth == 0
            })
            .map(|(i, _)| end + 1 + i)
            .unwrap();
        let expr = &rest[end + 1..expr_end];
        let mut methods = 0;
        for m in METHODS {
            for (i, _) in expr.match_indices(&format!("{m}(")) {
                let before = expr[..i].chars().last().unwrap_or(' ');
                if !before.is_alphanumeric() && before != '_' && before != ':' {
                    out.push((path.to_string(), m.to_string()));
                    methods += 1;
                }
            }
        }
        assert!(methods > 0, "no method found for {path}: {expr}");
    }
    out
}

struct Server {
    _app: Arc<App>,
    bg: Background,
}

impl Server {
    fn start(ws: &Path, root: &Path) -> Server {
        let opts = ServeOptions {
            log: false,
            roots: vec![root.to_path_buf()],
            ..ServeOptions::default()
        };
        let app = App::new(&[("ws".to_string(), ws.to_path_buf())], opts).unwrap();
        let bg = Background::start(app.clone()).unwrap();
        Server { _app: app, bg }
    }

    /// Status and raw body.
    fn call(&self, method: &str, target: &str, body: &str) -> (u16, Vec<u8>) {
        let r = Client::connect(self.bg.addr())
            .unwrap()
            .send(
                method,
                target,
                &[("Content-Type", "application/json")],
                body.as_bytes(),
            )
            .unwrap();
        (r.status, r.body)
    }

    fn document(&self) -> Value {
        let (s, b) = self.call("GET", "/openapi.json", "");
        assert_eq!(s, 200);
        serde_json::from_slice(&b).unwrap()
    }
}

/// The web app's fixture (run folders, prediction files of two metrics)
/// and a second copy to link, under one root.
fn workspace() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    copy_dir(&fixture("webapp-workspace"), &ws);
    copy_dir(&fixture("webapp-workspace"), &dir.path().join("other"));
    (dir, ws)
}

#[test]
fn openapi_documents_every_route_of_the_router_and_no_other() {
    let (dir, ws) = workspace();
    let srv = Server::start(&ws, dir.path());
    let doc = srv.document();
    let mut registered: Vec<(String, String)> = ROUTER_SOURCES
        .iter()
        .flat_map(|s| routes_in(s))
        .filter(|(p, _)| !NOT_ROUTES.contains(&p.as_str()))
        .collect();
    registered.sort();
    let n = registered.len();
    registered.dedup();
    assert_eq!(n, registered.len(), "a route is registered twice");
    // The router's sources parsed: the routes every client relies on.
    for r in [
        ("/healthz", "get"),
        ("/openapi.json", "get"),
        ("/api/workspaces/{id}/predictions/data", "get"),
        ("/api/workspaces/link", "post"),
        ("/api/workspaces/{id}", "delete"),
    ] {
        assert!(
            registered.contains(&(r.0.to_string(), r.1.to_string())),
            "{r:?} not found in the router's sources"
        );
    }
    let mut documented: Vec<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|m| METHODS.contains(&m.as_str()))
                .map(|m| (p.clone(), m.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    documented.sort();
    assert_eq!(registered, documented);
    // And every documented route answers something other than the
    // router's 404 or 405 (an id that exists, a bad body for POSTs).
    for (path, method) in &documented {
        let target = path
            .replace("{id}", "ws")
            .replace("{prediction_id}", "nope")
            .replace("{run_id}", "nope");
        let (s, b) = srv.call(&method.to_uppercase(), &target, "{}");
        let body: Value = serde_json::from_slice(&b).unwrap();
        assert!(
            s != 405 && !(s == 404 && body["error"] == "no such endpoint (see /openapi.json)"),
            "{method} {target}: {s} {body}"
        );
    }
}

/// Every string under a `$ref` key in `v`.
fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                match (k.as_str(), x) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => refs(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

#[test]
fn openapi_refs_resolve_and_every_operation_is_described() {
    let (dir, ws) = workspace();
    let doc = Server::start(&ws, dir.path()).document();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "n4a serve");
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in &all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{r} is not a component schema"));
        assert!(schemas.contains_key(name), "{r} does not resolve");
    }
    let filters: Vec<&str> = n4a::query::filter::FIELDS.iter().map(|f| f.param).collect();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let at = format!("{method} {path}");
            assert!(
                op["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{at}"
            );
            let responses = op["responses"].as_object().unwrap();
            assert!(responses.contains_key("200"), "{at}");
            for (code, r) in responses {
                assert!(r["description"].is_string(), "{at} {code}");
                let schema = &r["content"]["application/json"]["schema"];
                assert!(schema.is_object(), "{at} {code}: no JSON schema");
                if code != "200" {
                    assert_eq!(schema["$ref"], "#/components/schemas/Error", "{at} {code}");
                }
            }
            // Each `{name}` of the path is a required path parameter.
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            for seg in path.split('/').filter(|s| s.starts_with('{')) {
                let name = seg.trim_matches(['{', '}']);
                assert!(
                    params
                        .iter()
                        .any(|p| p["name"] == name && p["in"] == "path" && p["required"] == true),
                    "{at}: path parameter {name}"
                );
            }
            // Unique by name and place (`id` is both the workspace and a
            // filter of the predictions' ids).
            let mut unique: Vec<(&Value, &Value)> =
                params.iter().map(|p| (&p["name"], &p["in"])).collect();
            unique.sort_by_key(|(n, i)| (n.to_string(), i.to_string()));
            unique.dedup();
            assert_eq!(unique.len(), params.len(), "{at}: a parameter twice");
            let names: Vec<&str> = params
                .iter()
                .filter(|p| p["in"] == "query")
                .filter_map(|p| p["name"].as_str())
                .collect();
            // The filters, from `FIELDS`, on the routes that take them.
            let filtered = ["data", "top", "groups"]
                .iter()
                .any(|r| path.ends_with(&format!("/predictions/{r}")));
            if filtered {
                for f in filters
                    .iter()
                    .chain(&["where", "val_score_min", "train_score_max"])
                {
                    assert!(names.contains(f), "{at}: filter {f}");
                }
            } else {
                assert!(!names.contains(&"where"), "{at}: filters");
            }
        }
    }
    let summary = &doc["paths"]["/api/workspaces/{id}/predictions/summary"]["get"];
    assert!(summary["description"]
        .as_str()
        .unwrap()
        .contains("datasets=brief"));
    let datasets = summary["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "datasets")
        .unwrap();
    assert_eq!(datasets["schema"]["enum"], json!(["full", "brief"]));
    assert_eq!(datasets["schema"]["default"], "full");
    let id = &doc["paths"]["/api/workspaces/{id}/predictions/data"]["get"]["parameters"][0];
    assert_eq!(
        (&id["name"], &id["schema"]["pattern"]),
        (&json!("id"), &json!("^[A-Za-z0-9_-]{1,64}$"))
    );
}

/// Schemas whose objects may hold members they do not name: a summary
/// file's entry relays the members of its stored summary (a nirs4all 1.0
/// summary's own among them).
const OPEN: [&str; 1] = ["SummaryDataset"];

/// Checks `v` against `schema`, resolving `$ref`s in `doc`: each value of
/// a documented type, required members present, and no member that the
/// schema does not name (where it names its members, unless [`OPEN`]).
fn check(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/components/schemas/");
        let s = &doc["components"]["schemas"][name];
        if OPEN.contains(&name) {
            let mut open = s.clone();
            open["additionalProperties"] = json!({});
            return check(doc, &open, v, at);
        }
        return check(doc, s, v, at);
    }
    if let Some(alts) = schema.get("oneOf").and_then(Value::as_array) {
        let errs: Vec<String> = alts
            .iter()
            .filter_map(|s| check(doc, s, v, at).err())
            .collect();
        return match errs.len() < alts.len() {
            true => Ok(()),
            false => Err(errs.join("; ")),
        };
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let typed = |t: &str| match t {
        "null" => v.is_null(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "integer" => v.is_u64() || v.is_i64(),
        "number" => v.is_number(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => false,
    };
    if !types.is_empty() && !types.iter().any(|t| typed(t)) {
        return Err(format!("{at}: {v} is not {types:?}"));
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array) {
        if !v.is_null() && !e.contains(v) {
            return Err(format!("{at}: {v} is not one of {e:?}"));
        }
    }
    if let (Some(items), Some(a)) = (schema.get("items"), v.as_array()) {
        for (i, x) in a.iter().enumerate() {
            check(doc, items, x, &format!("{at}[{i}]"))?;
        }
    }
    if let Some(o) = v.as_object() {
        let props = schema.get("properties").and_then(Value::as_object);
        for r in schema["required"].as_array().into_iter().flatten() {
            let r = r.as_str().unwrap();
            if !o.contains_key(r) {
                return Err(format!("{at}: required member {r} missing"));
            }
        }
        for (k, x) in o {
            let at = format!("{at}.{k}");
            match (
                props.and_then(|p| p.get(k)),
                schema.get("additionalProperties"),
            ) {
                (Some(s), _) | (None, Some(s)) if s.is_object() => check(doc, s, x, &at)?,
                (None, _) if props.is_some() => {
                    return Err(format!("{at}: not documented"));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// The routes of the web app's fixture: `(method, documented path,
/// target, body)`, in an order where each finds what it needs (the
/// workspace scanned, then linked, activated, unlinked).
fn calls(pid: &str, run: &str, other: &Path) -> Vec<(&'static str, &'static str, String, String)> {
    let link = json!({"path": other, "name": "Other"}).to_string();
    let ws = "/api/workspaces/ws";
    [
        ("GET", "/healthz", "/healthz".to_string(), ""),
        ("GET", "/api/workspaces", "/api/workspaces".into(), ""),
        (
            "GET",
            "/api/workspaces/{id}/predictions/summary",
            format!("{ws}/predictions/summary"),
            "",
        ),
        (
            "GET",
            "/api/workspaces/{id}/predictions/summary",
            format!("{ws}/predictions/summary?datasets=brief"),
            "",
        ),
        (
            "GET",
            "/api/workspaces/{id}/predictions/data",
            format!("{ws}/predictions/data?limit=3&sort=val_score:desc"),
            "",
        ),
        (
            "GET",
            "/api/workspaces/{id}/predictions/top",
            format!("{ws}/predictions/top?k=2"),
            "",
        ),
        (
            "GET",
            "/api/workspaces/{id}/predictions/top",
            format!("{ws}/predictions/top?k=2&dataset=corn_moisture"),
            "",
        ),
        (
            "GET",
            "/api/workspaces/{id}/predictions/groups",
            format!("{ws}/predictions/groups?group_by=model"),
            "",
        ),
        (
            "GET",
            "/api/workspaces/{id}/predictions/groups",
            format!("{ws}/predictions/groups?group_by=fold&dataset=corn_moisture"),
            "",
        ),
        (
            "GET",
            "/api/workspaces/{id}/predictions/groups",
            format!("{ws}/predictions/groups?group_by=metric&partition=all&count_mean_only=true"),
            "",
        ),
        (
            "GET",
            "/api/workspaces/{id}/predictions/{prediction_id}/scatter",
            format!("{ws}/predictions/{pid}/scatter"),
            "",
        ),
        (
            "POST",
            "/api/workspaces/{id}/scan",
            format!("{ws}/scan"),
            "",
        ),
        ("GET", "/api/workspaces/{id}/runs", format!("{ws}/runs"), ""),
        (
            "GET",
            "/api/workspaces/{id}/runs/{run_id}",
            format!("{ws}/runs/{run}"),
            "",
        ),
        (
            "GET",
            "/api/workspaces/{id}/results",
            format!("{ws}/results?limit=2"),
            "",
        ),
        (
            "GET",
            "/api/workspaces/{id}/datasets/discovered",
            format!("{ws}/datasets/discovered"),
            "",
        ),
        (
            "GET",
            "/api/workspaces/{id}/predictions",
            format!("{ws}/predictions"),
            "",
        ),
        (
            "GET",
            "/api/workspaces/{id}/exports",
            format!("{ws}/exports"),
            "",
        ),
        (
            "GET",
            "/api/workspaces/{id}/templates",
            format!("{ws}/templates"),
            "",
        ),
        ("GET", "/api/dashboard", "/api/dashboard".into(), ""),
        (
            "GET",
            "/api/dashboard/stats",
            "/api/dashboard/stats".into(),
            "",
        ),
        (
            "GET",
            "/api/dashboard/recent-runs",
            "/api/dashboard/recent-runs?limit=2".into(),
            "",
        ),
        ("GET", "/api/health", "/api/health".into(), ""),
        ("GET", "/api/runs", "/api/runs".into(), ""),
        (
            "POST",
            "/api/workspaces/link",
            "/api/workspaces/link".into(),
            link.as_str(),
        ),
        ("GET", "/api/workspaces", "/api/workspaces".into(), ""),
        (
            "POST",
            "/api/workspaces/{id}/activate",
            "/api/workspaces/other/activate".into(),
            "",
        ),
        (
            "DELETE",
            "/api/workspaces/{id}",
            "/api/workspaces/other".into(),
            "",
        ),
        ("GET", "/openapi.json", "/openapi.json".into(), ""),
    ]
    .into_iter()
    .map(|(m, p, t, b)| (m, p, t, b.to_string()))
    .collect()
}

#[test]
fn openapi_live_answers_have_the_documented_shape() {
    let (dir, ws) = workspace();
    let srv = Server::start(&ws, dir.path());
    let doc = srv.document();
    let (_, page) = srv.call(
        "GET",
        "/api/workspaces/ws/predictions/data?limit=1&dataset=corn_moisture",
        "",
    );
    let page: Value = serde_json::from_slice(&page).unwrap();
    let pid = page["records"][0]["id"].as_str().unwrap().to_string();
    let (_, runs) = srv.call("GET", "/api/workspaces/ws/runs?source=manifests", "");
    let runs: Value = serde_json::from_slice(&runs).unwrap();
    let run = runs["runs"][0]["id"].as_str().unwrap().to_string();
    let mut seen = std::collections::BTreeSet::new();
    for (method, path, target, body) in calls(&pid, &run, &dir.path().join("other")) {
        let (s, b) = srv.call(method, &target, &body);
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(s, 200, "{method} {target}: {v}");
        let op = &doc["paths"][path][method.to_lowercase()];
        let schema = &op["responses"]["200"]["content"]["application/json"]["schema"];
        assert!(schema.is_object(), "{method} {path} documented");
        if let Err(e) = check(&doc, schema, &v, &format!("{method} {target}")) {
            panic!("{e}");
        }
        seen.insert((path, method.to_lowercase()));
    }
    // Both shapes of top-k and group-by lists were met: one list at the
    // top level, several under by_metric only.
    let (_, one) = srv.call(
        "GET",
        "/api/workspaces/ws/predictions/top?dataset=corn_moisture",
        "",
    );
    let (_, many) = srv.call("GET", "/api/workspaces/ws/predictions/top", "");
    let (one, many): (Value, Value) = (
        serde_json::from_slice(&one).unwrap(),
        serde_json::from_slice(&many).unwrap(),
    );
    assert!(one["records"].is_array() && many.get("records").is_none());
    assert!(many["by_metric"].as_array().unwrap().len() > 1);
    // Every documented operation was called.
    let documented: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|i| i.as_object().unwrap().len())
        .sum();
    assert_eq!(seen.len(), documented);
    // Errors too.
    for (method, target) in [
        ("GET", "/api/workspaces/nope/predictions"),
        ("GET", "/api/workspaces/ws/predictions/data?bogus=1"),
        ("GET", "/api/workspaces/ws/predictions/nope/scatter"),
        ("GET", "/nowhere"),
    ] {
        let (s, b) = srv.call(method, target, "");
        assert!(s >= 400, "{target}");
        let v: Value = serde_json::from_slice(&b).unwrap();
        let error = json!({"$ref": "#/components/schemas/Error"});
        check(&doc, &error, &v, target).unwrap();
        assert_eq!(v["status"], s, "{target}");
    }
}

#[test]
fn openapi_typed_answers_write_the_bytes_json_objects_wrote() {
    // The routes whose bodies were `json!` objects now serialise structs:
    // their keys must stay sorted at every level (as serde_json's
    // `Value` writes them), so a body equals its round trip through a
    // `Value` byte for byte.
    let (dir, ws) = workspace();
    let srv = Server::start(&ws, dir.path());
    let (_, page) = srv.call(
        "GET",
        "/api/workspaces/ws/predictions/data?limit=1&dataset=corn_moisture",
        "",
    );
    let page: Value = serde_json::from_slice(&page).unwrap();
    let pid = page["records"][0]["id"].as_str().unwrap();
    let link = json!({"path": dir.path().join("other"), "name": "Other"}).to_string();
    for (method, target, body) in [
        ("GET", "/healthz".to_string(), ""),
        ("GET", "/api/workspaces".into(), ""),
        (
            "GET",
            format!("/api/workspaces/ws/predictions/{pid}/scatter"),
            "",
        ),
        ("POST", "/api/workspaces/ws/scan".into(), ""),
        ("GET", "/api/workspaces/ws/results?limit=2".into(), ""),
        ("GET", "/api/workspaces/ws/datasets/discovered".into(), ""),
        ("GET", "/api/health".into(), ""),
        ("GET", "/api/runs".into(), ""),
        ("POST", "/api/workspaces/link".into(), link.as_str()),
        ("POST", "/api/workspaces/other/activate".into(), ""),
        ("DELETE", "/api/workspaces/other".into(), ""),
        ("GET", "/api/workspaces".into(), ""),
        ("GET", "/api/workspaces/nope/predictions".into(), ""),
        ("POST", "/api/workspaces/link".into(), "[]"),
    ] {
        let (_, b) = srv.call(method, &target, body);
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(
            String::from_utf8(serde_json::to_vec(&v).unwrap()).unwrap(),
            String::from_utf8(b).unwrap(),
            "{method} {target}"
        );
    }
}
