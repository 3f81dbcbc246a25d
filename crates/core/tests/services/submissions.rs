//! Submissions: what is recorded, what is refused, and cancels.

use super::*;
use export_core::domain::{JobStatus, Owner};
use export_core::ports::{PortError, QueueName, StatementState, Warehouse};
use export_core::service::ExportRequest;
use export_core::testing::World;
use http::StatusCode;
use serde_json::json;

fn request(id: i64) -> ExportRequest {
    ExportRequest::read(json!({"dataset": "things", "params": {"id": id}})).unwrap()
}

#[tokio::test]
async fn an_idempotency_key_returns_the_same_job_and_refuses_another_request() {
    let world = World::new();
    let alice = Owner(ALICE.into());
    let first = world
        .submissions
        .submit(&alice, request(1), Some("key-1"))
        .await
        .unwrap();
    let again = world
        .submissions
        .submit(&alice, request(1), Some("key-1"))
        .await
        .unwrap();
    assert_eq!(
        (again.request_id.as_str(), again.replayed),
        (first.request_id.as_str(), true)
    );
    let other = world
        .submissions
        .submit(&alice, request(2), Some("key-1"))
        .await
        .unwrap_err();
    assert_eq!(
        (other.status, other.code),
        (StatusCode::CONFLICT, "idempotency_key_reused")
    );
    // Bob's key of the same name is his own.
    let bob = world
        .submissions
        .submit(&Owner(BOB.into()), request(1), Some("key-1"))
        .await
        .unwrap();
    assert_ne!(bob.request_id, first.request_id);
    assert_eq!(world.queue.waiting(QueueName::Requests).len(), 2);
}

#[tokio::test]
async fn a_job_that_cannot_be_queued_leaves_nothing_behind() {
    let world = World::new();
    let alice = Owner(ALICE.into());
    world
        .queue
        .faults
        .fail("send", PortError::Unavailable("SQS is down".into()), 1);
    let refused = world
        .submissions
        .submit(&alice, request(1), Some("key-2"))
        .await
        .unwrap_err();
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(world.control.jobs().is_empty());
    assert!(world.queue.is_empty());
    // The caller's retry with the same key goes through.
    let retried = world
        .submissions
        .submit(&alice, request(1), Some("key-2"))
        .await
        .unwrap();
    assert!(!retried.replayed);
    assert_eq!(world.control.jobs().len(), 1);
}

#[tokio::test]
async fn invalid_parameters_are_refused_before_anything_is_written() {
    let world = World::new();
    let refused = world
        .submit(
            ALICE,
            json!({"dataset": "things", "params": {"id": "seven"}}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        (refused.status, refused.field.as_deref()),
        (StatusCode::BAD_REQUEST, Some("params.id"))
    );
    let unknown = world
        .submit(ALICE, json!({"dataset": "nothing"}))
        .await
        .unwrap_err();
    assert_eq!(unknown.field.as_deref(), Some("dataset"));
    assert!(world.control.jobs().is_empty());
    assert!(world.queue.is_empty());
}

#[tokio::test]
async fn a_cancel_stops_the_running_statement_and_a_finished_job_refuses_one() {
    let world = World::new();
    let request_id = started(&world, 1).await;
    let bob = world
        .submissions
        .cancel(&Owner(BOB.into()), &request_id)
        .await
        .unwrap_err();
    assert_eq!(
        bob.status,
        StatusCode::NOT_FOUND,
        "someone else's job is not found"
    );
    let alice = Owner(ALICE.into());
    let cancelled = world.submissions.cancel(&alice, &request_id).await.unwrap();
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    let statement = world.statement_of(&request_id).unwrap();
    assert_eq!(
        world.warehouse.describe(&statement).await.unwrap().state,
        StatementState::Aborted
    );
    assert_eq!(
        world.steps(&request_id).await,
        ["submitted", "started", "cancelled", "statement_cancelled"]
    );
    let again = world
        .submissions
        .cancel(&alice, &request_id)
        .await
        .unwrap_err();
    assert_eq!(
        (again.status, again.code),
        (StatusCode::CONFLICT, "already_finished")
    );
    // The follow-ups still queued find a cancelled job and leave it so.
    world.run_until_quiet(20).await;
    assert_eq!(world.job(&request_id).await.status, JobStatus::Cancelled);
    assert!(world.mailer.sent().is_empty());
}
