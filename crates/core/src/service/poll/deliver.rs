//! A job's deliveries besides its mail: a signed notice POSTed to each webhook, the archive
//! (or the parts) copied into each bucket. Each is done once, recorded in the job's history as
//! a `delivered` event whose message starts with its place in the request (`deliver[1]`), so
//! a retry of the whole does only what is not yet done.

use super::notify::{failures, settled, ManifestOnce, NoticeLinks};
use super::*;
use crate::ports::WebhookPost;
use export_api::{render_key, Delivery, S3Place, WebhookNotice};

/// The history's name for the delivery at `index` of the job's `deliver`.
pub(super) fn label(index: usize) -> String {
    format!("deliver[{index}] ")
}

/// What one try at a delivery came to.
enum Outcome {
    Done(String),
    /// Refused for good: not tried again.
    Refused(String),
    /// Nothing to deliver (the files of an export that failed).
    Skipped(String),
    /// Failed for a reason that may pass: tried again later.
    Failed(String),
}

impl Poller {
    /// Tries every delivery not yet settled; answers why each that failed for a transient
    /// reason did (empty when nothing is left to try again).
    /// A delivery is not begun within the packaging margin of `deadline` (the invocation's
    /// end): what is left goes to the next try, rather than being cut off half made with the
    /// notice's claim held.
    pub(super) async fn deliver(
        &self,
        job: &Job,
        history: &[JobEvent],
        deadline: Option<Instant>,
        manifest: &ManifestOnce,
    ) -> Result<Vec<String>, Retry> {
        let mut unsent = Vec::new();
        for (index, delivery) in job.deliver.iter().enumerate() {
            if matches!(delivery, Delivery::Email(_)) || settled(history, "delivered", Some(index))
            {
                continue;
            }
            if deadline.is_some_and(|d| Instant::now() + self.packaging.margin >= d) {
                unsent.push(format!(
                    "{}left for the next try, out of time",
                    label(index)
                ));
                break;
            }
            let outcome = match delivery {
                Delivery::Webhook(url) => self.post_notice(job, url, manifest).await,
                Delivery::S3(place) => self.copy_files(job, place, manifest).await,
                Delivery::Email(_) => continue,
            };
            let target = format!("{}{} {}", label(index), delivery.kind(), delivery.target());
            let (outcome, message) = match outcome {
                Outcome::Done(m) => ("ok", m),
                Outcome::Refused(m) => ("refused", m),
                Outcome::Skipped(m) => ("skipped", m),
                Outcome::Failed(m) => {
                    let tries = failures(history, "delivered", Some(index)) + 1;
                    if tries >= NOTICE_ATTEMPTS {
                        tracing::warn!(request_id = %job.request_id, %target, reason = %m, "delivery failed again; given up");
                        ("abandoned", format!("gave up after {tries} attempts: {m}"))
                    } else {
                        tracing::warn!(request_id = %job.request_id, %target, reason = %m, "delivery failed; will retry");
                        unsent.push(format!("{target}: {m}"));
                        ("error", format!("attempt {tries}: {m}"))
                    }
                }
            };
            self.control
                .append_event(
                    &job.request_id,
                    &self.event("delivered", outcome, format!("{target}: {message}")),
                )
                .await?;
        }
        Ok(unsent)
    }

