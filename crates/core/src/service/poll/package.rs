//! Packaging a finished statement's output into the job's archive, across invocations.

use super::*;

impl Poller {
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
    pub(super) fn staging_prefix(&self, job: &Job) -> ObjectRef {
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
    pub(super) async fn package(
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
                    archive::discard(self.objects.as_ref(), &target, &saved).await;
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
        self.notify(&job, deadline).await
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
