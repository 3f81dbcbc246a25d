//! What the four `main`s share: JSON logs, API Gateway requests into the API's router with the
//! caller's IAM identity, and SQS batches into a service with partial batch failures.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use axum::body::Body;
use axum::Router;
use export_core::http::Caller;
use export_core::identity::{CallerIdentity, NoOwner, RoleOwner};
use export_core::service::{consume, Consumer, Delivered};
use export_core::ApiError;
use lambda_http::request::RequestContext;
use lambda_http::RequestExt;
use lambda_runtime::LambdaEvent;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tower::ServiceExt;
use tracing::Instrument;

pub use lambda_runtime::Error;

/// One JSON object per line on stdout (CloudWatch Logs), with the fields of the current span
/// (the Lambda request id, and the job's request id where one is known) flattened in.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| {
            tracing_subscriber::EnvFilter::try_new(
                std::env::var("AWS_LAMBDA_LOG_LEVEL")
                    .unwrap_or_else(|_| "info".into())
                    .to_lowercase(),
            )
        })
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_env_filter(filter)
        .try_init();
}

/// Answers one API Gateway request with `router`. API Gateway has already checked the SigV4
/// signature (IAM auth); the identity it reports, by `role_owner`'s rule, becomes the
/// [`Caller`].
pub async fn answer(
    router: Router,
    role_owner: RoleOwner,
    request: lambda_http::Request,
) -> http::Response<Body> {
    let caller = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(context)) => role_owner.owner_of(&CallerIdentity {
            user_arn: context.identity.user_arn.as_deref(),
            cognito_identity_id: context.identity.cognito_identity_id.as_deref(),
        }),
        _ => Err(NoOwner::Anonymous),
    };
    let api_request_id = request
        .request_context_ref()
        .and_then(|c| match c {
            RequestContext::ApiGatewayV1(context) => context.request_id.clone(),
            _ => None,
        })
        .unwrap_or_default();
    // The job this request is about, when its path or the sample's header names one; the
    // receiver logs the id it assigns to a new job itself.
    let request_id = request
        .path_parameters_ref()
        .and_then(|p| p.first("id"))
        .or_else(|| {
            request
                .headers()
                .get("requestid")
                .and_then(|v| v.to_str().ok())
        })
        .unwrap_or("")
        .to_owned();
    let span = tracing::info_span!(
        "request",
        api_request_id = %api_request_id,
        request_id = %request_id,
        method = %request.method(),
        path = %request.raw_http_path(),
    );
    async move {
        let owner = match caller {
            Ok(owner) => owner,
            Err(refusal) => {
                if refusal == NoOwner::Anonymous {
                    tracing::warn!(
                        "request without an IAM identity; is the route's authorisation AWS_IAM?"
                    );
                }
                return axum::response::IntoResponse::into_response(ApiError::forbidden(
                    refusal.message(),
                ));
            }
        };
        // Route on the resource API Gateway matched (`/exports/{id}`), filled in with its path
        // parameters: the event's `path` carries a custom domain's base path mapping
        // (`/reports/exports/…`), and lambda_http adds the stage in front of it as well.
        let path = route_path(&request).unwrap_or_else(|| request.raw_http_path().to_owned());
        let (mut parts, body) = request.into_parts();
        if path.starts_with('/') {
            let query = parts
                .uri
                .query()
                .map(|q| format!("?{q}"))
                .unwrap_or_default();
            match format!("{path}{query}").parse() {
                Ok(uri) => parts.uri = uri,
                Err(_) => {
                    return axum::response::IntoResponse::into_response(ApiError::invalid(
                        "",
                        "the request path is not a valid URI",
                    ))
                }
            }
        }
        parts.extensions.insert(Caller(owner));
        let request = http::Request::from_parts(parts, Body::new(body));
        let response = router.oneshot(request).await.unwrap_or_else(|e| match e {});
        // A new job's id is known only now: its status URL is `/exports/<id>`.
        if let Some(id) = response
            .headers()
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|l| l.strip_prefix("/exports/"))
        {
            tracing::Span::current().record("request_id", id);
        }
        let response = within_response_limit(response).await;
        tracing::info!(status = response.status().as_u16(), "answered");
        response
    }
    .instrument(span)
    .await
}

