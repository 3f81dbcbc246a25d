//! The query side (the `status` function): a caller's jobs, their history and download links.

use super::DownloadLink;
use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::domain::{Job, JobEvent, JobStatus, Owner};
use crate::error::ApiError;
use crate::page::{JobPage, PageToken};
use crate::ports::{ControlTable, ObjectStore};
use http::StatusCode;
use std::sync::Arc;
use std::time::Duration;

/// Shared state of the `status` function.
pub struct Queries {
    pub catalog: Arc<Catalog>,
    pub control: Arc<dyn ControlTable>,
    pub objects: Arc<dyn ObjectStore>,
    pub clock: Arc<dyn Clock>,
    pub link_ttl: Duration,
}

/// The most jobs one page of `GET /exports` returns.
pub const MAX_PAGE: usize = 100;

impl Queries {
    /// The job, if it exists and belongs to `owner`; otherwise 404 either way.
    pub async fn job(&self, owner: &Owner, request_id: &str) -> Result<Job, ApiError> {
        super::owned_job(self.control.as_ref(), owner, request_id).await
    }

    pub async fn events(&self, owner: &Owner, request_id: &str) -> Result<Vec<JobEvent>, ApiError> {
        self.job(owner, request_id).await?;
        Ok(self.control.events(request_id).await?)
    }

    /// One page of the owner's jobs, from the `cursor` a previous page handed out.
    pub async fn list(
        &self,
        owner: &Owner,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<JobPage, ApiError> {
        let after = cursor
            .map(PageToken::decode)
            .transpose()
            .map_err(|e| ApiError::invalid("cursor", e.to_string()))?;
        Ok(self.control.list_jobs(owner, limit, after.as_ref()).await?)
    }

    /// A new link for a finished job's archive; 409 while the job has none.
    pub async fn download_link(&self, job: &Job) -> Result<DownloadLink, ApiError> {
        let link = match job.status {
            JobStatus::Succeeded => {
                super::presign_archive(self.objects.as_ref(), job, self.link_ttl, self.clock.now())
                    .await?
            }
            _ => None,
        };
        link.ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "not_ready",
                format!(
                    "export job {} is {}; there is nothing to download",
                    job.request_id, job.status
                ),
            )
        })
    }
}
