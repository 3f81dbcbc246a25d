//! The HTTP API, written once: the Lambda functions feed it API Gateway requests, the local
//! gateway feeds it the same requests after checking their signatures. Both put the caller's
//! identity into the request's extensions as a [`Caller`] before the router sees it.

use crate::domain::{Job, JobEvent, JobStatus, Millis, Owner};
use crate::error::ApiError;
use crate::service::DownloadLink;
use crate::service::{ExportRequest, Queries, Submissions, Submitted};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::request::Parts;
use http::{header, HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;

mod lookup;
pub use lookup::{lookup_router, params_from_query, CUSTOMER_DATASET};

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

/// Commands: `POST /exports`, `DELETE /exports/{id}`, `POST /product`.
pub fn receiver_router(submissions: Arc<Submissions>) -> Router {
    Router::new()
        .route("/exports", post(submit))
        .route("/exports/{id}", axum::routing::delete(cancel))
        .route("/product", post(submit_product))
        .with_state(submissions)
}

/// Queries: the caller's jobs, one job, its history, its download, the catalogue.
pub fn status_router(queries: Arc<Queries>) -> Router {
    Router::new()
        .route("/exports", get(list_jobs))
        .route("/exports/{id}", get(job_status))
        .route("/exports/{id}/events", get(job_events))
        .route("/exports/{id}/download", get(download))
        .route("/exports/{id}/parts", get(job_parts))
        .route("/datasets", get(datasets))
        .route("/product", get(product_status))
        .with_state(queries)
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
        Json(json!({
            "request_id": submitted.request_id,
            "status": submitted.status,
            "status_url": status_url,
        })),
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

async fn cancel(
    State(submissions): State<Arc<Submissions>>,
    Caller(owner): Caller,
    JobId(id): JobId,
) -> Result<Response, ApiError> {
    let job = submissions.cancel(&owner, &id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"request_id": job.request_id, "status": job.status})),
    )
        .into_response())
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