/// The most a synchronous invocation may return: "Lambda quotas" (AWS Lambda Developer Guide)
/// gives 6 MB for a synchronous response; past it the invocation fails and API Gateway answers
/// 502. A lookup may answer up to 10,000 rows, which can be more.
pub const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;

/// `response`, or a 422 that says why when it would be more than a function may return. The
/// proxy integration carries the body as a JSON string (escaped, or base64 when not text) beside
/// the headers, so the measure is that, not the body alone.
async fn within_response_limit(response: http::Response<Body>) -> http::Response<Body> {
    let (parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::error!(error = %e, "could not read the answer's body");
            return axum::response::IntoResponse::into_response(ApiError::internal());
        }
    };
    let size = proxy_response_size(&parts.headers, &bytes);
    if size <= MAX_RESPONSE_BYTES {
        return http::Response::from_parts(parts, Body::from(bytes));
    }
    tracing::warn!(
        size,
        status = parts.status.as_u16(),
        "the answer is too large for a function to return"
    );
    axum::response::IntoResponse::into_response(ApiError::new(
        http::StatusCode::UNPROCESSABLE_ENTITY,
        "answer_too_large",
        format!(
            "the answer would be {size} bytes as the function returns it, more than the {MAX_RESPONSE_BYTES} a function may return; ask for fewer rows, or export the dataset with POST /exports"
        ),
    ))
}

/// The size of the proxy integration's response for `headers` and `body`, a little over.
fn proxy_response_size(headers: &http::HeaderMap, body: &[u8]) -> usize {
    let body = match std::str::from_utf8(body) {
        Ok(text) => serde_json::to_string(text).map_or(usize::MAX, |json| json.len()),
        Err(_) => body.len().div_ceil(3) * 4 + 2,
    };
    // Each header is written twice (`headers` and `multiValueHeaders`), quoted.
    let headers: usize = headers
        .iter()
        .map(|(name, value)| 2 * (name.as_str().len() + value.len() + 8))
        .sum();
    body.saturating_add(headers).saturating_add(512)
}

/// What a path parameter's value may hold unencoded in a path segment: RFC 3986's unreserved
/// characters; a greedy `{name+}` parameter spans segments, so keeps its `/` too.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
const SEGMENTS: &AsciiSet = &SEGMENT.remove(b'/');

/// The request's path as the API's routes know it: `requestContext.resourcePath` with each
/// `{name}` (or greedy `{name+}`) replaced by its percent-encoded path parameter. API Gateway
/// fills both in the same for a call through its own endpoint and for one through a custom
/// domain with a base path mapping, where `path` also has the mapping's base path in front
/// ("Set up Lambda proxy integrations in API Gateway": `resource`/`resourcePath` name the
/// resource, `path` the request's path). None if the event has no resource path.
fn route_path(request: &lambda_http::Request) -> Option<String> {
    let Some(RequestContext::ApiGatewayV1(context)) = request.request_context_ref() else {
        return None;
    };
    let resource = context.resource_path.as_deref()?;
    let parameters = request.path_parameters_ref();
    let mut path = String::new();
    for segment in resource.split('/').skip(1) {
        path.push('/');
        match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            None => path.push_str(segment),
            Some(name) => {
                let (name, keep) = match name.strip_suffix('+') {
                    Some(name) => (name, SEGMENTS),
                    None => (name, SEGMENT),
                };
                let value = parameters?.first(name)?;
                path.extend(utf8_percent_encode(value, keep));
            }
        }
    }
    Some(if path.is_empty() { "/".into() } else { path })
}

/// Serves API Gateway events with `router` until the runtime stops.
pub async fn serve_http(router: Router, role_owner: RoleOwner) -> Result<(), Error> {
    lambda_http::run(tower::service_fn(move |request| {
        let router = router.clone();
        async move { Ok::<_, Infallible>(answer(router, role_owner, request).await) }
    }))
    .await
}

