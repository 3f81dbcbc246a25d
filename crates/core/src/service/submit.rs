//! The command side (the `receiver`): accept an export, cancel one.

use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::domain::{
    Archive, Compression, Format, Job, JobEvent, JobStatus, JobUpdate, Owner, Transition,
};
use crate::error::ApiError;
use crate::messages::Message;
use crate::ports::{
    ControlTable, CreateOutcome, IdempotencyKey, PortError, QueueSender, Warehouse,
};
use http::StatusCode;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// At most this many notification addresses per request.
pub const MAX_NOTIFY: usize = 10;
/// Longest `Idempotency-Key` accepted.
pub const MAX_IDEMPOTENCY_KEY: usize = 128;

/// An export request as the caller sent it, checked for shape (not yet against the catalogue).
#[derive(Clone, Debug, PartialEq)]
pub struct ExportRequest {
    pub dataset: String,
    pub params: Map<String, Value>,
    pub format: Format,
    pub compression: Compression,
    pub archive: Archive,
    pub notify: Vec<String>,
}

impl ExportRequest {
    /// Reads `{dataset, params, format?, compression?, archive?, notify?}`; anything else is
    /// refused by name, so a typo never silently falls back to a default.
    pub fn from_json(body: &Value) -> Result<ExportRequest, ApiError> {
        let Value::Object(fields) = body else {
            return Err(ApiError::invalid("", "the body must be a JSON object"));
        };
        const KNOWN: [&str; 6] = [
            "dataset",
            "params",
            "format",
            "compression",
            "archive",
            "notify",
        ];
        if let Some(extra) = fields.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(ApiError::invalid(
                extra,
                format!("unknown field '{extra}' (expected: {})", KNOWN.join(", ")),
            ));
        }
        let dataset = match fields.get("dataset") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(_) => {
                return Err(ApiError::invalid(
                    "dataset",
                    "'dataset' must be a non-empty string",
                ))
            }
            None => return Err(ApiError::invalid("dataset", "'dataset' is required")),
        };
        let params = match fields.get("params") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => {
                return Err(ApiError::invalid(
                    "params",
                    "'params' must be a JSON object",
                ))
            }
        };
        fn choice<T: std::str::FromStr<Err = String>>(
            fields: &Map<String, Value>,
            name: &str,
            default: T,
        ) -> Result<T, ApiError> {
            match fields.get(name) {
                None | Some(Value::Null) => Ok(default),
                Some(Value::String(s)) => s
                    .parse()
                    .map_err(|rule| ApiError::invalid(name, format!("'{name}' {rule}"))),
                Some(_) => Err(ApiError::invalid(
                    name,
                    format!("'{name}' must be a string"),
                )),
            }
        }
        let format = choice(fields, "format", Format::Csv)?;
        let compression = choice(fields, "compression", Compression::None)?;
        let archive = choice(fields, "archive", Archive::Zip)?;
        if format == Format::Parquet && compression != Compression::None {
            return Err(ApiError::invalid(
                "compression",
                "parquet output is compressed internally; 'compression' must be none",
            ));
        }
        let notify = match fields.get("notify") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => {
                if items.len() > MAX_NOTIFY {
                    return Err(ApiError::invalid(
                        "notify",
                        format!("at most {MAX_NOTIFY} addresses"),
                    ));
                }
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| match v {
                        Value::String(s) if is_email_address(s) => Ok(s.clone()),
                        _ => Err(ApiError::invalid(
                            &format!("notify[{i}]"),
                            format!("'notify[{i}]' is not a valid email address"),
                        )),
                    })
                    .collect::<Result<_, _>>()?
            }
            Some(_) => {
                return Err(ApiError::invalid(
                    "notify",
                    "'notify' must be a list of email addresses",
                ))
            }
        };
        Ok(ExportRequest {
            dataset,
            params,
            format,
            compression,
            archive,
            notify,
        })
    }

    /// A digest of what the request asks for (not how it was spelled), to recognise a retry.
    pub fn digest(&self) -> String {
        let canonical = serde_json::json!({
            "dataset": self.dataset,
            "params": self.params,
            "format": self.format,
            "compression": self.compression,
            "archive": self.archive,
            "notify": self.notify,
        });
        hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
    }
}