async fn list_jobs(
    State(queries): State<Arc<Queries>>,
    Caller(owner): Caller,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query
        .map_err(|e| ApiError::invalid("query", format!("the query string is not valid: {e}")))?;
    let limit = page_limit(query.limit.as_deref(), 20, crate::service::query::MAX_PAGE)?;
    let page = queries.list(&owner, limit, query.cursor.as_deref()).await?;
    Ok(Json(json!({
        "jobs": page.jobs.iter().map(job_summary).collect::<Vec<_>>(),
        "next_cursor": page.next.map(|token| token.encode()),
    })))
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

/// `GET /exports/{id}/parts`: the parts of an export handed out as they are, a page at a time.
async fn job_parts(
    State(queries): State<Arc<Queries>>,
    Caller(owner): Caller,
    JobId(id): JobId,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query
        .map_err(|e| ApiError::invalid("query", format!("the query string is not valid: {e}")))?;
    let limit = page_limit(
        query.limit.as_deref(),
        crate::service::query::PARTS_PAGE,
        crate::service::query::MAX_PARTS_PAGE,
    )?;
    let job = queries.job(&owner, &id).await?;
    let page = queries.parts(&job, limit, query.cursor.as_deref()).await?;
    Ok(Json(json!({
        "request_id": job.request_id,
        "total_parts": page.total,
        "parts": page.parts,
        "next_cursor": page.next_cursor,
    })))
}

/// The fields every view of a job shares.
pub fn job_summary(job: &Job) -> Value {
    json!({
        "request_id": job.request_id,
        "dataset": job.dataset,
        "status": job.status,
        "format": job.format,
        "compression": job.compression,
        "archive": job.archive,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "rows": job.rows,
        "bytes": job.bytes,
        "error": job.error,
    })
}

/// When each phase began and ended, from the job's history; `now` for a job still going.
fn timings(job: &Job, events: &[JobEvent], now: Millis) -> Value {
    let first = |step: &str| events.iter().find(|e| e.step == step).map(|e| e.at);
    let ended = job.status.is_terminal().then_some(job.updated_at);
    json!({
        "submitted_at": job.created_at,
        "started_at": first("started"),
        "finished_at": first("finished"),
        "ended_at": ended,
        "elapsed_ms": ended.unwrap_or(now) - job.created_at,
    })
}

async fn job_status(
    State(queries): State<Arc<Queries>>,
    Caller(owner): Caller,
    JobId(id): JobId,
) -> Result<Json<Value>, ApiError> {
    let job = queries.job(&owner, &id).await?;
    let events = queries.control.events(&job.request_id).await?;
    let mut view = job_summary(&job);
    let fields = view.as_object_mut().expect("summary is an object");
    fields.insert("params".into(), Value::Object(job.params.clone()));
    fields.insert("notify".into(), json!(job.notify));
    fields.insert("statement_id".into(), json!(job.statement_id));
    fields.insert(
        "timings".into(),
        timings(&job, &events, queries.clock.now()),
    );
    fields.insert(
        "links".into(),
        json!({
            "self": format!("/exports/{}", job.request_id),
            "events": format!("/exports/{}/events", job.request_id),
            "download": format!("/exports/{}/download", job.request_id),
        }),
    );
    if job.status == JobStatus::Succeeded && !job.archive.is_packaged() {
        // The first page of its parts; the rest are a cursor away.
        let page = queries
            .parts(&job, crate::service::query::PARTS_PAGE, None)
            .await?;
        fields.insert("total_parts".into(), json!(page.total));
        fields.insert("parts".into(), json!(page.parts));
        fields.insert("parts_next_cursor".into(), json!(page.next_cursor));
        fields["links"]["parts"] = json!(format!("/exports/{}/parts", job.request_id));
    } else if job.status == JobStatus::Succeeded {
        let DownloadLink {
            url, expires_at, ..
        } = queries.download_link(&job).await?;
        fields.insert("download_url".into(), json!(url));
        fields.insert("download_expires_at".into(), json!(expires_at));
    }
    Ok(Json(view))
}

async fn job_events(
    State(queries): State<Arc<Queries>>,
    Caller(owner): Caller,
    JobId(id): JobId,
) -> Result<Json<Value>, ApiError> {
    let events = queries.events(&owner, &id).await?;
    Ok(Json(json!({ "request_id": id, "events": events })))
}

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
        Json(json!({ "download_url": link.url, "expires_at": link.expires_at })),
    )
        .into_response())
}

async fn datasets(State(queries): State<Arc<Queries>>, Caller(_): Caller) -> Json<Value> {
    let exports: Vec<_> = queries.catalog.exports().map(|e| e.describe()).collect();
    Json(json!({ "datasets": exports }))
}

// ---- compatibility with the original sample's API ----------------------------------------

/// The dataset the original sample's `/product` routes export.
pub const PRODUCT_DATASET: &str = "product_detail";

/// `POST /product {sku, productname?, createdate?}` → `{"RequestId": …}`.
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
        Json(json!({ "RequestId": submitted.request_id })),
    )
        .into_response())
}

/// `GET /product` with headers `requestid` and `type: latest|all`.
async fn product_status(
    State(queries): State<Arc<Queries>>,
    Caller(owner): Caller,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
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
        "latest" => Ok(Json(json!({
            "RequestId": job.request_id,
            "Status": job.status,
            "Timestamp": job.updated_at,
            "Rows": job.rows,
            "Error": job.error,
        }))),
        "all" => {
            let events = queries.control.events(&job.request_id).await?;
            Ok(Json(Value::Array(
                events
                    .iter()
                    .map(|e| {
                        json!({
                            "RequestId": job.request_id,
                            "Step": e.step,
                            "Status": e.outcome,
                            "Timestamp": e.at,
                            "Message": e.message,
                        })
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
