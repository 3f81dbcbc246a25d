//! SDK failures in the ports' terms: what a retry may fix is `Unavailable`, the rest is not.

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use export_core::ports::PortError;

/// Error codes the services answer with when a caller exceeds their rate or a quota.
const THROTTLING_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "SlowDown",
    "RequestThrottled",
];

/// Error codes the services answer with when they are busy, not when the request is wrong.
const TRANSIENT_CODES: &[&str] = &[
    "ServiceUnavailable",
    "InternalServerError",
    "InternalError",
    "InternalFailure",
    "ActiveStatementsExceededException",
    "TransactionConflictException",
    "TransactionInProgressException",
];

/// Maps an SDK error from `operation` to a [`PortError`].
pub(crate) fn port_error<E>(operation: &str, error: SdkError<E>) -> PortError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match &error {
        SdkError::ServiceError(service) => {
            let inner = service.err();
            let code = inner.code().unwrap_or("Unknown");
            let message = inner.message().unwrap_or("");
            let status = service.raw().status().as_u16();
            let text = format!("{operation}: {code}: {message} (HTTP {status})");
            if THROTTLING_CODES.contains(&code) {
                PortError::Throttled(text)
            } else if TRANSIENT_CODES.contains(&code) || service.raw().status().is_server_error() {
                PortError::Unavailable(text)
            } else {
                PortError::Rejected(text)
            }
        }
        // Timeouts, connection failures, unreadable responses: the request may well succeed
        // if tried again.
        other => PortError::Unavailable(format!("{operation}: {}", error_chain(other))),
    }
}

/// The error and its sources on one line (the SDK's `Display` alone says only "dispatch failure").
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}
