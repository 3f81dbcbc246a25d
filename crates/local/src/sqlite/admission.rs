//! The admission ledger's rows: `admission_slots` (one row per slot held), `admission_line`
//! (the jobs waiting, under an index in the line's order) and `admission_turns` (each owner's
//! last turn; the line's own turn under the empty owner, which no caller has). Every change
//! is one transaction on the store's one connection, so a slot row is written by one job only.

use super::SqliteStore;
use async_trait::async_trait;
use export_core::domain::Millis;
use export_core::ports::{AdmissionLedger, PortResult, SlotHolder, WaitingJob};
use rusqlite::{params, Connection, OptionalExtension, Row};

/// The owner under which `admission_turns` keeps the line's turn.
const LINE: &str = "";

fn waiting(row: &Row<'_>) -> rusqlite::Result<WaitingJob> {
    Ok(WaitingJob {
        request_id: row.get(0)?,
        turns_of: row.get(1)?,
        turn: row.get::<_, i64>(2)? as u64,
        queued_at: row.get(3)?,
    })
}

fn entry_of(conn: &Connection, request_id: &str) -> rusqlite::Result<Option<WaitingJob>> {
    conn.prepare_cached(
        "SELECT request_id, owner, turn, queued_at FROM admission_line WHERE request_id = ?1",
    )?
    .query_row(params![request_id], waiting)
    .optional()
}

/// Raises `owner`'s turn to `turn` (never lowers it).
fn raise_turn(conn: &Connection, owner: &str, turn: u64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO admission_turns (owner, turn) VALUES (?1, ?2)
         ON CONFLICT (owner) DO UPDATE SET turn = max(turn, excluded.turn)",
    )?
    .execute(params![owner, turn as i64])
    .map(drop)
}

fn turn_of(conn: &Connection, owner: &str) -> rusqlite::Result<u64> {
    Ok(conn
        .prepare_cached("SELECT turn FROM admission_turns WHERE owner = ?1")?
        .query_row(params![owner], |r| r.get::<_, i64>(0))
        .optional()?
        .unwrap_or(0) as u64)
}

