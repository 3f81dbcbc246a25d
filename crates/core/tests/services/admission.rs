//! Admission: no more statements run than there are slots, whatever the races, lost answers
//! and crashes; a freed slot goes to the next in line at once; callers take turns.

use super::*;
use async_trait::async_trait;
use export_core::clock::Clock;
use export_core::domain::{JobEvent, JobUpdate, Millis, Owner, Transition};
use export_core::ports::{
    AdmissionLedger, ControlTable, PortError, PortResult, QueueSender, SlotHolder, StatementState,
    WaitingJob, Warehouse,
};
use export_core::service::{Admission, Processor};
use export_core::testing::World;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

const CAROL: &str = "arn:aws:iam::123456789012:user/carol";

async fn submit_as(world: &World, owner: &str, id: i64) -> String {
    world
        .submit(owner, json!({"dataset": "things", "params": {"id": id}}))
        .await
        .expect("accepted")
}

async fn status_of(world: &World, request_id: &str) -> JobStatus {
    world.job(request_id).await.status
}

/// Jobs RUNNING now; never more than the slots.
fn running(world: &World) -> Vec<String> {
    let mut ids: Vec<String> = world
        .control
        .jobs()
        .into_iter()
        .filter(|j| j.status == JobStatus::Running)
        .map(|j| j.request_id)
        .collect();
    ids.sort();
    ids
}

async fn place(world: &World, request_id: &str) -> Option<u64> {
    world.queries.queue_position(request_id).await.unwrap()
}

/// Ends the running job's statement and has the poller see it (the statement's event).
async fn end(world: &World, request_id: &str) {
    world.finish_statement(request_id, &[&["1,one"]]);
    world.announce(request_id).await;
    world.deliver(QueueName::Polls).await;
}

#[tokio::test]
async fn at_most_the_slots_run_and_an_ending_statement_hands_its_slot_on() {
    let world = World::with_slots(Some(2));
    let mut jobs = Vec::new();
    for id in 1..=4 {
        jobs.push(submit_as(&world, ALICE, id).await);
    }
    world.deliver(QueueName::Requests).await;
    assert_eq!(running(&world).len(), 2, "two slots");
    assert_eq!(world.warehouse.statement_count(), 2);
    assert_eq!(status_of(&world, &jobs[2]).await, JobStatus::Queued);
    assert_eq!(place(&world, &jobs[2]).await, Some(0));
    assert_eq!(place(&world, &jobs[3]).await, Some(1));
    assert_eq!(place(&world, &jobs[0]).await, None, "admitted");
    // The wait is in the job's history.
    assert!(world.steps(&jobs[3]).await.contains(&"admission".into()));

    // No polling: nothing waits on the requests queue until a slot frees.
    assert!(world.queue.waiting(QueueName::Requests).is_empty());
    end(&world, &jobs[0]).await;
    assert_eq!(status_of(&world, &jobs[0]).await, JobStatus::Succeeded);
    let handed_on = world.queue.waiting(QueueName::Requests);
    assert_eq!(handed_on.len(), 1, "one start, for the next in line");
    world.deliver(QueueName::Requests).await;
    assert_eq!(status_of(&world, &jobs[2]).await, JobStatus::Running);
    assert_eq!(place(&world, &jobs[3]).await, Some(0));
    assert_eq!(running(&world).len(), 2);

    // A failed statement frees its slot too.
    let statement = world.statement_of(&jobs[1]).unwrap();
    world
        .warehouse
        .set_state(&statement, StatementState::Failed, None, Some("disk full"));
    world.announce(&jobs[1]).await;
    world.deliver(QueueName::Polls).await;
    assert_eq!(status_of(&world, &jobs[1]).await, JobStatus::Failed);
    world.deliver(QueueName::Requests).await;
    assert_eq!(status_of(&world, &jobs[3]).await, JobStatus::Running);
    assert_eq!(running(&world), {
        let mut ids = vec![jobs[2].clone(), jobs[3].clone()];
        ids.sort();
        ids
    });
}

