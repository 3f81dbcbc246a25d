//! The `poller`: follows a running statement to its end, packages the result, sends the link.
//! The mail's words are in [`super::notice`]; this module is the state machine.

use super::{notice, Retry};
use crate::archive::{self, Packaging, Packed, Progress};
use crate::clock::Clock;
use crate::domain::{Job, JobEvent, JobStatus, JobUpdate, Millis, ObjectRef, Transition};
use crate::messages::{FollowUp, Message, PollMessage, StatementEvent};
use crate::ports::{
    ControlTable, Email, Mailer, ObjectStore, PortError, PortResult, QueueSender, SavedCheckpoint,
    StatementState, Warehouse,
};
use crate::settings::{DeliverySettings, PackagingSettings, RetrySettings, UnloadSettings};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

pub struct Poller {
    pub control: Arc<dyn ControlTable>,
    pub warehouse: Arc<dyn Warehouse>,
    pub objects: Arc<dyn ObjectStore>,
    pub mailer: Arc<dyn Mailer>,
    pub queue: Arc<dyn QueueSender>,
    pub clock: Arc<dyn Clock>,
    pub unload: UnloadSettings,
    pub delivery: DeliverySettings,
    pub packaging: PackagingSettings,
    pub retry: RetrySettings,
}

/// Jobs looked at per sweep, oldest first; the rest wait for the next tick.
pub const SWEEP_LIMIT: usize = 200;

/// Tries at sending a job's email that fails for a transient reason, before it is given up:
/// more than one message's deliveries, so that a sweep tries again after an outage.
pub const NOTICE_ATTEMPTS: usize = 10;

impl Poller {
    /// The job a polls-queue message is about; the sweep's tick is about none.
    pub fn request_id(&self, message: &PollMessage) -> Option<String> {
        match message {
            PollMessage::FollowUp(follow_up) => Some(follow_up.request_id.clone()),
            PollMessage::StatementEvent(event) => self.job_of(event),
            PollMessage::Sweep => None,
        }
    }

    fn job_of(&self, event: &StatementEvent) -> Option<String> {
        self.attempt_of(event).map(|(request_id, _)| request_id)
    }

    fn attempt_of(&self, event: &StatementEvent) -> Option<(String, u32)> {
        let name = event.statement_name.as_deref()?;
        let (request_id, attempt) = self.unload.attempt_of(name)?;
        Some((request_id.to_owned(), attempt))
    }

    /// Handles one polls-queue message with no deadline but the packaging budget.
    pub async fn handle(&self, body: &str) -> Result<(), Retry> {
        self.handle_until(body, None).await
    }

