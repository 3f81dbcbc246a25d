//! The HTTP API, written once: the Lambda functions feed it API Gateway requests, the local
//! gateway feeds it the same requests after checking their signatures. Both put the caller's
//! identity into the request's extensions as a [`Caller`] before the router sees it.

use crate::domain::{Job, JobEvent, JobStatus, Millis, Owner};
use crate::error::ApiError;
use crate::service::DownloadLink;
use crate::service::{ExportRequest, Queries, Submissions, Submitted};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use http::request::Parts;
use http::{header, HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use views::*;

mod contract;
mod lookup;
pub mod views;
pub use contract::{contract, contract_operations, contract_text};
pub use lookup::{lookup_router, lookup_routes, params_from_query, CUSTOMER_DATASET};

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The authenticated caller, as the IAM authoriser (or the local gateway) established it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller(pub Owner);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::forbidden("the request carries no authenticated identity"))
    }
}

/// A JSON object body: `application/json`, at most [`MAX_BODY_BYTES`], well-formed.
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, _: &S) -> Result<Self, Self::Rejection> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let essence = content_type.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("the body must be application/json, not '{content_type}'"),
            ));
        }
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body is larger than {MAX_BODY_BYTES} bytes"),
            )
        };
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
            return Err(too_large());
        }
        let bytes = axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES)
            .await
            .map_err(|_| too_large())?;
        let value = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("the body is not valid JSON: {e}"),
            )
        })?;
        Ok(JsonBody(value))
    }
}

/// Commands: `POST /exports`, `DELETE /exports/{id}`, `POST /product`, with their contract.
pub fn receiver_routes() -> OpenApiRouter<Arc<Submissions>> {
    OpenApiRouter::default()
        .routes(routes!(submit))
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
        .routes(routes!(job_status))
        .routes(routes!(job_events))
        .routes(routes!(download))
        .routes(routes!(job_parts))
        .routes(routes!(datasets))
        .routes(routes!(product_status))
        .routes(routes!(openapi_document))
}

pub fn status_router(queries: Arc<Queries>) -> Router {
    status_routes().with_state(queries).split_for_parts().0
}

/// The whole API, as one router (the local gateway serves this): commands, queries and
/// lookups.
pub fn api_router(
    submissions: Arc<Submissions>,
    queries: Arc<Queries>,
    lookups: Arc<crate::service::Lookups>,
) -> Router {
    with_json_fallbacks(
        receiver_router(submissions)
            .merge(status_router(queries))
            .merge(lookup_router(lookups)),
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

fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    headers
        .get("idempotency-key")
        .map(|v| {
            v.to_str().map_err(|_| {
                ApiError::invalid(
                    "Idempotency-Key",
                    "the Idempotency-Key header must be ASCII",
                )
            })
        })
        .transpose()
}

/// The header both submitting routes read.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // Read by `idempotency_key`; this is its description.
struct IdempotencyKeyHeader {
    /// Retries with the same key and body answer the first job; another body with the same
    /// key is a 409.
    #[param(rename = "Idempotency-Key")]
    idempotency_key: Option<String>,
}

/// What both submitting routes answer, besides their own 400s, when they refuse.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // `JsonBody` and the submission write these; this is their description.
enum SubmitRefusals {
    /// The Idempotency-Key was used with another body.
    #[response(status = 409)]
    KeyReused(ErrorBody),
    /// The body is larger than 64 KiB.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// The body is not `application/json`.
    #[response(status = 415)]
    NotJson(ErrorBody),
}

/// Submits an export: validated, recorded and queued, answered at once.
#[utoipa::path(
    post, path = "/exports", tag = "exports", operation_id = "submit_export",
    request_body(content = ExportRequestBody, content_type = "application/json"),
    params(IdempotencyKeyHeader),
    responses(
        (status = 202, description = "The job is queued.", body = Accepted,
         headers(("Location" = String, description = "The job's status route."),
                 ("Idempotent-Replayed" = String, description = "`true` when an earlier request with the same key answered."))),
        (status = 400, description = "The body, the dataset, a parameter or a header is invalid; `field` names it.", body = ErrorBody),
        SubmitRefusals,
    )
)]
async fn submit(
    State(submissions): State<Arc<Submissions>>,
    Caller(owner): Caller,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let request = ExportRequest::from_json(&body)?;
    let submitted = submissions
        .submit(&owner, request, idempotency_key(&headers)?)
        .await?;
    Ok(accepted(&submitted))
}

fn accepted(submitted: &Submitted) -> Response {
    let status_url = format!("/exports/{}", submitted.request_id);
    let mut response = (
        StatusCode::ACCEPTED,
        [(header::LOCATION, status_url.clone())],
        Json(Accepted {
            request_id: submitted.request_id.clone(),
            status: submitted.status,
            status_url: Some(status_url),
        }),
    )
        .into_response();
    if submitted.replayed {
        response.headers_mut().insert(
            "idempotent-replayed",
            http::HeaderValue::from_static("true"),
        );
    }
    response
}