#[tokio::test]
async fn callers_take_turns_so_one_job_waits_behind_one_of_each_other_caller() {
    let world = World::with_slots(Some(1));
    let mut alice = Vec::new();
    for id in 1..=10 {
        alice.push(submit_as(&world, ALICE, id).await);
    }
    world.deliver(QueueName::Requests).await;
    let bob = submit_as(&world, BOB, 100).await;
    // Later than bob's: equal turns go to the older job.
    world.clock.advance(Duration::from_secs(1));
    let carol = submit_as(&world, CAROL, 200).await;
    world.deliver(QueueName::Requests).await;
    // Alice's first runs; nine of hers wait, yet bob and carol are next.
    assert_eq!(running(&world), [alice[0].clone()]);
    assert_eq!(place(&world, &bob).await, Some(0));
    assert_eq!(place(&world, &carol).await, Some(1));
    assert_eq!(place(&world, &alice[1]).await, Some(2));

    // Run everything one slot at a time, noting the order the statements start in.
    let mut order = vec![alice[0].clone()];
    for _ in 0..12 {
        let now = running(&world);
        assert_eq!(now.len(), 1, "one slot: {now:?}");
        end(&world, &now[0]).await;
        world.deliver(QueueName::Requests).await;
        if let Some(next) = running(&world).first() {
            order.push(next.clone());
        }
    }
    let mut expected = vec![alice[0].clone(), bob.clone(), carol.clone()];
    expected.extend(alice[1..].iter().cloned());
    assert_eq!(order, expected);

    assert!(running(&world).is_empty());

    // Turns go on from where the line is: a job of alice's starts at once, and bob's next
    // job goes before her second.
    let late_alice = submit_as(&world, ALICE, 11).await;
    world.clock.advance(Duration::from_secs(1));
    let late_alice_2 = submit_as(&world, ALICE, 12).await;
    world.clock.advance(Duration::from_secs(1));
    let late_bob = submit_as(&world, BOB, 101).await;
    world.deliver(QueueName::Requests).await;
    assert_eq!(running(&world), [late_alice]);
    assert_eq!(place(&world, &late_bob).await, Some(0));
    assert_eq!(place(&world, &late_alice_2).await, Some(1));
}

#[tokio::test]
async fn a_cancelled_job_leaves_the_line_and_a_cancelled_statement_hands_its_slot_on() {
    let world = World::with_slots(Some(1));
    let first = submit_as(&world, ALICE, 1).await;
    let second = submit_as(&world, ALICE, 2).await;
    let third = submit_as(&world, ALICE, 3).await;
    world.deliver(QueueName::Requests).await;
    let alice = Owner(ALICE.into());

    world.submissions.cancel(&alice, &second).await.unwrap();
    assert_eq!(place(&world, &second).await, None);
    assert_eq!(place(&world, &third).await, Some(0));

    world.submissions.cancel(&alice, &first).await.unwrap();
    world.deliver(QueueName::Requests).await;
    assert_eq!(status_of(&world, &third).await, JobStatus::Running);
    assert_eq!(status_of(&world, &second).await, JobStatus::Cancelled);
    assert_eq!(
        world.warehouse.statement_count(),
        2,
        "the cancelled one never ran"
    );
}

#[tokio::test]
async fn the_sweep_frees_a_slot_whose_holder_ended_without_handing_it_on() {
    let world = World::with_slots(Some(1));
    let first = submit_as(&world, ALICE, 1).await;
    let second = submit_as(&world, ALICE, 2).await;
    world.deliver(QueueName::Requests).await;
    // The poller recorded the failure, then died before it freed the slot.
    let failed = Transition::fail(JobStatus::Running).unwrap();
    let event = JobEvent::new(world.clock.now(), "statement", "FAILED", "crashed after");
    assert!(world
        .control
        .transition(&first, failed, &JobUpdate::default(), &event)
        .await
        .unwrap());
    assert_eq!(place(&world, &second).await, Some(0));

    // The sweep's tick: the failed job's statement still runs, so it is asked to stop and
    // keeps the slot (the warehouse must not run two)…
    tick(&world).await;
    assert_eq!(place(&world, &second).await, Some(0));
    let statement = world.statement_of(&first).unwrap();
    assert_eq!(
        world.warehouse.describe(&statement).await.unwrap().state,
        StatementState::Aborted
    );
    // …and the next tick, the statement stopped, frees it (the waiting job is left where it
    // is: its start comes with its slot).
    tick(&world).await;
    assert_eq!(place(&world, &second).await, None);
    world.deliver(QueueName::Requests).await;
    assert_eq!(status_of(&world, &second).await, JobStatus::Running);
    assert_eq!(
        world.queue.waiting(QueueName::Requests).len(),
        0,
        "one start, not one per sweep"
    );
}

