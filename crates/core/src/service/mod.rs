//! The four services, one per Lambda function, each holding only the ports it uses, and the
//! delivery routine every queue runner shares.

pub mod admission;
pub mod audit;
pub mod compose;
pub mod consume;
mod local_answers;
pub mod lookup;
pub mod notice;
pub mod poll;
pub mod process;
pub mod query;
pub mod quota;
pub mod submit;
pub mod subscribe;

pub use admission::{Admission, AdmissionSettings, Admitted};
pub use audit::Audit;
pub use consume::{consume, Consumer, Delivered};
pub use lookup::{Answer, Looked, LookupSettings, Lookups};
pub use poll::{Poller, NOTICE_ATTEMPTS};
pub use process::Processor;
pub use query::{PartsPage, Queries};
pub use quota::Quotas;
pub use submit::{ExportRequest, Submissions, Submitted};
pub use subscribe::Subscriptions;

use crate::domain::{Job, JobEvent, JobStatus, JobUpdate, Millis, ObjectRef, Owner, Transition};
use crate::error::ApiError;
use crate::ports::{ControlTable, ObjectStore, PortError};
use std::time::Duration;

/// A message could not be handled now; leave it on the queue to be delivered again.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Retry(pub String);

impl From<PortError> for Retry {
    fn from(e: PortError) -> Self {
        Retry(e.to_string())
    }
}

/// The job, if it exists and belongs to `owner`; 404 either way otherwise, so a request id
/// reveals nothing about other callers' jobs.
pub async fn owned_job(
    control: &dyn ControlTable,
    owner: &Owner,
    request_id: &str,
) -> Result<Job, ApiError> {
    match control.get_job(request_id).await? {
        Some(job) if &job.owner == owner => Ok(job),
        _ => Err(ApiError::job_not_found(request_id)),
    }
}

/// Records that the job's statement started: QUEUED → RUNNING with its id, only from QUEUED.
/// The processor does this after starting the statement; the poller does it when the
/// statement's end overtakes the processor's write. Returns the update if this call won.
pub async fn record_start(
    control: &dyn ControlTable,
    request_id: &str,
    statement_id: &str,
    unload_attempt: u32,
    at: Millis,
) -> Result<Option<(JobUpdate, Millis)>, PortError> {
    let event = JobEvent::new(
        at,
        "started",
        JobStatus::Running.as_str(),
        format!("statement {statement_id} started"),
    );
    let update = JobUpdate {
        statement_id: Some(statement_id.to_owned()),
        unload_attempt: Some(unload_attempt),
        ..JobUpdate::default()
    };
    let won = control
        .transition(request_id, Transition::START, &update, &event)
        .await?;
    Ok(won.then_some((update, event.at)))
}

pub use export_api::PartLink;

/// The manifest of a job whose parts are its result (`archive: none`); None for any other.
pub async fn parts_manifest(
    objects: &dyn ObjectStore,
    job: &Job,
) -> Result<Option<crate::archive::Manifest>, PortError> {
    match (&job.archive_object, job.archive.is_packaged()) {
        (Some(manifest), false) if job.status == JobStatus::Succeeded => Ok(Some(
            crate::archive::read_manifest(objects, manifest).await?,
        )),
        _ => Ok(None),
    }
}

/// Fresh links to the parts `range` of the job's manifest, each for `ttl` from `now`.
pub async fn presign_parts(
    objects: &dyn ObjectStore,
    job: &Job,
    manifest: &crate::archive::Manifest,
    range: std::ops::Range<usize>,
    ttl: Duration,
    now: Millis,
) -> Result<Vec<PartLink>, PortError> {
    let extension = format!("{}{}", job.format.extension(), job.compression.suffix());
    let asked = now + ttl.as_millis() as Millis;
    let mut links = Vec::with_capacity(range.len());
    for index in range {
        let entry = &manifest.entries[index];
        let object = ObjectRef::parse_s3_url(&entry.url).ok_or_else(|| {
            PortError::Rejected(format!("manifest entry {} is not an s3:// URL", entry.url))
        })?;
        let name = crate::archive::entry_name(&job.dataset, index, &extension);
        let presigned = objects.presign_get(&object, ttl, &name).await?;
        links.push(PartLink {
            index,
            size: entry.meta.as_ref().map_or(0, |m| m.content_length),
            rows: manifest.entry_rows(index, job.format.has_header_line()),
            name,
            url: presigned.url,
            expires_at: presigned
                .signer_expires_at
                .map_or(asked, |at| at.min(asked)),
        });
    }
    Ok(links)
}

/// A freshly presigned link to a job's archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownloadLink {
    pub url: String,
    pub file_name: String,
    pub expires_at: Millis,
}

/// Presigns the job's archive for `ttl` from `now`; `None` while the job has no archive. The
/// link's `expires_at` is when it really stops working.
pub async fn presign_archive(
    objects: &dyn ObjectStore,
    job: &Job,
    ttl: Duration,
    now: Millis,
) -> Result<Option<DownloadLink>, PortError> {
    let Some(object) = job
        .archive_object
        .as_ref()
        .filter(|_| job.archive.is_packaged())
    else {
        return Ok(None);
    };
    let file_name = object
        .key
        .rsplit('/')
        .next()
        .unwrap_or(&object.key)
        .to_owned();
    let presigned = objects.presign_get(object, ttl, &file_name).await?;
    let asked = now + ttl.as_millis() as Millis;
    Ok(Some(DownloadLink {
        url: presigned.url,
        file_name,
        // The earlier of the two: the URL's own expiry, and its signer's.
        expires_at: presigned
            .signer_expires_at
            .map_or(asked, |at| at.min(asked)),
    }))
}
