use super::Faults;
use crate::domain::{Job, JobEvent, JobStatus, JobUpdate, Millis, Owner, Subscription, Transition};
use crate::page::{JobPage, PageToken};
use crate::ports::{
    AdmissionLedger, AnswerCache, CachedAnswer, ControlTable, CreateOutcome, ExportCharge,
    ExportLimits, IdempotencyKey, OverLimit, PortResult, SavedCheckpoint, SlotHolder,
    SubscriptionStore, Usage, UsageLedger, WaitingJob,
};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;

/// The control table in memory: each call is one atomic step, as a conditional write is.
#[derive(Default)]
pub struct MemoryControlTable {
    state: Mutex<State>,
    pub faults: Faults,
}

#[derive(Default)]
struct State {
    jobs: HashMap<String, Job>,
    events: HashMap<String, Vec<JobEvent>>,
    keys: HashMap<(String, String), (String, String)>,
    checkpoints: HashMap<String, SavedCheckpoint>,
    answers: HashMap<String, CachedAnswer>,
    admission: Ledger,
    usage: Usages,
    subscriptions: std::collections::BTreeMap<String, Subscription>,
    runs: HashMap<String, std::collections::BTreeMap<Millis, export_api::SubscriptionRun>>,
}

/// The usage ledger's state.
#[derive(Default)]
struct Usages {
    unfinished: std::collections::BTreeMap<String, ExportCharge>,
    per_day: HashMap<(String, i64), Usage>,
    bytes_added: std::collections::HashSet<String>,
    rates: HashMap<String, Millis>,
}

/// The admission ledger's state: slots by number, the line by its order.
#[derive(Default)]
struct Ledger {
    slots: std::collections::BTreeMap<u32, SlotHolder>,
    line: std::collections::BTreeMap<(u64, Millis, String), WaitingJob>,
    line_turn: u64,
    owner_turns: HashMap<String, u64>,
    /// Lookup slots: holder and the end of its lease.
    lookups: std::collections::BTreeMap<u32, (String, Millis)>,
}

impl Ledger {
    fn entry_of(&self, request_id: &str) -> Option<&WaitingJob> {
        self.line.values().find(|w| w.request_id == request_id)
    }
}

fn line_key(entry: &WaitingJob) -> (u64, Millis, String) {
    (entry.turn, entry.queued_at, entry.request_id.clone())
}

impl MemoryControlTable {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("control table lock")
    }

    /// Every job, in no order.
    pub fn jobs(&self) -> Vec<Job> {
        self.state().jobs.values().cloned().collect()
    }
}

#[async_trait]
impl ControlTable for MemoryControlTable {
    async fn create_job(
        &self,
        job: &Job,
        event: &JobEvent,
        key: Option<&IdempotencyKey>,
    ) -> PortResult<CreateOutcome> {
        super::interleave().await;
        self.faults.check("create_job")?;
        let mut state = self.state();
        if let Some(key) = key {
            let slot = (key.owner.0.clone(), key.key.clone());
            if let Some((request_id, digest)) = state.keys.get(&slot) {
                return Ok(CreateOutcome::KeyUsed {
                    request_id: request_id.clone(),
                    same_request: *digest == key.request_digest,
                });
            }
            state
                .keys
                .insert(slot, (job.request_id.clone(), key.request_digest.clone()));
        }
        state.jobs.insert(job.request_id.clone(), job.clone());
        state
            .events
            .insert(job.request_id.clone(), vec![event.clone()]);
        Ok(CreateOutcome::Created)
    }

    async fn key_used(&self, key: &IdempotencyKey) -> PortResult<Option<CreateOutcome>> {
        super::interleave().await;
        self.faults.check("key_used")?;
        let state = self.state();
        Ok(state
            .keys
            .get(&(key.owner.0.clone(), key.key.clone()))
            .map(|(request_id, digest)| CreateOutcome::KeyUsed {
                request_id: request_id.clone(),
                same_request: *digest == key.request_digest,
            }))
    }

    async fn delete_job(&self, request_id: &str, key: Option<&IdempotencyKey>) -> PortResult<()> {
        super::interleave().await;
        self.faults.check("delete_job")?;
        let mut state = self.state();
        state.jobs.remove(request_id);
        state.events.remove(request_id);
        state.checkpoints.remove(request_id);
        if let Some(key) = key {
            let slot = (key.owner.0.clone(), key.key.clone());
            if state
                .keys
                .get(&slot)
                .is_some_and(|(id, _)| id == request_id)
            {
                state.keys.remove(&slot);
            }
        }
        Ok(())
    }