    /// The notice, signed with the caller's secret, POSTed to `url`.
    async fn post_notice(&self, job: &Job, url: &str, manifest: &ManifestOnce) -> Outcome {
        let Some(keys) = &self.delivery.webhooks.keys else {
            return Outcome::Refused("this deployment has no webhook key".into());
        };
        // Checked at submit; checked again, as the deployment's rules may have changed since.
        if let Err(reason) = crate::webhook::destination(url, self.delivery.webhooks.reach) {
            return Outcome::Refused(reason);
        }
        let notice = match self.notice(job, url, manifest).await {
            Ok(notice) => notice,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        let body = serde_json::to_vec(&notice).expect("a notice serialises");
        let now = self.clock.now();
        let post = WebhookPost {
            url: url.to_owned(),
            signature: keys.sign(&job.owner.0, now.div_euclid(1000), &body),
            body: body.into(),
            request_id: job.request_id.clone(),
        };
        match self.webhooks.post(&post).await {
            Ok(status) if (200..300).contains(&status) => {
                Outcome::Done(format!("answered {status}"))
            }
            // Worth another try: the receiver is busy, down or slow.
            Ok(status @ (408 | 425 | 429 | 500..=599)) => {
                Outcome::Failed(format!("answered {status}"))
            }
            Ok(status) => Outcome::Refused(format!("answered {status}")),
            Err(PortError::Rejected(reason)) => Outcome::Refused(reason),
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }

    /// The notice for the job as it ended, with fresh links, recorded as handed out first.
    async fn notice(
        &self,
        job: &Job,
        url: &str,
        manifest: &ManifestOnce,
    ) -> Result<WebhookNotice, PortError> {
        let succeeded = job.status == JobStatus::Succeeded;
        let mut notice = WebhookNotice {
            event: format!("export.{}", if succeeded { "succeeded" } else { "failed" }),
            request_id: job.request_id.clone(),
            dataset: job.dataset.clone(),
            status: job.status,
            subscription_id: job.subscription_id.clone(),
            rows: job.rows,
            bytes: job.bytes,
            download_url: None,
            parts: Vec::new(),
            expires_at: None,
            error: job.error.clone(),
            sent_at: self.clock.now(),
        };
        if !succeeded {
            return Ok(notice);
        }
        // On record before the links are made, as every link handed out is.
        self.audit.delivered(job, "webhook", url).await?;
        match self.fresh_links(job, manifest).await? {
            NoticeLinks::Archive(link) => {
                notice.expires_at = Some(link.expires_at);
                notice.download_url = Some(link.url);
            }
            NoticeLinks::Parts { links, .. } => {
                notice.expires_at = links.iter().map(|l| l.expires_at).min();
                notice.parts = links.into_iter().map(|l| l.url).collect();
            }
        }
        Ok(notice)
    }

    /// The archive, or each part, copied to `place` (checked against the caller's access at
    /// submit), under names from its template.
    async fn copy_files(&self, job: &Job, place: &str, manifest: &ManifestOnce) -> Outcome {
        if job.status != JobStatus::Succeeded {
            return Outcome::Skipped("nothing to copy: the export did not succeed".into());
        }
        let place = match S3Place::parse(place) {
            Ok(place) => place,
            Err(reason) => return Outcome::Refused(reason),
        };
        match self.copy_to(job, &place, manifest).await {
            Ok(copied) => Outcome::Done(copied),
            Err(PortError::Rejected(reason)) => Outcome::Refused(reason),
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }

    async fn copy_to(
        &self,
        job: &Job,
        place: &S3Place,
        manifest: &ManifestOnce,
    ) -> Result<String, PortError> {
        let date = chrono::DateTime::from_timestamp_millis(job.created_at)
            .map(|t| t.date_naive().to_string())
            .unwrap_or_default();
        let part_ext = format!("{}{}", job.format.extension(), job.compression.suffix());
        if let Some(manifest) = self.manifest(job, manifest).await? {
            let template = place.parts_template();
            let to = format!("s3://{}/{template}", place.bucket);
            self.audit.delivered(job, "copied", &to).await?;
            let mut first = None;
            for (index, entry) in manifest.entries.iter().enumerate() {
                let from = ObjectRef::parse_s3_url(&entry.url).ok_or_else(|| {
                    PortError::Rejected(format!("manifest entry {} is not an s3:// URL", entry.url))
                })?;
                let part = archive::entry_name(&job.dataset, index, &part_ext);
                let key = render_key(
                    &template,
                    &[
                        ("dataset", &job.dataset),
                        ("date", &date),
                        ("request_id", &job.request_id),
                        ("ext", &part_ext),
                        ("part", &part),
                    ],
                );
                let to = ObjectRef::new(&place.bucket, key);
                self.objects.copy(&from, &to).await?;
                first.get_or_insert(to.s3_url());
            }
            return Ok(format!(
                "{} parts copied, the first to {}",
                manifest.entries.len(),
                first.unwrap_or_default()
            ));
        }
        let from = job
            .archive_object
            .as_ref()
            .ok_or_else(|| PortError::Rejected("succeeded job has no archive".into()))?;
        let ext = job.archive.extension();
        let file = from.key.rsplit('/').next().unwrap_or(&from.key);
        let key = render_key(
            &place.template,
            &[
                ("dataset", &job.dataset),
                ("date", &date),
                ("request_id", &job.request_id),
                ("ext", ext),
                ("part", file),
            ],
        );
        let to = ObjectRef::new(&place.bucket, key);
        self.audit.delivered(job, "copied", &to.s3_url()).await?;
        self.objects.copy(from, &to).await?;
        Ok(format!("copied to {}", to.s3_url()))
    }
}
