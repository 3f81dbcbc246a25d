//! The usage ledger as items of the control table:
//!
//! - `USAGE#<owner>/UNFINISHED`: how many of the owner's exports are charged and not ended;
//! - `USAGE#<owner>/DAY#<day>`: the owner's exports and bytes on a UTC day;
//! - `UNFINISHED/<charged at, 13 digits>#<request id>`: each export charged and not ended,
//!   under one partition, oldest first, so the sweep reads them in order; it is written and
//!   removed in the same transaction as the owner's count, so the two never disagree, and a
//!   job is charged or ended once;
//! - `JOB#<id>/BYTES`: the job's bytes are in its day's;
//! - `RATE#<key>/RATE`: a caller's lookup schedule, replaced on the condition that it is
//!   unchanged.
//!
//! A limit is a condition on the count's update inside the transaction ("Condition
//! expressions", Amazon DynamoDB Developer Guide): of many charges at once, only those that
//! keep within it commit. Every item carries the table's TTL attribute.

use super::*;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::Delete;
use export_core::ports::{ExportCharge, ExportLimits, OverLimit, Usage, UsageLedger};

const UNFINISHED: &str = "UNFINISHED";
const BYTES: &str = "BYTES";
const RATE: &str = "RATE";

fn usage_pk(owner: &str) -> String {
    format!("USAGE#{owner}")
}

fn charge_sk(charge: &ExportCharge) -> String {
    format!("{:013}#{}", charge.at, charge.request_id)
}

fn day_sk(day: i64) -> String {
    format!("DAY#{day}")
}

#[derive(Serialize, Deserialize)]
struct ChargeItem {
    pk: String,
    sk: String,
    request_id: String,
    owner: String,
    day: i64,
    at: Millis,
    expires_at: i64,
}

#[derive(Serialize, Deserialize)]
struct RateItem {
    pk: String,
    sk: String,
    next: Millis,
    expires_at: i64,
}

impl DynamoControlTable {
    fn update(
        &self,
        key: Item,
        expression: &str,
        condition: Option<&str>,
        values: &[(&str, AttributeValue)],
    ) -> PortResult<TransactWriteItem> {
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key))
            .update_expression(expression)
            .set_condition_expression(condition.map(str::to_owned));
        for (name, value) in values {
            update = update.expression_attribute_values(*name, value.clone());
        }
        let update = update
            .build()
            .map_err(|e| PortError::Rejected(e.to_string()))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    fn delete_if_present(&self, key: Item) -> PortResult<TransactWriteItem> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key))
            .condition_expression("attribute_exists(pk)")
            .build()
            .map_err(|e| PortError::Rejected(e.to_string()))?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    /// The count of `(attribute)` on the item, 0 if it has none.
    fn count(item: &Option<Item>, attribute: &str) -> u64 {
        item.as_ref()
            .and_then(|i| i.get(attribute))
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<i64>().ok())
            .map_or(0, |n| n.max(0) as u64)
    }
}

#[async_trait]
impl UsageLedger for DynamoControlTable {
    async fn charge_export(
        &self,
        charge: &ExportCharge,
        limits: &ExportLimits,
    ) -> PortResult<Option<OverLimit>> {
        // A limit of none needs no write to refuse.
        if limits.unfinished == Some(0) {
            return Ok(Some(OverLimit::Unfinished));
        }
        if limits.per_day == Some(0) {
            return Ok(Some(OverLimit::PerDay));
        }
        let owner = &charge.owner.0;
        let expires = n(self.expires_at(charge.at));
        let one = n(1);
        let mut unfinished_values = vec![(":one", one.clone()), (":expires", expires.clone())];
        let unfinished_condition = limits.unfinished.map(|limit| {
            unfinished_values.push((":limit", n(limit)));
            "attribute_not_exists(unfinished) OR unfinished < :limit"
        });
        let mut day_values = vec![(":one", one), (":expires", expires)];
        let day_condition = limits.per_day.map(|limit| {
            day_values.push((":limit", n(limit)));
            "attribute_not_exists(exports) OR exports < :limit"
        });
        let items = vec![
            self.put(
                item_of(&ChargeItem {
                    pk: UNFINISHED.into(),
                    sk: charge_sk(charge),
                    request_id: charge.request_id.clone(),
                    owner: owner.clone(),
                    day: charge.day,
                    at: charge.at,
                    expires_at: self.expires_at(charge.at),
                }),
                "attribute_not_exists(pk)",
            )?,
            self.update(
                Self::item_key(usage_pk(owner), UNFINISHED),
                "ADD unfinished :one SET expires_at = :expires",
                unfinished_condition,
                &unfinished_values,
            )?,
            self.update(
                Self::item_key(usage_pk(owner), &day_sk(charge.day)),
                "ADD exports :one SET expires_at = :expires",
                day_condition,
                &day_values,
            )?,
        ];
        Ok(match self.transact(items).await? {
            None => None,
            // Charged already: the first charge stands.
            Some(failed) if failed[0] => None,
            Some(failed) if failed[1] => Some(OverLimit::Unfinished),
            Some(_) => Some(OverLimit::PerDay),
        })
    }

