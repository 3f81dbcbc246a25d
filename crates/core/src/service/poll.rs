//! The `poller`: follows a running statement to its end, packages the result, sends the link.

use super::{DownloadLink, Retry};
use crate::archive;
use crate::domain::{now_ms, Job, JobEvent, JobStatus, JobUpdate, Millis, ObjectRef};
use crate::messages::{FollowUp, PollMessage, StartJob};
use crate::ports::{
    ControlTable, Email, Mailer, ObjectStore, PortError, QueueName, QueueSender, StatementState,
    Warehouse,
};
use crate::settings::{DeliverySettings, UnloadSettings};
use std::sync::Arc;

pub struct Poller {
    pub control: Arc<dyn ControlTable>,
    pub warehouse: Arc<dyn Warehouse>,
    pub objects: Arc<dyn ObjectStore>,
    pub mailer: Arc<dyn Mailer>,
    pub queue: Arc<dyn QueueSender>,
    pub unload: UnloadSettings,
    pub delivery: DeliverySettings,
}

impl UnloadSettings {
    /// The prefix UNLOAD writes a job's parts and manifest under.
    pub fn job_prefix(&self, request_id: &str) -> ObjectRef {
        ObjectRef::new(
            &self.results_bucket,
            format!("{}{request_id}/", self.results_prefix),
        )
    }
}

