//! The endpoint handlers and their parameters.
//!
//! Query parameters are read as a list of pairs and checked here, so every
//! bad input gets a JSON 400 naming the parameter: unknown parameters,
//! malformed or negative numbers, limits over the caps, dataset names with
//! path separators, unknown sort columns, values longer than 256 bytes.
//!
//! `data` parameters: `limit` (default 500), `offset` (0), `dataset`,
//! `model_class` (the `model_classname` column, as the dashboard sends it),
//! `model`, `config`, `partition`, `fold`, `task_type`, `metric`, `branch`
//! (each repeatable or comma-separated), `sort` (a column, or
//! `column:asc|desc`), `order` (`asc`/`desc`), `columns` (repeatable, comma-separated), score ranges
//! `{val,test,train}_score_{min,max}` (inclusive) and `where` (as the CLI's
//! `--where`). `top` takes the same filters plus `k` (10), `score`
//! (`val_score`) and `direction` (`max`/`min`/`zero`). `groups` takes the
//! same filters plus `group_by` (`model`, `config`, `dataset`, `partition`,
//! `fold`; required), `score`, `direction` and `count_mean_only`
//! (`true`/`false`: only count and mean, which footers can answer by model).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::answers::Health;
use super::doc::{params as doc, schemas, Errors};
use super::encoding::Encoding;
use super::{json_response, valid_id, ApiError, App, Served};
use crate::metric::Direction;
use crate::query::filter::{Bound, Range, FIELDS};
use crate::query::{Filters, GroupKey, GroupQuery, PageQuery, QueryEngine, Sort, TopQuery};
use crate::schema::validate_dataset_name;
use crate::workspace::merge::Form;

pub(super) type Params = Result<Query<Vec<(String, String)>>, QueryRejection>;
pub(super) type Answer = Result<Response, ApiError>;

/// Longest accepted parameter value.
const MAX_VALUE_BYTES: usize = 256;

/// A query engine over `ws`, with the server's column cache when it has one.
fn engine(
    ws: &crate::workspace::Workspace,
    columns: Option<Arc<crate::query::cache::ColumnCache>>,
    cancel: Arc<AtomicBool>,
) -> QueryEngine<'_> {
    let e = QueryEngine::new(ws).with_cancel(cancel);
    match columns {
        Some(c) => e.with_column_cache(c),
        None => e,
    }
}

pub(super) fn ok_json<T: serde::Serialize>(v: &T) -> Answer {
    let body = serde_json::to_vec(v).map_err(|e| ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message: e.to_string(),
    })?;
    Ok(json_response(StatusCode::OK, body.into()))
}

pub(super) fn params(p: Params) -> Result<Vec<(String, String)>, ApiError> {
    let Query(pairs) = p.map_err(|e| ApiError::bad(format!("malformed query string: {e}")))?;
    for (k, v) in &pairs {
        if v.len() > MAX_VALUE_BYTES || k.len() > 64 {
            return Err(ApiError::bad(format!(
                "parameter {:?} is longer than {MAX_VALUE_BYTES} bytes",
                k.chars().take(64).collect::<String>()
            )));
        }
        if v.chars().any(char::is_control) {
            return Err(ApiError::bad(format!(
                "parameter {k:?} contains a control character"
            )));
        }
    }
    Ok(pairs)
}

pub(super) fn workspace(app: &App, id: &str) -> Result<Arc<Served>, ApiError> {
    if !valid_id(id) {
        return Err(ApiError::bad(
            "invalid workspace id: letters, digits, _ and - only, at most 64",
        ));
    }
    app.workspace(id)
        .ok_or_else(|| ApiError::not_found(format!("no workspace {id:?}")))
}

fn number(name: &str, v: &str, max: usize) -> Result<usize, ApiError> {
    let n: u64 = v.parse().map_err(|_| {
        ApiError::bad(format!(
            "{name} must be a whole number from 0 to {max}, not {v:?}"
        ))
    })?;
    if n > max as u64 {
        return Err(ApiError::bad(format!(
            "{name} must be a whole number from 0 to {max}, not {v}"
        )));
    }
    Ok(n as usize)
}

