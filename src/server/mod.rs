//! `n4a serve`: the nirs4all dashboard's query backend over HTTP/JSON
//! (axum on tokio).
//!
//! Endpoints (every answer JSON; see `openapi::document`):
//!
//! - `GET /healthz`: liveness, the process's resident memory.
//! - `GET /openapi.json`: the OpenAPI 3.1 description of all of these,
//!   derived from the answers' types (utoipa).
//! - `GET /api/workspaces`: ids, paths and file counts.
//! - `GET /api/workspaces/{id}/predictions/summary`: the workspace summary
//!   from footers (the dashboard's shape plus n4a's additions), cached: while
//!   no file changed, an answer costs a listing, one `stat` per file and a
//!   copy of the serialised bytes.
//! - `GET /api/workspaces/{id}/predictions/data`: a filtered, sorted page
//!   `{records, total, limit, offset, has_more}` (see `api`).
//! - `GET /api/workspaces/{id}/predictions/top`: top-k by a metric's direction.
//! - `GET /api/workspaces/{id}/predictions/{prediction_id}/scatter`:
//!   `y_true`, `y_pred` and the sample count, from the arrays file.
//!
//! Files change under a running server (nirs4all writes while the dashboard
//! is open): every request lists the workspace and compares each file's
//! change markers with the cached footer's, so changed, added and removed
//! files are seen on the next request. n4a's writers replace files by
//! rename, so a half-written file is never visible; a file another tool is
//! writing in place fails to parse and is listed in `errors`, never a 500.
//!
//! Security: binds loopback unless `allow_remote`; read-only (GET only);
//! only files inside the configured workspaces are opened (workspace ids,
//! dataset names and prediction ids are validated before anything is
//! opened: a traversal attempt is a 400); caps on `limit`, `k`, the query
//! string's length and the number of heavy queries (pages, top-k, scatter)
//! running at once, beyond which requests wait up to `queue_timeout` and
//! then get a 503; a heavy query whose client goes away is stopped, and one
//! running past `query_timeout` is stopped with a 503. With a bearer token
//! (`auth`), every request but `/healthz` must carry it (401 otherwise);
//! beyond loopback a token is required unless `no_auth`. Errors are
//! `{"error": ..., "status": ...}` with the right status code. Each
//! request is logged on stderr with its latency (never its headers).

pub(crate) mod answers;
pub(crate) mod api;
pub(crate) mod auth;
pub(crate) mod doc;
pub(crate) mod encoding;
pub(crate) mod openapi;
mod run;
pub(crate) mod scatter;
pub(crate) mod webapp;

pub use auth::BearerToken;
pub use run::{run, serve, shutdown_signal, Background};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::Semaphore;

use crate::error::{Error, Result};
use crate::metric::Directions;
use crate::workspace::merge::Form;
use crate::workspace::{Workspace, WorkspaceSummary};
use encoding::Encoding;

/// Options of the server; defaults stated on each field.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Where to listen (default `127.0.0.1:8765`).
    pub addr: SocketAddr,
    /// Allow a non-loopback address (default false: refused).
    pub allow_remote: bool,
    /// Largest `limit` of a data page (default 10,000; the dashboard asks 500).
    pub max_limit: usize,
    /// Largest `offset` (default 100,000,000).
    pub max_offset: usize,
    /// Largest `k` of a top-k (default 1,000).
    pub max_k: usize,
    /// Longest accepted request target, path and query (default 4,096 bytes).
    pub max_uri_bytes: usize,
    /// Heavy queries (pages, top-k, scatter) running at once (default: the
    /// number of CPUs).
    pub max_heavy: usize,
    /// How long a heavy query waits for its turn before a 503 (default 30 s).
    pub queue_timeout: Duration,
    /// How long a heavy query may run before it is stopped with a 503
    /// (default 60 s).
    pub query_timeout: Duration,
    /// The bearer token every request but `/healthz` must carry
    /// (`Authorization: Bearer TOKEN`; default none). Serving beyond
    /// loopback requires one unless `no_auth`.
    pub token: Option<auth::BearerToken>,
    /// Serve beyond loopback without a token (default false: refused).
    pub no_auth: bool,
    /// Log one line per request on stderr (default true).
    pub log: bool,
    /// Directions of metrics outside the built-in table.
    pub directions: Directions,
    /// Bytes of decoded columns kept between queries, over all workspaces
    /// (default 512 MiB; 0: none, every query scans).
    pub cache_mem: usize,
    /// A bound on the whole process's heap (default none): the column
    /// cache then holds at most this less what the rest of the process
    /// holds (footers, summaries, held answers, running queries), never
    /// less than an eighth of `cache_mem` (measured after heavy queries, at
    /// most once a second).
    pub mem_limit: Option<usize>,
    /// Folders under which the web app may link workspaces
    /// (`POST /api/workspaces/link`), as real paths (default none:
    /// linking answers 403).
    pub roots: Vec<PathBuf>,
    /// Origins allowed to call the API from a browser page of another
    /// origin (CORS; `*` allows any; default none: same origin only).
    pub cors_origins: Vec<String>,
    /// A built web app (its `index.html` and assets) served from `/`, with
    /// every path that is not a file answered by `index.html` (default
    /// none).
    pub ui: Option<PathBuf>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            addr: SocketAddr::from(([127, 0, 0, 1], 8765)),
            allow_remote: false,
            max_limit: 10_000,
            max_offset: 100_000_000,
            max_k: 1_000,
            max_uri_bytes: 4096,
            max_heavy: std::thread::available_parallelism().map_or(2, |n| n.get()),
            queue_timeout: Duration::from_secs(30),
            query_timeout: Duration::from_secs(60),
            token: None,
            no_auth: false,
            log: true,
            directions: Directions::new(),
            cache_mem: 512 << 20,
            mem_limit: None,
            roots: Vec::new(),
            cors_origins: Vec::new(),
            ui: None,
        }
    }
}