    /// Handles one polls-queue message: a follow-up of its own, a continuation of packaging
    /// or a statement event, stopping packaging in time for `deadline` (or, without one, the
    /// packaging budget). Safe to run twice for the same job: every step is a conditional
    /// write, and the one that wins is the only one that goes on.
    pub async fn handle_until(&self, body: &str, deadline: Option<Instant>) -> Result<(), Retry> {
        let deadline =
            deadline.or_else(|| self.packaging.budget.map(|budget| Instant::now() + budget));
        let (request_id, attempt, resume, event) = match PollMessage::parse(body).map_err(Retry)? {
            PollMessage::FollowUp(FollowUp {
                request_id,
                attempt,
                resume,
                ..
            }) => (request_id, attempt, resume, None),
            PollMessage::StatementEvent(event) => match self.job_of(&event) {
                Some(request_id) => (request_id, None, None, Some(event)),
                None => {
                    tracing::warn!(statement_id = %event.statement_id, name = ?event.statement_name, "statement event for a statement that is not one of ours; dropped");
                    return Ok(());
                }
            },
            // A tick is not retried: a copy or a redelivery would only race the schedule's next
            // tick, and once its receives were spent it would sit in the dead letters, where an
            // operator looks for jobs given up on, for nothing.
            PollMessage::Sweep => {
                if let Err(Retry(reason)) = self.sweep().await {
                    tracing::error!(%reason, "the sweep failed; the next tick sweeps again");
                }
                return Ok(());
            }
        };
        let Some(job) = self.control.get_job(&request_id).await? else {
            tracing::warn!(request_id, "poll for a job that does not exist; dropped");
            return Ok(());
        };
        match job.status {
            JobStatus::Queued => match event {
                // The statement ended before the processor recorded RUNNING: the event names
                // the statement, so record the start here and carry on.
                Some(event) => {
                    let (_, unload_attempt) = self.attempt_of(&event).unwrap_or_default();
                    let started = super::record_start(
                        self.control.as_ref(),
                        &request_id,
                        &event.statement_id,
                        unload_attempt,
                        self.clock.now(),
                    )
                    .await?;
                    match started {
                        Some((update, at)) => {
                            let mut job = job;
                            job.apply(Transition::START, &update, at);
                            self.follow(job, None, deadline).await
                        }
                        None => Ok(()),
                    }
                }
                None => Ok(()),
            },
            JobStatus::Running => self.follow(job, attempt, deadline).await,
            JobStatus::Packaging => {
                let saved = self.control.checkpoint(&request_id).await?;
                let age = self.clock.now() - job.updated_at;
                if resume.is_some() && resume == saved.as_ref().map(|s| s.seq) {
                    self.package(job, saved, deadline).await
                } else if age > self.delivery.packaging_lease.as_millis() as Millis {
                    // Its packager stopped beating: carry on from its last checkpoint.
                    tracing::warn!(
                        request_id,
                        age_ms = age,
                        checkpoint = saved.as_ref().map(|s| s.seq),
                        "packaging lease expired; packaging again"
                    );
                    self.package(job, saved, deadline).await
                } else {
                    self.follow_up_later(&request_id, attempt).await
                }
            }
            // Finished by a run that stopped, or failed to mail, before its email went out.
            JobStatus::Succeeded | JobStatus::Failed if job.notified_at.is_none() => {
                self.notify(&job).await
            }
            _ => Ok(()),
        }
    }

    fn event(&self, step: &str, outcome: &str, message: impl Into<String>) -> JobEvent {
        JobEvent::new(self.clock.now(), step, outcome, message)
    }

    async fn follow(
        &self,
        job: Job,
        attempt: Option<u32>,
        deadline: Option<Instant>,
    ) -> Result<(), Retry> {
        let Some(statement_id) = job.statement_id.clone() else {
            return Err(Retry(format!(
                "job {} is RUNNING without a statement",
                job.request_id
            )));
        };
        let status = match self.warehouse.describe(&statement_id).await {
            Ok(status) => status,
            Err(PortError::NotFound(_)) => {
                let message = format!("the warehouse no longer knows statement {statement_id}");
                return self.fail(job, "statement", message).await;
            }
            // The Data API's quotas are per account ("Quotas and limits in Amazon Redshift"):
            // a throttled look says nothing of the statement, so it is not a failed try that
            // brings the job nearer to being given up; the follow-up chain looks again later.
            Err(PortError::Throttled(reason)) => {
                tracing::warn!(request_id = %job.request_id, statement_id, reason, "describing the statement was throttled; looking again later");
                return self.follow_up_later(&job.request_id, attempt).await;
            }
            Err(e) => return Err(e.into()),
        };
        match status.state {
            StatementState::Finished => {
                let event = self.event(
                    "finished",
                    JobStatus::Packaging.as_str(),
                    format!(
                        "statement {statement_id} finished, {} rows",
                        status.rows.unwrap_or(0)
                    ),
                );
                let update = JobUpdate {
                    rows: status.rows,
                    ..JobUpdate::default()
                };
                if self
                    .control
                    .transition(&job.request_id, Transition::FINISH, &update, &event)
                    .await?
                {
                    let mut job = job;
                    job.apply(Transition::FINISH, &update, event.at);
                    self.package(job, None, deadline).await
                } else {
                    Ok(())
                }
            }
            StatementState::Failed | StatementState::Aborted => {
                let message = status.error.unwrap_or_else(|| {
                    format!("statement {statement_id} {}", status.state.as_str())
                });
                self.fail(job, "statement", message).await
            }
            _ => self.follow_up_later(&job.request_id, attempt).await,
        }
    }

    /// Re-queues a follow-up poll with backoff. A look without an attempt (a statement event,
    /// the sweep's look) schedules nothing: the follow-up chain already running looks again.
    async fn follow_up_later(&self, request_id: &str, attempt: Option<u32>) -> Result<(), Retry> {
        if let Some(attempt) = attempt {
            let next = attempt.saturating_add(1);
            self.queue
                .send(
                    &Message::follow_up(request_id, Some(next)),
                    self.delivery.poll_delay(next),
                )
                .await?;
        }
        Ok(())
    }

