//! Following a statement: one look, and the next one scheduled with backoff while it runs.

use super::*;

impl Poller {
    pub(super) async fn follow(
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
                // A look outside the follow-up chain (an event, the sweep's) starts one: the
                // event it answered is gone once this returns.
                return self
                    .follow_up_later(&job.request_id, Some(attempt.unwrap_or(0)))
                    .await;
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
                    // The statement is done with the warehouse; packaging is not.
                    self.admission.release_after(&job.request_id).await;
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
    pub(super) async fn follow_up_later(
        &self,
        request_id: &str,
        attempt: Option<u32>,
    ) -> Result<(), Retry> {
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
}
