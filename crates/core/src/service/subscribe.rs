//! Subscriptions: an export that runs itself on a schedule. Each run is an ordinary job,
//! submitted through [`Submissions`] as its caller (so the access rules, quotas, admission
//! and audit of any export hold for every run, as they stand at the run), linked to its
//! subscription.
//!
//! A run is exactly once however often the tick that makes it is repeated or cut short: its
//! job is submitted under an idempotency key naming the subscription and the run's time, and
//! only then is the subscription moved on to its next time, by a write conditional on the
//! version it read. A tick that dies between the two submits again, is answered with the job
//! already accepted, and moves the subscription on; runs due while nothing ticked (a stopped
//! stack) are made one by one when it starts again.

use super::Submissions;
use crate::catalog::{ParamType, ScalarType};
use crate::clock::Clock;
use crate::domain::{Millis, Owner, Subscription};
use crate::error::ApiError;
use crate::ports::{ControlTable, PortError, SubscriptionStore};
use crate::schedule::{relative_date, Schedule};
use chrono::{DateTime, Utc};
use export_api::{
    ExportRequest, JobStatus, SubscriptionRequest, SubscriptionRun, SubscriptionView,
    MAX_SUBSCRIPTIONS,
};
use futures::{StreamExt, TryStreamExt};
use http::StatusCode;
use serde_json::Value;
use std::sync::Arc;

/// Subscriptions looked at per tick, earliest due first.
pub const DUE_PER_TICK: usize = 100;

/// Runs made per tick for one subscription that fell behind (a stack stopped for a while): the
/// rest follow on the next ticks, none skipped.
pub const CATCH_UP_PER_TICK: usize = 24;

/// The most runs `GET /subscriptions/{id}/runs` answers.
pub const RUNS_LISTED: usize = 100;

/// How many runs' jobs `runs` reads at once.
const RUN_READS_AT_ONCE: usize = 16;

pub struct Subscriptions {
    pub store: Arc<dyn SubscriptionStore>,
    /// Each run is submitted here, as its caller.
    pub submissions: Arc<Submissions>,
    /// The runs' jobs, for their status.
    pub control: Arc<dyn ControlTable>,
    pub clock: Arc<dyn Clock>,
}

fn at(millis: Millis) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(millis).unwrap_or_default()
}

