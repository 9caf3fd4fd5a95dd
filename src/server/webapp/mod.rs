//! The nirs4all web app's workspace and dashboard routes
//! (GBeurier/nirs4all-webapp, its last `.meta.parquet`-era commit
//! `8ee91f4`): what its Predictions, Results, Runs, Settings > Workspaces
//! and Dashboard pages call, with the shapes and fields they read, so its
//! frontend runs on `n4a serve` unchanged (`--ui` serves it same-origin).
//!
//! Linked workspaces live in the server's memory (the app kept them in a
//! settings file of the user's home; a server restart starts from the
//! folders on the command line). Linking is allowed only inside the
//! `--root` folders (`links`); nothing is ever written. The app's job
//! runner and settings routes are not served, except `GET /api/runs`
//! (polled by every page: no jobs, an empty list) and `GET /api/health`.
//! Where the app's backend was wrong by its own rules (best scores taken
//! as the maximum whatever the metric, pipelines listed twice, counts of
//! runs that leave out every run of a prediction file), this answers what
//! it meant: see `runs` and the README's "The nirs4all web app".

pub(crate) mod dashboard;
pub(crate) mod discover;
pub(crate) mod links;
pub(crate) mod runs;

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::Router;
use serde_json::{json, Value};

use super::api::{ok_json, params, workspace, Answer, Params};
use super::{id_for, ApiError, App, Served};
use runs::Source;

/// The web app's routes (merged into the server's router).
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/health", get(health))
        .route("/api/runs", get(jobs))
        .route("/api/workspaces/link", post(link))
        .route("/api/workspaces/{id}", delete(unlink))
        .route("/api/workspaces/{id}/activate", post(activate))
        .route("/api/workspaces/{id}/scan", post(scan))
        .route("/api/workspaces/{id}/runs", get(runs_list))
        .route("/api/workspaces/{id}/runs/{run_id}", get(run_detail))
        .route("/api/workspaces/{id}/results", get(results))
        .route("/api/workspaces/{id}/datasets/discovered", get(datasets))
        .route("/api/workspaces/{id}/predictions", get(predictions))
        .route("/api/workspaces/{id}/exports", get(exports))
        .route("/api/workspaces/{id}/templates", get(templates))
        .route("/api/dashboard", get(dashboard::dashboard))
        .route("/api/dashboard/stats", get(dashboard::stats))
        .route("/api/dashboard/recent-runs", get(dashboard::recent_runs))
}

pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message: format!("the request failed: {e}"),
    })?
}

impl Served {
    /// Scans the folder (run folders, datasets they name, exports,
    /// templates) and keeps the counts as the web app's `discovered`.
    /// With the workspace's runs list (`all`), the runs and datasets
    /// counted are all of them, run folders and prediction files' configs
    /// alike, as the Settings page's discovery panel lists them (the app
    /// counted run folders only, so a workspace of prediction files showed
    /// 0 runs beside a list of them); without it, the run folders'.
    /// Cost: [`discover`]'s, a few small files per run folder.
    pub(crate) fn scan(&self, all: Option<&runs::RunsList>) -> Value {
        let runs = discover::manifest_runs(&self.path);
        let datasets = discover::datasets(&self.path, &runs);
        let exports = discover::exports(&self.path);
        let templates = discover::templates(&self.path);
        let predictions = discover::prediction_files(&self.path);
        let (runs_count, datasets_count) = match all {
            Some(list) => {
                let mut names: Vec<&str> = predictions
                    .iter()
                    .chain(&runs)
                    .filter_map(|v| v.get("dataset").and_then(Value::as_str))
                    .collect();
                names.sort_unstable();
                names.dedup();
                (list.len(), names.len())
            }
            None => (runs.len(), datasets.len()),
        };
        let discovered = json!({"runs_count": runs_count, "datasets_count": datasets_count,
                                "exports_count": exports.len(), "templates_count": templates.len()});
        let at = crate::summary::utc_now();
        *self.scanned.lock().unwrap_or_else(|e| e.into_inner()) =
            (Some(at.clone()), discovered.clone());
        json!({
            "workspace_id": self.id,
            "workspace_name": self.name,
            "scanned_at": at,
            "summary": {
                "runs_count": runs_count,
                "predictions_count": predictions.len(),
                "exports_count": exports.len(),
                "templates_count": templates.len(),
                "datasets_count": datasets_count,
            },
            "discovered": discovered,
            "runs": runs,
            "predictions": predictions,
            "exports": exports,
            "templates": templates,
            "datasets": datasets,
            "message": "Workspace scanned",
        })
    }

