//! The control table's port: jobs, their events, idempotency keys and packaging
//! checkpoints, each move one conditional transaction.

use super::*;

/// Which items of a cancelled transaction failed their condition; `Err` if it was cancelled
/// for another reason (a conflicting transaction, throttling), which a retry may fix.
pub(super) fn failed_conditions(
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

pub(super) fn is_condition_failure(
    error: &aws_sdk_dynamodb::error::SdkError<UpdateItemError>,
) -> bool {
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

    async fn key_used(&self, key: &IdempotencyKey) -> PortResult<Option<CreateOutcome>> {
        let Some(item) = self.get_item(Self::idempotency_key(key)).await? else {
            return Ok(None);
        };
        let existing: KeyItem = decode(item)?;
        Ok(Some(CreateOutcome::KeyUsed {
            request_id: existing.request_id,
            same_request: existing.digest == key.request_digest,
        }))
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