/// The `{id}` of a job route. Request ids are UUIDs; anything else (including a path that
/// does not decode) cannot name a job, so it is simply not found.
pub struct JobId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for JobId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::job_not_found("(undecodable id)"))?;
        match uuid::Uuid::parse_str(&id) {
            Ok(_) => Ok(JobId(id)),
            Err(_) => Err(ApiError::job_not_found(&id)),
        }
    }
}

/// Cancels a job that has not ended (and its statement, if running).
#[utoipa::path(
    delete, path = "/exports/{id}", tag = "exports", operation_id = "cancel_export",
    params(("id" = String, Path, description = "The job's request id.")),
    responses(
        (status = 202, description = "The job is cancelled.", body = Accepted),
        (status = 404, description = "No such job of the caller's.", body = ErrorBody),
        (status = 409, description = "The job has ended already.", body = ErrorBody),
    )
)]
async fn cancel(
    State(submissions): State<Arc<Submissions>>,
    Caller(owner): Caller,
    JobId(id): JobId,
) -> Result<Response, ApiError> {
    let job = submissions.cancel(&owner, &id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            request_id: job.request_id,
            status: job.status,
            status_url: None,
        }),
    )
        .into_response())
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

/// The caller's jobs, newest first, a page at a time.
#[utoipa::path(
    get, path = "/exports", tag = "exports", operation_id = "list_exports",
    params(("limit" = Option<String>, Query, description = "Jobs a page, 1 to 100 (20 if absent)."),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the page before.")),
    responses(
        (status = 200, description = "A page of the caller's jobs.", body = JobList),
        (status = 400, description = "`limit` or `cursor` is invalid.", body = ErrorBody),
    )
)]
async fn list_jobs(
    State(queries): State<Arc<Queries>>,
    Caller(owner): Caller,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<JobList>, ApiError> {
    let Query(query) = query
        .map_err(|e| ApiError::invalid("query", format!("the query string is not valid: {e}")))?;
    let limit = page_limit(query.limit.as_deref(), 20, crate::service::query::MAX_PAGE)?;
    let page = queries.list(&owner, limit, query.cursor.as_deref()).await?;
    Ok(Json(JobList {
        jobs: page.jobs.iter().map(JobSummary::from).collect(),
        next_cursor: page.next.map(|token| token.encode()),
    }))
}

/// A page's `limit`: `default` when absent, else a number from 1 to `max`.
fn page_limit(limit: Option<&str>, default: usize, max: usize) -> Result<usize, ApiError> {
    match limit {
        None => Ok(default),
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| ApiError::invalid("limit", format!("'limit' must be 1 to {max}"))),
    }
}