#[tokio::test]
async fn a_start_lost_after_the_slot_was_handed_on_is_sent_again_by_the_sweep() {
    let world = World::with_slots(Some(1));
    let first = submit_as(&world, ALICE, 1).await;
    let second = submit_as(&world, ALICE, 2).await;
    world.deliver(QueueName::Requests).await;
    end(&world, &first).await;
    // The slot is second's, but its start is lost (the processor died between the two).
    for lost in world.queue.waiting(QueueName::Requests) {
        world.queue.ack(lost.id);
    }
    assert_eq!(place(&world, &second).await, None, "admitted");
    assert_eq!(status_of(&world, &second).await, JobStatus::Queued);

    world.clock.advance(Duration::from_secs(901));
    // The follow-ups due by now, then the sweep's tick.
    world.deliver(QueueName::Polls).await;
    tick(&world).await;
    world.deliver(QueueName::Requests).await;
    assert_eq!(status_of(&world, &second).await, JobStatus::Running);
}

/// Twelve starts handled at once by as many processors: three slots, three statements.
#[tokio::test]
async fn racing_processors_never_start_more_than_the_slots() {
    let world = World::with_slots(Some(3));
    let mut jobs = Vec::new();
    for id in 1..=12 {
        jobs.push(submit_as(&world, ALICE, id).await);
    }
    // Every start delivered twice, all at once.
    for id in &jobs {
        world
            .queue
            .send(&export_core::messages::Message::start(id), Duration::ZERO)
            .await
            .unwrap();
    }
    let outcomes = world.deliver_at_once(QueueName::Requests).await;
    assert!(outcomes.iter().all(Delivered::is_done), "{outcomes:?}");
    // The starts a processor sent for jobs it admitted besides its own.
    world.deliver_at_once(QueueName::Requests).await;
    assert_eq!(running(&world).len(), 3);
    assert_eq!(world.warehouse.statement_count(), 3);
    let holders = world.control.holders().await.unwrap();
    assert_eq!(holders.len(), 3, "{holders:?}");
    // The rest wait in line, each once.
    let mut places: Vec<u64> = Vec::new();
    for id in &jobs {
        if let Some(p) = place(&world, id).await {
            places.push(p);
        }
    }
    places.sort();
    assert_eq!(places, (0..9).collect::<Vec<u64>>());

    // Each end hands on exactly one slot, however the hand-offs race.
    while !running(&world).is_empty() {
        let now = running(&world);
        assert!(now.len() <= 3, "{now:?}");
        for id in &now {
            world.finish_statement(id, &[&["1,one"]]);
            world.announce(id).await;
        }
        world.deliver_at_once(QueueName::Polls).await;
        world.deliver_at_once(QueueName::Requests).await;
        assert!(world.control.holders().await.unwrap().len() <= 3);
    }
    for id in &jobs {
        assert_eq!(status_of(&world, id).await, JobStatus::Succeeded);
    }
    assert_eq!(world.warehouse.statement_count(), 12);
}

/// A ledger whose next admissions take effect but answer as lost (a timeout after the write).
struct LosingLedger {
    inner: Arc<dyn AdmissionLedger>,
    lose_admits: AtomicU32,
}

