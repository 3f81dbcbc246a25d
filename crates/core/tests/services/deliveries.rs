//! Deliveries besides the mail: a signed webhook notice, retried while its receiver fails;
//! the archive or the parts copied into a partner's own place; and what a caller may not ask.

use super::*;
use export_api::WebhookNotice;
use export_core::clock::Clock;
use export_core::domain::{JobEvent, ObjectRef, Owner};
use export_core::ports::PortError;
use export_core::testing::{World, WORLD_WEBHOOK_KEY};
use export_core::webhook::{self, Reach};

const PARTNER_7: &str = "partner-7";

async fn delivered(world: &World, owner: &str, request_id: &str) -> Vec<JobEvent> {
    world
        .queries
        .events(&Owner(owner.into()), request_id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.step == "delivered")
        .collect()
}

/// Runs the polls queue, moving the clock to each retry, until nothing is left.
async fn run_polls(world: &World) -> Vec<Delivered> {
    let mut all = Vec::new();
    for _ in 0..20 {
        let Some(at) = world.queue.next_visible_at() else {
            return all;
        };
        world.clock.set(at.max(world.clock.now()));
        all.extend(world.deliver(QueueName::Polls).await);
    }
    panic!("the polls queue did not drain: {all:?}");
}

#[tokio::test]
async fn a_webhook_that_fails_first_is_retried_and_every_notice_is_signed() {
    let world = World::new();
    world.webhooks.answer_with(&[503, 502]);
    let request_id = world
        .submit(
            ALICE,
            json!({"dataset": "things", "params": {"id": 1}, "notify": ["alice@example.com"],
                   "deliver": [{"webhook": "http://127.0.0.1:9/hooks/exports"}]}),
        )
        .await
        .unwrap();
    assert_eq!(world.deliver(QueueName::Requests).await, [Delivered::Done]);
    world.finish_statement(&request_id, &[&["1,one"]]);
    let outcomes = run_polls(&world).await;
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, Delivered::Requeued(_)))
            .count(),
        2,
        "{outcomes:?}"
    );
    // The mail went once, on the first try; only the webhook was tried again.
    assert_eq!(world.mailer.sent_about(&request_id).len(), 1);
    let posted = world.webhooks.posted();
    assert_eq!(posted.len(), 3);
    let secret = webhook::caller_secret(WORLD_WEBHOOK_KEY, ALICE);
    for post in &posted {
        let t: i64 = post.signature[2..post.signature.find(',').unwrap()]
            .parse()
            .unwrap();
        webhook::verify(secret.as_bytes(), &post.signature, &post.body, t, 300).unwrap();
        let notice: WebhookNotice = serde_json::from_slice(&post.body).unwrap();
        assert_eq!(notice.request_id, request_id);
        assert_eq!(notice.event, "export.succeeded");
        assert_eq!(notice.rows, Some(1));
        assert!(notice.download_url.is_some() && notice.expires_at.is_some());
    }
    // Another caller's secret does not verify it.
    let bob = webhook::caller_secret(WORLD_WEBHOOK_KEY, BOB);
    assert!(webhook::verify(
        bob.as_bytes(),
        &posted[0].signature,
        &posted[0].body,
        0,
        i64::MAX
    )
    .is_err());
    let events = delivered(&world, ALICE, &request_id).await;
    let outcomes: Vec<&str> = events.iter().map(|e| e.outcome.as_str()).collect();
    assert_eq!(outcomes, ["error", "error", "ok"], "{events:?}");
    assert!(
        events[0].message.starts_with(
            "deliver[0] webhook http://127.0.0.1:9/hooks/exports: attempt 1: answered 503"
        ),
        "{events:?}"
    );
    assert!(world.job(&request_id).await.notified_at.is_some());
    // Each notice's links were on record before it went.
    let recorded = world
        .audit
        .records()
        .into_iter()
        .filter(|r| r.outcome == "webhook")
        .count();
    assert_eq!(recorded, 3);
}