/// The parts of an export handed out as they are (`archive: none`), a page at a time, each
/// with a fresh link.
#[utoipa::path(
    get, path = "/exports/{id}/parts", tag = "exports", operation_id = "list_export_parts",
    params(("id" = String, Path, description = "The job's request id."), ("limit" = Option<String>, Query, description = "Parts a page."),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the page before.")),
    responses(
        (status = 200, description = "A page of the export's parts.", body = PartList),
        (status = 400, description = "`limit` or `cursor` is invalid.", body = ErrorBody),
        (status = 404, description = "No such job of the caller's.", body = ErrorBody),
        (status = 409, description = "The job has not succeeded, or it is packaged as one archive.", body = ErrorBody),
        (status = 410, description = "The job's parts have expired (`ResultsExpiryDays`).", body = ErrorBody),
    )
)]
async fn job_parts(
    State(queries): State<Arc<Queries>>,
    Caller(owner): Caller,
    JobId(id): JobId,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<PartList>, ApiError> {
    let Query(query) = query
        .map_err(|e| ApiError::invalid("query", format!("the query string is not valid: {e}")))?;
    let limit = page_limit(
        query.limit.as_deref(),
        crate::service::query::PARTS_PAGE,
        crate::service::query::MAX_PARTS_PAGE,
    )?;
    let job = queries.job(&owner, &id).await?;
    let page = queries.parts(&job, limit, query.cursor.as_deref()).await?;
    Ok(Json(PartList {
        request_id: job.request_id,
        total_parts: page.total,
        parts: page.parts,
        next_cursor: page.next_cursor,
    }))
}

/// When each phase began and ended, from the job's history; `now` for a job still going.
fn timings(job: &Job, events: &[JobEvent], now: Millis) -> Timings {
    let first = |step: &str| events.iter().find(|e| e.step == step).map(|e| e.at);
    let ended = job.status.is_terminal().then_some(job.updated_at);
    Timings {
        submitted_at: job.created_at,
        started_at: first("started"),
        finished_at: first("finished"),
        ended_at: ended,
        elapsed_ms: ended.unwrap_or(now) - job.created_at,
    }
}

/// One job: its state, timings, and once it has succeeded, a fresh link (or its parts).
#[utoipa::path(
    get, path = "/exports/{id}", tag = "exports", operation_id = "get_export",
    params(("id" = String, Path, description = "The job's request id.")),
    responses(
        (status = 200, description = "The job.", body = JobView),
        (status = 404, description = "No such job of the caller's.", body = ErrorBody),
    )
)]
async fn job_status(
    State(queries): State<Arc<Queries>>,
    Caller(owner): Caller,
    JobId(id): JobId,
) -> Result<Json<JobView>, ApiError> {
    let job = queries.job(&owner, &id).await?;
    let events = queries.control.events(&job.request_id).await?;
    let id = &job.request_id;
    let mut view = JobView {
        summary: JobSummary::from(&job),
        params: job.params.clone(),
        notify: job.notify.clone(),
        statement_id: job.statement_id.clone(),
        timings: timings(&job, &events, queries.clock.now()),
        links: JobLinks {
            this: format!("/exports/{id}"),
            events: format!("/exports/{id}/events"),
            download: format!("/exports/{id}/download"),
            parts: None,
        },
        expired: false,
        download_url: None,
        download_expires_at: None,
        total_parts: None,
        parts: None,
        parts_next_cursor: None,
    };
    // A job whose files have expired still answers its status, marked so, without links.
    let expired = |e: &ApiError| e.status == StatusCode::GONE;
    if job.status == JobStatus::Succeeded && !job.archive.is_packaged() {
        // The first page of its parts; the rest are a cursor away.
        match queries
            .parts(&job, crate::service::query::PARTS_PAGE, None)
            .await
        {
            Ok(page) => {
                view.total_parts = Some(page.total);
                view.parts = Some(page.parts);
                view.parts_next_cursor = page.next_cursor;
                view.links.parts = Some(format!("/exports/{id}/parts"));
            }
            Err(e) if expired(&e) => view.expired = true,
            Err(e) => return Err(e),
        }
    } else if job.status == JobStatus::Succeeded {
        match queries.download_link(&job).await {
            Ok(DownloadLink {
                url, expires_at, ..
            }) => {
                view.download_url = Some(url);
                view.download_expires_at = Some(expires_at);
            }
            Err(e) if expired(&e) => view.expired = true,
            Err(e) => return Err(e),
        }
    }
    Ok(Json(view))
}

/// A job's history, oldest first.
#[utoipa::path(
    get, path = "/exports/{id}/events", tag = "exports", operation_id = "get_export_events",
    params(("id" = String, Path, description = "The job's request id.")),
    responses(
        (status = 200, description = "The job's events.", body = JobHistory),
        (status = 404, description = "No such job of the caller's.", body = ErrorBody),
    )
)]
async fn job_events(
    State(queries): State<Arc<Queries>>,
    Caller(owner): Caller,
    JobId(id): JobId,
) -> Result<Json<JobHistory>, ApiError> {
    let events = queries.events(&owner, &id).await?;
    Ok(Json(JobHistory {
        request_id: id,
        events,
    }))
}

/// A redirect to a freshly signed link to the job's archive (or its one part).
#[utoipa::path(
    get, path = "/exports/{id}/download", tag = "exports", operation_id = "download_export",
    params(("id" = String, Path, description = "The job's request id.")),
    responses(
        (status = 303, description = "The link, in `Location` and in the body.", body = DownloadBody,
         headers(("Location" = String, description = "The signed link."))),
        (status = 404, description = "No such job of the caller's.", body = ErrorBody),
        (status = 409, description = "Nothing to download yet, or the export is several parts (see `/parts`).", body = ErrorBody),
        (status = 410, description = "The job's files have expired (the archive after `DownloadsExpiryDays`, parts after `ResultsExpiryDays`).", body = ErrorBody),
    )
)]
async fn download(
    State(queries): State<Arc<Queries>>,
    Caller(owner): Caller,
    JobId(id): JobId,
) -> Result<Response, ApiError> {
    let job = queries.job(&owner, &id).await?;
    let link = queries.download_link(&job).await?;
    Ok((
        StatusCode::SEE_OTHER,
        [(header::LOCATION, link.url.clone())],
        Json(DownloadBody {
            download_url: link.url,
            expires_at: link.expires_at,
        }),
    )
        .into_response())
}