#[async_trait]
impl AdmissionLedger for LosingLedger {
    async fn holders(&self) -> PortResult<Vec<SlotHolder>> {
        self.inner.holders().await
    }
    async fn turns(&self, turns_of: &str) -> PortResult<(u64, u64)> {
        self.inner.turns(turns_of).await
    }
    async fn join(&self, entry: &WaitingJob) -> PortResult<(WaitingJob, bool)> {
        self.inner.join(entry).await
    }
    async fn first_waiting(&self, limit: usize) -> PortResult<Vec<WaitingJob>> {
        self.inner.first_waiting(limit).await
    }
    async fn admit(&self, slot: u32, entry: &WaitingJob, at: Millis) -> PortResult<bool> {
        let admitted = self.inner.admit(slot, entry, at).await?;
        let lose = self
            .lose_admits
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if lose {
            return Err(PortError::Unavailable("the answer was lost".into()));
        }
        Ok(admitted)
    }
    async fn release(&self, slot: u32, request_id: &str) -> PortResult<bool> {
        self.inner.release(slot, request_id).await
    }
    async fn leave(&self, request_id: &str) -> PortResult<()> {
        self.inner.leave(request_id).await
    }
    async fn place(&self, request_id: &str) -> PortResult<Option<u64>> {
        self.inner.place(request_id).await
    }
    async fn take_lookup_slot(
        &self,
        slots: u32,
        holder: &str,
        now: Millis,
        until: Millis,
    ) -> PortResult<Option<u32>> {
        self.inner.take_lookup_slot(slots, holder, now, until).await
    }
    async fn free_lookup_slot(&self, slot: u32, holder: &str) -> PortResult<()> {
        self.inner.free_lookup_slot(slot, holder).await
    }
}

#[tokio::test]
async fn an_admission_whose_answer_was_lost_starts_its_job_on_the_retry() {
    let world = World::with_slots(Some(1));
    let losing = Arc::new(LosingLedger {
        inner: world.control.clone(),
        lose_admits: AtomicU32::new(1),
    });
    let processor = Processor {
        admission: Admission {
            ledger: losing,
            ..world.processor.admission.clone()
        },
        ..(*world.processor).clone()
    };
    // Two jobs stored whose starts reach the processor before either is in line (a start
    // the sweep sent again, say).
    let mut starts = Vec::new();
    let mut ids = Vec::new();
    for (owner, n) in [(ALICE, 1), (BOB, 2)] {
        let id = format!("00000000-0000-4000-8000-00000000000{n}");
        let mut job = export_core::testing::conformance::queued_job(
            &id,
            &Owner(owner.into()),
            world.clock.now(),
        );
        job.dataset = "things".into();
        job.params = json!({"id": n}).as_object().unwrap().clone();
        let event = JobEvent::new(job.created_at, "submitted", "QUEUED", "");
        world.control.create_job(&job, &event, None).await.unwrap();
        starts.push(export_core::messages::Message::start(&id).body());
        ids.push(id);
    }
    let (job, other) = (ids[0].clone(), ids[1].clone());
    // The first start's admission took the slot, but its answer was lost: a retry.
    let first = processor.handle(&starts[0]).await;
    assert!(first.is_err(), "{first:?}");
    assert_eq!(status_of(&world, &job).await, JobStatus::Queued);
    // The other job finds the slot taken and waits.
    processor.handle(&starts[1]).await.unwrap();
    assert_eq!(place(&world, &other).await, Some(0));
    // The retry finds the slot its own and starts.
    processor.handle(&starts[0]).await.unwrap();
    assert_eq!(status_of(&world, &job).await, JobStatus::Running);
    assert_eq!(running(&world), [job]);
}

#[tokio::test]
async fn without_admission_every_job_starts_at_once() {
    let world = World::with_slots(None);
    for id in 1..=8 {
        submit_as(&world, ALICE, id).await;
    }
    world.deliver(QueueName::Requests).await;
    assert_eq!(running(&world).len(), 8);
    assert!(world.control.holders().await.unwrap().is_empty());
}

/// Ends the one running statement `times` times, each time delivering the start it hands
/// on: the order the jobs other than `blocker` ran in.
async fn run_one_at_a_time(world: &World, blocker: &str, times: usize) -> Vec<String> {
    let mut order = Vec::new();
    for _ in 0..times {
        let now = running(world);
        assert_eq!(now.len(), 1, "{now:?}");
        if now[0] != blocker {
            order.push(now[0].clone());
        }
        end(world, &now[0]).await;
        world.deliver(QueueName::Requests).await;
    }
    order
}

