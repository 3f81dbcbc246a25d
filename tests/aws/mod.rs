//! The AWS path, for real: the functions' handlers over the AWS adapters, against moto's
//! server (DynamoDB, SQS, S3, SES v2) and the project's Data API endpoint. The harness plays
//! API Gateway (REST proxy events with an IAM identity) and Lambda's SQS event source
//! (receive, hand over a batch, delete what succeeded).

mod access;
mod adapters;
mod admission;
mod audit;
mod events;
mod identity;
mod lookups;
mod pipeline;
mod quotas;
mod subscriptions;
mod transactions;

use crate::common::eventually;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use axum::Router;
use export_aws::functions;
use export_aws::lambda;
use export_core::domain::Job;
use export_core::http::{lookup_router, receiver_router, status_router, with_json_fallbacks};
use export_core::identity::RoleOwner;
use export_core::service::{Consumer, Poller, Processor};
use export_emulator::moto::SentEmail;
use export_emulator::{Emulator, EmulatorOptions, Moto};
use http_body_util::BodyExt;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub use export_emulator::events::SAMPLE_REQUEST_ID;
pub const ALICE: &str = "arn:aws:iam::123456789012:user/partner-alice";
pub const BOB: &str = "arn:aws:iam::123456789012:user/partner-bob";

/// One moto server for the whole test binary; each test makes its own resources on it.
pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| Moto::start().expect("moto's server starts"))
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A sample event from `events/`, with the sample request id replaced.
pub fn sample_event(name: &str, request_id: &str) -> Value {
    export_emulator::events::sample(name, request_id).unwrap()
}

/// A `POST` of `body` to `path` (a receiver route without path parameters) from the caller
/// `identity`, as API Gateway hands it over, with no idempotency key.
pub fn post_event(path: &str, identity: &Value, body: &Value) -> Value {
    let mut event = sample_event("receiver-post-exports.json", SAMPLE_REQUEST_ID);
    event["resource"] = path.into();
    event["path"] = path.into();
    event["requestContext"]["resourcePath"] = path.into();
    event["requestContext"]["path"] = format!("/prod{path}").into();
    event["body"] = Value::String(body.to_string());
    for headers in ["headers", "multiValueHeaders"] {
        event[headers]
            .as_object_mut()
            .unwrap()
            .remove("Idempotency-Key");
    }
    event["requestContext"]["identity"] = identity.clone();
    event
}

/// The `requestContext.identity` API Gateway reports for the IAM user `arn`.
pub fn iam_user(arn: &str) -> Value {
    let mut identity =
        sample_event("status-list-exports.json", "")["requestContext"]["identity"].clone();
    identity["userArn"] = arn.into();
    identity
}

/// `event` as it arrives through a custom domain whose base path mapping `reports` points at
/// the API's stage: `path` and `requestContext.path` start with the base path, the resource
/// and the path parameters are unchanged (as `events/status-get-export-base-path.json`).
pub fn behind_base_path(event: &Value) -> Value {
    let mut mapped = event.clone();
    let path = format!("/reports{}", event["path"].as_str().unwrap());
    mapped["path"] = path.clone().into();
    mapped["requestContext"]["path"] = path.into();
    mapped["requestContext"]["domainName"] = "exports.example.com".into();
    mapped
}

/// The `requestContext.identity` of a sample event.
pub fn identity_of(sample: &str) -> Value {
    sample_event(sample, "")["requestContext"]["identity"].clone()
}

pub struct Harness {
    pub emulator: Emulator,
    pub receiver: Router,
    pub status: Router,
    pub processor: Arc<Processor>,
    pub poller: Arc<Poller>,
    /// The functions' owner rule for assumed roles (from `ASSUMED_ROLE_OWNER`); tests may
    /// change it.
    pub role_owner: RoleOwner,
    _dir: tempfile::TempDir,
}

pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Value,
}

