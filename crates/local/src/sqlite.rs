//! The control table and the durable queues, in one SQLite file (WAL).
//!
//! One connection behind a mutex: every operation is a short transaction, so serialising them
//! costs little and rules out `SQLITE_BUSY` between the API and the workers.

use async_trait::async_trait;
use export_core::domain::{now_ms, Job, JobEvent, JobStatus, JobUpdate, Millis, Owner};
use export_core::ports::{
    ControlTable, CreateOutcome, IdempotencyKey, JobPage, PortError, PortResult, QueueName,
    QueueSender,
};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The store's connection. An async mutex: a caller waiting for it yields its thread to other
/// tasks instead of blocking it (the runtime may have as few threads as cores).
type SharedConnection = Arc<tokio::sync::Mutex<Connection>>;
use std::time::Duration;
use tokio::sync::Notify;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    request_id  TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    status      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    notified_at INTEGER,
    job         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_owner ON jobs (owner, created_at DESC, request_id DESC);
CREATE INDEX IF NOT EXISTS jobs_unsettled ON jobs (updated_at)
    WHERE status IN ('QUEUED', 'RUNNING', 'PACKAGING')
       OR (status IN ('SUCCEEDED', 'FAILED') AND notified_at IS NULL);
CREATE TABLE IF NOT EXISTS job_events (
    seq        INTEGER PRIMARY KEY,
    request_id TEXT NOT NULL,
    at         INTEGER NOT NULL,
    step       TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    message    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS job_events_by_job ON job_events (request_id, seq);
CREATE TABLE IF NOT EXISTS idempotency_keys (
    owner      TEXT NOT NULL,
    key        TEXT NOT NULL,
    request_id TEXT NOT NULL,
    digest     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (owner, key)
);
CREATE TABLE IF NOT EXISTS queue_messages (
    id            INTEGER PRIMARY KEY,
    queue         TEXT NOT NULL,
    body          TEXT NOT NULL,
    visible_at    INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt       TEXT,
    sent_at       INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_ready ON queue_messages (queue, visible_at, id);
CREATE TABLE IF NOT EXISTS dead_letters (
    message_id    INTEGER NOT NULL,
    queue         TEXT NOT NULL,
    body          TEXT NOT NULL,
    receive_count INTEGER NOT NULL,
    sent_at       INTEGER NOT NULL,
    dead_at       INTEGER NOT NULL
);
";

/// The SQLite file holding jobs, events, idempotency keys and queue messages.
#[derive(Clone)]
pub struct SqliteStore {
    conn: SharedConnection,
    /// Wakes receivers waiting on a queue when a message is sent to it.
    wakers: Arc<HashMap<&'static str, Notify>>,
    /// After this many receives without an ack, a message goes to `dead_letters`.
    max_receives: u32,
}

fn db_error(e: rusqlite::Error) -> PortError {
    PortError::Unavailable(format!("sqlite: {e}"))
}

fn decode_job(text: &str) -> PortResult<Job> {
    serde_json::from_str(text)
        .map_err(|e| PortError::Rejected(format!("stored job is corrupt: {e}")))
}

/// One message handed to a worker; `receipt` acknowledges it.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub id: i64,
    pub receipt: String,
    pub body: String,
    pub receive_count: u32,
}

impl SqliteStore {
    pub fn open(path: &Path, max_receives: u32) -> anyhow::Result<SqliteStore> {
        let conn = Connection::open(path)?;
        // Small pages for small rows: every page a commit touches is written to the log whole.
        // (Takes effect when the file is created.)
        conn.pragma_update(None, "page_size", 1024)?;
        // WAL with NORMAL sync: durable across process crashes (what the local stack needs),
        // without an fsync per commit.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "busy_timeout", 5000)?;
        // Checkpoints (and their fsyncs) run on a connection of their own, off the request
        // path: see `spawn_checkpointer`.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        conn.execute_batch(SCHEMA)?;
        let wakers = [QueueName::Requests, QueueName::Polls]
            .into_iter()
            .map(|q| (q.as_str(), Notify::new()))
            .collect();
        Ok(SqliteStore {
            conn: Arc::new(tokio::sync::Mutex::new(conn)),
            wakers: Arc::new(wakers),
            max_receives: max_receives.max(1),
        })
    }

    /// Copies the write-ahead log back into the database every `interval`, on a second
    /// connection, so no request ever waits for a checkpoint. Stops when the store is dropped.
    pub fn spawn_checkpointer(
        &self,
        path: &Path,
        interval: Duration,
    ) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "busy_timeout", 5000)?;
        let alive = Arc::downgrade(&self.conn);
        let conn = Arc::new(Mutex::new(conn));
        Ok(tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            loop {
                tick.tick().await;
                if alive.strong_count() == 0 {
                    return;
                }
                let conn = Arc::clone(&conn);
                let checkpoint = tokio::task::spawn_blocking(move || {
                    let conn = conn.lock().expect("checkpoint connection");
                    // PASSIVE: copy what it can without waiting for readers or writers.
                    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                });
                if let Ok(Err(e)) = checkpoint.await {
                    tracing::warn!(error = %e, "WAL checkpoint failed");
                }
            }
        }))
    }

    async fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> PortResult<T> {
        let mut conn = self.conn.lock().await;
        f(&mut conn).map_err(db_error)
    }

    /// Takes up to `max` visible messages, hiding each for `visibility`; a message received
    /// `max_receives` times without an ack moves to the dead-letter table instead.
    pub async fn receive_now(
        &self,
        queue: QueueName,
        max: usize,
        visibility: Duration,
    ) -> PortResult<Vec<Delivery>> {
        let now = now_ms();
        let max_receives = self.max_receives;
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut delivered = Vec::new();
            {
                let mut select = tx.prepare_cached(
                    "SELECT id, body, receive_count, sent_at FROM queue_messages
                     WHERE queue = ?1 AND visible_at <= ?2 ORDER BY visible_at, id LIMIT ?3",
                )?;
                let rows: Vec<(i64, String, u32, i64)> = select
                    .query_map(params![queue.as_str(), now, max as i64 * 2], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                    })?
                    .collect::<Result<_, _>>()?;
                for (id, body, count, sent_at) in rows {
                    if count >= max_receives {
                        tx.execute(
                            "INSERT INTO dead_letters (message_id, queue, body, receive_count, sent_at, dead_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                            params![id, queue.as_str(), body, count, sent_at, now],
                        )?;
                        tx.execute("DELETE FROM queue_messages WHERE id = ?1", params![id])?;
                        tracing::warn!(queue = queue.as_str(), message_id = id, receives = count, "message moved to the dead-letter table");
                        continue;
                    }
                    if delivered.len() == max {
                        break;
                    }
                    let receipt = uuid::Uuid::new_v4().to_string();
                    tx.execute(
                        "UPDATE queue_messages SET receive_count = receive_count + 1, visible_at = ?2, receipt = ?3 WHERE id = ?1",
                        params![id, now + visibility.as_millis() as i64, receipt],
                    )?;
                    delivered.push(Delivery { id, receipt, body, receive_count: count + 1 });
                }
            }
            tx.commit()?;
            Ok(delivered)
        }).await
    }

    /// Like [`Self::receive_now`], but waits up to `wait` for a message to arrive.
    pub async fn receive(
        &self,
        queue: QueueName,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> PortResult<Vec<Delivery>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.wakers[queue.as_str()].notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let delivered = self.receive_now(queue, max, visibility).await?;
            if !delivered.is_empty() {
                return Ok(delivered);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(delivered);
            }
            // Sleep until something is sent, the next delayed message is due, or time is up.
            let next_due = self
                .next_visible_in(queue)
                .await?
                .unwrap_or(Duration::from_secs(1));
            let nap = next_due.min(deadline - now).max(Duration::from_millis(1));
            let _ = tokio::time::timeout(nap, notified).await;
        }
    }

    async fn next_visible_in(&self, queue: QueueName) -> PortResult<Option<Duration>> {
        let next: Option<i64> = self
            .with_conn(|conn| {
                conn.prepare_cached("SELECT MIN(visible_at) FROM queue_messages WHERE queue = ?1")?
                    .query_row(params![queue.as_str()], |r| r.get(0))
            })
            .await?;
        Ok(next.map(|at| Duration::from_millis((at - now_ms()).max(0) as u64)))
    }

    /// Deletes a handled message; a stale receipt (the message was redelivered since) does nothing.
    pub async fn ack(&self, receipt: &str) -> PortResult<()> {
        self.with_conn(|conn| {
            conn.prepare_cached("DELETE FROM queue_messages WHERE receipt = ?1")?
                .execute(params![receipt])
                .map(drop)
        })
        .await
    }

    /// Keeps a message hidden for another `visibility` while its handler is still working.
    pub async fn extend(&self, receipt: &str, visibility: Duration) -> PortResult<()> {
        let at = now_ms() + visibility.as_millis() as i64;
        self.with_conn(|conn| {
            conn.prepare_cached("UPDATE queue_messages SET visible_at = ?2 WHERE receipt = ?1")?
                .execute(params![receipt, at])
                .map(drop)
        })
        .await
    }

    /// Receives after which a message is dead-lettered.
    pub fn max_receives(&self) -> u32 {
        self.max_receives
    }

    /// Makes a message visible again after `delay` (a failed attempt).
    pub async fn release(&self, receipt: &str, delay: Duration) -> PortResult<()> {
        let at = now_ms() + delay.as_millis() as i64;
        self.with_conn(|conn| {
            conn.prepare_cached("UPDATE queue_messages SET visible_at = ?2 WHERE receipt = ?1")?
                .execute(params![receipt, at])
                .map(drop)
        })
        .await?;
        self.wakers.values().for_each(Notify::notify_waiters);
        Ok(())
    }

    /// Messages waiting (visible or not) and dead letters, per queue.
    pub async fn depth(&self, queue: QueueName) -> PortResult<(u64, u64)> {
        self.with_conn(|conn| {
            let waiting = conn.query_row(
                "SELECT COUNT(*) FROM queue_messages WHERE queue = ?1",
                params![queue.as_str()],
                |r| r.get(0),
            )?;
            let dead = conn.query_row(
                "SELECT COUNT(*) FROM dead_letters WHERE queue = ?1",
                params![queue.as_str()],
                |r| r.get(0),
            )?;
            Ok((waiting, dead))
        })
        .await
    }

    /// Sets `notified_at` (only where it is unset) or clears it; true if a row changed.
    async fn set_notified(&self, request_id: &str, at: Option<Millis>) -> PortResult<bool> {
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let condition = if at.is_some() {
                "AND notified_at IS NULL"
            } else {
                ""
            };
            let text: Option<String> = tx
                .query_row(
                    &format!("SELECT job FROM jobs WHERE request_id = ?1 {condition}"),
                    params![request_id],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(Ok(mut job)) = text.as_deref().map(decode_job) else {
                return Ok(false);
            };
            job.notified_at = at;
            tx.execute(
                "UPDATE jobs SET notified_at = ?2, job = ?3 WHERE request_id = ?1",
                params![
                    request_id,
                    at,
                    serde_json::to_string(&job).expect("job serialises")
                ],
            )?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    fn insert_event(
        tx: &rusqlite::Transaction<'_>,
        request_id: &str,
        event: &JobEvent,
    ) -> rusqlite::Result<()> {
        tx.prepare_cached("INSERT INTO job_events (request_id, at, step, outcome, message) VALUES (?1, ?2, ?3, ?4, ?5)")?
            .execute(params![request_id, event.at, event.step, event.outcome, event.message])
            .map(drop)
    }
}

#[async_trait]
impl QueueSender for SqliteStore {
    async fn send(&self, queue: QueueName, body: &str, delay: Duration) -> PortResult<()> {
        let now = now_ms();
        self.with_conn(|conn| {
            conn.prepare_cached("INSERT INTO queue_messages (queue, body, visible_at, sent_at) VALUES (?1, ?2, ?3, ?4)")?
                .execute(params![queue.as_str(), body, now + delay.as_millis() as i64, now])
                .map(drop)
        }).await?;
        self.wakers[queue.as_str()].notify_waiters();
        Ok(())
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
        let body = serde_json::to_string(job).expect("job serialises");
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let Some(key) = key {
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
            tx.prepare_cached("INSERT INTO jobs (request_id, owner, status, created_at, updated_at, job) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?
                .execute(params![job.request_id, job.owner.0, job.status.as_str(), job.created_at, job.updated_at, body])?;
            Self::insert_event(&tx, &job.request_id, event)?;
            tx.commit()?;
            Ok(CreateOutcome::Created)
        }).await
    }

    async fn delete_job(&self, request_id: &str, key: Option<&IdempotencyKey>) -> PortResult<()> {
        self.with_conn(|conn| {
            let tx = conn.transaction()?;
            tx.execute("DELETE FROM jobs WHERE request_id = ?1", params![request_id])?;
            tx.execute("DELETE FROM job_events WHERE request_id = ?1", params![request_id])?;
            if let Some(key) = key {
                tx.execute("DELETE FROM idempotency_keys WHERE owner = ?1 AND key = ?2 AND request_id = ?3", params![key.owner.0, key.key, request_id])?;
            }
            tx.commit()
        }).await
    }

    async fn get_job(&self, request_id: &str) -> PortResult<Option<Job>> {
        let text: Option<String> = self
            .with_conn(|conn| {
                conn.prepare_cached("SELECT job FROM jobs WHERE request_id = ?1")?
                    .query_row(params![request_id], |r| r.get(0))
                    .optional()
            })
            .await?;
        text.as_deref().map(decode_job).transpose()
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
        let mut failure = None;
        let moved = self
            .with_conn(|conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let current: Option<String> = tx
                    .prepare_cached("SELECT job FROM jobs WHERE request_id = ?1 AND status = ?2")?
                    .query_row(params![request_id, from.as_str()], |r| r.get(0))
                    .optional()?;
                let Some(text) = current else {
                    return Ok(false);
                };
                let mut job = match decode_job(&text) {
                    Ok(job) => job,
                    Err(e) => {
                        failure = Some(e);
                        return Ok(false);
                    }
                };
                job.apply(to, update, event.at);
                tx.prepare_cached(
                    "UPDATE jobs SET status = ?2, updated_at = ?3, job = ?4 WHERE request_id = ?1",
                )?
                .execute(params![
                    request_id,
                    to.as_str(),
                    event.at,
                    serde_json::to_string(&job).expect("job serialises")
                ])?;
                Self::insert_event(&tx, request_id, event)?;
                tx.commit()?;
                Ok(true)
            })
            .await?;
        match failure {
            Some(e) => Err(e),
            None => Ok(moved),
        }
    }

    async fn append_event(&self, request_id: &str, event: &JobEvent) -> PortResult<()> {
        self.with_conn(|conn| {
            let tx = conn.transaction()?;
            Self::insert_event(&tx, request_id, event)?;
            tx.commit()
        })
        .await
    }

    async fn events(&self, request_id: &str) -> PortResult<Vec<JobEvent>> {
        self.with_conn(|conn| {
            conn.prepare_cached("SELECT at, step, outcome, message FROM job_events WHERE request_id = ?1 ORDER BY seq")?
                .query_map(params![request_id], |r| {
                    Ok(JobEvent { at: r.get(0)?, step: r.get(1)?, outcome: r.get(2)?, message: r.get(3)? })
                })?
                .collect()
        }).await
    }

    async fn claim_notification(&self, request_id: &str, at: Millis) -> PortResult<bool> {
        self.set_notified(request_id, Some(at)).await
    }

    async fn release_notification(&self, request_id: &str) -> PortResult<()> {
        self.set_notified(request_id, None).await.map(drop)
    }

    async fn unsettled_jobs(&self, updated_before: Millis, limit: usize) -> PortResult<Vec<Job>> {
        let rows: Vec<String> = self
            .with_conn(|conn| {
                conn.prepare_cached(
                    "SELECT job FROM jobs WHERE updated_at < ?1
                       AND (status IN ('QUEUED', 'RUNNING', 'PACKAGING')
                            OR (status IN ('SUCCEEDED', 'FAILED') AND notified_at IS NULL))
                     ORDER BY updated_at LIMIT ?2",
                )?
                .query_map(params![updated_before, limit as i64], |r| r.get(0))?
                .collect()
            })
            .await?;
        rows.iter().map(|t| decode_job(t)).collect()
    }

    async fn list_jobs(
        &self,
        owner: &Owner,
        limit: usize,
        after: Option<&str>,
    ) -> PortResult<JobPage> {
        // The page token is the last row's (created_at, request_id), the index's order.
        let cursor = match after {
            None => None,
            Some(token) => Some(
                token
                    .split_once('.')
                    .and_then(|(at, id)| Some((at.parse::<i64>().ok()?, id.to_owned())))
                    .ok_or_else(|| PortError::Invalid {
                        field: "cursor".into(),
                        message: "'cursor' is not a page token this API issued".into(),
                    })?,
            ),
        };
        let (at, id) = cursor.unwrap_or((i64::MAX, String::new()));
        let rows: Vec<String> = self.with_conn(|conn| {
            conn.prepare_cached(
                "SELECT job FROM jobs WHERE owner = ?1 AND (created_at < ?2 OR (created_at = ?2 AND request_id < ?3))
                 ORDER BY created_at DESC, request_id DESC LIMIT ?4",
            )?
            .query_map(params![owner.0, at, if id.is_empty() { "\u{10FFFF}".to_owned() } else { id }, limit as i64 + 1], |r| r.get(0))?
            .collect()
        }).await?;
        let mut jobs = rows
            .iter()
            .map(|t| decode_job(t))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn messages_hide_reappear_and_go_to_dead_letters() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("q.sqlite"), 2).unwrap();
        let q = QueueName::Requests;
        store.send(q, "a", Duration::ZERO).await.unwrap();
        store
            .send(q, "later", Duration::from_secs(60))
            .await
            .unwrap();

        // Received: hidden for the visibility timeout; the delayed one is not yet visible.
        let first = store
            .receive_now(q, 10, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(
            first.iter().map(|d| d.body.as_str()).collect::<Vec<_>>(),
            ["a"]
        );
        assert!(store
            .receive_now(q, 10, Duration::from_secs(60))
            .await
            .unwrap()
            .is_empty());

        // Not acknowledged: released, it is delivered again, counting receives.
        store
            .release(&first[0].receipt, Duration::ZERO)
            .await
            .unwrap();
        let second = store.receive_now(q, 10, Duration::ZERO).await.unwrap();
        assert_eq!((second[0].body.as_str(), second[0].receive_count), ("a", 2));
        // A stale receipt acknowledges nothing.
        store.ack(&first[0].receipt).await.unwrap();
        assert_eq!(store.depth(q).await.unwrap(), (2, 0));

        // Past max_receives, the next receive moves it to the dead-letter table instead.
        assert!(store
            .receive_now(q, 10, Duration::ZERO)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(store.depth(q).await.unwrap(), (1, 1));

        // Acknowledged messages are gone.
        store.send(q, "b", Duration::ZERO).await.unwrap();
        let b = store.receive_now(q, 10, Duration::ZERO).await.unwrap();
        store.ack(&b[0].receipt).await.unwrap();
        assert_eq!(store.depth(q).await.unwrap(), (1, 1));
    }

    #[tokio::test]
    async fn receive_waits_for_a_message_sent_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("q.sqlite"), 5).unwrap();
        let sender = store.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            sender
                .send(QueueName::Polls, "p", Duration::ZERO)
                .await
                .unwrap();
        });
        let got = store
            .receive(
                QueueName::Polls,
                1,
                Duration::from_secs(30),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        assert_eq!(got[0].body, "p");
    }
}
