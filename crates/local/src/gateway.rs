//! The local gateway: the API's router behind SigV4 verification (what API Gateway's IAM
//! auth does on AWS), plus the route that serves presigned downloads.

use crate::objects::{FsObjectStore, LinkError};
use crate::sigv4::Verifier;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use export_core::domain::ObjectRef;
use export_core::http::{Caller, MAX_BODY_BYTES};
use export_core::ports::{ObjectStore, PortError};
use export_core::ApiError;
use http::{header, StatusCode};
use serde::Deserialize;
use std::sync::Arc;

/// `api` behind signature checks, and `/objects/…` for presigned links.
pub fn router(api: Router, verifier: Arc<Verifier>, objects: FsObjectStore) -> Router {
    let signed = api.layer(axum::middleware::from_fn_with_state(
        verifier,
        require_signature,
    ));
    let downloads = Router::new()
        .route("/objects/{bucket}/{*key}", get(serve_object))
        .with_state(objects);
    signed.merge(downloads)
}

async fn require_signature(
    State(verifier): State<Arc<Verifier>>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    // The signature covers the body, so it is read here; the same limit as the handlers'.
    let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(e) if is_length_limit(&e) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body is larger than {MAX_BODY_BYTES} bytes"),
            )
            .into_response();
        }
        Err(e) => {
            return ApiError::invalid("", format!("the body could not be read: {e}"))
                .into_response()
        }
    };
    match verifier.verify(
        &parts.method,
        &parts.uri,
        &parts.headers,
        &bytes,
        chrono::Utc::now(),
    ) {
        Ok(owner) => {
            let mut request = Request::from_parts(parts, Body::from(bytes));
            request.extensions_mut().insert(Caller(owner));
            next.run(request).await
        }
        Err(message) => {
            tracing::info!(method = %parts.method, path = %parts.uri.path(), reason = %message, "request refused");
            ApiError::forbidden(message).into_response()
        }
    }
}

/// Whether reading a body failed because it was over the limit (not for any other reason).
fn is_length_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

#[derive(Deserialize)]
struct LinkQuery {
    expires: Option<i64>,
    filename: Option<String>,
    signature: Option<String>,
}

async fn serve_object(
    State(objects): State<FsObjectStore>,
    Path((bucket, key)): Path<(String, String)>,
    link: Result<Query<LinkQuery>, QueryRejection>,
) -> Response {
    let Ok(Query(link)) = link else {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "invalid_link",
            "the download link is not valid",
        )
        .into_response();
    };
    let object = ObjectRef::new(bucket, key);
    let (Some(expires), Some(file_name), Some(signature)) =
        (link.expires, link.filename, link.signature)
    else {
        return ApiError::forbidden(
            "the link is incomplete: expires, filename and signature are required",
        )
        .into_response();
    };
    match objects.verify_link(
        &object,
        expires,
        &file_name,
        &signature,
        chrono::Utc::now().timestamp(),
    ) {
        Ok(()) => {}
        Err(LinkError::Expired) => {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "link_expired",
                "the download link has expired; ask for a fresh one",
            )
            .into_response()
        }
        Err(LinkError::BadSignature) => {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "invalid_link",
                "the download link is not valid",
            )
            .into_response()
        }
    }
    match objects.get(&object).await {
        Ok(stream) => {
            let disposition = format!(
                "attachment; filename=\"{}\"",
                file_name.replace(['"', '\\', '\r', '\n'], "_")
            );
            (
                [
                    (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                    (header::CONTENT_DISPOSITION, disposition),
                ],
                Body::from_stream(stream),
            )
                .into_response()
        }
        Err(PortError::NotFound(_)) => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "the object no longer exists",
        )
        .into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}
