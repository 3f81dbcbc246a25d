//! What the routes answer, as types: the handlers serialize them, the client reads them back,
//! and the OpenAPI document describes them, all from these definitions.

use crate::vocabulary::{Archive, Compression, Format, JobEvent, JobStatus, Millis, ResultColumn};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::borrow::Cow;
use utoipa::ToSchema;

/// Every error: a status code and this body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
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

/// `POST /exports`, `DELETE /exports/{id}`: the job the request created or cancelled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Accepted {
    pub request_id: String,
    pub status: JobStatus,
    /// Where to follow it (only on `POST /exports`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_url: Option<String>,
}

/// The fields every view of a job shares.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
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

/// `GET /exports`: a page of the caller's jobs, newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<JobSummary>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// When each phase began and ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
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

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    #[serde(flatten)]
    pub summary: JobSummary,
    /// The parameters the job runs with, bound ones included.
    #[schema(value_type = Object)]
    pub params: Map<String, Value>,
    /// Which of `params` were bound to the caller's access, not given by the request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bound: Vec<String>,
    pub notify: Vec<String>,
    /// The warehouse statement running (or that ran) the UNLOAD.
    pub statement_id: Option<String>,
    /// While the job waits for a warehouse slot (still QUEUED): how many jobs are ahead of
    /// it in line (0: it is next). Absent once it is admitted, or when admission is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<u64>,
    pub timings: Timings,
    pub links: JobLinks,
    /// True once a SUCCEEDED job's files have expired (the archive after the downloads
    /// bucket's `DownloadsExpiryDays`, the parts after `ResultsExpiryDays`): no
    /// `download_url` or `parts` are given, and `/download` and `/parts` answer 410. Absent
    /// otherwise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expired: bool,
    /// A fresh link to the archive, once SUCCEEDED (absent while links cannot be handed out,
    /// as when the audit record cannot be written: `/download` answers 503 then).
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

/// One part of an export handed out as it is (`archive: none`), with a fresh link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PartLink {
    pub index: usize,
    /// The name it downloads as: `<dataset>-NNNN.<format>[.gz|.zst]`, as in an archive.
    pub name: String,
    pub size: u64,
    /// Data rows (a CSV part's header line not counted).
    pub rows: u64,
    pub url: String,
    #[schema(value_type = i64)]
    pub expires_at: Millis,
}

/// `GET /exports/{id}/events`: the job's history, oldest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobHistory {
    pub request_id: String,
    pub events: Vec<JobEvent>,
}

/// `GET /exports/{id}/parts`: a page of an export's parts, each with its link.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PartList {
    pub request_id: String,
    pub total_parts: usize,
    pub parts: Vec<PartLink>,
    pub next_cursor: Option<String>,
}

/// `GET /exports/{id}/download`: the link the redirect points at.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DownloadBody {
    pub download_url: String,
    /// When the link stops working (milliseconds since the epoch).
    #[schema(value_type = i64)]
    pub expires_at: Millis,
}

/// `GET /datasets`: the catalogue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Datasets {
    pub datasets: Vec<ExportDescription>,
}

/// `POST /product`, as the original sample answered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProductAccepted {
    #[serde(rename = "RequestId")]
    pub request_id: String,
}

/// `GET /product` with `type: latest`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ProductAnswer {
    Latest(ProductStatus),
    All(Vec<ProductEvent>),
}

/// `GET /lookups/{dataset}`: the rows, and where they came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LookupAnswer<'a> {
    // Borrowed when answering from a held answer, owned when read back.
    pub dataset: Cow<'a, str>,
    pub columns: Cow<'a, [ResultColumn]>,
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CustomerRows(pub Vec<Map<String, Value>>);

/// How the catalogue describes one dataset (`GET /datasets`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExportDescription {
    pub name: String,
    pub description: String,
    pub params: Vec<ParamDescription>,
    /// Present when it may also be looked up (`GET /lookups/{name}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookup: Option<LookupDescription>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LookupDescription {
    pub max_rows: usize,
    pub cache_seconds: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ParamDescription {
    pub name: String,
    /// `text`, `integer`, `decimal(p,s)`, `date`, `timestamp`, `boolean`, `enum(A|B)`, or
    /// `list<…>` of one of them.
    #[serde(rename = "type")]
    pub type_name: String,
    pub required: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The type's limits: `max_length`, `pattern`, `min`, `max`, `values`, `max_items`.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub rules: Map<String, Value>,
    /// For a parameter bound to the caller: the attribute its value comes from. A request that
    /// names it is refused (400 `bound_parameter`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound: Option<String>,
    /// For a bound parameter: the caller's value, which every request of this caller runs with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

/// `GET /quota`: the caller's quotas and its use of each, today (UTC). A quota without a
/// `limit` is not limited.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuotaView {
    /// Who the quotas are for: the caller, as the API knows it.
    pub owner: String,
    /// The UTC day the daily quotas count (`2026-12-04`).
    pub day: String,
    /// When the daily quotas start again (midnight UTC).
    #[schema(value_type = i64)]
    pub renews_at: Millis,
    /// The caller's share of turns for warehouse slots (1 unless a group says more).
    pub priority: u32,
    /// Exports not yet ended (QUEUED, RUNNING or PACKAGING).
    pub unfinished_exports: QuotaUse,
    pub exports_per_day: QuotaUse,
    /// Bytes of the exports that finished today.
    pub bytes_per_day: QuotaUse,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookups_per_second: Option<u32>,
    /// How many lookups may come at once, with `lookups_per_second`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookup_burst: Option<u32>,
}

/// One quota: its limit, if it has one, and what is used of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuotaUse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    pub used: u64,
}
