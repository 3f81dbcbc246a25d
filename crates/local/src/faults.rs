//! Injected faults for the ports the services call, so that what the services promise under
//! failure can be tried on one machine. Each port and operation can be given:
//!
//! - `transient=P`: with probability P the call fails before it reaches the dependency, as a
//!   throttled or unreachable AWS service answers (`PortError::Unavailable`);
//! - `lost=P`: the call takes effect, but its caller hears that it failed, as when a
//!   response is lost or times out after the work was done (`Unavailable` after the call);
//! - `permanent=P`: the dependency refuses the call (`PortError::Rejected`), as a
//!   misconfiguration or a refused email would;
//! - `latency=D`: every call waits D first (`250ms`, `2s`).
//!
//! A plan is rules separated by `;`, each `port.operation:fault=value,…`; `*` stands for any
//! port or operation, and the most specific rule matching a call applies. The ports are
//! `control_table`, `answer_cache`, `admission`, `usage`, `audit`, `queue`, `warehouse`, `object_store` and `mailer`; the
//! operations are their methods' names (`warehouse.execute`, `mailer.send`, …). Example:
//! `*.*:transient=0.02;warehouse.execute:lost=0.1;mailer.send:permanent=0.05,latency=20ms`.
//!
//! Only the services' calls are wrapped: what the warehouse does on its own (writing its
//! files, announcing a statement's end) stands for AWS's side and is left alone.

use async_trait::async_trait;
use bytes::Bytes;
use export_core::catalog::BoundSelect;
use export_core::domain::{
    Job, JobEvent, JobStatus, JobUpdate, Millis, ObjectRef, Owner, Subscription, Transition,
};
use export_core::messages::Message;
use export_core::page::{JobPage, PageToken};
use export_core::ports::{
    AdmissionLedger, AnswerCache, AuditLog, ByteStream, CachedAnswer, ControlTable, CreateOutcome,
    Email, ExportCharge, ExportLimits, IdempotencyKey, Mailer, ObjectStore, OverLimit, PortError,
    PortResult, PresignedUrl, QueueSender, SavedCheckpoint, SelectOutcome, SlotHolder,
    StatementRequest, StatementStatus, SubscriptionStore, UploadedPart, Usage, UsageLedger,
    WaitingJob, Warehouse, WebhookPost, Webhooks,
};
use std::collections::BTreeMap;
use std::future::Future;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What may go wrong with the calls a rule matches.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Fault {
    pub transient: f64,
    pub lost: f64,
    pub permanent: f64,
    pub latency: Duration,
}

#[derive(Clone, Debug, PartialEq)]
struct Rule {
    port: String,
    operation: String,
    fault: Fault,
}

/// The faults to inject, parsed from the form the module describes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultPlan {
    rules: Vec<Rule>,
    /// As it was written.
    text: String,
}

impl FromStr for FaultPlan {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut rules = Vec::new();
        for rule in text.split(';').map(str::trim).filter(|r| !r.is_empty()) {
            let (target, faults) = rule
                .split_once(':')
                .ok_or_else(|| format!("'{rule}': expected port.operation:fault=value,…"))?;
            let (port, operation) = target
                .trim()
                .split_once('.')
                .ok_or_else(|| format!("'{target}': expected port.operation (or *.*)"))?;
            if port != "*" && !PORTS.contains(&port) {
                return Err(format!(
                    "unknown port '{port}' (ports: {})",
                    PORTS.join(", ")
                ));
            }
            let mut fault = Fault::default();
            for setting in faults.split(',').map(str::trim) {
                let (name, value) = setting
                    .split_once('=')
                    .ok_or_else(|| format!("'{setting}': expected fault=value"))?;
                let probability = || -> Result<f64, String> {
                    value
                        .parse::<f64>()
                        .ok()
                        .filter(|p| (0.0..=1.0).contains(p))
                        .ok_or_else(|| format!("'{setting}': a probability from 0 to 1"))
                };
                match name {
                    "transient" => fault.transient = probability()?,
                    "lost" => fault.lost = probability()?,
                    "permanent" => fault.permanent = probability()?,
                    "latency" => fault.latency = crate::parse_duration(value)?,
                    other => {
                        return Err(format!(
                            "unknown fault '{other}' (transient, lost, permanent, latency)"
                        ))
                    }
                }
            }
            if fault.transient + fault.lost + fault.permanent > 1.0 {
                return Err(format!("'{rule}': the probabilities add up to more than 1"));
            }
            rules.push(Rule {
                port: port.to_owned(),
                operation: operation.to_owned(),
                fault,
            });
        }
        Ok(FaultPlan {
            rules,
            text: text.trim().to_owned(),
        })
    }
}

