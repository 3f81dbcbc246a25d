//! The query side (the `status` function): a caller's jobs, their history and download links.

use crate::catalog::Catalog;
use crate::domain::{now_ms, Job, JobEvent, JobStatus, Millis, Owner};
use crate::error::ApiError;
use crate::ports::{ControlTable, JobPage, ObjectStore};
use http::StatusCode;
use std::sync::Arc;
use std::time::Duration;

/// Shared state of the `status` function.
pub struct Queries {
    pub catalog: Arc<Catalog>,
    pub control: Arc<dyn ControlTable>,
    pub objects: Arc<dyn ObjectStore>,
    pub link_ttl: Duration,
}

/// A freshly presigned link to a job's archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownloadLink {
    pub url: String,
    pub expires_at: Millis,
}

/// The most jobs one page of `GET /exports` returns.
pub const MAX_PAGE: usize = 100;

impl Queries {
    /// The job, if it exists and belongs to `owner`; otherwise 404 either way.
    pub async fn job(&self, owner: &Owner, request_id: &str) -> Result<Job, ApiError> {
        match self.control.get_job(request_id).await? {
            Some(job) if &job.owner == owner => Ok(job),
            _ => Err(ApiError::job_not_found(request_id)),
        }
    }

    pub async fn events(&self, owner: &Owner, request_id: &str) -> Result<Vec<JobEvent>, ApiError> {
        self.job(owner, request_id).await?;
        Ok(self.control.events(request_id).await?)
    }

    pub async fn list(
        &self,
        owner: &Owner,
        limit: usize,
        after: Option<&str>,
    ) -> Result<JobPage, ApiError> {
        Ok(self
            .control
            .list_jobs(owner, limit.clamp(1, MAX_PAGE), after)
            .await?)
    }

    /// A new link for a finished job's archive; 409 while the job has none.
    pub async fn download_link(&self, job: &Job) -> Result<DownloadLink, ApiError> {
        let object = match (&job.status, &job.archive_object) {
            (JobStatus::Succeeded, Some(object)) => object,
            _ => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "not_ready",
                    format!(
                        "export job {} is {}; there is nothing to download",
                        job.request_id, job.status
                    ),
                ))
            }
        };
        let file_name = object.key.rsplit('/').next().unwrap_or(&object.key);
        let url = self
            .objects
            .presign_get(object, self.link_ttl, file_name)
            .await?;
        Ok(DownloadLink {
            url,
            expires_at: now_ms() + self.link_ttl.as_millis() as Millis,
        })
    }
}