    async fn get_job(&self, request_id: &str) -> PortResult<Option<Job>> {
        super::interleave().await;
        self.faults.check("get_job")?;
        Ok(self.state().jobs.get(request_id).cloned())
    }

    async fn transition(
        &self,
        request_id: &str,
        transition: Transition,
        update: &JobUpdate,
        event: &JobEvent,
    ) -> PortResult<bool> {
        super::interleave().await;
        self.faults.check("transition")?;
        let mut state = self.state();
        match state.jobs.get_mut(request_id) {
            Some(job) if job.status == transition.from() => {
                job.apply(transition, update, event.at);
            }
            _ => return Ok(false),
        }
        state
            .events
            .entry(request_id.to_owned())
            .or_default()
            .push(event.clone());
        Ok(true)
    }

    async fn append_event(&self, request_id: &str, event: &JobEvent) -> PortResult<()> {
        super::interleave().await;
        self.faults.check("append_event")?;
        self.state()
            .events
            .entry(request_id.to_owned())
            .or_default()
            .push(event.clone());
        Ok(())
    }

    async fn events(&self, request_id: &str) -> PortResult<Vec<JobEvent>> {
        super::interleave().await;
        self.faults.check("events")?;
        Ok(self
            .state()
            .events
            .get(request_id)
            .cloned()
            .unwrap_or_default())
    }

    async fn claim_notification(&self, request_id: &str, at: Millis) -> PortResult<bool> {
        super::interleave().await;
        self.faults.check("claim_notification")?;
        Ok(match self.state().jobs.get_mut(request_id) {
            Some(job) if job.notified_at.is_none() => {
                job.notified_at = Some(at);
                true
            }
            _ => false,
        })
    }

    async fn release_notification(&self, request_id: &str, at: Millis) -> PortResult<()> {
        super::interleave().await;
        self.faults.check("release_notification")?;
        if let Some(job) = self.state().jobs.get_mut(request_id) {
            job.notified_at = None;
            job.updated_at = at;
        }
        Ok(())
    }

    async fn unsettled_jobs(&self, updated_before: Millis, limit: usize) -> PortResult<Vec<Job>> {
        super::interleave().await;
        self.faults.check("unsettled_jobs")?;
        let mut jobs: Vec<Job> = self
            .state()
            .jobs
            .values()
            .filter(|j| !j.is_settled() && j.updated_at < updated_before)
            .cloned()
            .collect();
        jobs.sort_by_key(|j| j.updated_at);
        jobs.truncate(limit);
        Ok(jobs)
    }

    async fn touch(&self, request_id: &str, status: JobStatus, at: Millis) -> PortResult<bool> {
        super::interleave().await;
        self.faults.check("touch")?;
        Ok(match self.state().jobs.get_mut(request_id) {
            Some(job) if job.status == status => {
                job.updated_at = at;
                true
            }
            _ => false,
        })
    }

    async fn save_checkpoint(
        &self,
        request_id: &str,
        expected_seq: u64,
        checkpoint: &SavedCheckpoint,
        at: Millis,
    ) -> PortResult<bool> {
        super::interleave().await;
        self.faults.check("save_checkpoint")?;
        let mut state = self.state();
        let current = state.checkpoints.get(request_id).map_or(0, |c| c.seq);
        match state.jobs.get_mut(request_id) {
            Some(job) if job.status == JobStatus::Packaging && current == expected_seq => {
                job.updated_at = at;
            }
            _ => return Ok(false),
        }
        state
            .checkpoints
            .insert(request_id.to_owned(), checkpoint.clone());
        Ok(true)
    }

    async fn checkpoint(&self, request_id: &str) -> PortResult<Option<SavedCheckpoint>> {
        super::interleave().await;
        self.faults.check("checkpoint")?;
        Ok(self.state().checkpoints.get(request_id).cloned())
    }

    async fn delete_checkpoint(&self, request_id: &str) -> PortResult<()> {
        super::interleave().await;
        self.faults.check("delete_checkpoint")?;
        self.state().checkpoints.remove(request_id);
        Ok(())
    }

