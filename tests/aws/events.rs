//! Every sample event in `events/` through its function's handler.

use super::{behind_base_path, sample_event, Harness, ALICE};
use crate::common::eventually;
use aws_lambda_events::event::sqs::SqsEvent;
use export_api::{Accepted, JobList, ProductAccepted};
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
    let request_id = created.read::<Accepted>().request_id;
    assert_eq!(
        h.call(&h.receiver, &post)
            .await
            .read::<Accepted>()
            .request_id,
        request_id
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
    assert!(handle_batch(h.processor.as_ref(), batch, 5, None)
        .await
        .batch_item_failures
        .is_empty());
    assert_eq!(h.job(&request_id).await.status, JobStatus::Running);
    exercised.push("processor-sqs-requests.json");

    // poller: the follow-up, then the statement event once the statement has ended.
    let follow_up: SqsEvent =
        serde_json::from_value(sample_event("poller-sqs-follow-up.json", &request_id)).unwrap();
    assert!(handle_batch(h.poller.as_ref(), follow_up, 5, None)
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
    // The sample is of the stack samconfig.toml names; this emulated stack has its own name.
    let body = body
        .to_string()
        .replace("d9b5a7c1-3e2f-4a6b-8c0d-1e2f3a4b5c6d", &statement_id)
        .replace("redshift-export:", &h.emulator.statement_prefix);
    event["Records"][0]["body"] = Value::String(body);
    let batch: SqsEvent = serde_json::from_value(event).unwrap();
    assert!(handle_batch(h.poller.as_ref(), batch, 5, None)
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
    assert!(handle_batch(h.poller.as_ref(), batch, 5, None)
        .await
        .batch_item_failures
        .is_empty());
    exercised.push("eventbridge-scheduled-sweep.json");

    // status: every route, for the finished job, and each again behind a base path mapping.
    for (sample, expected) in [
        ("status-get-export.json", 200),
        ("status-get-export-base-path.json", 200),
        ("status-get-export-events.json", 200),
        ("status-get-export-download.json", 303),
        // A packaged export has no parts to list; the route says where its archive is.
        ("status-get-export-parts.json", 409),
        ("status-list-exports.json", 200),
        ("status-get-datasets.json", 200),
        ("status-get-openapi.json", 200),
        ("status-get-product.json", 200),
        ("status-get-lookup.json", 200),
        ("status-get-customer.json", 200),
        ("status-get-dataset.json", 200),
        ("status-get-dataset-lookup.json", 200),
        ("status-get-quota.json", 200),
    ] {
        let reply = h.status_of(sample, &request_id, ALICE).await;
        assert_eq!(reply.status, expected, "{sample}: {}", reply.body);
        let mapped = h
            .call(
                &h.status,
                &behind_base_path(&sample_event(sample, &request_id)),
            )
            .await;
        assert_eq!(
            mapped.status, expected,
            "{sample} behind a base path: {}",
            mapped.body
        );
        exercised.push(sample);
    }
    // The other kinds of caller, as the samples have them: none of them sees Alice's job.
    for sample in [
        "status-list-exports-assumed-role.json",
        "status-list-exports-cognito.json",
    ] {
        let reply = h.call(&h.status, &sample_event(sample, &request_id)).await;
        assert_eq!(reply.status, 200, "{sample}: {}", reply.body);
        assert!(reply.read::<JobList>().jobs.is_empty(), "{sample}");
        exercised.push(sample);
    }
    let listed = h
        .status_of("status-list-exports.json", &request_id, ALICE)
        .await;
    assert_eq!(
        listed.read::<JobList>().jobs[0].request_id,
        request_id,
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
    product.read::<ProductAccepted>();
    let mapped = behind_base_path(&sample_event("receiver-post-product.json", &request_id));
    assert_eq!(h.call(&h.receiver, &mapped).await.status, 200);
    // The same Idempotency-Key: the same job, found through the mapped path too.
    let mapped = behind_base_path(&sample_event("receiver-post-exports.json", ""));
    let replayed = h.call(&h.receiver, &mapped).await;
    assert_eq!(
        replayed.read::<Accepted>().request_id,
        request_id,
        "{}",
        replayed.body
    );
    exercised.push("receiver-post-product.json");
    let cancel = h
        .call(
            &h.receiver,
            &sample_event("receiver-delete-export.json", &request_id),
        )
        .await;
    assert_eq!(cancel.status, 409, "{}", cancel.body);
    let mapped = behind_base_path(&sample_event("receiver-delete-export.json", &request_id));
    assert_eq!(h.call(&h.receiver, &mapped).await.status, 409);
    exercised.push("receiver-delete-export.json");

    // receiver: a partner's export of its own dataset, by the dataset's route; replayed to the
    // same job behind a base path.
    let partner = sample_event("receiver-post-dataset-exports.json", "");
    let theirs = h.call(&h.receiver, &partner).await;
    assert_eq!(theirs.status, 202, "{}", theirs.body);
    let replayed = h.call(&h.receiver, &behind_base_path(&partner)).await;
    assert_eq!(
        replayed.read::<Accepted>().request_id,
        theirs.read::<Accepted>().request_id
    );
    let job = h.job(&theirs.read::<Accepted>().request_id).await;
    assert_eq!(job.params["suppliers"], serde_json::json!([7]));
    exercised.push("receiver-post-dataset-exports.json");

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

#[tokio::test]
async fn the_statement_rule_forwards_this_stack_s_statements_whoever_started_them() {
    // The rule as the template has it, on moto's EventBridge, with a queue of its own as its
    // target: what moto routes to the queue is what the rule lets through.
    let h = Harness::start().await;
    let sdk = export_emulator::provision::sdk_config(&super::moto().endpoint).await;
    let events = aws_sdk_eventbridge::Client::new(&sdk);
    let sqs = &h.emulator.clients.sqs;
    let name = format!(
        "statements-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    );
    let queue_url = sqs
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    events
        .put_rule()
        .name(&name)
        .event_pattern(
            export_emulator::eventbridge::statement_rule_pattern("redshift-export").unwrap(),
        )
        .send()
        .await
        .unwrap();
    events
        .put_targets()
        .rule(&name)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("polls")
                .arn(queue_arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    let sample = sample_event(
        "eventbridge-statement-status-change.json",
        super::SAMPLE_REQUEST_ID,
    );
    let ours = format!("redshift-export:{}", super::SAMPLE_REQUEST_ID);
    assert_eq!(sample["detail"]["statementName"], ours.as_str());
    // The principal forms AWS's examples of this event show ("Monitoring events for the Amazon
    // Redshift Data API in Amazon EventBridge": an IAM user; an assumed role), and session
    // ARNs of the roles a deployment starts statements as.
    let mut cases: Vec<(String, Value, bool)> = [
        "arn:aws:iam::123456789012:user/myuser",
        "arn:aws:sts::123456789012:assumed-role/any",
        "arn:aws:sts::123456789012:assumed-role/redshift-export-data-api/redshift-export",
        "arn:aws:sts::123456789012:assumed-role/redshift-export-ProcessorRole-1AB2C3/redshift-export-ProcessorFunction-4D5E6F",
    ]
    .into_iter()
    .map(|principal| (principal.to_owned(), Value::String(ours.clone()), true))
    .collect();
    // Statements of anyone else: another stack (even one whose name starts alike), a query
    // of someone's own, a statement without a name.
    for other in [
        Value::String(format!("redshift-export-2:{}", super::SAMPLE_REQUEST_ID)),
        Value::String("test.testtable".into()),
        Value::Null,
    ] {
        cases.push(("arn:aws:iam::123456789012:user/myuser".into(), other, false));
    }
    for (i, (principal, statement_name, _)) in cases.iter().enumerate() {
        let mut detail = sample["detail"].clone();
        detail["principal"] = principal.as_str().into();
        // Each case's event told apart by its statement id.
        detail["statementId"] = format!("case-{i}").into();
        match statement_name {
            Value::Null => drop(detail.as_object_mut().unwrap().remove("statementName")),
            name => detail["statementName"] = name.clone(),
        }
        let put = events
            .put_events()
            .entries(
                aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                    .source(sample["source"].as_str().unwrap())
                    .detail_type(sample["detail-type"].as_str().unwrap())
                    .detail(detail.to_string())
                    .build(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(put.failed_entry_count, 0);
    }
    let expected: Vec<String> = cases
        .iter()
        .enumerate()
        .filter(|(_, (_, _, forwarded))| *forwarded)
        .map(|(i, _)| format!("case-{i}"))
        .collect();
    let mut forwarded: Vec<String> = h
        .receive(&queue_url, std::time::Duration::from_secs(1))
        .await
        .into_iter()
        .map(|(message, _)| {
            let event: Value = serde_json::from_str(message.body.as_deref().unwrap()).unwrap();
            event["detail"]["statementId"].as_str().unwrap().to_owned()
        })
        .collect();
    forwarded.sort();
    assert_eq!(forwarded, expected);
}