    /// The web app's workspace object.
    fn to_json(&self, active: Option<&str>) -> Value {
        let (last, discovered) = self
            .scanned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let files = self.ws.list().map(|l| l.files.len()).ok();
        json!({
            "id": self.id,
            "path": self.path,
            "name": self.name,
            "is_active": active == Some(self.id.as_str()),
            "linked_at": self.linked_at,
            "last_scanned": last,
            "discovered": discovered,
            "files": files,
        })
    }

    /// The runs list ([`runs::RunsList`]).
    pub(super) fn runs(&self, source: Source, app: &App) -> Result<runs::RunsList, ApiError> {
        let manifests = if source == Source::Parquet {
            Vec::new()
        } else {
            discover::manifest_runs(&self.path)
        };
        let files = if source == Source::Manifests {
            Vec::new()
        } else {
            self.configs.of(&self.ws)?
        };
        Ok(runs::RunsList::new(
            manifests,
            &files,
            source,
            &app.opts.directions,
        ))
    }
}

/// `GET /api/workspaces`: every workspace, the active one flagged and
/// named, as the web app lists them (`name`, `is_active`, `discovered`,
/// `active_workspace_id`, `total`).
pub async fn workspaces(State(app): State<Arc<App>>) -> Answer {
    let list = blocking(move || {
        let active = app.active();
        let ws: Vec<Value> = app
            .list()
            .iter()
            .map(|w| w.to_json(active.as_deref()))
            .collect();
        Ok(json!({"total": ws.len(), "active_workspace_id": active, "workspaces": ws}))
    })
    .await?;
    ok_json(&list)
}

/// The JSON body of a POST, or a 422 saying what is wrong (FastAPI's
/// status for a bad body).
fn body(b: &Bytes) -> Result<serde_json::Map<String, Value>, ApiError> {
    let unprocessable = |m: &str| ApiError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        message: m.to_string(),
    };
    match serde_json::from_slice::<Value>(b) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(unprocessable(
            "the body must be a JSON object with a \"path\" string",
        )),
    }
}

/// `POST /api/workspaces/link` `{"path", "name"?}`: links a folder inside
/// a `--root` (403 outside every root or without one; 400 when it is no
/// workspace or already linked).
pub async fn link(State(app): State<Arc<App>>, b: Bytes) -> Answer {
    let m = body(&b)?;
    let Some(path) = m.get("path").and_then(Value::as_str).map(str::to_string) else {
        return Err(ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message: "the body must be a JSON object with a \"path\" string".into(),
        });
    };
    let name = m
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.trim().is_empty())
        .map(str::to_string);
    let out = blocking(move || {
        let real = links::check(&path, &app.opts.roots).map_err(|r| match r {
            links::Refused::Forbidden(m) => ApiError {
                status: StatusCode::FORBIDDEN,
                message: m,
            },
            links::Refused::Invalid(m) => ApiError::bad(format!("Invalid nirs4all workspace: {m}")),
        })?;
        if let Some(why) = discover::invalid_reason(&real) {
            return Err(ApiError::bad(format!("Invalid nirs4all workspace: {why}")));
        }
        let mut list = app.workspaces.write().unwrap_or_else(|e| e.into_inner());
        if list
            .iter()
            .any(|w| w.path.canonicalize().ok().as_ref() == Some(&real))
        {
            return Err(ApiError::bad("Workspace already linked"));
        }
        let taken: Vec<String> = list.iter().map(|w| w.id.clone()).collect();
        let id = id_for(&real, &taken);
        let served = Arc::new(Served::open(id, real, name, &app.opts.directions)?);
        list.push(served.clone());
        drop(list);
        warm(&app, served.clone());
        let mut active = app.active.lock().unwrap_or_else(|e| e.into_inner());
        if active.is_none() {
            *active = Some(served.id.clone());
        }
        Ok(served.to_json(active.as_deref()))
    })
    .await?;
    ok_json(&out)
}

/// `DELETE /api/workspaces/{id}`: forgets the workspace (its files are not
/// touched); the first remaining one becomes active if it was.
pub async fn unlink(State(app): State<Arc<App>>, Path(id): Path<String>) -> Answer {
    workspace(&app, &id)?;
    let mut list = app.workspaces.write().unwrap_or_else(|e| e.into_inner());
    list.retain(|w| w.id != id);
    let first = list.first().map(|w| w.id.clone());
    drop(list);
    let mut active = app.active.lock().unwrap_or_else(|e| e.into_inner());
    if active.as_deref() == Some(id.as_str()) {
        *active = first;
    }
    ok_json(&json!({"success": true, "message": "Workspace unlinked"}))
}