#[tokio::test]
async fn a_webhook_refused_for_good_or_given_up_on_is_not_tried_again() {
    let world = World::new();
    world.webhooks.answer_with(&[404]);
    let refused = world
        .submit(
            ALICE,
            json!({"dataset": "things", "params": {"id": 1},
                   "deliver": [{"webhook": "http://127.0.0.1:9/gone"}]}),
        )
        .await
        .unwrap();
    assert_eq!(world.deliver(QueueName::Requests).await, [Delivered::Done]);
    world.finish_statement(&refused, &[&["1,one"]]);
    let outcomes = run_polls(&world).await;
    assert!(outcomes.iter().all(Delivered::is_done), "{outcomes:?}");
    let events = delivered(&world, ALICE, &refused).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].outcome, "refused");

    // A receiver that never answers: tried NOTICE_ATTEMPTS times, then given up on.
    world
        .webhooks
        .faults
        .fail_always("post", PortError::Unavailable("connection refused".into()));
    let silent = world
        .submit(
            ALICE,
            json!({"dataset": "things", "params": {"id": 2},
                   "deliver": [{"webhook": "http://127.0.0.1:9/silent"}]}),
        )
        .await
        .unwrap();
    assert_eq!(world.deliver(QueueName::Requests).await, [Delivered::Done]);
    world.finish_statement(&silent, &[&["2,two"]]);
    run_polls(&world).await;
    // Once a message's tries are spent, the sweep carries the job on.
    for _ in 0..10 {
        if world.job(&silent).await.notified_at.is_some() {
            break;
        }
        world.clock.advance(std::time::Duration::from_secs(901));
        tick(&world).await;
        run_polls(&world).await;
    }
    let events = delivered(&world, ALICE, &silent).await;
    let outcomes: Vec<&str> = events.iter().map(|e| e.outcome.as_str()).collect();
    let mut expected = vec!["error"; export_core::service::NOTICE_ATTEMPTS - 1];
    expected.push("abandoned");
    assert_eq!(outcomes, expected);
    // The retries backed off, and went on past the message's own tries, by the sweep.
    let span = events.last().unwrap().at - events[0].at;
    assert!(span >= 15 * 60 * 1000, "{span} ms");
    assert!(world.job(&silent).await.notified_at.is_some());
}

#[tokio::test]
async fn the_archive_is_copied_into_the_partners_own_place() {
    let world = World::new();
    world
        .objects
        .faults
        .fail("copy", PortError::Unavailable("SlowDown".into()), 1);
    let request_id = world
        .submit(
            PARTNER_7,
            json!({"dataset": "supplier_things", "params": {"id": 3},
                   "deliver": [{"s3": "s3://partner-7-feed/inbound/"}]}),
        )
        .await
        .unwrap();
    assert_eq!(world.deliver(QueueName::Requests).await, [Delivered::Done]);
    world.finish_statement(&request_id, &[&["3,three"]]);
    run_polls(&world).await;
    let job = world.job(&request_id).await;
    let date = chrono::DateTime::from_timestamp_millis(job.created_at)
        .unwrap()
        .date_naive();
    let copy = ObjectRef::new(
        "partner-7-feed",
        format!("inbound/supplier_things/{date}/{request_id}.zip"),
    );
    let archive = world
        .objects
        .read(job.archive_object.as_ref().unwrap())
        .unwrap();
    assert_eq!(world.objects.read(&copy), Some(archive));
    let events = delivered(&world, PARTNER_7, &request_id).await;
    let outcomes: Vec<&str> = events.iter().map(|e| e.outcome.as_str()).collect();
    assert_eq!(outcomes, ["error", "ok"], "{events:?}");
    assert!(
        events[1]
            .message
            .ends_with(&format!("copied to {}", copy.s3_url())),
        "{events:?}"
    );
}

#[tokio::test]
async fn parts_are_copied_each_under_its_own_name() {
    let world = World::new();
    let request_id = world
        .submit(
            PARTNER_7,
            json!({"dataset": "supplier_things", "params": {"id": 3}, "archive": "none",
                   "deliver": [{"s3": "s3://partner-7-feed/inbound/daily/{request_id}/{part}"}]}),
        )
        .await
        .unwrap();
    assert_eq!(world.deliver(QueueName::Requests).await, [Delivered::Done]);
    world.finish_statement(&request_id, &[&["3,three"], &["4,four"]]);
    run_polls(&world).await;
    for (index, rows) in ["3,three", "4,four"].iter().enumerate() {
        let copy = ObjectRef::new(
            "partner-7-feed",
            format!("inbound/daily/{request_id}/supplier_things-{index:04}.csv"),
        );
        let body = world
            .objects
            .read(&copy)
            .unwrap_or_else(|| panic!("no {copy:?}"));
        assert!(String::from_utf8_lossy(&body).contains(rows));
    }
}