/// One served workspace.
pub struct Served {
    /// Its id in URLs.
    pub id: String,
    /// Its folder.
    pub path: PathBuf,
    /// Its name (the folder's, unless the web app gave one).
    pub name: String,
    /// When it was linked (UTC, ISO 8601).
    pub linked_at: String,
    /// The reader (footer cache, merged summary).
    pub ws: Arc<Workspace>,
    /// The last summary served and its bodies, by form and coding.
    summary_json: Mutex<Option<SummaryBodies>>,
    /// The last scan: when, and the web app's `discovered` counts.
    pub(crate) scanned: Mutex<(Option<String>, Option<answers::Discovered>)>,
    /// Each prediction file's configs, for the web app's runs list.
    pub(crate) configs: webapp::runs::ConfigCache,
}

impl Served {
    /// Opens the workspace in `path` under `id` and scans its folders. A
    /// nirs4all store is brought into its mirror now and re-checked every
    /// second in the background (one `stat` per store file while it
    /// does not change), so a request never waits for an import.
    ///
    /// # Errors
    /// [`Error::Io`] for a folder that is not a readable directory; a
    /// store that cannot be read.
    fn open(
        id: String,
        path: PathBuf,
        name: Option<String>,
        directions: &crate::metric::Directions,
    ) -> Result<Served> {
        let ws = Arc::new(
            Workspace::open(&path)?
                .with_threads(0)
                .with_directions(directions),
        );
        ws.sync()?;
        crate::workspace::watch(&ws, std::time::Duration::from_secs(1), |ws, msg| {
            eprintln!("n4a serve: {}: {msg}", ws.origin().display());
        });
        // Shown to the web app and used to name files: the real path.
        let path = path.canonicalize().unwrap_or(path);
        let name = name.unwrap_or_else(|| {
            path.canonicalize()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| id.clone())
        });
        let served = Served {
            id,
            path,
            name,
            linked_at: crate::summary::utc_now(),
            ws,
            summary_json: Mutex::new(None),
            scanned: Mutex::new((None, None)),
            configs: webapp::runs::ConfigCache::default(),
        };
        served.scan(None);
        Ok(served)
    }
}

/// A summary and the bodies already made of it.
type SummaryBodies = (
    Arc<WorkspaceSummary>,
    std::collections::HashMap<(Form, Encoding), bytes::Bytes>,
);

/// What the handlers share.
pub struct App {
    /// The workspaces, in the order given, then linked.
    workspaces: RwLock<Vec<Arc<Served>>>,
    /// The id of the web app's active workspace.
    active: Mutex<Option<String>>,
    /// The options.
    pub opts: ServeOptions,
    heavy: Arc<Semaphore>,
    /// Heavy queries running now (their blocking tasks).
    running: AtomicUsize,
    /// Heavy queries stopped so far (client gone or past the time limit).
    cancelled: AtomicUsize,
    /// Decoded columns shared by every query (`None` without a budget).
    pub columns: Option<Arc<crate::query::cache::ColumnCache>>,
    /// What the process held beside the cache lately, and when memory was
    /// last measured ([`App::fit_cache`]).
    beside: Mutex<(crate::memory::Beside, Option<Instant>)>,
}

/// Freed memory the allocator may keep before [`App::fit_cache`] gives it
/// back: the `+ 64 MiB` of the server's memory bound.
const TRIM_SLACK: u64 = 64 << 20;

