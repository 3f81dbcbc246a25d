//! Commands: submitting an export and cancelling one.

use super::*;
use std::time::Duration;

/// What both submitting routes answer, besides their own 400s, when they refuse.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // `JsonBody` and the submission write these; this is their description.
pub(super) enum SubmitRefusals {
    /// The Idempotency-Key was used with another body.
    #[response(status = 409)]
    KeyReused(ErrorBody),
    /// The body is larger than 64 KiB.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// The body is not `application/json` (nor, for `POST /exports`, a form).
    #[response(status = 415)]
    NotJson(ErrorBody),
    /// Over one of the caller's quotas: `quota_unfinished_exports`, `quota_exports_per_day`
    /// or `quota_bytes_per_day`. Nothing was stored or queued.
    #[response(status = 429, headers(("Retry-After" = String, description = "Seconds until the quota may allow it.")))]
    OverQuota(ErrorBody),
}

/// What a route that reads a JSON body answers when the body is not one it reads.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // `StrictJson` writes these; this is their description.
pub(super) enum BodyRefusals {
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
    request_body(
        description = "JSON, or a form whose parameter values are text, typed by the catalogue.",
        content(
            (ExportRequest = "application/json"),
            (ExportForm = "application/x-www-form-urlencoded"),
        )
    ),
    params(IdempotencyKeyHeader, WaitParam),
    responses(
        (status = 200, description = "With `wait`: the job ended within it, shown as `GET /exports/{id}` shows it (with its link once SUCCEEDED).", body = JobView),
        (status = 202, description = "The job is queued (with `wait`: it has not ended within it).", body = Accepted,
         headers(("Location" = String, description = "The job's status route."),
                 ("Idempotent-Replayed" = String, description = "`true` when an earlier request with the same key answered."))),
        (status = 400, description = "The body, the dataset (one that does not exist or is not the caller's: the same answer), a parameter or a header is invalid; `field` names it. A bound parameter given is `bound_parameter`.", body = ErrorBody),
        (status = 403, description = "The request is not signed with SigV4, or the signer may not call the API; or the dataset binds a parameter to an attribute the caller does not have (or has several values of, for one value).", body = ErrorBody),
        SubmitRefusals,
    )
)]
pub(super) async fn submit(
    State(submissions): State<Arc<Submissions>>,
    Caller(owner): Caller,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: ExportBody,
) -> Result<Response, ApiError> {
    let wait = wait_of(query.as_deref())?;
    submit_body(&submissions, &owner, &headers, body, wait).await
}

/// The longest `wait`: inside API Gateway's 29 s integration timeout ("Amazon API Gateway
/// quotas", the default for REST APIs), with room to answer.
pub const MAX_WAIT: Duration = Duration::from_secs(25);

/// `?wait=10s` (or `500ms`, or plain seconds): how long a submission waits for its job to end.
fn wait_of(query: Option<&str>) -> Result<Option<Duration>, ApiError> {
    let mut wait = None;
    for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if name != "wait" {
            return Err(ApiError::invalid(
                &name,
                format!("unknown query parameter '{name}' (expected: wait)"),
            ));
        }
        let value = value.trim();
        let parsed = if let Some(ms) = value.strip_suffix("ms") {
            ms.parse::<u64>().ok().map(Duration::from_millis)
        } else {
            value
                .strip_suffix('s')
                .unwrap_or(value)
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs)
        };
        match parsed {
            Some(d) if d <= MAX_WAIT => wait = Some(d),
            _ => {
                return Err(ApiError::invalid(
                    "wait",
                    format!(
                        "'wait' must be a duration of at most {} s (10s, 500ms)",
                        MAX_WAIT.as_secs()
                    ),
                ))
            }
        }
    }
    Ok(wait.filter(|d| !d.is_zero()))
}

/// The job once it has ended within `wait`, as `GET /exports/{id}` shows it; None if it has
/// not (or this deployment does not wait).
async fn finished_within(
    submissions: &Submissions,
    owner: &Owner,
    request_id: &str,
    wait: Duration,
) -> Result<Option<JobView>, ApiError> {
    let Some(queries) = &submissions.finished else {
        return Ok(None);
    };
    let deadline = tokio::time::Instant::now() + wait;
    let mut pause = Duration::from_millis(100);
    loop {
        let job = queries.job(owner, request_id).await?;
        if job.status.is_terminal() {
            return Ok(Some(super::queries::view_of(queries, job).await?));
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// Submits an export of the dataset the path names: `POST /exports` for an `execute-api`
/// policy that grants a caller single datasets.
#[utoipa::path(
    post, path = "/datasets/{name}/exports", tag = "exports", operation_id = "submit_dataset_export",
    params(("name" = String, Path, description = "A dataset the caller may use."), IdempotencyKeyHeader, WaitParam),
    request_body(
        description = "`POST /exports`'s body without `dataset`: JSON, or a form.",
        content(
            (DatasetExportRequest = "application/json"),
            (ExportForm = "application/x-www-form-urlencoded"),
        )
    ),
    responses(
        (status = 200, description = "With `wait`: the job ended within it, shown as `GET /exports/{id}` shows it (with its link once SUCCEEDED).", body = JobView),
        (status = 202, description = "The job is queued (with `wait`: it has not ended within it).", body = Accepted,
         headers(("Location" = String, description = "The job's status route."),
                 ("Idempotent-Replayed" = String, description = "`true` when an earlier request with the same key answered."))),
        (status = 400, description = "The body, the dataset (one that does not exist or is not the caller's: the same answer), a parameter or a header is invalid; `field` names it. A bound parameter given is `bound_parameter`.", body = ErrorBody),
        (status = 403, description = "The request is not signed with SigV4, or the signer may not call the API; or the dataset binds a parameter to an attribute the caller does not have (or has several values of, for one value).", body = ErrorBody),
        SubmitRefusals,
    )
)]
pub(super) async fn submit_dataset_export(
    State(submissions): State<Arc<Submissions>>,
    Caller(owner): Caller,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    DatasetExportBody(body): DatasetExportBody,
) -> Result<Response, ApiError> {
    let wait = wait_of(query.as_deref())?;
    submit_body(&submissions, &owner, &headers, body, wait).await
}

async fn submit_body(
    submissions: &Submissions,
    owner: &Owner,
    headers: &HeaderMap,
    body: ExportBody,
    wait: Option<Duration>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(headers)?;
    let submitted = match body {
        ExportBody::Json(request) => submissions.submit(owner, request, key).await?,
        ExportBody::Form(request, text) => {
            submissions.submit_text(owner, request, text, key).await?
        }
    };
    if let Some(wait) = wait {
        if let Some(view) = finished_within(submissions, owner, &submitted.request_id, wait).await?
        {
            let location = format!("/exports/{}", submitted.request_id);
            return Ok((StatusCode::OK, [(header::LOCATION, location)], Json(view)).into_response());
        }
    }
    Ok(accepted(&submitted))
}

pub(super) fn accepted(submitted: &Submitted) -> Response {
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
pub(super) async fn cancel(
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
