//! The routes' path and query parameters, for the document only: handlers
//! read the query string as a list of pairs and check each one (`api`),
//! so that an unknown parameter is refused rather than ignored. The filter
//! parameters of pages, top-k and groups are added from `FIELDS` when the
//! document is made (`super::super::openapi`).

// Documentation only: these are never built.
#![allow(dead_code)]

use utoipa::{IntoParams, ToSchema};

/// The workspace of a `/api/workspaces/{id}/...` route.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct WorkspaceId {
    /// Workspace id (GET /api/workspaces).
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    id: String,
}

/// The form of the workspace summary.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase", default = "full")]
pub enum SummaryForm {
    /// The dashboard's shape.
    Full,
    /// Without runs.
    Brief,
}

/// `GET /api/workspaces/{id}/predictions/summary`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SummaryParams {
    /// full: the dashboard's shape; brief: without runs.
    #[param(required = false, inline)]
    datasets: SummaryForm,
}

/// `GET /api/workspaces/{id}/predictions/data`, besides the filters.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Rows to return (default 500, at most the server's cap, 10,000 by default).
    #[param(required = false)]
    limit: u64,
    /// Rows to skip (default 0).
    #[param(required = false)]
    offset: u64,
    /// Sort column, optionally column:asc|desc (ties by id, then dataset).
    #[param(required = false)]
    sort: String,
    /// asc or desc (with sort).
    #[param(required = false)]
    order: String,
    /// Columns to return, comma-separated (default all).
    #[param(required = false)]
    columns: String,
}

/// `GET /api/workspaces/{id}/predictions/top`, besides the filters.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TopParams {
    /// How many (default 10, at most 1,000).
    #[param(required = false)]
    k: u64,
    /// val_score (default), test_score or train_score.
    #[param(required = false)]
    score: String,
    /// max, min or zero; required to rank metrics of opposite directions together.
    #[param(required = false)]
    direction: String,
}

/// `GET /api/workspaces/{id}/predictions/groups`, besides the filters.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GroupParams {
    /// The key: model_name, config_name, the file's dataset, partition, fold_id or metric.
    #[param(inline)]
    group_by: crate::query::GroupKey,
    /// val_score (default), test_score or train_score.
    #[param(required = false)]
    score: String,
    /// max, min or zero, for best; required when the rows mix metrics of opposite directions.
    #[param(required = false)]
    direction: String,
    /// true: only count and mean (the footers answer by model without a scan).
    #[param(required = false)]
    count_mean_only: bool,
}

/// The prediction of the scatter route.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct PredictionId {
    /// The prediction's `id`.
    #[param(pattern = "^[A-Za-z0-9_-]{1,128}$")]
    prediction_id: String,
}

/// `GET /api/workspaces/{id}/predictions/{prediction_id}/scatter`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ScatterParams {
    /// The dataset, when the id is in several.
    #[param(required = false)]
    dataset: String,
}

/// `GET /api/workspaces/{id}/runs`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsParams {
    /// unified (default), manifests or parquet.
    #[param(required = false)]
    source: String,
    /// Accepted; answers follow file versions anyway.
    #[param(required = false)]
    refresh: bool,
}

/// The run of `GET /api/workspaces/{id}/runs/{run_id}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct RunId {
    /// A run folder's run id.
    run_id: String,
}

/// `GET /api/workspaces/{id}/results`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ResultsParams {
    /// A v2 run folder.
    #[param(required = false)]
    run_id: String,
    /// A dataset folder.
    #[param(required = false)]
    dataset: String,
    /// A template.
    #[param(required = false)]
    template_id: String,
    /// Default 100.
    #[param(required = false)]
    limit: u64,
    /// Default 0.
    #[param(required = false)]
    offset: u64,
}

/// `GET /api/dashboard/recent-runs`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecentRunsParams {
    /// Default 6.
    #[param(required = false)]
    limit: u64,
}
