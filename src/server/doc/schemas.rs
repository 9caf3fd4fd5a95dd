//! The answers that are written by hand, for the document only: the
//! workspace summary (relayed file texts, `reader::merge`), top-k and
//! group-by lists (one per metric, `query::model`), and the web app's
//! runs, listings and dashboard (built from its manifests' JSON). Their
//! parts are the real types (`ToSchema` with the `server` feature);
//! tests/it/openapi.rs checks live answers against these.

// Documentation only: these are never built.
#![allow(dead_code)]

use std::collections::BTreeMap;

use serde_json::Value;
use utoipa::ToSchema;

use crate::metric::Direction;
use crate::query::{Group, Provenance, ServedBy};
use crate::summary::topk::TopEntry;
use crate::summary::{Facets, MetricSummary, MetricTop, ModelFacet, Ranking, Stats};
use crate::workspace::merge::{Exactness, WorkspaceRun};
use crate::workspace::FileError;

/// The workspace summary: the nirs4all dashboard's shape (every file's
/// summary, the merged sections) plus n4a's additions.
#[derive(ToSchema)]
pub struct Summary {
    /// Rows over all readable files.
    total_predictions: u64,
    /// Readable files.
    total_datasets: u64,
    /// One entry per readable file, in path order.
    datasets: Vec<SummaryDataset>,
    /// Models merged across files, by count desc.
    models: Vec<ModelFacet>,
    /// Each config once, with the datasets it touched (not with
    /// datasets=brief).
    #[schema(required = false)]
    runs: Vec<WorkspaceRun>,
    /// Top predictions of the primary metric over all files, scores
    /// rounded to 4 decimals.
    top_predictions: Vec<TopEntry>,
    /// Score statistics over all files; null when the workspace mixes
    /// metrics (then see `metrics[].stats`).
    #[schema(required = true)]
    stats: Option<Stats>,
    /// When this answer was made.
    generated_at: String,
    /// (n4a) The workspace folder.
    workspace: String,
    /// (n4a) Metric and direction ranking `top_predictions`.
    #[schema(required = true)]
    ranking: Option<Ranking>,
    /// (n4a) Metrics with directions and row counts.
    metrics: Vec<MetricSummary>,
    /// (n4a) Top predictions per metric over all files, unrounded.
    top_by_metric: BTreeMap<String, MetricTop>,
    /// (n4a) Merged facets.
    facets: Facets,
    /// (n4a) Files merged exactly from their state.
    merged_files: u64,
    /// (n4a) Files without n4a state (nirs4all 1.0, or no summary).
    files_without_state: Vec<String>,
    /// (n4a) How exact each part is.
    exactness: Exactness,
    /// (n4a) Files that could not be read, each with its reason.
    errors: Vec<FileError>,
}

/// One file of the workspace summary: its name, path and Parquet
/// metadata, then the members of its own summary as stored (its runs left
/// out: they are listed once, merged; a nirs4all 1.0 summary may hold
/// members of its own), or `summary_error` when that cannot be read.
#[derive(ToSchema)]
pub struct SummaryDataset {
    /// The dataset (the file's name less `.meta.parquet`).
    dataset: String,
    /// The file.
    path: String,
    /// False for files written before summaries existed.
    has_summary: bool,
    /// Rows.
    num_rows: u64,
    /// Row groups.
    num_row_groups: u64,
    /// Why the file's summary could not be read.
    #[schema(required = false)]
    summary_error: String,
    /// "1.0" (nirs4all) or n4a's version.
    #[schema(required = false)]
    n4a_version: String,
    /// The file's summary's date (ISO 8601 UTC).
    #[schema(required = false)]
    generated_at: Option<String>,
    /// The one dataset of the file, else null.
    #[schema(required = false)]
    dataset_name: Option<String>,
    /// Rows.
    #[schema(required = false)]
    total_predictions: u64,
    /// Score statistics.
    #[schema(required = false)]
    stats: Stats,
    /// Facets.
    #[schema(required = false)]
    facets: Facets,
    /// Best predictions of the primary metric.
    #[schema(required = false)]
    top_predictions: Vec<TopEntry>,
    /// Ranking of `top_predictions`.
    #[schema(required = false)]
    ranking: Ranking,
    /// Metrics with their directions.
    #[schema(required = false)]
    metrics: Vec<MetricSummary>,
    /// Top predictions per metric, unrounded.
    #[schema(required = false)]
    top_by_metric: BTreeMap<String, MetricTop>,
    /// Why a summary written without n4a state has no best predictions.
    #[schema(required = false)]
    n4a_note: String,
}