impl Reply {
    /// The body as the route's answer type (see `export_api`).
    pub fn read<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_value(self.body.clone())
            .unwrap_or_else(|e| panic!("{} {}: {e}", self.status, self.body))
    }
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::start_with(|_| {}).await
    }

    pub async fn start_with(configure: impl FnOnce(&mut EmulatorOptions)) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let prefix = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let mut options =
            EmulatorOptions::new(&prefix, dir.path().join("warehouse"), repo().join("sql"));
        options.visibility_timeout = Duration::from_secs(2);
        configure(&mut options);
        let emulator = Emulator::start(&moto().endpoint, options).await.unwrap();
        let clients = emulator.clients.clone();
        // Built exactly as the functions' mains build them, from the same variables.
        let mut env = emulator.env();
        let receiver =
            with_json_fallbacks(receiver_router(functions::receiver(&mut env, &clients)));
        let status = with_json_fallbacks({
            let queries = functions::status(&mut env, &clients);
            let lookups = functions::lookups(&mut env, &clients, queries.access.clone());
            status_router(queries).merge(lookup_router(lookups))
        });
        let processor = functions::processor(&mut env, &clients);
        let poller = functions::poller(&mut env, &clients);
        let role_owner = functions::role_owner(&mut env);
        env.finish().unwrap();
        Harness {
            emulator,
            receiver,
            status,
            processor,
            poller,
            role_owner,
            _dir: dir,
        }
    }

    /// Runs an API Gateway event through the function whose router is given.
    pub async fn call(&self, router: &Router, event: &Value) -> Reply {
        let request =
            lambda_http::request::from_str(&event.to_string()).expect("a REST proxy event");
        let response = lambda::answer(router.clone(), self.role_owner, request).await;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    /// `POST /exports` with `body`, as the IAM user `caller`, through the receiver.
    pub async fn submit(&self, caller: &str, body: &Value) -> Reply {
        self.submit_as(&iam_user(caller), body).await
    }

    /// `POST /exports` with `body`, from the caller `identity` (`requestContext.identity`).
    pub async fn submit_as(&self, identity: &Value, body: &Value) -> Reply {
        let event = post_event("/exports", identity, body);
        self.call(&self.receiver, &event).await
    }

    /// A status-function event from `events/` for `request_id`, as the IAM user `caller`.
    pub async fn status_of(&self, sample: &str, request_id: &str, caller: &str) -> Reply {
        self.status_as(sample, request_id, &iam_user(caller)).await
    }

    /// A status-function event from `events/` for `request_id`, from the caller `identity`.
    pub async fn status_as(&self, sample: &str, request_id: &str, identity: &Value) -> Reply {
        let mut event = sample_event(sample, request_id);
        event["requestContext"]["identity"] = identity.clone();
        self.call(&self.status, &event).await
    }

    pub async fn job(&self, request_id: &str) -> Job {
        self.poller
            .control
            .get_job(request_id)
            .await
            .unwrap()
            .expect("the job exists")
    }

    /// Receives what the queue has (waiting up to `wait`), as Lambda's event source would
    /// hand it over.
    pub async fn receive(&self, queue_url: &str, wait: Duration) -> Vec<(SqsMessage, String)> {
        let output = self
            .emulator
            .clients
            .sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait.as_secs() as i32)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .unwrap();
        output
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(|m| {
                let mut message = SqsMessage::default();
                message.message_id = m.message_id.clone();
                message.body = m.body.clone();
                message.receipt_handle = m.receipt_handle.clone();
                if let Some(attributes) = &m.attributes {
                    for (name, value) in attributes {
                        message
                            .attributes
                            .insert(name.as_str().to_owned(), value.clone());
                    }
                }
                (message, m.receipt_handle.unwrap_or_default())
            })
            .collect()
    }

    /// Acknowledges one received message.
    async fn delete(&self, queue_url: &str, receipt: &str) {
        self.emulator
            .clients
            .sqs
            .delete_message()
            .queue_url(queue_url)
            .receipt_handle(receipt)
            .send()
            .await
            .unwrap();
    }

    /// Receives and deletes what the queue has: messages lost, as to a crash past the last
    /// retry. Returns their bodies.
    pub async fn lose(&self, queue_url: &str, wait: Duration) -> Vec<String> {
        let messages = self.receive(queue_url, wait).await;
        for (_, receipt) in &messages {
            self.delete(queue_url, receipt).await;
        }
        messages.into_iter().filter_map(|(m, _)| m.body).collect()
    }

    /// Hands `messages` to `consumer` as one batch and deletes the ones it did not report as
    /// failed, as the event source mapping does with `ReportBatchItemFailures`.
    pub async fn deliver(
        &self,
        consumer: &dyn Consumer,
        queue_url: &str,
        messages: Vec<(SqsMessage, String)>,
    ) -> SqsBatchResponse {
        let mut event = SqsEvent::default();
        event.records = messages.iter().map(|(m, _)| m.clone()).collect();
        let response = lambda::handle_batch(consumer, event, 5, None).await;
        for (message, receipt) in &messages {
            let failed = response
                .batch_item_failures
                .iter()
                .any(|f| Some(&f.item_identifier) == message.message_id.as_ref());
            if !failed {
                self.delete(queue_url, receipt).await;
            }
        }
        response
    }

    /// Runs both queues' functions until the job has ended and its notice is out.
    pub async fn run_until_done(&self, request_id: &str) -> Job {
        eventually(
            &format!("job {request_id} to end, notified"),
            Duration::from_secs(90),
            || async {
                let job = self.job(request_id).await;
                if job.status.is_terminal() && job.notified_at.is_some() {
                    return Ok(job);
                }
                self.pump_once(Duration::from_secs(1)).await;
                Err(job)
            },
        )
        .await
    }

    /// Messages on the queue, however SQS counts them: visible, in flight and delayed.
    pub async fn depth(&self, queue_url: &str) -> u64 {
        let attributes = self
            .emulator
            .clients
            .sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap_or_default();
        [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            QueueAttributeName::ApproximateNumberOfMessagesDelayed,
        ]
        .iter()
        .map(|name| {
            attributes
                .get(name)
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("SQS answers {name:?}: {attributes:?}"))
        })
        .sum()
    }

    /// Runs both queues' functions until neither queue holds anything (delayed follow-ups
    /// included): every message sent so far has been handled.
    pub async fn settle(&self) {
        eventually("both queues empty", Duration::from_secs(60), || async {
            let left = (
                self.depth(&self.emulator.requests_url).await,
                self.depth(&self.emulator.polls_url).await,
            );
            if left == (0, 0) {
                return Ok(());
            }
            self.pump_once(Duration::from_secs(1)).await;
            Err(left)
        })
        .await
    }

    /// One round of each queue's event source.
    pub async fn pump_once(&self, wait: Duration) {
        let requests = self
            .receive(&self.emulator.requests_url, Duration::ZERO)
            .await;
        if !requests.is_empty() {
            self.deliver(
                self.processor.as_ref(),
                &self.emulator.requests_url,
                requests,
            )
            .await;
        }
        let polls = self.receive(&self.emulator.polls_url, wait).await;
        if !polls.is_empty() {
            self.deliver(self.poller.as_ref(), &self.emulator.polls_url, polls)
                .await;
        }
    }

    /// The keys under `prefix` in `bucket`, as S3 lists them.
    pub async fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        self.emulator
            .clients
            .s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .send()
            .await
            .unwrap()
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect()
    }

    /// Deletes every object under `prefix`, as a bucket's lifecycle expiration does; fails
    /// the test if there was none.
    pub async fn delete_all(&self, bucket: &str, prefix: &str) {
        let keys = self.keys(bucket, prefix).await;
        assert!(!keys.is_empty(), "nothing under s3://{bucket}/{prefix}");
        for key in keys {
            self.emulator
                .clients
                .s3
                .delete_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .unwrap();
        }
    }

    /// The emails moto's SES accepted that mention `request_id`.
    pub async fn emails_about(&self, request_id: &str) -> Vec<SentEmail> {
        moto()
            .sent_emails()
            .await
            .unwrap()
            .into_iter()
            .filter(|m| m.subject.contains(request_id) || m.body.contains(request_id))
            .collect()
    }
}