const PORTS: [&str; 9] = [
    "control_table",
    "answer_cache",
    "admission",
    "usage",
    "audit",
    "queue",
    "warehouse",
    "object_store",
    "mailer",
];

impl FaultPlan {
    /// The most specific rule for the call: exact port and operation, then the port's `*`,
    /// then `*.operation`, then `*.*`.
    fn fault(&self, port: &str, operation: &str) -> Option<Fault> {
        let rank = |rule: &Rule| match (rule.port == port, rule.operation == operation) {
            (true, true) => Some(0),
            (true, false) if rule.operation == "*" => Some(1),
            (false, true) if rule.port == "*" => Some(2),
            (false, false) if rule.port == "*" && rule.operation == "*" => Some(3),
            _ => None,
        };
        self.rules
            .iter()
            .filter_map(|rule| rank(rule).map(|r| (r, rule.fault)))
            .min_by_key(|(r, _)| *r)
            .map(|(_, fault)| fault)
    }
}

/// How many calls of one operation went through the layer, and what was done to them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FaultCounts {
    pub calls: u64,
    pub transient: u64,
    pub lost: u64,
    pub permanent: u64,
}

/// The plan at work: a seeded random source (the same seed, the same faults for the same
/// sequence of calls) and the counts of what it injected.
pub struct Faults {
    plan: FaultPlan,
    state: Mutex<u64>,
    counts: Mutex<BTreeMap<String, FaultCounts>>,
    report: Mutex<Option<std::path::PathBuf>>,
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults").field("plan", &self.plan).finish()
    }
}

enum Roll {
    Pass,
    Lose,
}

impl Faults {
    pub fn new(plan: FaultPlan, seed: u64) -> Arc<Faults> {
        Arc::new(Faults {
            plan,
            state: Mutex::new(seed),
            counts: Mutex::new(BTreeMap::new()),
            report: Mutex::new(None),
        })
    }

    /// The plan as it was written.
    pub fn plan_text(&self) -> &str {
        &self.plan.text
    }

    /// What was injected so far, by `port.operation`.
    pub fn counts(&self) -> BTreeMap<String, FaultCounts> {
        self.counts.lock().expect("counts lock").clone()
    }

    /// Keeps the counts in `path` as JSON, written again before each injected fault takes
    /// effect, so the file holds every fault even when the process is killed the moment
    /// after.
    pub fn report_to(&self, path: std::path::PathBuf) {
        *self.report.lock().expect("report lock") = Some(path);
        self.write_report();
    }

    fn write_report(&self) {
        let report = self.report.lock().expect("report lock");
        let Some(path) = report.as_ref() else {
            return;
        };
        let counts = serde_json::to_vec_pretty(&self.counts()).unwrap_or_default();
        let partial = path.with_extension("json.partial");
        if std::fs::write(&partial, counts).is_ok() {
            let _ = std::fs::rename(&partial, path);
        }
    }

