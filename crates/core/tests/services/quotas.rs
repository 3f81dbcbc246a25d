//! Quotas from the access policy: each one's 429, with `Retry-After` and a code naming it,
//! nothing stored or queued when refused, and the quota's recovery (an export ending, the
//! next day, the rate refilling); the sweep ends what a crash left counted; admins list.

use super::*;
use export_core::clock::Clock;
use export_core::domain::{JobEvent, JobUpdate, Owner, Transition};
use export_core::error::ApiError;
use export_core::ports::{ControlTable, UsageLedger};
use export_core::service::ExportRequest;
use export_core::testing::World;
use http::StatusCode;
use serde_json::Map;
use std::time::Duration;

const DAY_MS: i64 = 86_400_000;

fn owner(name: &str) -> Owner {
    Owner(name.into())
}

async fn try_submit(world: &World, who: &str, id: i64) -> Result<String, ApiError> {
    world
        .submit(who, json!({"dataset": "things", "params": {"id": id}}))
        .await
}

fn assert_over(result: Result<String, ApiError>, code: &str) -> ApiError {
    let e = result.expect_err("over the quota");
    assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS, "{e:?}");
    assert_eq!(e.code, code, "{e:?}");
    assert!(e.retry_after.is_some_and(|s| s > 0), "{e:?}");
    e
}

/// Runs the job to its end: started, its statement finished with `rows`, packaged, notified.
async fn run_to_end(world: &World, request_id: &str, rows: &[&str]) {
    world.deliver(QueueName::Requests).await;
    world.finish_statement(request_id, &[rows]);
    world.announce(request_id).await;
    world.deliver(QueueName::Polls).await;
    let job = world.job(request_id).await;
    assert!(
        job.status.is_terminal() && job.notified_at.is_some(),
        "{job:?}"
    );
}

#[tokio::test]
async fn unfinished_exports_are_limited_and_an_ending_one_makes_room() {
    let world = World::new();
    let who = "limited-unfinished";
    let first = try_submit(&world, who, 1).await.unwrap();
    try_submit(&world, who, 2).await.unwrap();
    let jobs_before = world.control.jobs().len();
    let queued_before = world.queue.waiting(QueueName::Requests).len();
    let e = assert_over(try_submit(&world, who, 3).await, "quota_unfinished_exports");
    assert_eq!(e.retry_after, Some(30));
    // Nothing stored, nothing queued.
    assert_eq!(world.control.jobs().len(), jobs_before);
    assert_eq!(
        world.queue.waiting(QueueName::Requests).len(),
        queued_before
    );
    // Another caller is not held by this one's quota.
    try_submit(&world, ALICE, 4).await.unwrap();

    run_to_end(&world, &first, &["1,one"]).await;
    try_submit(&world, who, 3).await.unwrap();
}

#[tokio::test]
async fn exports_per_day_renew_at_midnight_utc() {
    let world = World::new();
    let who = "limited-daily";
    // The world's clock stands at 1,800,000,000,000 ms: some hours into a UTC day.
    for id in 1..=3 {
        let job = try_submit(&world, who, id).await.unwrap();
        run_to_end(&world, &job, &["1,one"]).await;
    }
    let e = assert_over(try_submit(&world, who, 4).await, "quota_exports_per_day");
    let now = world.clock.now();
    let midnight = (now / DAY_MS + 1) * DAY_MS;
    assert_eq!(e.retry_after, Some(((midnight - now + 999) / 1000) as u64));
    world.clock.set(midnight);
    try_submit(&world, who, 4).await.unwrap();
}

