//! The control table on DynamoDB, single-table: under one partition key `JOB#<id>` sit the
//! job's summary item (`sk = JOB`) and its events (`sk = EVENT#<ms>#<seq>`), so one query reads
//! the history in time order. Idempotency keys are items of their own (`KEY#<owner>#<key>`).
//! The summary items alone carry `owner` and `created_key`, the sparse GSI that lists a
//! caller's jobs newest first. Summary items of jobs not yet settled also carry `unsettled`,
//! keying the sparse GSI the sweep reads stuck jobs from, oldest change first; the attribute
//! is removed when the notice is claimed or the job is cancelled, so the index stays as small
//! as the work in flight. Every item carries `expires_at`, the table's TTL attribute.

use crate::error::port_error;
use async_trait::async_trait;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use export_core::domain::{Job, JobEvent, JobStatus, JobUpdate, Millis, ObjectRef, Owner};
use export_core::ports::{
    ControlTable, CreateOutcome, IdempotencyKey, JobPage, PortError, PortResult,
};
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
const EVENT_PREFIX: &str = "EVENT#";

/// Orders events written by this process within one millisecond.
static EVENT_SEQUENCE: AtomicU64 = AtomicU64::new(0);

#[derive(Clone)]
pub struct DynamoControlTable {
    client: Client,
    table: String,
    /// How long items live before DynamoDB's TTL removes them.
    retention: Duration,
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn job_pk(request_id: &str) -> AttributeValue {
    s(format!("JOB#{request_id}"))
}

fn created_key(created_at: Millis, request_id: &str) -> String {
    format!("{created_at:013}#{request_id}")
}

fn malformed(what: &str) -> PortError {
    PortError::Rejected(format!("control table item has no valid '{what}'"))
}

fn get_s<'a>(item: &'a Item, name: &str) -> PortResult<&'a str> {
    opt_s(item, name).ok_or_else(|| malformed(name))
}

fn opt_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn opt_n<T: std::str::FromStr>(item: &Item, name: &str) -> PortResult<Option<T>> {
    item.get(name)
        .map(|v| {
            v.as_n()
                .ok()
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| malformed(name))
        })
        .transpose()
}

fn get_n<T: std::str::FromStr>(item: &Item, name: &str) -> PortResult<T> {
    opt_n(item, name)?.ok_or_else(|| malformed(name))
}

fn parse_field<T: std::str::FromStr>(item: &Item, name: &str) -> PortResult<T> {
    get_s(item, name)?.parse().map_err(|_| malformed(name))
}

impl DynamoControlTable {
    pub fn new(client: Client, table: impl Into<String>, retention: Duration) -> Self {
        DynamoControlTable {
            client,
            table: table.into(),
            retention,
        }
    }

    fn expires_at(&self, from: Millis) -> AttributeValue {
        n(from / 1000 + self.retention.as_secs() as i64)
    }

    fn job_item(&self, job: &Job) -> Item {
        let mut item = Item::from([
            (schema::PARTITION_KEY.into(), job_pk(&job.request_id)),
            (schema::SORT_KEY.into(), s(SUMMARY)),
            ("request_id".into(), s(&job.request_id)),
            (schema::OWNER.into(), s(&job.owner.0)),
            (
                schema::CREATED_KEY.into(),
                s(created_key(job.created_at, &job.request_id)),
            ),
            ("dataset".into(), s(&job.dataset)),
            (
                "params".into(),
                s(serde_json::Value::Object(job.params.clone()).to_string()),
            ),
            ("format".into(), s(job.format.as_str())),
            ("compression".into(), s(job.compression.as_str())),
            ("archive".into(), s(job.archive.as_str())),
            (
                "notify".into(),
                AttributeValue::L(job.notify.iter().map(s).collect()),
            ),
            ("status".into(), s(job.status.as_str())),
            ("created_at".into(), n(job.created_at)),
            (schema::UPDATED_AT.into(), n(job.updated_at)),
            (
                schema::TTL_ATTRIBUTE.into(),
                self.expires_at(job.created_at),
            ),
        ]);
        let update = JobUpdate {
            statement_id: job.statement_id.clone(),
            rows: job.rows,
            bytes: job.bytes,
            archive_object: job.archive_object.clone(),
            error: job.error.clone(),
        };
        item.extend(update_attributes(&update));
        if let Some(at) = job.notified_at {
            item.insert("notified_at".into(), n(at));
        }
        if !job.is_settled() {
            item.insert(schema::UNSETTLED.into(), s(UNSETTLED_MARK));
        }
        item
    }

