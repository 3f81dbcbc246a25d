//! The control table's rows: jobs (the whole job as JSON, plus the columns its indexes need),
//! their events, and idempotency keys. Which moves are legal, and when a job is settled, is
//! the core's to say; this module stores what it is told.

use super::{SqliteStore, StoreError};
use async_trait::async_trait;
use export_core::domain::{Job, JobEvent, JobStatus, JobUpdate, Millis, Owner, Transition};
use export_core::page::{JobPage, PageToken};
use export_core::ports::{
    AnswerCache, CachedAnswer, ControlTable, CreateOutcome, IdempotencyKey, PortResult,
    SavedCheckpoint,
};
use rusqlite::{params, Connection, OptionalExtension};

fn decode_job(text: &str) -> Result<Job, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("stored job is corrupt: {e}")))
}

fn encode_job(job: &Job) -> String {
    serde_json::to_string(job).expect("job serialises")
}

fn insert_event(tx: &Connection, request_id: &str, event: &JobEvent) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO job_events (request_id, at, step, outcome, message) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![request_id, event.at, event.step, event.outcome, event.message])
    .map(drop)
}

/// Writes the row back after a change: the JSON and every column derived from it.
fn update_job(tx: &Connection, job: &Job) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE jobs SET status = ?2, updated_at = ?3, notified_at = ?4, settled = ?5, job = ?6 WHERE request_id = ?1",
    )?
    .execute(params![
        job.request_id,
        job.status.as_str(),
        job.updated_at,
        job.notified_at,
        job.is_settled(),
        encode_job(job)
    ])
    .map(drop)
}

/// Moves the job's `updated_at` to `at` if it is still `status`; true if it was.
fn touch_job(
    tx: &Connection,
    request_id: &str,
    status: JobStatus,
    at: Millis,
) -> Result<bool, StoreError> {
    let text: Option<String> = tx
        .prepare_cached("SELECT job FROM jobs WHERE request_id = ?1 AND status = ?2")?
        .query_row(params![request_id, status.as_str()], |r| r.get(0))
        .optional()?;
    let Some(text) = text else {
        return Ok(false);
    };
    let mut job = decode_job(&text)?;
    job.updated_at = at;
    update_job(tx, &job)?;
    Ok(true)
}

