//! The bodies of the routes that were built with `json!`, typed so that
//! `/openapi.json` is derived from them (`openapi`).
//!
//! Their fields are declared in name order on purpose: `json!` objects
//! (serde_json without `preserve_order`) write their keys sorted, so these
//! write the very bytes the routes answered before (tests/it/openapi.rs
//! checks each body against its re-serialisation through a `Value`).

use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// An error: `detail` is what the nirs4all web app (FastAPI) shows,
/// `error` the same for n4a's clients.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// What went wrong.
    pub detail: String,
    /// The same.
    pub error: String,
    /// The HTTP status.
    pub status: u16,
}

/// Liveness: the process's memory and heavy queries (`GET /healthz`).
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// The column cache's budget (`--cache-mem`); null without a cache.
    pub cache_budget: Option<usize>,
    /// Bytes the column cache holds now (decoded columns, page records,
    /// derived orders and answers), as it counts them; null without a
    /// cache.
    pub cache_bytes: Option<usize>,
    /// What the column cache may hold now: its budget, or with
    /// `--mem-limit` that limit less what the rest of the process holds
    /// (footers, summaries, answers, running queries), never below an
    /// eighth of the budget; null without a cache.
    pub cache_limit: Option<usize>,
    /// Bytes the allocator has handed out and not had back (the heap in
    /// use, whatever freed memory it keeps beside; null off glibc).
    /// Measuring it locks the allocator's arenas for a few milliseconds
    /// on a large workspace's server.
    pub heap_bytes: Option<u64>,
    /// Heavy queries stopped so far (client gone or past the time limit).
    pub heavy_cancelled: usize,
    /// Heavy queries running now.
    pub heavy_running: usize,
    /// The process's resident memory (null where /proc does not say).
    pub rss_bytes: Option<u64>,
    /// `ok`.
    pub status: &'static str,
    /// Workspaces served.
    pub workspaces: usize,
}

/// What the last scan of a workspace found (the web app's Settings page).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Discovered {
    /// Datasets: of prediction files and run folders.
    pub datasets_count: usize,
    /// Exports under `exports/`.
    pub exports_count: usize,
    /// Runs: run folders and prediction files' configs.
    pub runs_count: usize,
    /// Templates and trained pipelines under `library/`.
    pub templates_count: usize,
}

/// A workspace, as the web app lists it.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkspaceInfo {
    /// The last scan's counts (null before the first).
    pub discovered: Option<Discovered>,
    /// Prediction files (null when the folder cannot be listed).
    pub files: Option<usize>,
    /// Its id in URLs.
    pub id: String,
    /// True for the web app's active workspace.
    pub is_active: bool,
    /// When it was last scanned (UTC, ISO 8601).
    pub last_scanned: Option<String>,
    /// When it was linked (UTC, ISO 8601).
    pub linked_at: String,
    /// Its name.
    pub name: String,
    /// Its folder.
    #[schema(value_type = String)]
    pub path: PathBuf,
}

/// The served and linked workspaces (`GET /api/workspaces`).
#[derive(Debug, Serialize, ToSchema)]
pub struct Workspaces {
    /// The web app's active workspace.
    pub active_workspace_id: Option<String>,
    /// Workspaces listed.
    pub total: usize,
    /// The served and linked workspaces, in order.
    pub workspaces: Vec<WorkspaceInfo>,
}

/// A workspace forgotten (`DELETE /api/workspaces/{id}`).
#[derive(Debug, Serialize, ToSchema)]
pub struct Unlinked {
    /// `Workspace unlinked`.
    pub message: &'static str,
    /// Always true.
    pub success: bool,
}

/// A page of pipeline results (`GET /api/workspaces/{id}/results`).
#[derive(Debug, Serialize, ToSchema)]
pub struct Results {
    /// True when results remain past this page.
    pub has_more: bool,
    /// As asked (at most the server's cap).
    pub limit: usize,
    /// As asked.
    pub offset: usize,
    /// The results of run folders' manifests, grouped by metric, best
    /// first.
    pub results: Vec<Value>,
    /// Results matching.
    pub total: usize,
    /// The workspace.
    pub workspace_id: String,
}

/// The datasets run folders name
/// (`GET /api/workspaces/{id}/datasets/discovered`).
#[derive(Debug, Serialize, ToSchema)]
pub struct DiscoveredDatasets {
    /// The datasets run folders name.
    pub datasets: Vec<Value>,
    /// How many.
    pub total: usize,
    /// The workspace.
    pub workspace_id: String,
}

/// What the web app's launch scripts wait for (`GET /api/health`).
#[derive(Debug, Serialize, ToSchema)]
pub struct AppHealth {
    /// `n4a serve is running`.
    pub message: &'static str,
    /// `healthy`.
    pub status: &'static str,
}

/// The web app's jobs, of which n4a has none (`GET /api/runs`).
#[derive(Debug, Serialize, ToSchema)]
pub struct NoJobs {
    /// Always empty.
    pub runs: Vec<Value>,
    /// Always 0.
    pub total: usize,
}

/// One prediction's true and predicted values, for a scatter plot.
#[derive(Debug, Serialize, ToSchema)]
pub struct Scatter {
    /// The prediction's dataset.
    pub dataset: String,
    /// Its `fold_id`.
    pub fold_id: Value,
    /// Its `metric`.
    pub metric: Value,
    /// Its `model_name`.
    pub model_name: Value,
    /// Samples (the length of `y_true`).
    pub n_samples: usize,
    /// Its `partition`.
    pub partition: Value,
    /// The id asked for.
    pub prediction_id: String,
    /// Its `val_score`.
    pub val_score: Value,
    /// Predicted values (NaN as null).
    #[schema(value_type = Vec<Option<f64>>)]
    pub y_pred: Vec<f64>,
    /// True values (NaN as null).
    #[schema(value_type = Vec<Option<f64>>)]
    pub y_true: Vec<f64>,
}

/// What a workspace's folder holds, as the web app's scan answered it,
/// plus the `discovered` counts.
#[derive(Debug, Serialize, ToSchema)]
pub struct Scan {
    /// Datasets run folders name.
    pub datasets: Vec<Value>,
    /// The counts kept for the workspace list.
    pub discovered: Discovered,
    /// Exports under `exports/`.
    pub exports: Vec<Value>,
    /// `Workspace scanned`.
    pub message: &'static str,
    /// The prediction files.
    pub predictions: Vec<Value>,
    /// The run folders' runs.
    pub runs: Vec<Value>,
    /// When (UTC, ISO 8601).
    pub scanned_at: String,
    /// The counts.
    pub summary: ScanCounts,
    /// Templates and trained pipelines under `library/`.
    pub templates: Vec<Value>,
    /// The workspace.
    pub workspace_id: String,
    /// Its name.
    pub workspace_name: String,
}

/// The counts of a scan.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScanCounts {
    /// Datasets: of prediction files and run folders.
    pub datasets_count: usize,
    /// Exports.
    pub exports_count: usize,
    /// Prediction files.
    pub predictions_count: usize,
    /// Runs: run folders and prediction files' configs.
    pub runs_count: usize,
    /// Templates.
    pub templates_count: usize,
}
