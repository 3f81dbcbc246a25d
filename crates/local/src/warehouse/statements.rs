//! The statement log: every statement the warehouse was given, with its state, in a SQLite
//! file of its own, so statements outlive the process that started them as Redshift's outlive
//! the Lambda that sent them.

use export_core::clock::Clock;
use export_core::ports::{
    PortError, PortResult, StatementRequest, StatementState, StatementStatus,
};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS statements (
    id           TEXT PRIMARY KEY,
    client_token TEXT UNIQUE,
    name         TEXT,
    sql          TEXT NOT NULL,
    state        TEXT NOT NULL,
    rows         INTEGER,
    error        TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    with_event   INTEGER NOT NULL DEFAULT 1
);";

const UNFINISHED: &str = "('SUBMITTED', 'PICKED', 'STARTED')";

/// A statement as the log records it, for a Data API `DescribeStatement`.
#[derive(Clone, Debug)]
pub struct StatementDetails {
    pub sql: String,
    pub name: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What a statement's runner needs: its text, its name (the request id), and whether its end
/// is announced.
pub struct StatementWork {
    pub sql: String,
    pub name: Option<String>,
    pub with_event: bool,
    /// It had started before: this run carries on one a stopped process left unfinished.
    pub resumed: bool,
}

#[derive(Clone)]
pub struct StatementLog {
    db: tokio_rusqlite::Connection,
    tokens: ClientTokens,
}

/// The statement log's clock, and how long a client token names its statement on it. The
/// Data API's reference says a token
/// ensures "the idempotency of the request" and not for how long, so the emulated warehouse
/// forgets one after `lifetime`, on `clock`: a retry later than that starts a new statement,
/// which is what a caller must be ready for.
#[derive(Clone, Debug)]
pub struct ClientTokens {
    pub clock: std::sync::Arc<dyn Clock>,
    pub lifetime: std::time::Duration,
}

fn port_error(e: tokio_rusqlite::Error) -> PortError {
    PortError::Unavailable(format!("statement log: {e}"))
}

impl StatementLog {
    pub fn open(path: &Path, tokens: ClientTokens) -> anyhow::Result<StatementLog> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        // Statement logs written before `with_event` existed: every statement emitted events.
        let has_with_event = conn
            .prepare("SELECT 1 FROM pragma_table_info('statements') WHERE name = 'with_event'")?
            .exists([])?;
        if !has_with_event {
            conn.execute_batch(
                "ALTER TABLE statements ADD COLUMN with_event INTEGER NOT NULL DEFAULT 1",
            )?;
        }
        Ok(StatementLog {
            db: tokio_rusqlite::Connection::from(conn),
            tokens,
        })
    }

    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> PortResult<T> {
        self.db.call(f).await.map_err(port_error)
    }