/// True for ids made of ASCII letters, digits, `_` and `-`, 1 to 64 long.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// An id for the workspace folder `path`: its name with anything outside
/// `[A-Za-z0-9_-]` replaced by `-`, made unique among `taken`.
pub fn id_for(path: &std::path::Path, taken: &[String]) -> String {
    let name = path
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let mut base: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(56)
        .collect();
    if base.is_empty() {
        base = "ws".to_string();
    }
    let mut id = base.clone();
    let mut n = 2;
    while taken.contains(&id) {
        id = format!("{base}-{n}");
        n += 1;
    }
    id
}

impl App {
    /// Opens the workspaces (`(id, folder)`; an empty id is derived from
    /// the folder's name).
    ///
    /// # Errors
    /// [`Error::Io`] for a folder that is not a readable directory;
    /// [`Error::InvalidOption`] for an invalid or repeated id.
    pub fn new(workspaces: &[(String, PathBuf)], opts: ServeOptions) -> Result<Arc<App>> {
        let mut served: Vec<Arc<Served>> = Vec::new();
        for (id, path) in workspaces {
            let taken: Vec<String> = served.iter().map(|s| s.id.clone()).collect();
            let id = if id.is_empty() {
                id_for(path, &taken)
            } else {
                id.clone()
            };
            if !valid_id(&id) || taken.contains(&id) {
                return Err(Error::InvalidOption(format!(
                    "workspace id {id:?} is invalid or repeated (use letters, digits, _ and -)"
                )));
            }
            served.push(Arc::new(Served::open(
                id,
                path.clone(),
                None,
                &opts.directions,
            )?));
        }
        let mut opts = opts;
        for r in &mut opts.roots {
            *r = r.canonicalize().map_err(|e| Error::io(&*r, e))?;
        }
        Ok(Arc::new(App {
            active: Mutex::new(served.first().map(|w| w.id.clone())),
            workspaces: RwLock::new(served),
            heavy: Arc::new(Semaphore::new(opts.max_heavy.max(1))),
            running: AtomicUsize::new(0),
            cancelled: AtomicUsize::new(0),
            columns: (opts.cache_mem > 0)
                .then(|| Arc::new(crate::query::cache::ColumnCache::new(opts.cache_mem))),
            beside: Mutex::new(Default::default()),
            opts,
        }))
    }