    async fn refund_export(&self, charge: &ExportCharge) -> PortResult<()> {
        let owner = &charge.owner.0;
        let minus = [(":minus", n(-1))];
        let items = vec![
            self.delete_if_present(Self::item_key(UNFINISHED.into(), &charge_sk(charge)))?,
            self.update(
                Self::item_key(usage_pk(owner), UNFINISHED),
                "ADD unfinished :minus",
                None,
                &minus,
            )?,
            self.update(
                Self::item_key(usage_pk(owner), &day_sk(charge.day)),
                "ADD exports :minus",
                None,
                &minus,
            )?,
        ];
        // Not charged (or refunded already): nothing to undo.
        self.transact(items).await.map(drop)
    }

    async fn end_export(&self, charge: &ExportCharge) -> PortResult<()> {
        let items = vec![
            self.delete_if_present(Self::item_key(UNFINISHED.into(), &charge_sk(charge)))?,
            self.update(
                Self::item_key(usage_pk(&charge.owner.0), UNFINISHED),
                "ADD unfinished :minus",
                None,
                &[(":minus", n(-1))],
            )?,
        ];
        // Ended already, or never charged: nothing to do.
        self.transact(items).await.map(drop)
    }

    async fn add_bytes(
        &self,
        owner: &Owner,
        request_id: &str,
        day: i64,
        bytes: u64,
    ) -> PortResult<()> {
        let at = day * 86_400_000;
        let items = vec![
            self.put(
                Self::item_key(job_pk(request_id), BYTES)
                    .into_iter()
                    .chain([("expires_at".to_owned(), n(self.expires_at(at)))])
                    .collect(),
                "attribute_not_exists(pk)",
            )?,
            self.update(
                Self::item_key(usage_pk(&owner.0), &day_sk(day)),
                "ADD bytes :bytes SET expires_at = :expires",
                None,
                &[(":bytes", n(bytes)), (":expires", n(self.expires_at(at)))],
            )?,
        ];
        // Counted already: once per job.
        self.transact(items).await.map(drop)
    }

    async fn usage(&self, owner: &Owner, day: i64) -> PortResult<Usage> {
        let unfinished = self
            .get_item(Self::item_key(usage_pk(&owner.0), UNFINISHED))
            .await?;
        let today = self
            .get_item(Self::item_key(usage_pk(&owner.0), &day_sk(day)))
            .await?;
        Ok(Usage {
            unfinished: Self::count(&unfinished, "unfinished"),
            exports: Self::count(&today, "exports"),
            bytes: Self::count(&today, "bytes"),
        })
    }

    async fn unfinished_exports(
        &self,
        after: Option<&ExportCharge>,
        limit: usize,
    ) -> PortResult<Vec<ExportCharge>> {
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .expression_attribute_values(":pk", s(UNFINISHED))
            .consistent_read(true)
            .limit(limit.clamp(1, 1_000) as i32);
        query = match after {
            Some(after) => query
                .key_condition_expression("pk = :pk AND sk > :after")
                .expression_attribute_values(":after", s(charge_sk(after))),
            None => query.key_condition_expression("pk = :pk"),
        };
        let mut charges = Vec::new();
        let mut pages = query.into_paginator().send();
        while let Some(page) = pages.next().await {
            for item in page
                .map_err(|e| port_error("Query", e))?
                .items
                .unwrap_or_default()
            {
                let charge: ChargeItem = decode(item)?;
                charges.push(ExportCharge {
                    owner: Owner(charge.owner),
                    request_id: charge.request_id,
                    day: charge.day,
                    at: charge.at,
                });
            }
            if charges.len() >= limit {
                break;
            }
        }
        charges.truncate(limit);
        Ok(charges)
    }

    async fn rate_state(&self, key: &str) -> PortResult<Option<Millis>> {
        self.get_item(Self::item_key(format!("RATE#{key}"), RATE))
            .await?
            .map(|item| decode::<RateItem>(item).map(|rate| rate.next))
            .transpose()
    }

    async fn set_rate_state(
        &self,
        key: &str,
        expected: Option<Millis>,
        next: Millis,
        expires_at: Millis,
    ) -> PortResult<bool> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item_of(&RateItem {
                pk: format!("RATE#{key}"),
                sk: RATE.into(),
                next,
                // Whole seconds, rounded up.
                expires_at: (expires_at + 999) / 1000,
            })));
        put = match expected {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(seen) => put
                .condition_expression("#next = :seen")
                .expression_attribute_names("#next", "next")
                .expression_attribute_values(":seen", n(seen)),
        };
        match put.send().await {
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
}