/// The catalogue: each dataset, its parameters and their rules, and whether it can be
/// looked up.
#[utoipa::path(
    get, path = "/datasets", tag = "catalogue", operation_id = "list_datasets",
    responses((status = 200, description = "The catalogue.", body = Datasets))
)]
async fn datasets(State(queries): State<Arc<Queries>>, Caller(_): Caller) -> Response {
    let datasets = queries.catalog.exports().map(|e| e.describe()).collect();
    Json(Datasets { datasets }).into_response()
}

/// This document.
#[utoipa::path(
    get, path = "/openapi.json", tag = "catalogue", operation_id = "get_contract",
    responses((status = 200, description = "The API's OpenAPI 3.1 description.", content_type = "application/json", body = Object))
)]
async fn openapi_document(Caller(_): Caller) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        contract_text(),
    )
        .into_response()
}

// ---- compatibility with the original sample's API ----------------------------------------

/// The dataset the original sample's `/product` routes export.
pub const PRODUCT_DATASET: &str = "product_detail";

/// `POST /product {sku, productname?, createdate?}` → `{"RequestId": …}`: the original
/// sample's submission, an export of `product_detail`.
#[utoipa::path(
    post, path = "/product", tag = "compatibility", operation_id = "submit_product",
    request_body(content = ProductRequest, content_type = "application/json"),
    params(IdempotencyKeyHeader),
    responses(
        (status = 200, description = "The job is queued.", body = ProductAccepted),
        (status = 400, description = "A field is invalid; `field` names it.", body = ErrorBody),
        SubmitRefusals,
    )
)]
async fn submit_product(
    State(submissions): State<Arc<Submissions>>,
    Caller(owner): Caller,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let Value::Object(fields) = body else {
        return Err(ApiError::invalid("", "the body must be a JSON object"));
    };
    let mut params = Map::new();
    for (from, to) in [
        ("sku", "sku"),
        ("productname", "product_name"),
        ("createdate", "created_on"),
    ] {
        if let Some(v) = fields.get(from) {
            params.insert(to.into(), v.clone());
        }
    }
    if let Some(extra) = fields
        .keys()
        .find(|k| !["sku", "productname", "createdate"].contains(&k.as_str()))
    {
        return Err(ApiError::invalid(
            extra,
            format!("unknown field '{extra}' (expected: sku, productname, createdate)"),
        ));
    }
    let request =
        ExportRequest::from_json(&json!({ "dataset": PRODUCT_DATASET, "params": params }))?;
    let submitted = submissions
        .submit(&owner, request, idempotency_key(&headers)?)
        .await
        .map_err(|mut e| {
            // Name the original field, not the catalogue's parameter.
            if let Some(field) = &e.field {
                e.field = Some(match field.as_str() {
                    "params.product_name" => "productname".into(),
                    "params.created_on" => "createdate".into(),
                    other => other.trim_start_matches("params.").to_owned(),
                });
            }
            e
        })?;
    Ok((
        StatusCode::OK,
        Json(ProductAccepted {
            request_id: submitted.request_id,
        }),
    )
        .into_response())
}

/// `GET /product` with headers `requestid` and `type: latest|all`: the original sample's
/// status call.
#[utoipa::path(
    get, path = "/product", tag = "compatibility", operation_id = "get_product_status",
    params(
        ("requestid" = String, Header, description = "The `RequestId` `POST /product` answered."),
        ("type" = Option<String>, Header, description = "`latest` (the default) or `all`."),
    ),
    responses(
        (status = 200, description = "The latest state, or every event.", body = ProductAnswer),
        (status = 400, description = "A header is missing or invalid.", body = ErrorBody),
        (status = 404, description = "No such job of the caller's.", body = ErrorBody),
    )
)]
async fn product_status(
    State(queries): State<Arc<Queries>>,
    Caller(owner): Caller,
    headers: HeaderMap,
) -> Result<Json<ProductAnswer>, ApiError> {
    let id = headers
        .get("requestid")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::invalid("requestid", "the 'requestid' header is required"))?;
    let kind = headers
        .get("type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("latest");
    uuid::Uuid::parse_str(id).map_err(|_| ApiError::job_not_found(id))?;
    let job = queries.job(&owner, id).await?;
    match kind {
        "latest" => Ok(Json(ProductAnswer::Latest(ProductStatus {
            request_id: job.request_id,
            status: job.status,
            timestamp: job.updated_at,
            rows: job.rows,
            error: job.error,
        }))),
        "all" => {
            let events = queries.control.events(&job.request_id).await?;
            Ok(Json(ProductAnswer::All(
                events
                    .into_iter()
                    .map(|e| ProductEvent {
                        request_id: job.request_id.clone(),
                        step: e.step,
                        status: e.outcome,
                        timestamp: e.at,
                        message: e.message,
                    })
                    .collect(),
            )))
        }
        other => Err(ApiError::invalid(
            "type",
            format!("the 'type' header must be latest or all, not '{other}'"),
        )),
    }
}