/// `POST /api/workspaces/{id}/activate`.
pub async fn activate(State(app): State<Arc<App>>, Path(id): Path<String>) -> Answer {
    let w = workspace(&app, &id)?;
    *app.active.lock().unwrap_or_else(|e| e.into_inner()) = Some(id.clone());
    let v = blocking(move || Ok(w.to_json(Some(&id)))).await?;
    ok_json(&v)
}

/// `POST /api/workspaces/{id}/scan`: the app's scan answer, plus the
/// `discovered` counts its Settings page reads from it.
pub async fn scan(State(app): State<Arc<App>>, Path(id): Path<String>) -> Answer {
    let w = workspace(&app, &id)?;
    let v = blocking(move || {
        let list = w.runs(Source::Unified, &app)?;
        Ok(w.scan(Some(&list)))
    })
    .await?;
    ok_json(&v)
}

/// Scans `w` with its whole runs list on a thread of its own: reads each
/// prediction file's configs once (on `big`, 10M rows in about 13 s), so
/// the Results and Runs pages find them cached and `discovered` counts
/// every run. Started for each workspace by `n4a serve` and after a link.
pub fn warm(app: &Arc<App>, w: Arc<Served>) {
    let app = app.clone();
    std::thread::spawn(move || {
        if let Ok(list) = w.runs(Source::Unified, &app) {
            w.scan(Some(&list));
        }
    });
}

fn source_param(pairs: &[(String, String)]) -> Result<Source, ApiError> {
    let mut source = Source::Unified;
    for (k, v) in pairs {
        match (k.as_str(), v.as_str()) {
            ("source", "unified") => source = Source::Unified,
            ("source", "manifests") => source = Source::Manifests,
            ("source", "parquet") => source = Source::Parquet,
            ("source", other) => {
                return Err(ApiError::bad(format!(
                    "source must be unified, manifests or parquet, not {other:?}"
                )))
            }
            // Caches are per file version: nothing to refresh.
            ("refresh", "true" | "false") => {}
            _ => return Err(ApiError::bad(format!("unknown parameter {k:?}"))),
        }
    }
    Ok(source)
}

/// `GET /api/workspaces/{id}/runs[?source=unified|manifests|parquet]`:
/// see [`runs`]; files whose rows cannot be read are in `errors`.
pub async fn runs_list(State(app): State<Arc<App>>, Path(id): Path<String>, q: Params) -> Answer {
    let source = source_param(&params(q)?)?;
    let w = workspace(&app, &id)?;
    let body = blocking(move || {
        let list = w.runs(source, &app)?;
        let mut out = Vec::new();
        out.extend_from_slice(b"{\"workspace_id\":");
        out.extend(serde_json::to_vec(&w.id).unwrap_or_default());
        out.extend_from_slice(format!(",\"total\":{},\"errors\":", list.len()).as_bytes());
        out.extend(serde_json::to_vec(&list.errors).unwrap_or_default());
        out.extend_from_slice(b",\"runs\":");
        list.write_json(&mut out, &app.opts.directions);
        out.push(b'}');
        Ok(out)
    })
    .await?;
    Ok(super::json_response(StatusCode::OK, body.into()))
}

