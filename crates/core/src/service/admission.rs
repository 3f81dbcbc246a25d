//! Admission: at most `slots` of this deployment's statements run in the warehouse at once,
//! and when jobs wait, slots go round-robin across callers (or across groups whose callers
//! share their turns, by the access policy), oldest job first within each.
//!
//! The fairness is start-time fair queueing over callers: a waiting job's turn is the later of
//! the line's turn (the turn last admitted) and one step past its caller's previous job, and
//! slots go in turn order. A caller with a thousand jobs in line holds turns t, t+1, …,
//! t+999; a caller who joins then gets the line's turn, so waits behind at most one job of
//! each other caller. A caller idle for a while banks nothing: its next job starts from the
//! line's turn.
//!
//! The ledger (a port) only stores; every rule is here. A slot is handed on by whoever frees
//! it (the release fills free slots from the head of the line and sends each admitted job's
//! start), so nothing polls; the sweep ([`Admission::recover`]) frees slots whose holder
//! ended without releasing them and fills the line again, so a crash anywhere costs a slot
//! one sweep period at most.

use crate::clock::Clock;
use crate::domain::{Job, JobStatus};
use crate::messages::Message;
use crate::ports::{
    AdmissionLedger, ControlTable, PortResult, QueueSender, SlotHolder, StatementState, WaitingJob,
    Warehouse,
};
use std::sync::Arc;
use std::time::Duration;

/// How far one job moves its caller's turn on, at priority 1 (at priority p, `TURN_STEP / p`;
/// priorities go up to `access::MAX_PRIORITY`, which divides it).
pub const TURN_STEP: u64 = 1_000;

/// Statements of this deployment the warehouse runs at once, by default: the five queries at
/// once that Redshift's default user queue is configured with under manual WLM
/// ("Implementing manual WLM", Amazon Redshift Database Developer Guide), and that a new
/// parameter group's one queue runs ("Workload management", Amazon Redshift Management Guide).
pub const DEFAULT_SLOTS: u32 = 5;

/// How many statements run at once; `None` runs every job as soon as it is processed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdmissionSettings {
    pub slots: Option<u32>,
}

impl Default for AdmissionSettings {
    fn default() -> Self {
        AdmissionSettings {
            slots: Some(DEFAULT_SLOTS),
        }
    }
}

/// The event a job's history gets when it joins the line: how many are ahead of it.
pub fn wait_event(at: crate::domain::Millis, ahead: u64) -> crate::domain::JobEvent {
    crate::domain::JobEvent::new(
        at,
        "admission",
        JobStatus::Queued.as_str(),
        format!("waiting for a warehouse slot; {ahead} jobs ahead"),
    )
}

/// Whose turns a job takes: its group's, when the access policy has the group's callers
/// share them, else its caller's own. A group's key cannot be an owner, which is an ARN.
pub fn turns_of(job: &Job) -> String {
    match &job.turns_of {
        Some(group) => format!("group:{group}"),
        None => job.owner.0.clone(),
    }
}

/// What admission answered for a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admitted {
    /// The job holds a slot: its statement may start.
    Yes,
    /// The job waits in line, with this many jobs ahead of it; `joined` if it joined now.
    Waiting { ahead: u64, joined: bool },
}

#[derive(Clone)]
pub struct Admission {
    pub ledger: Arc<dyn AdmissionLedger>,
    pub queue: Arc<dyn QueueSender>,
    pub clock: Arc<dyn Clock>,
    pub settings: AdmissionSettings,
}

impl Admission {
    /// May the job's statement start now? A job that holds a slot may; any other joins the
    /// line (keeping its place if it is in it), then free slots are handed out from the
    /// head of the line, this job's among them if its turn has come.
    pub async fn admit(&self, job: &Job) -> PortResult<Admitted> {
        let Some(slots) = self.settings.slots else {
            return Ok(Admitted::Yes);
        };
        let holders = self.ledger.holders().await?;
        if holders.iter().any(|h| h.request_id == job.request_id) {
            return Ok(Admitted::Yes);
        }
        let turns_of = turns_of(job);
        let (line, last) = self.ledger.turns(&turns_of).await?;
        let entry = WaitingJob {
            request_id: job.request_id.clone(),
            turns_of,
            // A caller of a higher priority moves its turn on by less, so takes more turns.
            turn: line.max(last.saturating_add(TURN_STEP / u64::from(job.priority.max(1)))),
            queued_at: job.created_at,
        };
        let (_, joined) = self.ledger.join(&entry).await?;
        if self
            .fill(slots, Some(&job.request_id), Some(holders))
            .await?
        {
            return Ok(Admitted::Yes);
        }
        let ahead = self.ledger.place(&job.request_id).await?;
        match ahead {
            Some(ahead) => Ok(Admitted::Waiting { ahead, joined }),
            // Admitted between the fill and the look: by another instance's fill, which sent
            // its start; this one may start it as well (starting is idempotent).
            None => Ok(Admitted::Yes),
        }
    }