    async fn list_jobs(
        &self,
        owner: &Owner,
        limit: usize,
        after: Option<&PageToken>,
    ) -> PortResult<JobPage> {
        super::interleave().await;
        self.faults.check("list_jobs")?;
        let mut jobs: Vec<Job> = self
            .state()
            .jobs
            .values()
            .filter(|j| &j.owner == owner)
            .filter(|j| {
                after.is_none_or(|t| {
                    (j.created_at, j.request_id.as_str()) < (t.created_at, t.request_id.as_str())
                })
            })
            .cloned()
            .collect();
        jobs.sort_by(|a, b| (b.created_at, &b.request_id).cmp(&(a.created_at, &a.request_id)));
        jobs.truncate(limit + 1);
        Ok(JobPage::from_rows(jobs, limit))
    }
}

#[async_trait]
impl AnswerCache for MemoryControlTable {
    async fn cached_answer(&self, key: &str, now: Millis) -> PortResult<Option<CachedAnswer>> {
        super::interleave().await;
        self.faults.check("cached_answer")?;
        Ok(self
            .state()
            .answers
            .get(key)
            .filter(|a| a.expires_at > now)
            .cloned())
    }

    async fn cache_answer(&self, key: &str, answer: &CachedAnswer) -> PortResult<()> {
        super::interleave().await;
        self.faults.check("cache_answer")?;
        self.state().answers.insert(key.to_owned(), answer.clone());
        Ok(())
    }
}

#[async_trait]
impl AdmissionLedger for MemoryControlTable {
    async fn holders(&self) -> PortResult<Vec<SlotHolder>> {
        super::interleave().await;
        self.faults.check("holders")?;
        Ok(self.state().admission.slots.values().cloned().collect())
    }

    async fn turns(&self, turns_of: &str) -> PortResult<(u64, u64)> {
        super::interleave().await;
        self.faults.check("turns")?;
        let state = self.state();
        let ledger = &state.admission;
        Ok((
            ledger.line_turn,
            ledger.owner_turns.get(turns_of).copied().unwrap_or(0),
        ))
    }

    async fn join(&self, entry: &WaitingJob) -> PortResult<(WaitingJob, bool)> {
        super::interleave().await;
        self.faults.check("join")?;
        let mut state = self.state();
        let ledger = &mut state.admission;
        if let Some(existing) = ledger.entry_of(&entry.request_id) {
            return Ok((existing.clone(), false));
        }
        if ledger
            .slots
            .values()
            .any(|h| h.request_id == entry.request_id)
        {
            return Ok((entry.clone(), false));
        }
        ledger.line.insert(line_key(entry), entry.clone());
        let last = ledger
            .owner_turns
            .entry(entry.turns_of.clone())
            .or_default();
        *last = (*last).max(entry.turn);
        Ok((entry.clone(), true))
    }

    async fn first_waiting(&self, limit: usize) -> PortResult<Vec<WaitingJob>> {
        super::interleave().await;
        self.faults.check("first_waiting")?;
        Ok(self
            .state()
            .admission
            .line
            .values()
            .take(limit)
            .cloned()
            .collect())
    }

    async fn admit(&self, slot: u32, entry: &WaitingJob, at: Millis) -> PortResult<bool> {
        super::interleave().await;
        self.faults.check("admit")?;
        let mut state = self.state();
        let ledger = &mut state.admission;
        if ledger.slots.contains_key(&slot) || !ledger.line.contains_key(&line_key(entry)) {
            return Ok(false);
        }
        ledger.line.remove(&line_key(entry));
        ledger.slots.insert(
            slot,
            SlotHolder {
                slot,
                request_id: entry.request_id.clone(),
                since: at,
            },
        );
        ledger.line_turn = ledger.line_turn.max(entry.turn);
        Ok(true)
    }

    async fn release(&self, slot: u32, request_id: &str) -> PortResult<bool> {
        super::interleave().await;
        self.faults.check("release")?;
        let mut state = self.state();
        let slots = &mut state.admission.slots;
        if slots.get(&slot).is_some_and(|h| h.request_id == request_id) {
            slots.remove(&slot);
            return Ok(true);
        }
        Ok(false)
    }

    async fn leave(&self, request_id: &str) -> PortResult<()> {
        super::interleave().await;
        self.faults.check("leave")?;
        self.state()
            .admission
            .line
            .retain(|_, w| w.request_id != request_id);
        Ok(())
    }