fn score_bound(name: &str, v: &str) -> Result<f64, ApiError> {
    v.parse::<f64>()
        .ok()
        .filter(|x| x.is_finite())
        .ok_or_else(|| ApiError::bad(format!("{name} must be a finite number, not {v:?}")))
}

/// Everything but the endpoint's own keys is a filter (or an error).
fn filters(pairs: &[(String, String)], own: &[&str]) -> Result<Filters, ApiError> {
    let mut f = Filters::default();
    for (k, v) in pairs {
        if own.contains(&k.as_str()) {
            continue;
        }
        if let Some(field) = FIELDS.iter().find(|f| f.param == k).map(|f| f.name) {
            let values: Vec<&str> = v.split(',').filter(|s| !s.is_empty()).collect();
            if field == "dataset" {
                for d in &values {
                    validate_dataset_name(d).map_err(ApiError::from)?;
                }
            }
            f = f.with(field, values).map_err(ApiError::from)?;
            continue;
        }
        if k == "where" {
            f = f.with_where(v).map_err(ApiError::from)?;
            continue;
        }
        let range = ["val_score", "test_score", "train_score"]
            .iter()
            .find_map(|s| {
                k.strip_prefix(s).and_then(|rest| match rest {
                    "_min" => Some((s, true)),
                    "_max" => Some((s, false)),
                    _ => None,
                })
            });
        match range {
            Some((score, is_min)) => {
                let b = Some(Bound {
                    value: score_bound(k, v)?,
                    inclusive: true,
                });
                let (lo, hi) = if is_min { (b, None) } else { (None, b) };
                f.ranges.push(Range {
                    column: score.to_string(),
                    lo,
                    hi,
                });
            }
            None => return Err(ApiError::bad(format!("unknown parameter {k:?}"))),
        }
    }
    Ok(f)
}

fn last<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Runs `f` on the blocking pool once a heavy-query permit is free, with a
/// cancel flag `f` gives its query engine. The permit is held by the
/// blocking task until it ends, so at most `--max-heavy` queries use the
/// CPUs, whatever their clients do. The flag is set when the client goes
/// away (axum drops this future: the guard's `Drop`) and when the query
/// runs past `--query-timeout` (then a 503 that says so); the query stops
/// at its next file.
pub(super) async fn heavy<T: Send + 'static>(
    app: &Arc<App>,
    f: impl FnOnce(Arc<AtomicBool>) -> crate::error::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    let busy = || ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: format!(
            "busy: {} heavy queries are running and this one waited {} s; retry",
            app.opts.max_heavy,
            app.opts.queue_timeout.as_secs()
        ),
    };
    let permit = tokio::time::timeout(app.opts.queue_timeout, app.heavy.clone().acquire_owned())
        .await
        .map_err(|_| busy())?
        .map_err(|_| busy())?;
    let flag = Arc::new(AtomicBool::new(false));
    let guard = CancelOnDrop {
        flag: flag.clone(),
        app: app.clone(),
        armed: true,
    };
    let app2 = app.clone();
    let task = tokio::task::spawn_blocking(move || {
        app2.running.fetch_add(1, Ordering::Relaxed);
        let out = f(flag);
        app2.running.fetch_sub(1, Ordering::Relaxed);
        drop(permit);
        if app2.fit_due() {
            // Off the answer's path: a trim takes 6-25 ms.
            let app3 = app2.clone();
            tokio::task::spawn_blocking(move || app3.fit_cache());
        }
        out
    });
    let limit = app.opts.query_timeout;
    let joined = match tokio::time::timeout(limit, task).await {
        Ok(j) => j,
        Err(_) => {
            // `guard` drops here and sets the flag: the query stops.
            return Err(ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: format!(
                    "the query ran past the server's time limit ({:.3} s, --query-timeout) and was stopped",
                    limit.as_secs_f64()
                ),
            });
        }
    };
    let mut guard = guard;
    guard.armed = false;
    joined
        .map_err(|e| ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("the query failed: {e}"),
        })?
        .map_err(ApiError::from)
}

