//! The admission ledger as items of the control table, all but two under one partition,
//! `ADMISSION`, so one query reads the slots and one the line in its order:
//!
//! - `SLOT#<nnnn>`: a slot held, with its job; written only if absent, removed only on the
//!   holder's id (conditional writes: "Condition expressions", Amazon DynamoDB Developer
//!   Guide), so a slot has one holder however many instances race;
//! - `WAIT#<turn, 20 digits>#<queued_at, 15 digits>#<id>`: a job in line, the sort key being
//!   the line's order;
//! - `TURN`: the line's turn; `OWNER#<owner>/TURN`: each owner's last turn, raised (never
//!   lowered) by a conditional update;
//! - `JOB#<id>/WAIT`: where the job's line item is, so its place is found from its id;
//! - `LOOKUPS/SLOT#<nnnn>`: a lookup's statement running, on a lease that ends with the
//!   lookup's deadline, so a holder that dies frees it;
//! - `JOB#<id>/SLOT`: the job holds a slot, so a late copy of its start does not put it in
//!   line again (joining checks it, in the same transaction).
//!
//! Admitting is one `TransactWriteItems` (the slot put if absent, the line item and the
//! job's pointer deleted if present): all or nothing. The line shares one partition, whose
//! throughput (1,000 writes a second) is far above the rate slots free at.
//! Every item carries the table's TTL attribute, at the table's retention from its write.

use super::control::is_condition_failure;
use super::*;
use aws_sdk_dynamodb::types::{ConditionCheck, Delete};
use export_core::ports::{AdmissionLedger, SlotHolder, WaitingJob};

const PARTITION: &str = "ADMISSION";
const SLOT_PREFIX: &str = "SLOT#";
const WAIT_PREFIX: &str = "WAIT#";
const TURN: &str = "TURN";
/// The sort key of a job's pointer to its line item.
const POINTER: &str = "WAIT";
/// The partition of the lookups' slots, apart from the exports'.
const LOOKUPS: &str = "LOOKUPS";
/// The sort key of the mark a job holding a slot carries, so it is not put in line again.
const HOLDS: &str = "SLOT";

#[derive(Serialize, Deserialize)]
struct SlotItem {
    pk: String,
    sk: String,
    slot: u32,
    request_id: String,
    since: Millis,
    expires_at: i64,
}

/// A job in line: the line item and the job's pointer carry the same fields.
#[derive(Serialize, Deserialize)]
struct WaitItem {
    pk: String,
    sk: String,
    request_id: String,
    /// Named `owner` on items written before groups could share turns.
    #[serde(alias = "owner")]
    turns_of: String,
    turn: u64,
    queued_at: Millis,
    /// The line item's sort key (on both, so the pointer leads to it).
    line_sk: String,
    expires_at: i64,
}

impl WaitItem {
    fn entry(self) -> WaitingJob {
        WaitingJob {
            request_id: self.request_id,
            turns_of: self.turns_of,
            turn: self.turn,
            queued_at: self.queued_at,
        }
    }
}

fn line_sk(entry: &WaitingJob) -> String {
    format!(
        "{WAIT_PREFIX}{:020}#{:015}#{}",
        entry.turn, entry.queued_at, entry.request_id
    )
}

fn slot_sk(slot: u32) -> String {
    format!("{SLOT_PREFIX}{slot:04}")
}

fn turns_pk(turns_of: &str) -> String {
    format!("OWNER#{turns_of}")
}

impl DynamoControlTable {
    fn wait_item(&self, entry: &WaitingJob, pk: String, sk: String, at: Millis) -> Item {
        item_of(&WaitItem {
            pk,
            sk,
            request_id: entry.request_id.clone(),
            turns_of: entry.turns_of.clone(),
            turn: entry.turn,
            queued_at: entry.queued_at,
            line_sk: line_sk(entry),
            expires_at: self.expires_at(at),
        })
    }

