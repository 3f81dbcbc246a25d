//! The control table's items: the serde types each kind of item is encoded from
//! (`serde_dynamo`), their keys, and the summary item read back into a job.

use super::{decode, n, s, Item};
use aws_sdk_dynamodb::types::AttributeValue;
use export_core::domain::{
    Archive, Compression, Delivery, Format, Job, JobEvent, JobStatus, JobUpdate, Millis, ObjectRef,
    Owner,
};
use export_core::ports::{IdempotencyKey, PortResult};
use serde::{Deserialize, Serialize};
use std::sync::atomic::AtomicU64;

/// The one value of `unsettled`: the index needs a partition key, and the jobs in flight are
/// few enough to share one.
pub(super) const UNSETTLED_MARK: &str = "1";

pub(super) const SUMMARY: &str = "JOB";
/// The sort key of a job's packaging checkpoint, beside its summary.
pub(super) const CHECKPOINT: &str = "CHECKPOINT";
pub(super) const EVENT_PREFIX: &str = "EVENT#";

/// Orders events written by this process within one millisecond.
pub(super) static EVENT_SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// A job's summary item.
#[derive(Serialize, Deserialize)]
pub(super) struct JobItem {
    pub(super) pk: String,
    pub(super) sk: String,
    pub(super) request_id: String,
    pub(super) owner: String,
    /// `<created_at, 13 digits>#<request_id>`: the `by-owner` index's sort key.
    pub(super) created_key: String,
    pub(super) dataset: String,
    /// The parameters as JSON text: their shapes vary by export, and no index reads them.
    #[serde(with = "json_text")]
    pub(super) params: serde_json::Map<String, serde_json::Value>,
    pub(super) format: Format,
    pub(super) compression: Compression,
    pub(super) archive: Archive,
    pub(super) notify: Vec<String>,
    /// Webhooks, buckets and further addresses the finished export goes to; absent if none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) deliver: Vec<Delivery>,
    /// The subscription whose run the job is; absent if none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) subscription_id: Option<String>,
    /// The parameters bound to the caller's access; absent when none were.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) bound: Vec<String>,
    /// The caller's share of turns for warehouse slots; absent when 1.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub(super) priority: u32,
    /// The group whose turns the job takes; absent when its caller's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) turns_of: Option<String>,
    pub(super) status: JobStatus,
    pub(super) created_at: Millis,
    pub(super) updated_at: Millis,
    pub(super) expires_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) statement_id: Option<String>,
    /// Absent on items from before attempts, and for a first attempt.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(super) unload_attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) rows: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) archive_bucket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) archive_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) notified_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) unsettled: Option<String>,
}

pub(super) fn one() -> u32 {
    1
}

pub(super) fn is_one(n: &u32) -> bool {
    *n == 1
}

pub(super) fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One event of a job's history.
#[derive(Serialize, Deserialize)]
pub(super) struct EventItem {
    pub(super) pk: String,
    pub(super) sk: String,
    pub(super) at: Millis,
    pub(super) step: String,
    pub(super) outcome: String,
    pub(super) message: String,
    pub(super) expires_at: i64,
}

/// A job's packaging checkpoint: at most one per job, replaced by number.
#[derive(Serialize, Deserialize)]
pub(super) struct CheckpointItem {
    pub(super) pk: String,
    pub(super) sk: String,
    pub(super) seq: u64,
    pub(super) body: String,
    pub(super) expires_at: i64,
}

/// A lookup's answer shared by every instance of the read path. `expires_at` (seconds, the
/// table's TTL attribute) lets DynamoDB remove it, which it does only some time after expiry
/// ("Using time to live (TTL) in DynamoDB": expired items may remain readable for days), so
/// the exact expiry in milliseconds decides whether it may still be served.
#[derive(Serialize, Deserialize)]
pub(super) struct AnswerItem {
    pub(super) pk: String,
    pub(super) sk: String,
    pub(super) body: String,
    pub(super) stored_at: Millis,
    pub(super) expires_at_ms: Millis,
    pub(super) expires_at: i64,
}

pub(super) const ANSWER: &str = "ANSWER";

/// An idempotency key, naming the job it created and the digest of the request.
#[derive(Serialize, Deserialize)]
pub(super) struct KeyItem {
    pub(super) pk: String,
    pub(super) sk: String,
    pub(super) request_id: String,
    pub(super) digest: String,
    pub(super) expires_at: i64,
}

/// The JSON text of a map, as one string attribute.
pub(super) mod json_text {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::{Map, Value};

    pub fn serialize<S: Serializer>(map: &Map<String, Value>, s: S) -> Result<S::Ok, S::Error> {
        Value::Object(map.clone()).to_string().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Map<String, Value>, D::Error> {
        let text = String::deserialize(d)?;
        serde_json::from_str(&text).map_err(serde::de::Error::custom)
    }
}

pub(super) fn job_pk(request_id: &str) -> String {
    format!("JOB#{request_id}")
}

pub(super) fn key_pk(key: &IdempotencyKey) -> String {
    format!("KEY#{}#{}", key.owner.0, key.key)
}

pub(super) fn created_key(created_at: Millis, request_id: &str) -> String {
    format!("{created_at:013}#{request_id}")
}

pub(super) fn decode_job(item: Item) -> PortResult<Job> {
    let item: JobItem = decode(item)?;
    let archive_object = match (item.archive_bucket, item.archive_key) {
        (Some(bucket), Some(key)) => Some(ObjectRef::new(bucket, key)),
        _ => None,
    };
    Ok(Job {
        request_id: item.request_id,
        owner: Owner(item.owner),
        dataset: item.dataset,
        params: item.params,
        format: item.format,
        compression: item.compression,
        archive: item.archive,
        notify: item.notify,
        deliver: item.deliver,
        subscription_id: item.subscription_id,
        bound: item.bound,
        priority: item.priority,
        turns_of: item.turns_of,
        status: item.status,
        created_at: item.created_at,
        updated_at: item.updated_at,
        statement_id: item.statement_id,
        unload_attempt: item.unload_attempt,
        rows: item.rows,
        bytes: item.bytes,
        archive_object,
        error: item.error,
        notified_at: item.notified_at,
    })
}

pub(super) fn decode_event(item: Item) -> PortResult<JobEvent> {
    let item: EventItem = decode(item)?;
    Ok(JobEvent {
        at: item.at,
        step: item.step,
        outcome: item.outcome,
        message: item.message,
    })
}

/// The attributes a transition sets, named as the summary item names them.
pub(super) fn update_attributes(update: &JobUpdate) -> Vec<(&'static str, AttributeValue)> {
    let mut out = Vec::new();
    if let Some(v) = &update.statement_id {
        out.push(("statement_id", s(v)));
    }
    if let Some(v) = update.unload_attempt {
        out.push(("unload_attempt", n(v)));
    }
    if let Some(v) = update.rows {
        out.push(("rows", n(v)));
    }
    if let Some(v) = update.bytes {
        out.push(("bytes", n(v)));
    }
    if let Some(v) = &update.archive_object {
        out.push(("archive_bucket", s(&v.bucket)));
        out.push(("archive_key", s(&v.key)));
    }
    if let Some(v) = &update.error {
        out.push(("error", s(v)));
    }
    out
}