/// Sets a query's cancel flag when dropped while armed: the request's
/// future was dropped (its client went away) or it timed out.
struct CancelOnDrop {
    flag: Arc<AtomicBool>,
    app: Arc<App>,
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.armed {
            self.flag.store(true, Ordering::Relaxed);
            self.app.cancelled.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> crate::error::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("the query failed: {e}"),
        })?
        .map_err(ApiError::from)
}

/// `GET /healthz`.
#[utoipa::path(get, path = "/healthz", tag = "n4a", summary = "Liveness and resident memory.",
    responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz(State(app): State<Arc<App>>) -> Answer {
    let cache = app.columns.as_ref().map(|c| c.stats());
    ok_json(&Health {
        cache_budget: cache.map(|c| c.budget),
        cache_bytes: cache.map(|c| c.bytes),
        cache_limit: cache.map(|c| c.limit),
        heap_bytes: crate::memory::heap_in_use(),
        heavy_cancelled: app.cancelled.load(Ordering::Relaxed),
        heavy_running: app.running.load(Ordering::Relaxed),
        rss_bytes: crate::memory::resident_bytes(),
        status: "ok",
        workspaces: app.list().len(),
    })
}

/// `GET /api/workspaces/{id}/predictions/summary`: the dashboard's shape,
/// `datasets=brief` without runs; compressed when the client accepts it.
#[utoipa::path(get, path = "/api/workspaces/{id}/predictions/summary", tag = "n4a",
    summary = "Workspace summary from footers (cached).",
    description = "The nirs4all dashboard's shape: every file's summary (with its runs) \
        and the merged sections, plus n4a's (ranking, metrics, top_by_metric, facets, \
        exactness, errors). Compressed with zstd or gzip when Accept-Encoding allows \
        (Content-Encoding says which; Vary: accept-encoding). datasets=brief leaves out \
        every run list, per file and merged: a fraction of the size on workspaces with \
        thousands of configs.",
    params(doc::WorkspaceId, doc::SummaryParams),
    responses((status = 200, description = "Summary", body = schemas::Summary), Errors))]
pub async fn summary(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    q: Params,
) -> Answer {
    let pairs = params(q)?;
    let mut form = Form::Full;
    for (k, v) in &pairs {
        match (k.as_str(), v.as_str()) {
            ("datasets", "full") => form = Form::Full,
            ("datasets", "brief") => form = Form::Brief,
            ("datasets", other) => {
                return Err(ApiError::bad(format!(
                    "datasets must be full or brief, not {other:?}"
                )))
            }
            _ => return Err(ApiError::bad(format!("unknown parameter {k:?}"))),
        }
    }
    let coding = Encoding::negotiate(
        headers
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok()),
    );
    let w = workspace(&app, &id)?;
    let ws = w.ws.clone();
    let s = blocking(move || ws.summary()).await?;
    let cached = {
        let slot = w.summary_json.lock().unwrap_or_else(|e| e.into_inner());
        slot.as_ref()
            .filter(|(prev, _)| Arc::ptr_eq(prev, &s))
            .and_then(|(_, bodies)| bodies.get(&(form, coding)).cloned())
    };
    let body = match cached {
        Some(b) => b,
        None => {
            let s2 = s.clone();
            let body = blocking(move || {
                let json = s2.to_json(form);
                Ok(match coding {
                    Encoding::Identity => bytes::Bytes::from(json),
                    c => c.encode(&json),
                })
            })
            .await?;
            let mut slot = w.summary_json.lock().unwrap_or_else(|e| e.into_inner());
            match slot.as_mut() {
                Some((prev, bodies)) if Arc::ptr_eq(prev, &s) => {
                    bodies.insert((form, coding), body.clone());
                }
                _ => {
                    let mut bodies = std::collections::HashMap::new();
                    bodies.insert((form, coding), body.clone());
                    *slot = Some((s, bodies));
                }
            }
            body
        }
    };
    let mut r = json_response(StatusCode::OK, body);
    r.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if let Some(c) = coding.header() {
        r.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static(c));
    }
    Ok(r)
}

