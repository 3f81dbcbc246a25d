//! The Data API's wire protocol (AWS JSON 1.1): one POST per operation, named by
//! `X-Amz-Target`, its faults as `__type` and message, and the inputs read as the API
//! Reference documents them.

use super::DataApi;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use export_core::catalog::SqlParameter;
use export_core::ports::PortError;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;
/// A Data API error: its `__type` and message.
pub(super) struct ApiFault {
    pub(super) status: StatusCode,
    pub(super) kind: &'static str,
    pub(super) message: String,
    pub(super) extra: Map<String, Value>,
}

pub(super) fn validation(message: impl Into<String>) -> ApiFault {
    ApiFault {
        status: StatusCode::BAD_REQUEST,
        kind: "ValidationException",
        message: message.into(),
        extra: Map::new(),
    }
}

pub(super) fn throttled(message: impl Into<String>) -> ApiFault {
    ApiFault {
        kind: "ThrottlingException",
        ..validation(message)
    }
}

pub(super) fn not_found(id: &str) -> ApiFault {
    ApiFault {
        status: StatusCode::BAD_REQUEST,
        kind: "ResourceNotFoundException",
        message: "Query does not exist.".into(),
        extra: Map::from_iter([("ResourceId".to_owned(), json!(id))]),
    }
}

impl From<PortError> for ApiFault {
    fn from(e: PortError) -> Self {
        match e {
            PortError::NotFound(what) => not_found(&what),
            PortError::Rejected(message) => validation(message),
            PortError::Throttled(message) => throttled(message),
            PortError::Unavailable(message) => ApiFault {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                kind: "InternalServerException",
                message,
                extra: Map::new(),
            },
        }
    }
}

pub(super) const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

impl IntoResponse for ApiFault {
    fn into_response(self) -> Response {
        let mut body = self.extra;
        body.insert("__type".into(), json!(self.kind));
        body.insert("message".into(), json!(self.message));
        (
            self.status,
            [
                ("content-type", CONTENT_TYPE),
                ("x-amzn-errortype", self.kind),
            ],
            Value::Object(body).to_string(),
        )
            .into_response()
    }
}

pub(super) async fn dispatch(
    State(api): State<Arc<DataApi>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let operation = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix("RedshiftData."))
        .unwrap_or("")
        .to_owned();
    let input: Map<String, Value> = match serde_json::from_slice(&body) {
        Ok(Value::Object(map)) => map,
        _ => {
            return ApiFault {
                kind: "SerializationException",
                ..validation("the request body is not a JSON object")
            }
            .into_response()
        }
    };
    *api.calls
        .lock()
        .expect("calls lock")
        .entry(operation.clone())
        .or_default() += 1;
    if let Some(quotas) = &api.quotas {
        if !quotas.admit(&operation) {
            return throttled("Rate exceeded").into_response();
        }
    }
    let wait = match wait_time(&input) {
        Ok(wait) => wait,
        Err(fault) => return fault.into_response(),
    };
    let result = match operation.as_str() {
        "ExecuteStatement" => api.execute(&input, wait).await,
        "DescribeStatement" => api.describe(&input, wait).await,
        "CancelStatement" => api.cancel(&input).await,
        "GetStatementResult" => api.result(&input, wait).await,
        other => Err(ApiFault {
            kind: "UnknownOperationException",
            ..validation(format!("operation '{other}' is not served here"))
        }),
    };
    match result {
        Ok(output) => ([("content-type", CONTENT_TYPE)], output.to_string()).into_response(),
        Err(fault) => fault.into_response(),
    }
}

/// `WaitTimeSeconds`: how long the call may wait for its statement to end, 1 to 30 seconds
/// ("Reduce API calls with long polling", Amazon Redshift Management Guide).
pub(super) fn wait_time(input: &Map<String, Value>) -> Result<Option<Duration>, ApiFault> {
    let Some(value) = input.get("WaitTimeSeconds") else {
        return Ok(None);
    };
    match value.as_u64() {
        Some(seconds @ 1..=30) => Ok(Some(Duration::from_secs(seconds))),
        _ => Err(validation(format!(
            "1 validation error detected: Value '{value}' at 'waitTimeSeconds' failed to satisfy constraint: Member must have value between 1 and 30"
        ))),
    }
}

pub(super) fn text<'a>(input: &'a Map<String, Value>, field: &str) -> Option<&'a str> {
    input
        .get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

pub(super) fn epoch_seconds(ms: i64) -> Value {
    json!(ms as f64 / 1000.0)
}

pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `Parameters` as the Data API takes them ("SqlParameter", Amazon Redshift Data API
/// Reference): each a `name` matching `[0-9a-zA-Z_]+` and a `value` of at least one
/// character, else a ValidationException.
pub(super) fn parameters(input: &Map<String, Value>) -> Result<Vec<SqlParameter>, ApiFault> {
    let Some(list) = input.get("Parameters") else {
        return Ok(Vec::new());
    };
    let list = list
        .as_array()
        .ok_or_else(|| validation("Parameters must be a list"))?;
    list.iter()
        .map(|p| {
            let name = p["name"].as_str().unwrap_or("");
            let value = p["value"].as_str().unwrap_or("");
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(validation(format!(
                    "1 validation error detected: Value '{name}' at 'parameters.name' failed to satisfy constraint: Member must satisfy regular expression pattern: [0-9a-zA-Z_]+"
                )));
            }
            if value.is_empty() {
                return Err(validation(
                    "1 validation error detected: Value at 'parameters.value' failed to satisfy constraint: Member must have length greater than or equal to 1",
                ));
            }
            Ok(SqlParameter {
                name: name.to_owned(),
                value: value.to_owned(),
            })
        })
        .collect()
}