#[tokio::test]
async fn a_group_of_higher_priority_takes_more_turns() {
    let world = World::with_slots(Some(1));
    let blocker = submit_as(&world, CAROL, 1).await;
    world.deliver(QueueName::Requests).await;
    assert_eq!(running(&world), std::slice::from_ref(&blocker));
    let mut plain = Vec::new();
    for id in 0..4 {
        plain.push(submit_as(&world, BOB, 10 + id).await);
    }
    world.clock.advance(Duration::from_secs(1));
    let mut vip = Vec::new();
    for id in 0..4 {
        vip.push(submit_as(&world, "vip", 20 + id).await);
    }
    assert_eq!(world.job(&vip[0]).await.priority, 2);
    world.deliver(QueueName::Requests).await;

    let order = run_one_at_a_time(&world, &blocker, 9).await;
    // Bob's turns go 1,000 apart, vip's 500: of the first six, four are vip's.
    let expected = [
        &plain[0], &vip[0], &vip[1], &plain[1], &vip[2], &vip[3], &plain[2], &plain[3],
    ];
    assert_eq!(order.iter().collect::<Vec<_>>(), expected);
}

#[tokio::test]
async fn a_group_that_shares_turns_takes_them_as_one_caller() {
    let world = World::with_slots(Some(1));
    let blocker = submit_as(&world, CAROL, 1).await;
    world.deliver(QueueName::Requests).await;
    assert_eq!(running(&world), std::slice::from_ref(&blocker));
    let mut crew_a = Vec::new();
    for id in 0..3 {
        crew_a.push(submit_as(&world, "crew-a", 10 + id).await);
    }
    world.clock.advance(Duration::from_secs(1));
    let mut crew_b = Vec::new();
    for id in 0..3 {
        crew_b.push(submit_as(&world, "crew-b", 20 + id).await);
    }
    world.clock.advance(Duration::from_secs(1));
    let bob = submit_as(&world, BOB, 30).await;
    assert_eq!(
        world.job(&crew_b[0]).await.turns_of.as_deref(),
        Some("crew")
    );
    assert_eq!(world.job(&bob).await.turns_of, None);
    world.deliver(QueueName::Requests).await;
    // Were crew-a and crew-b callers of their own, bob would wait behind one job of each;
    // sharing their turns, they are one caller, and bob waits behind one of theirs.
    assert_eq!(place(&world, &bob).await, Some(1));

    let order = run_one_at_a_time(&world, &blocker, 8).await;
    // Within the group, oldest first, whichever of its callers submitted.
    let expected = [
        &crew_a[0], &bob, &crew_a[1], &crew_a[2], &crew_b[0], &crew_b[1], &crew_b[2],
    ];
    assert_eq!(order.iter().collect::<Vec<_>>(), expected);
    assert!(running(&world).is_empty());
}

/// A long line must not hide the jobs the sweep is for: each tick marks the waiting jobs it
/// looked at, so the next tick's oldest are others.
#[tokio::test]
async fn a_long_line_does_not_hide_a_lost_start_from_the_sweep() {
    let world = World::with_slots(Some(1));
    for id in 0..201 {
        submit_as(&world, ALICE, id).await;
    }
    world.deliver(QueueName::Requests).await;
    // Newer than all of them, a job whose start is lost.
    world.clock.advance(Duration::from_secs(1));
    let lost = submit_as(&world, BOB, 1_000).await;
    for message in world.queue.waiting(QueueName::Requests) {
        world.queue.ack(message.id);
    }
    for _ in 0..3 {
        world.clock.advance(Duration::from_secs(901));
        for message in world.queue.waiting(QueueName::Polls) {
            world.queue.ack(message.id);
        }
        tick(&world).await;
        world.deliver(QueueName::Requests).await;
        if place(&world, &lost).await.is_some() {
            return;
        }
    }
    panic!(
        "the lost start was never sent again; the job is {:?}",
        world.job(&lost).await.status
    );
}