/// Handles every message of the batch (concurrently) and reports the ones to deliver again,
/// so one bad message never re-runs the others (`ReportBatchItemFailures`). A message that
/// fails on its `max_receives`-th delivery fails its job first ([`consume`]); it is still
/// reported, so the queue moves it to the dead-letter queue where an alarm sees it.
pub async fn handle_batch(
    consumer: &dyn Consumer,
    event: SqsEvent,
    max_receives: u32,
    deadline: Option<Instant>,
) -> SqsBatchResponse {
    let outcomes = futures::future::join_all(
        event
            .records
            .iter()
            .map(|message| handle_message(consumer, message, max_receives, deadline)),
    )
    .await;
    let mut response = SqsBatchResponse::default();
    for (message, delivered) in event.records.iter().zip(outcomes) {
        if !delivered.acknowledges() {
            response.add_failure(message.message_id.clone().unwrap_or_default());
        }
    }
    response
}

async fn handle_message(
    consumer: &dyn Consumer,
    message: &SqsMessage,
    max_receives: u32,
    deadline: Option<Instant>,
) -> Delivered {
    let body = message.body.as_deref().unwrap_or("");
    let message_id = message.message_id.as_deref().unwrap_or("");
    // SQS counts deliveries; the event source passes the count on with each record.
    let receives: u32 = message
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    consume(consumer, body, receives, max_receives, deadline)
        .instrument(tracing::info_span!("sqs", message_id))
        .await
}

/// When the invocation is stopped: the runtime API's `Lambda-Runtime-Deadline-Ms`, in
/// milliseconds since the epoch ("Using the Lambda runtime API for custom runtimes"), as an
/// instant of this process's clock.
fn invocation_deadline(deadline_ms: u64) -> Option<Instant> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_millis() as u64;
    (deadline_ms > 0)
        .then(|| Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms)))
}

/// Serves SQS batches with `consumer` until the runtime stops.
pub async fn serve_queue(consumer: Arc<dyn Consumer>, max_receives: u32) -> Result<(), Error> {
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: LambdaEvent<SqsEvent>| {
            let consumer = consumer.clone();
            async move {
                let deadline = invocation_deadline(event.context.deadline);
                Ok::<_, Error>(
                    handle_batch(consumer.as_ref(), event.payload, max_receives, deadline).await,
                )
            }
        },
    ))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use export_core::testing::PickyConsumer;

    fn message(id: &str, body: &str, receives: u32) -> SqsMessage {
        let mut message = SqsMessage::default();
        message.message_id = Some(id.to_owned());
        message.body = Some(body.to_owned());
        message
            .attributes
            .insert("ApproximateReceiveCount".into(), receives.to_string());
        message
    }

    fn json_response(body: String) -> http::Response<Body> {
        http::Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap()
    }

    #[tokio::test]
    async fn an_answer_too_large_for_a_function_is_a_422_not_a_502() {
        let small = within_response_limit(json_response("{\"rows\":[]}".into())).await;
        assert_eq!(small.status(), 200);
        let body = axum::body::to_bytes(small.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(&body[..], b"{\"rows\":[]}");

        // 4.5 MB of text whose quotes the proxy's JSON escapes: over 6 MB as returned.
        let quoted = format!("[{}]", vec!["\"\""; 1_500_000].join(","));
        assert!(quoted.len() < MAX_RESPONSE_BYTES);
        for body in [quoted, "x".repeat(MAX_RESPONSE_BYTES)] {
            let refused = within_response_limit(json_response(body)).await;
            assert_eq!(refused.status(), 422);
            let body = axum::body::to_bytes(refused.into_body(), usize::MAX)
                .await
                .unwrap();
            let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(error["error"]["code"], "answer_too_large", "{error}");
        }
    }

    #[tokio::test]
    async fn only_failed_messages_are_reported_and_the_last_delivery_gives_up() {
        let consumer = PickyConsumer::default();
        let mut event = SqsEvent::default();
        event.records = vec![
            message("m1", "good", 1),
            message("m2", "bad-early", 2),
            message("m3", "bad-last", 5),
            message("m4", "good-again", 5),
        ];
        let response = handle_batch(&consumer, event, 5, None).await;
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(failed, ["m2", "m3"]);
        assert_eq!(consumer.given_up(), ["bad-last"]);
    }
}