    /// True at most once a second, for the heavy query that ends then:
    /// time for [`App::fit_cache`]. Cost: a lock and a clock read.
    pub(crate) fn fit_due(&self) -> bool {
        let mut b = self.beside.lock().unwrap_or_else(|e| e.into_inner());
        if b.1.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return false;
        }
        b.1 = Some(Instant::now());
        true
    }

    /// After a heavy query, at most once a second: gives the allocator's
    /// freed memory back to the kernel when it keeps more than 64 MiB of
    /// it resident, 32 MiB under `--mem-limit` (so the resident size
    /// follows the heap in use; a trim takes 6-25 ms on `big`, each arena
    /// locked in turn), and with
    /// `--mem-limit` lets the column cache hold that limit less what the
    /// rest of the process holds: the heap in use
    /// ([`crate::memory::heap_in_use`]) less what the cache holds, the
    /// least of the recent measures ([`crate::memory::Beside`]: a measure
    /// taken while other queries run counts their working memory too). A
    /// no-op off glibc. Cost: one `mallinfo2` (3-5 ms on `big`, arenas
    /// locked in turn), a read of `/proc/self/status`, and an eviction
    /// pass when the cache's limit falls; run off the answer's path
    /// ([`App::fit_due`] says when).
    pub(crate) fn fit_cache(&self) {
        // Measured before taking the lock `fit_due` takes at the end of
        // every heavy query: the measure takes milliseconds.
        let Some(heap) = crate::memory::heap_in_use() else {
            return;
        };
        if let (Some(cache), Some(limit)) = (self.columns.as_deref(), self.opts.mem_limit) {
            let outside = heap.saturating_sub(cache.stats().bytes as u64);
            let least = {
                let mut b = self.beside.lock().unwrap_or_else(|e| e.into_inner());
                usize::try_from(b.0.add(outside)).unwrap_or(usize::MAX)
            };
            cache.fit_beside(limit.saturating_sub(least));
        }
        // Under a limit, freed memory is given back sooner: the limit is
        // on what is resident.
        let slack = match self.opts.mem_limit {
            Some(_) => TRIM_SLACK / 2,
            None => TRIM_SLACK,
        };
        if crate::memory::resident_bytes().is_some_and(|rss| rss > heap + slack) {
            crate::memory::give_back_freed();
        }
    }

    /// The workspace with this id.
    pub fn workspace(&self, id: &str) -> Option<Arc<Served>> {
        self.list().into_iter().find(|w| w.id == id)
    }

    /// Every workspace, in order.
    pub fn list(&self) -> Vec<Arc<Served>> {
        self.workspaces
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The web app's active workspace's id.
    pub fn active(&self) -> Option<String> {
        self.active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// An error answer: a status and a message, sent as
/// `{"detail": message, "error": message, "status": code}`.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong.
    pub message: String,
}

impl ApiError {
    /// A 400 with `message`.
    pub fn bad(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// A 404 with `message`.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::InvalidQuery(_)
            | Error::InvalidDatasetName { .. }
            | Error::UnknownMetricDirection { .. } => StatusCode::BAD_REQUEST,
            Error::Cancelled(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError {
            status,
            message: e.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // `detail` is what the nirs4all web app (FastAPI) shows.
        let body = answers::ErrorBody {
            detail: self.message.clone(),
            error: self.message,
            status: self.status.as_u16(),
        };
        let text = serde_json::to_vec(&body).expect("an error body serialises");
        json_response(self.status, text.into())
    }
}

/// A JSON response with `body`.
pub fn json_response(status: StatusCode, body: bytes::Bytes) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// The router of all endpoints over `app` (used by [`serve`] and by tests).
pub fn router(app: Arc<App>) -> Router {
    let r = Router::new()
        .route("/healthz", get(api::healthz))
        .route("/openapi.json", get(openapi::openapi))
        .route("/api/workspaces", get(webapp::workspaces))
        .route(
            "/api/workspaces/{id}/predictions/summary",
            get(api::summary),
        )
        .route("/api/workspaces/{id}/predictions/data", get(api::data))
        .route("/api/workspaces/{id}/predictions/top", get(api::top))
        .route("/api/workspaces/{id}/predictions/groups", get(api::groups))
        .route(
            "/api/workspaces/{id}/predictions/{prediction_id}/scatter",
            get(scatter::scatter),
        )
        .merge(webapp::routes())
        .method_not_allowed_fallback(api::method_not_allowed);
    // With a built web app: its files from `/`, any other path that is
    // not under `/api` answered by its `index.html` (the app's routes
    // are its own); unknown API paths stay JSON 404s.
    let r = match &app.opts.ui {
        Some(dir) => r
            .route("/api/{*rest}", get(api::not_found))
            .fallback_service(
                tower_http::services::ServeDir::new(dir)
                    .fallback(tower_http::services::ServeFile::new(dir.join("index.html"))),
            ),
        None => r.fallback(api::not_found),
    };
    let r = r.layer(axum::middleware::from_fn_with_state(
        app.clone(),
        guard_and_log,
    ));
    // Outermost, so a preflight is answered before the token check.
    let r = match cors(&app.opts.cors_origins) {
        Some(c) => r.layer(c),
        None => r,
    };
    r.with_state(app)
}

/// The CORS layer for `origins` (`*`: any), `None` for none: what the web
/// app's pages need from another origin (it sends `Content-Type:
/// application/json` on every call, so browsers send a preflight first).
fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok()),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                axum::http::Method::GET,
                axum::http::Method::POST,
                axum::http::Method::DELETE,
            ])
            .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION, header::ACCEPT])
            .max_age(Duration::from_secs(600)),
    )
}

/// Refuses over-long request targets (414) and logs each request with its
/// status and latency.
async fn guard_and_log(
    axum::extract::State(app): axum::extract::State<Arc<App>>,
    req: Request<Body>,
    next: axum::middleware::Next,
) -> Response {
    let t0 = Instant::now();
    let method = req.method().clone();
    let target = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string());
    let path = req.uri().path();
    // The web app's own files (everything outside `/api`) are not
    // workspace data: served without the token.
    let public = path == "/healthz" || (app.opts.ui.is_some() && !path.starts_with("/api"));
    let authorized = public
        || app.opts.token.as_ref().is_none_or(|t| {
            t.admits(
                req.headers()
                    .get(header::AUTHORIZATION)
                    .map(HeaderValue::as_bytes),
            )
        });
    let resp = if !authorized {
        let mut r = ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: "missing or wrong bearer token (Authorization: Bearer TOKEN)".into(),
        }
        .into_response();
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        r
    } else if target.len() > app.opts.max_uri_bytes {
        ApiError {
            status: StatusCode::URI_TOO_LONG,
            message: format!(
                "request target is {} bytes, over the {}-byte cap",
                target.len(),
                app.opts.max_uri_bytes
            ),
        }
        .into_response()
    } else {
        next.run(req).await
    };
    if app.opts.log {
        let shown: String = target.chars().take(200).collect();
        eprintln!(
            "{method} {shown} {} {:.2}ms",
            resp.status().as_u16(),
            t0.elapsed().as_secs_f64() * 1e3
        );
    }
    resp
}
