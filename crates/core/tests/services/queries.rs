//! Queries: pages of a caller's jobs, and links whose expiry is the clock's.

use super::*;
use export_core::domain::{JobStatus, Owner};
use export_core::testing::World;
use http::StatusCode;
use std::time::Duration;

#[tokio::test]
async fn a_cursor_the_api_did_not_issue_is_a_400_naming_it() {
    let world = World::new();
    let alice = Owner(ALICE.into());
    for bad in [
        "junk",
        "1795395230806.0b6f6d2e-6c1a-4c58-9d55-0b8c7f2e9a11",
        "",
        "%%%",
    ] {
        let e = world.queries.list(&alice, 10, Some(bad)).await.unwrap_err();
        assert_eq!(
            (e.status, e.code, e.field.as_deref()),
            (StatusCode::BAD_REQUEST, "invalid_request", Some("cursor")),
            "{bad:?}"
        );
    }
}

#[tokio::test]
async fn pages_go_newest_first_and_only_show_the_caller_s_jobs() {
    let world = World::new();
    let mut ids = Vec::new();
    for id in 0..5 {
        ids.push(submit(&world, id).await);
        world.clock.advance(Duration::from_millis(10));
    }
    world
        .submit(
            BOB,
            serde_json::json!({"dataset": "things", "params": {"id": 9}}),
        )
        .await
        .unwrap();
    ids.reverse();
    let alice = Owner(ALICE.into());
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let page = world
            .queries
            .list(&alice, 2, cursor.as_deref())
            .await
            .unwrap();
        seen.extend(page.jobs.iter().map(|j| j.request_id.clone()));
        match page.next {
            Some(next) => cursor = Some(next.encode()),
            None => break,
        }
    }
    assert_eq!(seen, ids);
}

#[tokio::test]
async fn a_link_expires_its_lifetime_after_it_is_made() {
    let world = World::new();
    let request_id = started(&world, 1).await;
    world.finish_statement(&request_id, &[&["1,one"]]);
    world.run_until_quiet(20).await;
    let job = world.job(&request_id).await;
    assert_eq!(job.status, JobStatus::Succeeded);
    world.clock.advance(Duration::from_secs(86_400));
    let link = world.queries.download_link(&job).await.unwrap();
    assert_eq!(
        link.expires_at,
        export_core::clock::Clock::now(world.clock.as_ref()) + 3_600_000
    );
    assert!(link.url.contains("expires_in=3600"), "{}", link.url);
    assert_eq!(link.file_name, format!("things-{request_id}.zip"));
}

#[tokio::test]
async fn a_link_signed_with_credentials_that_expire_sooner_says_when_it_stops_working() {
    let world = World::new();
    let request_id = started(&world, 1).await;
    world.finish_statement(&request_id, &[&["1,one"]]);
    world.run_until_quiet(20).await;
    let job = world.job(&request_id).await;
    // The signer's credentials expire in twenty minutes, before the link's hour is up.
    let now = export_core::clock::Clock::now(world.clock.as_ref());
    world
        .objects
        .sign_with_credentials_expiring_at(now + 1_200_000);
    let link = world.queries.download_link(&job).await.unwrap();
    assert_eq!(link.expires_at, now + 1_200_000);
    // Credentials that outlive the link's hour leave it at its hour.
    world
        .objects
        .sign_with_credentials_expiring_at(now + 7_200_000);
    let link = world.queries.download_link(&job).await.unwrap();
    assert_eq!(link.expires_at, now + 3_600_000);
}

/// The buckets forget a job's files days before the job's record expires: its links answer
/// 410 (its status, marked expired, is shown through the status function in the AWS tests).
#[tokio::test]
async fn a_job_whose_files_expired_answers_410_for_its_links() {
    let world = World::new();
    let request_id = started(&world, 1).await;
    world.finish_statement(&request_id, &[&["1,one"]]);
    world.run_until_quiet(20).await;
    let job = world.job(&request_id).await;
    assert_eq!(job.status, JobStatus::Succeeded);
    assert!(world.queries.download_link(&job).await.is_ok());
    // A look at the archive that fails says nothing of it: the link is signed all the same.
    world.objects.faults.fail(
        "size_of",
        export_core::ports::PortError::Unavailable("throttled".into()),
        1,
    );
    assert!(world.queries.download_link(&job).await.is_ok());
    // The downloads bucket's lifecycle rule removes the archive.
    let archive = job.archive_object.clone().unwrap();
    export_core::ports::ObjectStore::delete(world.objects.as_ref(), &archive)
        .await
        .unwrap();
    let e = world.queries.download_link(&job).await.unwrap_err();
    assert_eq!((e.status, e.code), (StatusCode::GONE, "expired"), "{e}");
    assert!(e.message.contains("expired"), "{}", e.message);
}

/// Parts handed out as they are live in the results bucket, which forgets them first.
#[tokio::test]
async fn parts_whose_manifest_expired_answer_410() {
    let world = World::new();
    let request_id = world
        .submit(
            ALICE,
            serde_json::json!({"dataset": "things", "params": {"id": 1}, "archive": "none"}),
        )
        .await
        .unwrap();
    world.deliver(QueueName::Requests).await;
    world.finish_statement(&request_id, &[&["1,one"], &["2,two"]]);
    world.announce(&request_id).await;
    world.run_until_quiet(20).await;
    let job = world.job(&request_id).await;
    assert_eq!(job.status, JobStatus::Succeeded, "{job:?}");
    assert_eq!(world.queries.parts(&job, 10, None).await.unwrap().total, 2);
    let manifest = job.archive_object.clone().unwrap();
    export_core::ports::ObjectStore::delete(world.objects.as_ref(), &manifest)
        .await
        .unwrap();
    let e = world.queries.parts(&job, 10, None).await.unwrap_err();
    assert_eq!((e.status, e.code), (StatusCode::GONE, "expired"), "{e}");
    let e = world.queries.download_link(&job).await.unwrap_err();
    assert_eq!(e.status, StatusCode::GONE, "{e}");
}
