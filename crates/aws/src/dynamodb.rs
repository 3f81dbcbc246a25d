//! The control table on DynamoDB, single-table: under one partition key `JOB#<id>` sit the
//! job's summary item (`sk = JOB`) and its events (`sk = EVENT#<ms>#<seq>`), so one query reads
//! the history in time order. Idempotency keys are items of their own (`KEY#<owner>#<key>`).
//! The summary items alone carry `owner` and `created_key`, the sparse GSI that lists a
//! caller's jobs newest first. Summary items of jobs not yet settled also carry `unsettled`,
//! keying the sparse GSI the sweep reads stuck jobs from, oldest change first; the attribute
//! is removed when the notice is claimed or the job is cancelled, so the index stays as small
//! as the work in flight. Every item carries `expires_at`, the table's TTL attribute.
//!
//! Items are the serde types below, encoded by `serde_dynamo`; which moves are legal, and which
//! settle a job, is the core's to say ([`Transition`]).
//!
//! Every `TransactWriteItems` carries a `ClientRequestToken`, which the SDK fills once per call
//! and repeats on each of the call's attempts: DynamoDB answers a repeat within ten minutes as
//! it answered the first, applying nothing again ("TransactWriteItems", Amazon DynamoDB API
//! Reference), so an attempt whose answer was lost and is tried again is not read as a failed
//! condition, a lost race. The token is per call, never derived from the call's content: two
//! packagers saving the same checkpoint in the same millisecond send the same parameters, and
//! a shared token would tell the one that lost that it won.