/// `GET /api/workspaces/{id}/predictions/data` (the filter parameters
/// are added to the document from `FIELDS`: `openapi::FilterParams`).
#[utoipa::path(get, path = "/api/workspaces/{id}/predictions/data", tag = "n4a",
    summary = "A filtered, sorted page of predictions with the total.",
    params(doc::WorkspaceId, doc::PageParams),
    responses((status = 200, description = "Page", body = crate::query::Page), Errors))]
pub async fn data(State(app): State<Arc<App>>, Path(id): Path<String>, q: Params) -> Answer {
    let pairs = params(q)?;
    let w = workspace(&app, &id)?;
    let own = ["limit", "offset", "sort", "order", "columns"];
    let limit =
        last(&pairs, "limit").map_or(Ok(500), |v| number("limit", v, app.opts.max_limit))?;
    let offset =
        last(&pairs, "offset").map_or(Ok(0), |v| number("offset", v, app.opts.max_offset))?;
    let mut sort = last(&pairs, "sort")
        .map(Sort::parse)
        .transpose()
        .map_err(ApiError::from)?;
    match last(&pairs, "order") {
        None => {}
        Some(o @ ("asc" | "desc")) => {
            let s = sort
                .as_mut()
                .ok_or_else(|| ApiError::bad("order needs sort"))?;
            s.descending = o == "desc";
        }
        Some(o) => {
            return Err(ApiError::bad(format!(
                "order must be asc or desc, not {o:?}"
            )))
        }
    }
    // Repeated `columns` parameters add up: the dashboard's 26 columns are
    // longer than one value may be.
    let given: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == "columns")
        .map(|(_, v)| v.as_str())
        .collect();
    let columns = match (!given.is_empty()).then_some(given) {
        Some(given) => {
            let cols: Vec<String> = given
                .iter()
                .flat_map(|c| c.split(','))
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            for c in &cols {
                Sort::parse(c).map_err(ApiError::from)?;
            }
            Some(cols)
        }
        None => None,
    };
    let q = PageQuery {
        filters: filters(&pairs, &own)?,
        columns,
        sort,
        offset,
        limit,
    };
    let ws = w.ws.clone();
    let directions = app.opts.directions.clone();
    let columns = app.columns.clone();
    let folder = w.path.canonicalize().unwrap_or_else(|_| w.path.clone());
    let mut page = heavy(&app, move |cancel| {
        engine(&ws, columns, cancel)
            .with_directions(directions)
            .page(&q)
    })
    .await?;
    // The web app's rows name their file (`source_dataset`, shown when
    // present, and `source_file`).
    for r in &mut page.records {
        if let Some(serde_json::Value::String(ds)) = r.get("dataset").cloned() {
            let file = folder.join(format!("{ds}{}", crate::schema::META_SUFFIX));
            r.insert("source_file".into(), serde_json::json!(file));
            r.insert("source_dataset".into(), serde_json::Value::String(ds));
        }
    }
    ok_json(&page)
}

/// `GET /api/workspaces/{id}/predictions/top`.
#[utoipa::path(get, path = "/api/workspaces/{id}/predictions/top", tag = "n4a",
    summary = "Top-k predictions by the metric's direction.",
    params(doc::WorkspaceId, doc::TopParams),
    responses((status = 200, description = "Top", body = schemas::Top), Errors))]
