//! The query side (the `status` function): a caller's jobs, their history and download links.

use super::{DownloadLink, PartLink};
use crate::access::Access;
use crate::clock::Clock;
use crate::domain::{Job, JobEvent, JobStatus, Owner};
use crate::error::ApiError;
use crate::page::{JobPage, PageToken};
use crate::ports::{AdmissionLedger, ControlTable, ObjectStore, PortError, PortResult};
use export_api::ExportDescription;
use http::StatusCode;
use std::sync::Arc;
use std::time::Duration;

/// Shared state of the `status` function.
pub struct Queries {
    /// The catalogue as each caller may see it: the one way to it from here.
    pub access: Arc<Access>,
    pub control: Arc<dyn ControlTable>,
    pub objects: Arc<dyn ObjectStore>,
    pub clock: Arc<dyn Clock>,
    pub link_ttl: Duration,
    /// The line for warehouse slots, where a waiting job stands; None when admission is off.
    pub line: Option<Arc<dyn AdmissionLedger>>,
    /// What the caller may use, and has used.
    pub quotas: super::Quotas,
    /// Where every link handed out is recorded.
    pub audit: super::Audit,
    /// The keys each caller's webhook secret comes from.
    pub webhooks: crate::settings::WebhookSettings,
    /// What sends a caller's test notice (`POST /webhook-test`).
    pub webhook_sender: Arc<dyn crate::ports::Webhooks>,
}

/// The most jobs one page of `GET /exports` returns.
pub const MAX_PAGE: usize = 100;

/// The most parts one page of `GET /exports/{id}/parts` returns, and how many by default.
pub const MAX_PARTS_PAGE: usize = 1000;
pub const PARTS_PAGE: usize = 100;

/// One page of an export's parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartsPage {
    pub parts: Vec<PartLink>,
    /// How many parts the export has in all.
    pub total: usize,
    /// Hands out the next page; None on the last.
    pub next_cursor: Option<String>,
}

impl Queries {
    /// How many jobs are ahead of this one in line for a warehouse slot; None if it is not
    /// waiting (admitted, ended, or admission is off).
    pub async fn queue_position(&self, request_id: &str) -> PortResult<Option<u64>> {
        match &self.line {
            Some(line) => line.place(request_id).await,
            None => Ok(None),
        }
    }

    /// The datasets `owner` may use, each with its bound values (`GET /datasets`).
    pub async fn datasets(&self, owner: &Owner) -> Result<Vec<ExportDescription>, ApiError> {
        let principal = self.access.principal(owner).await?;
        Ok(self
            .access
            .datasets(&principal)
            .map(|export| self.access.describe(&principal, export))
            .collect())
    }

    /// One dataset, if `owner` may use it; otherwise 404 as for one that does not exist.
    pub async fn dataset(&self, owner: &Owner, name: &str) -> Result<ExportDescription, ApiError> {
        let principal = self.access.principal(owner).await?;
        let export = self.access.dataset(&principal, name).ok_or_else(|| {
            self.access
                .unknown_dataset(&principal, name, StatusCode::NOT_FOUND)
        })?;
        Ok(self.access.describe(&principal, export))
    }

    /// The job, if it exists and belongs to `owner`; otherwise 404 either way.
    pub async fn job(&self, owner: &Owner, request_id: &str) -> Result<Job, ApiError> {
        super::owned_job(self.control.as_ref(), owner, request_id).await
    }

    pub async fn events(&self, owner: &Owner, request_id: &str) -> Result<Vec<JobEvent>, ApiError> {
        self.job(owner, request_id).await?;
        Ok(self.control.events(request_id).await?)
    }

    /// One page of the owner's jobs, from the `cursor` a previous page handed out.
    /// The owner whose jobs `caller` asked to list, `other`: allowed to an admin of the
    /// access policy only (403 otherwise, naming the field).
    pub async fn listed_owner(&self, caller: &Owner, other: String) -> Result<Owner, ApiError> {
        let principal = self.access.principal(caller).await?;
        if !principal.standing.admin {
            return Err(ApiError::forbidden(
                "only an admin of the access policy may list another caller's jobs",
            )
            .with_field("owner"));
        }
        tracing::info!(admin = %caller, owner = %other, "an admin listed another caller's jobs");
        Ok(Owner(other))
    }

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