use crate::error::port_error;
use async_trait::async_trait;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use export_core::domain::{
    Archive, Compression, Format, Job, JobEvent, JobStatus, JobUpdate, Millis, ObjectRef, Owner,
    Transition,
};
use export_core::page::{JobPage, PageToken};
use export_core::ports::{
    AnswerCache, CachedAnswer, ControlTable, CreateOutcome, IdempotencyKey, PortError, PortResult,
    SavedCheckpoint,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Key and index names; the SAM template and the emulator's set-up create the same table.
pub mod schema {
    pub const PARTITION_KEY: &str = "pk";
    pub const SORT_KEY: &str = "sk";
    pub const OWNER_INDEX: &str = "by-owner";
    pub const OWNER: &str = "owner";
    pub const CREATED_KEY: &str = "created_key";
    pub const TTL_ATTRIBUTE: &str = "expires_at";
    pub const UNSETTLED_INDEX: &str = "unsettled";
    pub const UNSETTLED: &str = "unsettled";
    pub const UPDATED_AT: &str = "updated_at";
}

/// The one value of `unsettled`: the index needs a partition key, and the jobs in flight are
/// few enough to share one.
const UNSETTLED_MARK: &str = "1";

type Item = HashMap<String, AttributeValue>;

const SUMMARY: &str = "JOB";
/// The sort key of a job's packaging checkpoint, beside its summary.
const CHECKPOINT: &str = "CHECKPOINT";
const EVENT_PREFIX: &str = "EVENT#";

/// Orders events written by this process within one millisecond.
static EVENT_SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// A job's summary item.
#[derive(Serialize, Deserialize)]
struct JobItem {
    pk: String,
    sk: String,
    request_id: String,
    owner: String,
    /// `<created_at, 13 digits>#<request_id>`: the `by-owner` index's sort key.
    created_key: String,
    dataset: String,
    /// The parameters as JSON text: their shapes vary by export, and no index reads them.
    #[serde(with = "json_text")]
    params: serde_json::Map<String, serde_json::Value>,
    format: Format,
    compression: Compression,
    archive: Archive,
    notify: Vec<String>,
    status: JobStatus,
    created_at: Millis,
    updated_at: Millis,
    expires_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    statement_id: Option<String>,
    /// Absent on items from before attempts, and for a first attempt.
    #[serde(default, skip_serializing_if = "is_zero")]
    unload_attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rows: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    archive_bucket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    archive_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    notified_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unsettled: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One event of a job's history.
#[derive(Serialize, Deserialize)]
struct EventItem {
    pk: String,
    sk: String,
    at: Millis,
    step: String,
    outcome: String,
    message: String,
    expires_at: i64,
}

/// A job's packaging checkpoint: at most one per job, replaced by number.
#[derive(Serialize, Deserialize)]
struct CheckpointItem {
    pk: String,
    sk: String,
    seq: u64,
    body: String,
    expires_at: i64,
}

/// A lookup's answer shared by every instance of the read path. `expires_at` (seconds, the
/// table's TTL attribute) lets DynamoDB remove it, which it does only some time after expiry
/// ("Using time to live (TTL) in DynamoDB": expired items may remain readable for days), so
/// the exact expiry in milliseconds decides whether it may still be served.
#[derive(Serialize, Deserialize)]
struct AnswerItem {
    pk: String,
    sk: String,
    body: String,
    stored_at: Millis,
    expires_at_ms: Millis,
    expires_at: i64,
}

const ANSWER: &str = "ANSWER";

/// An idempotency key, naming the job it created and the digest of the request.
#[derive(Serialize, Deserialize)]
struct KeyItem {
    pk: String,
    sk: String,
    request_id: String,
    digest: String,
    expires_at: i64,
}

/// The JSON text of a map, as one string attribute.
mod json_text {
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

#[derive(Clone)]
pub struct DynamoControlTable {
    client: Client,
    table: String,
    /// How long items live before DynamoDB's TTL removes them.
    retention: Duration,
}

fn job_pk(request_id: &str) -> String {
    format!("JOB#{request_id}")
}

fn key_pk(key: &IdempotencyKey) -> String {
    format!("KEY#{}#{}", key.owner.0, key.key)
}

fn created_key(created_at: Millis, request_id: &str) -> String {
    format!("{created_at:013}#{request_id}")
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn item_of(value: &impl Serialize) -> Item {
    serde_dynamo::to_item(value).expect("control table items always encode")
}

fn decode<'a, T: Deserialize<'a>>(item: Item) -> PortResult<T> {
    serde_dynamo::from_item(item)
        .map_err(|e| PortError::Rejected(format!("control table item is malformed: {e}")))
}

fn decode_job(item: Item) -> PortResult<Job> {
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

fn decode_event(item: Item) -> PortResult<JobEvent> {
    let item: EventItem = decode(item)?;
    Ok(JobEvent {
        at: item.at,
        step: item.step,
        outcome: item.outcome,
        message: item.message,
    })
}

/// The attributes a transition sets, named as the summary item names them.
fn update_attributes(update: &JobUpdate) -> Vec<(&'static str, AttributeValue)> {
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

impl DynamoControlTable {
    pub fn new(client: Client, table: impl Into<String>, retention: Duration) -> Self {
        DynamoControlTable {
            client,
            table: table.into(),
            retention,
        }
    }

    /// The TTL attribute's value (epoch seconds) for an item written at `from`.
    fn expires_at(&self, from: Millis) -> i64 {
        from / 1000 + self.retention.as_secs() as i64
    }

    fn job_item(&self, job: &Job) -> Item {
        item_of(&JobItem {
            pk: job_pk(&job.request_id),
            sk: SUMMARY.into(),
            request_id: job.request_id.clone(),
            owner: job.owner.0.clone(),
            created_key: created_key(job.created_at, &job.request_id),
            dataset: job.dataset.clone(),
            params: job.params.clone(),
            format: job.format,
            compression: job.compression,
            archive: job.archive,
            notify: job.notify.clone(),
            status: job.status,
            created_at: job.created_at,
            updated_at: job.updated_at,
            expires_at: self.expires_at(job.created_at),
            statement_id: job.statement_id.clone(),
            unload_attempt: job.unload_attempt,
            rows: job.rows,
            bytes: job.bytes,
            archive_bucket: job.archive_object.as_ref().map(|o| o.bucket.clone()),
            archive_key: job.archive_object.as_ref().map(|o| o.key.clone()),
            error: job.error.clone(),
            notified_at: job.notified_at,
            unsettled: (!job.is_settled()).then(|| UNSETTLED_MARK.into()),
        })
    }

    fn event_item(&self, request_id: &str, event: &JobEvent) -> Item {
        let sequence = EVENT_SEQUENCE.fetch_add(1, Ordering::Relaxed);
        // The random tail keeps two processes writing in the same millisecond apart.
        let tail = &uuid::Uuid::new_v4().simple().to_string()[..8];
        item_of(&EventItem {
            pk: job_pk(request_id),
            sk: format!("{EVENT_PREFIX}{:013}#{sequence:012}#{tail}", event.at),
            at: event.at,
            step: event.step.clone(),
            outcome: event.outcome.clone(),
            message: event.message.clone(),
            expires_at: self.expires_at(event.at),
        })
    }

    fn item_key(pk: String, sk: &str) -> Item {
        Item::from([
            (schema::PARTITION_KEY.into(), s(pk)),
            (schema::SORT_KEY.into(), s(sk)),
        ])
    }

    fn summary_key(request_id: &str) -> Item {
        Self::item_key(job_pk(request_id), SUMMARY)
    }

    fn idempotency_key(key: &IdempotencyKey) -> Item {
        Self::item_key(key_pk(key), "KEY")
    }

    fn put(&self, item: Item, condition: &str) -> PortResult<TransactWriteItem> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .build()
            .map_err(|e| PortError::Rejected(e.to_string()))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// A strongly consistent read: the item as the last write left it.
    async fn get_item(&self, key: Item) -> PortResult<Option<Item>> {
        Ok(self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| port_error("GetItem", e))?
            .item)
    }

    /// Every event item of the job, in time order, however many pages they take.
    async fn query_events(&self, request_id: &str) -> PortResult<Vec<Item>> {
        self.client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :events)")
            .expression_attribute_values(":pk", s(job_pk(request_id)))
            .expression_attribute_values(":events", s(EVENT_PREFIX))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| port_error("Query", e))
    }

    async fn delete_item(&self, key: Item) -> PortResult<()> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .send()
            .await
            .map_err(|e| port_error("DeleteItem", e))?;
        Ok(())
    }
}

#[async_trait]
impl AnswerCache for DynamoControlTable {
    /// An eventually consistent read: a lookup answer a moment old is as good as the newest,
    /// at half the read's cost.
    async fn cached_answer(&self, key: &str, now: Millis) -> PortResult<Option<CachedAnswer>> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::item_key(key.to_owned(), ANSWER)))
            .send()
            .await
            .map_err(|e| port_error("GetItem", e))?
            .item;
        let Some(item) = item else {
            return Ok(None);
        };
        let answer: AnswerItem = decode(item)?;
        Ok((answer.expires_at_ms > now).then_some(CachedAnswer {
            body: answer.body,
            stored_at: answer.stored_at,
            expires_at: answer.expires_at_ms,
        }))
    }

    async fn cache_answer(&self, key: &str, answer: &CachedAnswer) -> PortResult<()> {
        let item = item_of(&AnswerItem {
            pk: key.to_owned(),
            sk: ANSWER.into(),
            body: answer.body.clone(),
            stored_at: answer.stored_at,
            expires_at_ms: answer.expires_at,
            // Whole seconds, rounded up: never removed before it expires.
            expires_at: (answer.expires_at + 999) / 1000,
        });
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| port_error("PutItem", e))?;
        Ok(())
    }
}

