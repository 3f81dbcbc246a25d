//! The sweep: jobs whose messages were lost are carried on; settled and young ones are not.

use super::*;
use export_core::clock::Clock;
use export_core::domain::{JobStatus, Owner};
use export_core::messages::Message;
use export_core::ports::PortError;
use export_core::service::NOTICE_ATTEMPTS;
use export_core::testing::World;
use std::time::Duration;

/// Drops every message waiting on `queue`, as a crash past the last retry would.
fn lose(world: &World, queue: QueueName) -> usize {
    let lost = world.queue.waiting(queue);
    for message in &lost {
        world.queue.ack(message.id);
    }
    lost.len()
}

/// The bodies of the messages waiting on `queue`.
fn bodies(world: &World, queue: QueueName) -> Vec<String> {
    world
        .queue
        .waiting(queue)
        .into_iter()
        .map(|m| m.body)
        .collect()
}

#[tokio::test]
async fn the_sweep_carries_on_what_has_not_moved_and_leaves_the_rest() {
    let world = World::new();
    // A job whose start was lost.
    let queued = submit(&world, 1).await;
    assert_eq!(lose(&world, QueueName::Requests), 1);
    // A job whose statement ran, but whose follow-up was lost (and no event came).
    let running = started(&world, 2).await;
    assert_eq!(lose(&world, QueueName::Polls), 1);
    world.finish_statement(&running, &[&["2,two"]]);
    // A cancelled job: settled.
    let cancelled = submit(&world, 3).await;
    lose(&world, QueueName::Requests);
    world
        .submissions
        .cancel(&Owner(ALICE.into()), &cancelled)
        .await
        .unwrap();
    // Old enough to sweep; then one more job, too young.
    world.clock.advance(Duration::from_secs(901));
    let young = submit(&world, 4).await;
    lose(&world, QueueName::Requests);

    tick(&world).await;
    assert_eq!(
        bodies(&world, QueueName::Requests),
        [Message::start(&queued).body()]
    );
    assert_eq!(
        bodies(&world, QueueName::Polls),
        [Message::follow_up(&running, None).body()]
    );

    // The look finds the finished statement and completes the job; the start starts it.
    world.deliver(QueueName::Polls).await;
    assert_eq!(world.job(&running).await.status, JobStatus::Succeeded);
    assert_eq!(world.mailer.sent_about(&running).len(), 1);
    world.deliver(QueueName::Requests).await;
    assert_eq!(world.job(&queued).await.status, JobStatus::Running);
    world.finish_statement(&queued, &[&["1,one"]]);
    world.run_until_quiet(50).await;
    assert_eq!(world.job(&queued).await.status, JobStatus::Succeeded);
    assert_eq!(world.job(&cancelled).await.status, JobStatus::Cancelled);
    assert_eq!(world.job(&young).await.status, JobStatus::Queued);

    // Later, only the young job (now old) is swept; the settled ones never again.
    world.clock.advance(Duration::from_secs(901));
    tick(&world).await;
    assert_eq!(
        bodies(&world, QueueName::Requests),
        [Message::start(&young).body()]
    );
    assert!(world.queue.waiting(QueueName::Polls).is_empty());
    for id in [&queued, &running] {
        assert_eq!(world.mailer.sent_about(id).len(), 1, "{id}");
    }
}

#[tokio::test]
async fn a_job_that_ended_without_its_notice_is_notified_by_the_sweep() {
    let world = World::new();
    let request_id = started(&world, 1).await;
    world.finish_statement(&request_id, &[&["1,one"]]);
    // The mailer is down for longer than the message's retries: the job is SUCCEEDED, its
    // notice unsent, and its messages gone.
    world.mailer.faults.fail_always(
        "send",
        export_core::ports::PortError::Unavailable("down".into()),
    );
    for _ in 0..world.max_receives {
        world.clock.set(world.queue.next_visible_at().unwrap());
        world.deliver(QueueName::Polls).await;
    }
    assert!(world.queue.is_empty());
    let job = world.job(&request_id).await;
    assert_eq!((job.status, job.notified_at), (JobStatus::Succeeded, None));
    world.mailer.faults.clear("send");
    world.clock.advance(Duration::from_secs(901));
    tick(&world).await;
    world.run_until_quiet(20).await;
    assert_eq!(world.mailer.sent_about(&request_id).len(), 1);
    assert!(world.job(&request_id).await.notified_at.is_some());
}

