//! Subscriptions and deliveries through the functions against the emulator: the webhook key
//! read from Secrets Manager (both versions while it is rotated), a subscription created
//! through the receiver's route, its run made by the poller's sweep tick as its caller, and
//! the archive copied into a partner's own bucket (with its bucket policy) owned by that
//! bucket's owner; a webhook into the deployment's own network refused.

use super::{iam_user, post_event, Harness, BOB};
use crate::common::eventually;
use export_api::{JobStatus, SubscriptionView};
use export_aws::{functions, Clients};
use export_core::access::{Access, AccessPolicy};
use export_core::clock::Clock;
use export_core::domain::Owner;
use export_core::http::{subscription_router, with_json_fallbacks};
use export_core::messages::PollMessage;
use export_core::service::{Poller, Submissions, Subscriptions};
use export_core::settings::DeliverySettings;
use export_core::testing::ManualClock;
use export_core::webhook::{caller_secret, verify, Reach};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// `POST /subscriptions` with `body` as the IAM user `caller`, as API Gateway hands it over.
fn post_subscription(caller: &str, body: &Value) -> Value {
    post_event("/subscriptions", &iam_user(caller), body)
}

#[tokio::test]
async fn a_subscriptions_run_goes_through_the_functions_into_a_partners_bucket() {
    let h = Harness::start().await;
    let sdk = export_emulator::provision::sdk_config(&h.emulator.moto_endpoint).await;

    // The stack's webhook key, rotated: notices are signed with both versions meanwhile.
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let arn = &h.emulator.webhook_key;
    let before = functions::webhook_keys_from_secret(&secrets, arn)
        .await
        .unwrap();
    assert_eq!(before.previous, None);
    secrets
        .put_secret_value()
        .secret_id(arn)
        .secret_string("b".repeat(64))
        .send()
        .await
        .unwrap();
    let keys = functions::webhook_keys_from_secret(&secrets, arn)
        .await
        .unwrap();
    assert_eq!(keys.current, b"b".repeat(64));
    assert_eq!(keys.previous, Some(before.current.clone()));
    let signed = keys.sign(BOB, 1_700_000_000, b"{}");
    for key in [&before.current, &keys.current] {
        let secret = caller_secret(key, BOB);
        verify(secret.as_bytes(), &signed, b"{}", 1_700_000_000, 300).unwrap();
    }

    // The partner's own bucket, with the policy docs/DEPLOY.md gives partners: the
    // deployment may put objects (a part-by-part copy's parts carry no ACL, hence IfExists)
    // and abort an upload it could not finish.
    let s3 = &h.emulator.clients.s3;
    let bucket = format!("{}-partner-feed", h.emulator.table.to_lowercase());
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "DeliveriesFromTheExportApi",
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::123456789012:role/redshift-export-poller"},
            "Action": ["s3:PutObject", "s3:AbortMultipartUpload"],
            "Resource": format!("arn:aws:s3:::{bucket}/inbound/*"),
            "Condition": {"StringEqualsIfExists": {"s3:x-amz-acl": "bucket-owner-full-control"}}
        }]
    });
    s3.put_bucket_policy()
        .bucket(&bucket)
        .policy(policy.to_string())
        .send()
        .await
        .unwrap();

    // Bob may deliver there, and only there.
    let access = Arc::new(Access::new(
        Arc::new(export_aws::catalog::load().unwrap()),
        AccessPolicy::parse(&format!(
            r#"
[[caller]]
owner = "{BOB}"
groups = ["suppliers"]
attributes = {{ supplier = "7" }}
deliver_to = ["s3://{bucket}/inbound/"]
"#
        ))
        .unwrap(),
        None,
    ));
    let clients = Clients {
        webhook_keys: Some(keys),
        ..h.emulator.clients.clone()
    };
    let mut env = h.emulator.env();
    let submissions = Submissions {
        access,
        ..Arc::try_unwrap(functions::receiver(&mut env, &clients))
            .ok()
            .expect("one owner")
    };
    assert_eq!(submissions.webhooks, Some(Reach::PUBLIC_HTTPS));
    let clock = Arc::new(ManualClock::at(export_core::clock::SystemClock.now()));
    let subscriptions = Arc::new(Subscriptions {
        clock: clock.clone(),
        ..Arc::try_unwrap(functions::subscriptions(
            &mut env,
            &clients,
            Arc::new(submissions),
        ))
        .ok()
        .expect("one owner")
    });
    let poller = Arc::new(Poller {
        subscriptions: Some(subscriptions.clone()),
        delivery: DeliverySettings {
            webhooks: functions::webhook_settings(&clients),
            ..h.poller.delivery.clone()
        },
        ..(*h.poller).clone()
    });
    env.finish().unwrap();
    let receiver = with_json_fallbacks(subscription_router(subscriptions.clone()));

    // A webhook into the deployment's own network, or over http, is refused on AWS.
    for hook in [
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.12/hooks",
        "http://hooks.partner.example/",
    ] {
        let body = json!({
            "dataset": "supplier_shipments",
            "params": {"ship_from": "yesterday-30y", "ship_to": "today-30y"},
            "schedule": "rate(1 day)",
            "deliver": [{"webhook": hook}],
        });
        let reply = h.call(&receiver, &post_subscription(BOB, &body)).await;
        assert_eq!(reply.status, 400, "{hook}: {}", reply.body);
        assert_eq!(reply.body["error"]["field"], "deliver[0].webhook");
    }

    let body = json!({
        "dataset": "supplier_shipments",
        "params": {"ship_from": "yesterday-30y", "ship_to": "today-30y"},
        "schedule": "rate(1 day)",
        "timezone": "Asia/Tokyo",
        "deliver": [{"s3": format!("s3://{bucket}/inbound/")}],
    });
    let reply = h.call(&receiver, &post_subscription(BOB, &body)).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let subscription: SubscriptionView = reply.read();

    // A day later the sweep's tick (EventBridge's scheduled event on the polls queue) makes
    // the run, as bob.
    clock.advance(Duration::from_secs(86_400));
    h.emulator
        .clients
        .sqs
        .send_message()
        .queue_url(&h.emulator.polls_url)
        .message_body(PollMessage::Sweep.to_body())
        .send()
        .await
        .unwrap();
    let owner = Owner(BOB.into());
    let request_id = eventually(
        "the run's job to be delivered",
        Duration::from_secs(90),
        || async {
            let runs = subscriptions
                .runs(&owner, &subscription.subscription_id)
                .await
                .unwrap();
            if let Some(request_id) = runs.first().and_then(|r| r.request_id.clone()) {
                let job = h.job(&request_id).await;
                if job.status.is_terminal() && job.notified_at.is_some() {
                    return Ok(request_id);
                }
            }
            let requests = h.receive(&h.emulator.requests_url, Duration::ZERO).await;
            if !requests.is_empty() {
                h.deliver(h.processor.as_ref(), &h.emulator.requests_url, requests)
                    .await;
            }
            let polls = h
                .receive(&h.emulator.polls_url, Duration::from_secs(1))
                .await;
            if !polls.is_empty() {
                h.deliver(poller.as_ref(), &h.emulator.polls_url, polls)
                    .await;
            }
            Err(runs)
        },
    )
    .await;
    let job = h.job(&request_id).await;
    assert_eq!(job.status, JobStatus::Succeeded);
    assert_eq!(
        job.subscription_id.as_deref(),
        Some(subscription.subscription_id.as_str())
    );
    assert_eq!(job.owner, owner);
    assert_eq!(
        job.params["suppliers"],
        json!([7]),
        "bound to bob, not the subscription"
    );

    // The archive, in bob's bucket under the dataset, the day and the job, the bucket's own.
    let day = chrono::DateTime::from_timestamp_millis(job.created_at)
        .unwrap()
        .date_naive();
    let key = format!("inbound/supplier_shipments/{day}/{request_id}.zip");
    let copied = s3
        .get_object()
        .bucket(&bucket)
        .key(&key)
        .send()
        .await
        .unwrap();
    let archive = job.archive_object.clone().unwrap();
    let original = s3
        .get_object()
        .bucket(&archive.bucket)
        .key(&archive.key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        copied.body.collect().await.unwrap().into_bytes(),
        original.body.collect().await.unwrap().into_bytes()
    );
    let events = poller.control.events(&request_id).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.step == "delivered" && e.outcome == "ok" && e.message.contains(&key)),
        "{events:?}"
    );
}

