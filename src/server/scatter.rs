//! `GET /api/workspaces/{id}/predictions/{prediction_id}/scatter`: one
//! prediction's `y_true` and `y_pred`, for the dashboard's scatter plot.
//! The prediction is found by a page query on its id (pruned by the
//! footers' id ranges, so usually one file is scanned), then its two
//! arrays are read from its dataset's side file by id.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::answers::Scatter;
use super::api::{heavy, ok_json, params, workspace, Answer, Params};
use super::doc::{params as doc, Errors};
use super::{ApiError, App};
use crate::files::dataset_paths;
use crate::query::{Filters, PageQuery, QueryEngine};
use crate::rows::arrays::read_arrays;
use crate::schema::validate_dataset_name;
use crate::workspace::Workspace;

/// The handler: validates the id and the optional `dataset=`, then finds
/// the prediction and its arrays as a heavy query.
#[utoipa::path(get, path = "/api/workspaces/{id}/predictions/{prediction_id}/scatter", tag = "n4a",
    summary = "y_true and y_pred of one prediction, from the arrays file.",
    params(doc::WorkspaceId, doc::PredictionId, doc::ScatterParams),
    responses((status = 200, description = "Scatter", body = Scatter), Errors))]
pub async fn scatter(
    State(app): State<Arc<App>>,
    Path((id, pid)): Path<(String, String)>,
    q: Params,
) -> Answer {
    let pairs = params(q)?;
    let w = workspace(&app, &id)?;
    if !(1..=128).contains(&pid.len())
        || !pid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(ApiError::bad(
            "invalid prediction id: letters, digits, _ and - only, at most 128",
        ));
    }
    let mut datasets = Vec::new();
    for (k, v) in pairs {
        if k != "dataset" {
            return Err(ApiError::bad(format!("unknown parameter {k:?}")));
        }
        validate_dataset_name(&v).map_err(ApiError::from)?;
        datasets.push(v);
    }
    let q = locate_query(&pid, datasets)?;
    let ws = w.ws.clone();
    let found = heavy(&app, move |cancel| scatter_of(&ws, &q, &pid, cancel)).await??;
    ok_json(&found)
}

/// The page query that finds prediction `pid`: its id, the datasets asked
/// for, the columns the answer needs, and a limit of 2 (so an id in two
/// datasets is seen and refused).
fn locate_query(pid: &str, datasets: Vec<String>) -> Result<PageQuery, ApiError> {
    let mut filters = Filters::default()
        .with("id", [pid.to_string()])
        .map_err(ApiError::from)?;
    if !datasets.is_empty() {
        filters = filters.with("dataset", datasets).map_err(ApiError::from)?;
    }
    let columns = [
        "dataset",
        "id",
        "model_name",
        "partition",
        "fold_id",
        "metric",
        "val_score",
        "n_samples",
        "y_true_id",
        "y_pred_id",
    ];
    Ok(PageQuery {
        filters,
        columns: Some(columns.map(str::to_string).to_vec()),
        sort: None,
        offset: 0,
        limit: 2,
    })
}

/// Runs `q` and reads the found prediction's arrays. The outer error is a
/// failed read (500); the inner one what the client is told: not found
/// (or not found while a file could not be read), in several datasets,
/// or without arrays.
fn scatter_of(
    ws: &Workspace,
    q: &PageQuery,
    pid: &str,
    cancel: Arc<AtomicBool>,
) -> crate::error::Result<Result<Scatter, ApiError>> {
    let page = QueryEngine::new(ws).with_cancel(cancel).page(q)?;
    let Some(rec) = page.records.first() else {
        // Not found, but a file could not be read: the prediction may be
        // in it, so say so rather than a plain 404.
        if let Some(e) = page.provenance.errors.first() {
            return Ok(Err(ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                message: format!(
                    "no prediction {pid:?} in the readable files; {} file(s) could not be read: {}",
                    page.provenance.errors.len(),
                    e.error
                ),
            }));
        }
        return Ok(Err(ApiError::not_found(format!("no prediction {pid:?}"))));
    };
    if page.records.len() > 1 {
        return Ok(Err(ApiError {
            status: StatusCode::CONFLICT,
            message: format!("prediction {pid:?} is in several datasets: pass dataset="),
        }));
    }
    let dataset = rec["dataset"].as_str().unwrap_or_default();
    if let Some(found) = ws.inplace_arrays(dataset, pid) {
        let a = found?.unwrap_or_default();
        let (Some(t), Some(p)) = (a.y_true, a.y_pred) else {
            return Ok(Err(ApiError::not_found(format!(
                "prediction {pid:?} has no y_true/y_pred arrays in the store's arrays file"
            ))));
        };
        return Ok(Ok(Scatter {
            dataset: dataset.to_string(),
            fold_id: rec["fold_id"].clone(),
            metric: rec["metric"].clone(),
            model_name: rec["model_name"].clone(),
            n_samples: t.values.len(),
            partition: rec["partition"].clone(),
            prediction_id: pid.to_string(),
            val_score: rec["val_score"].clone(),
            y_pred: p.values,
            y_true: t.values,
        }));
    }
    let files = ws.list()?.files;
    let Some(meta) = files.iter().find(|f| f.dataset == dataset) else {
        return Ok(Err(ApiError::not_found(format!(
            "dataset {dataset:?} is gone"
        ))));
    };
    let dir = meta.path.parent().unwrap_or(std::path::Path::new(""));
    let arrays_path = dataset_paths(dir, dataset).arrays;
    let (t, p) = (rec["y_true_id"].as_str(), rec["y_pred_id"].as_str());
    let ids: Vec<&str> = [t, p].into_iter().flatten().collect();
    let arrays = if ids.is_empty() || !arrays_path.exists() {
        Default::default()
    } else {
        read_arrays(&arrays_path, &ids)?
    };
    let y = |id: Option<&str>| id.and_then(|i| arrays.get(i)).map(|a| a.values.clone());
    let (Some(y_true), Some(y_pred)) = (y(t), y(p)) else {
        return Ok(Err(ApiError::not_found(format!(
            "prediction {pid:?} has no y_true/y_pred arrays in {}",
            arrays_path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
        ))));
    };
    Ok(Ok(Scatter {
        dataset: dataset.to_string(),
        fold_id: rec["fold_id"].clone(),
        metric: rec["metric"].clone(),
        model_name: rec["model_name"].clone(),
        n_samples: y_true.len(),
        partition: rec["partition"].clone(),
        prediction_id: pid.to_string(),
        val_score: rec["val_score"].clone(),
        y_pred,
        y_true,
    }))
}
