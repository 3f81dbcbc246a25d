//! `/subscriptions`: exports on a schedule, each caller's own.

use super::*;
use crate::service::Subscriptions;

/// The subscription id in the path: a UUID, or no such subscription.
pub(super) struct SubscriptionId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for SubscriptionId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::subscription_not_found("(undecodable id)"))?;
        match uuid::Uuid::parse_str(&id) {
            Ok(_) => Ok(SubscriptionId(id)),
            Err(_) => Err(ApiError::subscription_not_found(&id)),
        }
    }
}

/// Subscribes: the export is checked as each run will be (access, parameters with relative
/// dates read now, deliveries) and runs from the schedule's next time.
#[utoipa::path(
    post, path = "/subscriptions", tag = "subscriptions", operation_id = "create_subscription",
    request_body(content = SubscriptionRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Subscribed.", body = SubscriptionView,
         headers(("Location" = String, description = "The subscription's route."))),
        (status = 400, description = "The body, the dataset, a parameter, the schedule or the time zone is invalid; `field` names it.", body = ErrorBody),
        (status = 409, description = "The caller holds as many subscriptions as it may.", body = ErrorBody),
        super::commands::BodyRefusals,
    )
)]
pub(super) async fn create_subscription(
    State(subscriptions): State<Arc<Subscriptions>>,
    Caller(owner): Caller,
    StrictJson(request): StrictJson<SubscriptionRequest>,
) -> Result<Response, ApiError> {
    let view = subscriptions.create(&owner, request).await?;
    let location = format!("/subscriptions/{}", view.subscription_id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(view),
    )
        .into_response())
}

/// The caller's subscriptions, oldest first.
#[utoipa::path(
    get, path = "/subscriptions", tag = "subscriptions", operation_id = "list_subscriptions",
    responses((status = 200, description = "The caller's subscriptions.", body = SubscriptionList))
)]
pub(super) async fn list_subscriptions(
    State(subscriptions): State<Arc<Subscriptions>>,
    Caller(owner): Caller,
) -> Result<Json<SubscriptionList>, ApiError> {
    Ok(Json(SubscriptionList {
        subscriptions: subscriptions.list(&owner).await?,
    }))
}

/// One subscription.
#[utoipa::path(
    get, path = "/subscriptions/{id}", tag = "subscriptions", operation_id = "get_subscription",
    params(("id" = String, Path, description = "The subscription's id.")),
    responses(
        (status = 200, description = "The subscription.", body = SubscriptionView),
        (status = 404, description = "No such subscription of the caller's.", body = ErrorBody),
    )
)]
pub(super) async fn get_subscription(
    State(subscriptions): State<Arc<Subscriptions>>,
    Caller(owner): Caller,
    SubscriptionId(id): SubscriptionId,
) -> Result<Json<SubscriptionView>, ApiError> {
    Ok(Json(subscriptions.get(&owner, &id).await?))
}

/// Stops its runs until it is resumed; runs due meanwhile are not made.
#[utoipa::path(
    post, path = "/subscriptions/{id}/pause", tag = "subscriptions", operation_id = "pause_subscription",
    params(("id" = String, Path, description = "The subscription's id.")),
    responses(
        (status = 200, description = "Paused.", body = SubscriptionView),
        (status = 404, description = "No such subscription of the caller's.", body = ErrorBody),
    )
)]
pub(super) async fn pause_subscription(
    State(subscriptions): State<Arc<Subscriptions>>,
    Caller(owner): Caller,
    SubscriptionId(id): SubscriptionId,
) -> Result<Json<SubscriptionView>, ApiError> {
    Ok(Json(subscriptions.pause(&owner, &id).await?))
}

/// Runs it again, from the schedule's first time after now.
#[utoipa::path(
    post, path = "/subscriptions/{id}/resume", tag = "subscriptions", operation_id = "resume_subscription",
    params(("id" = String, Path, description = "The subscription's id.")),
    responses(
        (status = 200, description = "Resumed.", body = SubscriptionView),
        (status = 404, description = "No such subscription of the caller's.", body = ErrorBody),
    )
)]
pub(super) async fn resume_subscription(
    State(subscriptions): State<Arc<Subscriptions>>,
    Caller(owner): Caller,
    SubscriptionId(id): SubscriptionId,
) -> Result<Json<SubscriptionView>, ApiError> {
    Ok(Json(subscriptions.resume(&owner, &id).await?))
}

/// Ends the subscription; the jobs its runs made are left as they are.
#[utoipa::path(
    delete, path = "/subscriptions/{id}", tag = "subscriptions", operation_id = "delete_subscription",
    params(("id" = String, Path, description = "The subscription's id.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, description = "No such subscription of the caller's.", body = ErrorBody),
    )
)]
pub(super) async fn delete_subscription(
    State(subscriptions): State<Arc<Subscriptions>>,
    Caller(owner): Caller,
    SubscriptionId(id): SubscriptionId,
) -> Result<StatusCode, ApiError> {
    subscriptions.delete(&owner, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Its runs, newest first: when each was due, and its job (`GET /exports/{id}`) or why it
/// made none.
#[utoipa::path(
    get, path = "/subscriptions/{id}/runs", tag = "subscriptions", operation_id = "list_subscription_runs",
    params(("id" = String, Path, description = "The subscription's id.")),
    responses(
        (status = 200, description = "Its runs.", body = SubscriptionRuns),
        (status = 404, description = "No such subscription of the caller's.", body = ErrorBody),
    )
)]
pub(super) async fn subscription_runs(
    State(subscriptions): State<Arc<Subscriptions>>,
    Caller(owner): Caller,
    SubscriptionId(id): SubscriptionId,
) -> Result<Json<SubscriptionRuns>, ApiError> {
    Ok(Json(SubscriptionRuns {
        runs: subscriptions.runs(&owner, &id).await?,
    }))
}