/// An operation's name, and the `x-amz-acl` it was sent with.
type Sent = (String, Option<String>);

#[derive(Clone, Debug, Default)]
struct SentAcls(Arc<std::sync::Mutex<Vec<Sent>>>);

impl aws_sdk_s3::config::Intercept for SentAcls {
    fn name(&self) -> &'static str {
        "sent-acls"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _: &aws_sdk_s3::config::RuntimeComponents,
        _: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let request = context.request();
        let query = request
            .uri()
            .split_once('?')
            .map_or("", |(_, q)| q)
            .to_owned();
        let operation = if request.headers().get("x-amz-copy-source").is_some() {
            if query.contains("partNumber") {
                "UploadPartCopy"
            } else {
                "CopyObject"
            }
        } else if query.starts_with("uploads") {
            "CreateMultipartUpload"
        } else {
            "other"
        };
        self.0.lock().unwrap().push((
            operation.to_owned(),
            request.headers().get("x-amz-acl").map(str::to_owned),
        ));
        Ok(())
    }
}

/// The copy into a partner's bucket asks for `bucket-owner-full-control` on every request
/// that makes the object, in one copy and part by part. (The emulator keeps one account, so
/// the object's grants cannot show it; what was sent can.)
#[tokio::test]
async fn a_copy_into_a_partners_bucket_leaves_it_to_the_buckets_owner() {
    use export_aws::s3::S3ObjectStore;
    use export_core::domain::ObjectRef;
    use export_core::ports::ObjectStore;
    let h = Harness::start().await;
    let sdk = export_emulator::provision::sdk_config(&h.emulator.moto_endpoint).await;
    let sent = SentAcls::default();
    let client = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .interceptor(sent.clone())
            .build(),
    );
    let bucket = format!("{}-partner-copies", h.emulator.table.to_lowercase());
    client.create_bucket().bucket(&bucket).send().await.unwrap();
    let source = ObjectRef::new(&h.emulator.downloads_bucket, "archives/r1/export.zip");
    // Six MiB and a little: two parts of at least S3's 5 MiB when copied part by part.
    let body: Vec<u8> = (0..6 * 1024 * 1024 + 7).map(|i| (i % 251) as u8).collect();
    let store = S3ObjectStore::new(client.clone());
    store
        .put(&source, body.clone().into(), "application/zip")
        .await
        .unwrap();

    let whole = ObjectRef::new(&bucket, "inbound/one.zip");
    store.copy(&source, &whole).await.unwrap();
    let parts = ObjectRef::new(&bucket, "inbound/parts.zip");
    store
        .clone()
        .with_copy_parts(1024 * 1024, 5 * 1024 * 1024)
        .copy(&source, &parts)
        .await
        .unwrap();
    for copy in [&whole, &parts] {
        let got = client
            .get_object()
            .bucket(&copy.bucket)
            .key(&copy.key)
            .send()
            .await
            .unwrap();
        assert_eq!(
            got.body.collect().await.unwrap().into_bytes(),
            body,
            "{copy:?}"
        );
    }
    let sent = sent.0.lock().unwrap().clone();
    let acl = |operation: &str| -> Vec<Option<String>> {
        sent.iter()
            .filter(|(o, _)| o == operation)
            .map(|(_, acl)| acl.clone())
            .collect()
    };
    let full = || Some("bucket-owner-full-control".to_owned());
    assert_eq!(acl("CopyObject"), [full()], "{sent:?}");
    assert_eq!(acl("CreateMultipartUpload"), [full()], "{sent:?}");
    assert_eq!(acl("UploadPartCopy").len(), 2, "{sent:?}");
    // A source that is not there is not found, and nothing is left half-copied.
    let missing = ObjectRef::new(&h.emulator.downloads_bucket, "archives/none.zip");
    assert!(matches!(
        store
            .copy(&missing, &ObjectRef::new(&bucket, "inbound/none.zip"))
            .await,
        Err(export_core::ports::PortError::NotFound(_))
    ));
    assert!(client
        .head_object()
        .bucket(&bucket)
        .key("inbound/none.zip")
        .send()
        .await
        .is_err());
}
