//! The sweep on the local stack: a job whose start message was lost still finishes, and once
//! settled it is left alone. (Which jobs count as stuck is the control tables' conformance
//! suite, run against each engine; the sweep's decisions are the core's own tests.)

use crate::common::*;
use export_api::JobStatus;
use export_core::ports::QueueName;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn the_sweep_restarts_a_job_whose_start_message_was_lost() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    // No processor yet, so the start message can be taken away before anyone handles it.
    config.processors = 0;
    let first = start_with(dir, config.clone()).await;
    let id = submit_ok(
        &first.alice,
        json!({"dataset": "customers", "params": {"ids": [1, 2]}}),
    )
    .await;
    let store = &first.stack.store;
    let lost = store
        .receive_now(QueueName::Requests, 10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(lost.len(), 1, "{lost:?}");
    store.ack(&lost[0].receipt).await.unwrap();
    assert_eq!(store.depth(QueueName::Requests).await.unwrap(), (0, 0));
    let TestStack { stack, dir, .. } = first;
    stack.stop().await;

    config.processors = 1;
    config.sweep_every = Duration::from_millis(200);
    config.sweep_after = Duration::from_millis(500);
    let second = start_with(dir, config).await;
    let status = wait_done(&second.alice, &id).await;
    assert_eq!(status.summary.status, JobStatus::Succeeded, "{status:?}");
    assert_eq!(status.summary.rows, Some(2));
    assert_eq!(wait_for_mails(&second.stack, &id, 1).await.len(), 1);
    // Settled now: a sweep, once everything in flight is handled, sends nothing for it.
    quiet(&second.stack).await;
    second.stack.sweep().await.unwrap();
    let store = &second.stack.store;
    assert_eq!(store.depth(QueueName::Requests).await.unwrap().0, 0);
    assert_eq!(store.depth(QueueName::Polls).await.unwrap().0, 0);
    let events = second.alice.events(&id).await.unwrap();
    let started = events.events.iter().filter(|e| e.step == "started").count();
    assert_eq!(started, 1, "{events:?}");
    assert_eq!(mails_for(&second.stack, &id).len(), 1);
    second.stack.stop().await;
}
