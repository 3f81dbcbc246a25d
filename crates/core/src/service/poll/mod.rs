//! The `poller`: follows a running statement to its end, packages the result, sends the link.
//! The mail's words are in [`super::notice`]; this module is the state machine.

use super::{notice, Admission, Retry};
use crate::archive::{self, Packaging, Packed, Progress};
use crate::clock::Clock;
use crate::domain::{Job, JobEvent, JobStatus, JobUpdate, Millis, ObjectRef, Transition};
use crate::messages::{FollowUp, Message, PollMessage, StatementEvent};
use crate::ports::{
    ControlTable, Email, Mailer, ObjectStore, PortError, PortResult, QueueSender, SavedCheckpoint,
    StatementState, Warehouse, Webhooks,
};
use crate::settings::{DeliverySettings, PackagingSettings, RetrySettings, UnloadSettings};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Clone)]
pub struct Poller {
    pub control: Arc<dyn ControlTable>,
    pub warehouse: Arc<dyn Warehouse>,
    pub objects: Arc<dyn ObjectStore>,
    pub mailer: Arc<dyn Mailer>,
    /// Where webhook notices are POSTed.
    pub webhooks: Arc<dyn Webhooks>,
    pub queue: Arc<dyn QueueSender>,
    pub clock: Arc<dyn Clock>,
    pub unload: UnloadSettings,
    pub delivery: DeliverySettings,
    pub packaging: PackagingSettings,
    pub retry: RetrySettings,
    /// Freed slots go on to the next job in line.
    pub admission: Admission,
    /// An ended job's bytes count, and it is no longer unfinished.
    pub quotas: super::Quotas,
    /// Where each export's end and the links mailed are recorded.
    pub audit: super::Audit,
    /// Subscriptions whose due runs each tick makes, where the deployment's scheduler is the
    /// sweep's tick (on AWS); None where something else ticks them (the local stack).
    pub subscriptions: Option<Arc<super::Subscriptions>>,
}

/// Jobs looked at per sweep, oldest first; the rest wait for the next tick.
pub const SWEEP_LIMIT: usize = 200;

/// Tries at sending a job's email that fails for a transient reason, before it is given up:
/// more than one message's deliveries, so that a sweep tries again after an outage.
pub const NOTICE_ATTEMPTS: usize = 10;

mod deliver;
mod follow;
mod notify;
mod package;

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
                if let Some(subscriptions) = &self.subscriptions {
                    match subscriptions.run_due().await {
                        Ok(0) => {}
                        Ok(made) => tracing::info!(runs = made, "subscriptions ran"),
                        Err(e) => {
                            tracing::error!(error = %e, "the subscriptions' runs failed; the next tick makes them")
                        }
                    }
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
                self.notify(&job, deadline).await
            }
            _ => Ok(()),
        }
    }

    fn event(&self, step: &str, outcome: &str, message: impl Into<String>) -> JobEvent {
        JobEvent::new(self.clock.now(), step, outcome, message)
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
            // A statement given up on may still run: asked to stop first, and its slot kept
            // (for the sweep to free once it has) if the warehouse could not be asked.
            let stopped = match (job.status, &job.statement_id) {
                (JobStatus::Running, Some(statement)) => {
                    self.warehouse.cancel(statement).await.is_ok()
                }
                _ => true,
            };
            let mut job = job;
            job.apply(failed, &update, event.at);
            if stopped {
                self.admission.release_after(&job.request_id).await;
            }
            return self.notify(&job, None).await;
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
        // Slots and quota counts first; a failure of either is logged, and the jobs are still
        // swept (the next tick tries them again).
        let freed = match self
            .admission
            .recover(self.control.as_ref(), self.warehouse.as_ref())
            .await
        {
            Ok(freed) => freed,
            Err(e) => {
                tracing::error!(error = %e, "could not recover warehouse slots this tick");
                0
            }
        };
        let ended = match self
            .quotas
            .reconcile(self.control.as_ref(), SWEEP_LIMIT)
            .await
        {
            Ok(ended) => ended,
            Err(e) => {
                tracing::error!(error = %e, "could not reconcile quota counts this tick");
                0
            }
        };
        let jobs = self.control.unsettled_jobs(cutoff, SWEEP_LIMIT).await?;
        for job in &jobs {
            let message = if job.status == JobStatus::Queued {
                // In line for a slot: its start comes with the slot. Marked as looked at,
                // so the next tick's oldest jobs are others (a long line would otherwise
                // fill every tick's window and hide a job that needs the sweep).
                if self.admission.is_waiting(&job.request_id).await? {
                    self.control
                        .touch(&job.request_id, JobStatus::Queued, now)
                        .await?;
                    continue;
                }
                Message::start(&job.request_id)
            } else {
                Message::follow_up(&job.request_id, None)
            };
            self.queue.send(&message, Duration::ZERO).await?;
            tracing::info!(request_id = %job.request_id, status = %job.status, idle_ms = now - job.updated_at, "swept a job that has not moved");
        }
        tracing::info!(swept = jobs.len(), freed, ended, "sweep done");
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
}
