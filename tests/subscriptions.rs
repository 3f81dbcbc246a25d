//! Subscriptions on the local stack, as a partner uses them: bob subscribes to his own
//! shipments with a webhook and a copy into his bucket; a run arrives, its notice (after his
//! receiver fails once) signed so that Python's `hmac` checks it, its archive in his bucket;
//! a restart makes no second run; and what he may not ask for is refused.

use crate::common::*;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use export_api::{JobStatus, SubscriptionView, WebhookNotice};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Received = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// A partner's receiver on 127.0.0.1: keeps every notice; answers the first 503, then 200.
async fn receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let kept = received.clone();
    let app = Router::new().route(
        "/hooks/exports",
        post(move |headers: HeaderMap, body: Bytes| {
            let kept = kept.clone();
            async move {
                let mut kept = kept.lock().unwrap();
                kept.push((headers, body));
                if kept.len() == 1 {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/exports", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

/// Python's `hmac` checks the signature as a partner's receiver written in Python would.
fn python_verifies(secret: &str, header: &str, body: &[u8]) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body");
    std::fs::write(&file, body).unwrap();
    let output = std::process::Command::new("python3")
        .args([
            "-c",
            "import hmac, hashlib, sys\n\
             secret, header, body = sys.argv[1].encode(), sys.argv[2], open(sys.argv[3], 'rb').read()\n\
             parts = [p.split('=', 1) for p in header.split(',')]\n\
             t = [v for k, v in parts if k == 't'][0]\n\
             expected = hmac.new(secret, t.encode() + b'.' + body, hashlib.sha256).hexdigest()\n\
             ok = any(hmac.compare_digest(v, expected) for k, v in parts if k == 'v1')\n\
             sys.exit(0 if ok else 1)",
            secret,
            header,
            file.to_str().unwrap(),
        ])
        .output()
        .expect("python3 runs");
    output.status.success()
}

#[tokio::test]
async fn a_partners_daily_subscription_delivers_a_signed_notice_and_a_copy_into_its_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    config.subscription_tick = Duration::from_millis(200);
    config.retry_first_delay = Duration::from_millis(300);
    let stack = start_with(dir, config.clone()).await;
    let (url, received) = receiver().await;
    // A daily run of yesterday's shipments thirty years ago (the demo data's years), the first
    // now.
    let subscription: SubscriptionView = stack
        .bob
        .subscribe(&json!({
            "dataset": "supplier_shipments",
            "params": {"ship_from": "yesterday-30y", "ship_to": "today-30y"},
            "schedule": "rate(1 day)",
            "start": "now",
            "timezone": "Europe/Berlin",
            "deliver": [{"webhook": url}, {"s3": "s3://supplier-7-feed/inbound/"}],
        }))
        .await
        .unwrap();
    let id = subscription.subscription_id.clone();

    // The run arrives: a job of bob's, ended, its deliveries made.
    let run = eventually(
        "the first run to be delivered",
        Duration::from_secs(60),
        || async {
            let runs = stack.bob.subscription_runs(&id).await.unwrap().runs;
            let Some(request_id) = runs.first().and_then(|r| r.request_id.clone()) else {
                return Err(format!("runs: {runs:?}"));
            };
            let events = stack.bob.events(&request_id).await.unwrap().events;
            let delivered = events
                .iter()
                .filter(|e| e.step == "delivered" && e.outcome == "ok")
                .count();
            if delivered == 2 {
                Ok((request_id, events))
            } else {
                Err(format!("{events:?}"))
            }
        },
    )
    .await;
    let (request_id, events) = run;
    let job = stack.bob.status(&request_id).await.unwrap();
    assert_eq!(job.summary.status, JobStatus::Succeeded);
    assert_eq!(job.bound, ["suppliers"], "the supplier is bob's own");
    // The webhook failed once and was tried again; each try is in the history.
    let webhook: Vec<&str> = events
        .iter()
        .filter(|e| e.step == "delivered" && e.message.contains("webhook"))
        .map(|e| e.outcome.as_str())
        .collect();
    assert_eq!(webhook, ["error", "ok"], "{events:?}");

    // Both notices are signed with bob's secret, as Python's hmac checks it.
    let secret = stack.bob.webhook_secret().await.unwrap().secret;
    let notices = received.lock().unwrap().clone();
    assert_eq!(notices.len(), 2);
    for (headers, body) in &notices {
        let signature = headers["export-signature"].to_str().unwrap();
        assert!(python_verifies(&secret, signature, body), "{signature}");
        assert!(!python_verifies("whsec_someone-else", signature, body));
        let notice: WebhookNotice = serde_json::from_slice(body).unwrap();
        assert_eq!(notice.request_id, request_id);
        assert_eq!(notice.subscription_id.as_deref(), Some(id.as_str()));
        assert_eq!(notice.event, "export.succeeded");
        // The link in the notice downloads the archive.
        let link = notice.download_url.unwrap();
        assert!(!stack.bob.fetch(&link).await.unwrap().is_empty());
    }
    // Alice's secret is not bob's.
    assert_ne!(stack.alice.webhook_secret().await.unwrap().secret, secret);

    // The archive is in bob's bucket under the dataset, the day and the job.
    let day = chrono::DateTime::from_timestamp_millis(job.summary.created_at)
        .unwrap()
        .date_naive();
    let copy = stack.dir.path().join(format!(
        "objects/supplier-7-feed/inbound/supplier_shipments/{day}/{request_id}.zip"
    ));
    let archive = stack
        .bob
        .fetch(&stack.bob.download_link(&request_id).await.unwrap())
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        archive.to_vec(),
        "{}",
        copy.display()
    );

    // Stopped and started again within the day: no second run.
    let TestStack {
        stack: running,
        dir,
        ..
    } = stack;
    running.stop().await;
    let stack = start_with(dir, config).await;
    // A second subscription due at once: once its run is made, the scheduler has looked at
    // every subscription since the start, the first included.
    let marker = stack
        .bob
        .subscribe(&json!({
            "dataset": "supplier_shipments",
            "params": {"ship_from": "1996-01-01", "ship_to": "1996-01-02"},
            "schedule": "rate(1 day)",
            "start": "now",
        }))
        .await
        .unwrap();
    eventually(
        "the scheduler to tick after the restart",
        Duration::from_secs(30),
        || async {
            let runs = stack
                .bob
                .subscription_runs(&marker.subscription_id)
                .await
                .unwrap()
                .runs;
            if runs.is_empty() {
                Err(runs)
            } else {
                Ok(())
            }
        },
    )
    .await;
    let runs = stack.bob.subscription_runs(&id).await.unwrap().runs;
    assert_eq!(runs.len(), 1, "{runs:?}");
    let first = stack.bob.subscription(&id).await.unwrap();
    assert_eq!(first.runs, 1);
    stack
        .bob
        .delete_subscription(&marker.subscription_id)
        .await
        .unwrap();

    // Paused, resumed, deleted; alice sees none of it.
    assert!(stack
        .alice
        .subscriptions()
        .await
        .unwrap()
        .subscriptions
        .is_empty());
    assert!(stack.alice.subscription(&id).await.is_err());
    assert!(
        stack
            .bob
            .pause_subscription(&id, true)
            .await
            .unwrap()
            .paused
    );
    assert!(
        !stack
            .bob
            .pause_subscription(&id, false)
            .await
            .unwrap()
            .paused
    );
    stack.bob.delete_subscription(&id).await.unwrap();
    assert!(stack
        .bob
        .subscriptions()
        .await
        .unwrap()
        .subscriptions
        .is_empty());
    stack.stack.stop().await;
}

#[tokio::test]
async fn a_delivery_outside_the_callers_places_is_refused_over_http_and_nothing_is_kept() {
    let stack = start().await;
    for (who, deliver, status) in [
        // Alice holds no bucket; bob only his own.
        (
            &stack.alice,
            json!([{"s3": "s3://supplier-7-feed/inbound/"}]),
            403,
        ),
        (&stack.bob, json!([{"s3": "s3://supplier-9-feed/"}]), 403),
        (
            &stack.bob,
            json!([{"s3": "s3://supplier-7-feed/../x/{request_id}"}]),
            400,
        ),
        (&stack.bob, json!([{"webhook": "ftp://127.0.0.1/x"}]), 400),
    ] {
        let body = json!({
            "dataset": "supplier_shipments",
            "params": {"ship_from": "1996-01-01", "ship_to": "1996-01-31"},
            "deliver": deliver,
        });
        let refused = who
            .send(http::Method::POST, "/exports", Some(&body), &[])
            .await
            .unwrap();
        assert_eq!(
            refused.status.as_u16(),
            status,
            "{deliver}: {:?}",
            refused.json()
        );
        let mut subscription = body.clone();
        subscription["schedule"] = json!("rate(1 day)");
        let refused = who
            .send(
                http::Method::POST,
                "/subscriptions",
                Some(&subscription),
                &[],
            )
            .await
            .unwrap();
        assert_eq!(
            refused.status.as_u16(),
            status,
            "{deliver}: {:?}",
            refused.json()
        );
    }
    // Neither caller is left with a job or a subscription.
    for who in [&stack.alice, &stack.bob] {
        assert!(who.jobs(None, None).await.unwrap().jobs.is_empty());
        assert!(who.subscriptions().await.unwrap().subscriptions.is_empty());
    }
    stack.stack.stop().await;
}

/// A partner tries its receiver before the first run: the API sends a signed test notice, by
/// the CLI (`test-webhook`) as by the route, and says what the receiver answered.
#[tokio::test]
async fn a_test_notice_reaches_the_receiver_signed_with_the_callers_secret() {
    let stack = start().await;
    let (url, received) = receiver().await;
    // The receiver fails the first notice.
    let first = stack.bob.test_webhook(&url).await.unwrap();
    assert_eq!((first.status, first.delivered), (Some(503), false));
    let dir = tempfile::tempdir().unwrap();
    let endpoint = stack.stack.base_url();
    let (ok, stdout, stderr) = run_cli(
        dir.path(),
        &["test-webhook", &url, "--as", "bob", "--endpoint", &endpoint],
        Duration::from_secs(60),
    )
    .await;
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("answered 200"), "{stdout}");
    let secret = stack.bob.webhook_secret().await.unwrap().secret;
    let notices = received.lock().unwrap().clone();
    assert_eq!(notices.len(), 2);
    for (headers, body) in &notices {
        let signature = headers["export-signature"].to_str().unwrap();
        assert!(python_verifies(&secret, signature, body), "{signature}");
        let notice: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(notice["event"], "webhook.test");
    }
    // Not a URL a webhook may have: refused before anything is sent.
    let refused = stack
        .bob
        .send(
            http::Method::POST,
            "/webhook-test",
            Some(&json!({"url": "ftp://127.0.0.1/x"})),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(refused.status.as_u16(), 400);
    assert_eq!(received.lock().unwrap().len(), 2);
    stack.stack.stop().await;
}
