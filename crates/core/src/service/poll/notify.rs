//! The job's one email: claimed, composed from [`crate::service::notice`], sent, and retried a bounded
//! number of times.

use super::*;

impl Poller {
    /// Sends the job's one email: the link when it succeeded, the error when it failed. The
    /// send is claimed first so that concurrent handlers send it once. A mail refused for good
    /// (SES's `MessageRejected`, say, for an unverified recipient in the sandbox) is recorded
    /// once and never retried; after a transient failure the claim is released and the
    /// message retried, [`NOTICE_ATTEMPTS`] times in all. Either way the job's state and its
    /// link are untouched.
    pub(super) async fn notify(&self, job: &Job) -> Result<(), Retry> {
        // Ended: its bytes count towards today's, and it is no longer one of its owner's
        // unfinished exports; both once per job, however often this runs.
        if let (JobStatus::Succeeded, Some(bytes)) = (job.status, job.bytes) {
            self.quotas
                .add_bytes(&job.owner, &job.request_id, bytes)
                .await?;
        }
        self.quotas.end(job).await;
        if !self
            .control
            .claim_notification(&job.request_id, self.clock.now())
            .await?
        {
            return Ok(());
        }
        // The end on record (again, if an earlier try's mail failed), before the mail.
        if let Err(e) = self.audit.export_ended(job).await {
            self.control
                .release_notification(&job.request_id, self.clock.now())
                .await?;
            return Err(Retry(format!("could not record the export's end: {e}")));
        }
        let recipients = self.delivery.mail.recipients(&job.notify);
        let outcome = match self.compose(job, recipients).await {
            Ok(email) if email.to.is_empty() => Ok("no recipients configured".to_owned()),
            // The mail's links on record before they go.
            Ok(email) => match self.record_mailed_links(job).await {
                Ok(()) => self.mailer.send(&email).await,
                Err(e) => Err(e),
            }
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

    async fn record_mailed_links(&self, job: &Job) -> Result<(), PortError> {
        if job.status != JobStatus::Succeeded {
            return Ok(());
        }
        self.audit.links(job, "emailed", None).await
    }

    pub(super) async fn compose(&self, job: &Job, to: Vec<String>) -> Result<Email, PortError> {
        if job.status != JobStatus::Succeeded {
            return Ok(notice::failed(job, to));
        }
        if let Some(manifest) = crate::service::parts_manifest(self.objects.as_ref(), job).await? {
            let shown = manifest.entries.len().min(notice::MAILED_PARTS);
            let links = crate::service::presign_parts(
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
        let link = crate::service::presign_archive(
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
