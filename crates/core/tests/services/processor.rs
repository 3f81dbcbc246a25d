//! The processor: one statement per job whatever the deliveries, failures that fail the job,
//! and a cancel that lands while the statement starts.

use super::*;
use export_core::clock::Clock;
use export_core::domain::JobStatus;
use export_core::messages::Message;
use export_core::ports::{ControlTable, PortError, QueueSender, StatementState, Warehouse};
use export_core::testing::{World, STATEMENT_PREFIX};
use std::time::Duration;

#[tokio::test]
async fn redelivered_starts_run_one_statement() {
    let world = World::new();
    let request_id = submit(&world, 7).await;
    // At-least-once delivery: the same start three times, all at once.
    for _ in 0..2 {
        world
            .queue
            .send(&Message::start(&request_id), Duration::ZERO)
            .await
            .unwrap();
    }
    let outcomes = world.deliver_at_once(QueueName::Requests).await;
    assert!(outcomes.iter().all(Delivered::is_done), "{outcomes:?}");
    assert_eq!(world.warehouse.statement_count(), 1);
    let executions = world.warehouse.executions();
    assert!(
        executions
            .iter()
            .all(|e| e.client_token == request_id
                && e.name == format!("{STATEMENT_PREFIX}{request_id}")),
        "{executions:?}"
    );
    let job = world.job(&request_id).await;
    assert_eq!(job.status, JobStatus::Running);
    assert_eq!(count(&world, &request_id, "started").await, 1);
    // The statement is the export's UNLOAD into the job's own prefix, never overwriting.
    let sql = world
        .warehouse
        .sql(job.statement_id.as_deref().unwrap())
        .unwrap();
    assert!(
        sql.starts_with("UNLOAD ('SELECT id, name FROM things WHERE id = 7"),
        "{sql}"
    );
    assert!(
        sql.contains(&format!("TO 's3://results/exports/{request_id}/'")),
        "{sql}"
    );
    assert!(!sql.contains("ALLOWOVERWRITE"), "{sql}");

    // Once RUNNING, a late redelivery only queues another look.
    world
        .queue
        .send(&Message::start(&request_id), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(world.deliver(QueueName::Requests).await, [Delivered::Done]);
    assert_eq!(world.warehouse.statement_count(), 1);
    assert!(world
        .queue
        .waiting(QueueName::Polls)
        .iter()
        .all(|m| m.body.contains(&request_id)));
}

#[tokio::test]
async fn a_statement_the_warehouse_refuses_fails_the_job_and_sends_the_notice() {
    let world = World::new();
    world.warehouse.faults.fail(
        "execute",
        PortError::Rejected("ValidationException: Cluster is not available".into()),
        1,
    );
    let request_id = submit(&world, 1).await;
    assert_eq!(world.deliver(QueueName::Requests).await, [Delivered::Done]);
    let job = world.job(&request_id).await;
    assert_eq!(job.status, JobStatus::Failed);
    assert!(job.error.unwrap().contains("Cluster is not available"));
    world.run_until_quiet(20).await;
    let mails = world.mailer.sent_about(&request_id);
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert!(mails[0].subject.contains("failed"), "{}", mails[0].subject);
    assert_eq!(mails[0].to, ["alice@example.com"]);
}

#[tokio::test]
async fn an_unavailable_warehouse_is_retried_by_delayed_copies_then_given_up() {
    let world = World::new();
    world.warehouse.faults.fail_always(
        "execute",
        PortError::Unavailable("ThrottlingException".into()),
    );
    let request_id = submit(&world, 1).await;
    let mut delays = Vec::new();
    for tries in 1..world.max_receives {
        let outcomes = world.deliver(QueueName::Requests).await;
        assert!(
            matches!(outcomes[..], [Delivered::Requeued(_)]),
            "{tries}: {outcomes:?}"
        );
        assert_eq!(world.job(&request_id).await.status, JobStatus::Queued);
        // The copy is the only message, visible after a delay that doubles.
        let copy = world.queue.waiting(QueueName::Requests);
        assert_eq!(copy.len(), 1, "{copy:?}");
        delays.push((copy[0].visible_at - world.clock.now()) / 1000);
        world.clock.set(copy[0].visible_at);
    }
    assert_eq!(delays, [10, 20, 40, 80]);
    let last = world.deliver(QueueName::Requests).await;
    assert!(matches!(last[..], [Delivered::GaveUp(_)]), "{last:?}");
    let job = world.job(&request_id).await;
    assert_eq!(job.status, JobStatus::Failed);
    assert!(
        job.error.as_deref().unwrap().starts_with(
            "gave up starting the export: dependency unavailable: ThrottlingException"
        ),
        "{job:?}"
    );
    // Nothing was started, and the failure is announced.
    assert_eq!(world.warehouse.statement_count(), 0);
    world.run_until_quiet(20).await;
    assert_eq!(world.mailer.sent_about(&request_id).len(), 1);
}

#[tokio::test]
async fn a_cancel_landing_while_the_statement_starts_cancels_the_statement() {
    let world = World::new();
    let request_id = submit(&world, 3).await;
    let owner = export_core::domain::Owner(ALICE.into());
    // The cancel and the start run side by side, interleaving at every port call.
    let (delivered, cancelled) = tokio::join!(
        world.deliver(QueueName::Requests),
        world.submissions.cancel(&owner, &request_id)
    );
    assert_eq!(delivered, [Delivered::Done]);
    assert_eq!(cancelled.unwrap().status, JobStatus::Cancelled);
    let job = world.job(&request_id).await;
    assert_eq!(job.status, JobStatus::Cancelled);
    let statement = world
        .statement_of(&request_id)
        .expect("the statement was started");
    let status = world.warehouse.describe(&statement).await.unwrap();
    assert_eq!(status.state, StatementState::Aborted);
    world.run_until_quiet(20).await;
    assert!(
        world.mailer.sent().is_empty(),
        "a cancelled job sends no notice"
    );
    assert_eq!(world.job(&request_id).await.status, JobStatus::Cancelled);
}

#[tokio::test]
async fn a_late_restart_is_an_attempt_of_its_own_and_the_earlier_statement_is_ignored() {
    let world = World::new();
    // The statement starts but the write of RUNNING fails, and then the start's messages are
    // lost (a crash past the last retry): the job stays QUEUED, its statement unrecorded.
    let request_id = started_unrecorded(&world, 1).await;
    let first = world.statement_of(&request_id).unwrap();
    for message in world.queue.waiting(QueueName::Requests) {
        world.queue.ack(message.id);
    }
    // Twenty minutes on, past the restart window, the sweep starts the job again: a new
    // client token, so a new statement, writing under a prefix of its own.
    world.clock.advance(Duration::from_secs(1200));
    tick(&world).await;
    assert_eq!(world.deliver(QueueName::Requests).await, [Delivered::Done]);
    let second = world.statement_of(&request_id).unwrap();
    assert_ne!(first, second);
    let sql = world.warehouse.sql(&second).unwrap();
    assert!(
        sql.contains(&format!("TO 's3://results/exports/{request_id}/2/'")),
        "{sql}"
    );
    assert!(!sql.contains("ALLOWOVERWRITE"), "{sql}");
    let job = world.job(&request_id).await;
    assert_eq!(
        (job.status, job.statement_id.as_deref(), job.unload_attempt),
        (JobStatus::Running, Some(second.as_str()), 2)
    );
    // Both statements finish, and the earlier one's event arrives as well: the job takes
    // the output of the statement it follows, and only that.
    world.finish(&first, &[&["1,stale", "2,stale"]]);
    world.finish(&second, &[&["1,one"]]);
    world.announce_statement(&first).await;
    world.announce_statement(&second).await;
    world.run_until_quiet(50).await;
    let job = world.job(&request_id).await;
    assert_eq!(
        (job.status, job.rows, job.statement_id.as_deref()),
        (JobStatus::Succeeded, Some(1), Some(second.as_str()))
    );
    assert_eq!(world.mailer.sent_about(&request_id).len(), 1);
}

#[tokio::test]
async fn a_job_accepted_before_its_dataset_bound_a_parameter_does_not_run() {
    let world = World::new();
    // Recorded as a submission of `supplier_things` was before `supplier` was bound: the
    // request's own supplier, nothing marked bound.
    let mut job = export_core::testing::conformance::queued_job(
        "00000000-0000-4000-8000-000000000001",
        &export_core::domain::Owner("partner-7".into()),
        world.clock.now(),
    );
    job.dataset = "supplier_things".into();
    job.params = serde_json::json!({"supplier": 9, "id": 1})
        .as_object()
        .unwrap()
        .clone();
    job.bound = Vec::new();
    let event = export_core::domain::JobEvent::new(job.created_at, "submitted", "QUEUED", "");
    world.control.create_job(&job, &event, None).await.unwrap();
    world
        .queue
        .send(&Message::start(&job.request_id), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(world.deliver(QueueName::Requests).await, [Delivered::Done]);
    let failed = world.job(&job.request_id).await;
    assert_eq!(failed.status, JobStatus::Failed);
    assert!(
        failed
            .error
            .as_deref()
            .unwrap()
            .contains("now binds parameter 'supplier'"),
        "{failed:?}"
    );
    assert_eq!(world.warehouse.statement_count(), 0);
}