#[tokio::test]
async fn bytes_per_day_count_what_finished_and_stop_the_next_export() {
    let world = World::new();
    let who = "limited-bytes";
    let job = try_submit(&world, who, 1).await.unwrap();
    let rows: Vec<String> = (0..200).map(|i| format!("{i},thing number {i}")).collect();
    let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
    run_to_end(&world, &job, &rows).await;
    let bytes = world.job(&job).await.bytes.unwrap();
    assert!(bytes >= 1_000, "{bytes}");
    let principal = world
        .submissions
        .access
        .principal(&owner(who))
        .await
        .unwrap();
    let view = world.queries.quotas.view(&principal).await.unwrap();
    assert_eq!(view.bytes_per_day.used, bytes);
    assert_eq!(view.bytes_per_day.limit, Some(1_000));
    assert_eq!(view.unfinished_exports.used, 0);
    assert_eq!(view.exports_per_day.used, 1);

    assert_over(try_submit(&world, who, 2).await, "quota_bytes_per_day");
    world.clock.set((world.clock.now() / DAY_MS + 1) * DAY_MS);
    try_submit(&world, who, 2).await.unwrap();
}

#[tokio::test]
async fn lookups_per_second_are_a_bucket_that_refills() {
    let world = World::new();
    let who = owner("limited-lookups");
    let mut params = Map::new();
    params.insert("id".into(), json!(7));
    let look = || world.lookups.lookup(&who, "things", &params, false);
    // A burst of two, then one every half second.
    look().await.unwrap();
    look().await.unwrap();
    let e = look().await.unwrap_err();
    assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(e.code, "quota_lookups_per_second");
    assert_eq!(e.retry_after, Some(1));
    world.clock.advance(Duration::from_millis(500));
    look().await.unwrap();
    assert!(look().await.is_err());
    // Unlimited callers are not counted at all.
    for _ in 0..10 {
        world
            .lookups
            .lookup(&owner(ALICE), "things", &params, false)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_replayed_request_at_the_limit_answers_as_the_first_did() {
    let world = World::new();
    let who = owner("limited-replay");
    let request =
        || ExportRequest::read(json!({"dataset": "things", "params": {"id": 1}})).unwrap();
    world
        .submissions
        .submit(&who, request(), Some("k1"))
        .await
        .unwrap();
    let second = world
        .submissions
        .submit(&who, request(), Some("k2"))
        .await
        .unwrap();
    // At the limit now; the retry of the second (its answer lost) is not refused.
    let replay = world
        .submissions
        .submit(&who, request(), Some("k2"))
        .await
        .unwrap();
    assert!(replay.replayed);
    assert_eq!(replay.request_id, second.request_id);
    let usage = world
        .control
        .usage(&who, world.clock.now() / DAY_MS)
        .await
        .unwrap();
    assert_eq!((usage.unfinished, usage.exports), (2, 2));
}

#[tokio::test]
async fn the_sweep_ends_what_a_crash_left_counted() {
    let world = World::new();
    let who = "limited-crash";
    let job = try_submit(&world, who, 1).await.unwrap();
    try_submit(&world, who, 2).await.unwrap();
    // The job failed, and the process died before its count was ended.
    let failed = Transition::fail(JobStatus::Queued).unwrap();
    let event = JobEvent::new(world.clock.now(), "start", "FAILED", "crashed");
    assert!(world
        .control
        .transition(&job, failed, &JobUpdate::default(), &event)
        .await
        .unwrap());
    assert_over(try_submit(&world, who, 3).await, "quota_unfinished_exports");
    // A charge is left a minute before the sweep may end it.
    world.clock.advance(Duration::from_secs(61));
    for message in world.queue.waiting(QueueName::Polls) {
        world.queue.ack(message.id);
    }
    tick(&world).await;
    try_submit(&world, who, 3).await.unwrap();
}

#[tokio::test]
async fn only_an_admin_lists_another_caller_s_jobs() {
    let world = World::new();
    try_submit(&world, ALICE, 1).await.unwrap();
    let listed = world
        .queries
        .listed_owner(&owner("ops"), ALICE.into())
        .await
        .unwrap();
    let page = world.queries.list(&listed, 10, None).await.unwrap();
    assert_eq!(page.jobs.len(), 1);
    let refused = world
        .queries
        .listed_owner(&owner(BOB), ALICE.into())
        .await
        .unwrap_err();
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.field.as_deref(), Some("owner"));
}