/// A deliberately plain check: one `@`, no spaces or angle brackets, a dotted domain.
pub fn is_email_address(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    s.len() <= 254
        && !local.is_empty()
        && local.len() <= 64
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && s.chars().all(|c| {
            c.is_ascii_graphic()
                && !matches!(
                    c,
                    '<' | '>' | '"' | ',' | ';' | '(' | ')' | '\\' | '[' | ']'
                )
        })
        && !domain.contains('@')
}

/// The answer to a submission.
#[derive(Clone, Debug, PartialEq)]
pub struct Submitted {
    pub request_id: String,
    pub status: JobStatus,
    /// True when an `Idempotency-Key` matched an earlier identical request.
    pub replayed: bool,
}

/// Accepts and cancels jobs. Shared state of the `receiver`.
pub struct Submissions {
    pub catalog: Arc<Catalog>,
    pub control: Arc<dyn ControlTable>,
    pub queue: Arc<dyn QueueSender>,
    pub warehouse: Arc<dyn Warehouse>,
    pub clock: Arc<dyn Clock>,
}

impl Submissions {
    /// Validates the request fully, records the job and queues it. Anything refused leaves no
    /// row and no message; a queue failure removes the row it had just written.
    pub async fn submit(
        &self,
        owner: &Owner,
        request: ExportRequest,
        idempotency_key: Option<&str>,
    ) -> Result<Submitted, ApiError> {
        let export = self.catalog.get(&request.dataset).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "unknown_dataset",
                format!(
                    "no export named '{}' (available: {})",
                    request.dataset,
                    self.catalog.names().join(", ")
                ),
            )
            .with_field("dataset")
        })?;
        // Checking the values is enough here; the processor renders the statement.
        export.bind(&request.params).map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_parameter", e.message)
                .with_field(e.field)
        })?;
        let key = idempotency_key
            .map(|k| {
                if k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY || !k.chars().all(|c| c.is_ascii_graphic()) {
                    Err(ApiError::invalid(
                        "Idempotency-Key",
                        format!("the Idempotency-Key header must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters"),
                    ))
                } else {
                    Ok(IdempotencyKey {
                        owner: owner.clone(),
                        key: k.to_owned(),
                        request_digest: request.digest(),
                    })
                }
            })
            .transpose()?;

        let now = self.clock.now();
        let job = Job {
            request_id: uuid::Uuid::new_v4().to_string(),
            owner: owner.clone(),
            dataset: request.dataset,
            params: request.params,
            format: request.format,
            compression: request.compression,
            archive: request.archive,
            notify: request.notify,
            status: JobStatus::Queued,
            created_at: now,
            updated_at: now,
            statement_id: None,
            unload_attempt: 0,
            rows: None,
            bytes: None,
            archive_object: None,
            error: None,
            notified_at: None,
        };
        let event = JobEvent::new(
            now,
            "submitted",
            JobStatus::Queued.as_str(),
            format!("export {} accepted", job.dataset),
        );
        match self.control.create_job(&job, &event, key.as_ref()).await? {
            CreateOutcome::Created => {}
            CreateOutcome::KeyUsed {
                request_id,
                same_request: true,
            } => {
                // The first request's job is gone only if queueing it failed and it was
                // removed: there is nothing to return, so the caller should retry.
                let status = self
                    .control
                    .get_job(&request_id)
                    .await?
                    .map(|j| j.status)
                    .ok_or_else(|| {
                        ApiError::from(PortError::Unavailable(format!(
                            "job {request_id} was not queued"
                        )))
                    })?;
                return Ok(Submitted {
                    request_id,
                    status,
                    replayed: true,
                });
            }
            CreateOutcome::KeyUsed { .. } => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "idempotency_key_reused",
                    "this Idempotency-Key was already used for a different request",
                )
                .with_field("Idempotency-Key"))
            }
        }
        if let Err(e) = self
            .queue
            .send(&Message::start(&job.request_id), Duration::ZERO)
            .await
        {
            if let Err(cleanup) = self.control.delete_job(&job.request_id, key.as_ref()).await {
                tracing::error!(request_id = %job.request_id, error = %cleanup, "could not remove a job that was never queued");
            }
            return Err(e.into());
        }
        tracing::info!(request_id = %job.request_id, dataset = %job.dataset, owner = %owner, "job queued");
        Ok(Submitted {
            request_id: job.request_id,
            status: JobStatus::Queued,
            replayed: false,
        })
    }

    /// Cancels a job that has not finished. A running statement is asked to stop; the job is
    /// CANCELLED whether or not the warehouse still had it.
    pub async fn cancel(&self, owner: &Owner, request_id: &str) -> Result<Job, ApiError> {
        // The conditional write can lose to a worker moving the job on; re-read and retry.
        for _ in 0..5 {
            let job = super::owned_job(self.control.as_ref(), owner, request_id).await?;
            let Some(cancel) = Transition::cancel(job.status) else {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "already_finished",
                    format!("export job {request_id} is already {}", job.status),
                ));
            };
            let event = JobEvent::new(
                self.clock.now(),
                "cancelled",
                JobStatus::Cancelled.as_str(),
                "cancelled by the caller",
            );
            if !self
                .control
                .transition(request_id, cancel, &JobUpdate::default(), &event)
                .await?
            {
                continue;
            }
            if let (JobStatus::Running, Some(statement_id)) = (job.status, &job.statement_id) {
                let (outcome, message) = match self.warehouse.cancel(statement_id).await {
                    Ok(true) => ("ok", format!("statement {statement_id} cancelled")),
                    Ok(false) => ("ok", format!("statement {statement_id} had already ended")),
                    Err(e) => ("error", e.to_string()),
                };
                let outcome =
                    JobEvent::new(self.clock.now(), "statement_cancelled", outcome, message);
                self.control.append_event(request_id, &outcome).await?;
            }
            tracing::info!(request_id, "job cancelled");
            let mut cancelled = job;
            cancelled.apply(cancel, &JobUpdate::default(), event.at);
            return Ok(cancelled);
        }
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "busy",
            "the job kept changing state; retry the cancel",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_shape_is_checked_field_by_field() {
        let ok = ExportRequest::from_json(&json!({"dataset": "d", "params": {"a": 1}})).unwrap();
        assert_eq!(
            (ok.format, ok.compression, ok.archive),
            (Format::Csv, Compression::None, Archive::Zip)
        );
        for (body, field) in [
            (json!([]), ""),
            (json!({}), "dataset"),
            (json!({"dataset": 3}), "dataset"),
            (json!({"dataset": "d", "params": []}), "params"),
            (json!({"dataset": "d", "format": "xml"}), "format"),
            (json!({"dataset": "d", "compression": "lz4"}), "compression"),
            (json!({"dataset": "d", "archive": "rar"}), "archive"),
            (
                json!({"dataset": "d", "format": "parquet", "compression": "gzip"}),
                "compression",
            ),
            (
                json!({"dataset": "d", "notify": ["not-an-address"]}),
                "notify[0]",
            ),
            (json!({"dataset": "d", "notify": "a@b.c"}), "notify"),
            (json!({"dataset": "d", "colour": "red"}), "colour"),
        ] {
            let e = ExportRequest::from_json(&body).unwrap_err();
            assert_eq!(e.field.as_deref().unwrap_or(""), field, "{body}: {e}");
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn digest_ignores_spelling_but_not_meaning() {
        let a =
            ExportRequest::from_json(&json!({"dataset": "d", "params": {"x": 1, "y": 2}})).unwrap();
        let b = ExportRequest::from_json(
            &json!({"params": {"y": 2, "x": 1}, "format": "csv", "dataset": "d"}),
        )
        .unwrap();
        let c =
            ExportRequest::from_json(&json!({"dataset": "d", "params": {"x": 1, "y": 3}})).unwrap();
        assert_eq!(a.digest(), b.digest());
        assert_ne!(a.digest(), c.digest());
    }

    #[test]
    fn email_addresses() {
        assert!(is_email_address("ops@example.com"));
        for bad in [
            "", "a", "a@b", "@b.c", "a@.c", "a b@c.d", "a@b.c>", "a@b@c.d",
        ] {
            assert!(!is_email_address(bad), "{bad}");
        }
    }
}
