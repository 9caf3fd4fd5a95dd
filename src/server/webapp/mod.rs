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

use super::answers::{
    AppHealth, Discovered, DiscoveredDatasets, NoJobs, Results, Scan, ScanCounts, Unlinked,
    WorkspaceInfo, Workspaces,
};
use super::api::{ok_json, params, workspace, Answer, Params};
use super::doc::{params as doc, schemas, Errors};
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
    pub(crate) fn scan(&self, all: Option<&runs::RunsList>) -> Scan {
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
        let discovered = Discovered {
            datasets_count,
            exports_count: exports.len(),
            runs_count,
            templates_count: templates.len(),
        };
        let at = crate::summary::utc_now();
        *self.scanned.lock().unwrap_or_else(|e| e.into_inner()) =
            (Some(at.clone()), Some(discovered.clone()));
        Scan {
            summary: ScanCounts {
                datasets_count,
                exports_count: exports.len(),
                predictions_count: predictions.len(),
                runs_count,
                templates_count: templates.len(),
            },
            datasets,
            discovered,
            exports,
            message: "Workspace scanned",
            predictions,
            runs,
            scanned_at: at,
            templates,
            workspace_id: self.id.clone(),
            workspace_name: self.name.clone(),
        }
    }

    /// The web app's workspace object.
    fn info(&self, active: Option<&str>) -> WorkspaceInfo {
        let (last_scanned, discovered) = self
            .scanned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        WorkspaceInfo {
            discovered,
            files: self.ws.list().map(|l| l.files.len()).ok(),
            id: self.id.clone(),
            is_active: active == Some(self.id.as_str()),
            last_scanned,
            linked_at: self.linked_at.clone(),
            name: self.name.clone(),
            path: self.path.clone(),
        }
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
#[utoipa::path(get, path = "/api/workspaces", tag = "web app",
    summary = "The served and linked workspaces, the active one flagged (the nirs4all web app's shape).",
    responses((status = 200, description = "Workspaces", body = Workspaces), Errors))]
pub async fn workspaces(State(app): State<Arc<App>>) -> Answer {
    let list = blocking(move || {
        let active = app.active();
        let workspaces: Vec<WorkspaceInfo> = app
            .list()
            .iter()
            .map(|w| w.info(active.as_deref()))
            .collect();
        Ok(Workspaces {
            active_workspace_id: active,
            total: workspaces.len(),
            workspaces,
        })
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
#[utoipa::path(post, path = "/api/workspaces/link", tag = "web app",
    summary = "Link a folder inside a --root (403 outside every root).",
    request_body = schemas::LinkRequest,
    responses((status = 200, description = "The linked workspace", body = WorkspaceInfo), Errors))]
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
        Ok(served.info(active.as_deref()))
    })
    .await?;
    ok_json(&out)
}

/// `DELETE /api/workspaces/{id}`: forgets the workspace (its files are not
/// touched); the first remaining one becomes active if it was.
#[utoipa::path(delete, path = "/api/workspaces/{id}", tag = "web app",
    summary = "Forget a workspace (no file is touched).", params(doc::WorkspaceId),
    responses((status = 200, description = "Unlinked", body = Unlinked), Errors))]
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
    ok_json(&Unlinked {
        message: "Workspace unlinked",
        success: true,
    })
}

/// `POST /api/workspaces/{id}/activate`.
#[utoipa::path(post, path = "/api/workspaces/{id}/activate", tag = "web app",
    summary = "Make it the web app's active workspace.", params(doc::WorkspaceId),
    responses((status = 200, description = "The workspace", body = WorkspaceInfo), Errors))]
pub async fn activate(State(app): State<Arc<App>>, Path(id): Path<String>) -> Answer {
    let w = workspace(&app, &id)?;
    *app.active.lock().unwrap_or_else(|e| e.into_inner()) = Some(id.clone());
    let v = blocking(move || Ok(w.info(Some(&id)))).await?;
    ok_json(&v)
}

