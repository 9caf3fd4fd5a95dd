//! What the handlers' `#[utoipa::path]` annotations name, for the OpenAPI
//! document only (`super::openapi`): the routes' parameters (`params`),
//! the answers written by hand (`schemas`) and the error answers
//! ([`Errors`]). Below the handlers, so that the document, which names the
//! handlers, sits above them and nothing imports back.

pub(crate) mod params;
pub(crate) mod schemas;

use utoipa::IntoResponses;

use super::answers::ErrorBody;

/// The error answers of every route but the liveness checks.
#[derive(IntoResponses)]
#[allow(dead_code)] // documentation only: never built
pub(crate) enum Errors {
    /// Error
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// Error
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// Error
    #[response(status = 414)]
    UriTooLong(ErrorBody),
    /// Error
    #[response(status = 500)]
    Internal(ErrorBody),
    /// Error
    #[response(status = 503)]
    Unavailable(ErrorBody),
}
