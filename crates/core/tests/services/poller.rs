//! The poller: a statement followed to its end however its news arrives, packaging that
//! survives a dead packager, and the one email, retried when the mailer fails.

use super::*;
use export_core::domain::{JobStatus, ObjectRef};
use export_core::messages::Message;
use export_core::ports::{PortError, QueueSender, StatementState};
use export_core::testing::World;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn the_statement_event_racing_follow_ups_finishes_the_job_once() {
    let world = World::new();
    let request_id = started(&world, 7).await;
    world.finish_statement(&request_id, &[&["7,seven"], &["8,eight"]]);
    world.announce(&request_id).await;
    // Duplicates of the processor's follow-up, as at-least-once delivery may hand over.
    for _ in 0..2 {
        world
            .queue
            .send(&Message::follow_up(&request_id, Some(0)), Duration::ZERO)
            .await
            .unwrap();
    }
    world.clock.advance(Duration::from_secs(5));
    let outcomes = world.deliver_at_once(QueueName::Polls).await;
    assert_eq!(outcomes.len(), 4, "the event and three follow-ups");
    assert!(outcomes.iter().all(Delivered::is_done), "{outcomes:?}");
    let job = world.job(&request_id).await;
    assert_eq!(job.status, JobStatus::Succeeded, "{job:?}");
    assert_eq!(job.rows, Some(2));
    for step in ["finished", "packaged", "notified"] {
        assert_eq!(count(&world, &request_id, step).await, 1, "{step}");
    }
    let mails = world.mailer.sent_about(&request_id);
    assert_eq!(mails.len(), 1);
    assert!(
        mails[0].text.contains("memory://downloads/archives/"),
        "{}",
        mails[0].text
    );
    // The archive holds both parts, named for the dataset.
    let archive = world
        .objects
        .read(job.archive_object.as_ref().unwrap())
        .unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(archive.to_vec())).unwrap();
    assert_eq!(zip.len(), 2);
    assert_eq!(zip.by_index(0).unwrap().name().unwrap(), "things-0000.csv");
    world.run_until_quiet(20).await;
    assert_eq!(world.mailer.sent_about(&request_id).len(), 1);
}

#[tokio::test]
async fn follow_ups_back_off_while_the_statement_runs() {
    let world = World::new();
    let request_id = started(&world, 1).await;
    let statement = world.statement_of(&request_id).unwrap();
    world
        .warehouse
        .set_state(&statement, StatementState::Started, None, None);
    let mut delays = Vec::new();
    for _ in 0..6 {
        let next = world.queue.next_visible_at().unwrap();
        world.clock.set(next);
        assert_eq!(world.deliver(QueueName::Polls).await, [Delivered::Done]);
        let waiting = world.queue.waiting(QueueName::Polls);
        assert_eq!(waiting.len(), 1, "one chain: {waiting:?}");
        delays.push((waiting[0].visible_at - next) / 1000);
    }
    // 5 s doubled per attempt, capped at 60 s.
    assert_eq!(delays, [10, 20, 40, 60, 60, 60]);
    // A look without an attempt (the sweep's, or an event while running) starts no chain.
    world
        .queue
        .send(&Message::follow_up(&request_id, None), Duration::ZERO)
        .await
        .unwrap();
    world.deliver(QueueName::Polls).await;
    assert_eq!(world.queue.waiting(QueueName::Polls).len(), 1);
}

