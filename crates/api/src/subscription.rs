//! Subscriptions: an export run on a schedule, each run an ordinary job.

use crate::delivery::Delivery;
use crate::request::{null_is_default, ExportRequest, FieldError};
use crate::vocabulary::{Archive, Compression, Format, JobStatus, Millis};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// At most this many subscriptions per caller.
pub const MAX_SUBSCRIPTIONS: usize = 100;

/// `POST /subscriptions`: what to export, when, and where each run goes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "dataset": "supplier_shipments",
    "params": {"ship_from": "yesterday", "ship_to": "yesterday"},
    "schedule": "cron(0 6 * * ? *)",
    "timezone": "Europe/Berlin",
    "deliver": [{"webhook": "https://partner.example/hooks/exports"}, {"s3": "s3://partner-feed/inbound/"}]
}))]
pub struct SubscriptionRequest {
    /// A dataset of the catalogue (`GET /datasets`).
    pub dataset: String,
    /// The dataset's parameters; a date may be written relative to each run, in the
    /// schedule's time zone: `today`, `yesterday`, `tomorrow`, then `+N`/`-N` with `d`, `w`,
    /// `m` or `y` (`today-7d`).
    #[serde(default, deserialize_with = "null_is_default")]
    #[schema(value_type = Option<Object>)]
    pub params: Map<String, Value>,
    #[serde(default, deserialize_with = "null_is_default")]
    #[schema(value_type = Option<Format>)]
    pub format: Format,
    #[serde(default, deserialize_with = "null_is_default")]
    #[schema(value_type = Option<Compression>)]
    pub compression: Compression,
    #[serde(default, deserialize_with = "null_is_default")]
    #[schema(value_type = Option<Archive>)]
    pub archive: Archive,
    /// As EventBridge Scheduler writes it: `rate(1 day)`, `rate(6 hours)`, or
    /// `cron(minutes hours day-of-month month day-of-week year)`.
    pub schedule: String,
    /// A time zone of the time zone database (`Europe/Berlin`); UTC unless given.
    #[serde(default, deserialize_with = "null_is_default")]
    pub timezone: String,
    /// When the schedule starts (RFC 3339, or `now`): a rate's first run is then and its
    /// periods count from it; a cron's runs are the ones after it. Unless given, the
    /// schedule starts at its creation, and its first run is the first time after that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(default, deserialize_with = "null_is_default")]
    #[schema(value_type = Option<Vec<String>>)]
    pub notify: Vec<String>,
    #[serde(default, deserialize_with = "null_is_default")]
    #[schema(value_type = Option<Vec<Delivery>>)]
    pub deliver: Vec<Delivery>,
}

impl SubscriptionRequest {
    /// The export each run submits, its parameters as written (relative dates unresolved).
    pub fn export(&self) -> ExportRequest {
        ExportRequest {
            dataset: self.dataset.clone(),
            params: self.params.clone(),
            format: self.format,
            compression: self.compression,
            archive: self.archive,
            notify: self.notify.clone(),
            deliver: self.deliver.clone(),
        }
    }

    /// The export's own rules; the schedule is read by the core.
    pub fn check(&self) -> Result<(), FieldError> {
        if self.schedule.trim().is_empty() {
            return Err(FieldError::new("schedule", "'schedule' must not be empty"));
        }
        self.export().check()
    }
}

/// A subscription as its caller sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionView {
    pub subscription_id: String,
    pub dataset: String,
    #[schema(value_type = Object)]
    pub params: Map<String, Value>,
    pub format: Format,
    pub compression: Compression,
    pub archive: Archive,
    pub schedule: String,
    pub timezone: String,
    pub notify: Vec<String>,
    pub deliver: Vec<Delivery>,
    /// Paused subscriptions do not run; resuming takes the next time after the resume.
    pub paused: bool,
    /// When the schedule started (epoch milliseconds).
    #[schema(value_type = i64)]
    pub start: Millis,
    #[schema(value_type = i64)]
    pub created_at: Millis,
    /// When it runs next (absent while paused, or when it never runs again).
    #[schema(value_type = Option<i64>)]
    pub next_run_at: Option<Millis>,
    /// How many runs it has had.
    pub runs: u64,
}

/// `GET /subscriptions`: the caller's subscriptions, oldest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionList {
    pub subscriptions: Vec<SubscriptionView>,
}

/// One run of a subscription: the time it was due, and the job it submitted (or why none).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionRun {
    /// The time the schedule named for this run (epoch milliseconds).
    #[schema(value_type = i64)]
    pub scheduled_at: Millis,
    /// The job the run submitted; absent if it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The job's status now; absent if it was refused or its record has expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<JobStatus>,
    /// Why the run submitted no job (a quota, access withdrawn, a parameter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /subscriptions/{id}/runs`: its runs, newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionRuns {
    pub runs: Vec<SubscriptionRun>,
}
