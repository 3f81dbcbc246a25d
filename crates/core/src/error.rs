//! The API's error: a status code and `{"error": {"code", "message", "field"?}}`.

use crate::ports::PortError;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// The warehouse statement the error is about (a lookup that timed out or failed).
    pub statement_id: Option<String>,
    /// Seconds until the request may succeed (a quota), sent as `Retry-After`.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            statement_id: None,
            retry_after: None,
        }
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn with_statement(mut self, statement_id: impl Into<String>) -> Self {
        self.statement_id = Some(statement_id.into());
        self
    }

    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message).with_field(field)
    }

    /// Unknown or someone else's: the same answer either way, so ids reveal nothing.
    pub fn job_not_found(request_id: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no export job {request_id}"),
        )
    }

    /// Unknown or someone else's, as for jobs.
    pub fn subscription_not_found(id: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no subscription {id}"),
        )
    }

    /// Webhook routes on a deployment with no key to sign notices with.
    pub fn no_webhooks() -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "this deployment delivers no webhooks: it has no key to sign them",
        )
    }

    /// The job's files are gone: the buckets' lifecycle rules removed the archive or the
    /// UNLOAD output, as they do days before the job's record expires.
    pub fn files_expired(request_id: &str) -> Self {
        ApiError::new(
            StatusCode::GONE,
            "expired",
            format!(
                "export job {request_id}'s files have expired and were removed; submit the export again for a new copy"
            ),
        )
    }

    /// A failure of the service itself, which retrying will not mend; the details are logged.
    pub fn internal() -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the request could not be completed; the failure has been logged",
        )
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn body(&self) -> serde_json::Value {
        #[derive(Serialize)]
        struct Inner<'a> {
            code: &'a str,
            message: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            field: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            statement_id: Option<&'a str>,
        }
        serde_json::json!({ "error": Inner {
            code: self.code,
            message: &self.message,
            field: self.field.as_deref(),
            statement_id: self.statement_id.as_deref(),
        } })
    }
}

/// A body that is not what its route reads: a 400 naming the field.
impl From<export_api::FieldError> for ApiError {
    fn from(e: export_api::FieldError) -> Self {
        ApiError::invalid(&e.field, e.message)
    }
}

/// A dependency's failure, as the caller sees it. Nothing here is the caller's doing (what the
/// caller sent is checked before any port is called), so each is a 5xx; only `Unavailable`
/// invites a retry.
impl From<PortError> for ApiError {
    fn from(e: PortError) -> Self {
        match e {
            PortError::Unavailable(message) | PortError::Throttled(message) => {
                tracing::warn!(error = %message, "dependency unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "a dependency is unavailable; retry later",
                )
            }
            PortError::NotFound(what) => {
                tracing::error!(missing = %what, "a dependency is missing something the job refers to");
                ApiError::internal()
            }
            PortError::Rejected(message) => {
                tracing::error!(error = %message, "a dependency refused the request");
                ApiError::internal()
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unavailable_dependency_asks_for_a_retry() {
        let status = |e: PortError| ApiError::from(e).status;
        assert_eq!(
            status(PortError::Unavailable("throttled".into())),
            StatusCode::SERVICE_UNAVAILABLE
        );
        // Neither is the caller's doing, and no retry mends them.
        assert_eq!(
            status(PortError::Rejected("AccessDenied".into())),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            status(PortError::NotFound("s3://b/k".into())),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        // What went wrong inside is logged, not told.
        let body = ApiError::from(PortError::Rejected("secret detail".into())).body();
        assert!(!body.to_string().contains("secret"), "{body}");
    }
}