#[tokio::test]
async fn a_packager_whose_lease_expired_is_replaced_and_only_one_announces() {
    let world = World::new();
    let request_id = started(&world, 1).await;
    world.finish_statement(&request_id, &[&["1,one"]]);
    // The first packager stops mid-archive (its first read is held).
    let hold = world.objects.hold_next_get();
    world.clock.advance(Duration::from_secs(5));
    let first = {
        let poller = Arc::clone(&world.poller);
        let message = world
            .queue
            .receive(QueueName::Polls, world.visibility)
            .remove(0);
        // Its message is gone with it (the packager's process died holding it).
        world.queue.ack(message.id);
        tokio::spawn(async move { poller.handle(&message.body).await })
    };
    for _ in 0..1000 {
        if world.job(&request_id).await.status == JobStatus::Packaging {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(world.job(&request_id).await.status, JobStatus::Packaging);

    // Within the lease, a look leaves the packager alone.
    let look = Message::follow_up(&request_id, None);
    world.clock.advance(Duration::from_secs(60));
    world.queue.send(&look, Duration::ZERO).await.unwrap();
    assert_eq!(world.deliver(QueueName::Polls).await, [Delivered::Done]);
    assert_eq!(count(&world, &request_id, "packaged").await, 0);

    // Past it, the next look packages again and announces.
    world.clock.advance(Duration::from_secs(600));
    world.queue.send(&look, Duration::ZERO).await.unwrap();
    assert_eq!(world.deliver(QueueName::Polls).await, [Delivered::Done]);
    assert_eq!(world.job(&request_id).await.status, JobStatus::Succeeded);
    assert_eq!(world.mailer.sent_about(&request_id).len(), 1);

    // The first packager comes back, writes the same archive, and announces nothing.
    hold.release();
    first.await.unwrap().unwrap();
    assert_eq!(count(&world, &request_id, "packaged").await, 1);
    assert_eq!(count(&world, &request_id, "notified").await, 1);
    assert_eq!(world.mailer.sent_about(&request_id).len(), 1);
}

#[tokio::test]
async fn a_mail_that_fails_is_retried_until_sent_once() {
    let world = World::new();
    world
        .mailer
        .faults
        .fail("send", PortError::Unavailable("SES: Throttling".into()), 2);
    let request_id = started(&world, 1).await;
    world.finish_statement(&request_id, &[&["1,one"]]);
    world.clock.advance(Duration::from_secs(5));
    let first = world.deliver(QueueName::Polls).await;
    assert!(matches!(first[..], [Delivered::Requeued(_)]), "{first:?}");
    // The job is done whatever the mail does; the claim was released for the retry.
    let job = world.job(&request_id).await;
    assert_eq!((job.status, job.notified_at), (JobStatus::Succeeded, None));
    world.clock.set(world.queue.next_visible_at().unwrap());
    let second = world.deliver(QueueName::Polls).await;
    assert!(matches!(second[..], [Delivered::Requeued(_)]), "{second:?}");
    world.clock.set(world.queue.next_visible_at().unwrap());
    assert_eq!(world.deliver(QueueName::Polls).await, [Delivered::Done]);
    assert_eq!(world.mailer.sent_about(&request_id).len(), 1);
    let events = world
        .queries
        .events(&export_core::domain::Owner(ALICE.into()), &request_id)
        .await
        .unwrap();
    let notices: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e.step == "notified")
        .map(|e| (e.outcome.as_str(), e.message.as_str()))
        .collect();
    assert_eq!(notices.len(), 3, "{notices:?}");
    assert!(notices[..2]
        .iter()
        .all(|(o, m)| *o == "error" && m.contains("Throttling")));
    assert_eq!(notices[2].0, "ok");
    assert!(world.job(&request_id).await.notified_at.is_some());
}

#[tokio::test]
async fn a_failed_statement_fails_the_job_with_its_error_and_one_notice() {
    let world = World::new();
    let request_id = started(&world, 1).await;
    let statement = world.statement_of(&request_id).unwrap();
    world.warehouse.set_state(
        &statement,
        StatementState::Failed,
        None,
        Some("ERROR: relation \"things\" does not exist"),
    );
    world.announce(&request_id).await;
    world.run_until_quiet(20).await;
    let job = world.job(&request_id).await;
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(
        job.error.as_deref(),
        Some("ERROR: relation \"things\" does not exist")
    );
    let mails = world.mailer.sent_about(&request_id);
    assert_eq!(mails.len(), 1);
    assert!(mails[0].text.contains("relation \"things\" does not exist"));
    assert!(
        !mails[0].html.contains("\"things\""),
        "escaped: {}",
        mails[0].html
    );
}

#[tokio::test]
async fn a_statement_the_warehouse_forgot_fails_the_job() {
    let world = World::new();
    let request_id = started(&world, 1).await;
    world
        .warehouse
        .forget(&world.statement_of(&request_id).unwrap());
    world.run_until_quiet(20).await;
    let job = world.job(&request_id).await;
    assert_eq!(job.status, JobStatus::Failed);
    assert!(job.error.unwrap().contains("no longer knows statement"));
}

#[tokio::test]
async fn the_poller_gives_up_on_the_last_delivery() {
    let world = World::new();
    let request_id = started(&world, 1).await;
    world
        .warehouse
        .faults
        .fail_always("describe", PortError::Unavailable("timed out".into()));
    let mut outcomes = Vec::new();
    for _ in 0..world.max_receives {
        world.clock.set(world.queue.next_visible_at().unwrap());
        outcomes.extend(world.deliver(QueueName::Polls).await);
    }
    assert!(
        matches!(outcomes.last(), Some(Delivered::GaveUp(_))),
        "{outcomes:?}"
    );
    let job = world.job(&request_id).await;
    assert_eq!(job.status, JobStatus::Failed);
    assert!(job
        .error
        .unwrap()
        .starts_with("gave up following the export: dependency unavailable: timed out"));
    assert_eq!(world.mailer.sent_about(&request_id).len(), 1);
}

/// The Data API's quotas are the account's, not the job's: a follow-up whose look is
/// throttled looks again later as a running statement's would, and never counts as a failed
/// try, however many there are.
#[tokio::test]
async fn throttled_looks_at_a_running_statement_never_give_up_on_its_job() {
    let world = World::new();
    let request_id = started(&world, 1).await;
    world.warehouse.faults.fail_always(
        "describe",
        PortError::Throttled("DescribeStatement: ThrottlingException: Rate exceeded".into()),
    );
    for _ in 0..world.max_receives * 3 {
        world.clock.set(world.queue.next_visible_at().unwrap());
        assert_eq!(world.deliver(QueueName::Polls).await, [Delivered::Done]);
        assert_eq!(world.queue.waiting(QueueName::Polls).len(), 1, "one chain");
    }
    assert_eq!(world.job(&request_id).await.status, JobStatus::Running);
    world.warehouse.faults.clear("describe");
    world.finish_statement(&request_id, &[&["1,one"]]);
    world.clock.set(world.queue.next_visible_at().unwrap());
    world.run_until_quiet(20).await;
    assert_eq!(world.job(&request_id).await.status, JobStatus::Succeeded);
}

#[tokio::test]
async fn an_event_that_overtakes_the_processor_records_the_start_itself() {
    let world = World::new();
    // The processor starts the statement, but its write of RUNNING fails.
    let request_id = started_unrecorded(&world, 1).await;
    // The statement ends, and its event arrives first.
    world.finish_statement(&request_id, &[&["1,one"]]);
    world.announce(&request_id).await;
    assert_eq!(world.deliver(QueueName::Polls).await, [Delivered::Done]);
    assert_eq!(world.job(&request_id).await.status, JobStatus::Succeeded);
    // The start's redelivery finds the job done and starts nothing.
    world.run_until_quiet(20).await;
    assert_eq!(count(&world, &request_id, "started").await, 1);
    assert_eq!(world.warehouse.statement_count(), 1);
    assert_eq!(world.mailer.sent_about(&request_id).len(), 1);
}

/// The event that overtook the processor is the only news of a statement no follow-up chain
/// follows: if its look is throttled, a chain starts, so the job is not left to the sweep.
#[tokio::test]
async fn a_throttled_look_at_an_event_starts_a_follow_up_chain() {
    let world = World::new();
    let request_id = started_unrecorded(&world, 1).await;
    world.finish_statement(&request_id, &[&["1,one"]]);
    world.announce(&request_id).await;
    world.warehouse.faults.fail(
        "describe",
        PortError::Throttled("DescribeStatement: ThrottlingException".into()),
        1,
    );
    let polls_before = world.queue.waiting(QueueName::Polls).len();
    assert_eq!(world.deliver(QueueName::Polls).await, [Delivered::Done]);
    let waiting = world.queue.waiting(QueueName::Polls);
    assert_eq!(
        waiting.len(),
        polls_before,
        "the event gone, a follow-up in its place"
    );
    assert!(
        waiting.iter().any(|m| m.body.contains("\"attempt\"")),
        "{waiting:?}"
    );
    world.run_until_quiet(20).await;
    assert_eq!(world.job(&request_id).await.status, JobStatus::Succeeded);
    assert_eq!(world.mailer.sent_about(&request_id).len(), 1);
}

#[tokio::test]
async fn a_manifest_pointing_outside_the_job_fails_it() {
    let world = World::new();
    let request_id = started(&world, 1).await;
    world.finish_statement(&request_id, &[&["1,one"]]);
    let prefix = world.job_prefix(&request_id);
    let manifest = ObjectRef::new(&prefix.bucket, format!("{}manifest", prefix.key));
    world.objects.insert(
        &manifest,
        r#"{"entries":[{"url":"s3://results/exports/someone-else/0000_part_00"}]}"#,
    );
    world.run_until_quiet(20).await;
    let job = world.job(&request_id).await;
    assert_eq!(job.status, JobStatus::Failed);
    assert!(job.error.unwrap().contains("is outside"));
}

#[tokio::test]
async fn looks_racing_at_a_job_whose_notice_is_due_send_one_mail() {
    let world = World::new();
    world
        .mailer
        .faults
        .fail("send", PortError::Unavailable("SES: Throttling".into()), 1);
    let request_id = started(&world, 1).await;
    world.finish_statement(&request_id, &[&["1,one"]]);
    world.clock.advance(Duration::from_secs(5));
    let first = world.deliver(QueueName::Polls).await;
    assert!(matches!(first[..], [Delivered::Requeued(_)]), "{first:?}");
    world.clock.set(world.queue.next_visible_at().unwrap());
    // The retried follow-up, the sweep's look and a late event, all at once.
    world
        .queue
        .send(&Message::follow_up(&request_id, None), Duration::ZERO)
        .await
        .unwrap();
    world.announce(&request_id).await;
    let outcomes = world.deliver_at_once(QueueName::Polls).await;
    assert_eq!(outcomes.len(), 3);
    assert!(outcomes.iter().all(Delivered::is_done), "{outcomes:?}");
    assert_eq!(world.mailer.sent_about(&request_id).len(), 1);
}

async fn checkpoint(
    world: &World,
    request_id: &str,
) -> Option<export_core::ports::SavedCheckpoint> {
    use export_core::ports::ControlTable;
    world.control.checkpoint(request_id).await.unwrap()
}

/// Finishes the job's statement with `parts` parts of `rows` rows each: enough, at a thousand
/// rows, to fill several of the world's upload parts.
fn finish_with_rows(world: &World, request_id: &str, parts: usize, rows: usize) {
    let parts: Vec<Vec<String>> = (0..parts)
        .map(|p| {
            (0..rows)
                .map(|i| format!("{p}{i:05},name of thing {i} in part {p}"))
                .collect()
        })
        .collect();
    let parts: Vec<Vec<&str>> = parts
        .iter()
        .map(|p| p.iter().map(String::as_str).collect())
        .collect();
    let parts: Vec<&[&str]> = parts.iter().map(Vec::as_slice).collect();
    world.finish_statement(request_id, &parts);
}

#[tokio::test]
async fn packaging_out_of_time_goes_on_in_continuations_and_announces_once() {
    // Every message's time is up at once: each run packages one part, then hands on.
    let world = World::with_packaging(|p| p.budget = Some(Duration::ZERO));
    let request_id = started(&world, 7).await;
    finish_with_rows(&world, &request_id, 4, 1000);
    world.announce(&request_id).await;
    assert_eq!(world.deliver(QueueName::Polls).await, [Delivered::Done]);
    let job = world.job(&request_id).await;
    assert_eq!(job.status, JobStatus::Packaging);
    let saved = checkpoint(&world, &request_id).await.expect("a checkpoint");
    assert_eq!(saved.seq, 1);
    let waiting = world.queue.waiting(QueueName::Polls);
    assert!(
        waiting.iter().any(|m| m.body.contains("\"resume\":1")),
        "no continuation: {waiting:?}"
    );
    let mut rounds = 0;
    while world.job(&request_id).await.status == JobStatus::Packaging {
        rounds += 1;
        assert!(rounds < 20, "packaging never ended");
        world.deliver(QueueName::Polls).await;
        // A stale duplicate of the first continuation does nothing.
        world
            .queue
            .send(&Message::resume(&request_id, 1), Duration::ZERO)
            .await
            .unwrap();
        world.deliver(QueueName::Polls).await;
    }
    world.run_until_quiet(20).await;
    let job = world.job(&request_id).await;
    assert_eq!(job.status, JobStatus::Succeeded, "{job:?}");
    assert_eq!(job.rows, Some(4000));
    assert_eq!(count(&world, &request_id, "packaged").await, 1);
    assert_eq!(world.mailer.sent_about(&request_id).len(), 1);
    assert!(checkpoint(&world, &request_id).await.is_none());
    assert_eq!(world.objects.open_uploads(), 0);
    assert!(world
        .objects
        .keys(
            export_core::testing::DOWNLOADS_BUCKET,
            &format!("archives/{request_id}/staging/")
        )
        .is_empty());
    let archive = world
        .objects
        .read(job.archive_object.as_ref().unwrap())
        .unwrap();
    let zip = zip::ZipArchive::new(std::io::Cursor::new(archive.to_vec())).unwrap();
    assert_eq!(zip.len(), 4);
    assert!(
        archive.len() > 2 * export_core::testing::WORLD_PART_SIZE,
        "several upload parts: {} bytes",
        archive.len()
    );
}

#[tokio::test]
async fn a_packager_that_stops_beating_is_replaced_from_its_checkpoint() {
    let world = World::with_packaging(|p| p.budget = Some(Duration::ZERO));
    let request_id = started(&world, 7).await;
    finish_with_rows(&world, &request_id, 3, 200);
    world.announce(&request_id).await;
    world.deliver(QueueName::Polls).await;
    // The continuation is lost (its invocation died before sending, say).
    for lost in world.queue.receive(QueueName::Polls, Duration::ZERO) {
        world.queue.ack(lost.id);
    }
    // Within the lease, a look does nothing; past it, the sweep's look carries on.
    world.clock.advance(Duration::from_secs(60));
    world
        .queue
        .send(&Message::follow_up(&request_id, None), Duration::ZERO)
        .await
        .unwrap();
    world.deliver(QueueName::Polls).await;
    assert_eq!(checkpoint(&world, &request_id).await.unwrap().seq, 1);
    world.clock.advance(Duration::from_secs(3600));
    world
        .queue
        .send(
            &Message::Poll(export_core::messages::PollMessage::Sweep),
            Duration::ZERO,
        )
        .await
        .unwrap();
    world.run_until_quiet(30).await;
    let job = world.job(&request_id).await;
    assert_eq!(job.status, JobStatus::Succeeded, "{job:?}");
    assert_eq!(world.mailer.sent_about(&request_id).len(), 1);
}

#[tokio::test]
async fn parts_handed_out_as_they_are_need_no_packaging() {
    let world = World::new();
    let request_id = world
        .submit(
            ALICE,
            serde_json::json!({"dataset": "things", "params": {"id": 3}, "archive": "none",
                               "notify": ["alice@example.com"]}),
        )
        .await
        .unwrap();
    world.deliver(QueueName::Requests).await;
    finish_with_rows(&world, &request_id, 25, 2);
    world.announce(&request_id).await;
    world.run_until_quiet(10).await;
    let job = world.job(&request_id).await;
    assert_eq!(job.status, JobStatus::Succeeded, "{job:?}");
    assert_eq!(job.rows, Some(50));
    assert!(job
        .archive_object
        .as_ref()
        .unwrap()
        .key
        .ends_with("/manifest"));
    assert!(
        world
            .objects
            .keys(export_core::testing::DOWNLOADS_BUCKET, "")
            .is_empty(),
        "no archive"
    );
    // The mail links the first twenty parts and points at the rest.
    let mail = &world.mailer.sent_about(&request_id)[0];
    assert!(
        mail.text.starts_with("Your export is ready: 25 parts"),
        "{}",
        mail.text
    );
    assert_eq!(
        mail.text.matches("memory://results/").count(),
        20,
        "{}",
        mail.text
    );
    assert!(mail.text.contains("… and 5 more."), "{}", mail.text);
    // Paged, with a fresh link each, in the manifest's order.
    let owner = export_core::domain::Owner(ALICE.into());
    let job = world.queries.job(&owner, &request_id).await.unwrap();
    let first = world.queries.parts(&job, 10, None).await.unwrap();
    assert_eq!((first.total, first.parts.len()), (25, 10));
    assert_eq!(first.parts[0].name, "things-0000.csv");
    assert_eq!(first.parts[0].rows, 2);
    let cursor = first.next_cursor.clone().unwrap();
    let last = world.queries.parts(&job, 20, Some(&cursor)).await.unwrap();
    assert_eq!(last.parts.len(), 15);
    assert_eq!(last.parts[14].index, 24);
    assert_eq!(last.next_cursor, None);
    for made_up in ["0", "25", "x", "+3", "03"] {
        let err = world
            .queries
            .parts(&job, 10, Some(made_up))
            .await
            .unwrap_err();
        assert_eq!(err.field.as_deref(), Some("cursor"), "{made_up}");
    }
    // Many parts: no single download, a pointer to the list instead.
    let err = world.queries.download_link(&job).await.unwrap_err();
    assert_eq!(err.code, "several_parts");
}

#[tokio::test]
async fn thousands_of_parts_are_listed_a_page_at_a_time() {
    let world = World::new();
    let request_id = world
        .submit(
            ALICE,
            serde_json::json!({"dataset": "things", "params": {"id": 4}, "archive": "none"}),
        )
        .await
        .unwrap();
    world.deliver(QueueName::Requests).await;
    finish_with_rows(&world, &request_id, 2_500, 1);
    world.announce(&request_id).await;
    world.run_until_quiet(10).await;
    let owner = export_core::domain::Owner(ALICE.into());
    let job = world.queries.job(&owner, &request_id).await.unwrap();
    assert_eq!(job.status, JobStatus::Succeeded, "{job:?}");
    let mut cursor: Option<String> = None;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = world
            .queries
            .parts(
                &job,
                export_core::service::query::MAX_PARTS_PAGE,
                cursor.as_deref(),
            )
            .await
            .unwrap();
        pages += 1;
        assert_eq!(page.total, 2_500);
        seen.extend(page.parts.iter().map(|p| p.index));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        seen,
        (0..2_500).collect::<Vec<_>>(),
        "every part once, in order"
    );
    // The mail links twenty and says how many more there are.
    let mail = &world.mailer.sent_about(&request_id)[0];
    assert!(mail.text.contains("… and 2480 more."), "{}", mail.text);
}
