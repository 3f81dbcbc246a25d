//! The bodies the routes answer, as types: the handlers serialize these, and the OpenAPI
//! contract describes them from the same definitions, so the two cannot drift apart.

use crate::catalog::ExportDescription;
use crate::domain::{Archive, Compression, Format, Job, JobEvent, JobStatus, Millis};
use crate::ports::ResultColumn;
use crate::service::PartLink;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// Every error: a status code and this body.
#[derive(Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable name: `invalid_request`, `invalid_parameter`,
    /// `not_found`, `conflict`, `unsigned`, `forbidden`, `unavailable`, …
    pub code: String,
    /// What went wrong, for a person.
    pub message: String,
    /// The input at fault: a body field (`params.ids[1]`), a query parameter or a header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The warehouse statement a failed or timed-out lookup ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statement_id: Option<String>,
}

/// `POST /exports`: what to export, how, and who hears when it is ready.
#[derive(ToSchema)]
#[schema(example = json!({
    "dataset": "customers",
    "params": {"ids": [1, 2, 3], "segment": "BUILDING"},
    "format": "csv",
    "compression": "gzip",
    "archive": "zip",
    "notify": ["analyst@example.com"]
}))]
#[allow(dead_code)] // Read as JSON by `ExportRequest::from_json`; this is its description.
pub struct ExportRequestBody {
    /// A dataset of the catalogue (`GET /datasets`).
    dataset: String,
    /// The dataset's parameters, each as its type says (`GET /datasets`).
    #[schema(value_type = Object)]
    params: Option<Map<String, Value>>,
    format: Option<Format>,
    compression: Option<Compression>,
    archive: Option<Archive>,
    /// Addresses to email the link to, once the export is ready.
    notify: Option<Vec<String>>,
}

/// `POST /exports`, `DELETE /exports/{id}`: the job the request created or cancelled.
#[derive(Serialize, ToSchema)]
pub struct Accepted {
    pub request_id: String,
    pub status: JobStatus,
    /// Where to follow it (only on `POST /exports`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_url: Option<String>,
}

/// The fields every view of a job shares.
#[derive(Serialize, ToSchema)]
pub struct JobSummary {
    pub request_id: String,
    pub dataset: String,
    pub status: JobStatus,
    pub format: Format,
    pub compression: Compression,
    pub archive: Archive,
    /// Milliseconds since the epoch.
    #[schema(value_type = i64)]
    pub created_at: Millis,
    #[schema(value_type = i64)]
    pub updated_at: Millis,
    /// Rows unloaded, once the statement has finished.
    pub rows: Option<u64>,
    /// Bytes unloaded, once the statement has finished.
    pub bytes: Option<u64>,
    /// Why a job failed or was cancelled.
    pub error: Option<String>,
}

impl From<&Job> for JobSummary {
    fn from(job: &Job) -> Self {
        JobSummary {
            request_id: job.request_id.clone(),
            dataset: job.dataset.clone(),
            status: job.status,
            format: job.format,
            compression: job.compression,
            archive: job.archive,
            created_at: job.created_at,
            updated_at: job.updated_at,
            rows: job.rows,
            bytes: job.bytes,
            error: job.error.clone(),
        }
    }
}

/// `GET /exports`: a page of the caller's jobs, newest first.
#[derive(Serialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<JobSummary>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// When each phase began and ended.
#[derive(Serialize, ToSchema)]
pub struct Timings {
    #[schema(value_type = i64)]
    pub submitted_at: Millis,
    #[schema(value_type = Option<i64>)]
    pub started_at: Option<Millis>,
    #[schema(value_type = Option<i64>)]
    pub finished_at: Option<Millis>,
    #[schema(value_type = Option<i64>)]
    pub ended_at: Option<Millis>,
    /// From submission to the end, or to now for a job still going.
    #[schema(value_type = i64)]
    pub elapsed_ms: Millis,
}

#[derive(Serialize, ToSchema)]
pub struct JobLinks {
    #[serde(rename = "self")]
    pub this: String,
    pub events: String,
    pub download: String,
    /// For an export handed out as its parts (`archive: none`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parts: Option<String>,
}