    fn event_item(&self, request_id: &str, event: &JobEvent) -> Item {
        let sequence = EVENT_SEQUENCE.fetch_add(1, Ordering::Relaxed);
        // The random tail keeps two processes writing in the same millisecond apart.
        let tail = &uuid::Uuid::new_v4().simple().to_string()[..8];
        Item::from([
            (schema::PARTITION_KEY.into(), job_pk(request_id)),
            (
                schema::SORT_KEY.into(),
                s(format!(
                    "{EVENT_PREFIX}{:013}#{sequence:012}#{tail}",
                    event.at
                )),
            ),
            ("at".into(), n(event.at)),
            ("step".into(), s(&event.step)),
            ("outcome".into(), s(&event.outcome)),
            ("message".into(), s(&event.message)),
            (schema::TTL_ATTRIBUTE.into(), self.expires_at(event.at)),
        ])
    }

    fn key_item_key(key: &IdempotencyKey) -> Item {
        Item::from([
            (
                schema::PARTITION_KEY.into(),
                s(format!("KEY#{}#{}", key.owner.0, key.key)),
            ),
            (schema::SORT_KEY.into(), s("KEY")),
        ])
    }

    fn summary_key(request_id: &str) -> Item {
        Item::from([
            (schema::PARTITION_KEY.into(), job_pk(request_id)),
            (schema::SORT_KEY.into(), s(SUMMARY)),
        ])
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

    async fn query_events(&self, request_id: &str) -> PortResult<Vec<Item>> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :events)")
                .expression_attribute_values(":pk", job_pk(request_id))
                .expression_attribute_values(":events", s(EVENT_PREFIX))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| port_error("Query", e))?;
            items.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(items),
            }
        }
    }
}

/// The attributes a transition sets, named as the summary item names them.
fn update_attributes(update: &JobUpdate) -> Vec<(String, AttributeValue)> {
    let mut out = Vec::new();
    if let Some(v) = &update.statement_id {
        out.push(("statement_id".into(), s(v)));
    }
    if let Some(v) = update.rows {
        out.push(("rows".into(), n(v)));
    }
    if let Some(v) = update.bytes {
        out.push(("bytes".into(), n(v)));
    }
    if let Some(v) = &update.archive_object {
        out.push(("archive_bucket".into(), s(&v.bucket)));
        out.push(("archive_key".into(), s(&v.key)));
    }
    if let Some(v) = &update.error {
        out.push(("error".into(), s(v)));
    }
    out
}

fn decode_job(item: &Item) -> PortResult<Job> {
    let params = match serde_json::from_str(get_s(item, "params")?) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => return Err(malformed("params")),
    };
    let notify = match item.get("notify") {
        Some(AttributeValue::L(list)) => list
            .iter()
            .map(|v| v.as_s().cloned().map_err(|_| malformed("notify")))
            .collect::<PortResult<Vec<_>>>()?,
        _ => Vec::new(),
    };
    let archive_object = match (opt_s(item, "archive_bucket"), opt_s(item, "archive_key")) {
        (Some(bucket), Some(key)) => Some(ObjectRef::new(bucket, key)),
        _ => None,
    };
    Ok(Job {
        request_id: get_s(item, "request_id")?.to_owned(),
        owner: Owner(get_s(item, schema::OWNER)?.to_owned()),
        dataset: get_s(item, "dataset")?.to_owned(),
        params,
        format: parse_field(item, "format")?,
        compression: parse_field(item, "compression")?,
        archive: parse_field(item, "archive")?,
        notify,
        status: parse_field(item, "status")?,
        created_at: get_n(item, "created_at")?,
        updated_at: get_n(item, "updated_at")?,
        statement_id: opt_s(item, "statement_id").map(str::to_owned),
        rows: opt_n(item, "rows")?,
        bytes: opt_n(item, "bytes")?,
        archive_object,
        error: opt_s(item, "error").map(str::to_owned),
        notified_at: opt_n(item, "notified_at")?,
    })
}