    async fn place(&self, request_id: &str) -> PortResult<Option<u64>> {
        super::interleave().await;
        self.faults.check("place")?;
        let state = self.state();
        let line = &state.admission.line;
        Ok(line
            .values()
            .position(|w| w.request_id == request_id)
            .map(|p| p as u64))
    }

    async fn take_lookup_slot(
        &self,
        slots: u32,
        holder: &str,
        now: Millis,
        until: Millis,
    ) -> PortResult<Option<u32>> {
        super::interleave().await;
        self.faults.check("take_lookup_slot")?;
        let mut state = self.state();
        let lookups = &mut state.admission.lookups;
        let free = (0..slots).find(|slot| lookups.get(slot).is_none_or(|(_, end)| *end < now));
        if let Some(slot) = free {
            lookups.insert(slot, (holder.to_owned(), until));
        }
        Ok(free)
    }

    async fn free_lookup_slot(&self, slot: u32, holder: &str) -> PortResult<()> {
        super::interleave().await;
        self.faults.check("free_lookup_slot")?;
        let mut state = self.state();
        let lookups = &mut state.admission.lookups;
        if lookups.get(&slot).is_some_and(|(h, _)| h == holder) {
            lookups.remove(&slot);
        }
        Ok(())
    }
}

#[async_trait]
impl UsageLedger for MemoryControlTable {
    async fn charge_export(
        &self,
        charge: &ExportCharge,
        limits: &ExportLimits,
    ) -> PortResult<Option<OverLimit>> {
        super::interleave().await;
        self.faults.check("charge_export")?;
        let mut state = self.state();
        let usage = &mut state.usage;
        if usage.unfinished.contains_key(&charge.request_id) {
            return Ok(None);
        }
        let owner = &charge.owner.0;
        let unfinished = usage
            .unfinished
            .values()
            .filter(|c| &c.owner.0 == owner)
            .count() as u64;
        if limits.unfinished.is_some_and(|limit| unfinished >= limit) {
            return Ok(Some(OverLimit::Unfinished));
        }
        let day = usage
            .per_day
            .entry((owner.clone(), charge.day))
            .or_default();
        if limits.per_day.is_some_and(|limit| day.exports >= limit) {
            return Ok(Some(OverLimit::PerDay));
        }
        day.exports += 1;
        usage
            .unfinished
            .insert(charge.request_id.clone(), charge.clone());
        Ok(None)
    }

    async fn refund_export(&self, charge: &ExportCharge) -> PortResult<()> {
        super::interleave().await;
        self.faults.check("refund_export")?;
        let mut state = self.state();
        let usage = &mut state.usage;
        if usage.unfinished.remove(&charge.request_id).is_some() {
            if let Some(day) = usage.per_day.get_mut(&(charge.owner.0.clone(), charge.day)) {
                day.exports = day.exports.saturating_sub(1);
            }
        }
        Ok(())
    }

    async fn end_export(&self, charge: &ExportCharge) -> PortResult<()> {
        super::interleave().await;
        self.faults.check("end_export")?;
        self.state().usage.unfinished.remove(&charge.request_id);
        Ok(())
    }

    async fn add_bytes(
        &self,
        owner: &Owner,
        request_id: &str,
        day: i64,
        bytes: u64,
    ) -> PortResult<()> {
        super::interleave().await;
        self.faults.check("add_bytes")?;
        let mut state = self.state();
        let usage = &mut state.usage;
        if usage.bytes_added.insert(request_id.to_owned()) {
            usage
                .per_day
                .entry((owner.0.clone(), day))
                .or_default()
                .bytes += bytes;
        }
        Ok(())
    }

    async fn usage(&self, owner: &Owner, day: i64) -> PortResult<Usage> {
        super::interleave().await;
        self.faults.check("usage")?;
        let state = self.state();
        let usage = &state.usage;
        let today = usage
            .per_day
            .get(&(owner.0.clone(), day))
            .copied()
            .unwrap_or_default();
        Ok(Usage {
            unfinished: usage
                .unfinished
                .values()
                .filter(|c| c.owner == *owner)
                .count() as u64,
            exports: today.exports,
            bytes: today.bytes,
        })
    }