impl Subscriptions {
    /// Checks the subscription as its first run would be checked (the caller's access, the
    /// parameters with relative dates read now, the deliveries) and records it.
    pub async fn create(
        &self,
        owner: &Owner,
        request: SubscriptionRequest,
    ) -> Result<SubscriptionView, ApiError> {
        request.check()?;
        let schedule = Schedule::parse(&request.schedule, &request.timezone).map_err(|reason| {
            let field = if reason.contains("time zone") {
                "timezone"
            } else {
                "schedule"
            };
            ApiError::invalid(field, reason)
        })?;
        let now = self.clock.now();
        let start = match request.start.as_deref().map(str::trim) {
            None => None,
            Some(text) if text.eq_ignore_ascii_case("now") => Some(now),
            Some(text) => Some(
                DateTime::parse_from_rfc3339(text)
                    .map_err(|_| {
                        ApiError::invalid(
                            "start",
                            format!("'start': '{text}' is not `now` or an RFC 3339 time (2027-01-31T06:00:00Z)"),
                        )
                    })?
                    .timestamp_millis()
                    .max(now),
            ),
        };
        let export = self.resolve(owner, &request, &schedule, now).await?;
        self.submissions.check(owner, export, None).await?;
        if self.store.subscriptions(owner).await?.len() >= MAX_SUBSCRIPTIONS {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "too_many_subscriptions",
                format!(
                    "a caller may hold at most {MAX_SUBSCRIPTIONS} subscriptions; delete one first"
                ),
            ));
        }
        // Given a start, its own time may be the first run; else the first after creation.
        let first = match start {
            Some(start) => schedule.next_after(at(start - 1), at(start)),
            None => schedule.next_after(at(now), at(now)),
        };
        let subscription = Subscription {
            id: uuid::Uuid::new_v4().to_string(),
            owner: owner.clone(),
            next_run_at: first.map(|t| t.timestamp_millis()),
            request,
            paused: false,
            created_at: now,
            start: start.unwrap_or(now),
            runs: 0,
            version: 1,
        };
        self.store.create_subscription(&subscription).await?;
        Ok(view(&subscription))
    }

    pub async fn list(&self, owner: &Owner) -> Result<Vec<SubscriptionView>, ApiError> {
        Ok(self
            .store
            .subscriptions(owner)
            .await?
            .iter()
            .map(view)
            .collect())
    }

    pub async fn get(&self, owner: &Owner, id: &str) -> Result<SubscriptionView, ApiError> {
        Ok(view(&self.owned(owner, id).await?))
    }

    async fn owned(&self, owner: &Owner, id: &str) -> Result<Subscription, ApiError> {
        self.store
            .subscription(owner, id)
            .await?
            .ok_or_else(|| ApiError::subscription_not_found(id))
    }

    /// Stops the runs until it is resumed; the runs due meanwhile are not made.
    pub async fn pause(&self, owner: &Owner, id: &str) -> Result<SubscriptionView, ApiError> {
        self.change(owner, id, |s, _| {
            s.paused = true;
            s.next_run_at = None;
            Ok(())
        })
        .await
    }

    /// Runs again from the first time after now.
    pub async fn resume(&self, owner: &Owner, id: &str) -> Result<SubscriptionView, ApiError> {
        self.change(owner, id, |s, now| {
            if !s.paused {
                return Ok(());
            }
            let schedule = Schedule::parse(&s.request.schedule, &s.request.timezone)
                .map_err(|reason| ApiError::invalid("schedule", reason))?;
            s.paused = false;
            s.next_run_at = schedule
                .next_after(at(now), at(s.start))
                .map(|t| t.timestamp_millis());
            Ok(())
        })
        .await
    }

    /// Applies `change` to the subscription as it stands, retried if a tick moved it meanwhile.
    async fn change(
        &self,
        owner: &Owner,
        id: &str,
        change: impl Fn(&mut Subscription, Millis) -> Result<(), ApiError>,
    ) -> Result<SubscriptionView, ApiError> {
        for _ in 0..5 {
            let mut subscription = self.owned(owner, id).await?;
            change(&mut subscription, self.clock.now())?;
            subscription.version += 1;
            if self.store.replace_subscription(&subscription).await? {
                return Ok(view(&subscription));
            }
        }
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("subscription {id} kept changing; try again"),
        ))
    }

    pub async fn delete(&self, owner: &Owner, id: &str) -> Result<(), ApiError> {
        if self.store.delete_subscription(owner, id).await? {
            Ok(())
        } else {
            Err(ApiError::subscription_not_found(id))
        }
    }

    /// Its runs, newest first, each with its job's status now.
    pub async fn runs(&self, owner: &Owner, id: &str) -> Result<Vec<SubscriptionRun>, ApiError> {
        self.owned(owner, id).await?;
        let mut runs = self.store.runs(id, RUNS_LISTED).await?;
        // Each run's status is its job's: read a few at a time rather than one after another,
        // since a full page is a hundred reads of the control table.
        let request_ids: Vec<Option<String>> = runs.iter().map(|r| r.request_id.clone()).collect();
        let control = &self.control;
        let statuses: Vec<Option<JobStatus>> = futures::stream::iter(request_ids)
            .map(|request_id| async move {
                let Some(request_id) = request_id else {
                    return Ok(None);
                };
                Ok::<_, ApiError>(
                    control
                        .get_job(&request_id)
                        .await?
                        .filter(|job| &job.owner == owner)
                        .map(|job| job.status),
                )
            })
            .buffered(RUN_READS_AT_ONCE)
            .try_collect()
            .await?;
        for (run, status) in runs.iter_mut().zip(statuses) {
            run.status = status;
        }
        Ok(runs)
    }

    /// The export a run at `run_at` submits: relative dates in date and timestamp
    /// parameters read in the schedule's time zone at that time.
    async fn resolve(
        &self,
        owner: &Owner,
        request: &SubscriptionRequest,
        schedule: &Schedule,
        run_at: Millis,
    ) -> Result<ExportRequest, ApiError> {
        let mut export = request.export();
        let principal = self.submissions.access.principal(owner).await?;
        // An unknown dataset is refused by the submission's own check, as any other export's.
        let Some(dataset) = self
            .submissions
            .access
            .dataset(&principal, &request.dataset)
        else {
            return Ok(export);
        };
        for param in &dataset.params {
            let is_date = matches!(
                param.ty,
                ParamType::Scalar(ScalarType::Date | ScalarType::Timestamp)
                    | ParamType::List {
                        item: ScalarType::Date | ScalarType::Timestamp,
                        ..
                    }
            );
            let Some(value) = export.params.get_mut(&param.name).filter(|_| is_date) else {
                continue;
            };
            let field = format!("params.{}", param.name);
            let mut read = |text: &mut Value| -> Result<(), ApiError> {
                if let Value::String(written) = text {
                    if let Some(day) = relative_date(written, schedule.timezone, at(run_at))
                        .map_err(|reason| ApiError::invalid(&field, reason))?
                    {
                        *written = day.to_string();
                    }
                }
                Ok(())
            };
            match value {
                Value::Array(items) => items.iter_mut().try_for_each(&mut read)?,
                one => read(one)?,
            }
        }
        Ok(export)
    }

    /// Makes every run that is due: the tick of the deployment's scheduler. Answers how many
    /// runs were made.
    pub async fn run_due(&self) -> Result<usize, PortError> {
        let now = self.clock.now();
        let mut made = 0;
        let mut failed = None;
        for mut subscription in self.store.due_subscriptions(now, DUE_PER_TICK).await? {
            for _ in 0..CATCH_UP_PER_TICK {
                match subscription.next_run_at {
                    Some(due) if due <= now && !subscription.paused => {}
                    _ => break,
                }
                match self.run_once(&subscription).await {
                    Ok(Some(next)) => {
                        made += 1;
                        subscription = next;
                    }
                    // Changed meanwhile (paused, deleted, run by another tick): as it is.
                    Ok(None) => break,
                    // The next tick tries this one again; the others go on now.
                    Err(e) => {
                        tracing::warn!(subscription = %subscription.id, error = %e, "a subscription's run could not be made; the next tick tries again");
                        failed = Some(e);
                        break;
                    }
                }
            }
        }
        match failed {
            Some(e) if made == 0 => Err(e),
            _ => Ok(made),
        }
    }

    /// The run due at `subscription.next_run_at`: submitted (or refused, and recorded so),
    /// then the subscription moved on. None if it had changed meanwhile.
    async fn run_once(
        &self,
        subscription: &Subscription,
    ) -> Result<Option<Subscription>, PortError> {
        let Some(due) = subscription.next_run_at else {
            return Ok(None);
        };
        // Read again, consistently: the due list may come from an index that lags, and a
        // pause or a delete already answered must stop the run.
        match self
            .store
            .subscription(&subscription.owner, &subscription.id)
            .await?
        {
            Some(now) if now.version == subscription.version && !now.paused => {}
            _ => return Ok(None),
        }
        let schedule = match Schedule::parse(
            &subscription.request.schedule,
            &subscription.request.timezone,
        ) {
            Ok(schedule) => schedule,
            Err(reason) => {
                tracing::error!(subscription = %subscription.id, reason, "a stored schedule no longer reads; paused");
                let mut paused = subscription.clone();
                paused.paused = true;
                paused.next_run_at = None;
                paused.version += 1;
                self.store.replace_subscription(&paused).await?;
                return Ok(None);
            }
        };
        let key = format!("subscription-{}-{due}", subscription.id);
        let submitted = match self
            .resolve(&subscription.owner, &subscription.request, &schedule, due)
            .await
        {
            Ok(export) => {
                self.submissions
                    .submit_run(&subscription.owner, export, &subscription.id, &key)
                    .await
            }
            Err(refused) => Err(refused),
        };
        let run = match submitted {
            Ok(submitted) => SubscriptionRun {
                scheduled_at: due,
                request_id: Some(submitted.request_id),
                status: Some(submitted.status),
                error: None,
            },
            // A store that cannot answer now: the run is tried again on the next tick.
            Err(e) if e.status.is_server_error() => {
                return Err(PortError::Unavailable(format!(
                    "subscription {} run at {due}: {}",
                    subscription.id, e.message
                )));
            }
            // Refused as its caller stands now (a quota, access withdrawn): recorded, not
            // retried; the next run is asked again.
            Err(e) => SubscriptionRun {
                scheduled_at: due,
                request_id: None,
                status: None,
                error: Some(format!("{} ({})", e.message, e.code)),
            },
        };
        self.store.record_run(&subscription.id, &run).await?;
        let mut next = subscription.clone();
        next.next_run_at = schedule
            .next_after(at(due), at(subscription.start))
            .map(|t| t.timestamp_millis());
        next.runs += 1;
        next.version += 1;
        Ok(self
            .store
            .replace_subscription(&next)
            .await?
            .then_some(next))
    }
}

/// The subscription as its caller sees it.
pub fn view(subscription: &Subscription) -> SubscriptionView {
    let request = &subscription.request;
    SubscriptionView {
        subscription_id: subscription.id.clone(),
        dataset: request.dataset.clone(),
        params: request.params.clone(),
        format: request.format,
        compression: request.compression,
        archive: request.archive,
        schedule: request.schedule.clone(),
        timezone: if request.timezone.is_empty() {
            "UTC".into()
        } else {
            request.timezone.clone()
        },
        notify: request.notify.clone(),
        deliver: request.deliver.clone(),
        paused: subscription.paused,
        start: subscription.start,
        created_at: subscription.created_at,
        next_run_at: subscription.next_run_at,
        runs: subscription.runs,
    }
}
