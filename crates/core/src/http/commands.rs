//! Commands: submitting an export and cancelling one.

use super::*;

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
pub(super) async fn submit(
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