fn decode_event(item: &Item) -> PortResult<JobEvent> {
    Ok(JobEvent {
        at: get_n(item, "at")?,
        step: get_s(item, "step")?.to_owned(),
        outcome: get_s(item, "outcome")?.to_owned(),
        message: get_s(item, "message")?.to_owned(),
    })
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
            let mut item = Self::key_item_key(key);
            item.insert("request_id".into(), s(&job.request_id));
            item.insert("digest".into(), s(&key.request_digest));
            item.insert(
                schema::TTL_ATTRIBUTE.into(),
                self.expires_at(job.created_at),
            );
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
            .get_item(Self::key_item_key(key))
            .await?
            .ok_or_else(|| {
                PortError::Unavailable("idempotency key vanished while being read".into())
            })?;
        Ok(CreateOutcome::KeyUsed {
            request_id: get_s(&existing, "request_id")?.to_owned(),
            same_request: get_s(&existing, "digest")? == key.request_digest,
        })
    }

    async fn delete_job(&self, request_id: &str, key: Option<&IdempotencyKey>) -> PortResult<()> {
        for event in self.query_events(request_id).await? {
            let key = Item::from_iter(
                [schema::PARTITION_KEY, schema::SORT_KEY]
                    .iter()
                    .filter_map(|k| event.get(*k).map(|v| (k.to_string(), v.clone()))),
            );
            self.client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(key))
                .send()
                .await
                .map_err(|e| port_error("DeleteItem", e))?;
        }
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::summary_key(request_id)))
            .send()
            .await
            .map_err(|e| port_error("DeleteItem", e))?;
        if let Some(key) = key {
            // Only this job's key: a key another job took since must stay.
            let deleted = self
                .client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(Self::key_item_key(key)))
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
        item.as_ref().map(decode_job).transpose()
    }

    async fn transition(
        &self,
        request_id: &str,
        from: JobStatus,
        to: JobStatus,
        update: &JobUpdate,
        event: &JobEvent,
    ) -> PortResult<bool> {
        if !from.can_become(to) {
            return Err(PortError::Rejected(format!("no transition {from} → {to}")));
        }
        let mut sets = vec!["#status = :to".to_owned(), "#updated_at = :at".to_owned()];
        let mut names = HashMap::from([
            ("#status".to_owned(), "status".to_owned()),
            ("#updated_at".to_owned(), "updated_at".to_owned()),
        ]);
        let mut values = HashMap::from([
            (":to".to_owned(), s(to.as_str())),
            (":from".to_owned(), s(from.as_str())),
            (":at".to_owned(), n(event.at)),
        ]);
        for (name, value) in update_attributes(update) {
            sets.push(format!("#{name} = :{name}"));
            names.insert(format!("#{name}"), name.clone());
            values.insert(format!(":{name}"), value);
        }
        // A cancelled job sends no notice, so it is settled now; an ended one stays unsettled
        // until its notice is claimed.
        let remove = if to == JobStatus::Cancelled {
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
            .iter()
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

    async fn release_notification(&self, request_id: &str) -> PortResult<()> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::summary_key(request_id)))
            .update_expression("REMOVE notified_at SET #unsettled = :mark")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#unsettled", schema::UNSETTLED)
            .expression_attribute_values(":mark", s(UNSETTLED_MARK))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(port_error("UpdateItem", e)),
        }
    }

    async fn unsettled_jobs(&self, updated_before: Millis, limit: usize) -> PortResult<Vec<Job>> {
        let mut jobs = Vec::new();
        let mut start: Option<Item> = None;
        while jobs.len() < limit {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(schema::UNSETTLED_INDEX)
                .key_condition_expression("#unsettled = :mark AND #updated < :cutoff")
                .expression_attribute_names("#unsettled", schema::UNSETTLED)
                .expression_attribute_names("#updated", schema::UPDATED_AT)
                .expression_attribute_values(":mark", s(UNSETTLED_MARK))
                .expression_attribute_values(":cutoff", n(updated_before))
                .limit((limit - jobs.len()) as i32)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| port_error("Query", e))?;
            for item in page.items.unwrap_or_default() {
                jobs.push(decode_job(&item)?);
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        Ok(jobs)
    }

    async fn list_jobs(
        &self,
        owner: &Owner,
        limit: usize,
        after: Option<&str>,
    ) -> PortResult<JobPage> {
        // The page token is the last job's `created_at.request_id`, the index's sort order.
        let cursor = match after {
            None => "9".repeat(13),
            Some(token) => token
                .split_once('.')
                .and_then(|(at, id)| Some(created_key(at.parse().ok()?, id)))
                .filter(|_| !token.contains('#'))
                .ok_or_else(|| PortError::Invalid {
                    field: "cursor".into(),
                    message: "'cursor' is not a page token this API issued".into(),
                })?,
        };
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(schema::OWNER_INDEX)
            .key_condition_expression("#owner = :owner AND #created < :cursor")
            .expression_attribute_names("#owner", schema::OWNER)
            .expression_attribute_names("#created", schema::CREATED_KEY)
            .expression_attribute_values(":owner", s(&owner.0))
            .expression_attribute_values(":cursor", s(cursor))
            .scan_index_forward(false)
            .limit(limit as i32 + 1)
            .send()
            .await
            .map_err(|e| port_error("Query", e))?;
        let mut jobs = page
            .items
            .unwrap_or_default()
            .iter()
            .map(decode_job)
            .collect::<PortResult<Vec<_>>>()?;
        let next = if jobs.len() > limit {
            jobs.truncate(limit);
            jobs.last()
                .map(|j| format!("{}.{}", j.created_at, j.request_id))
        } else {
            None
        };
        Ok(JobPage { jobs, next })
    }
}

fn is_condition_failure(error: &aws_sdk_dynamodb::error::SdkError<UpdateItemError>) -> bool {
    error
        .as_service_error()
        .is_some_and(|e| e.is_conditional_check_failed_exception())
}