    fn delete(&self, key: Item, condition: Option<&str>) -> PortResult<TransactWriteItem> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key))
            .set_condition_expression(condition.map(str::to_owned))
            .build()
            .map_err(|e| PortError::Rejected(e.to_string()))?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    /// The job's line entry, from its pointer.
    async fn pointer(&self, request_id: &str) -> PortResult<Option<WaitItem>> {
        self.get_item(Self::item_key(job_pk(request_id), POINTER))
            .await?
            .map(decode)
            .transpose()
    }

    async fn turn_of(&self, pk: String) -> PortResult<u64> {
        #[derive(Deserialize)]
        struct Turn {
            turn: u64,
        }
        Ok(match self.get_item(Self::item_key(pk, TURN)).await? {
            Some(item) => decode::<Turn>(item)?.turn,
            None => 0,
        })
    }

    /// Raises the turn item under `pk` to `turn`; a later turn already there stays.
    async fn raise_turn(&self, pk: String, turn: u64, at: Millis) -> PortResult<()> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::item_key(pk, TURN)))
            .update_expression("SET turn = :turn, expires_at = :expires")
            .condition_expression("attribute_not_exists(turn) OR turn < :turn")
            .expression_attribute_values(":turn", n(turn))
            .expression_attribute_values(":expires", n(self.expires_at(at)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(port_error("UpdateItem", e)),
        }
    }

    /// Every item of the admission partition whose sort key starts with `prefix`, in order,
    /// at most `limit` (all if None); strongly consistent.
    async fn admission_items(&self, prefix: &str, limit: Option<usize>) -> PortResult<Vec<Item>> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(PARTITION))
            .expression_attribute_values(":prefix", s(prefix))
            .consistent_read(true)
            .set_limit(limit.map(|l| l.min(1_000) as i32));
        let mut items = Vec::new();
        let mut pages = query.into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| port_error("Query", e))?;
            items.extend(page.items.unwrap_or_default());
            if limit.is_some_and(|l| items.len() >= l) {
                items.truncate(limit.unwrap_or(usize::MAX));
                break;
            }
        }
        Ok(items)
    }
}

#[async_trait]
impl AdmissionLedger for DynamoControlTable {
    async fn holders(&self) -> PortResult<Vec<SlotHolder>> {
        self.admission_items(SLOT_PREFIX, None)
            .await?
            .into_iter()
            .map(|item| {
                let slot: SlotItem = decode(item)?;
                Ok(SlotHolder {
                    slot: slot.slot,
                    request_id: slot.request_id,
                    since: slot.since,
                })
            })
            .collect()
    }

    async fn turns(&self, turns_of: &str) -> PortResult<(u64, u64)> {
        Ok((
            self.turn_of(PARTITION.into()).await?,
            self.turn_of(turns_pk(turns_of)).await?,
        ))
    }

