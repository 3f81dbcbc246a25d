//! Quotas: what each caller may use, from the access policy ([`crate::access::Quotas`]):
//! exports not yet ended, exports and bytes per day (UTC), lookups per second. Over one, the
//! request is refused with 429, `Retry-After` and a code naming the quota, before anything is
//! stored or queued. The usage ledger (a port) counts; the rules are here.
//!
//! Lookups per second are a token bucket, kept as the generic cell rate algorithm keeps one
//! (one stored time per caller, the "theoretical arrival time"): a lookup is allowed while
//! that time is less than a bucket's worth of intervals ahead of now, and moves it one
//! interval on. The time is replaced on the condition that it is unchanged, so the bucket
//! holds across every instance of the read path.

use crate::access::Principal;
use crate::clock::Clock;
use crate::domain::{Job, Millis, Owner};
use crate::error::ApiError;
use crate::ports::{ControlTable, ExportCharge, ExportLimits, OverLimit, PortResult, UsageLedger};
use export_api::{QuotaUse, QuotaView};
use http::StatusCode;
use std::sync::Arc;

const DAY_MS: Millis = 86_400_000;

/// The UTC day `at` falls on, as days since the epoch.
pub fn day_of(at: Millis) -> i64 {
    at.div_euclid(DAY_MS)
}

/// When a caller over its unfinished exports is told to try again: an export takes a while.
const UNFINISHED_RETRY_SECONDS: u64 = 30;

/// How old a charge must be before the sweep may end it for want of a job.
const RECONCILE_AFTER_MS: Millis = 60_000;

/// Tries at ending an export's count before the sweep is left to.
const END_TRIES: usize = 3;

/// Pages of charges the sweep looks at per tick, at most.
const RECONCILE_PAGES: usize = 10;

/// Tries at moving a caller's lookup rate on, against other instances moving it at once.
const RATE_TRIES: usize = 3;

#[derive(Clone)]
pub struct Quotas {
    pub ledger: Arc<dyn UsageLedger>,
    pub clock: Arc<dyn Clock>,
}

fn over(code: &'static str, message: String, retry_after: u64) -> ApiError {
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message).with_retry_after(retry_after)
}

/// Whole seconds from `now` until `at`, at least one.
fn seconds_until(now: Millis, at: Millis) -> u64 {
    u64::try_from((at - now + 999) / 1000).unwrap_or(0).max(1)
}

impl Quotas {
    /// Counts a new export against its caller's quotas, or refuses it: 429 naming the quota
    /// it would pass. Nothing is counted on a refusal.
    pub async fn charge(
        &self,
        principal: &Principal,
        request_id: &str,
        now: Millis,
    ) -> Result<ExportCharge, ApiError> {
        let quotas = principal.standing.quotas;
        let day = day_of(now);
        let tomorrow = (day + 1) * DAY_MS;
        if let Some(limit) = quotas.bytes_per_day {
            let used = self.ledger.usage(&principal.owner, day).await?.bytes;
            if used >= limit {
                return Err(over(
                    "quota_bytes_per_day",
                    format!("today's exports have reached {used} bytes of the {limit} a day this caller may export; the quota renews at midnight UTC"),
                    seconds_until(now, tomorrow),
                ));
            }
        }
        let charge = ExportCharge {
            owner: principal.owner.clone(),
            request_id: request_id.to_owned(),
            day,
            at: now,
        };
        let limits = ExportLimits {
            unfinished: quotas.unfinished_exports,
            per_day: quotas.exports_per_day,
        };
        match self.ledger.charge_export(&charge, &limits).await? {
            None => Ok(charge),
            Some(OverLimit::Unfinished) => Err(over(
                "quota_unfinished_exports",
                format!(
                    "this caller has {} exports not yet ended, as many as it may have at once; submit again when one ends",
                    limits.unfinished.unwrap_or(0)
                ),
                UNFINISHED_RETRY_SECONDS,
            )),
            Some(OverLimit::PerDay) => Err(over(
                "quota_exports_per_day",
                format!(
                    "this caller has submitted the {} exports a day it may; the quota renews at midnight UTC",
                    limits.per_day.unwrap_or(0)
                ),
                seconds_until(now, tomorrow),
            )),
        }
    }

    /// Undoes the charge of an export that was not stored after all. Logged, not returned:
    /// the request has failed already, for its own reason.
    pub async fn refund(&self, charge: &ExportCharge) {
        if let Err(e) = self.ledger.refund_export(charge).await {
            tracing::error!(request_id = %charge.request_id, error = %e, "could not undo an export's charge against its quotas");
        }
    }

