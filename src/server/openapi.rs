//! The OpenAPI 3.0 description served at `/openapi.json`.

use serde_json::{json, Value};

fn param(name: &str, kind: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": false,
           "schema": {"type": kind}, "description": description})
}

fn filter_params() -> Vec<Value> {
    let mut out: Vec<Value> = crate::query::filter::FIELDS
        .iter()
        .map(|f| {
            param(
                f.param,
                "string",
                &format!("{}; repeat or comma-separate.", f.help),
            )
        })
        .collect();
    out.push(param(
        "where",
        "string",
        "Score ranges, e.g. 'val_score>=0.5 and test_score<1'.",
    ));
    for s in ["val_score", "test_score", "train_score"] {
        out.push(param(
            &format!("{s}_min"),
            "number",
            &format!("Smallest {s} (inclusive)."),
        ));
        out.push(param(
            &format!("{s}_max"),
            "number",
            &format!("Largest {s} (inclusive)."),
        ));
    }
    out
}

fn ws_param() -> Value {
    json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string",
           "pattern": "^[A-Za-z0-9_-]{1,64}$"}, "description": "Workspace id (GET /api/workspaces)."})
}

fn errors() -> Value {
    let e = json!({"description": "Error", "content": {"application/json": {"schema":
        {"$ref": "#/components/schemas/Error"}}}});
    json!({"400": e, "404": e, "414": e, "500": e, "503": e})
}

