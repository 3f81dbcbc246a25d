//! Every sample event in `events/` through its function's handler.

use super::{sample_event, Harness, ALICE};
use crate::common::eventually;
use aws_lambda_events::event::sqs::SqsEvent;
use export_aws::lambda::handle_batch;
use export_core::domain::JobStatus;
use export_core::messages::PollMessage;
use serde_json::Value;

#[tokio::test]
async fn every_sample_event_runs_through_its_function() {
    let h = Harness::start().await;
    let mut samples: Vec<String> = std::fs::read_dir(export_emulator::events::dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    samples.sort();
    let mut exercised = Vec::new();

    // receiver: POST /exports (with its Idempotency-Key), replayed to the same job.
    let post = sample_event("receiver-post-exports.json", "");
    let created = h.call(&h.receiver, &post).await;
    assert_eq!(created.status, 202, "{}", created.body);
    let request_id = created.body["request_id"].as_str().unwrap().to_owned();
    assert_eq!(
        h.call(&h.receiver, &post).await.body["request_id"],
        request_id.as_str()
    );
    exercised.push("receiver-post-exports.json");

    // processor: the sample batch, naming the job.
    let drained = h
        .receive(&h.emulator.requests_url, std::time::Duration::from_secs(1))
        .await;
    assert_eq!(
        drained.len(),
        1,
        "one message for the job, however often it was posted"
    );
    let batch: SqsEvent =
        serde_json::from_value(sample_event("processor-sqs-requests.json", &request_id)).unwrap();
    assert!(handle_batch(h.processor.as_ref(), batch, 5)
        .await
        .batch_item_failures
        .is_empty());
    assert_eq!(h.job(&request_id).await.status, JobStatus::Running);
    exercised.push("processor-sqs-requests.json");

    // poller: the follow-up, then the statement event once the statement has ended.
    let follow_up: SqsEvent =
        serde_json::from_value(sample_event("poller-sqs-follow-up.json", &request_id)).unwrap();
    assert!(handle_batch(h.poller.as_ref(), follow_up, 5)
        .await
        .batch_item_failures
        .is_empty());
    exercised.push("poller-sqs-follow-up.json");
    let statement_id = h.job(&request_id).await.statement_id.unwrap();
    eventually(
        "the statement to finish",
        std::time::Duration::from_secs(30),
        || async {
            let described = h
                .emulator
                .clients
                .redshift
                .describe_statement()
                .id(&statement_id)
                .send()
                .await
                .unwrap();
            match described.status().map(|s| s.as_str()) {
                Some("FINISHED") => Ok(()),
                _ => Err(described),
            }
        },
    )
    .await;
    let mut event = sample_event("poller-sqs-statement-event.json", &request_id);
    let body: Value = serde_json::from_str(event["Records"][0]["body"].as_str().unwrap()).unwrap();
    // The SQS body is the EventBridge event as the rule forwards it.
    assert_eq!(
        body,
        sample_event("eventbridge-statement-status-change.json", &request_id)
    );
    assert!(matches!(
        PollMessage::parse(&body.to_string()),
        Ok(PollMessage::StatementEvent(_))
    ));
    let body = body
        .to_string()
        .replace("d9b5a7c1-3e2f-4a6b-8c0d-1e2f3a4b5c6d", &statement_id);
    event["Records"][0]["body"] = Value::String(body);
    let batch: SqsEvent = serde_json::from_value(event).unwrap();
    assert!(handle_batch(h.poller.as_ref(), batch, 5)
        .await
        .batch_item_failures
        .is_empty());
    let job = h.job(&request_id).await;
    assert_eq!(job.status, JobStatus::Succeeded, "{job:?}");
    exercised.extend([
        "poller-sqs-statement-event.json",
        "eventbridge-statement-status-change.json",
    ]);
    // The sweep's schedule tick, as the polls queue delivers it: nothing is stuck, nothing fails.
    let mut tick = sample_event("poller-sqs-statement-event.json", &request_id);
    tick["Records"][0]["body"] =
        Value::String(sample_event("eventbridge-scheduled-sweep.json", &request_id).to_string());
    let batch: SqsEvent = serde_json::from_value(tick).unwrap();
    assert!(handle_batch(h.poller.as_ref(), batch, 5)
        .await
        .batch_item_failures
        .is_empty());
    exercised.push("eventbridge-scheduled-sweep.json");

    // status: every route, for the finished job.
    for (sample, expected) in [
        ("status-get-export.json", 200),
        ("status-get-export-events.json", 200),
        ("status-get-export-download.json", 303),
        ("status-list-exports.json", 200),
        ("status-get-datasets.json", 200),
        ("status-get-product.json", 200),
    ] {
        let reply = h.status_of(sample, &request_id, ALICE).await;
        assert_eq!(reply.status, expected, "{sample}: {}", reply.body);
        exercised.push(sample);
    }
    let listed = h
        .status_of("status-list-exports.json", &request_id, ALICE)
        .await;
    assert_eq!(
        listed.body["jobs"][0]["request_id"],
        request_id.as_str(),
        "{}",
        listed.body
    );
    let download = h
        .status_of("status-get-export-download.json", &request_id, ALICE)
        .await;
    assert!(download.headers["location"]
        .to_str()
        .unwrap()
        .starts_with(&h.emulator.moto_endpoint));

    // receiver: the compatibility route, and a cancel (refused: the job is over).
    let product = h
        .call(
            &h.receiver,
            &sample_event("receiver-post-product.json", &request_id),
        )
        .await;
    assert_eq!(product.status, 200, "{}", product.body);
    assert!(product.body["RequestId"].is_string());
    exercised.push("receiver-post-product.json");
    let cancel = h
        .call(
            &h.receiver,
            &sample_event("receiver-delete-export.json", &request_id),
        )
        .await;
    assert_eq!(cancel.status, 409, "{}", cancel.body);
    exercised.push("receiver-delete-export.json");

    exercised.sort();
    assert_eq!(samples, exercised, "every file in events/ is exercised");
}

#[tokio::test]
async fn a_request_without_an_iam_identity_is_refused() {
    let h = Harness::start().await;
    let mut event = sample_event("status-get-datasets.json", "");
    event["requestContext"]["identity"]["userArn"] = Value::Null;
    let reply = h.call(&h.status, &event).await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.body["error"]["code"], "forbidden", "{}", reply.body);
}

#[tokio::test]
async fn a_page_token_the_api_never_issued_is_a_400_naming_it() {
    let h = Harness::start().await;
    for cursor in ["junk", "MTc5NTM5NTIzMDgwNi5ub3QtYS11dWlk"] {
        let mut event = sample_event("status-list-exports.json", "");
        event["queryStringParameters"]["cursor"] = cursor.into();
        event["multiValueQueryStringParameters"]["cursor"] = serde_json::json!([cursor]);
        let reply = h.call(&h.status, &event).await;
        assert_eq!(reply.status, 400, "{cursor}: {}", reply.body);
        assert_eq!(reply.body["error"]["field"], "cursor", "{}", reply.body);
    }
}