pub async fn top(State(app): State<Arc<App>>, Path(id): Path<String>, q: Params) -> Answer {
    let pairs = params(q)?;
    let w = workspace(&app, &id)?;
    let own = ["k", "score", "direction"];
    let k = last(&pairs, "k").map_or(Ok(10), |v| number("k", v, app.opts.max_k))?;
    let score = score_param(&pairs)?;
    let direction = direction_param(&pairs)?;
    // As `n4a top`: the val partition unless `partition` says otherwise
    // (`all`: every row).
    let q = TopQuery {
        filters: filters(&pairs, &own)?.for_ranking().0,
        k,
        direction,
        score,
    };
    let ws = w.ws.clone();
    let directions = app.opts.directions.clone();
    let columns = app.columns.clone();
    // One list per metric (each by its direction): scores of different
    // metrics are never ranked together.
    let answer = heavy(&app, move |cancel| {
        engine(&ws, columns, cancel)
            .with_directions(directions)
            .top_by_metric(&q)
            .map(crate::query::TopLists)
    })
    .await?;
    ok_json(&answer)
}

fn score_param(pairs: &[(String, String)]) -> Result<String, ApiError> {
    let score = last(pairs, "score").unwrap_or("val_score");
    if !crate::query::filter::SCORES.contains(&score) {
        return Err(ApiError::bad(format!(
            "score must be val_score, test_score or train_score, not {score:?}"
        )));
    }
    Ok(score.to_string())
}

fn direction_param(pairs: &[(String, String)]) -> Result<Option<Direction>, ApiError> {
    last(pairs, "direction")
        .map(|d| {
            Direction::parse(d).ok_or_else(|| {
                ApiError::bad(format!("direction must be max, min or zero, not {d:?}"))
            })
        })
        .transpose()
}

/// `GET /api/workspaces/{id}/predictions/groups`: count, mean, min, max and
/// best per model, config, dataset, partition, fold or metric.
#[utoipa::path(get, path = "/api/workspaces/{id}/predictions/groups", tag = "n4a",
    summary = "Count, mean, min, max and best of a score per group (nulls last).",
    params(doc::WorkspaceId, doc::GroupParams),
    responses((status = 200, description = "Groups", body = schemas::Groups), Errors))]
pub async fn groups(State(app): State<Arc<App>>, Path(id): Path<String>, q: Params) -> Answer {
    let pairs = params(q)?;
    let w = workspace(&app, &id)?;
    let own = ["group_by", "score", "direction", "count_mean_only"];
    let key = last(&pairs, "group_by")
        .ok_or_else(|| {
            ApiError::bad("group_by is required: model, config, dataset, partition or fold")
        })
        .and_then(|k| GroupKey::parse(k).map_err(ApiError::from))?;
    let count_and_mean_only = match last(&pairs, "count_mean_only") {
        None | Some("false") => false,
        Some("true") => true,
        Some(v) => {
            return Err(ApiError::bad(format!(
                "count_mean_only must be true or false, not {v:?}"
            )))
        }
    };
    // As `n4a stats`: the val partition unless `partition` says otherwise
    // (`all`: every row, one grouping per partition).
    let q = GroupQuery {
        filters: filters(&pairs, &own)?.for_ranking().0,
        key,
        score: score_param(&pairs)?,
        count_and_mean_only,
        direction: direction_param(&pairs)?,
    };
    let ws = w.ws.clone();
    let directions = app.opts.directions.clone();
    let columns = app.columns.clone();
    // Within one metric (and, over every partition, one partition) at a
    // time, the answer's JSON cached under its query.
    let body = heavy(&app, move |cancel| {
        engine(&ws, columns, cancel)
            .with_directions(directions)
            .group_by_metric_json(&q)
    })
    .await?;
    Ok(json_response(StatusCode::OK, body))
}

/// Unknown routes: a JSON 404.
pub async fn not_found() -> Response {
    ApiError::not_found("no such endpoint (see /openapi.json)").into_response()
}

/// Other methods on known routes: a JSON 405 (the server never writes a
/// file; only the web app's link, activate, scan and unlink routes take
/// POST or DELETE).
pub async fn method_not_allowed() -> Response {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        message: "method not allowed on this route (see /openapi.json)".to_string(),
    }
    .into_response()
}
