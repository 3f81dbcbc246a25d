//! Subscriptions as items of the control table:
//!
//! - `SUBS#<owner>/SUB#<id>`: the subscription, as JSON text with its `version`; one query
//!   reads a caller's. While it is not paused it also carries `unsettled = DUE` and
//!   `updated_at` = its next run, so the sparse index the sweep reads (whose partition for
//!   stuck jobs is another mark) lists the due ones earliest first. It carries no TTL
//!   attribute: a subscription lives until it is deleted.
//! - `SUBRUNS#<id>/RUN#<due, 13 digits>`: each run, newest first by one query, expiring with
//!   the jobs they made.
//!
//! A change is a put on the condition that the stored `version` is the one read ("Condition
//! expressions", Amazon DynamoDB Developer Guide), so of two ticks moving the same
//! subscription on, one wins.

use super::*;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{DeleteRequest, WriteRequest};
use export_api::SubscriptionRun;
use export_core::domain::Subscription;
use export_core::ports::SubscriptionStore;

/// The `unsettled` index's partition for subscriptions that are due at `updated_at`.
const DUE_MARK: &str = "DUE";

fn subs_pk(owner: &str) -> String {
    format!("SUBS#{owner}")
}

fn sub_sk(id: &str) -> String {
    format!("SUB#{id}")
}

fn runs_pk(id: &str) -> String {
    format!("SUBRUNS#{id}")
}

#[derive(Serialize, Deserialize)]
struct SubscriptionItem {
    pk: String,
    sk: String,
    version: u64,
    #[serde(with = "json_body")]
    body: Subscription,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unsettled: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    updated_at: Option<Millis>,
}

#[derive(Serialize, Deserialize)]
struct RunItem {
    pk: String,
    sk: String,
    #[serde(with = "json_body")]
    body: SubscriptionRun,
    expires_at: i64,
}