/// Which items of a cancelled transaction failed their condition; `Err` if it was cancelled
/// for another reason (a conflicting transaction, throttling), which a retry may fix.
fn failed_conditions(
    error: aws_sdk_dynamodb::error::SdkError<TransactWriteItemsError>,
) -> PortResult<Vec<bool>> {
    if let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
        error.as_service_error()
    {
        let codes: Vec<Option<&str>> = cancelled
            .cancellation_reasons()
            .iter()
            .map(|r| r.code())
            .collect();
        // Another transaction on the same item, or throttling: the write may succeed if tried
        // again, which is the queue's redelivery (or the caller's 503) to decide.
        if let Some(busy) = codes.iter().flatten().find(|c| {
            matches!(
                **c,
                "TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded"
            )
        }) {
            return Err(PortError::Unavailable(format!(
                "TransactWriteItems: cancelled by {busy}"
            )));
        }
        let condition = |c: &Option<&str>| *c == Some("ConditionalCheckFailed");
        let benign = |c: &Option<&str>| c.is_none() || *c == Some("None") || condition(c);
        if !codes.is_empty() && codes.iter().all(benign) && codes.iter().any(condition) {
            return Ok(codes.iter().map(condition).collect());
        }
    }
    Err(port_error("TransactWriteItems", error))
}

