//! The job's one email: claimed, composed from [`crate::service::notice`], sent, and retried a bounded
//! number of times; then its other deliveries ([`super::deliver`]) under the same claim.

use super::*;
use crate::archive::Manifest;

impl Poller {
    /// Sends the job's one email (the link when it succeeded, the error when it failed) and
    /// makes its other deliveries (webhooks, buckets). The whole is claimed first so that
    /// concurrent handlers do it once. A mail or delivery refused for good (SES's
    /// `MessageRejected`, say, for an unverified recipient in the sandbox; a webhook answering
    /// 404) is recorded once and never retried; after a transient failure the claim is
    /// released and the message retried, and the next try does only what is not yet done
    /// ([`NOTICE_ATTEMPTS`] tries each in all). Either way the job's state and its link are
    /// untouched.
    pub(super) async fn notify(&self, job: &Job, deadline: Option<Instant>) -> Result<(), Retry> {
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
        // Whatever fails from here on gives the claim back, so a retry (or the sweep) does
        // what is left; only what is recorded as done is not done again.
        match self.notify_claimed(job, deadline).await {
            Ok(()) => Ok(()),
            // The mail went but its record did not: keeping the claim is what keeps a retry
            // from sending it again.
            Err(Unsettled::MailUnrecorded(retry)) => Err(retry),
            Err(Unsettled::ToRetry(retry)) => {
                if let Err(e) = self
                    .control
                    .release_notification(&job.request_id, self.clock.now())
                    .await
                {
                    tracing::error!(request_id = %job.request_id, error = %e, "could not give the notice's claim back; the sweep cannot retry it");
                }
                Err(retry)
            }
        }
    }

    /// The mail and the deliveries under the claim: an error means some are still to do.
    async fn notify_claimed(&self, job: &Job, deadline: Option<Instant>) -> Result<(), Unsettled> {
        // The end on record (again, if an earlier try's mail failed), before the mail.
        if let Err(e) = self.audit.export_ended(job).await {
            return Err(Unsettled::ToRetry(Retry(format!(
                "could not record the export's end: {e}"
            ))));
        }
        // What earlier tries already did is in the history: each is done once.
        let history = self.control.events(&job.request_id).await?;
        let manifest = ManifestOnce::new();
        let mut unsent = Vec::new();
        if !settled(&history, "notified", None) {
            if let Some(e) = self.mail(job, &history, &manifest).await? {
                unsent.push(format!("notification failed: {e}"));
            }
        }
        unsent.extend(self.deliver(job, &history, deadline, &manifest).await?);
        if unsent.is_empty() {
            Ok(())
        } else {
            Err(Unsettled::ToRetry(Retry(unsent.join("; "))))
        }
    }

