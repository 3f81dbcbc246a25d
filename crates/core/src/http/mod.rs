//! The HTTP API, written once: the Lambda functions feed it API Gateway requests, the local
//! gateway feeds it the same requests after checking their signatures. Both put the caller's
//! identity into the request's extensions as a [`Caller`] before the router sees it.

use crate::domain::{Job, JobEvent, JobStatus, Millis, Owner};
use crate::error::ApiError;
use crate::service::DownloadLink;
use crate::service::{Queries, Submissions, Submitted};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, RawQuery, Request, State};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use http::request::Parts;
use http::{header, HeaderMap, StatusCode};
use serde::Deserialize;

use export_api::*;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

mod commands;
mod contract;
mod extract;
mod form;
mod lookup;
mod product;
mod queries;
mod subscriptions;

use commands::*;
pub use contract::{contract, contract_operations, contract_text};
use extract::*;
pub use extract::{Caller, JobId, StrictJson};
use form::ExportForm;
pub use lookup::{lookup_router, lookup_routes, CUSTOMER_DATASET};
use product::*;
use queries::*;
use subscriptions::*;

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Commands: `POST /exports`, `DELETE /exports/{id}`, `POST /product`, with their contract.
pub fn receiver_routes() -> OpenApiRouter<Arc<Submissions>> {
    OpenApiRouter::default()
        .routes(routes!(submit))
        .routes(routes!(submit_dataset_export))
        .routes(routes!(cancel))
        .routes(routes!(submit_product))
}

pub fn receiver_router(submissions: Arc<Submissions>) -> Router {
    receiver_routes()
        .with_state(submissions)
        .split_for_parts()
        .0
}

/// Queries: the caller's jobs, one job, its history, its download, the catalogue, and the
/// contract itself, with their contract.
pub fn status_routes() -> OpenApiRouter<Arc<Queries>> {
    OpenApiRouter::default()
        .routes(routes!(list_jobs))
        .routes(routes!(quota))
        .routes(routes!(webhook_secret))
        .routes(routes!(test_webhook))
        .routes(routes!(job_status))
        .routes(routes!(job_events))
        .routes(routes!(download))
        .routes(routes!(job_parts))
        .routes(routes!(datasets))
        .routes(routes!(dataset))
        .routes(routes!(product_status))
        .routes(routes!(openapi_document))
}

pub fn status_router(queries: Arc<Queries>) -> Router {
    status_routes().with_state(queries).split_for_parts().0
}

/// Subscriptions: create, list, get, pause, resume, delete, and their runs.
pub fn subscription_routes() -> OpenApiRouter<Arc<crate::service::Subscriptions>> {
    OpenApiRouter::default()
        .routes(routes!(create_subscription, list_subscriptions))
        .routes(routes!(get_subscription, delete_subscription))
        .routes(routes!(pause_subscription))
        .routes(routes!(resume_subscription))
        .routes(routes!(subscription_runs))
}

pub fn subscription_router(subscriptions: Arc<crate::service::Subscriptions>) -> Router {
    subscription_routes()
        .with_state(subscriptions)
        .split_for_parts()
        .0
}

/// The whole API, as one router (the local gateway serves this): commands, queries,
/// lookups and subscriptions.
pub fn api_router(
    submissions: Arc<Submissions>,
    queries: Arc<Queries>,
    lookups: Arc<crate::service::Lookups>,
    subscriptions: Arc<crate::service::Subscriptions>,
) -> Router {
    with_json_fallbacks(
        receiver_router(submissions)
            .merge(status_router(queries))
            .merge(lookup_router(lookups))
            .merge(subscription_router(subscriptions)),
    )
}

/// Unknown routes and methods answer in the API's JSON error format too.
pub fn with_json_fallbacks(router: Router) -> Router {
    router
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not accept that method",
            )
        })
}