/// `GET /api/workspaces/{id}/runs/{run_id}`: a run folder's run with its
/// results (a v1 pipeline's results are not listed by run, as in the app).
pub async fn run_detail(
    State(app): State<Arc<App>>,
    Path((id, run_id)): Path<(String, String)>,
) -> Answer {
    let w = workspace(&app, &id)?;
    let v = blocking(move || {
        let runs = discover::manifest_runs(&w.path);
        let Some(mut run) = runs
            .into_iter()
            .find(|r| r.get("id").and_then(Value::as_str) == Some(run_id.as_str()))
        else {
            return Err(ApiError::not_found(format!("Run '{run_id}' not found")));
        };
        let results = if run.get("format") == Some(&json!("v2")) {
            let dir = run
                .get("run_dir")
                .and_then(Value::as_str)
                .map(PathBuf::from);
            let name = dir
                .as_ref()
                .and_then(|d| d.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            discover::results(&w.path, Some(&name))
        } else {
            Vec::new()
        };
        run["results_count"] = json!(results.len());
        run["results"] = json!(results);
        Ok(run)
    })
    .await?;
    ok_json(&v)
}

/// `GET /api/workspaces/{id}/results[?run_id&dataset&template_id&limit&offset]`.
pub async fn results(State(app): State<Arc<App>>, Path(id): Path<String>, q: Params) -> Answer {
    let pairs = params(q)?;
    let w = workspace(&app, &id)?;
    let (mut run_id, mut dataset, mut template) = (None, None, None);
    let (mut limit, mut offset) = (100usize, 0usize);
    for (k, v) in pairs {
        let num = |v: &str| {
            v.parse::<usize>()
                .map_err(|_| ApiError::bad(format!("{k} must be a whole number, not {v:?}")))
        };
        match k.as_str() {
            "run_id" => run_id = Some(v),
            "dataset" => dataset = Some(v),
            "template_id" => template = Some(v),
            "limit" => limit = num(&v)?.min(app.opts.max_limit),
            "offset" => offset = num(&v)?,
            _ => return Err(ApiError::bad(format!("unknown parameter {k:?}"))),
        }
    }
    let v = blocking(move || {
        let mut all = discover::results(&w.path, run_id.as_deref());
        all.retain(|r| {
            dataset
                .as_deref()
                .is_none_or(|d| r.get("dataset").and_then(Value::as_str) == Some(d))
                && template
                    .as_deref()
                    .is_none_or(|t| r.get("template_id").and_then(Value::as_str) == Some(t))
        });
        // Manifests carry no metric direction for `best_score`; the app's
        // order (highest first, missing last) is kept, and scores of
        // different metrics are never compared: results are grouped by
        // metric first.
        all.sort_by(|a, b| {
            let m = |v: &Value| {
                v.get("metric")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            let sc = |v: &Value| v.get("best_score").and_then(Value::as_f64);
            m(a).cmp(&m(b)).then_with(|| match (sc(a), sc(b)) {
                (Some(x), Some(y)) => y.total_cmp(&x),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            })
        });
        let total = all.len();
        let page: Vec<Value> = all.into_iter().skip(offset).take(limit).collect();
        Ok(
            json!({"workspace_id": w.id, "results": page, "total": total, "limit": limit,
                  "offset": offset, "has_more": offset + limit < total}),
        )
    })
    .await?;
    ok_json(&v)
}

/// `GET /api/workspaces/{id}/datasets/discovered`.
pub async fn datasets(State(app): State<Arc<App>>, Path(id): Path<String>) -> Answer {
    let w = workspace(&app, &id)?;
    let v = blocking(move || {
        let runs = discover::manifest_runs(&w.path);
        let ds = discover::datasets(&w.path, &runs);
        Ok(json!({"workspace_id": w.id, "datasets": ds, "total": ds.len()}))
    })
    .await?;
    ok_json(&v)
}

/// One of the folder's lists as the app's routes answer it:
/// `{workspace_id, KEY: [...], count, total}`.
async fn listed(
    app: Arc<App>,
    id: String,
    key: &'static str,
    list: fn(&std::path::Path) -> Vec<Value>,
) -> Answer {
    let w = workspace(&app, &id)?;
    let v = blocking(move || {
        let items = list(&w.path);
        let n = items.len();
        Ok(json!({"workspace_id": w.id, key: items, "count": n, "total": n}))
    })
    .await?;
    ok_json(&v)
}

/// `GET /api/workspaces/{id}/predictions`: the prediction files.
pub async fn predictions(State(app): State<Arc<App>>, Path(id): Path<String>) -> Answer {
    listed(app, id, "predictions", discover::prediction_files).await
}

/// `GET /api/workspaces/{id}/exports`.
pub async fn exports(State(app): State<Arc<App>>, Path(id): Path<String>) -> Answer {
    listed(app, id, "exports", discover::exports).await
}

/// `GET /api/workspaces/{id}/templates`.
pub async fn templates(State(app): State<Arc<App>>, Path(id): Path<String>) -> Answer {
    listed(app, id, "templates", discover::templates).await
}

/// `GET /api/health`: what the app's launch scripts wait for.
pub async fn health() -> Answer {
    ok_json(&json!({"status": "healthy", "message": "n4a serve is running"}))
}

/// `GET /api/runs`: the app's job runner, which `n4a serve` does not
/// have: no job runs here (every page polls this).
pub async fn jobs(q: Params) -> Answer {
    params(q)?;
    ok_json(&json!({"runs": [], "total": 0}))
}
