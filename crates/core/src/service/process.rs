//! The `processor`: turns a queued job into a running UNLOAD statement.

use super::{Admission, Admitted, Retry};
use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::domain::{JobEvent, JobStatus, JobUpdate, Transition};
use crate::messages::{Message, StartJob};
use crate::ports::{ControlTable, PortError, QueueSender, StatementRequest, Warehouse};
use crate::settings::{RetrySettings, UnloadSettings};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
pub struct Processor {
    pub catalog: Arc<Catalog>,
    pub control: Arc<dyn ControlTable>,
    pub warehouse: Arc<dyn Warehouse>,
    pub queue: Arc<dyn QueueSender>,
    pub clock: Arc<dyn Clock>,
    pub unload: UnloadSettings,
    /// Delay before the first follow-up poll of a new statement.
    pub first_poll_delay: Duration,
    pub retry: RetrySettings,
    /// Which jobs' statements may run now.
    pub admission: Admission,
}

impl Processor {
    /// Handles one requests-queue message. Safe to run any number of times for the same
    /// message: the statement is started with the request id as its client token, and the
    /// job moves to RUNNING only from QUEUED.
    pub async fn handle(&self, body: &str) -> Result<(), Retry> {
        let StartJob { request_id, .. } = serde_json::from_str(body)
            .map_err(|e| Retry(format!("requests message is not a job: {e}")))?;
        let Some(job) = self.control.get_job(&request_id).await? else {
            tracing::warn!(request_id, "message for a job that does not exist; dropped");
            return Ok(());
        };
        match job.status {
            JobStatus::Queued => {}
            // Started before, but the follow-up may not have been queued: queue it again,
            // a duplicate poll is harmless.
            JobStatus::Running => return self.schedule_poll(&request_id).await,
            _ => {
                tracing::info!(request_id, status = %job.status, "job already past QUEUED; nothing to start");
                // Handed a slot after it ended (a cancel while in line): the slot goes on.
                self.admission.release(&request_id).await?;
                return Ok(());
            }
        }
        match self.admission.admit(&job).await? {
            Admitted::Yes => {}
            Admitted::Waiting { ahead, joined } => {
                if joined {
                    let event = super::admission::wait_event(self.clock.now(), ahead);
                    self.control.append_event(&request_id, &event).await?;
                }
                tracing::info!(request_id, ahead, "waiting for a warehouse slot");
                return Ok(());
            }
        }

        let rendered = self
            .catalog
            .get(&job.dataset)
            .ok_or_else(|| format!("export '{}' is no longer in the catalogue", job.dataset))
            .and_then(|export| {
                // A job accepted before its dataset bound a parameter carries the request's
                // value for it: it may not run with that.
                if let Some(param) = export
                    .params
                    .iter()
                    .find(|p| p.bound.is_some() && !job.bound.contains(&p.name))
                {
                    return Err(format!(
                        "export '{}' now binds parameter '{}' to the caller's access; submit the export again",
                        job.dataset, param.name
                    ));
                }
                let select = export.render(&job.params).map_err(|e| e.message)?;
                Ok((select, export.parallel))
            });
        let (select, parallel) = match rendered {
            Ok(rendered) => rendered,
            Err(message) => return self.fail(&request_id, "render", message).await,
        };
        let attempt = self.unload.attempt_at(job.created_at, self.clock.now());
        let sql = self.unload.unload_sql(
            &select,
            &request_id,
            attempt,
            job.format,
            job.compression,
            parallel,
        );
        let statement = StatementRequest {
            sql,
            client_token: self.unload.client_token(&request_id, attempt),
            name: self.unload.statement_name(&request_id, attempt),
        };
        let statement_id = match self.warehouse.execute(&statement).await {
            Ok(id) => id,
            Err(PortError::Rejected(message)) => {
                return self.fail(&request_id, "start", message).await
            }
            Err(e) => return Err(e.into()),
        };
        let started = super::record_start(
            self.control.as_ref(),
            &request_id,
            &statement_id,
            attempt,
            self.clock.now(),
        )
        .await?;
        if started.is_some() {
            tracing::info!(request_id, statement_id, "statement started");
            return self.schedule_poll(&request_id).await;
        }
        // Lost the race: a cancel arrived while the statement was being started, or another
        // attempt's statement was recorded first. Either way this one is not wanted.
        let now = self.control.get_job(&request_id).await?;
        if now
            .as_ref()
            .is_some_and(|j| j.statement_id.as_deref() != Some(statement_id.as_str()))
        {
            let _ = self.warehouse.cancel(&statement_id).await;
            tracing::info!(
                request_id,
                statement_id,
                recorded = ?now.and_then(|j| j.statement_id),
                "the job was cancelled or follows another statement; this one cancelled"
            );
        }
        Ok(())
    }

    async fn schedule_poll(&self, request_id: &str) -> Result<(), Retry> {
        self.queue
            .send(
                &Message::follow_up(request_id, Some(0)),
                self.first_poll_delay,
            )
            .await?;
        Ok(())
    }

    /// Fails a job that never started, and hands it to the poller, which sends the notice.
    async fn fail(&self, request_id: &str, step: &str, message: String) -> Result<(), Retry> {
        tracing::warn!(request_id, step, error = %message, "job failed");
        let event = JobEvent::new(
            self.clock.now(),
            step,
            JobStatus::Failed.as_str(),
            message.clone(),
        );
        let update = JobUpdate {
            error: Some(message),
            ..JobUpdate::default()
        };
        let failed = Transition::fail(JobStatus::Queued).expect("a queued job can fail");
        if self
            .control
            .transition(request_id, failed, &update, &event)
            .await?
        {
            self.admission.release(request_id).await?;
            self.schedule_poll(request_id).await?;
        }
        Ok(())
    }

    /// Called for a message on its last delivery whose handling failed again: the job cannot
    /// be started, so it fails rather than wait forever behind a dead letter.
    pub async fn give_up(&self, body: &str, reason: &str) -> Result<(), Retry> {
        let Ok(StartJob { request_id, .. }) = serde_json::from_str::<StartJob>(body) else {
            return Ok(());
        };
        self.fail(
            &request_id,
            "start",
            format!("gave up starting the export: {reason}"),
        )
        .await
    }
}
