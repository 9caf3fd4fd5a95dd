//! `GET /api/dashboard` and its parts: the web app's Dashboard page over
//! the active workspace (counts, one metric's average best score, the
//! newest dated runs).

use std::sync::Arc;

use axum::extract::State;
use serde_json::{json, Value};

use super::runs::Source;
use super::{blocking, discover};
use crate::server::api::{ok_json, params, Answer, Params};
use crate::server::doc::{params as doc, schemas, Errors};
use crate::server::{ApiError, App};

/// The dashboard of the active workspace: its datasets (prediction files
/// and run folders' datasets), saved pipelines (`pipelines/*.json|yaml`),
/// runs (each pipeline once, [`runs`]), and the average best val score
/// of its runs for one metric only (`r2` if any run ranks by it, else
/// `accuracy`, as the app chose; 0 when neither), with the six newest
/// dated runs.
fn dashboard_of(app: &App, recent: usize) -> Result<(Value, Vec<Value>), ApiError> {
    let trends = json!({
        "datasets": {"value": 0, "direction": "neutral"},
        "pipelines": {"value": 0, "direction": "neutral"},
        "runs": {"value": 0, "direction": "neutral"},
        "avgMetric": {"value": 0, "direction": "neutral"},
    });
    let Some(w) = app.active().and_then(|id| app.workspace(&id)) else {
        return Ok((
            json!({"datasets": 0, "pipelines": 0, "runs": 0, "avgMetric": 0.0, "trends": trends}),
            Vec::new(),
        ));
    };
    let list = w.runs(Source::Unified, app)?;
    let mut names: Vec<String> = discover::prediction_files(&w.path)
        .iter()
        .filter_map(|p| p.get("dataset").and_then(Value::as_str).map(str::to_string))
        .collect();
    for r in &list.manifests {
        if let Some(d) = r.get("dataset").and_then(Value::as_str) {
            names.push(d.to_string());
        }
    }
    names.sort();
    names.dedup();
    let pipelines = std::fs::read_dir(w.path.join("pipelines"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    [".json", ".yaml", ".yml"].iter().any(|x| n.ends_with(x))
                })
                .count()
        })
        .unwrap_or(0);
    let metric_of = |r: &Value| r.get("metric").and_then(Value::as_str).map(str::to_string);
    // Each run's metric and best val score (the configs' by their
    // metric's direction, as the runs list gives them).
    let scored: Vec<(Option<String>, Option<f64>)> = list
        .manifests
        .iter()
        .map(|r| {
            (
                metric_of(r),
                r.get("best_val_score").and_then(Value::as_f64),
            )
        })
        .chain(list.configs().map(|(_, c)| {
            let metric = (c.metrics.len() == 1).then(|| c.metrics[0].clone());
            let dir = metric
                .as_deref()
                .and_then(|m| app.opts.directions.get(m).ok());
            let best = c.val.and_then(|(lo, hi)| match dir {
                Some(crate::metric::Direction::Maximize) => Some(hi),
                Some(crate::metric::Direction::Minimize) => Some(lo),
                _ => None,
            });
            (metric, best)
        }))
        .collect();
    let chosen = ["r2", "accuracy"]
        .into_iter()
        .find(|m| scored.iter().any(|(r, _)| r.as_deref() == Some(m)));
    let avg = chosen.map_or(0.0, |m| {
        let v: Vec<f64> = scored
            .iter()
            .filter(|(r, _)| r.as_deref() == Some(m))
            .filter_map(|(_, b)| *b)
            .collect();
        if v.is_empty() {
            0.0
        } else {
            (v.iter().sum::<f64>() / v.len() as f64 * 100.0).round() / 100.0
        }
    });
    // Only run folders have dates (they are sorted newest first).
    let mut dated: Vec<&Value> = list
        .manifests
        .iter()
        .filter(|r| {
            r.get("created_at")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
        })
        .collect();
    dated.truncate(recent);
    let recent = dated
        .into_iter()
        .map(|r| {
            let value = r.get("best_val_score").and_then(Value::as_f64);
            let metric = metric_of(r).filter(|_| value.is_some());
            json!({
                "id": r.get("id"), "name": r.get("name"),
                "dataset_name": r.get("dataset").cloned().unwrap_or(json!("Unknown")),
                "pipeline_name": r.get("name"),
                "status": r.get("status").cloned().unwrap_or(json!("completed")),
                "metric_name": metric, "metric_value": value.filter(|_| metric.is_some()),
                "created_at": r.get("created_at"),
                "completed_at": r.get("completed_at").or(r.get("created_at")),
            })
        })
        .collect();
    Ok((
        json!({"datasets": names.len(), "pipelines": pipelines, "runs": list.len(),
               "avgMetric": avg, "avgMetricName": chosen, "trends": trends}),
        recent,
    ))
}

/// `GET /api/dashboard`.
#[utoipa::path(get, path = "/api/dashboard", tag = "web app",
    summary = "The active workspace's dashboard: counts, average best score of one metric, recent runs.",
    responses((status = 200, description = "Dashboard", body = schemas::Dashboard), Errors))]
pub async fn dashboard(State(app): State<Arc<App>>) -> Answer {
    let (stats, recent) = blocking(move || dashboard_of(&app, 6)).await?;
    ok_json(&json!({"stats": stats, "recent_runs": recent}))
}

/// `GET /api/dashboard/stats`.
#[utoipa::path(get, path = "/api/dashboard/stats", tag = "web app",
    summary = "The dashboard's counts.",
    responses((status = 200, description = "Stats", body = schemas::DashboardStatsOnly), Errors))]
pub async fn stats(State(app): State<Arc<App>>) -> Answer {
    let (stats, _) = blocking(move || dashboard_of(&app, 0)).await?;
    ok_json(&json!({ "stats": stats }))
}

/// `GET /api/dashboard/recent-runs[?limit=N]`.
#[utoipa::path(get, path = "/api/dashboard/recent-runs", tag = "web app",
    summary = "The newest dated runs.", params(doc::RecentRunsParams),
    responses((status = 200, description = "Runs", body = schemas::RecentRuns), Errors))]
pub async fn recent_runs(State(app): State<Arc<App>>, q: Params) -> Answer {
    let mut limit = 6usize;
    for (k, v) in params(q)? {
        match k.as_str() {
            "limit" => {
                limit = v.parse().map_err(|_| {
                    ApiError::bad(format!("limit must be a whole number, not {v:?}"))
                })?
            }
            _ => return Err(ApiError::bad(format!("unknown parameter {k:?}"))),
        }
    }
    let (_, recent) = blocking(move || dashboard_of(&app, limit)).await?;
    ok_json(&json!({ "runs": recent }))
}