#[tokio::test]
async fn a_tick_whose_sweep_fails_is_acknowledged_and_the_next_tick_sweeps() {
    let world = World::new();
    let queued = submit(&world, 1).await;
    assert_eq!(lose(&world, QueueName::Requests), 1);
    world.clock.advance(Duration::from_secs(901));
    // The control table cannot list: the tick is handled all the same, so it is neither
    // delivered again nor, its receives spent, left in the dead letters to be redriven for
    // nothing. The schedule's next tick is its retry.
    world
        .control
        .faults
        .fail_always("unsettled_jobs", PortError::Unavailable("throttled".into()));
    tick(&world).await;
    assert!(world.queue.is_empty());
    world.control.faults.clear("unsettled_jobs");
    tick(&world).await;
    assert_eq!(
        bodies(&world, QueueName::Requests),
        [Message::start(&queued).body()]
    );
}

/// The outcomes of the job's notice attempts, oldest first, with their messages.
async fn notices(world: &World, request_id: &str) -> Vec<(String, String)> {
    world
        .queries
        .events(&Owner(ALICE.into()), request_id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.step == "notified")
        .map(|e| (e.outcome, e.message))
        .collect()
}

/// Sweeps after the sweep's delay, a few times over, and drains what each tick queues.
async fn sweep_a_while(world: &World) {
    for _ in 0..3 {
        world.clock.advance(Duration::from_secs(901));
        tick(world).await;
        world.run_until_quiet(50).await;
    }
}

#[tokio::test]
async fn a_mail_refused_for_good_is_recorded_once_and_never_retried() {
    let world = World::new();
    let request_id = started(&world, 1).await;
    world.finish_statement(&request_id, &[&["1,one"]]);
    // SES in its sandbox, to an unverified recipient ("Amazon SES email sending errors").
    let refusal = "MessageRejected: Email address is not verified. The following identities failed the check in region US-EAST-1: alice@example.com";
    world
        .mailer
        .faults
        .fail_always("send", PortError::Rejected(refusal.into()));
    world.clock.advance(Duration::from_secs(5));
    assert_eq!(world.deliver(QueueName::Polls).await, [Delivered::Done]);
    let job = world.job(&request_id).await;
    assert_eq!(job.status, JobStatus::Succeeded);
    assert!(job.notified_at.is_some(), "settled, so the sweep leaves it");
    sweep_a_while(&world).await;
    assert_eq!(
        notices(&world, &request_id).await,
        [("refused".to_owned(), refusal.to_owned())]
    );
    // The export itself is unharmed: its link is still handed out.
    let job = world.job(&request_id).await;
    assert!(world.queries.download_link(&job).await.is_ok());
}

#[tokio::test]
async fn a_mail_that_keeps_failing_is_given_up_after_a_bounded_number_of_tries() {
    let world = World::new();
    let request_id = started(&world, 1).await;
    world.finish_statement(&request_id, &[&["1,one"]]);
    world.mailer.faults.fail_always(
        "send",
        PortError::Unavailable("SES: TooManyRequestsException".into()),
    );
    world.clock.advance(Duration::from_secs(5));
    let first = world.deliver(QueueName::Polls).await;
    assert!(matches!(first[..], [Delivered::Requeued(_)]), "{first:?}");
    // The release is the job's last change: the sweep waits its full delay from now.
    let job = world.job(&request_id).await;
    assert_eq!((job.notified_at, job.updated_at), (None, world.clock.now()));
    world.run_until_quiet(50).await;
    sweep_a_while(&world).await;
    let notices = notices(&world, &request_id).await;
    assert_eq!(notices.len(), NOTICE_ATTEMPTS, "{notices:?}");
    assert!(notices[..NOTICE_ATTEMPTS - 1]
        .iter()
        .all(|(outcome, _)| outcome == "error"));
    let (outcome, message) = notices.last().unwrap();
    assert_eq!(outcome, "abandoned");
    assert!(message.contains("TooManyRequestsException"), "{message}");
    assert!(world.job(&request_id).await.notified_at.is_some());
}