fn is_condition_failure(error: &aws_sdk_dynamodb::error::SdkError<UpdateItemError>) -> bool {
    error
        .as_service_error()
        .is_some_and(|e| e.is_conditional_check_failed_exception())
}

#[async_trait]
impl ControlTable for DynamoControlTable {
    async fn create_job(
        &self,
        job: &Job,
        event: &JobEvent,
        key: Option<&IdempotencyKey>,
    ) -> PortResult<CreateOutcome> {
        let mut writes = Vec::new();
        if let Some(key) = key {
            let item = item_of(&KeyItem {
                pk: key_pk(key),
                sk: "KEY".into(),
                request_id: job.request_id.clone(),
                digest: key.request_digest.clone(),
                expires_at: self.expires_at(job.created_at),
            });
            writes.push(self.put(item, "attribute_not_exists(pk)")?);
        }
        writes.push(self.put(self.job_item(job), "attribute_not_exists(pk)")?);
        writes.push(self.put(
            self.event_item(&job.request_id, event),
            "attribute_not_exists(sk)",
        )?);
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(writes))
            .send()
            .await;
        let Err(error) = result else {
            return Ok(CreateOutcome::Created);
        };
        let failed = failed_conditions(error)?;
        let Some(key) = key.filter(|_| failed.first() == Some(&true)) else {
            return Err(PortError::Rejected(format!(
                "request id {} is already taken",
                job.request_id
            )));
        };
        let existing = self
            .get_item(Self::idempotency_key(key))
            .await?
            .ok_or_else(|| {
                PortError::Unavailable("idempotency key vanished while being read".into())
            })?;
        let existing: KeyItem = decode(existing)?;
        Ok(CreateOutcome::KeyUsed {
            request_id: existing.request_id,
            same_request: existing.digest == key.request_digest,
        })
    }

    async fn delete_job(&self, request_id: &str, key: Option<&IdempotencyKey>) -> PortResult<()> {
        for event in self.query_events(request_id).await? {
            let key = Item::from_iter(
                [schema::PARTITION_KEY, schema::SORT_KEY]
                    .iter()
                    .filter_map(|k| event.get(*k).map(|v| (k.to_string(), v.clone()))),
            );
            self.delete_item(key).await?;
        }
        self.delete_item(Self::item_key(job_pk(request_id), CHECKPOINT))
            .await?;
        self.delete_item(Self::summary_key(request_id)).await?;
        if let Some(key) = key {
            // Only this job's key: a key another job took since must stay.
            let deleted = self
                .client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(Self::idempotency_key(key)))
                .condition_expression("request_id = :id")
                .expression_attribute_values(":id", s(request_id))
                .send()
                .await;
            if let Err(e) = deleted {
                if !e
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception())
                {
                    return Err(port_error("DeleteItem", e));
                }
            }
        }
        Ok(())
    }

    async fn get_job(&self, request_id: &str) -> PortResult<Option<Job>> {
        let item = self.get_item(Self::summary_key(request_id)).await?;
        item.map(decode_job).transpose()
    }

    async fn transition(
        &self,
        request_id: &str,
        transition: Transition,
        update: &JobUpdate,
        event: &JobEvent,
    ) -> PortResult<bool> {
        let mut sets = vec!["#status = :to".to_owned(), "#updated_at = :at".to_owned()];
        let mut names = HashMap::from([
            ("#status".to_owned(), "status".to_owned()),
            ("#updated_at".to_owned(), schema::UPDATED_AT.to_owned()),
        ]);
        let mut values = HashMap::from([
            (":to".to_owned(), s(transition.to().as_str())),
            (":from".to_owned(), s(transition.from().as_str())),
            (":at".to_owned(), n(event.at)),
        ]);
        for (name, value) in update_attributes(update) {
            sets.push(format!("#{name} = :{name}"));
            names.insert(format!("#{name}"), name.to_owned());
            values.insert(format!(":{name}"), value);
        }
        // A job the move settles leaves the sweep's index.
        let remove = if transition.settles() {
            names.insert("#unsettled".into(), schema::UNSETTLED.into());
            " REMOVE #unsettled"
        } else {
            ""
        };
        let change = Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::summary_key(request_id)))
            .update_expression(format!("SET {}{remove}", sets.join(", ")))
            .condition_expression("#status = :from")
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(|e| PortError::Rejected(e.to_string()))?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(change).build())
            .transact_items(self.put(
                self.event_item(request_id, event),
                "attribute_not_exists(sk)",
            )?)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(error) => {
                let failed = failed_conditions(error)?;
                if failed.first() == Some(&true) {
                    Ok(false)
                } else {
                    Err(PortError::Unavailable(
                        "event write collided; try again".into(),
                    ))
                }
            }
        }
    }

    async fn append_event(&self, request_id: &str, event: &JobEvent) -> PortResult<()> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.event_item(request_id, event)))
            .send()
            .await
            .map_err(|e| port_error("PutItem", e))?;
        Ok(())
    }

    async fn events(&self, request_id: &str) -> PortResult<Vec<JobEvent>> {
        // The sort key orders them by time.
        self.query_events(request_id)
            .await?
            .into_iter()
            .map(decode_event)
            .collect()
    }

    async fn claim_notification(&self, request_id: &str, at: Millis) -> PortResult<bool> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::summary_key(request_id)))
            .update_expression("SET notified_at = :at REMOVE #unsettled")
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(notified_at)")
            .expression_attribute_names("#unsettled", schema::UNSETTLED)
            .expression_attribute_values(":at", n(at))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(port_error("UpdateItem", e)),
        }
    }

    async fn release_notification(&self, request_id: &str, at: Millis) -> PortResult<()> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::summary_key(request_id)))
            .update_expression("REMOVE notified_at SET #unsettled = :mark, #updated_at = :at")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#unsettled", schema::UNSETTLED)
            .expression_attribute_names("#updated_at", schema::UPDATED_AT)
            .expression_attribute_values(":mark", s(UNSETTLED_MARK))
            .expression_attribute_values(":at", n(at))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(port_error("UpdateItem", e)),
        }
    }

    async fn touch(&self, request_id: &str, status: JobStatus, at: Millis) -> PortResult<bool> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::summary_key(request_id)))
            .update_expression("SET #updated_at = :at")
            .condition_expression("#status = :status")
            .expression_attribute_names("#updated_at", schema::UPDATED_AT)
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":at", n(at))
            .expression_attribute_values(":status", s(status.as_str()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(port_error("UpdateItem", e)),
        }
    }

    /// One transaction: the summary's `updated_at` moves only while the job is PACKAGING, and
    /// the checkpoint item is replaced only while it is still number `expected_seq`.
    async fn save_checkpoint(
        &self,
        request_id: &str,
        expected_seq: u64,
        checkpoint: &SavedCheckpoint,
        at: Millis,
    ) -> PortResult<bool> {
        let alive = Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::summary_key(request_id)))
            .update_expression("SET #updated_at = :at")
            .condition_expression("#status = :packaging")
            .expression_attribute_names("#updated_at", schema::UPDATED_AT)
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":at", n(at))
            .expression_attribute_values(":packaging", s(JobStatus::Packaging.as_str()))
            .build()
            .map_err(|e| PortError::Rejected(e.to_string()))?;
        let item = item_of(&CheckpointItem {
            pk: job_pk(request_id),
            sk: CHECKPOINT.into(),
            seq: checkpoint.seq,
            body: checkpoint.body.clone(),
            expires_at: self.expires_at(at),
        });
        let mut put = Put::builder().table_name(&self.table).set_item(Some(item));
        put = if expected_seq == 0 {
            put.condition_expression("attribute_not_exists(sk)")
        } else {
            put.condition_expression("#seq = :expected")
                .expression_attribute_names("#seq", "seq")
                .expression_attribute_values(":expected", n(expected_seq))
        };
        let put = put
            .build()
            .map_err(|e| PortError::Rejected(e.to_string()))?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(alive).build())
            .transact_items(TransactWriteItem::builder().put(put).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(error) => failed_conditions(error).map(|_| false),
        }
    }

    async fn checkpoint(&self, request_id: &str) -> PortResult<Option<SavedCheckpoint>> {
        let item = self
            .get_item(Self::item_key(job_pk(request_id), CHECKPOINT))
            .await?;
        item.map(|item| {
            decode::<CheckpointItem>(item).map(|c| SavedCheckpoint {
                seq: c.seq,
                body: c.body,
            })
        })
        .transpose()
    }

    async fn delete_checkpoint(&self, request_id: &str) -> PortResult<()> {
        self.delete_item(Self::item_key(job_pk(request_id), CHECKPOINT))
            .await
    }

    async fn unsettled_jobs(&self, updated_before: Millis, limit: usize) -> PortResult<Vec<Job>> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(schema::UNSETTLED_INDEX)
            .key_condition_expression("#unsettled = :mark AND #updated < :cutoff")
            .expression_attribute_names("#unsettled", schema::UNSETTLED)
            .expression_attribute_names("#updated", schema::UPDATED_AT)
            .expression_attribute_values(":mark", s(UNSETTLED_MARK))
            .expression_attribute_values(":cutoff", n(updated_before))
            .limit(limit.min(i32::MAX as usize) as i32)
            .into_paginator()
            .items()
            .send();
        let mut jobs = Vec::new();
        while jobs.len() < limit {
            match pages.next().await {
                Some(item) => jobs.push(decode_job(item.map_err(|e| port_error("Query", e))?)?),
                None => break,
            }
        }
        Ok(jobs)
    }

    async fn list_jobs(
        &self,
        owner: &Owner,
        limit: usize,
        after: Option<&PageToken>,
    ) -> PortResult<JobPage> {
        // The index's sort key is `created_key`: the page starts just below the token's.
        let before = match after {
            Some(token) => created_key(token.created_at, &token.request_id),
            None => "9".repeat(13),
        };
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(schema::OWNER_INDEX)
            .key_condition_expression("#owner = :owner AND #created < :before")
            .expression_attribute_names("#owner", schema::OWNER)
            .expression_attribute_names("#created", schema::CREATED_KEY)
            .expression_attribute_values(":owner", s(&owner.0))
            .expression_attribute_values(":before", s(before))
            .scan_index_forward(false)
            .limit(limit as i32 + 1)
            .send()
            .await
            .map_err(|e| port_error("Query", e))?;
        let jobs = page
            .items
            .unwrap_or_default()
            .into_iter()
            .map(decode_job)
            .collect::<PortResult<Vec<_>>>()?;
        Ok(JobPage::from_rows(jobs, limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The item layout is the table's contract with its indexes and with items already
    /// stored: these attribute names and types must not change by accident.
    #[test]
    fn summary_items_keep_the_table_s_layout() {
        let table = DynamoControlTable::new(
            Client::from_conf(
                aws_sdk_dynamodb::Config::builder()
                    .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
                    .build(),
            ),
            "t",
            Duration::from_secs(86_400),
        );
        let mut params = serde_json::Map::new();
        params.insert("sku".into(), "FLOWER12".into());
        let job = Job {
            request_id: "r1".into(),
            owner: Owner("arn:aws:iam::1:user/a".into()),
            dataset: "product_detail".into(),
            params,
            format: Format::Csv,
            compression: Compression::Gzip,
            archive: Archive::TarGz,
            notify: vec!["a@example.com".into()],
            status: JobStatus::Running,
            created_at: 1_000,
            updated_at: 2_000,
            statement_id: Some("s1".into()),
            unload_attempt: 0,
            rows: None,
            bytes: None,
            archive_object: None,
            error: None,
            notified_at: None,
        };
        let item = table.job_item(&job);
        assert_eq!(item["pk"], s("JOB#r1"));
        assert_eq!(item["sk"], s("JOB"));
        assert_eq!(item["created_key"], s("0000000001000#r1"));
        assert_eq!(item["params"], s(r#"{"sku":"FLOWER12"}"#));
        assert_eq!(item["archive"], s("tar.gz"));
        assert_eq!(item["status"], s("RUNNING"));
        assert_eq!(item["notify"], AttributeValue::L(vec![s("a@example.com")]));
        assert_eq!(item["updated_at"], n(2_000));
        assert_eq!(item["expires_at"], n(86_401));
        assert_eq!(item["unsettled"], s(UNSETTLED_MARK));
        assert!(!item.contains_key("rows") && !item.contains_key("notified_at"));
        assert_eq!(decode_job(item).unwrap(), job);
    }
}