    /// The mail, once: `Some(error)` if it failed for a transient reason and is to be tried
    /// again ([`NOTICE_ATTEMPTS`] tries in all).
    async fn mail(
        &self,
        job: &Job,
        history: &[JobEvent],
        manifest: &ManifestOnce,
    ) -> Result<Option<PortError>, Unsettled> {
        let recipients = self.delivery.mail.recipients(&job.notify, &job.deliver);
        let outcome = match self.compose(job, recipients, manifest).await {
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
                if let Err(e) = self
                    .control
                    .append_event(&job.request_id, &self.event("notified", "ok", message))
                    .await
                {
                    tracing::warn!(request_id = %job.request_id, error = %e, "the notice was sent but could not be recorded; the claim is kept so it is not sent again");
                    return Err(Unsettled::MailUnrecorded(e.into()));
                }
                Ok(None)
            }
            Err(PortError::Rejected(reason)) => {
                // Settled: no later try sends it.
                tracing::warn!(request_id = %job.request_id, reason, "notification refused; not retried");
                self.control
                    .append_event(&job.request_id, &self.event("notified", "refused", reason))
                    .await?;
                Ok(None)
            }
            Err(e) => {
                let earlier = failures(history, "notified", None);
                if earlier + 1 >= NOTICE_ATTEMPTS {
                    tracing::warn!(request_id = %job.request_id, error = %e, "notification failed again; given up");
                    let message = format!("gave up after {} attempts: {e}", earlier + 1);
                    self.control
                        .append_event(
                            &job.request_id,
                            &self.event("notified", "abandoned", message),
                        )
                        .await?;
                    return Ok(None);
                }
                tracing::warn!(request_id = %job.request_id, error = %e, "notification failed; will retry");
                self.control
                    .append_event(
                        &job.request_id,
                        &self.event("notified", "error", e.to_string()),
                    )
                    .await?;
                Ok(Some(e))
            }
        }
    }

    async fn record_mailed_links(&self, job: &Job) -> Result<(), PortError> {
        if job.status != JobStatus::Succeeded {
            return Ok(());
        }
        self.audit.links(job, "emailed", None).await
    }

    async fn compose(
        &self,
        job: &Job,
        to: Vec<String>,
        manifest: &ManifestOnce,
    ) -> Result<Email, PortError> {
        if job.status != JobStatus::Succeeded {
            return Ok(notice::failed(job, to));
        }
        Ok(match self.fresh_links(job, manifest).await? {
            NoticeLinks::Archive(link) => notice::ready(job, &link, to),
            NoticeLinks::Parts { links, total } => notice::ready_parts(job, &links, total, to),
        })
    }

    /// The succeeded job's parts manifest (None for an archive), read on first use.
    pub(super) async fn manifest<'m>(
        &self,
        job: &Job,
        manifest: &'m ManifestOnce,
    ) -> Result<Option<&'m Manifest>, PortError> {
        manifest
            .get_or_try_init(|| crate::service::parts_manifest(self.objects.as_ref(), job))
            .await
            .map(Option::as_ref)
    }

    /// The links a notice hands out, fresh for the deployment's link lifetime: the archive's,
    /// or the first [`notice::MAILED_PARTS`] parts'.
    pub(super) async fn fresh_links(
        &self,
        job: &Job,
        manifest: &ManifestOnce,
    ) -> Result<NoticeLinks, PortError> {
        let (ttl, now) = (self.delivery.link_ttl, self.clock.now());
        if let Some(manifest) = self.manifest(job, manifest).await? {
            let total = manifest.entries.len();
            let shown = total.min(notice::MAILED_PARTS);
            let links = crate::service::presign_parts(
                self.objects.as_ref(),
                job,
                manifest,
                0..shown,
                ttl,
                now,
            )
            .await?;
            return Ok(NoticeLinks::Parts { links, total });
        }
        let link = crate::service::presign_archive(self.objects.as_ref(), job, ttl, now)
            .await?
            .ok_or_else(|| PortError::Rejected("succeeded job has no archive".into()))?;
        Ok(NoticeLinks::Archive(link))
    }
}

/// The job's parts manifest as the mail and each delivery share it: read from the store once
/// per notice, when first asked for. A failed read is not kept, so each that asks tries again
/// and records its own failure.
pub(super) type ManifestOnce = tokio::sync::OnceCell<Option<Manifest>>;

/// What a notice links to.
pub(super) enum NoticeLinks {
    Archive(crate::service::DownloadLink),
    /// The first parts' links, of `total`.
    Parts {
        links: Vec<crate::service::PartLink>,
        total: usize,
    },
}

/// Whether the history holds an end for `step` (and, for a delivery, the one at `index`): it
/// went, was refused for good, or was given up on.
pub(super) fn settled(history: &[JobEvent], step: &str, index: Option<usize>) -> bool {
    history.iter().any(|e| {
        e.step == step
            && matches!(
                e.outcome.as_str(),
                "ok" | "refused" | "abandoned" | "skipped"
            )
            && about(e, index)
    })
}

/// How many tries at `step` (the delivery at `index`) failed for a transient reason.
pub(super) fn failures(history: &[JobEvent], step: &str, index: Option<usize>) -> usize {
    history
        .iter()
        .filter(|e| e.step == step && e.outcome == "error" && about(e, index))
        .count()
}

fn about(event: &JobEvent, index: Option<usize>) -> bool {
    index.is_none_or(|i| event.message.starts_with(&super::deliver::label(i)))
}

/// Why the notice's work under its claim is not all done.
pub(super) enum Unsettled {
    /// Something is left that a retry may do: the claim is given back.
    ToRetry(Retry),
    /// The mail was sent and its record could not be written: the claim is kept, since a retry
    /// could only send it again (the deliveries after it are not made).
    MailUnrecorded(Retry),
}

impl From<PortError> for Unsettled {
    fn from(e: PortError) -> Self {
        Unsettled::ToRetry(e.into())
    }
}

impl From<Retry> for Unsettled {
    fn from(e: Retry) -> Self {
        Unsettled::ToRetry(e)
    }
}