    /// One page of the parts of a job handed out as they are (`archive: none`), with fresh
    /// links, from the `cursor` the page before handed out; 409 for any other job.
    pub async fn parts(
        &self,
        job: &Job,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<PartsPage, ApiError> {
        let manifest = match super::parts_manifest(self.objects.as_ref(), job).await {
            Ok(Some(manifest)) => manifest,
            Ok(None) => return Err(self.no_parts(job)),
            // The results bucket keeps the output `ResultsExpiryDays`, the job lives longer.
            Err(PortError::NotFound(_)) => return Err(ApiError::files_expired(&job.request_id)),
            Err(e) => return Err(e.into()),
        };
        let total = manifest.entries.len();
        // The cursor is the index of the page's first part, as this route handed it out.
        let start = match cursor {
            None => 0,
            Some(c) => c
                .parse::<usize>()
                .ok()
                .filter(|&i| i > 0 && i < total && c == i.to_string())
                .ok_or_else(|| {
                    ApiError::invalid("cursor", "'cursor' is not one this route handed out")
                })?,
        };
        let end = (start + limit).min(total);
        let parts = super::presign_parts(
            self.objects.as_ref(),
            job,
            &manifest,
            start..end,
            self.link_ttl,
            self.clock.now(),
        )
        .await?;
        self.audit.links(job, "issued", Some(start..end)).await?;
        Ok(PartsPage {
            parts,
            total,
            next_cursor: (end < total).then(|| end.to_string()),
        })
    }

    fn no_parts(&self, job: &Job) -> ApiError {
        let message = if job.status != JobStatus::Succeeded {
            format!(
                "export job {} is {}; it has no parts to hand out yet",
                job.request_id, job.status
            )
        } else {
            format!(
                "export job {} is packaged as one {} archive: GET /exports/{}/download",
                job.request_id, job.archive, job.request_id
            )
        };
        ApiError::new(StatusCode::CONFLICT, "no_parts", message)
    }

    /// A new link for a finished job's archive (or its one part); 409 while the job has none,
    /// or when its parts are many (they are listed at `/exports/{id}/parts`); 410 once its
    /// files have expired.
    pub async fn download_link(&self, job: &Job) -> Result<DownloadLink, ApiError> {
        if !job.archive.is_packaged() && job.status == JobStatus::Succeeded {
            let page = self.parts(job, 2, None).await?;
            return match &page.parts[..] {
                [only] if page.total == 1 => Ok(DownloadLink {
                    url: only.url.clone(),
                    file_name: only.name.clone(),
                    expires_at: only.expires_at,
                }),
                _ => Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "several_parts",
                    format!(
                        "export job {} has {} parts and no archive: GET /exports/{}/parts lists them with a link each",
                        job.request_id, page.total, job.request_id
                    ),
                )),
            };
        }
        let link = match (job.status, &job.archive_object) {
            (JobStatus::Succeeded, Some(archive)) => {
                // A link to an archive the downloads bucket no longer has would only fail at
                // the caller's download: say so now.
                match self.objects.size_of(archive).await {
                    Ok(Some(_)) => {}
                    Ok(None) => return Err(ApiError::files_expired(&job.request_id)),
                    // The link is signed without asking S3; a look that failed says nothing.
                    Err(e) => {
                        tracing::warn!(request_id = %job.request_id, error = %e, "could not tell whether the archive is still there");
                    }
                }
                super::presign_archive(self.objects.as_ref(), job, self.link_ttl, self.clock.now())
                    .await?
            }
            _ => None,
        };
        let link = link.ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "not_ready",
                format!(
                    "export job {} is {}; there is nothing to download",
                    job.request_id, job.status
                ),
            )
        })?;
        self.audit.links(job, "issued", None).await?;
        Ok(link)
    }
}