/// Top-k lists, one per metric (scores of different metrics are never
/// ranked together), in `by_metric`; when there is one list, its members
/// are at the top level too (the shape of one metric's answer).
#[derive(ToSchema)]
pub struct Top {
    /// The list's metric (one list only).
    #[schema(required = false)]
    metric: Option<String>,
    /// Best first, each with its dataset (one list only).
    #[schema(required = false)]
    records: Vec<TopEntry>,
    /// The direction used (one list only).
    #[schema(required = false)]
    direction: Option<Direction>,
    /// Which path answered (one list only).
    #[schema(required = false)]
    served_by: ServedBy,
    /// Files considered, pruned, scanned, and errors (one list only).
    #[schema(required = false)]
    provenance: Provenance,
    /// One list per metric.
    by_metric: Vec<TopOfMetric>,
}

/// One metric's top-k list.
#[derive(ToSchema)]
pub struct TopOfMetric {
    /// The metric (null for rows without one).
    #[schema(required = true)]
    metric: Option<String>,
    /// Best first, each with its dataset.
    records: Vec<TopEntry>,
    /// The direction used.
    #[schema(required = true)]
    direction: Option<Direction>,
    /// Which path answered.
    served_by: ServedBy,
    /// Files considered, pruned, scanned, and errors.
    provenance: Provenance,
}

/// Groups within one metric (and, with partition=all, one partition) at
/// a time: one grouping as its members, several as `by_metric`.
#[derive(ToSchema)]
pub struct Groups {
    /// The grouping's metric (one grouping only).
    #[schema(required = false)]
    metric: Option<String>,
    /// The grouping's partition (one grouping only).
    #[schema(required = false)]
    partition: Option<String>,
    /// Groups in key order, nulls last (one grouping only).
    #[schema(required = false)]
    groups: Vec<Group>,
    /// The direction of best (one grouping only).
    #[schema(required = false)]
    direction: Option<Direction>,
    /// Which path answered (one grouping only).
    #[schema(required = false)]
    served_by: ServedBy,
    /// Files considered, pruned, scanned, and errors (one grouping only).
    #[schema(required = false)]
    provenance: Provenance,
    /// The groupings, when there are several.
    #[schema(required = false)]
    by_metric: Vec<Grouping>,
}

/// One grouping: its metric and partition, then the answer's members.
#[derive(ToSchema)]
pub struct Grouping {
    /// The metric of the grouping's rows.
    #[schema(required = true)]
    metric: Option<String>,
    /// The partition of the grouping's rows (null where they hold several).
    #[schema(required = true)]
    partition: Option<String>,
    /// Groups in key order, nulls last.
    groups: Vec<Group>,
    /// The direction of best; null when grouped by metric over several
    /// metrics (each group's best is by its own metric's direction).
    #[schema(required = true)]
    direction: Option<Direction>,
    /// Which path answered.
    served_by: ServedBy,
    /// Files considered, pruned, scanned, and errors.
    provenance: Provenance,
}

/// A folder to link, inside a --root.
#[derive(ToSchema)]
pub struct LinkRequest {
    /// The folder, inside a --root.
    path: String,
    /// Its name (default: the folder's).
    name: Option<String>,
}

/// A prediction file that could not be read for the runs list.
#[derive(ToSchema)]
pub struct RunsError {
    /// The file.
    path: String,
    /// Its dataset.
    dataset: String,
    /// Why.
    error: String,
}