    /// The archive's address in the downloads bucket.
    pub fn archive_object(&self, job: &Job) -> ObjectRef {
        ObjectRef::new(
            &self.delivery.downloads_bucket,
            format!(
                "{}{}/{}-{}.{}",
                self.delivery.downloads_prefix,
                job.request_id,
                job.dataset,
                job.request_id,
                job.archive.extension()
            ),
        )
    }

    /// Where packaging stages the bytes past its last whole part at a checkpoint.
    fn staging_prefix(&self, job: &Job) -> ObjectRef {
        ObjectRef::new(
            &self.delivery.downloads_bucket,
            format!(
                "{}{}/staging/",
                self.delivery.downloads_prefix, job.request_id
            ),
        )
    }

    /// Packages the job's parts into its archive, from `saved` if a run before left a
    /// checkpoint, until done or until `deadline` draws near; then a continuation carries on.
    async fn package(
        &self,
        job: Job,
        saved: Option<SavedCheckpoint>,
        deadline: Option<Instant>,
    ) -> Result<(), Retry> {
        let prefix = self
            .unload
            .attempt_prefix(&job.request_id, job.unload_attempt);
        let manifest_ref = ObjectRef::new(&prefix.bucket, format!("{}manifest", prefix.key));
        let target = self.archive_object(&job);
        let staging = self.staging_prefix(&job);
        let extension = format!("{}{}", job.format.extension(), job.compression.suffix());
        let progress = JobProgress {
            control: self.control.as_ref(),
            clock: self.clock.as_ref(),
            request_id: &job.request_id,
        };
        let manifest = match archive::read_manifest(self.objects.as_ref(), &manifest_ref).await {
            Ok(manifest) => match manifest.entries.iter().find(|e| !within(&e.url, &prefix)) {
                // The manifest may only point at this job's own parts.
                Some(stray) => Err(PortError::Rejected(format!(
                    "manifest entry {} is outside {}",
                    stray.url,
                    prefix.s3_url()
                ))),
                None => Ok(manifest),
            },
            Err(e) => Err(e),
        };
        let packed = match manifest {
            // Nothing to package: the parts are the result, the manifest names them.
            Ok(manifest) if !job.archive.is_packaged() => Ok(Packed::Done(archive::Packaged {
                rows: manifest.data_rows(job.format.has_header_line()),
                bytes: manifest.content_length(),
                files: manifest.entries.len(),
            })),
            Ok(manifest) => {
                let run = Packaging {
                    objects: self.objects.clone(),
                    manifest: &manifest,
                    dataset: &job.dataset,
                    extension: &extension,
                    kind: job.archive,
                    target: &target,
                    staging: &staging,
                    mtime: job.created_at,
                    settings: &self.packaging,
                    deadline,
                    header_lines: job.format.has_header_line(),
                };
                archive::package(&run, saved, &progress).await
            }
            Err(e) => Err(e),
        };
        let target = if job.archive.is_packaged() {
            target
        } else {
            manifest_ref
        };
        let packaged = match packed {
            Ok(Packed::Done(p)) => p,
            Ok(Packed::Paused { seq }) => {
                // The history shows a long packaging's progress, a line per invocation.
                let event = self.event(
                    "packaging",
                    "paused",
                    format!("checkpoint {seq} saved; the next invocation carries on from it"),
                );
                self.control.append_event(&job.request_id, &event).await?;
                self.queue
                    .send(&Message::resume(&job.request_id, seq), Duration::ZERO)
                    .await?;
                return Ok(());
            }
            Ok(Packed::Superseded) => {
                tracing::info!(request_id = %job.request_id, "another packager carries this archive on");
                return Ok(());
            }
            Err(PortError::Unavailable(message) | PortError::Throttled(message)) => {
                return Err(Retry(message))
            }
            Err(e) => {
                if let Some(saved) = self.control.checkpoint(&job.request_id).await? {
                    archive::package::discard(self.objects.as_ref(), &target, &saved).await;
                    self.control.delete_checkpoint(&job.request_id).await?;
                }
                return self.fail(job, "package", e.to_string()).await;
            }
        };
        let event = self.event(
            "packaged",
            JobStatus::Succeeded.as_str(),
            if job.archive.is_packaged() {
                format!(
                    "{} rows in {} files, {} bytes",
                    packaged.rows, packaged.files, packaged.bytes
                )
            } else {
                format!(
                    "{} rows in {} parts, {} bytes, handed out as they are",
                    packaged.rows, packaged.files, packaged.bytes
                )
            },
        );
        let update = JobUpdate {
            rows: Some(packaged.rows),
            bytes: Some(packaged.bytes),
            archive_object: Some(target),
            ..JobUpdate::default()
        };
        if !self
            .control
            .transition(&job.request_id, Transition::SUCCEED, &update, &event)
            .await?
        {
            tracing::info!(request_id = %job.request_id, "job left PACKAGING while being packaged; archive not announced");
            return Ok(());
        }
        tracing::info!(request_id = %job.request_id, rows = packaged.rows, bytes = packaged.bytes, "job succeeded");
        self.control.delete_checkpoint(&job.request_id).await?;
        let mut job = job;
        job.apply(Transition::SUCCEED, &update, event.at);
        self.notify(&job).await
    }

