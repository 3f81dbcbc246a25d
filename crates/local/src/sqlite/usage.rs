//! The usage ledger's rows: `usage_unfinished` (each export charged and not yet ended),
//! `usage_days` (each owner's exports and bytes per UTC day), `usage_bytes_counted` (the jobs
//! whose bytes are in), `usage_rates` (each caller's lookup schedule). Every change is one
//! transaction on the store's one connection, so a limit holds however many requests charge
//! at once.

use super::SqliteStore;
use async_trait::async_trait;
use export_core::domain::{Millis, Owner};
use export_core::ports::{ExportCharge, ExportLimits, OverLimit, PortResult, Usage, UsageLedger};
use rusqlite::{params, Connection, OptionalExtension};

/// Daily rows older than this many days are removed as new ones are written.
const KEEP_DAYS: i64 = 40;

fn day_row(conn: &Connection, owner: &str, day: i64) -> rusqlite::Result<(u64, u64)> {
    Ok(conn
        .prepare_cached("SELECT exports, bytes FROM usage_days WHERE owner = ?1 AND day = ?2")?
        .query_row(params![owner, day], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
        })
        .optional()?
        .unwrap_or((0, 0)))
}

fn unfinished_of(conn: &Connection, owner: &str) -> rusqlite::Result<u64> {
    conn.prepare_cached("SELECT count(*) FROM usage_unfinished WHERE owner = ?1")?
        .query_row(params![owner], |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
}

fn add_to_day(
    conn: &Connection,
    owner: &str,
    day: i64,
    exports: i64,
    bytes: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO usage_days (owner, day, exports, bytes) VALUES (?1, ?2, max(?3, 0), max(?4, 0))
         ON CONFLICT (owner, day) DO UPDATE SET exports = max(exports + ?3, 0), bytes = bytes + ?4",
    )?
    .execute(params![owner, day, exports, bytes])
    .map(drop)
}

#[async_trait]
impl UsageLedger for SqliteStore {
    async fn charge_export(
        &self,
        charge: &ExportCharge,
        limits: &ExportLimits,
    ) -> PortResult<Option<OverLimit>> {
        let charge = charge.clone();
        let limits = *limits;
        self.call(move |conn| {
            let tx = conn.savepoint()?;
            let charged = tx
                .prepare_cached("SELECT 1 FROM usage_unfinished WHERE request_id = ?1")?
                .exists(params![charge.request_id])?;
            if charged {
                return Ok(None);
            }
            let owner = &charge.owner.0;
            let unfinished = unfinished_of(&tx, owner)?;
            if limits.unfinished.is_some_and(|limit| unfinished >= limit) {
                return Ok(Some(OverLimit::Unfinished));
            }
            let (exports, _) = day_row(&tx, owner, charge.day)?;
            if limits.per_day.is_some_and(|limit| exports >= limit) {
                return Ok(Some(OverLimit::PerDay));
            }
            tx.prepare_cached(
                "INSERT INTO usage_unfinished (request_id, owner, day, at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![charge.request_id, owner, charge.day, charge.at])?;
            add_to_day(&tx, owner, charge.day, 1, 0)?;
            tx.prepare_cached("DELETE FROM usage_days WHERE owner = ?1 AND day < ?2")?
                .execute(params![owner, charge.day - KEEP_DAYS])?;
            tx.commit()?;
            Ok(None)
        })
        .await
    }

    async fn refund_export(&self, charge: &ExportCharge) -> PortResult<()> {
        let charge = charge.clone();
        self.call(move |conn| {
            let tx = conn.savepoint()?;
            let removed = tx
                .prepare_cached("DELETE FROM usage_unfinished WHERE request_id = ?1")?
                .execute(params![charge.request_id])?;
            if removed == 1 {
                add_to_day(&tx, &charge.owner.0, charge.day, -1, 0)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn end_export(&self, charge: &ExportCharge) -> PortResult<()> {
        let request_id = charge.request_id.clone();
        self.call(move |conn| {
            let tx = conn.savepoint()?;
            tx.prepare_cached("DELETE FROM usage_unfinished WHERE request_id = ?1")?
                .execute(params![request_id])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn add_bytes(
        &self,
        owner: &Owner,
        request_id: &str,
        day: i64,
        bytes: u64,
    ) -> PortResult<()> {
        let owner = owner.0.clone();
        let request_id = request_id.to_owned();
        self.call(move |conn| {
            let tx = conn.savepoint()?;
            let first = tx
                .prepare_cached(
                    "INSERT INTO usage_bytes_counted (request_id) VALUES (?1) ON CONFLICT DO NOTHING",
                )?
                .execute(params![request_id])?;
            if first == 1 {
                add_to_day(&tx, &owner, day, 0, i64::try_from(bytes).unwrap_or(i64::MAX))?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn usage(&self, owner: &Owner, day: i64) -> PortResult<Usage> {
        let owner = owner.0.clone();
        self.call(move |conn| {
            let (exports, bytes) = day_row(conn, &owner, day)?;
            Ok(Usage {
                unfinished: unfinished_of(conn, &owner)?,
                exports,
                bytes,
            })
        })
        .await
    }

    async fn unfinished_exports(
        &self,
        after: Option<&ExportCharge>,
        limit: usize,
    ) -> PortResult<Vec<ExportCharge>> {
        let (at, id) = after.map_or((i64::MIN, String::new()), |c| (c.at, c.request_id.clone()));
        self.call(move |conn| {
            let charges = conn
                .prepare_cached(
                    "SELECT request_id, owner, day, at FROM usage_unfinished
                     WHERE (at, request_id) > (?1, ?2) ORDER BY at, request_id LIMIT ?3",
                )?
                .query_map(params![at, id, limit as i64], |r| {
                    Ok(ExportCharge {
                        request_id: r.get(0)?,
                        owner: Owner(r.get(1)?),
                        day: r.get(2)?,
                        at: r.get(3)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(charges)
        })
        .await
    }

    async fn rate_state(&self, key: &str) -> PortResult<Option<Millis>> {
        let key = key.to_owned();
        self.call(move |conn| {
            Ok(conn
                .prepare_cached("SELECT next FROM usage_rates WHERE key = ?1")?
                .query_row(params![key], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    async fn set_rate_state(
        &self,
        key: &str,
        expected: Option<Millis>,
        next: Millis,
        expires_at: Millis,
    ) -> PortResult<bool> {
        let key = key.to_owned();
        self.call(move |conn| {
            let tx = conn.savepoint()?;
            let stored: Option<Millis> = tx
                .prepare_cached("SELECT next FROM usage_rates WHERE key = ?1")?
                .query_row(params![key], |r| r.get(0))
                .optional()?;
            if stored != expected {
                return Ok(false);
            }
            tx.prepare_cached(
                "INSERT INTO usage_rates (key, next, expires_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET next = excluded.next, expires_at = excluded.expires_at",
            )?
            .execute(params![key, next, expires_at])?;
            // Callers idle a day past their state's life need no row (`next` is never a day
            // ahead of now).
            tx.prepare_cached("DELETE FROM usage_rates WHERE expires_at < ?1")?
                .execute(params![next - 86_400_000])?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }
}
