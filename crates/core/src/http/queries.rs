//! Queries: the caller's jobs, one job, its history, its parts and download, the catalogue
//! and the contract.

use super::*;

#[derive(Deserialize)]
pub(super) struct ListQuery {
    limit: Option<String>,
    cursor: Option<String>,
    owner: Option<String>,
}

/// The caller's jobs, newest first, a page at a time; an admin may list another caller's.
#[utoipa::path(
    get, path = "/exports", tag = "exports", operation_id = "list_exports",
    params(("limit" = Option<String>, Query, description = "Jobs a page, 1 to 100 (20 if absent)."),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the page before."),
        ("owner" = Option<String>, Query, description = "Whose jobs: another caller's, as the API names its owner (an IAM ARN). Only for a caller in an admin group of the access policy.")),
    responses(
        (status = 200, description = "A page of the caller's jobs (or the owner's).", body = JobList),
        (status = 400, description = "`limit` or `cursor` is invalid.", body = ErrorBody),
        (status = 403, description = "`owner` names another caller, and the caller is no admin.", body = ErrorBody),
    )
)]
pub(super) async fn list_jobs(
    State(queries): State<Arc<Queries>>,
    Caller(owner): Caller,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<JobList>, ApiError> {
    let Query(query) = query
        .map_err(|e| ApiError::invalid("query", format!("the query string is not valid: {e}")))?;
    let limit = page_limit(query.limit.as_deref(), 20, crate::service::query::MAX_PAGE)?;
    let whose = match query.owner {
        Some(other) if other != owner.0 => queries.listed_owner(&owner, other).await?,
        _ => owner,
    };
    let page = queries.list(&whose, limit, query.cursor.as_deref()).await?;
    Ok(Json(JobList {
        jobs: page.jobs.iter().map(summary).collect(),
        next_cursor: page.next.map(|token| token.encode()),
    }))
}

/// The fields every view of a job shares.
fn summary(job: &Job) -> JobSummary {
    JobSummary {
        request_id: job.request_id.clone(),
        dataset: job.dataset.clone(),
        status: job.status,
        format: job.format,
        compression: job.compression,
        archive: job.archive,
        created_at: job.created_at,
        updated_at: job.updated_at,
        rows: job.rows,
        bytes: job.bytes,
        error: job.error.clone(),
    }
}

/// A page's `limit`: `default` when absent, else a number from 1 to `max`.
pub(super) fn page_limit(
    limit: Option<&str>,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
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
pub(super) async fn job_parts(
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
pub(super) fn timings(job: &Job, events: &[JobEvent], now: Millis) -> Timings {
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
pub(super) async fn job_status(
    State(queries): State<Arc<Queries>>,
    Caller(owner): Caller,
    JobId(id): JobId,
) -> Result<Json<JobView>, ApiError> {
    Ok(Json(job_view(&queries, &owner, &id).await?))
}

/// The job as `GET /exports/{id}` shows it: its state, timings, and a fresh link once ready.
pub(super) async fn job_view(
    queries: &Queries,
    owner: &Owner,
    id: &str,
) -> Result<JobView, ApiError> {
    view_of(queries, queries.job(owner, id).await?).await
}

/// The view of a job already read as its owner's.
pub(super) async fn view_of(queries: &Queries, job: Job) -> Result<JobView, ApiError> {
    let events = queries.control.events(&job.request_id).await?;
    let id = &job.request_id;
    let mut view = JobView {
        summary: summary(&job),
        params: job.params.clone(),
        bound: job.bound.clone(),
        notify: job.notify.clone(),
        statement_id: job.statement_id.clone(),
        queue_position: match job.status {
            JobStatus::Queued => queries.queue_position(id).await?,
            _ => None,
        },
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
    // A job whose files have expired still answers its status, marked so, without links; so
    // does one whose links cannot be handed out just now (the audit record, say, cannot be
    // written: no link goes out unrecorded), and `/download` or `/parts` say why.
    let expired = |e: &ApiError| e.status == StatusCode::GONE;
    let unavailable = |e: &ApiError| e.status == StatusCode::SERVICE_UNAVAILABLE;
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
            Err(e) if unavailable(&e) => {}
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
            Err(e) if unavailable(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(view)
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
pub(super) async fn job_events(
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
pub(super) async fn download(
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
pub(super) async fn datasets(
    State(queries): State<Arc<Queries>>,
    Caller(owner): Caller,
) -> Result<Json<Datasets>, ApiError> {
    let datasets = queries.datasets(&owner).await?;
    Ok(Json(Datasets { datasets }))
}

/// One dataset of the catalogue, as `GET /datasets` lists it: for an `execute-api` policy
/// that grants a caller single datasets.
#[utoipa::path(
    get, path = "/datasets/{name}", tag = "catalogue", operation_id = "get_dataset",
    params(("name" = String, Path, description = "A dataset the caller may use.")),
    responses(
        (status = 200, description = "The dataset, its parameters (a bound one with the caller's value) and whether it can be looked up.", body = ExportDescription),
        (status = 404, description = "No such dataset, or not one the caller may use: the same answer.", body = ErrorBody),
    )
)]
pub(super) async fn dataset(
    State(queries): State<Arc<Queries>>,
    Caller(owner): Caller,
    Path(name): Path<String>,
) -> Result<Json<ExportDescription>, ApiError> {
    Ok(Json(queries.dataset(&owner, &name).await?))
}

/// This document.
#[utoipa::path(
    get, path = "/openapi.json", tag = "catalogue", operation_id = "get_contract",
    responses((status = 200, description = "The API's OpenAPI 3.1 description.", content_type = "application/json", body = Object))
)]
pub(super) async fn openapi_document(Caller(_): Caller) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        contract_text(),
    )
        .into_response()
}

/// The caller's quotas and its use of each today (UTC), from the access policy.
#[utoipa::path(
    get, path = "/quota", tag = "exports", operation_id = "get_quota",
    responses(
        (status = 200, description = "The caller's quotas and use.", body = QuotaView),
    )
)]
pub(super) async fn quota(
    State(queries): State<Arc<Queries>>,
    Caller(owner): Caller,
) -> Result<Json<QuotaView>, ApiError> {
    let principal = queries.access.principal(&owner).await?;
    Ok(Json(queries.quotas.view(&principal).await?))
}

/// The caller's webhook secret, to check the `Export-Signature` of the notices its webhook
/// deliveries receive. The same every time it is asked for, until the deployment's webhook
/// key is replaced; only its caller can read it.
#[utoipa::path(
    get, path = "/webhook-secret", tag = "exports", operation_id = "get_webhook_secret",
    responses(
        (status = 200, description = "The caller's webhook secret.", body = WebhookSecret),
        (status = 404, description = "This deployment delivers no webhooks.", body = ErrorBody),
    )
)]
pub(super) async fn webhook_secret(
    State(queries): State<Arc<Queries>>,
    Caller(owner): Caller,
) -> Result<Json<WebhookSecret>, ApiError> {
    let keys = queries
        .webhooks
        .keys
        .as_ref()
        .ok_or_else(ApiError::no_webhooks)?;
    Ok(Json(WebhookSecret {
        secret: crate::webhook::caller_secret(&keys.current, &owner.0),
        header: crate::webhook::SIGNATURE_HEADER.into(),
        tolerance_seconds: crate::webhook::DEFAULT_TOLERANCE_SECONDS,
    }))
}