    /// Records a new statement, or finds the one its client token already named: `Ok(id,
    /// true)` when new. A token used with other text is refused, as the Data API refuses it.
    pub async fn insert(
        &self,
        request: &StatementRequest,
        with_event: bool,
    ) -> PortResult<(String, bool)> {
        let token = request.client_token.clone();
        let request = request.clone();
        let now = self.tokens.clock.now();
        let forgotten_before = now - self.tokens.lifetime.as_millis() as i64;
        let outcome = self
            .call(move |db| {
                // A token past its lifetime names nothing any more.
                db.execute(
                    "UPDATE statements SET client_token = NULL WHERE client_token = ?1 AND created_at <= ?2",
                    params![request.client_token, forgotten_before],
                )?;
                let existing: Option<(String, String)> = db
                    .query_row(
                        "SELECT id, sql FROM statements WHERE client_token = ?1",
                        params![request.client_token],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?;
                if let Some((id, sql)) = existing {
                    return Ok(Err((id, sql == request.sql)));
                }
                let id = uuid::Uuid::new_v4().to_string();
                db.execute(
                    "INSERT INTO statements (id, client_token, name, sql, state, created_at, updated_at, with_event) VALUES (?1, ?2, ?3, ?4, 'SUBMITTED', ?5, ?5, ?6)",
                    params![id, request.client_token, request.name, request.sql, now, with_event],
                )?;
                Ok(Ok(id))
            })
            .await?;
        match outcome {
            Ok(id) => Ok((id, true)),
            Err((id, true)) => Ok((id, false)),
            Err((_, false)) => Err(PortError::Rejected(format!(
                "IdempotentParameterMismatch: client token {token} was used with a different statement"
            ))),
        }
    }

    /// Moves an unfinished statement to `state`; false if it had already ended.
    pub async fn set_state(
        &self,
        id: &str,
        state: StatementState,
        rows: Option<u64>,
        error: Option<String>,
    ) -> PortResult<bool> {
        let id = id.to_owned();
        let now = self.tokens.clock.now();
        self.call(move |db| {
            db.execute(
                &format!("UPDATE statements SET state = ?2, rows = COALESCE(?3, rows), error = ?4, updated_at = ?5 WHERE id = ?1 AND state IN {UNFINISHED}"),
                params![id, state.as_str(), rows.map(|r| r as i64), error, now],
            )
            .map(|n| n == 1)
        })
        .await
    }

    pub async fn work(&self, id: &str) -> PortResult<StatementWork> {
        let id = id.to_owned();
        self.call(move |db| {
            db.query_row(
                "SELECT sql, name, with_event, state = 'STARTED' FROM statements WHERE id = ?1",
                params![id],
                |r| {
                    Ok(StatementWork {
                        sql: r.get(0)?,
                        name: r.get(1)?,
                        with_event: r.get(2)?,
                        resumed: r.get(3)?,
                    })
                },
            )
        })
        .await
    }

    pub async fn status(&self, id: &str) -> PortResult<StatementStatus> {
        let key = id.to_owned();
        let row: Option<(String, Option<i64>, Option<String>)> = self
            .call(move |db| {
                db.query_row(
                    "SELECT state, rows, error FROM statements WHERE id = ?1",
                    params![key],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
            })
            .await?;
        let (state, rows, error) =
            row.ok_or_else(|| PortError::NotFound(format!("statement {id}")))?;
        Ok(StatementStatus {
            id: id.to_owned(),
            state: StatementState::parse(&state)
                .ok_or_else(|| PortError::Rejected(format!("unknown state {state}")))?,
            rows: rows.map(|r| r as u64),
            error,
        })
    }

    pub async fn details(&self, id: &str) -> PortResult<Option<StatementDetails>> {
        let id = id.to_owned();
        self.call(move |db| {
            db.query_row(
                "SELECT sql, name, created_at, updated_at FROM statements WHERE id = ?1",
                params![id],
                |r| {
                    Ok(StatementDetails {
                        sql: r.get(0)?,
                        name: r.get(1)?,
                        created_at: r.get(2)?,
                        updated_at: r.get(3)?,
                    })
                },
            )
            .optional()
        })
        .await
    }

    /// How many UNLOAD statements each name was given: a name is its job's, so more than one
    /// means a job's export was run twice.
    pub async fn unloads_by_name(&self) -> PortResult<std::collections::BTreeMap<String, u64>> {
        self.call(|db| {
            db.prepare(
                "SELECT name, COUNT(*) FROM statements
                 WHERE name IS NOT NULL AND upper(ltrim(sql)) LIKE 'UNLOAD%' GROUP BY name",
            )?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect()
        })
        .await
    }

    /// The most UNLOAD statements that were running at one moment, by the log's times:
    /// each from its creation to its end (its last change, once ended; now, if it has not).
    /// An end and a start at the same millisecond do not overlap.
    pub async fn peak_unloads(&self) -> PortResult<usize> {
        let now = self.tokens.clock.now();
        let spans: Vec<(i64, i64)> = self
            .call(move |db| {
                db.prepare(&format!(
                    "SELECT created_at, CASE WHEN state IN {UNFINISHED} THEN ?1 ELSE updated_at END
                     FROM statements WHERE upper(ltrim(sql)) LIKE 'UNLOAD%'"
                ))?
                .query_map(params![now], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
            })
            .await?;
        // Ends sort before starts at the same time: -1 before +1.
        let mut changes: Vec<(i64, i32)> = spans
            .into_iter()
            .flat_map(|(from, to)| [(from, 1), (to, -1)])
            .collect();
        changes.sort();
        let (mut running, mut peak) = (0i64, 0i64);
        for (_, change) in changes {
            running += i64::from(change);
            peak = peak.max(running);
        }
        Ok(peak as usize)
    }

    /// The statements not yet ended, oldest first.
    pub async fn unfinished(&self) -> PortResult<Vec<String>> {
        self.call(|db| {
            db.prepare(&format!(
                "SELECT id FROM statements WHERE state IN {UNFINISHED} ORDER BY created_at"
            ))?
            .query_map([], |r| r.get(0))?
            .collect()
        })
        .await
    }
}