    /// Fails the job from where it stands, and sends the failure notice if this call won.
    async fn fail(&self, job: Job, step: &str, message: String) -> Result<(), Retry> {
        let Some(failed) = Transition::fail(job.status) else {
            return Ok(());
        };
        tracing::warn!(request_id = %job.request_id, step, error = %message, "job failed");
        let event = self.event(step, JobStatus::Failed.as_str(), message.clone());
        let update = JobUpdate {
            error: Some(message),
            ..JobUpdate::default()
        };
        if self
            .control
            .transition(&job.request_id, failed, &update, &event)
            .await?
        {
            let mut job = job;
            job.apply(failed, &update, event.at);
            return self.notify(&job).await;
        }
        Ok(())
    }

    /// Looks again at every job that has sat unsettled for longer than `sweep_after`: its
    /// messages may have been lost to a crash or a dead-letter queue, or its statement's event
    /// never came. A queued job is queued again (starting is idempotent on the client token);
    /// any other gets one look from the poller, which carries it on from where it stands.
    /// Sends messages rather than doing the work here, so each job retries on its own.
    pub async fn sweep(&self) -> Result<(), Retry> {
        let now = self.clock.now();
        let cutoff = now - self.delivery.sweep_after.as_millis() as Millis;
        let jobs = self.control.unsettled_jobs(cutoff, SWEEP_LIMIT).await?;
        for job in &jobs {
            let message = if job.status == JobStatus::Queued {
                Message::start(&job.request_id)
            } else {
                Message::follow_up(&job.request_id, None)
            };
            self.queue.send(&message, Duration::ZERO).await?;
            tracing::info!(request_id = %job.request_id, status = %job.status, idle_ms = now - job.updated_at, "swept a job that has not moved");
        }
        tracing::info!(swept = jobs.len(), "sweep done");
        Ok(())
    }

    /// Called for a message on its last delivery whose handling failed again. A job still in
    /// flight fails with the reason, rather than wait forever behind a dead letter.
    pub async fn give_up(&self, body: &str, reason: &str) -> Result<(), Retry> {
        // The sweep's tick has no job.
        let Some(request_id) = PollMessage::parse(body)
            .ok()
            .and_then(|m| self.request_id(&m))
        else {
            return Ok(());
        };
        let Some(job) = self.control.get_job(&request_id).await? else {
            return Ok(());
        };
        self.fail(
            job,
            "poll",
            format!("gave up following the export: {reason}"),
        )
        .await
    }