/// `GET /exports/{id}`: the job, its timings, and when it is ready, how to fetch it.
#[derive(Serialize, ToSchema)]
pub struct JobView {
    #[serde(flatten)]
    pub summary: JobSummary,
    #[schema(value_type = Object)]
    pub params: Map<String, Value>,
    pub notify: Vec<String>,
    /// The warehouse statement running (or that ran) the UNLOAD.
    pub statement_id: Option<String>,
    pub timings: Timings,
    pub links: JobLinks,
    /// True once a SUCCEEDED job's files have expired (the archive after the downloads
    /// bucket's `DownloadsExpiryDays`, the parts after `ResultsExpiryDays`): no
    /// `download_url` or `parts` are given, and `/download` and `/parts` answer 410. Absent
    /// otherwise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expired: bool,
    /// A fresh link to the archive, once SUCCEEDED.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub download_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>)]
    pub download_expires_at: Option<Millis>,
    /// With `archive: none`, once SUCCEEDED: how many parts, the first page of them, and
    /// the cursor of the next page (`GET /exports/{id}/parts`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_parts: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parts: Option<Vec<PartLink>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parts_next_cursor: Option<String>,
}

/// `GET /exports/{id}/events`: the job's history, oldest first.
#[derive(Serialize, ToSchema)]
pub struct JobHistory {
    pub request_id: String,
    pub events: Vec<JobEvent>,
}

/// `GET /exports/{id}/parts`: a page of an export's parts, each with its link.
#[derive(Serialize, ToSchema)]
pub struct PartList {
    pub request_id: String,
    pub total_parts: usize,
    pub parts: Vec<PartLink>,
    pub next_cursor: Option<String>,
}

/// `GET /exports/{id}/download`: the link the redirect points at.
#[derive(Serialize, ToSchema)]
pub struct DownloadBody {
    pub download_url: String,
    /// When the link stops working (milliseconds since the epoch).
    #[schema(value_type = i64)]
    pub expires_at: Millis,
}

/// `GET /datasets`: the catalogue.
#[derive(Serialize, ToSchema)]
pub struct Datasets<'a> {
    pub datasets: Vec<ExportDescription<'a>>,
}

/// `POST /product`, as the original sample answered.
#[derive(Serialize, ToSchema)]
pub struct ProductAccepted {
    #[serde(rename = "RequestId")]
    pub request_id: String,
}

/// `GET /product` with `type: latest`.
#[derive(Serialize, ToSchema)]
pub struct ProductStatus {
    #[serde(rename = "RequestId")]
    pub request_id: String,
    #[serde(rename = "Status")]
    pub status: JobStatus,
    #[serde(rename = "Timestamp")]
    #[schema(value_type = i64)]
    pub timestamp: Millis,
    #[serde(rename = "Rows")]
    pub rows: Option<u64>,
    #[serde(rename = "Error")]
    pub error: Option<String>,
}

/// One line of `GET /product` with `type: all`.
#[derive(Serialize, ToSchema)]
pub struct ProductEvent {
    #[serde(rename = "RequestId")]
    pub request_id: String,
    #[serde(rename = "Step")]
    pub step: String,
    #[serde(rename = "Status")]
    pub status: String,
    #[serde(rename = "Timestamp")]
    #[schema(value_type = i64)]
    pub timestamp: Millis,
    #[serde(rename = "Message")]
    pub message: String,
}

/// `GET /product`: the latest state, or the whole history.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum ProductAnswer {
    Latest(ProductStatus),
    All(Vec<ProductEvent>),
}

/// `GET /lookups/{dataset}`: the rows, and where they came from.
#[derive(Serialize, ToSchema)]
pub struct LookupAnswer<'a> {
    pub dataset: &'a str,
    pub columns: &'a [ResultColumn],
    /// Each row as an object keyed by column name; integers and floats are numbers,
    /// booleans booleans, NULL null, anything else (decimals, dates, text) a string.
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<Map<String, Value>>,
    pub row_count: usize,
    /// Whether a cache answered (else the warehouse did, just now).
    pub cached: bool,
    /// How old the answer is.
    pub age_seconds: i64,
}

/// `GET /customer/{ids}`: the customers' rows, as the second seed answers.
#[derive(ToSchema)]
#[allow(dead_code)] // The body is `Answer::row_objects`; this is its description.
pub struct CustomerRows(Vec<Map<String, Value>>);

/// `POST /product`, as the original sample took it.
#[derive(ToSchema)]
#[schema(example = json!({"sku": "FLOWER12"}))]
#[allow(dead_code)] // Read as JSON and mapped onto `product_detail`'s parameters.
pub struct ProductRequest {
    /// The product's stock-keeping unit.
    sku: String,
    /// Only if the product has exactly this name.
    productname: Option<String>,
    /// Only if the product was created on this day (`YYYY-MM-DD`).
    createdate: Option<String>,
}
