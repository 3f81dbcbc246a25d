//! The services over the fakes of `export_core::testing`: what each does with redelivered
//! messages, duplicate events, expired leases, lost messages and failing dependencies.

mod access;
mod admission;
mod audit;
mod deliveries;
mod lookups;
mod poller;
mod processor;
mod queries;
mod quotas;
mod submissions;
mod subscriptions;
mod sweep;

use export_core::domain::JobStatus;
use export_core::ports::QueueName;
use export_core::service::Delivered;
use export_core::testing::World;
use serde_json::json;

pub const ALICE: &str = "arn:aws:iam::123456789012:user/alice";
pub const BOB: &str = "arn:aws:iam::123456789012:user/bob";

/// Submits an export of thing `id` as alice, with a notice to her.
pub async fn submit(world: &World, id: i64) -> String {
    world
        .submit(
            ALICE,
            json!({"dataset": "things", "params": {"id": id}, "notify": ["alice@example.com"]}),
        )
        .await
        .expect("accepted")
}

/// Submits and has the processor start it: the job is RUNNING with its statement.
pub async fn started(world: &World, id: i64) -> String {
    let request_id = submit(world, id).await;
    assert_eq!(world.deliver(QueueName::Requests).await, [Delivered::Done]);
    assert_eq!(world.job(&request_id).await.status, JobStatus::Running);
    request_id
}

/// Submits; the processor starts the statement, but its write of RUNNING fails once, so the
/// start is to be tried again: the job is QUEUED, its statement started and unrecorded.
pub async fn started_unrecorded(world: &World, id: i64) -> String {
    let request_id = submit(world, id).await;
    world.control.faults.fail(
        "transition",
        export_core::ports::PortError::Unavailable("throttled".into()),
        1,
    );
    let outcomes = world.deliver(QueueName::Requests).await;
    assert!(
        matches!(outcomes[..], [Delivered::Requeued(_)]),
        "{outcomes:?}"
    );
    assert_eq!(world.job(&request_id).await.status, JobStatus::Queued);
    request_id
}

/// The schedule's tick, handled: the sweep runs once.
pub async fn tick(world: &World) {
    use export_core::messages::{Message, PollMessage};
    use export_core::ports::QueueSender;
    world
        .queue
        .send(
            &Message::Poll(PollMessage::Sweep),
            std::time::Duration::ZERO,
        )
        .await
        .unwrap();
    assert_eq!(world.deliver(QueueName::Polls).await, [Delivered::Done]);
}

/// How many times `step` is in the job's history.
pub async fn count(world: &World, request_id: &str, step: &str) -> usize {
    world
        .steps(request_id)
        .await
        .iter()
        .filter(|s| *s == step)
        .count()
}