    /// Sends the job's one email: the link when it succeeded, the error when it failed. The
    /// send is claimed first so that concurrent handlers send it once. A mail refused for good
    /// (SES's `MessageRejected`, say, for an unverified recipient in the sandbox) is recorded
    /// once and never retried; after a transient failure the claim is released and the
    /// message retried, [`NOTICE_ATTEMPTS`] times in all. Either way the job's state and its
    /// link are untouched.
    async fn notify(&self, job: &Job) -> Result<(), Retry> {
        if !self
            .control
            .claim_notification(&job.request_id, self.clock.now())
            .await?
        {
            return Ok(());
        }
        let recipients = self.delivery.mail.recipients(&job.notify);
        let outcome = match self.compose(job, recipients).await {
            Ok(email) if email.to.is_empty() => Ok("no recipients configured".to_owned()),
            Ok(email) => self
                .mailer
                .send(&email)
                .await
                .map(|id| format!("sent to {} (message {id})", email.to.join(", "))),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(message) => {
                self.control
                    .append_event(&job.request_id, &self.event("notified", "ok", message))
                    .await?;
                Ok(())
            }
            Err(PortError::Rejected(reason)) => {
                // The claim stays: the job is settled, and no sweep brings it back.
                tracing::warn!(request_id = %job.request_id, reason, "notification refused; not retried");
                self.control
                    .append_event(&job.request_id, &self.event("notified", "refused", reason))
                    .await?;
                Ok(())
            }
            Err(e) => {
                let earlier = self
                    .control
                    .events(&job.request_id)
                    .await?
                    .iter()
                    .filter(|e| e.step == "notified" && e.outcome == "error")
                    .count();
                if earlier + 1 >= NOTICE_ATTEMPTS {
                    tracing::warn!(request_id = %job.request_id, error = %e, "notification failed again; given up");
                    let message = format!("gave up after {} attempts: {e}", earlier + 1);
                    self.control
                        .append_event(
                            &job.request_id,
                            &self.event("notified", "abandoned", message),
                        )
                        .await?;
                    return Ok(());
                }
                tracing::warn!(request_id = %job.request_id, error = %e, "notification failed; will retry");
                self.control
                    .append_event(
                        &job.request_id,
                        &self.event("notified", "error", e.to_string()),
                    )
                    .await?;
                self.control
                    .release_notification(&job.request_id, self.clock.now())
                    .await?;
                Err(Retry(format!("notification failed: {e}")))
            }
        }
    }

    async fn compose(&self, job: &Job, to: Vec<String>) -> Result<Email, PortError> {
        if job.status != JobStatus::Succeeded {
            return Ok(notice::failed(job, to));
        }
        if let Some(manifest) = super::parts_manifest(self.objects.as_ref(), job).await? {
            let shown = manifest.entries.len().min(notice::MAILED_PARTS);
            let links = super::presign_parts(
                self.objects.as_ref(),
                job,
                &manifest,
                0..shown,
                self.delivery.link_ttl,
                self.clock.now(),
            )
            .await?;
            return Ok(notice::ready_parts(job, &links, manifest.entries.len(), to));
        }
        let link = super::presign_archive(
            self.objects.as_ref(),
            job,
            self.delivery.link_ttl,
            self.clock.now(),
        )
        .await?
        .ok_or_else(|| PortError::Rejected("succeeded job has no archive".into()))?;
        Ok(notice::ready(job, &link, to))
    }
}

/// Packaging's progress, kept with the job: checkpoints and heartbeats move its `updated_at`.
struct JobProgress<'a> {
    control: &'a dyn ControlTable,
    clock: &'a dyn Clock,
    request_id: &'a str,
}

#[async_trait]
impl Progress for JobProgress<'_> {
    async fn save(&self, expected_seq: u64, next: &SavedCheckpoint) -> PortResult<bool> {
        self.control
            .save_checkpoint(self.request_id, expected_seq, next, self.clock.now())
            .await
    }

    async fn heartbeat(&self) -> PortResult<bool> {
        self.control
            .touch(self.request_id, JobStatus::Packaging, self.clock.now())
            .await
    }
}

/// Whether an `s3://` URL names an object under `prefix`.
fn within(url: &str, prefix: &ObjectRef) -> bool {
    ObjectRef::parse_s3_url(url).is_some_and(|o| {
        o.bucket == prefix.bucket && o.key.starts_with(&prefix.key) && !o.key.contains("/../")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_entries_must_stay_under_the_job_prefix() {
        let prefix = ObjectRef::new("results", "exports/r1/");
        assert!(within("s3://results/exports/r1/0000_part_00", &prefix));
        assert!(!within("s3://results/exports/r2/0000_part_00", &prefix));
        assert!(!within("s3://other/exports/r1/0000_part_00", &prefix));
        assert!(!within("s3://results/exports/r1/../r2/x", &prefix));
        assert!(!within("https://results/exports/r1/x", &prefix));
    }
}