/// A value as JSON text: its shape is the core's, and no index reads inside it.
mod json_body {
    use serde::de::DeserializeOwned;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&serde_json::to_string(value).map_err(serde::ser::Error::custom)?)
    }

    pub fn deserialize<'de, T: DeserializeOwned, D: Deserializer<'de>>(
        d: D,
    ) -> Result<T, D::Error> {
        serde_json::from_str(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

fn subscription_item(subscription: &Subscription) -> Item {
    let due = subscription.next_run_at.filter(|_| !subscription.paused);
    item_of(&SubscriptionItem {
        pk: subs_pk(&subscription.owner.0),
        sk: sub_sk(&subscription.id),
        version: subscription.version,
        body: subscription.clone(),
        unsettled: due.map(|_| DUE_MARK.into()),
        updated_at: due,
    })
}

fn decode_subscription(item: Item) -> PortResult<Subscription> {
    decode::<SubscriptionItem>(item).map(|i| i.body)
}

impl DynamoControlTable {
    async fn query_all(
        &self,
        pk: String,
        prefix: &str,
        newest_first: bool,
        limit: Option<usize>,
    ) -> PortResult<Vec<Item>> {
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
            .expression_attribute_names("#pk", schema::PARTITION_KEY)
            .expression_attribute_names("#sk", schema::SORT_KEY)
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":prefix", s(prefix))
            .scan_index_forward(!newest_first);
        if let Some(limit) = limit {
            query = query.limit(limit.min(i32::MAX as usize) as i32);
        }
        let mut pages = query.into_paginator().items().send();
        let mut items = Vec::new();
        while limit.is_none_or(|limit| items.len() < limit) {
            match pages.next().await {
                Some(item) => items.push(item.map_err(|e| port_error("Query", e))?),
                None => break,
            }
        }
        Ok(items)
    }
}

#[async_trait]
impl SubscriptionStore for DynamoControlTable {
    async fn create_subscription(&self, subscription: &Subscription) -> PortResult<()> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(subscription_item(subscription)))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", schema::PARTITION_KEY)
            .send()
            .await
            .map_err(|e| port_error("PutItem", e))?;
        Ok(())
    }

    async fn subscription(&self, owner: &Owner, id: &str) -> PortResult<Option<Subscription>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::item_key(subs_pk(&owner.0), &sub_sk(id))))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| port_error("GetItem", e))?;
        output.item.map(decode_subscription).transpose()
    }

    async fn subscriptions(&self, owner: &Owner) -> PortResult<Vec<Subscription>> {
        let mut subscriptions = self
            .query_all(subs_pk(&owner.0), "SUB#", false, None)
            .await?
            .into_iter()
            .map(decode_subscription)
            .collect::<PortResult<Vec<_>>>()?;
        subscriptions.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(subscriptions)
    }

    async fn replace_subscription(&self, subscription: &Subscription) -> PortResult<bool> {
        let answer = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(subscription_item(subscription)))
            .condition_expression("#version = :read")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":read", n(subscription.version.saturating_sub(1)))
            .send()
            .await;
        match answer {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(PutItemError::is_conditional_check_failed_exception) =>
            {
                Ok(false)
            }
            Err(e) => Err(port_error("PutItem", e)),
        }
    }

    async fn delete_subscription(&self, owner: &Owner, id: &str) -> PortResult<bool> {
        let answer = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::item_key(subs_pk(&owner.0), &sub_sk(id))))
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", schema::PARTITION_KEY)
            .send()
            .await;
        match answer {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                return Ok(false)
            }
            Err(e) => return Err(port_error("DeleteItem", e)),
        }
        // Its runs go too, 25 to a batch ("BatchWriteItem"); any left (a failure here) expire.
        let runs = self.query_all(runs_pk(id), "RUN#", false, None).await?;
        for batch in runs.chunks(25) {
            let requests = batch
                .iter()
                .map(|item| {
                    let key = Self::item_key(
                        runs_pk(id),
                        item.get(schema::SORT_KEY)
                            .and_then(|v| v.as_s().ok())
                            .map_or("", String::as_str),
                    );
                    WriteRequest::builder()
                        .delete_request(
                            DeleteRequest::builder()
                                .set_key(Some(key))
                                .build()
                                .expect("a delete request has its key"),
                        )
                        .build()
                })
                .collect();
            let mut unprocessed = Some(HashMap::from([(self.table.clone(), requests)]));
            for attempt in 0..5u32 {
                let Some(items) = unprocessed.take().filter(|u| !u.is_empty()) else {
                    break;
                };
                // Items left unprocessed are throttled ones: "BatchWriteItem" (DynamoDB API
                // Reference) asks for an exponential backoff before they are sent again.
                if attempt > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
                }
                let output = self
                    .client
                    .batch_write_item()
                    .set_request_items(Some(items))
                    .send()
                    .await
                    .map_err(|e| port_error("BatchWriteItem", e))?;
                unprocessed = output.unprocessed_items;
            }
        }
        Ok(true)
    }

    async fn due_subscriptions(&self, now: Millis, limit: usize) -> PortResult<Vec<Subscription>> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(schema::UNSETTLED_INDEX)
            .key_condition_expression("#unsettled = :due AND #updated <= :now")
            .expression_attribute_names("#unsettled", schema::UNSETTLED)
            .expression_attribute_names("#updated", schema::UPDATED_AT)
            .expression_attribute_values(":due", s(DUE_MARK))
            .expression_attribute_values(":now", n(now))
            .limit(limit.min(i32::MAX as usize) as i32)
            .into_paginator()
            .items()
            .send();
        let mut due = Vec::new();
        while due.len() < limit {
            match pages.next().await {
                Some(item) => due.push(decode_subscription(
                    item.map_err(|e| port_error("Query", e))?,
                )?),
                None => break,
            }
        }
        Ok(due)
    }

    async fn record_run(&self, id: &str, run: &SubscriptionRun) -> PortResult<()> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item_of(&RunItem {
                pk: runs_pk(id),
                sk: format!("RUN#{:013}", run.scheduled_at),
                body: run.clone(),
                expires_at: self.expires_at(run.scheduled_at),
            })))
            .send()
            .await
            .map_err(|e| port_error("PutItem", e))?;
        Ok(())
    }

    async fn runs(&self, id: &str, limit: usize) -> PortResult<Vec<SubscriptionRun>> {
        self.query_all(runs_pk(id), "RUN#", true, Some(limit))
            .await?
            .into_iter()
            .map(|item| decode::<RunItem>(item).map(|i| i.body))
            .collect()
    }
}