fn ok(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn with_errors(ok_response: Value) -> Value {
    let mut r = errors();
    r["200"] = ok_response;
    r
}

/// The document.
pub fn document() -> Value {
    let mut data_params = vec![
        ws_param(),
        param(
            "limit",
            "integer",
            "Rows to return (default 500, at most the server's cap, 10,000 by default).",
        ),
        param("offset", "integer", "Rows to skip (default 0)."),
        param(
            "sort",
            "string",
            "Sort column, optionally column:asc|desc (ties by id, then dataset).",
        ),
        param("order", "string", "asc or desc (with sort)."),
        param(
            "columns",
            "string",
            "Columns to return, comma-separated (default all).",
        ),
    ];
    data_params.extend(filter_params());
    let mut top_params = vec![
        ws_param(),
        param("k", "integer", "How many (default 10, at most 1,000)."),
        param(
            "score",
            "string",
            "val_score (default), test_score or train_score.",
        ),
        param(
            "direction",
            "string",
            "max, min or zero; required to rank metrics of opposite directions together.",
        ),
    ];
    top_params.extend(filter_params());
    let mut group_params = vec![
        ws_param(),
        json!({"name": "group_by", "in": "query", "required": true,
               "schema": {"type": "string", "enum": ["model", "config", "dataset", "partition", "fold"]},
               "description": "The key: model_name, config_name, the file's dataset, partition or fold_id."}),
        param(
            "score",
            "string",
            "val_score (default), test_score or train_score.",
        ),
        param(
            "direction",
            "string",
            "max, min or zero, for best; required when the rows mix metrics of opposite directions.",
        ),
        param(
            "count_mean_only",
            "boolean",
            "true: only count and mean (the footers answer by model without a scan).",
        ),
    ];
    group_params.extend(filter_params());
    let mut doc = json!({
        "openapi": "3.0.3",
        "info": {"title": "n4a serve", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Query backend for nirs4all prediction workspaces and the nirs4all web app; never writes a file."},
        "paths": {
            "/healthz": {"get": {"summary": "Liveness and resident memory.",
                "responses": {"200": ok("Alive", json!({"type": "object", "properties": {
                    "status": {"type": "string"}, "workspaces": {"type": "integer"},
                    "rss_bytes": {"type": "integer", "nullable": true}}}))}}},
            "/openapi.json": {"get": {"summary": "This document.",
                "responses": {"200": ok("OpenAPI document", json!({"type": "object"}))}}},
            "/api/workspaces": {"get": {"summary": "The served and linked workspaces, the active one flagged (the nirs4all web app's shape).",
                "responses": with_errors(ok("Workspaces", json!({"type": "object", "properties": {
                    "total": {"type": "integer"},
                    "active_workspace_id": {"type": "string", "nullable": true},
                    "workspaces": {"type": "array", "items": {"type": "object", "properties": {
                        "id": {"type": "string"}, "path": {"type": "string"},
                        "name": {"type": "string"}, "is_active": {"type": "boolean"},
                        "linked_at": {"type": "string"},
                        "last_scanned": {"type": "string", "nullable": true},
                        "discovered": {"type": "object"},
                        "files": {"type": "integer", "nullable": true}}}}}})))}},
            "/api/workspaces/{id}/predictions/summary": {"get": {
                "summary": "Workspace summary from footers (cached).",
                "description": "The nirs4all dashboard's shape: every file's summary (with its runs) \
                    and the merged sections, plus n4a's (ranking, metrics, top_by_metric, facets, \
                    exactness, errors). Compressed with zstd or gzip when Accept-Encoding allows \
                    (Content-Encoding says which; Vary: accept-encoding). datasets=brief leaves out \
                    every run list, per file and merged: a fraction of the size on workspaces with \
                    thousands of configs.",
                "parameters": [ws_param(), {"name": "datasets", "in": "query", "required": false,
                    "schema": {"type": "string", "enum": ["full", "brief"], "default": "full"},
                    "description": "full: the dashboard's shape; brief: without runs."}],
                "responses": with_errors(ok("Summary", json!({"$ref": "#/components/schemas/Summary"})))}},
            "/api/workspaces/{id}/predictions/data": {"get": {
                "summary": "A filtered, sorted page of predictions with the total.",
                "parameters": data_params,
                "responses": with_errors(ok("Page", json!({"$ref": "#/components/schemas/Page"})))}},
            "/api/workspaces/{id}/predictions/top": {"get": {
                "summary": "Top-k predictions by the metric's direction.",
                "parameters": top_params,
                "responses": with_errors(ok("Top", json!({"type": "object", "properties": {
                    "records": {"type": "array", "items": {"type": "object"}},
                    "direction": {"type": "string", "nullable": true},
                    "served_by": {"type": "string"}, "provenance": {"type": "object"}}})))}},
            "/api/workspaces/{id}/predictions/groups": {"get": {
                "summary": "Count, mean, min, max and best of a score per group (nulls last).",
                "parameters": group_params,
                "responses": with_errors(ok("Groups", json!({"type": "object", "properties": {
                    "groups": {"type": "array", "items": {"type": "object", "properties": {
                        "key": {"type": "string", "nullable": true}, "count": {"type": "integer"},
                        "mean": {"type": "number", "nullable": true}, "min": {"type": "number"},
                        "max": {"type": "number"}, "best": {"type": "number"}}}},
                    "direction": {"type": "string", "nullable": true},
                    "served_by": {"type": "string"}, "provenance": {"type": "object"}}})))}},
            "/api/workspaces/{id}/predictions/{prediction_id}/scatter": {"get": {
                "summary": "y_true and y_pred of one prediction, from the arrays file.",
                "parameters": [ws_param(),
                    {"name": "prediction_id", "in": "path", "required": true,
                     "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,128}$"}},
                    param("dataset", "string", "The dataset, when the id is in several.")],
                "responses": with_errors(ok("Scatter", json!({"type": "object", "properties": {
                    "prediction_id": {"type": "string"}, "dataset": {"type": "string"},
                    "n_samples": {"type": "integer"},
                    "y_true": {"type": "array", "items": {"type": "number", "nullable": true}},
                    "y_pred": {"type": "array", "items": {"type": "number", "nullable": true}}}})))}}
        },
        "components": {"schemas": {
            "Error": {"type": "object", "required": ["detail", "error", "status"], "properties": {
                "detail": {"type": "string"}, "error": {"type": "string"}, "status": {"type": "integer"}}},
            "Page": {"type": "object", "required": ["records", "total", "limit", "offset", "has_more"],
                "properties": {"records": {"type": "array", "items": {"type": "object"}},
                    "total": {"type": "integer"}, "limit": {"type": "integer"},
                    "offset": {"type": "integer"}, "has_more": {"type": "boolean"},
                    "served_by": {"type": "string"}, "provenance": {"type": "object"}}},
            "Summary": {"type": "object", "required": ["total_predictions", "total_datasets",
                    "datasets", "models", "top_predictions", "stats", "generated_at"],
                "properties": {"total_predictions": {"type": "integer"},
                    "total_datasets": {"type": "integer"},
                    "datasets": {"type": "array", "items": {"type": "object"}},
                    "models": {"type": "array", "items": {"type": "object"}},
                    "runs": {"type": "array", "items": {"type": "object"}},
                    "top_predictions": {"type": "array", "items": {"type": "object"}},
                    "stats": {"type": "object"}, "generated_at": {"type": "string"},
                    "exactness": {"type": "object"},
                    "errors": {"type": "array", "items": {"type": "object"}}}}
        }}
    });
    if let (Some(paths), Value::Object(more)) = (doc["paths"].as_object_mut(), webapp_paths()) {
        paths.extend(more);
    }
    doc
}

/// The nirs4all web app's workspace and dashboard routes (`webapp`).
fn webapp_paths() -> Value {
    json!({
            "/api/workspaces/link": {"post": {"summary": "Link a folder inside a --root (403 outside every root).",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["path"], "properties": {
                        "path": {"type": "string"}, "name": {"type": "string"}}}}}},
                "responses": with_errors(ok("The linked workspace", json!({"type": "object"})))}},
            "/api/workspaces/{id}": {"delete": {"summary": "Forget a workspace (no file is touched).",
                "parameters": [ws_param()],
                "responses": with_errors(ok("Unlinked", json!({"type": "object"})))}},
            "/api/workspaces/{id}/activate": {"post": {"summary": "Make it the web app's active workspace.",
                "parameters": [ws_param()],
                "responses": with_errors(ok("The workspace", json!({"type": "object"})))}},
            "/api/workspaces/{id}/scan": {"post": {"summary": "Scan run folders, exports and library; keep the discovered counts.",
                "parameters": [ws_param()],
                "responses": with_errors(ok("Scan", json!({"type": "object"})))}},
            "/api/workspaces/{id}/runs": {"get": {"summary": "Runs: run folders and prediction files' configs, each pipeline once, best scores by the metric's direction.",
                "parameters": [ws_param(), param("source", "string", "unified (default), manifests or parquet."),
                    param("refresh", "boolean", "Accepted; answers follow file versions anyway.")],
                "responses": with_errors(ok("Runs", json!({"type": "object", "properties": {
                    "runs": {"type": "array", "items": {"type": "object"}}, "total": {"type": "integer"},
                    "errors": {"type": "array", "items": {"type": "object"}}}})))}},
            "/api/workspaces/{id}/runs/{run_id}": {"get": {"summary": "A run folder's run and its results.",
                "parameters": [ws_param(), {"name": "run_id", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": with_errors(ok("Run", json!({"type": "object"})))}},
            "/api/workspaces/{id}/results": {"get": {"summary": "Pipeline results from run folders' manifests.",
                "parameters": [ws_param(), param("run_id", "string", "A v2 run folder."), param("dataset", "string", "A dataset folder."),
                    param("template_id", "string", "A template."), param("limit", "integer", "Default 100."), param("offset", "integer", "Default 0.")],
                "responses": with_errors(ok("Results", json!({"type": "object"})))}},
            "/api/workspaces/{id}/datasets/discovered": {"get": {"summary": "Datasets the run folders name.",
                "parameters": [ws_param()], "responses": with_errors(ok("Datasets", json!({"type": "object"})))}},
            "/api/workspaces/{id}/predictions": {"get": {"summary": "The prediction files.",
                "parameters": [ws_param()], "responses": with_errors(ok("Files", json!({"type": "object"})))}},
            "/api/workspaces/{id}/exports": {"get": {"summary": "Exports under exports/.",
                "parameters": [ws_param()], "responses": with_errors(ok("Exports", json!({"type": "object"})))}},
            "/api/workspaces/{id}/templates": {"get": {"summary": "Templates and trained pipelines under library/.",
                "parameters": [ws_param()], "responses": with_errors(ok("Templates", json!({"type": "object"})))}},
            "/api/dashboard": {"get": {"summary": "The active workspace's dashboard: counts, average best score of one metric, recent runs.",
                "responses": with_errors(ok("Dashboard", json!({"type": "object"})))}},
            "/api/dashboard/stats": {"get": {"summary": "The dashboard's counts.",
                "responses": with_errors(ok("Stats", json!({"type": "object"})))}},
            "/api/dashboard/recent-runs": {"get": {"summary": "The newest dated runs.",
                "parameters": [param("limit", "integer", "Default 6.")],
                "responses": with_errors(ok("Runs", json!({"type": "object"})))}},
            "/api/health": {"get": {"summary": "What the web app's launch scripts wait for.",
                "responses": {"200": ok("Healthy", json!({"type": "object"}))}}},
            "/api/runs": {"get": {"summary": "The web app's job runner, which n4a does not have: always no job.",
                "responses": {"200": ok("No jobs", json!({"type": "object"}))}}}
    })
}