    /// A uniform number in [0, 1) (splitmix64).
    fn next(&self) -> f64 {
        let mut state = self.state.lock().expect("random state lock");
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn count(&self, key: &str, update: impl FnOnce(&mut FaultCounts)) {
        update(
            self.counts
                .lock()
                .expect("counts lock")
                .entry(key.to_owned())
                .or_default(),
        );
    }

    async fn roll(&self, port: &str, operation: &str) -> PortResult<Roll> {
        let key = format!("{port}.{operation}");
        self.count(&key, |c| c.calls += 1);
        let Some(fault) = self.plan.fault(port, operation) else {
            return Ok(Roll::Pass);
        };
        if !fault.latency.is_zero() {
            tokio::time::sleep(fault.latency).await;
        }
        let r = self.next();
        let roll = if r < fault.transient {
            self.count(&key, |c| c.transient += 1);
            Err(PortError::Unavailable(format!(
                "injected fault: {key} unavailable"
            )))
        } else if r < fault.transient + fault.permanent {
            self.count(&key, |c| c.permanent += 1);
            Err(PortError::Rejected(format!(
                "injected fault: {key} refused"
            )))
        } else if r < fault.transient + fault.permanent + fault.lost {
            // Counted now, before the call: a kill during it still finds the fault counted
            // (one whose call then fails anyway is counted all the same).
            self.count(&key, |c| c.lost += 1);
            Ok(Roll::Lose)
        } else {
            return Ok(Roll::Pass);
        };
        self.write_report();
        roll
    }

    /// Makes `call` through the plan.
    async fn call<T>(
        &self,
        port: &str,
        operation: &str,
        call: impl Future<Output = PortResult<T>>,
    ) -> PortResult<T> {
        let roll = self.roll(port, operation).await?;
        let result = call.await;
        match (roll, result) {
            (Roll::Lose, Ok(_)) => Err(PortError::Unavailable(format!(
                "injected fault: {port}.{operation}'s answer was lost"
            ))),
            (_, result) => result,
        }
    }
}

/// A port with the plan between it and its callers.
pub struct Faulty<P: ?Sized> {
    inner: Arc<P>,
    faults: Arc<Faults>,
}

impl<P: ?Sized> Faulty<P> {
    pub fn new(inner: Arc<P>, faults: Arc<Faults>) -> Arc<Faulty<P>> {
        Arc::new(Faulty { inner, faults })
    }
}

#[async_trait]
impl<P: ControlTable + ?Sized> ControlTable for Faulty<P> {
    async fn create_job(
        &self,
        job: &Job,
        event: &JobEvent,
        key: Option<&IdempotencyKey>,
    ) -> PortResult<CreateOutcome> {
        let call = self.inner.create_job(job, event, key);
        self.faults.call("control_table", "create_job", call).await
    }
    async fn key_used(&self, key: &IdempotencyKey) -> PortResult<Option<CreateOutcome>> {
        let call = self.inner.key_used(key);
        self.faults.call("control_table", "key_used", call).await
    }
    async fn delete_job(&self, request_id: &str, key: Option<&IdempotencyKey>) -> PortResult<()> {
        let call = self.inner.delete_job(request_id, key);
        self.faults.call("control_table", "delete_job", call).await
    }
    async fn get_job(&self, request_id: &str) -> PortResult<Option<Job>> {
        let call = self.inner.get_job(request_id);
        self.faults.call("control_table", "get_job", call).await
    }
    async fn transition(
        &self,
        request_id: &str,
        transition: Transition,
        update: &JobUpdate,
        event: &JobEvent,
    ) -> PortResult<bool> {
        let call = self.inner.transition(request_id, transition, update, event);
        self.faults.call("control_table", "transition", call).await
    }
    async fn append_event(&self, request_id: &str, event: &JobEvent) -> PortResult<()> {
        let call = self.inner.append_event(request_id, event);
        self.faults
            .call("control_table", "append_event", call)
            .await
    }
    async fn events(&self, request_id: &str) -> PortResult<Vec<JobEvent>> {
        let call = self.inner.events(request_id);
        self.faults.call("control_table", "events", call).await
    }
    async fn claim_notification(&self, request_id: &str, at: Millis) -> PortResult<bool> {
        let call = self.inner.claim_notification(request_id, at);
        self.faults
            .call("control_table", "claim_notification", call)
            .await
    }
    async fn release_notification(&self, request_id: &str, at: Millis) -> PortResult<()> {
        let call = self.inner.release_notification(request_id, at);
        self.faults
            .call("control_table", "release_notification", call)
            .await
    }
    async fn unsettled_jobs(&self, updated_before: Millis, limit: usize) -> PortResult<Vec<Job>> {
        let call = self.inner.unsettled_jobs(updated_before, limit);
        self.faults
            .call("control_table", "unsettled_jobs", call)
            .await
    }
    async fn touch(&self, request_id: &str, status: JobStatus, at: Millis) -> PortResult<bool> {
        let call = self.inner.touch(request_id, status, at);
        self.faults.call("control_table", "touch", call).await
    }
    async fn save_checkpoint(
        &self,
        request_id: &str,
        expected_seq: u64,
        checkpoint: &SavedCheckpoint,
        at: Millis,
    ) -> PortResult<bool> {
        let call = self
            .inner
            .save_checkpoint(request_id, expected_seq, checkpoint, at);
        self.faults
            .call("control_table", "save_checkpoint", call)
            .await
    }
    async fn checkpoint(&self, request_id: &str) -> PortResult<Option<SavedCheckpoint>> {
        let call = self.inner.checkpoint(request_id);
        self.faults.call("control_table", "checkpoint", call).await
    }
    async fn delete_checkpoint(&self, request_id: &str) -> PortResult<()> {
        let call = self.inner.delete_checkpoint(request_id);
        self.faults
            .call("control_table", "delete_checkpoint", call)
            .await
    }
    async fn list_jobs(
        &self,
        owner: &Owner,
        limit: usize,
        after: Option<&PageToken>,
    ) -> PortResult<JobPage> {
        let call = self.inner.list_jobs(owner, limit, after);
        self.faults.call("control_table", "list_jobs", call).await
    }
}

#[async_trait]
impl<P: AnswerCache + ?Sized> AnswerCache for Faulty<P> {
    async fn cached_answer(&self, key: &str, now: Millis) -> PortResult<Option<CachedAnswer>> {
        let call = self.inner.cached_answer(key, now);
        self.faults
            .call("answer_cache", "cached_answer", call)
            .await
    }
    async fn cache_answer(&self, key: &str, answer: &CachedAnswer) -> PortResult<()> {
        let call = self.inner.cache_answer(key, answer);
        self.faults.call("answer_cache", "cache_answer", call).await
    }
}

#[async_trait]
impl<P: AdmissionLedger + ?Sized> AdmissionLedger for Faulty<P> {
    async fn holders(&self) -> PortResult<Vec<SlotHolder>> {
        let call = self.inner.holders();
        self.faults.call("admission", "holders", call).await
    }
    async fn turns(&self, turns_of: &str) -> PortResult<(u64, u64)> {
        let call = self.inner.turns(turns_of);
        self.faults.call("admission", "turns", call).await
    }
    async fn join(&self, entry: &WaitingJob) -> PortResult<(WaitingJob, bool)> {
        let call = self.inner.join(entry);
        self.faults.call("admission", "join", call).await
    }
    async fn first_waiting(&self, limit: usize) -> PortResult<Vec<WaitingJob>> {
        let call = self.inner.first_waiting(limit);
        self.faults.call("admission", "first_waiting", call).await
    }
    async fn admit(&self, slot: u32, entry: &WaitingJob, at: Millis) -> PortResult<bool> {
        let call = self.inner.admit(slot, entry, at);
        self.faults.call("admission", "admit", call).await
    }
    async fn release(&self, slot: u32, request_id: &str) -> PortResult<bool> {
        let call = self.inner.release(slot, request_id);
        self.faults.call("admission", "release", call).await
    }
    async fn leave(&self, request_id: &str) -> PortResult<()> {
        let call = self.inner.leave(request_id);
        self.faults.call("admission", "leave", call).await
    }
    async fn place(&self, request_id: &str) -> PortResult<Option<u64>> {
        let call = self.inner.place(request_id);
        self.faults.call("admission", "place", call).await
    }
    async fn take_lookup_slot(
        &self,
        slots: u32,
        holder: &str,
        now: Millis,
        until: Millis,
    ) -> PortResult<Option<u32>> {
        let call = self.inner.take_lookup_slot(slots, holder, now, until);
        self.faults
            .call("admission", "take_lookup_slot", call)
            .await
    }
    async fn free_lookup_slot(&self, slot: u32, holder: &str) -> PortResult<()> {
        let call = self.inner.free_lookup_slot(slot, holder);
        self.faults
            .call("admission", "free_lookup_slot", call)
            .await
    }
}

#[async_trait]
impl<P: UsageLedger + ?Sized> UsageLedger for Faulty<P> {
    async fn charge_export(
        &self,
        charge: &ExportCharge,
        limits: &ExportLimits,
    ) -> PortResult<Option<OverLimit>> {
        let call = self.inner.charge_export(charge, limits);
        self.faults.call("usage", "charge_export", call).await
    }
    async fn refund_export(&self, charge: &ExportCharge) -> PortResult<()> {
        let call = self.inner.refund_export(charge);
        self.faults.call("usage", "refund_export", call).await
    }
    async fn end_export(&self, charge: &ExportCharge) -> PortResult<()> {
        let call = self.inner.end_export(charge);
        self.faults.call("usage", "end_export", call).await
    }
    async fn add_bytes(
        &self,
        owner: &Owner,
        request_id: &str,
        day: i64,
        bytes: u64,
    ) -> PortResult<()> {
        let call = self.inner.add_bytes(owner, request_id, day, bytes);
        self.faults.call("usage", "add_bytes", call).await
    }
    async fn usage(&self, owner: &Owner, day: i64) -> PortResult<Usage> {
        let call = self.inner.usage(owner, day);
        self.faults.call("usage", "usage", call).await
    }
    async fn unfinished_exports(
        &self,
        after: Option<&ExportCharge>,
        limit: usize,
    ) -> PortResult<Vec<ExportCharge>> {
        let call = self.inner.unfinished_exports(after, limit);
        self.faults.call("usage", "unfinished_exports", call).await
    }
    async fn rate_state(&self, key: &str) -> PortResult<Option<Millis>> {
        let call = self.inner.rate_state(key);
        self.faults.call("usage", "rate_state", call).await
    }
    async fn set_rate_state(
        &self,
        key: &str,
        expected: Option<Millis>,
        next: Millis,
        expires_at: Millis,
    ) -> PortResult<bool> {
        let call = self.inner.set_rate_state(key, expected, next, expires_at);
        self.faults.call("usage", "set_rate_state", call).await
    }
}

#[async_trait]
impl<P: AuditLog + ?Sized> AuditLog for Faulty<P> {
    async fn record(&self, record: &export_api::AuditRecord) -> PortResult<()> {
        let call = self.inner.record(record);
        self.faults.call("audit", "record", call).await
    }
}

#[async_trait]
impl<P: QueueSender + ?Sized> QueueSender for Faulty<P> {
    async fn send(&self, message: &Message, delay: Duration) -> PortResult<()> {
        let call = self.inner.send(message, delay);
        self.faults.call("queue", "send", call).await
    }
}

#[async_trait]
impl<P: Warehouse + ?Sized> Warehouse for Faulty<P> {
    async fn execute(&self, request: &StatementRequest) -> PortResult<String> {
        let call = self.inner.execute(request);
        self.faults.call("warehouse", "execute", call).await
    }
    async fn describe(&self, statement_id: &str) -> PortResult<StatementStatus> {
        let call = self.inner.describe(statement_id);
        self.faults.call("warehouse", "describe", call).await
    }
    async fn cancel(&self, statement_id: &str) -> PortResult<bool> {
        let call = self.inner.cancel(statement_id);
        self.faults.call("warehouse", "cancel", call).await
    }
    async fn select(&self, select: &BoundSelect, timeout: Duration) -> PortResult<SelectOutcome> {
        let call = self.inner.select(select, timeout);
        self.faults.call("warehouse", "select", call).await
    }
}

#[async_trait]
impl<P: ObjectStore + ?Sized> ObjectStore for Faulty<P> {
    async fn get(&self, object: &ObjectRef) -> PortResult<ByteStream> {
        let call = self.inner.get(object);
        self.faults.call("object_store", "get", call).await
    }
    async fn put(&self, object: &ObjectRef, body: Bytes, content_type: &str) -> PortResult<()> {
        let call = self.inner.put(object, body, content_type);
        self.faults.call("object_store", "put", call).await
    }
    async fn size_of(&self, object: &ObjectRef) -> PortResult<Option<u64>> {
        let call = self.inner.size_of(object);
        self.faults.call("object_store", "size_of", call).await
    }
    async fn delete(&self, object: &ObjectRef) -> PortResult<()> {
        let call = self.inner.delete(object);
        self.faults.call("object_store", "delete", call).await
    }
    async fn create_multipart(&self, object: &ObjectRef, content_type: &str) -> PortResult<String> {
        let call = self.inner.create_multipart(object, content_type);
        self.faults
            .call("object_store", "create_multipart", call)
            .await
    }
    async fn upload_part(
        &self,
        object: &ObjectRef,
        upload_id: &str,
        number: u32,
        body: Bytes,
    ) -> PortResult<UploadedPart> {
        let call = self.inner.upload_part(object, upload_id, number, body);
        self.faults.call("object_store", "upload_part", call).await
    }
    async fn complete_multipart(
        &self,
        object: &ObjectRef,
        upload_id: &str,
        parts: &[UploadedPart],
    ) -> PortResult<()> {
        let call = self.inner.complete_multipart(object, upload_id, parts);
        self.faults
            .call("object_store", "complete_multipart", call)
            .await
    }
    async fn abort_multipart(&self, object: &ObjectRef, upload_id: &str) -> PortResult<()> {
        let call = self.inner.abort_multipart(object, upload_id);
        self.faults
            .call("object_store", "abort_multipart", call)
            .await
    }
    async fn list_parts(
        &self,
        object: &ObjectRef,
        upload_id: &str,
        count: u32,
    ) -> PortResult<Vec<UploadedPart>> {
        let call = self.inner.list_parts(object, upload_id, count);
        self.faults.call("object_store", "list_parts", call).await
    }
    async fn copy(&self, from: &ObjectRef, to: &ObjectRef) -> PortResult<()> {
        let call = self.inner.copy(from, to);
        self.faults.call("object_store", "copy", call).await
    }
    async fn presign_get(
        &self,
        object: &ObjectRef,
        expires_in: Duration,
        file_name: &str,
    ) -> PortResult<PresignedUrl> {
        let call = self.inner.presign_get(object, expires_in, file_name);
        self.faults.call("object_store", "presign_get", call).await
    }
}

#[async_trait]
impl<P: Mailer + ?Sized> Mailer for Faulty<P> {
    async fn send(&self, email: &Email) -> PortResult<String> {
        let call = self.inner.send(email);
        self.faults.call("mailer", "send", call).await
    }
}

#[async_trait]
impl<P: SubscriptionStore + ?Sized> SubscriptionStore for Faulty<P> {
    async fn create_subscription(&self, subscription: &Subscription) -> PortResult<()> {
        let call = self.inner.create_subscription(subscription);
        self.faults
            .call("subscriptions", "create_subscription", call)
            .await
    }
    async fn subscription(&self, owner: &Owner, id: &str) -> PortResult<Option<Subscription>> {
        let call = self.inner.subscription(owner, id);
        self.faults
            .call("subscriptions", "subscription", call)
            .await
    }
    async fn subscriptions(&self, owner: &Owner) -> PortResult<Vec<Subscription>> {
        let call = self.inner.subscriptions(owner);
        self.faults
            .call("subscriptions", "subscriptions", call)
            .await
    }
    async fn replace_subscription(&self, subscription: &Subscription) -> PortResult<bool> {
        let call = self.inner.replace_subscription(subscription);
        self.faults
            .call("subscriptions", "replace_subscription", call)
            .await
    }
    async fn delete_subscription(&self, owner: &Owner, id: &str) -> PortResult<bool> {
        let call = self.inner.delete_subscription(owner, id);
        self.faults
            .call("subscriptions", "delete_subscription", call)
            .await
    }
    async fn due_subscriptions(&self, now: Millis, limit: usize) -> PortResult<Vec<Subscription>> {
        let call = self.inner.due_subscriptions(now, limit);
        self.faults
            .call("subscriptions", "due_subscriptions", call)
            .await
    }
    async fn record_run(&self, id: &str, run: &export_api::SubscriptionRun) -> PortResult<()> {
        let call = self.inner.record_run(id, run);
        self.faults.call("subscriptions", "record_run", call).await
    }
    async fn runs(&self, id: &str, limit: usize) -> PortResult<Vec<export_api::SubscriptionRun>> {
        let call = self.inner.runs(id, limit);
        self.faults.call("subscriptions", "runs", call).await
    }
}

#[async_trait]
impl<P: Webhooks + ?Sized> Webhooks for Faulty<P> {
    async fn post(&self, post: &WebhookPost) -> PortResult<u16> {
        let call = self.inner.post(post);
        self.faults.call("webhooks", "post", call).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_reads_rules_and_the_most_specific_applies() {
        let plan: FaultPlan =
            "*.*:transient=0.1; warehouse.*:latency=20ms; warehouse.execute:lost=0.5,permanent=0.2"
                .parse()
                .unwrap();
        assert_eq!(plan.fault("mailer", "send").unwrap().transient, 0.1);
        assert_eq!(
            plan.fault("warehouse", "describe").unwrap().latency,
            Duration::from_millis(20)
        );
        let execute = plan.fault("warehouse", "execute").unwrap();
        assert_eq!(
            (execute.lost, execute.permanent, execute.transient),
            (0.5, 0.2, 0.0)
        );
        assert!(""
            .parse::<FaultPlan>()
            .unwrap()
            .fault("queue", "send")
            .is_none());
    }

    #[test]
    fn a_plan_that_cannot_be_meant_is_refused_by_name() {
        for (text, says) in [
            ("warehouse:transient=0.1", "port.operation"),
            ("disk.write:transient=0.1", "unknown port 'disk'"),
            ("queue.send:transient=2", "probability"),
            ("queue.send:slow=1", "unknown fault 'slow'"),
            ("queue.send:latency=5", "duration"),
            ("queue.send:transient=0.6,lost=0.6", "more than 1"),
        ] {
            let error = text.parse::<FaultPlan>().unwrap_err();
            assert!(error.contains(says), "{text}: {error}");
        }
    }

    #[tokio::test]
    async fn faults_come_in_their_proportions_and_are_counted() {
        let plan = "queue.send:transient=0.2,lost=0.3,permanent=0.1"
            .parse()
            .unwrap();
        let faults = Faults::new(plan, 7);
        let mut effects = 0;
        let (mut transient, mut permanent, mut lost) = (0, 0, 0);
        for _ in 0..10_000 {
            let result = faults
                .call("queue", "send", async {
                    effects += 1;
                    Ok(())
                })
                .await;
            match result {
                Err(PortError::Unavailable(m)) if m.contains("lost") => lost += 1,
                Err(PortError::Unavailable(_)) => transient += 1,
                Err(PortError::Rejected(_)) => permanent += 1,
                _ => {}
            }
        }
        // A lost answer's call took effect; the others never reached the port.
        assert_eq!(effects, 10_000 - transient - permanent);
        for (seen, expected) in [(transient, 2000_i32), (lost, 3000), (permanent, 1000)] {
            assert!((seen - expected).abs() < 300, "{seen} vs {expected}");
        }
        let counts = faults.counts()["queue.send"];
        assert_eq!(
            (
                counts.calls,
                counts.transient,
                counts.lost,
                counts.permanent
            ),
            (10_000, transient as u64, lost as u64, permanent as u64)
        );
    }
}
