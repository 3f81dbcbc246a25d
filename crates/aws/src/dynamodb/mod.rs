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
use export_core::domain::{Job, JobEvent, JobStatus, JobUpdate, Millis, Owner, Transition};
use export_core::page::{JobPage, PageToken};
use export_core::ports::{
    AnswerCache, CachedAnswer, ControlTable, CreateOutcome, IdempotencyKey, PortError, PortResult,
    SavedCheckpoint,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
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

mod admission;
mod answers;
mod control;
mod items;
mod subscriptions;
mod usage;

use items::*;

/// One item's attributes.
type Item = HashMap<String, AttributeValue>;

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

fn item_of(value: &impl Serialize) -> Item {
    serde_dynamo::to_item(value).expect("control table items always encode")
}

fn decode<'a, T: Deserialize<'a>>(item: Item) -> PortResult<T> {
    serde_dynamo::from_item(item)
        .map_err(|e| PortError::Rejected(format!("control table item is malformed: {e}")))
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
            deliver: job.deliver.clone(),
            subscription_id: job.subscription_id.clone(),
            bound: job.bound.clone(),
            priority: job.priority,
            turns_of: job.turns_of.clone(),
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

    /// Writes `items` as one transaction: `Ok(None)` when it committed, else which items
    /// failed their conditions (`Err` for any other reason it was cancelled).
    async fn transact(&self, items: Vec<TransactWriteItem>) -> PortResult<Option<Vec<bool>>> {
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(None),
            Err(e) => control::failed_conditions(e).map(Some),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use export_core::domain::{Archive, Compression, Format};

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
            bound: vec!["sku".into()],
            status: JobStatus::Running,
            created_at: 1_000,
            updated_at: 2_000,
            statement_id: Some("s1".into()),
            unload_attempt: 0,
            priority: 1,
            turns_of: None,
            rows: None,
            bytes: None,
            archive_object: None,
            error: None,
            notified_at: None,
            subscription_id: None,
            deliver: Vec::new(),
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
