//! The sweep: which jobs count as stuck (the same contract on SQLite and DynamoDB), and a job
//! whose start message was lost still finishing on the local stack.

use crate::common::*;
use export_core::domain::{
    Archive, Compression, Format, Job, JobEvent, JobStatus, JobUpdate, Millis, Owner,
};
use export_core::ports::{ControlTable, QueueName};
use export_local::sqlite::SqliteStore;
use serde_json::json;
use std::time::Duration;

/// A queued job as the receiver records it, created (and last changed) at `created_at`.
pub fn job(request_id: &str, owner: &str, created_at: Millis) -> Job {
    Job {
        request_id: request_id.into(),
        owner: Owner(owner.into()),
        dataset: "product_detail".into(),
        params: json!({"sku": "FLOWER12"}).as_object().unwrap().clone(),
        format: Format::Csv,
        compression: Compression::Gzip,
        archive: Archive::Zip,
        notify: vec!["a@example.com".into()],
        status: JobStatus::Queued,
        created_at,
        updated_at: created_at,
        statement_id: None,
        rows: None,
        bytes: None,
        archive_object: None,
        error: None,
        notified_at: None,
    }
}

async fn walk(control: &dyn ControlTable, request_id: &str, steps: &[JobStatus], at: Millis) {
    let mut from = JobStatus::Queued;
    for &to in steps {
        let mut event = JobEvent::new("step", to.as_str(), "moved");
        event.at = at;
        assert!(control
            .transition(request_id, from, to, &JobUpdate::default(), &event)
            .await
            .unwrap());
        from = to;
    }
}

fn ids(jobs: &[Job]) -> Vec<&str> {
    jobs.iter().map(|j| j.request_id.as_str()).collect()
}

/// What every control table must answer to the sweep. Timestamps are far in the past, so jobs
/// other tests write to a shared table (stamped now) never fall under the cutoff.
pub async fn unsettled_jobs_contract(control: &dyn ControlTable, prefix: &str) {
    let id = |name: &str| format!("{prefix}-{name}");
    let created = JobEvent::new("submitted", "QUEUED", "accepted");
    for (name, at) in [
        ("queued", 1_000),
        ("running", 1_100),
        ("cancelled", 1_200),
        ("unnotified", 1_300),
        ("notified", 1_400),
        ("failed", 1_500),
    ] {
        let outcome = control
            .create_job(&job(&id(name), "alice", at), &created, None)
            .await
            .unwrap();
        assert_eq!(outcome, export_core::ports::CreateOutcome::Created);
    }
    use JobStatus::*;
    walk(control, &id("running"), &[Running], 2_100).await;
    walk(control, &id("cancelled"), &[Running, Cancelled], 2_200).await;
    walk(
        control,
        &id("unnotified"),
        &[Running, Packaging, Succeeded],
        2_300,
    )
    .await;
    walk(
        control,
        &id("notified"),
        &[Running, Packaging, Succeeded],
        2_400,
    )
    .await;
    walk(control, &id("failed"), &[Failed], 2_500).await;
    assert!(control
        .claim_notification(&id("notified"), 2_450)
        .await
        .unwrap());
    let fresh = job(&id("fresh"), "alice", export_core::domain::now_ms());
    control.create_job(&fresh, &created, None).await.unwrap();

    // Oldest change first; cancelled and notified jobs are settled, the fresh one too young.
    let stuck = control.unsettled_jobs(10_000, 100).await.unwrap();
    assert_eq!(
        ids(&stuck),
        [id("queued"), id("running"), id("unnotified"), id("failed")],
        "{stuck:?}"
    );
    assert_eq!(stuck[1].status, Running);
    let first_two = control.unsettled_jobs(10_000, 2).await.unwrap();
    assert_eq!(ids(&first_two), [id("queued"), id("running")]);
    assert_eq!(
        ids(&control.unsettled_jobs(2_200, 100).await.unwrap()),
        [id("queued"), id("running")]
    );

    // A claimed notice settles the job; a released one (the send failed) unsettles it again.
    assert!(control
        .claim_notification(&id("failed"), 3_000)
        .await
        .unwrap());
    assert!(
        !ids(&control.unsettled_jobs(10_000, 100).await.unwrap()).contains(&id("failed").as_str())
    );
    control.release_notification(&id("failed")).await.unwrap();
    assert!(
        ids(&control.unsettled_jobs(10_000, 100).await.unwrap()).contains(&id("failed").as_str())
    );
}

#[tokio::test]
async fn sqlite_lists_unsettled_jobs_as_the_sweep_needs_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("control.sqlite"), 5).unwrap();
    unsettled_jobs_contract(&store, "s").await;
}

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
    assert_eq!(status["status"], "SUCCEEDED", "{status}");
    assert_eq!(status["rows"], 2);
    assert_eq!(wait_for_mails(&second.stack, &id, 1).await.len(), 1);
    // Settled now: the sweeps that follow leave it alone.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let events = second.alice.events(&id).await.unwrap();
    let started = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["step"] == "started")
        .count();
    assert_eq!(started, 1, "{events}");
    assert_eq!(mails_for(&second.stack, &id).len(), 1);
    second.stack.stop().await;
}