    async fn unfinished_exports(
        &self,
        after: Option<&ExportCharge>,
        limit: usize,
    ) -> PortResult<Vec<ExportCharge>> {
        super::interleave().await;
        self.faults.check("unfinished_exports")?;
        let state = self.state();
        let mut charges: Vec<ExportCharge> = state
            .usage
            .unfinished
            .values()
            .filter(|c| after.is_none_or(|a| (c.at, &c.request_id) > (a.at, &a.request_id)))
            .cloned()
            .collect();
        charges.sort_by(|a, b| (a.at, &a.request_id).cmp(&(b.at, &b.request_id)));
        charges.truncate(limit);
        Ok(charges)
    }

    async fn rate_state(&self, key: &str) -> PortResult<Option<Millis>> {
        super::interleave().await;
        self.faults.check("rate_state")?;
        Ok(self.state().usage.rates.get(key).copied())
    }

    async fn set_rate_state(
        &self,
        key: &str,
        expected: Option<Millis>,
        next: Millis,
        _expires_at: Millis,
    ) -> PortResult<bool> {
        super::interleave().await;
        self.faults.check("set_rate_state")?;
        let mut state = self.state();
        let rates = &mut state.usage.rates;
        if rates.get(key).copied() != expected {
            return Ok(false);
        }
        rates.insert(key.to_owned(), next);
        Ok(true)
    }
}

#[async_trait]
impl SubscriptionStore for MemoryControlTable {
    async fn create_subscription(&self, subscription: &Subscription) -> PortResult<()> {
        super::interleave().await;
        self.faults.check("create_subscription")?;
        self.state
            .lock()
            .expect("state lock")
            .subscriptions
            .insert(subscription.id.clone(), subscription.clone());
        Ok(())
    }

    async fn subscription(&self, owner: &Owner, id: &str) -> PortResult<Option<Subscription>> {
        super::interleave().await;
        self.faults.check("subscription")?;
        let state = self.state.lock().expect("state lock");
        Ok(state
            .subscriptions
            .get(id)
            .filter(|s| &s.owner == owner)
            .cloned())
    }

    async fn subscriptions(&self, owner: &Owner) -> PortResult<Vec<Subscription>> {
        super::interleave().await;
        self.faults.check("subscriptions")?;
        let state = self.state.lock().expect("state lock");
        let mut mine: Vec<Subscription> = state
            .subscriptions
            .values()
            .filter(|s| &s.owner == owner)
            .cloned()
            .collect();
        mine.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(mine)
    }

    async fn replace_subscription(&self, subscription: &Subscription) -> PortResult<bool> {
        super::interleave().await;
        self.faults.check("replace_subscription")?;
        let mut state = self.state.lock().expect("state lock");
        match state.subscriptions.get_mut(&subscription.id) {
            Some(kept) if kept.version + 1 == subscription.version => {
                *kept = subscription.clone();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn delete_subscription(&self, owner: &Owner, id: &str) -> PortResult<bool> {
        super::interleave().await;
        self.faults.check("delete_subscription")?;
        let mut state = self.state.lock().expect("state lock");
        if !state
            .subscriptions
            .get(id)
            .is_some_and(|s| &s.owner == owner)
        {
            return Ok(false);
        }
        state.subscriptions.remove(id);
        state.runs.remove(id);
        Ok(true)
    }

    async fn due_subscriptions(&self, now: Millis, limit: usize) -> PortResult<Vec<Subscription>> {
        super::interleave().await;
        self.faults.check("due_subscriptions")?;
        let state = self.state.lock().expect("state lock");
        let mut due: Vec<Subscription> = state
            .subscriptions
            .values()
            .filter(|s| !s.paused && s.next_run_at.is_some_and(|at| at <= now))
            .cloned()
            .collect();
        due.sort_by_key(|s| (s.next_run_at, s.id.clone()));
        due.truncate(limit);
        Ok(due)
    }

    async fn record_run(&self, id: &str, run: &export_api::SubscriptionRun) -> PortResult<()> {
        super::interleave().await;
        self.faults.check("record_run")?;
        self.state
            .lock()
            .expect("state lock")
            .runs
            .entry(id.to_owned())
            .or_default()
            .insert(run.scheduled_at, run.clone());
        Ok(())
    }

    async fn runs(&self, id: &str, limit: usize) -> PortResult<Vec<export_api::SubscriptionRun>> {
        super::interleave().await;
        self.faults.check("runs")?;
        let state = self.state.lock().expect("state lock");
        Ok(state
            .runs
            .get(id)
            .map(|runs| runs.values().rev().take(limit).cloned().collect())
            .unwrap_or_default())
    }
}