    /// The job has ended: it is no longer one of its owner's unfinished exports. Tried a few
    /// times (another charge of the same owner's at the same moment can make the store say
    /// "try again"), then logged: the sweep ends what is left unfinished by a job that ended.
    pub async fn end(&self, job: &Job) {
        // The job was charged when it was created, at that time.
        let charge = ExportCharge {
            owner: job.owner.clone(),
            request_id: job.request_id.clone(),
            day: day_of(job.created_at),
            at: job.created_at,
        };
        let mut last = None;
        for _ in 0..END_TRIES {
            match self.ledger.end_export(&charge).await {
                Ok(()) => return,
                Err(e) => last = Some(e),
            }
        }
        if let Some(e) = last {
            tracing::warn!(request_id = %job.request_id, error = %e, "could not end the export's count; the sweep will");
        }
    }

    /// Adds a finished job's bytes to today's.
    pub async fn add_bytes(&self, owner: &Owner, request_id: &str, bytes: u64) -> PortResult<()> {
        let day = day_of(self.clock.now());
        self.ledger.add_bytes(owner, request_id, day, bytes).await
    }

    /// Takes one lookup from the caller's rate, or refuses it: 429 with how long until the
    /// next is allowed.
    pub async fn take_lookup(&self, principal: &Principal) -> Result<(), ApiError> {
        let quotas = principal.standing.quotas;
        let Some(rate) = quotas.lookups_per_second else {
            return Ok(());
        };
        if rate == 0 {
            return Err(over(
                "quota_lookups_per_second",
                "this caller may not look anything up".into(),
                3_600,
            ));
        }
        let burst = i64::from(quotas.lookup_burst.unwrap_or(rate).max(1));
        // The interval between lookups at the rate, and how far ahead of now the schedule
        // may run: a full bucket's worth.
        let interval = (1_000 / i64::from(rate)).max(1);
        let tolerance = interval * (burst - 1);
        let key = format!("lookups#{}", principal.owner.0);
        for _ in 0..RATE_TRIES {
            let now = self.clock.now();
            let stored = self.ledger.rate_state(&key).await?;
            let scheduled = stored.unwrap_or(now).max(now);
            if scheduled - tolerance > now {
                return Err(over(
                    "quota_lookups_per_second",
                    format!("this caller may look up {rate} times a second, {burst} at once"),
                    seconds_until(now, scheduled - tolerance),
                ));
            }
            let next = scheduled + interval;
            if self
                .ledger
                .set_rate_state(&key, stored, next, next + tolerance + 1_000)
                .await?
            {
                return Ok(());
            }
        }
        // Every try lost to another lookup of the same caller's at the same moment.
        Err(over(
            "quota_lookups_per_second",
            format!("this caller may look up {rate} times a second, {burst} at once"),
            1,
        ))
    }

    /// The caller's quotas and its use of each, today (UTC).
    pub async fn view(&self, principal: &Principal) -> Result<QuotaView, ApiError> {
        let now = self.clock.now();
        let day = day_of(now);
        let usage = self.ledger.usage(&principal.owner, day).await?;
        let quotas = principal.standing.quotas;
        let date = chrono::DateTime::from_timestamp_millis(day * DAY_MS)
            .map(|d| d.format("%Y-%m-%d").to_string())
            .unwrap_or_default();
        Ok(QuotaView {
            owner: principal.owner.0.clone(),
            day: date,
            renews_at: (day + 1) * DAY_MS,
            priority: principal.standing.priority,
            unfinished_exports: QuotaUse {
                limit: quotas.unfinished_exports,
                used: usage.unfinished,
            },
            exports_per_day: QuotaUse {
                limit: quotas.exports_per_day,
                used: usage.exports,
            },
            bytes_per_day: QuotaUse {
                limit: quotas.bytes_per_day,
                used: usage.bytes,
            },
            lookups_per_second: quotas.lookups_per_second,
            lookup_burst: quotas
                .lookups_per_second
                .map(|rate| quotas.lookup_burst.unwrap_or(rate).max(1)),
        })
    }

    /// The sweep's part: exports still counted unfinished whose jobs have ended (or are gone)
    /// are ended, at most `limit` looked at. A charge younger than a minute is left alone:
    /// its job may not be stored yet. Answers how many it ended.
    pub async fn reconcile(&self, control: &dyn ControlTable, limit: usize) -> PortResult<usize> {
        let settled_before = self.clock.now() - RECONCILE_AFTER_MS;
        let mut ended = 0;
        let mut after: Option<ExportCharge> = None;
        // Oldest first, page after page past the ones still running, up to a bound a tick.
        for _ in 0..RECONCILE_PAGES {
            let page = self
                .ledger
                .unfinished_exports(after.as_ref(), limit)
                .await?;
            for charge in &page {
                if charge.at > settled_before {
                    return Ok(ended);
                }
                let unfinished = control
                    .get_job(&charge.request_id)
                    .await?
                    .is_some_and(|job| !job.status.is_terminal());
                if !unfinished {
                    self.ledger.end_export(charge).await?;
                    ended += 1;
                }
            }
            if page.len() < limit {
                break;
            }
            after = page.last().cloned();
        }
        Ok(ended)
    }
}