impl Poller {
    /// Handles one polls-queue message: a follow-up of its own or a statement event. Safe to
    /// run twice for the same job: every step is a conditional transition, and the one that
    /// wins is the only one that goes on.
    pub async fn handle(&self, body: &str) -> Result<(), Retry> {
        let (request_id, attempt, event) = match PollMessage::parse(body).map_err(Retry)? {
            PollMessage::FollowUp(FollowUp {
                request_id,
                attempt,
            }) => (request_id, attempt, None),
            PollMessage::StatementEvent(event) => match event.statement_name.clone() {
                Some(name) => (name, None, Some(event)),
                None => {
                    tracing::warn!(statement_id = %event.statement_id, "statement event without a name; not one of ours");
                    return Ok(());
                }
            },
            PollMessage::Sweep => return self.sweep().await,
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
                    match super::record_start(
                        self.control.as_ref(),
                        &request_id,
                        &event.statement_id,
                    )
                    .await?
                    {
                        Some((update, at)) => {
                            let mut job = job;
                            job.apply(JobStatus::Running, &update, at);
                            self.follow(job, None).await
                        }
                        None => Ok(()),
                    }
                }
                None => Ok(()),
            },
            JobStatus::Running => self.follow(job, attempt).await,
            JobStatus::Packaging => {
                let age = now_ms() - job.updated_at;
                if age > self.delivery.packaging_lease.as_millis() as Millis {
                    tracing::warn!(
                        request_id,
                        age_ms = age,
                        "packaging lease expired; packaging again"
                    );
                    self.package(job).await
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

    async fn follow(&self, job: Job, attempt: Option<u32>) -> Result<(), Retry> {
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
                return self
                    .fail(job, JobStatus::Running, "statement", message)
                    .await;
            }
            Err(e) => return Err(e.into()),
        };
        match status.state {
            StatementState::Finished => {
                let event = JobEvent::new(
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
                    .transition(
                        &job.request_id,
                        JobStatus::Running,
                        JobStatus::Packaging,
                        &update,
                        &event,
                    )
                    .await?
                {
                    let mut job = job;
                    job.apply(JobStatus::Packaging, &update, event.at);
                    self.package(job).await
                } else {
                    Ok(())
                }
            }
            StatementState::Failed | StatementState::Aborted => {
                let message = status.error.unwrap_or_else(|| {
                    format!("statement {statement_id} {}", status.state.as_str())
                });
                self.fail(job, JobStatus::Running, "statement", message)
                    .await
            }
            _ => self.follow_up_later(&job.request_id, attempt).await,
        }
    }

    /// Re-queues a follow-up poll with backoff. A statement event carries no attempt: the
    /// follow-up chain already running will look again.
    async fn follow_up_later(&self, request_id: &str, attempt: Option<u32>) -> Result<(), Retry> {
        if let Some(attempt) = attempt {
            let next = attempt.saturating_add(1);
            let poll = PollMessage::FollowUp(FollowUp {
                request_id: request_id.to_owned(),
                attempt: Some(next),
            });
            self.queue
                .send(
                    QueueName::Polls,
                    &poll.to_body(),
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

    async fn package(&self, job: Job) -> Result<(), Retry> {
        let prefix = self.unload.job_prefix(&job.request_id);
        let manifest_ref = ObjectRef::new(&prefix.bucket, format!("{}manifest", prefix.key));
        let target = self.archive_object(&job);
        let extension = format!("{}{}", job.format.extension(), job.compression.suffix());
        let packaged = match archive::read_manifest(self.objects.as_ref(), &manifest_ref).await {
            Ok(manifest) => match manifest.entries.iter().find(|e| !within(&e.url, &prefix)) {
                // The manifest may only point at this job's own parts.
                Some(stray) => Err(PortError::Rejected(format!(
                    "manifest entry {} is outside {}",
                    stray.url,
                    prefix.s3_url()
                ))),
                None => {
                    archive::package(
                        self.objects.as_ref(),
                        &manifest,
                        &job.dataset,
                        &extension,
                        job.archive,
                        &target,
                    )
                    .await
                }
            },
            Err(e) => Err(e),
        };
        let packaged = match packaged {
            Ok(p) => p,
            Err(PortError::Unavailable(message)) => return Err(Retry(message)),
            Err(e) => {
                return self
                    .fail(job, JobStatus::Packaging, "package", e.to_string())
                    .await
            }
        };
        let event = JobEvent::new(
            "packaged",
            JobStatus::Succeeded.as_str(),
            format!(
                "{} rows in {} files, {} bytes",
                packaged.rows, packaged.files, packaged.bytes
            ),
        );
        let update = JobUpdate {
            rows: Some(packaged.rows),
            bytes: Some(packaged.bytes),
            archive_object: Some(target),
            ..JobUpdate::default()
        };
        if !self
            .control
            .transition(
                &job.request_id,
                JobStatus::Packaging,
                JobStatus::Succeeded,
                &update,
                &event,
            )
            .await?
        {
            tracing::info!(request_id = %job.request_id, "job left PACKAGING while being packaged; archive not announced");
            return Ok(());
        }
        tracing::info!(request_id = %job.request_id, rows = packaged.rows, bytes = packaged.bytes, "job succeeded");
        let mut job = job;
        job.apply(JobStatus::Succeeded, &update, event.at);
        self.notify(&job).await
    }

    async fn fail(
        &self,
        job: Job,
        from: JobStatus,
        step: &str,
        message: String,
    ) -> Result<(), Retry> {
        tracing::warn!(request_id = %job.request_id, step, error = %message, "job failed");
        let event = JobEvent::new(step, JobStatus::Failed.as_str(), message.clone());
        let update = JobUpdate {
            error: Some(message),
            ..JobUpdate::default()
        };
        if self
            .control
            .transition(&job.request_id, from, JobStatus::Failed, &update, &event)
            .await?
        {
            let mut job = job;
            job.apply(JobStatus::Failed, &update, event.at);
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
        let cutoff = now_ms() - self.delivery.sweep_after.as_millis() as Millis;
        let jobs = self.control.unsettled_jobs(cutoff, SWEEP_LIMIT).await?;
        for job in &jobs {
            let request_id = job.request_id.clone();
            let (queue, body) = if job.status == JobStatus::Queued {
                let start = StartJob { request_id };
                let body = serde_json::to_string(&start).expect("plain struct serialises");
                (QueueName::Requests, body)
            } else {
                let look = PollMessage::FollowUp(FollowUp {
                    request_id,
                    attempt: None,
                });
                (QueueName::Polls, look.to_body())
            };
            self.queue
                .send(queue, &body, std::time::Duration::ZERO)
                .await?;
            tracing::info!(request_id = %job.request_id, status = %job.status, idle_ms = now_ms() - job.updated_at, "swept a job that has not moved");
        }
        tracing::info!(swept = jobs.len(), "sweep done");
        Ok(())
    }

    /// Called for a message on its last delivery whose handling failed again. A job still in
    /// flight fails with the reason, rather than wait forever behind a dead letter.
    pub async fn give_up(&self, body: &str, reason: &str) -> Result<(), Retry> {
        let request_id = match PollMessage::parse(body) {
            Ok(PollMessage::FollowUp(follow_up)) => follow_up.request_id,
            Ok(PollMessage::StatementEvent(event)) => match event.statement_name {
                Some(name) => name,
                None => return Ok(()),
            },
            // The next tick sweeps again.
            Ok(PollMessage::Sweep) | Err(_) => return Ok(()),
        };
        let Some(job) = self.control.get_job(&request_id).await? else {
            return Ok(());
        };
        if job.status.is_terminal() {
            return Ok(());
        }
        let from = job.status;
        self.fail(
            job,
            from,
            "poll",
            format!("gave up following the export: {reason}"),
        )
        .await
    }

    /// Sends the job's one email: the link when it succeeded, the error when it failed. The
    /// send is claimed first so that concurrent handlers send it once; if it fails, the
    /// claim is released and the message retried. The job's state never depends on it.
    async fn notify(&self, job: &Job) -> Result<(), Retry> {
        if !self
            .control
            .claim_notification(&job.request_id, now_ms())
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
                    .append_event(&job.request_id, &JobEvent::new("notified", "ok", message))
                    .await?;
                Ok(())
            }
            Err(e) => {
                tracing::warn!(request_id = %job.request_id, error = %e, "notification failed; will retry");
                self.control
                    .append_event(
                        &job.request_id,
                        &JobEvent::new("notified", "error", e.to_string()),
                    )
                    .await?;
                self.control.release_notification(&job.request_id).await?;
                Err(Retry(format!("notification failed: {e}")))
            }
        }
    }

    async fn compose(&self, job: &Job, to: Vec<String>) -> Result<Email, PortError> {
        if job.status != JobStatus::Succeeded {
            let error = job.error.clone().unwrap_or_default();
            return Ok(Email {
                subject: format!("Export {} failed ({})", job.dataset, job.request_id),
                text: format!(
                    "Your export could not be completed.\n\nRequest id: {}\nDataset: {}\nError: {}\n",
                    job.request_id, job.dataset, error
                ),
                html: format!(
                    "<p>Your export could not be completed.</p><table><tr><th align=\"left\">Request id</th><td>{}</td></tr><tr><th align=\"left\">Dataset</th><td>{}</td></tr><tr><th align=\"left\">Error</th><td>{}</td></tr></table>",
                    html_escape(&job.request_id), html_escape(&job.dataset), html_escape(&error)
                ),
                to,
                request_id: job.request_id.clone(),
            });
        }
        let DownloadLink {
            url,
            file_name,
            expires_at,
        } = super::presign_archive(self.objects.as_ref(), job, self.delivery.link_ttl)
            .await?
            .ok_or_else(|| PortError::Rejected("succeeded job has no archive".into()))?;
        let file_name = file_name.as_str();
        let expires = chrono::DateTime::from_timestamp_millis(expires_at)
            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_default();
        let rows = job.rows.unwrap_or(0);
        let size = human_size(job.bytes.unwrap_or(0));
        Ok(Email {
            subject: format!("Export {} is ready ({})", job.dataset, job.request_id),
            text: format!(
                "Your export is ready.\n\nDownload: {url}\n\nRequest id: {}\nDataset: {}\nRows: {rows}\nSize: {size}\nLink expires: {expires}\n\nA fresh link is available from GET /exports/{}/download.\n",
                job.request_id, job.dataset, job.request_id
            ),
            html: format!(
                "<p>Your export is ready.</p><p><a href=\"{}\">Download {}</a></p><table><tr><th align=\"left\">Request id</th><td>{}</td></tr><tr><th align=\"left\">Dataset</th><td>{}</td></tr><tr><th align=\"left\">Rows</th><td>{rows}</td></tr><tr><th align=\"left\">Size</th><td>{size}</td></tr><tr><th align=\"left\">Link expires</th><td>{expires}</td></tr></table>",
                html_escape(&url), html_escape(file_name), html_escape(&job.request_id), html_escape(&job.dataset)
            ),
            to,
            request_id: job.request_id.clone(),
        })
    }
}

/// Jobs looked at per sweep, oldest first; the rest wait for the next tick.
pub const SWEEP_LIMIT: usize = 200;

pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
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

    #[test]
    fn sizes_and_escaping() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(
            html_escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