#[tokio::test]
async fn a_delivery_the_caller_may_not_ask_for_is_refused_and_nothing_is_kept() {
    let world = World::with_settings(|delivery| delivery.webhooks.reach = Reach::PUBLIC_HTTPS);
    for (owner, deliver, status, field) in [
        // Alice holds no place at all; partner-9 not partner-7's.
        (
            "alice",
            json!({"s3": "s3://partner-7-feed/inbound/"}),
            403,
            "deliver[0].s3",
        ),
        (
            "partner-9",
            json!({"s3": "s3://partner-7-feed/inbound/"}),
            403,
            "deliver[0].s3",
        ),
        // Partner-7's own bucket, outside its prefix.
        (
            PARTNER_7,
            json!({"s3": "s3://partner-7-feed/outbound/"}),
            403,
            "deliver[0].s3",
        ),
        (
            PARTNER_7,
            json!({"s3": "s3://partner-7-feed/inbound-other/"}),
            403,
            "deliver[0].s3",
        ),
        (
            PARTNER_7,
            json!({"s3": "s3://partner-7-feed/{request_id}.zip"}),
            403,
            "deliver[0].s3",
        ),
        (
            PARTNER_7,
            json!({"s3": "s3://partner-7-feed/inbound/../x/{request_id}"}),
            400,
            "deliver[0].s3",
        ),
        // Into the deployment's own network.
        (
            PARTNER_7,
            json!({"webhook": "https://169.254.169.254/latest/meta-data/"}),
            400,
            "deliver[0].webhook",
        ),
        (
            PARTNER_7,
            json!({"webhook": "https://10.0.0.8/hook"}),
            400,
            "deliver[0].webhook",
        ),
        (
            PARTNER_7,
            json!({"webhook": "https://[::ffff:127.0.0.1]/hook"}),
            400,
            "deliver[0].webhook",
        ),
        (
            PARTNER_7,
            json!({"webhook": "https://localhost/hook"}),
            400,
            "deliver[0].webhook",
        ),
        (
            PARTNER_7,
            json!({"webhook": "http://hooks.partner.example/"}),
            400,
            "deliver[0].webhook",
        ),
        (
            PARTNER_7,
            json!({"webhook": "https://u:p@hooks.partner.example/"}),
            400,
            "deliver[0].webhook",
        ),
    ] {
        let e = world
            .submit(
                owner,
                json!({"dataset": "supplier_things", "params": {"id": 1}, "deliver": [deliver]}),
            )
            .await
            .unwrap_err();
        assert_eq!(
            (e.status.as_u16(), e.field.as_deref()),
            (status, Some(field)),
            "{owner} {deliver}: {e:?}"
        );
    }
    assert!(world.control.jobs().is_empty());
    assert!(world.queue.is_empty());
    // What may be asked is taken.
    world
        .submit(
            PARTNER_7,
            json!({"dataset": "supplier_things", "params": {"id": 1},
                   "deliver": [{"webhook": "https://hooks.partner.example/x"},
                               {"s3": "s3://partner-7-feed/inbound/x/{date}/{request_id}.zip"}]}),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_deployment_without_a_webhook_key_takes_no_webhook() {
    let world = World::with_settings(|delivery| delivery.webhooks.keys = None);
    let e = world
        .submit(
            ALICE,
            json!({"dataset": "things", "params": {"id": 1},
                   "deliver": [{"email": "alice@example.com"}, {"webhook": "https://hooks.partner.example/x"}]}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.field.as_deref(), Some("deliver[1].webhook"));
    assert!(e.message.contains("no key"), "{e:?}");
}

#[tokio::test]
async fn a_failure_after_the_claim_gives_it_back_and_the_retry_does_what_is_left() {
    let world = World::new();
    let request_id = world
        .submit(
            ALICE,
            json!({"dataset": "things", "params": {"id": 1}, "notify": ["alice@example.com"],
                   "deliver": [{"webhook": "http://127.0.0.1:9/hooks"}]}),
        )
        .await
        .unwrap();
    assert_eq!(world.deliver(QueueName::Requests).await, [Delivered::Done]);
    world.finish_statement(&request_id, &[&["1,one"]]);
    // The history cannot be read once the notice is claimed.
    world
        .control
        .faults
        .fail("events", PortError::Unavailable("throttled".into()), 1);
    run_polls(&world).await;
    let job = world.job(&request_id).await;
    assert!(job.notified_at.is_some(), "done in the end: {job:?}");
    assert_eq!(world.mailer.sent_about(&request_id).len(), 1);
    assert_eq!(world.webhooks.posted().len(), 1);
}

#[test]
fn a_request_without_deliveries_digests_as_before_they_existed() {
    use sha2::Digest;
    let request =
        export_api::ExportRequest::read(json!({"dataset": "things", "params": {"id": 1}})).unwrap();
    let before = json!({
        "dataset": "things", "params": {"id": 1}, "format": "csv",
        "compression": "none", "archive": "zip", "notify": [],
    });
    assert_eq!(
        export_core::service::submit::request_digest(&request),
        hex::encode(sha2::Sha256::digest(before.to_string().as_bytes()))
    );
    let mut with = request.clone();
    with.deliver = vec![export_api::Delivery::Email("a@b.co".into())];
    assert_ne!(
        export_core::service::submit::request_digest(&with),
        export_core::service::submit::request_digest(&request)
    );
}

#[tokio::test]
async fn a_mail_sent_whose_record_is_lost_is_not_sent_again() {
    let world = World::new();
    let request_id = started(&world, 1).await;
    world.finish_statement(&request_id, &[&["1,one"]]);
    // The mail goes; writing that it went fails.
    world.control.faults.fail(
        "append_event",
        PortError::Unavailable("throttled".into()),
        1,
    );
    run_polls(&world).await;
    for _ in 0..3 {
        world.clock.advance(std::time::Duration::from_secs(901));
        tick(&world).await;
        run_polls(&world).await;
    }
    assert_eq!(world.mailer.sent_about(&request_id).len(), 1);
}

#[tokio::test]
async fn a_delivery_is_not_begun_at_the_end_of_an_invocation() {
    let world = World::new();
    let request_id = world
        .submit(
            ALICE,
            json!({"dataset": "things", "params": {"id": 1},
                   "deliver": [{"webhook": "http://127.0.0.1:9/hooks"}]}),
        )
        .await
        .unwrap();
    assert_eq!(world.deliver(QueueName::Requests).await, [Delivered::Done]);
    world.finish_statement(&request_id, &[&["1,one"]]);
    // Ended and packaged, its notice not yet out (the mailer is down, the receiver busy).
    world.webhooks.answer_with(&[503]);
    world
        .mailer
        .faults
        .fail_always("send", PortError::Unavailable("SES down".into()));
    world.clock.advance(std::time::Duration::from_secs(5));
    world.deliver(QueueName::Polls).await;
    assert_eq!(
        world.job(&request_id).await.status,
        export_core::domain::JobStatus::Succeeded
    );
    assert_eq!(world.webhooks.posted().len(), 1);
    // An invocation with seconds left, inside the packaging margin: nothing is begun, and the
    // claim is given back for the next.
    let body = export_core::messages::Message::follow_up(&request_id, None).body();
    let near = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
    let answer = world.poller.handle_until(&body, Some(near)).await;
    let left = format!("{answer:?}");
    assert!(
        answer.is_err() && left.contains("deliver[0] left for the next try, out of time"),
        "{left}"
    );
    assert_eq!(world.webhooks.posted().len(), 1, "no second try begun");
    assert!(world.job(&request_id).await.notified_at.is_none());
    // With time, it goes.
    world.mailer.faults.clear("send");
    world.poller.handle_until(&body, None).await.unwrap();
    assert_eq!(world.webhooks.posted().len(), 2);
    assert!(world.job(&request_id).await.notified_at.is_some());
}
