//! What the handlers read from a request: the caller, a JSON body, a job id, the
//! `Idempotency-Key` header.

use super::*;

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

/// A JSON object body: `application/json`, at most [`MAX_BODY_BYTES`], well-formed, no key
/// named twice in any object.
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
        let value = super::strict_json::parse(&bytes).map_err(|e| match e {
            super::strict_json::StrictJsonError::Syntax(e) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("the body is not valid JSON: {e}"),
            ),
            super::strict_json::StrictJsonError::Duplicate(path) => ApiError::invalid(
                &path,
                format!("'{path}' is named twice in the body; name each field once"),
            ),
        })?;
        Ok(JsonBody(value))
    }
}

pub(super) fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
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
pub(super) struct IdempotencyKeyHeader {
    /// Retries with the same key and body answer the first job; another body with the same
    /// key is a 409.
    #[param(rename = "Idempotency-Key")]
    idempotency_key: Option<String>,
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
