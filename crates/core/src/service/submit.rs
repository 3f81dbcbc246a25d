//! The command side (the `receiver`): accept an export, cancel one.

use crate::access::Principal;
use crate::access::{Access, EmptyText};
use crate::clock::Clock;
use crate::domain::{Job, JobEvent, JobStatus, JobUpdate, Owner, Transition};
use crate::error::ApiError;
use crate::messages::Message;
use crate::ports::{
    ControlTable, CreateOutcome, IdempotencyKey, PortError, QueueSender, Warehouse,
};
use crate::service::audit::Asked;
use crate::webhook::Reach;
pub use export_api::ExportRequest;
use export_api::{AuditKind, Delivery, S3Place};
use http::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

/// Longest `Idempotency-Key` accepted.
pub const MAX_IDEMPOTENCY_KEY: usize = 128;

/// A digest of what a request asks for (not how it was spelled), to recognise a retry.
pub fn request_digest(request: &ExportRequest) -> String {
    let mut canonical = serde_json::json!({
        "dataset": request.dataset,
        "params": request.params,
        "format": request.format,
        "compression": request.compression,
        "archive": request.archive,
        "notify": request.notify,
    });
    // Only when there are some: a request without deliveries digests as it did before they
    // existed, so a key stored then still replays.
    if !request.deliver.is_empty() {
        canonical["deliver"] = serde_json::json!(request.deliver);
    }
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
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
    /// The catalogue as each caller may see it: the one way to it from here.
    pub access: Arc<Access>,
    pub control: Arc<dyn ControlTable>,
    pub queue: Arc<dyn QueueSender>,
    pub warehouse: Arc<dyn Warehouse>,
    pub clock: Arc<dyn Clock>,
    /// A cancelled job leaves the line, or hands its slot on.
    pub admission: super::Admission,
    /// What each caller may submit.
    pub quotas: super::Quotas,
    /// Where every export submitted, refused or cancelled is recorded.
    pub audit: super::Audit,
    /// Where webhooks may be delivered; None: this deployment has no key to sign them, and
    /// delivers none.
    pub webhooks: Option<Reach>,
    /// How a finished job is shown (with its link) when a submission waits for it
    /// (`POST /exports?wait=10s`); None: a submission never waits.
    pub finished: Option<Arc<super::Queries>>,
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
        self.submit_given(owner, request, None, idempotency_key, None)
            .await
    }

    /// A subscription's run: [`Submissions::submit`] of `request` linked to the subscription,
    /// under an idempotency key that names the run, so a run tried twice submits one job.
    pub async fn submit_run(
        &self,
        owner: &Owner,
        request: ExportRequest,
        subscription_id: &str,
        run_key: &str,
    ) -> Result<Submitted, ApiError> {
        self.submit_given(owner, request, None, Some(run_key), Some(subscription_id))
            .await
    }

    /// [`Submissions::submit`] with the parameters written as text (a form's `params.<name>`
    /// fields, by name), typed by the dataset's declaration; `request.params` is not read.
    pub async fn submit_text(
        &self,
        owner: &Owner,
        request: ExportRequest,
        text: Vec<(String, String)>,
        idempotency_key: Option<&str>,
    ) -> Result<Submitted, ApiError> {
        self.submit_given(owner, request, Some(text), idempotency_key, None)
            .await
    }

    /// Submits, and records a refusal in the audit log with what was asked.
    async fn submit_given(
        &self,
        owner: &Owner,
        request: ExportRequest,
        text: Option<Vec<(String, String)>>,
        idempotency_key: Option<&str>,
        subscription_id: Option<&str>,
    ) -> Result<Submitted, ApiError> {
        let dataset = request.dataset.clone();
        let params = match &text {
            None => request.params.clone(),
            Some(pairs) => pairs
                .iter()
                .map(|(name, value)| (name.clone(), Value::String(value.clone())))
                .collect(),
        };
        let submitted = self
            .submit_checked(owner, request, text, idempotency_key, subscription_id)
            .await;
        if let Err(refused) = &submitted {
            let asked = Asked {
                dataset: Some(&dataset),
                params: Some(&params),
                bound: &[],
            };
            self.audit
                .refused(AuditKind::Export, owner, &asked, refused)
                .await;
        }
        submitted
    }

    /// Each delivery is one the deployment makes and the caller may ask for: a webhook this
    /// deployment can sign and may reach, a bucket place the access policy grants the caller.
    fn check_deliveries(
        &self,
        principal: &Principal,
        deliver: &[Delivery],
    ) -> Result<(), ApiError> {
        for (index, delivery) in deliver.iter().enumerate() {
            let field = format!("deliver[{index}].{}", delivery.kind());
            match delivery {
                Delivery::Email(_) => {}
                Delivery::Webhook(url) => {
                    let reach = self.webhooks.ok_or_else(|| {
                        ApiError::invalid(
                            &field,
                            "this deployment delivers no webhooks: it has no key to sign them",
                        )
                    })?;
                    crate::webhook::destination(url, reach).map_err(|reason| {
                        ApiError::invalid(&field, format!("'{field}': {reason}"))
                    })?;
                }
                Delivery::S3(place) => {
                    let place = S3Place::parse(place).map_err(|reason| {
                        ApiError::invalid(&field, format!("'{field}': {reason}"))
                    })?;
                    if !principal
                        .standing
                        .may_deliver_to(&place.bucket, &place.template)
                    {
                        return Err(ApiError::forbidden(format!(
                            "'{field}': the access policy lets you deliver to no such place in s3://{}",
                            place.bucket
                        ))
                        .with_field(field));
                    }
                }
            }
        }
        Ok(())
    }

    /// Everything [`Submissions::submit`] checks before it keeps anything: the request's
    /// fields, the caller's access to the dataset, its deliveries, the parameters typed and
    /// bound. Answers the caller, the request with its bound parameters, and their names.
    pub async fn check(
        &self,
        owner: &Owner,
        mut request: ExportRequest,
        text: Option<Vec<(String, String)>>,
    ) -> Result<(Principal, ExportRequest, Vec<String>), ApiError> {
        request.check()?;
        // Access is decided here, before anything is recorded: a dataset the caller may not
        // use is one that does not exist, and bound parameters take the caller's values.
        let principal = self.access.principal(owner).await?;
        let export = self
            .access
            .dataset(&principal, &request.dataset)
            .ok_or_else(|| {
                self.access
                    .unknown_dataset(&principal, &request.dataset, StatusCode::BAD_REQUEST)
            })?;
        self.check_deliveries(&principal, &request.deliver)?;
        // Checked here; the processor renders the statement from the job's parameters.
        let bound = match text {
            None => self.access.bind(&principal, export, &request.params)?,
            Some(pairs) => self.access.bind_text(
                &principal,
                export,
                pairs
                    .into_iter()
                    .map(|(name, value)| (Cow::Owned(name), Cow::Owned(value))),
                EmptyText::Absent,
            )?,
        };
        request.params = bound.values;
        let bound: Vec<String> = export
            .params
            .iter()
            .filter(|p| p.bound.is_some())
            .map(|p| p.name.clone())
            .collect();
        Ok((principal, request, bound))
    }

    async fn submit_checked(
        &self,
        owner: &Owner,
        request: ExportRequest,
        text: Option<Vec<(String, String)>>,
        idempotency_key: Option<&str>,
        subscription_id: Option<&str>,
    ) -> Result<Submitted, ApiError> {
        let (principal, request, bound) = self.check(owner, request, text).await?;
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
                        request_digest: request_digest(&request),
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
            deliver: request.deliver,
            bound,
            status: JobStatus::Queued,
            created_at: now,
            updated_at: now,
            statement_id: None,
            unload_attempt: 0,
            priority: principal.standing.priority,
            turns_of: principal.standing.turns_of.clone(),
            rows: None,
            bytes: None,
            archive_object: None,
            error: None,
            notified_at: None,
            subscription_id: subscription_id.map(str::to_owned),
        };
        let event = JobEvent::new(
            now,
            "submitted",
            JobStatus::Queued.as_str(),
            format!("export {} accepted", job.dataset),
        );
        // A replay of a request already accepted answers as the first did, before anything
        // is counted against the caller's quotas.
        if let Some(key) = &key {
            if let Some(used) = self.control.key_used(key).await? {
                return self.replay(used).await;
            }
        }
        // Counted against the caller's quotas, and on record, before anything is stored: a
        // refusal keeps nothing, and a job stored is one that may run.
        let charge = self.quotas.charge(&principal, &job.request_id, now).await?;
        let stored = match self.audit.export_accepted(&job).await {
            Ok(()) => self.control.create_job(&job, &event, key.as_ref()).await,
            Err(e) => Err(e),
        };
        match stored {
            Ok(CreateOutcome::Created) => {}
            // The key was used meanwhile, by a request that raced this one.
            Ok(used) => {
                self.quotas.refund(&charge).await;
                return self.replay(used).await;
            }
            Err(e) => {
                self.quotas.refund(&charge).await;
                return Err(e.into());
            }
        }
        // In line for a warehouse slot from the moment it is accepted, so the line's order is
        // the submissions' and the processor only ever sees jobs that may start: a job that
        // must wait gets its start with its slot. If admission cannot say, the start goes
        // now and the processor asks again.
        let admitted = match self.admission.admit(&job).await {
            Ok(super::Admitted::Waiting { ahead, .. }) => {
                let event = super::admission::wait_event(self.clock.now(), ahead);
                if let Err(e) = self.control.append_event(&job.request_id, &event).await {
                    tracing::warn!(request_id = %job.request_id, error = %e, "could not record the wait");
                }
                false
            }
            Ok(super::Admitted::Yes) => true,
            Err(e) => {
                tracing::warn!(request_id = %job.request_id, error = %e, "admission could not say; the processor will");
                true
            }
        };
        if admitted {
            if let Err(e) = self
                .queue
                .send(&Message::start(&job.request_id), Duration::ZERO)
                .await
            {
                self.admission.release_after(&job.request_id).await;
                self.remove(&job.request_id, key.as_ref()).await;
                self.quotas.refund(&charge).await;
                return Err(e.into());
            }
        }
        tracing::info!(request_id = %job.request_id, dataset = %job.dataset, owner = %owner, "job queued");
        Ok(Submitted {
            request_id: job.request_id,
            status: JobStatus::Queued,
            replayed: false,
        })
    }

    /// The answer to a request whose Idempotency-Key was used: the first job, or 409 if the
    /// key named another request.
    async fn replay(&self, used: CreateOutcome) -> Result<Submitted, ApiError> {
        match used {
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
                Ok(Submitted {
                    request_id,
                    status,
                    replayed: true,
                })
            }
            CreateOutcome::KeyUsed { .. } => Err(ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_key_reused",
                "this Idempotency-Key was already used for a different request",
            )
            .with_field("Idempotency-Key")),
            CreateOutcome::Created => Err(ApiError::internal()),
        }
    }

    /// Removes a job that was stored but will not be queued, with its idempotency key.
    async fn remove(&self, request_id: &str, key: Option<&IdempotencyKey>) {
        if let Err(cleanup) = self.control.delete_job(request_id, key).await {
            tracing::error!(request_id, error = %cleanup, "could not remove a job that was never queued");
        }
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
            let mut stopped = true;
            if let (JobStatus::Running, Some(statement_id)) = (job.status, &job.statement_id) {
                let (outcome, message) = match self.warehouse.cancel(statement_id).await {
                    Ok(true) => ("ok", format!("statement {statement_id} cancelled")),
                    Ok(false) => ("ok", format!("statement {statement_id} had already ended")),
                    Err(e) => {
                        stopped = false;
                        ("error", e.to_string())
                    }
                };
                let outcome =
                    JobEvent::new(self.clock.now(), "statement_cancelled", outcome, message);
                self.control.append_event(request_id, &outcome).await?;
            }
            // Out of line, or its slot handed on (a statement the warehouse could not be
            // asked to stop keeps it, for the sweep to free once it has ended); no longer one
            // of the caller's unfinished.
            if stopped {
                self.admission.release_after(request_id).await;
            }
            let mut cancelled = job;
            cancelled.apply(cancel, &JobUpdate::default(), event.at);
            self.quotas.end(&cancelled).await;
            if let Err(e) = self.audit.export_ended(&cancelled).await {
                tracing::error!(request_id, error = %e, "could not record the cancel in the audit log");
            }
            tracing::info!(request_id, "job cancelled");
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
    fn digest_ignores_spelling_but_not_meaning() {
        let read = |body| ExportRequest::read(body).unwrap();
        let a = read(json!({"dataset": "d", "params": {"x": 1, "y": 2}}));
        let b = read(json!({"params": {"y": 2, "x": 1}, "format": "csv", "dataset": "d"}));
        let c = read(json!({"dataset": "d", "params": {"x": 1, "y": 3}}));
        assert_eq!(request_digest(&a), request_digest(&b));
        assert_ne!(request_digest(&a), request_digest(&c));
    }
}
