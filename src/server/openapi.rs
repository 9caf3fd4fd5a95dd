//! The OpenAPI 3.1 document served at `/openapi.json`, derived by utoipa:
//! each route from its handler's `#[utoipa::path]`, each answer from its
//! type (`ToSchema` on the query engine's and the summary's types with the
//! `server` feature, on the routes' own bodies in `answers`), the
//! parameters from the structs of `super::doc::params`; the filter parameters, which
//! follow [`crate::query::filter::FIELDS`], are added when the document is
//! made ([`FilterParams`]). `super::doc::schemas` describes the answers written by
//! hand (the summary, top-k and group-by lists, the web app's listings).
//!
//! The router (`super::router`) and this list of paths are kept in step by
//! tests/it/openapi.rs, which also checks that every `$ref` resolves and
//! that live answers have the documented members.

use std::sync::OnceLock;

use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{RefOr, Required};
use utoipa::{Modify, OpenApi};

use super::answers::ErrorBody;
use super::api::Answer;
use super::json_response;
use super::{api, scatter, webapp};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "n4a serve",
        description = "Query backend for nirs4all prediction workspaces and the nirs4all web app; never writes a file."
    ),
    paths(
        api::healthz,
        openapi,
        webapp::workspaces,
        api::summary,
        api::data,
        api::top,
        api::groups,
        scatter::scatter,
        webapp::link,
        webapp::unlink,
        webapp::activate,
        webapp::scan,
        webapp::runs_list,
        webapp::run_detail,
        webapp::results,
        webapp::datasets,
        webapp::predictions,
        webapp::exports,
        webapp::templates,
        webapp::dashboard::dashboard,
        webapp::dashboard::stats,
        webapp::dashboard::recent_runs,
        webapp::health,
        webapp::jobs,
    ),
    // The error body is named by `Errors` only (a response type, whose
    // schemas utoipa does not collect).
    components(schemas(ErrorBody)),
    modifiers(&FilterParams)
)]
struct Doc;

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}

/// `GET /openapi.json`: made once, then its bytes.
#[utoipa::path(get, path = "/openapi.json", tag = "n4a", summary = "This document.",
    responses((status = 200, description = "OpenAPI document", body = Object)))]
pub async fn openapi() -> Answer {
    Ok(json_response(axum::http::StatusCode::OK, json()))
}

/// The document's JSON, made on first use.
pub fn json() -> bytes::Bytes {
    static JSON: OnceLock<bytes::Bytes> = OnceLock::new();
    JSON.get_or_init(|| {
        serde_json::to_vec(&document())
            .expect("the document serialises")
            .into()
    })
    .clone()
}

/// The routes that take the row filters.
const FILTERED: [&str; 3] = [
    "/api/workspaces/{id}/predictions/data",
    "/api/workspaces/{id}/predictions/top",
    "/api/workspaces/{id}/predictions/groups",
];

/// Adds the filter parameters to the routes that take them ([`FILTERED`]):
/// one per [`crate::query::filter::FIELDS`] entry, `where`, and each
/// score's range.
struct FilterParams;

impl Modify for FilterParams {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        for path in FILTERED {
            let op = doc.paths.paths.get_mut(path).and_then(|p| p.get.as_mut());
            debug_assert!(op.is_some(), "{path} is documented");
            if let Some(op) = op {
                op.parameters
                    .get_or_insert_with(Vec::new)
                    .extend(filter_params().into_iter().map(RefOr::T));
            }
        }
    }
}

fn query_param(name: &str, kind: Type, description: String) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(ObjectBuilder::new().schema_type(kind)))
        .build()
}

fn filter_params() -> Vec<Parameter> {
    let mut out: Vec<Parameter> = crate::query::filter::FIELDS
        .iter()
        .map(|f| {
            query_param(
                f.param,
                Type::String,
                format!("{}; repeat or comma-separate.", f.help),
            )
        })
        .collect();
    out.push(query_param(
        "where",
        Type::String,
        "Score ranges, e.g. 'val_score>=0.5 and test_score<1'.".to_string(),
    ));
    for s in crate::query::filter::SCORES {
        out.push(query_param(
            &format!("{s}_min"),
            Type::Number,
            format!("Smallest {s} (inclusive)."),
        ));
        out.push(query_param(
            &format!("{s}_max"),
            Type::Number,
            format!("Largest {s} (inclusive)."),
        ));
    }
    out
}
