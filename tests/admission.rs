//! Admission on the local stack: the warehouse runs no more of the product's statements than
//! it has slots (checked from its own statement log), a waiting job shows its place in line,
//! and another caller's job is not kept behind one caller's many.

use crate::common::{config, eventually, start_with, submit_ok, wait_done};
use export_api::JobStatus;
use export_local::warehouse::statements::StatementLog;
use export_local::warehouse::{ClientTokens, CLIENT_TOKEN_LIFETIME};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn two_slots_two_statements_and_turns_across_callers() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    config.admission.slots = Some(2);
    // Long enough that the line forms while the first two run.
    config.statement_delay = Duration::from_millis(800);
    let stack = start_with(dir, config).await;
    let export = |sku: &str| json!({"dataset": "product_detail", "params": {"sku": sku}});

    let mut alices = Vec::new();
    for n in 0..6 {
        alices.push(submit_ok(&stack.alice, export(&format!("FLOWER{}", 10 + n))).await);
    }
    // Four of alice's wait; their places are 0 to 3 once the workers have taken them.
    let last = alices.last().unwrap().clone();
    let place = eventually(
        "alice's last job in line",
        Duration::from_secs(30),
        || async {
            let job = stack.alice.status(&last).await.unwrap();
            match (job.summary.status, job.queue_position) {
                (JobStatus::Queued, Some(place)) => Ok(place),
                seen => Err(seen),
            }
        },
    )
    .await;
    assert!(place <= 3, "{place}");

    // Bob's one job goes before alice's waiting ones: behind at most one of hers.
    let bobs = submit_ok(&stack.bob, export("FLOWER20")).await;
    let bob_place = eventually(
        "bob's job in line or running",
        Duration::from_secs(30),
        || async {
            let job = stack.bob.status(&bobs).await.unwrap();
            match (job.summary.status, job.queue_position) {
                (JobStatus::Queued, Some(place)) => Ok(Some(place)),
                (JobStatus::Queued, None) => Err("not yet in line"),
                _ => Ok(None),
            }
        },
    )
    .await;
    assert!(
        bob_place.unwrap_or(0) <= 1,
        "bob waits behind {bob_place:?}"
    );
    // Another caller's job is not theirs to see, nor its place.
    assert!(stack.bob.status(&last).await.is_err());

    let bob_done = wait_done(&stack.bob, &bobs).await;
    assert_eq!(bob_done.summary.status, JobStatus::Succeeded);
    for id in &alices {
        let job = wait_done(&stack.alice, id).await;
        assert_eq!(job.summary.status, JobStatus::Succeeded, "{id}");
        assert_eq!(job.queue_position, None);
    }

    // The warehouse's own log: never more than two of them at once.
    let log = StatementLog::open(
        &stack.dir.path().join("warehouse").join("statements.sqlite"),
        ClientTokens {
            clock: Arc::new(export_core::clock::SystemClock),
            lifetime: CLIENT_TOKEN_LIFETIME,
        },
    )
    .unwrap();
    assert_eq!(log.peak_unloads().await.unwrap(), 2);
}