/// `POST /api/workspaces/{id}/scan`: the app's scan answer, plus the
/// `discovered` counts its Settings page reads from it.
#[utoipa::path(post, path = "/api/workspaces/{id}/scan", tag = "web app",
    summary = "Scan run folders, exports and library; keep the discovered counts.",
    params(doc::WorkspaceId), responses((status = 200, description = "Scan", body = Scan), Errors))]
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
#[utoipa::path(get, path = "/api/workspaces/{id}/runs", tag = "web app",
    summary = "Runs: run folders and prediction files' configs, each pipeline once, best scores by the metric's direction.",
    params(doc::WorkspaceId, doc::RunsParams),
    responses((status = 200, description = "Runs", body = schemas::Runs), Errors))]
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
#[utoipa::path(get, path = "/api/workspaces/{id}/runs/{run_id}", tag = "web app",
    summary = "A run folder's run and its results.", params(doc::WorkspaceId, doc::RunId),
    responses((status = 200, description = "Run", body = Object), Errors))]
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
#[utoipa::path(get, path = "/api/workspaces/{id}/results", tag = "web app",
    summary = "Pipeline results from run folders' manifests.",
    params(doc::WorkspaceId, doc::ResultsParams),
    responses((status = 200, description = "Results", body = Results), Errors))]
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
        Ok(Results {
            has_more: offset + limit < total,
            limit,
            offset,
            results: page,
            total,
            workspace_id: w.id.clone(),
        })
    })
    .await?;
    ok_json(&v)
}

/// `GET /api/workspaces/{id}/datasets/discovered`.
#[utoipa::path(get, path = "/api/workspaces/{id}/datasets/discovered", tag = "web app",
    summary = "Datasets the run folders name.", params(doc::WorkspaceId),
    responses((status = 200, description = "Datasets", body = DiscoveredDatasets), Errors))]
pub async fn datasets(State(app): State<Arc<App>>, Path(id): Path<String>) -> Answer {
    let w = workspace(&app, &id)?;
    let v = blocking(move || {
        let runs = discover::manifest_runs(&w.path);
        let ds = discover::datasets(&w.path, &runs);
        Ok(DiscoveredDatasets {
            total: ds.len(),
            datasets: ds,
            workspace_id: w.id.clone(),
        })
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
#[utoipa::path(get, path = "/api/workspaces/{id}/predictions", tag = "web app",
    summary = "The prediction files.", params(doc::WorkspaceId),
    responses((status = 200, description = "Files", body = schemas::PredictionFiles), Errors))]
pub async fn predictions(State(app): State<Arc<App>>, Path(id): Path<String>) -> Answer {
    listed(app, id, "predictions", discover::prediction_files).await
}

/// `GET /api/workspaces/{id}/exports`.
#[utoipa::path(get, path = "/api/workspaces/{id}/exports", tag = "web app",
    summary = "Exports under exports/.", params(doc::WorkspaceId),
    responses((status = 200, description = "Exports", body = schemas::Exports), Errors))]
pub async fn exports(State(app): State<Arc<App>>, Path(id): Path<String>) -> Answer {
    listed(app, id, "exports", discover::exports).await
}

/// `GET /api/workspaces/{id}/templates`.
#[utoipa::path(get, path = "/api/workspaces/{id}/templates", tag = "web app",
    summary = "Templates and trained pipelines under library/.", params(doc::WorkspaceId),
    responses((status = 200, description = "Templates", body = schemas::Templates), Errors))]
pub async fn templates(State(app): State<Arc<App>>, Path(id): Path<String>) -> Answer {
    listed(app, id, "templates", discover::templates).await
}

/// `GET /api/health`: what the app's launch scripts wait for.
#[utoipa::path(get, path = "/api/health", tag = "web app",
    summary = "What the web app's launch scripts wait for.",
    responses((status = 200, description = "Healthy", body = AppHealth)))]
pub async fn health() -> Answer {
    ok_json(&AppHealth {
        message: "n4a serve is running",
        status: "healthy",
    })
}

/// `GET /api/runs`: the app's job runner, which `n4a serve` does not
/// have: no job runs here (every page polls this).
#[utoipa::path(get, path = "/api/runs", tag = "web app",
    summary = "The web app's job runner, which n4a does not have: always no job.",
    responses((status = 200, description = "No jobs", body = NoJobs)))]
pub async fn jobs(q: Params) -> Answer {
    params(q)?;
    ok_json(&NoJobs {
        runs: Vec::new(),
        total: 0,
    })
}