#[async_trait]
impl AdmissionLedger for SqliteStore {
    async fn holders(&self) -> PortResult<Vec<SlotHolder>> {
        self.call(|conn| {
            let holders = conn
                .prepare_cached(
                    "SELECT slot, request_id, since FROM admission_slots ORDER BY slot",
                )?
                .query_map([], |r| {
                    Ok(SlotHolder {
                        slot: r.get(0)?,
                        request_id: r.get(1)?,
                        since: r.get(2)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(holders)
        })
        .await
    }

    async fn turns(&self, turns_of: &str) -> PortResult<(u64, u64)> {
        let turns_of = turns_of.to_owned();
        self.call(move |conn| Ok((turn_of(conn, LINE)?, turn_of(conn, &turns_of)?)))
            .await
    }

    async fn join(&self, entry: &WaitingJob) -> PortResult<(WaitingJob, bool)> {
        let entry = entry.clone();
        self.call(move |conn| {
            let tx = conn.savepoint()?;
            if let Some(existing) = entry_of(&tx, &entry.request_id)? {
                return Ok((existing, false));
            }
            let holds = tx
                .prepare_cached("SELECT 1 FROM admission_slots WHERE request_id = ?1")?
                .exists(params![entry.request_id])?;
            if holds {
                return Ok((entry, false));
            }
            tx.prepare_cached(
                "INSERT INTO admission_line (request_id, owner, turn, queued_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                entry.request_id,
                entry.turns_of,
                entry.turn as i64,
                entry.queued_at
            ])?;
            raise_turn(&tx, &entry.turns_of, entry.turn)?;
            tx.commit()?;
            Ok((entry, true))
        })
        .await
    }

    async fn first_waiting(&self, limit: usize) -> PortResult<Vec<WaitingJob>> {
        self.call(move |conn| {
            let line = conn
                .prepare_cached(
                    "SELECT request_id, owner, turn, queued_at FROM admission_line
                     ORDER BY turn, queued_at, request_id LIMIT ?1",
                )?
                .query_map(params![limit as i64], waiting)?
                .collect::<rusqlite::Result<_>>()?;
            Ok(line)
        })
        .await
    }

    async fn admit(&self, slot: u32, entry: &WaitingJob, at: Millis) -> PortResult<bool> {
        let entry = entry.clone();
        self.call(move |conn| {
            let tx = conn.savepoint()?;
            let taken = tx
                .prepare_cached("SELECT 1 FROM admission_slots WHERE slot = ?1")?
                .exists(params![slot])?;
            if taken || entry_of(&tx, &entry.request_id)?.as_ref() != Some(&entry) {
                return Ok(false);
            }
            tx.prepare_cached("DELETE FROM admission_line WHERE request_id = ?1")?
                .execute(params![entry.request_id])?;
            tx.prepare_cached(
                "INSERT INTO admission_slots (slot, request_id, since) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![slot, entry.request_id, at])?;
            raise_turn(&tx, LINE, entry.turn)?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn release(&self, slot: u32, request_id: &str) -> PortResult<bool> {
        let request_id = request_id.to_owned();
        self.call(move |conn| {
            let tx = conn.savepoint()?;
            let freed = tx
                .prepare_cached("DELETE FROM admission_slots WHERE slot = ?1 AND request_id = ?2")?
                .execute(params![slot, request_id])?;
            tx.commit()?;
            Ok(freed == 1)
        })
        .await
    }

    async fn leave(&self, request_id: &str) -> PortResult<()> {
        let request_id = request_id.to_owned();
        self.call(move |conn| {
            let tx = conn.savepoint()?;
            tx.prepare_cached("DELETE FROM admission_line WHERE request_id = ?1")?
                .execute(params![request_id])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn place(&self, request_id: &str) -> PortResult<Option<u64>> {
        let request_id = request_id.to_owned();
        self.call(move |conn| {
            let Some(entry) = entry_of(conn, &request_id)? else {
                return Ok(None);
            };
            let ahead: i64 = conn
                .prepare_cached(
                    "SELECT count(*) FROM admission_line WHERE (turn, queued_at, request_id) < (?1, ?2, ?3)",
                )?
                .query_row(
                    params![entry.turn as i64, entry.queued_at, entry.request_id],
                    |r| r.get(0),
                )?;
            Ok(Some(ahead as u64))
        })
        .await
    }

    async fn take_lookup_slot(
        &self,
        slots: u32,
        holder: &str,
        now: Millis,
        until: Millis,
    ) -> PortResult<Option<u32>> {
        let holder = holder.to_owned();
        self.call(move |conn| {
            let tx = conn.savepoint()?;
            let held: Vec<(u32, Millis)> = tx
                .prepare_cached("SELECT slot, until FROM lookup_slots")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            let free = (0..slots).find(|slot| {
                held.iter()
                    .find(|(s, _)| s == slot)
                    .is_none_or(|(_, end)| *end < now)
            });
            if let Some(slot) = free {
                tx.prepare_cached(
                    "INSERT INTO lookup_slots (slot, holder, until) VALUES (?1, ?2, ?3)
                     ON CONFLICT (slot) DO UPDATE SET holder = excluded.holder, until = excluded.until",
                )?
                .execute(params![slot, holder, until])?;
                tx.commit()?;
            }
            Ok(free)
        })
        .await
    }

    async fn free_lookup_slot(&self, slot: u32, holder: &str) -> PortResult<()> {
        let holder = holder.to_owned();
        self.call(move |conn| {
            let tx = conn.savepoint()?;
            tx.prepare_cached("DELETE FROM lookup_slots WHERE slot = ?1 AND holder = ?2")?
                .execute(params![slot, holder])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }
}
