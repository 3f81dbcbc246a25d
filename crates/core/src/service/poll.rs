//! The `poller`: follows a running statement to its end, packages the result, sends the link.

use super::process::Retry;
use crate::archive::{self, Manifest};
use crate::domain::{now_ms, Job, JobEvent, JobStatus, JobUpdate, Millis, ObjectRef};
use crate::messages::PollMessage;
use crate::ports::{
    ControlTable, Email, Mailer, ObjectStore, PortError, QueueName, QueueSender, StatementState,
    Warehouse,
};
use crate::settings::{DeliverySettings, UnloadSettings};
use std::sync::Arc;
use std::time::Duration;

/// How long to wait before looking again at a statement event that overtook its job's
/// QUEUED → RUNNING write.
const EARLY_EVENT_DELAY: Duration = Duration::from_millis(200);

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
            PollMessage::FollowUp {
                request_id,
                attempt,
            } => (request_id, Some(attempt), None),
            PollMessage::StatementEvent(event) => match event.statement_name.clone() {
                Some(name) => (name, None, Some(event)),
                None => {
                    tracing::warn!(statement_id = %event.statement_id, "statement event without a name; not one of ours");
                    return Ok(());
                }
            },
        };
        let Some(job) = self.control.get_job(&request_id).await? else {
            tracing::warn!(request_id, "poll for a job that does not exist; dropped");
            return Ok(());
        };
        match job.status {
            JobStatus::Queued => {
                if let Some(event) = event {
                    // The statement ended before the processor recorded RUNNING: look again
                    // shortly rather than lose the event.
                    let again = PollMessage::StatementEvent(event);
                    self.queue
                        .send(QueueName::Polls, &again.to_body(), EARLY_EVENT_DELAY)
                        .await?;
                }
                Ok(())
            }
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
            JobStatus::Succeeded | JobStatus::Failed if job.notified_at.is_none() => {
                // Finished by a run that stopped before its email went out.
                self.notify(&job).await;
                Ok(())
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
        let status = self.warehouse.describe(&statement_id).await?;
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
            let poll = PollMessage::FollowUp {
                request_id: request_id.to_owned(),
                attempt: next,
            };
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
            Ok(manifest) => {
                self.write_archive(&job, &manifest, &extension, &target)
                    .await
            }
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
        self.notify(&job).await;
        Ok(())
    }

    async fn write_archive(
        &self,
        job: &Job,
        manifest: &Manifest,
        extension: &str,
        target: &ObjectRef,
    ) -> Result<archive::Packaged, PortError> {
        archive::package(
            self.objects.as_ref(),
            manifest,
            &job.dataset,
            extension,
            job.archive,
            target,
        )
        .await
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
            self.notify(&job).await;
        }
        Ok(())
    }

    /// Sends the job's one email: the link when it succeeded, the error when it failed. A
    /// failure to send is recorded and never changes the job.
    async fn notify(&self, job: &Job) {
        match self
            .control
            .claim_notification(&job.request_id, now_ms())
            .await
        {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(request_id = %job.request_id, error = %e, "could not claim the notification");
                return;
            }
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
        let event = match outcome {
            Ok(message) => JobEvent::new("notified", "ok", message),
            Err(e) => {
                tracing::warn!(request_id = %job.request_id, error = %e, "notification failed");
                JobEvent::new("notified", "error", e.to_string())
            }
        };
        if let Err(e) = self.control.append_event(&job.request_id, &event).await {
            tracing::warn!(request_id = %job.request_id, error = %e, "could not record the notification");
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
        let object = job
            .archive_object
            .as_ref()
            .ok_or_else(|| PortError::Rejected("succeeded job has no archive".into()))?;
        let file_name = object.key.rsplit('/').next().unwrap_or(&object.key);
        let url = self
            .objects
            .presign_get(object, self.delivery.link_ttl, file_name)
            .await?;
        let expires = chrono::DateTime::from_timestamp_millis(
            now_ms() + self.delivery.link_ttl.as_millis() as i64,
        )
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

#[cfg(test)]
mod tests {
    use super::*;

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