impl SqliteStore {
    /// Sets `notified_at` (only where it is unset), or clears it and moves `updated_at` to
    /// `released_at`; true if a row changed.
    async fn set_notified(
        &self,
        request_id: &str,
        at: Option<Millis>,
        released_at: Option<Millis>,
    ) -> PortResult<bool> {
        let request_id = request_id.to_owned();
        self.call(move |conn| {
            let tx = conn.savepoint()?;
            let text: Option<String> = tx
                .query_row(
                    "SELECT job FROM jobs WHERE request_id = ?1",
                    params![request_id],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(text) = text else {
                return Ok(false);
            };
            let mut job = decode_job(&text)?;
            if at.is_some() && job.notified_at.is_some() {
                return Ok(false);
            }
            job.notified_at = at;
            if let Some(released_at) = released_at {
                job.updated_at = released_at;
            }
            update_job(&tx, &job)?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }
}

#[async_trait]
impl ControlTable for SqliteStore {
    async fn create_job(
        &self,
        job: &Job,
        event: &JobEvent,
        key: Option<&IdempotencyKey>,
    ) -> PortResult<CreateOutcome> {
        let (job, event, key) = (job.clone(), event.clone(), key.cloned());
        self.call(move |conn| {
            let tx = conn.savepoint()?;
            if let Some(key) = &key {
                let existing: Option<(String, String)> = tx
                    .prepare_cached("SELECT request_id, digest FROM idempotency_keys WHERE owner = ?1 AND key = ?2")?
                    .query_row(params![key.owner.0, key.key], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                if let Some((request_id, digest)) = existing {
                    return Ok(CreateOutcome::KeyUsed { request_id, same_request: digest == key.request_digest });
                }
                tx.prepare_cached("INSERT INTO idempotency_keys (owner, key, request_id, digest, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")?
                    .execute(params![key.owner.0, key.key, job.request_id, key.request_digest, job.created_at])?;
            }
            tx.prepare_cached("INSERT INTO jobs (request_id, owner, status, created_at, updated_at, notified_at, settled, job) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")?
                .execute(params![job.request_id, job.owner.0, job.status.as_str(), job.created_at, job.updated_at, job.notified_at, job.is_settled(), encode_job(&job)])?;
            insert_event(&tx, &job.request_id, &event)?;
            tx.commit()?;
            Ok(CreateOutcome::Created)
        })
        .await
    }

    async fn key_used(&self, key: &IdempotencyKey) -> PortResult<Option<CreateOutcome>> {
        let key = key.clone();
        self.call(move |conn| {
            let existing: Option<(String, String)> = conn
                .prepare_cached(
                    "SELECT request_id, digest FROM idempotency_keys WHERE owner = ?1 AND key = ?2",
                )?
                .query_row(params![key.owner.0, key.key], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            Ok(existing.map(|(request_id, digest)| CreateOutcome::KeyUsed {
                request_id,
                same_request: digest == key.request_digest,
            }))
        })
        .await
    }

    async fn delete_job(&self, request_id: &str, key: Option<&IdempotencyKey>) -> PortResult<()> {
        let (request_id, key) = (request_id.to_owned(), key.cloned());
        self.call(move |conn| {
            let tx = conn.savepoint()?;
            tx.execute("DELETE FROM jobs WHERE request_id = ?1", params![request_id])?;
            tx.execute("DELETE FROM job_events WHERE request_id = ?1", params![request_id])?;
            tx.execute("DELETE FROM packaging_checkpoints WHERE request_id = ?1", params![request_id])?;
            if let Some(key) = key {
                // Only this job's key: a key another job took since must stay.
                tx.execute(
                    "DELETE FROM idempotency_keys WHERE owner = ?1 AND key = ?2 AND request_id = ?3",
                    params![key.owner.0, key.key, request_id],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn get_job(&self, request_id: &str) -> PortResult<Option<Job>> {
        let request_id = request_id.to_owned();
        self.call(move |conn| {
            let text: Option<String> = conn
                .prepare_cached("SELECT job FROM jobs WHERE request_id = ?1")?
                .query_row(params![request_id], |r| r.get(0))
                .optional()?;
            text.as_deref().map(decode_job).transpose()
        })
        .await
    }

    async fn transition(
        &self,
        request_id: &str,
        transition: Transition,
        update: &JobUpdate,
        event: &JobEvent,
    ) -> PortResult<bool> {
        let (request_id, update, event) = (request_id.to_owned(), update.clone(), event.clone());
        self.call(move |conn| {
            let tx = conn.savepoint()?;
            let current: Option<String> = tx
                .prepare_cached("SELECT job FROM jobs WHERE request_id = ?1 AND status = ?2")?
                .query_row(params![request_id, transition.from().as_str()], |r| {
                    r.get(0)
                })
                .optional()?;
            let Some(text) = current else {
                return Ok(false);
            };
            let mut job = decode_job(&text)?;
            job.apply(transition, &update, event.at);
            update_job(&tx, &job)?;
            insert_event(&tx, &request_id, &event)?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn append_event(&self, request_id: &str, event: &JobEvent) -> PortResult<()> {
        let (request_id, event) = (request_id.to_owned(), event.clone());
        self.call(move |conn| {
            let tx = conn.savepoint()?;
            insert_event(&tx, &request_id, &event)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn events(&self, request_id: &str) -> PortResult<Vec<JobEvent>> {
        let request_id = request_id.to_owned();
        self.call(move |conn| {
            let events = conn
                .prepare_cached("SELECT at, step, outcome, message FROM job_events WHERE request_id = ?1 ORDER BY seq")?
                .query_map(params![request_id], |r| {
                    Ok(JobEvent { at: r.get(0)?, step: r.get(1)?, outcome: r.get(2)?, message: r.get(3)? })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(events)
        })
        .await
    }

    async fn claim_notification(&self, request_id: &str, at: Millis) -> PortResult<bool> {
        self.set_notified(request_id, Some(at), None).await
    }

    async fn release_notification(&self, request_id: &str, at: Millis) -> PortResult<()> {
        self.set_notified(request_id, None, Some(at))
            .await
            .map(drop)
    }

    async fn unsettled_jobs(&self, updated_before: Millis, limit: usize) -> PortResult<Vec<Job>> {
        self.call(move |conn| {
            let rows: Vec<String> = conn
                .prepare_cached(
                    "SELECT job FROM jobs WHERE settled = 0 AND updated_at < ?1 ORDER BY updated_at LIMIT ?2",
                )?
                .query_map(params![updated_before, limit as i64], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            rows.iter().map(|t| decode_job(t)).collect()
        })
        .await
    }

    async fn touch(&self, request_id: &str, status: JobStatus, at: Millis) -> PortResult<bool> {
        let request_id = request_id.to_owned();
        self.call(move |conn| {
            let tx = conn.savepoint()?;
            let moved = touch_job(&tx, &request_id, status, at)?;
            tx.commit()?;
            Ok(moved)
        })
        .await
    }

    async fn save_checkpoint(
        &self,
        request_id: &str,
        expected_seq: u64,
        checkpoint: &SavedCheckpoint,
        at: Millis,
    ) -> PortResult<bool> {
        let (request_id, checkpoint) = (request_id.to_owned(), checkpoint.clone());
        self.call(move |conn| {
            let tx = conn.savepoint()?;
            let current: i64 = tx
                .prepare_cached("SELECT seq FROM packaging_checkpoints WHERE request_id = ?1")?
                .query_row(params![request_id], |r| r.get(0))
                .optional()?
                .unwrap_or(0);
            if current != expected_seq as i64
                || !touch_job(&tx, &request_id, JobStatus::Packaging, at)?
            {
                return Ok(false);
            }
            tx.prepare_cached(
                "INSERT INTO packaging_checkpoints (request_id, seq, body) VALUES (?1, ?2, ?3)
                 ON CONFLICT (request_id) DO UPDATE SET seq = excluded.seq, body = excluded.body",
            )?
            .execute(params![request_id, checkpoint.seq as i64, checkpoint.body])?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn checkpoint(&self, request_id: &str) -> PortResult<Option<SavedCheckpoint>> {
        let request_id = request_id.to_owned();
        self.call(move |conn| {
            let saved = conn
                .prepare_cached(
                    "SELECT seq, body FROM packaging_checkpoints WHERE request_id = ?1",
                )?
                .query_row(params![request_id], |r| {
                    Ok(SavedCheckpoint {
                        seq: r.get::<_, i64>(0)? as u64,
                        body: r.get(1)?,
                    })
                })
                .optional()?;
            Ok(saved)
        })
        .await
    }

    async fn delete_checkpoint(&self, request_id: &str) -> PortResult<()> {
        let request_id = request_id.to_owned();
        self.call(move |conn| {
            let tx = conn.savepoint()?;
            tx.execute(
                "DELETE FROM packaging_checkpoints WHERE request_id = ?1",
                params![request_id],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn list_jobs(
        &self,
        owner: &Owner,
        limit: usize,
        after: Option<&PageToken>,
    ) -> PortResult<JobPage> {
        let owner = owner.0.clone();
        // The listing's order is the index's: (created_at, request_id), newest first.
        let (at, id) = match after {
            Some(token) => (token.created_at, token.request_id.clone()),
            None => (i64::MAX, "\u{10FFFF}".to_owned()),
        };
        let jobs = self
            .call(move |conn| {
                let rows: Vec<String> = conn
                    .prepare_cached(
                        "SELECT job FROM jobs WHERE owner = ?1 AND (created_at < ?2 OR (created_at = ?2 AND request_id < ?3))
                         ORDER BY created_at DESC, request_id DESC LIMIT ?4",
                    )?
                    .query_map(params![owner, at, id, limit as i64 + 1], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                rows.iter().map(|t| decode_job(t)).collect::<Result<Vec<_>, _>>()
            })
            .await?;
        Ok(JobPage::from_rows(jobs, limit))
    }
}

/// Lookup answers shared by every instance reading this file. An expired row is never
/// returned, and is replaced (not accumulated) when its lookup is read again; rows of lookups
/// nobody repeats are removed whenever an answer is written, so the table holds no more than
/// what is still fresh.
#[async_trait]
impl AnswerCache for SqliteStore {
    async fn cached_answer(&self, key: &str, now: Millis) -> PortResult<Option<CachedAnswer>> {
        let key = key.to_owned();
        self.call(move |conn| {
            let cached = conn
                .prepare_cached(
                    "SELECT body, stored_at, expires_at FROM lookup_answers WHERE key = ?1 AND expires_at > ?2",
                )?
                .query_row(params![key, now], |r| {
                    Ok(CachedAnswer {
                        body: r.get(0)?,
                        stored_at: r.get(1)?,
                        expires_at: r.get(2)?,
                    })
                })
                .optional()?;
            Ok(cached)
        })
        .await
    }

    async fn cache_answer(&self, key: &str, answer: &CachedAnswer) -> PortResult<()> {
        let (key, answer) = (key.to_owned(), answer.clone());
        self.call(move |conn| {
            let tx = conn.savepoint()?;
            tx.prepare_cached("DELETE FROM lookup_answers WHERE expires_at <= ?1")?
                .execute(params![answer.stored_at])?;
            tx.prepare_cached(
                "INSERT INTO lookup_answers (key, body, stored_at, expires_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (key) DO UPDATE SET body = excluded.body, stored_at = excluded.stored_at,
                 expires_at = excluded.expires_at",
            )?
            .execute(params![key, answer.body, answer.stored_at, answer.expires_at])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_sqlite_table_meets_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("control.sqlite"), 5).unwrap();
        export_core::testing::conformance::check_control_table(&store).await;
        export_core::testing::answer_conformance::check_answer_cache(&store).await;
        export_core::testing::admission_conformance::check_admission_ledger(&store).await;
        export_core::testing::usage_conformance::check_usage_ledger(&store).await;
        export_core::testing::subscription_conformance::check_subscription_store(&store).await;
    }

    /// A file written before jobs had a `settled` column gets one, filled from the rows.
    #[tokio::test]
    async fn an_older_file_gains_the_settled_column() {
        use export_core::testing::conformance::queued_job;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sqlite");
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE jobs (request_id TEXT PRIMARY KEY, owner TEXT NOT NULL, status TEXT NOT NULL,
                 created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, notified_at INTEGER, job TEXT NOT NULL);
                 CREATE INDEX jobs_unsettled ON jobs (updated_at) WHERE status IN ('QUEUED', 'RUNNING', 'PACKAGING');",
            )
            .unwrap();
            for (id, status, notified) in [
                ("old-queued", "QUEUED", None),
                ("old-done", "SUCCEEDED", Some(5)),
            ] {
                let mut job = queued_job(id, &Owner("o".into()), 1_000);
                job.status = status.parse().unwrap();
                job.notified_at = notified;
                conn.execute(
                    "INSERT INTO jobs (request_id, owner, status, created_at, updated_at, notified_at, job) VALUES (?1, 'o', ?2, 1000, 1000, ?3, ?4)",
                    params![id, status, notified, encode_job(&job)],
                )
                .unwrap();
            }
        }
        let store = SqliteStore::open(&path, 5).unwrap();
        let stuck: Vec<String> = store
            .unsettled_jobs(10_000, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|j| j.request_id)
            .collect();
        assert_eq!(stuck, ["old-queued"]);
    }
}