    /// The job's statement has ended (or it never will run): its slot, if it holds one, and
    /// its place in line, if it has one, go; free slots are handed to the next in line.
    pub async fn release(&self, request_id: &str) -> PortResult<()> {
        let Some(slots) = self.settings.slots else {
            return Ok(());
        };
        let mut holders = self.ledger.holders().await?;
        for holder in &holders {
            if holder.request_id == request_id {
                self.ledger.release(holder.slot, request_id).await?;
            }
        }
        holders.retain(|h| h.request_id != request_id);
        self.ledger.leave(request_id).await?;
        self.fill(slots, None, Some(holders)).await?;
        Ok(())
    }

    /// [`Admission::release`] where the step it ends has already been recorded: a failure is
    /// logged, not returned, since the sweep frees a slot its holder no longer uses.
    pub async fn release_after(&self, request_id: &str) {
        if let Err(e) = self.release(request_id).await {
            tracing::warn!(request_id, error = %e, "could not hand the job's slot on; the sweep will");
        }
    }

    /// How many jobs are ahead of this one in line; None if it is not waiting.
    pub async fn place(&self, request_id: &str) -> PortResult<Option<u64>> {
        if self.settings.slots.is_none() {
            return Ok(None);
        }
        self.ledger.place(request_id).await
    }

    /// Whether the job waits in line (the sweep leaves such a job where it is).
    pub async fn is_waiting(&self, request_id: &str) -> PortResult<bool> {
        Ok(self.place(request_id).await?.is_some())
    }

    /// The sweep's part: frees every slot whose holder no longer runs a statement (its job
    /// ended, was cancelled or is gone, and its statement, if it had one, is not running:
    /// one still running is asked to stop and keeps its slot until it has), and hands free
    /// slots on. A holder still QUEUED keeps its slot: its start is on its way, or, lost,
    /// is sent again by the sweep, which looks at every QUEUED job not in line.
    pub async fn recover(
        &self,
        control: &dyn ControlTable,
        warehouse: &dyn Warehouse,
    ) -> PortResult<usize> {
        let Some(slots) = self.settings.slots else {
            return Ok(0);
        };
        let mut freed = 0;
        for holder in self.ledger.holders().await? {
            let job = control.get_job(&holder.request_id).await?;
            match job.as_ref().map(|j| j.status) {
                // A slot past the number configured (the deployment was given fewer) is
                // freed when its statement ends, so the count comes down to the new number.
                Some(JobStatus::Queued | JobStatus::Running) if holder.slot < slots => continue,
                _ => {}
            }
            let statement = job
                .as_ref()
                .filter(|j| j.status != JobStatus::Queued)
                .and_then(|j| j.statement_id.clone());
            if let Some(statement) = statement {
                let state = match warehouse.describe(&statement).await {
                    Ok(status) => Some(status.state),
                    Err(crate::ports::PortError::NotFound(_)) => None,
                    Err(e) => return Err(e),
                };
                if matches!(
                    state,
                    Some(
                        StatementState::Submitted
                            | StatementState::Picked
                            | StatementState::Started
                    )
                ) {
                    if job.as_ref().is_some_and(|j| j.status != JobStatus::Running) {
                        tracing::warn!(request_id = %holder.request_id, statement, "the job ended, its statement runs on: asked to stop");
                        let _ = warehouse.cancel(&statement).await;
                    }
                    continue;
                }
            }
            if self.ledger.release(holder.slot, &holder.request_id).await? {
                tracing::warn!(request_id = %holder.request_id, slot = holder.slot, "freed a slot its job no longer uses");
                freed += 1;
            }
        }
        // The holders changed under the loop: read afresh.
        self.fill(slots, None, None).await?;
        Ok(freed)
    }

    /// Hands every free slot to the head of the line, in order, and sends each admitted
    /// job's start but `me`'s (the caller starts that one itself); true if `me` got a slot.
    /// A lost race (another instance admitted the same job, or took the slot) is read again;
    /// the rounds are bounded, since each either admits or finds the line or the slots gone.
    /// `known` is the holders as the caller just read them, for the first round (a slot it
    /// shows taken but freed since is handed on by whoever freed it).
    async fn fill(
        &self,
        slots: u32,
        me: Option<&str>,
        mut known: Option<Vec<SlotHolder>>,
    ) -> PortResult<bool> {
        let mut mine = false;
        for _ in 0..=slots {
            let holders = match known.take() {
                Some(holders) => holders,
                None => self.ledger.holders().await?,
            };
            let free: Vec<u32> = (0..slots)
                .filter(|slot| !holders.iter().any(|h| h.slot == *slot))
                .collect();
            if free.is_empty() {
                break;
            }
            let waiting = self.ledger.first_waiting(free.len()).await?;
            if waiting.is_empty() {
                break;
            }
            let mut lost = false;
            for (slot, entry) in free.into_iter().zip(&waiting) {
                if !self.ledger.admit(slot, entry, self.clock.now()).await? {
                    lost = true;
                    continue;
                }
                tracing::info!(request_id = %entry.request_id, slot, "admitted");
                if me == Some(entry.request_id.as_str()) {
                    mine = true;
                } else {
                    self.queue
                        .send(&Message::start(&entry.request_id), Duration::ZERO)
                        .await?;
                }
            }
            if !lost {
                break;
            }
        }
        Ok(mine)
    }
}