    async fn join(&self, entry: &WaitingJob) -> PortResult<(WaitingJob, bool)> {
        let at = entry.queued_at;
        let absent = "attribute_not_exists(pk)";
        // A job that holds a slot (its marker is there) is not put in line again.
        let holds_no_slot = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(Self::item_key(job_pk(&entry.request_id), HOLDS)))
            .condition_expression(absent)
            .build()
            .map_err(|e| PortError::Rejected(e.to_string()))?;
        let items = vec![
            self.put(
                self.wait_item(entry, job_pk(&entry.request_id), POINTER.into(), at),
                absent,
            )?,
            self.put(
                self.wait_item(entry, PARTITION.into(), line_sk(entry), at),
                absent,
            )?,
            TransactWriteItem::builder()
                .condition_check(holds_no_slot)
                .build(),
        ];
        if let Some(failed) = self.transact(items).await? {
            if failed.get(2) == Some(&true) {
                return Ok((entry.clone(), false));
            }
            // In line already (the pointer is there): its first place stands.
            return match self.pointer(&entry.request_id).await? {
                Some(existing) => Ok((existing.entry(), false)),
                None => Err(PortError::Unavailable(
                    "the job's line entry changed while it joined; try again".into(),
                )),
            };
        }
        self.raise_turn(turns_pk(&entry.turns_of), entry.turn, at)
            .await?;
        Ok((entry.clone(), true))
    }

    async fn first_waiting(&self, limit: usize) -> PortResult<Vec<WaitingJob>> {
        self.admission_items(WAIT_PREFIX, Some(limit))
            .await?
            .into_iter()
            .map(|item| Ok(decode::<WaitItem>(item)?.entry()))
            .collect()
    }

    async fn admit(&self, slot: u32, entry: &WaitingJob, at: Millis) -> PortResult<bool> {
        let present = "attribute_exists(pk)";
        let items = vec![
            self.put(
                item_of(&SlotItem {
                    pk: PARTITION.into(),
                    sk: slot_sk(slot),
                    slot,
                    request_id: entry.request_id.clone(),
                    since: at,
                    expires_at: self.expires_at(at),
                }),
                "attribute_not_exists(pk)",
            )?,
            self.delete(
                Self::item_key(PARTITION.into(), &line_sk(entry)),
                Some(present),
            )?,
            self.delete(
                Self::item_key(job_pk(&entry.request_id), POINTER),
                Some(present),
            )?,
            self.put(
                Self::item_key(job_pk(&entry.request_id), HOLDS)
                    .into_iter()
                    .chain([
                        ("slot".to_owned(), n(slot)),
                        ("expires_at".to_owned(), n(self.expires_at(at))),
                    ])
                    .collect(),
                "attribute_not_exists(pk)",
            )?,
        ];
        if let Some(written) = self.transact(items).await.transpose() {
            return match written {
                Ok(_) => Ok(false),
                // Another instance's admission of the same slot or job at the same moment
                // ("TransactionConflict"): this one lost, as to a failed condition.
                Err(PortError::Unavailable(reason)) if reason.contains("TransactionConflict") => {
                    Ok(false)
                }
                Err(e) => Err(e),
            };
        }
        self.raise_turn(PARTITION.into(), entry.turn, at).await?;
        Ok(true)
    }

    async fn release(&self, slot: u32, request_id: &str) -> PortResult<bool> {
        let slot_item = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(Self::item_key(PARTITION.into(), &slot_sk(slot))))
            .condition_expression("request_id = :id")
            .expression_attribute_values(":id", s(request_id))
            .build()
            .map_err(|e| PortError::Rejected(e.to_string()))?;
        let items = vec![
            TransactWriteItem::builder().delete(slot_item).build(),
            self.delete(Self::item_key(job_pk(request_id), HOLDS), None)?,
        ];
        Ok(self.transact(items).await?.is_none())
    }

    async fn leave(&self, request_id: &str) -> PortResult<()> {
        let Some(pointer) = self.pointer(request_id).await? else {
            return Ok(());
        };
        let items = vec![
            self.delete(Self::item_key(PARTITION.into(), &pointer.line_sk), None)?,
            self.delete(Self::item_key(job_pk(request_id), POINTER), None)?,
        ];
        // No conditions: it cannot fail one.
        self.transact(items).await.map(drop)
    }

    async fn place(&self, request_id: &str) -> PortResult<Option<u64>> {
        let Some(pointer) = self.pointer(request_id).await? else {
            return Ok(None);
        };
        // Items sorted before the job's own: a count, page by page (a query counts up to
        // 1 MB of items at a time).
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk BETWEEN :first AND :own")
            .expression_attribute_values(":pk", s(PARTITION))
            .expression_attribute_values(":first", s(WAIT_PREFIX))
            .expression_attribute_values(":own", s(&pointer.line_sk))
            .select(aws_sdk_dynamodb::types::Select::Count)
            .consistent_read(true)
            .into_paginator()
            .send();
        let mut counted: u64 = 0;
        while let Some(page) = pages.next().await {
            counted += page.map_err(|e| port_error("Query", e))?.count.max(0) as u64;
        }
        // The range includes the job's own item, if it is still there.
        Ok(counted.checked_sub(1))
    }

    async fn take_lookup_slot(
        &self,
        slots: u32,
        holder: &str,
        now: Millis,
        until: Millis,
    ) -> PortResult<Option<u32>> {
        #[derive(Deserialize)]
        struct Held {
            slot: u32,
            until: Millis,
        }
        let held: Vec<Held> = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(LOOKUPS))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| port_error("Query", e))?
            .into_iter()
            .map(decode)
            .collect::<PortResult<_>>()?;
        let free = (0..slots).filter(|slot| {
            held.iter()
                .find(|h| h.slot == *slot)
                .is_none_or(|h| h.until < now)
        });
        for slot in free {
            // Free now, or its lease ran out: taken only if still so.
            let taken = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(
                    Self::item_key(LOOKUPS.into(), &slot_sk(slot))
                        .into_iter()
                        .chain([
                            ("slot".to_owned(), n(slot)),
                            ("holder".to_owned(), s(holder)),
                            ("until".to_owned(), n(until)),
                            ("expires_at".to_owned(), n(self.expires_at(until))),
                        ])
                        .collect(),
                ))
                .condition_expression("attribute_not_exists(pk) OR #until < :now")
                .expression_attribute_names("#until", "until")
                .expression_attribute_values(":now", n(now))
                .send()
                .await;
            match taken {
                Ok(_) => return Ok(Some(slot)),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()) => {}
                Err(e) => return Err(port_error("PutItem", e)),
            }
        }
        Ok(None)
    }

    async fn free_lookup_slot(&self, slot: u32, holder: &str) -> PortResult<()> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::item_key(LOOKUPS.into(), &slot_sk(slot))))
            .condition_expression("holder = :holder")
            .expression_attribute_values(":holder", s(holder))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(port_error("DeleteItem", e)),
        }
    }
}
