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

/// A JSON body read as `T`: `application/json`, at most [`MAX_BODY_BYTES`], well-formed, no
/// key named twice in any object, no field `T` does not have; an error names its field.
pub struct StrictJson<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for StrictJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _: &S) -> Result<Self, Self::Rejection> {
        if media_type(&request) != MediaType::Json {
            return Err(unsupported(&request, "application/json"));
        }
        read_json(request).await.map(StrictJson)
    }
}

/// `POST /exports`'s body: JSON, or a form whose parameter values are text (see [`super::form`]).
pub(super) enum ExportBody {
    Json(ExportRequest),
    /// The request, and its parameters as text, by name.
    Form(ExportRequest, Vec<(String, String)>),
}

impl<S: Send + Sync> FromRequest<S> for ExportBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, _: &S) -> Result<Self, Self::Rejection> {
        read_export(request, None).await
    }
}

/// `POST /datasets/{name}/exports`'s body: as `POST /exports`'s, the dataset named by the path.
pub(super) struct DatasetExportBody(pub ExportBody);

impl<S: Send + Sync> FromRequest<S> for DatasetExportBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let Path(dataset) = Path::<String>::from_request_parts(&mut parts, state)
            .await
            .map_err(|_| ApiError::invalid("name", "the dataset's name does not decode"))?;
        read_export(Request::from_parts(parts, body), Some(&dataset))
            .await
            .map(DatasetExportBody)
    }
}

async fn read_export(request: Request, dataset: Option<&str>) -> Result<ExportBody, ApiError> {
    match (media_type(&request), dataset) {
        (MediaType::Json, None) => read_json(request).await.map(ExportBody::Json),
        (MediaType::Json, Some(dataset)) => read_json::<DatasetExportRequest>(request)
            .await
            .map(|body| ExportBody::Json(body.of(dataset))),
        (MediaType::Form, _) => {
            let body = limited_body(request).await?;
            let (request, text) = super::form::export_request_from_form(&body, dataset)?;
            Ok(ExportBody::Form(request, text))
        }
        (MediaType::Other, _) => Err(unsupported(
            &request,
            "application/json or application/x-www-form-urlencoded",
        )),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MediaType {
    Json,
    Form,
    Other,
}

fn media_type(request: &Request) -> MediaType {
    let essence = content_type(request).split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        MediaType::Json
    } else if essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        MediaType::Form
    } else {
        MediaType::Other
    }
}

fn content_type(request: &Request) -> &str {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn unsupported(request: &Request, expected: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!(
            "the body must be {expected}, not '{}'",
            content_type(request)
        ),
    )
}

/// The body's bytes, refused past [`MAX_BODY_BYTES`] (before reading, when it says so).
async fn limited_body(request: Request) -> Result<bytes::Bytes, ApiError> {
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
    axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(|_| too_large())
}

async fn read_json<T: serde::de::DeserializeOwned>(request: Request) -> Result<T, ApiError> {
    let body = limited_body(request).await?;
    export_api::from_slice(&body).map_err(|e| match e {
        BodyError::Syntax(e) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not valid JSON: {e}"),
        ),
        BodyError::Field(e) => e.into(),
    })
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

#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Read by `wait_of`; this is its description.
pub(super) struct WaitParam {
    /// Wait up to this long (`10s`, `500ms`; at most 25 s) for the job to end: answered 200
    /// with the finished job and its link if it does, else 202 as without it.
    wait: Option<String>,
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