/// The runs list: run folders' runs and prediction files' configs, each
/// pipeline once, best scores by the metric's direction.
#[derive(ToSchema)]
pub struct Runs {
    /// The workspace.
    workspace_id: String,
    /// Runs listed.
    total: u64,
    /// Prediction files whose rows could not be read.
    errors: Vec<RunsError>,
    /// Run folders' runs and prediction files' configs, each pipeline once.
    runs: Vec<Value>,
}

/// A prediction file.
#[derive(ToSchema)]
pub struct PredictionFile {
    /// Its dataset.
    dataset: String,
    /// `parquet` (`.meta.parquet`) or `json` (nirs4all's older files).
    format: String,
    /// The file.
    path: String,
    /// Its size.
    size_bytes: u64,
}

/// The prediction files of a workspace.
#[derive(ToSchema)]
pub struct PredictionFiles {
    /// How many.
    count: u64,
    /// The files.
    predictions: Vec<PredictionFile>,
    /// How many.
    total: u64,
    /// The workspace.
    workspace_id: String,
}

/// The exports of a workspace.
#[derive(ToSchema)]
pub struct Exports {
    /// How many.
    count: u64,
    /// Bundles, pipelines, summaries and predictions under `exports/`.
    exports: Vec<Value>,
    /// How many.
    total: u64,
    /// The workspace.
    workspace_id: String,
}

/// The templates and trained pipelines of a workspace.
#[derive(ToSchema)]
pub struct Templates {
    /// How many.
    count: u64,
    /// Templates and trained pipelines under `library/`.
    templates: Vec<Value>,
    /// How many.
    total: u64,
    /// The workspace.
    workspace_id: String,
}

/// A count's trend (always neutral: n4a keeps no history).
#[derive(ToSchema)]
pub struct Trend {
    /// 0.
    value: f64,
    /// `neutral`.
    direction: String,
}

/// The trends of the dashboard's counts.
#[derive(ToSchema)]
pub struct Trends {
    /// Of `datasets`.
    datasets: Trend,
    /// Of `pipelines`.
    pipelines: Trend,
    /// Of `runs`.
    runs: Trend,
    /// Of `avgMetric`.
    #[schema(rename = "avgMetric")]
    avg_metric: Trend,
}

/// The dashboard's counts (all 0 without an active workspace).
#[derive(ToSchema)]
pub struct DashboardStats {
    /// Datasets of prediction files and run folders.
    datasets: u64,
    /// Saved pipelines (`pipelines/*.json|yaml`).
    pipelines: u64,
    /// Runs, each pipeline once.
    runs: u64,
    /// The average best val score of the runs of one metric (0 when none).
    #[schema(rename = "avgMetric")]
    avg_metric: f64,
    /// That metric: `r2` if any run ranks by it, else `accuracy`.
    #[schema(rename = "avgMetricName", required = false)]
    avg_metric_name: Option<String>,
    /// Their trends.
    trends: Trends,
}

/// A recent run (a dated run folder's).
#[derive(ToSchema)]
pub struct RecentRun {
    /// Its id.
    id: Value,
    /// Its name.
    name: Value,
    /// Its dataset (`Unknown` when the manifest names none).
    dataset_name: Value,
    /// Its name.
    pipeline_name: Value,
    /// Its status (`completed` when the manifest says none).
    status: Value,
    /// The metric of its best val score.
    #[schema(required = true)]
    metric_name: Option<String>,
    /// Its best val score.
    #[schema(required = true)]
    metric_value: Option<f64>,
    /// When it started.
    created_at: Value,
    /// When it ended.
    completed_at: Value,
}

/// The active workspace's dashboard.
#[derive(ToSchema)]
pub struct Dashboard {
    /// The counts.
    stats: DashboardStats,
    /// The six newest dated runs.
    recent_runs: Vec<RecentRun>,
}

/// The dashboard's counts alone.
#[derive(ToSchema)]
pub struct DashboardStatsOnly {
    /// The counts.
    stats: DashboardStats,
}

/// The newest dated runs.
#[derive(ToSchema)]
pub struct RecentRuns {
    /// The newest dated runs.
    runs: Vec<RecentRun>,
}