/// Sends a test notice (`"event": "webhook.test"`) to `url`, signed with the caller's webhook
/// secret as every notice is, within the deployment's rules for webhooks (https to public
/// addresses on AWS), so a partner can try its receiver and its signature check before the
/// first run. Answers what the receiver answered.
#[utoipa::path(
    post, path = "/webhook-test", tag = "exports", operation_id = "test_webhook",
    request_body(content = WebhookTest, content_type = "application/json"),
    responses(
        (status = 200, description = "What the receiver answered, or why it did not (see `delivered`).", body = WebhookTestResult),
        (status = 400, description = "The URL is not one a webhook may be delivered to.", body = ErrorBody),
        (status = 404, description = "This deployment delivers no webhooks.", body = ErrorBody),
        BodyRefusals,
    )
)]
pub(super) async fn test_webhook(
    State(queries): State<Arc<Queries>>,
    Caller(owner): Caller,
    StrictJson(test): StrictJson<WebhookTest>,
) -> Result<Json<WebhookTestResult>, ApiError> {
    let keys = queries
        .webhooks
        .keys
        .as_ref()
        .ok_or_else(ApiError::no_webhooks)?;
    crate::webhook::destination(&test.url, queries.webhooks.reach)
        .map_err(|reason| ApiError::invalid("url", format!("'url': {reason}")))?;
    let now = queries.clock.now();
    let body = serde_json::to_vec(&serde_json::json!({
        "event": "webhook.test",
        "request_id": "00000000-0000-0000-0000-000000000000",
        "dataset": "webhook.test",
        "status": "SUCCEEDED",
        "sent_at": now,
    }))
    .expect("a test notice serialises");
    let post = crate::ports::WebhookPost {
        url: test.url.clone(),
        signature: keys.sign(&owner.0, now.div_euclid(1000), &body),
        body: body.into(),
        request_id: "00000000-0000-0000-0000-000000000000".into(),
    };
    match queries.webhook_sender.post(&post).await {
        Ok(status) => Ok(Json(WebhookTestResult {
            url: test.url,
            status: Some(status),
            delivered: (200..300).contains(&status),
            error: None,
        })),
        Err(crate::ports::PortError::Rejected(reason)) => {
            Err(ApiError::invalid("url", format!("'url': {reason}")))
        }
        // The receiver's failure, not the API's: answered as what the test found.
        Err(e) => Ok(Json(WebhookTestResult {
            url: test.url,
            status: None,
            delivered: false,
            error: Some(e.to_string()),
        })),
    }
}
