//! The control table and the durable queues, in one SQLite file (WAL): the table in
//! [`control`], the admission ledger in [`admission`], the usage ledger in [`usage`],
//! subscriptions in [`subscriptions`], the queues in [`queue`], all over one connection.
//!
//! The connection lives on a thread of its own ([`db`]): every statement runs there, never on
//! the async runtime's threads, and operations are serialised as they arrive (committed in
//! groups), which also rules out `SQLITE_BUSY` between the API and the workers.

mod admission;
mod control;
mod db;
mod queue;
mod subscriptions;
mod usage;

pub use queue::Delivery;

use db::{Db, StoreError};
use export_core::ports::{PortError, PortResult, QueueName};
use rusqlite::Connection;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
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
CREATE TABLE IF NOT EXISTS packaging_checkpoints (
    request_id TEXT PRIMARY KEY,
    seq        INTEGER NOT NULL,
    body       TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS lookup_answers (
    key        TEXT PRIMARY KEY,
    body       TEXT NOT NULL,
    stored_at  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS lookup_answers_by_expiry ON lookup_answers (expires_at);
CREATE TABLE IF NOT EXISTS admission_slots (
    slot       INTEGER PRIMARY KEY,
    request_id TEXT NOT NULL,
    since      INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS admission_line (
    request_id TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    turn       INTEGER NOT NULL,
    queued_at  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS admission_line_order ON admission_line (turn, queued_at, request_id);
CREATE TABLE IF NOT EXISTS lookup_slots (
    slot   INTEGER PRIMARY KEY,
    holder TEXT NOT NULL,
    until  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS admission_turns (
    owner TEXT PRIMARY KEY,
    turn  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS usage_unfinished (
    request_id TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    day        INTEGER NOT NULL,
    at         INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_unfinished_by_owner ON usage_unfinished (owner);
CREATE INDEX IF NOT EXISTS usage_unfinished_by_age ON usage_unfinished (at, request_id);
CREATE TABLE IF NOT EXISTS usage_days (
    owner   TEXT NOT NULL,
    day     INTEGER NOT NULL,
    exports INTEGER NOT NULL DEFAULT 0,
    bytes   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (owner, day)
);
CREATE TABLE IF NOT EXISTS usage_bytes_counted (
    request_id TEXT PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS usage_rates (
    key        TEXT PRIMARY KEY,
    next       INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS subscriptions (
    id         TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    due_at     INTEGER,
    version    INTEGER NOT NULL,
    body       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS subscriptions_by_owner ON subscriptions (owner, created_at);
CREATE INDEX IF NOT EXISTS subscriptions_due ON subscriptions (due_at) WHERE due_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS subscription_runs (
    subscription_id TEXT NOT NULL,
    scheduled_at    INTEGER NOT NULL,
    body            TEXT NOT NULL,
    PRIMARY KEY (subscription_id, scheduled_at)
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

/// `jobs.settled` holds what the core's `Job::is_settled` says of the row, written with every
/// change; the sweep's partial index covers the rows where it is 0. Files from before the
/// column existed get it here, filled by the rule as it stood then.
const SETTLED_COLUMN: &str = "
ALTER TABLE jobs ADD COLUMN settled INTEGER NOT NULL DEFAULT 0;
UPDATE jobs SET settled = 1
    WHERE status = 'CANCELLED' OR (status IN ('SUCCEEDED', 'FAILED') AND notified_at IS NOT NULL);
DROP INDEX IF EXISTS jobs_unsettled;
";
const UNSETTLED_INDEX: &str =
    "CREATE INDEX IF NOT EXISTS jobs_unsettled_by_age ON jobs (updated_at) WHERE settled = 0;";

/// The SQLite file holding jobs, events, idempotency keys and queue messages.
#[derive(Clone)]
pub struct SqliteStore {
    db: Db,
    /// Wakes receivers waiting on a queue when a message is sent to it.
    wakers: Arc<HashMap<QueueName, Notify>>,
    /// After this many receives without an ack, a message goes to `dead_letters`.
    max_receives: u32,
}

fn port_error(e: StoreError) -> PortError {
    match e {
        StoreError::Corrupt(message) => PortError::Rejected(message),
        StoreError::Sqlite(e) => PortError::Unavailable(format!("sqlite: {e}")),
        StoreError::Commit(e) => PortError::Unavailable(format!("sqlite commit: {e}")),
        StoreError::Closed => PortError::Unavailable("sqlite connection closed".into()),
    }
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
        let has_settled = conn
            .prepare("SELECT 1 FROM pragma_table_info('jobs') WHERE name = 'settled'")?
            .exists([])?;
        if !has_settled {
            conn.execute_batch(SETTLED_COLUMN)?;
        }
        conn.execute_batch(UNSETTLED_INDEX)?;
        let wakers = [QueueName::Requests, QueueName::Polls]
            .into_iter()
            .map(|q| (q, Notify::new()))
            .collect();
        Ok(SqliteStore {
            db: Db::start(conn)?,
            wakers: Arc::new(wakers),
            max_receives: max_receives.max(1),
        })
    }

    /// SQLite's own check of the whole file: `ok`, or what is wrong.
    pub async fn integrity_check(&self) -> PortResult<String> {
        self.call(|conn| {
            let lines: Vec<String> = conn
                .prepare("PRAGMA integrity_check")?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(lines.join("\n"))
        })
        .await
    }

    /// Runs `f` on the connection's thread; its changes are made in `conn.savepoint()`.
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> PortResult<T> {
        self.db.call(f).await.map_err(port_error)
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
        let alive = Arc::downgrade(&self.wakers);
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
}
