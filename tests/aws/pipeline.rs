//! The whole AWS path and its hard cases: redelivery, a failing statement, the event racing
//! the poll, cancel, and parameter values full of quotes and backslashes.

use super::{Harness, ALICE, BOB};
use crate::common::eventually;
use export_api::{Accepted, Archive, JobHistory, JobView, PartLink, PartList};
use export_client::unpack::unpack;
use export_core::domain::JobStatus;
use export_core::messages::{Message, PollMessage};
use export_core::service::Poller;
use export_core::settings::DeliverySettings;
use serde_json::{json, Value};
use std::time::Duration;

async fn submitted(h: &Harness, body: Value) -> String {
    let reply = h.submit(ALICE, &body).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    reply.read::<Accepted>().request_id
}

/// Submits, and has the processor take the requests queue's message: the statement runs.
async fn started(h: &Harness, body: Value) -> String {
    let request_id = submitted(h, body).await;
    let requests = h
        .receive(&h.emulator.requests_url, Duration::from_secs(1))
        .await;
    h.deliver(h.processor.as_ref(), &h.emulator.requests_url, requests)
        .await;
    request_id
}

/// Downloads the job's archive through the link the status function hands out.
async fn download(h: &Harness, request_id: &str) -> Vec<export_client::unpack::ArchiveFile> {
    let reply = h
        .status_of("status-get-export.json", request_id, ALICE)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let url = reply
        .read::<JobView>()
        .download_url
        .expect("a download link");
    assert!(url.starts_with(&h.emulator.moto_endpoint), "{url}");
    assert!(
        url.contains("X-Amz-Signature="),
        "a SigV4 presigned URL: {url}"
    );
    let bytes = reqwest::get(&url)
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .bytes()
        .await
        .unwrap();
    unpack(&bytes).unwrap()
}

fn data_rows(files: &[export_client::unpack::ArchiveFile]) -> Vec<String> {
    files
        .iter()
        .flat_map(|f| {
            String::from_utf8(f.contents.clone())
                .unwrap()
                .lines()
                .skip(1)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn an_export_goes_through_every_aws_service_and_arrives_by_link_and_email() {
    let h = Harness::start().await;
    let request_id = submitted(
        &h,
        json!({"dataset": "product_detail", "params": {"sku": "FLOWER12"}, "compression": "gzip", "notify": ["analyst@example.com", "someone@elsewhere.org"]}),
    )
    .await;
    let job = h.run_until_done(&request_id).await;
    assert_eq!(job.status, JobStatus::Succeeded, "{job:?}");
    assert_eq!(job.rows, Some(1));

    // UNLOAD wrote its parts and a verbose manifest under the job's prefix, through S3.
    let listed = h
        .emulator
        .clients
        .s3
        .list_objects_v2()
        .bucket(&h.emulator.results_bucket)
        .prefix(format!("exports/{request_id}/"))
        .send()
        .await
        .unwrap();
    let keys: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect();
    assert!(keys.iter().any(|k| k.ends_with("/manifest")), "{keys:?}");
    assert!(keys.iter().any(|k| k.contains("_part_")), "{keys:?}");

    let files = download(&h, &request_id).await;
    assert_eq!(files.len(), 1);
    assert!(files[0].name.ends_with(".csv"), "{}", files[0].name);
    let rows = data_rows(&files);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].starts_with("FLOWER12,12345,"), "{rows:?}");

    // One email, to the allowed address only, with the link.
    let emails = h.emails_about(&request_id).await;
    assert_eq!(emails.len(), 1, "{emails:?}");
    assert_eq!(emails[0].to, ["analyst@example.com"]);
    assert!(
        emails[0].body.contains(&h.emulator.moto_endpoint),
        "{}",
        emails[0].body
    );

    let history = h
        .status_of("status-get-export-events.json", &request_id, ALICE)
        .await;
    let history_events = history.read::<JobHistory>().events;
    let steps: Vec<&str> = history_events.iter().map(|e| e.step.as_str()).collect();
    assert_eq!(
        steps,
        ["submitted", "started", "finished", "packaged", "notified"],
        "{}",
        history.body
    );

    // The downloads bucket's lifecycle rule removes the archive days before the job expires:
    // its status still answers, marked expired, and its link is 410 with the reason.
    h.delete_all(
        &h.emulator.downloads_bucket,
        &format!("archives/{request_id}/"),
    )
    .await;
    let status = h
        .status_of("status-get-export.json", &request_id, ALICE)
        .await;
    assert_eq!(status.status, 200, "{}", status.body);
    let view: JobView = status.read();
    assert!(view.expired, "{}", status.body);
    assert!(view.download_url.is_none(), "{}", status.body);
    let link = h
        .status_of("status-get-export-download.json", &request_id, ALICE)
        .await;
    assert_eq!(link.status, 410, "{}", link.body);
    assert_eq!(link.body["error"]["code"], "expired", "{}", link.body);
}

#[tokio::test]
async fn a_redelivered_request_starts_no_second_statement() {
    let h = Harness::start().await;
    let request_id = submitted(
        &h,
        json!({"dataset": "product_detail", "params": {"sku": "FLOWER13"}}),
    )
    .await;
    let messages = h
        .receive(&h.emulator.requests_url, Duration::from_secs(1))
        .await;
    assert_eq!(messages.len(), 1);
    let mut event = aws_lambda_events::event::sqs::SqsEvent::default();
    event.records = vec![messages[0].0.clone()];
    // At-least-once delivery: two instances get the same message at once, then a third
    // gets it again once the job is RUNNING.
    let (first, second) = tokio::join!(
        export_aws::lambda::handle_batch(h.processor.as_ref(), event.clone(), 5, None),
        export_aws::lambda::handle_batch(h.processor.as_ref(), event.clone(), 5, None),
    );
    let third = export_aws::lambda::handle_batch(h.processor.as_ref(), event, 5, None).await;
    for response in [first, second, third] {
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
    }
    let statement = h.job(&request_id).await.statement_id.expect("started");
    let statement_name = format!("{}{request_id}", h.emulator.statement_prefix);
    let executions = h.emulator.data_api.api.executions();
    assert!(!executions.is_empty());
    assert!(
        executions.iter().all(|e| e.statement_id == statement
            && e.client_token.as_deref() == Some(request_id.as_str())
            && e.statement_name.as_deref() == Some(statement_name.as_str())),
        "one statement, whatever the deliveries: {executions:?}"
    );
    // The same client token with the same text names the same statement.
    let again = h
        .emulator
        .clients
        .redshift
        .execute_statement()
        .sql(
            h.emulator
                .data_api
                .api
                .statement_sql(&statement)
                .await
                .unwrap(),
        )
        .database("dev")
        .cluster_identifier(export_emulator::provision::CLUSTER_ID)
        .secret_arn(export_emulator::provision::SECRET_ARN)
        .client_token(&request_id)
        .statement_name(&statement_name)
        .with_event(true)
        .send()
        .await
        .unwrap();
    assert_eq!(again.id(), Some(statement.as_str()));
    let job = h.run_until_done(&request_id).await;
    assert_eq!(job.status, JobStatus::Succeeded);
    assert_eq!(job.statement_id.as_deref(), Some(statement.as_str()));
    assert_eq!(h.emails_about(&request_id).await.len(), 1);
}

#[tokio::test]
async fn a_failing_statement_fails_the_job_with_its_error_and_a_notice() {
    let h = Harness::start().await;
    // The table the export reads is gone from the warehouse: the statement fails there.
    h.emulator
        .data_api
        .api
        .session()
        .deregister_table("rsdataapi.product_detail")
        .unwrap();
    let request_id = submitted(
        &h,
        json!({"dataset": "product_detail", "params": {"sku": "FLOWER12"}}),
    )
    .await;
    let job = h.run_until_done(&request_id).await;
    assert_eq!(job.status, JobStatus::Failed, "{job:?}");
    let error = job.error.unwrap();
    assert!(
        error.starts_with("ERROR:") && error.contains("product"),
        "{error}"
    );
    let emails = h.emails_about(&request_id).await;
    assert_eq!(emails.len(), 1, "{emails:?}");
    assert!(
        emails[0].subject.contains("failed"),
        "{}",
        emails[0].subject
    );
    assert_eq!(
        emails[0].to,
        [export_emulator::provision::DEFAULT_RECIPIENT]
    );
}

#[tokio::test]
async fn a_malformed_unload_fails_with_redshift_like_text() {
    let h = Harness::start().await;
    let warehouse = &h.emulator.clients.redshift;
    let started = warehouse
        .execute_statement()
        .sql("UNLOAD ('SELECT 1') TO 's3://nowhere/x/' IAM_ROLE 'arn:aws:iam::1:role/r' FORMAT AS XML")
        .database("dev")
        .workgroup_name(export_emulator::provision::WORKGROUP)
        .send()
        .await
        .unwrap();
    let id = started.id().unwrap().to_owned();
    let described = eventually("the statement to end", Duration::from_secs(30), || async {
        let described = warehouse.describe_statement().id(&id).send().await.unwrap();
        match described.status().map(|s| s.as_str()) {
            Some("SUBMITTED" | "PICKED" | "STARTED") | None => Err(described),
            Some(_) => Ok(described),
        }
    })
    .await;
    assert_eq!(described.status().unwrap().as_str(), "FAILED");
    assert!(
        described.error().unwrap().starts_with("ERROR:"),
        "{:?}",
        described.error()
    );
    assert_eq!(
        described.workgroup_name(),
        Some(export_emulator::provision::WORKGROUP)
    );

    // Unknown targets and statements are refused the way the Data API refuses them.
    let refused = warehouse
        .execute_statement()
        .sql("SELECT 1")
        .database("dev")
        .cluster_identifier("nope")
        .db_user("u")
        .send()
        .await
        .unwrap_err();
    assert!(refused
        .as_service_error()
        .unwrap()
        .is_validation_exception());
    let missing = warehouse
        .describe_statement()
        .id("no-such-statement")
        .send()
        .await
        .unwrap_err();
    assert!(missing
        .as_service_error()
        .unwrap()
        .is_resource_not_found_exception());
}

#[tokio::test]
async fn the_statement_event_and_the_backoff_poll_racing_finish_the_job_once() {
    let h = Harness::start().await;
    let request_id = started(
        &h,
        json!({"dataset": "product_detail", "params": {"sku": "FLOWER14"}}),
    )
    .await;
    // Collect the statement's event and the processor's follow-up poll; add duplicates of
    // the follow-up, as at-least-once delivery may.
    let mut polls = Vec::new();
    for _ in 0..20 {
        polls.extend(
            h.receive(&h.emulator.polls_url, Duration::from_secs(1))
                .await,
        );
        let has_event = polls
            .iter()
            .any(|(m, _)| m.body.as_deref().unwrap_or("").contains("detail-type"));
        if has_event && polls.len() >= 2 {
            break;
        }
    }
    assert!(polls.len() >= 2, "{polls:?}");
    // The event came the way it comes on AWS: put on EventBridge by the Data API, routed to
    // the polls queue by the template's rule.
    assert!(
        polls.iter().any(|(m, _)| m
            .body
            .as_deref()
            .unwrap_or("")
            .contains("Redshift Data Statement Status Change")),
        "no statement event through the rule: {polls:?}"
    );
    for _ in 0..2 {
        h.poller
            .queue
            .send(&Message::follow_up(&request_id, Some(0)), Duration::ZERO)
            .await
            .unwrap();
    }
    polls.extend(
        h.receive(&h.emulator.polls_url, Duration::from_secs(1))
            .await,
    );
    // All in one batch: the handler runs them concurrently.
    let response = h
        .deliver(h.poller.as_ref(), &h.emulator.polls_url, polls)
        .await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let job = h.run_until_done(&request_id).await;
    assert_eq!(job.status, JobStatus::Succeeded);
    let events = h.poller.control.events(&request_id).await.unwrap();
    for step in ["finished", "packaged", "notified"] {
        assert_eq!(
            events.iter().filter(|e| e.step == step).count(),
            1,
            "{step}: {events:?}"
        );
    }
    assert_eq!(h.emails_about(&request_id).await.len(), 1);
}

#[tokio::test]
async fn cancelling_a_running_export_aborts_its_statement() {
    let h = Harness::start_with(|o| o.data_api.statement_delay = Duration::from_secs(30)).await;
    let request_id = started(
        &h,
        json!({"dataset": "product_detail", "params": {"sku": "FLOWER15"}}),
    )
    .await;
    let job = h.job(&request_id).await;
    assert_eq!(job.status, JobStatus::Running);

    // Bob cannot cancel Alice's job; Alice can.
    let mut cancel = super::sample_event("receiver-delete-export.json", &request_id);
    cancel["requestContext"]["identity"]["userArn"] = BOB.into();
    assert_eq!(h.call(&h.receiver, &cancel).await.status, 404);
    cancel["requestContext"]["identity"]["userArn"] = ALICE.into();
    let reply = h.call(&h.receiver, &cancel).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(h.call(&h.receiver, &cancel).await.status, 409);

    let statement = job.statement_id.unwrap();
    let described = h
        .emulator
        .clients
        .redshift
        .describe_statement()
        .id(&statement)
        .send()
        .await
        .unwrap();
    assert_eq!(described.status().unwrap().as_str(), "ABORTED");
    // The pollers' messages for it find a cancelled job and leave it so.
    for _ in 0..3 {
        h.pump_once(Duration::from_secs(1)).await;
    }
    assert_eq!(h.job(&request_id).await.status, JobStatus::Cancelled);
    assert!(h.emails_about(&request_id).await.is_empty());
}

#[tokio::test]
async fn the_sweep_carries_on_jobs_whose_messages_were_lost() {
    let h = Harness::start().await;
    // A job whose start message is lost.
    let queued = submitted(
        &h,
        json!({"dataset": "product_detail", "params": {"sku": "FLOWER16"}}),
    )
    .await;
    assert_eq!(
        h.lose(&h.emulator.requests_url, Duration::from_secs(1))
            .await
            .len(),
        1
    );
    // A job whose statement ran, but whose follow-up poll and statement event are both lost.
    let running = started(
        &h,
        json!({"dataset": "product_detail", "params": {"sku": "FLOWER17"}}),
    )
    .await;
    let mut lost = Vec::new();
    for _ in 0..30 {
        lost.extend(h.lose(&h.emulator.polls_url, Duration::from_secs(1)).await);
        let event = lost.iter().any(|b| b.contains("detail-type"));
        let follow_up = lost.iter().any(|b| b.contains("\"attempt\""));
        if event && follow_up {
            break;
        }
    }
    assert_eq!(lost.len(), 2, "{lost:?}");
    // A cancelled job: settled, never swept.
    let cancelled = submitted(
        &h,
        json!({"dataset": "product_detail", "params": {"sku": "FLOWER18"}}),
    )
    .await;
    let cancel = super::sample_event("receiver-delete-export.json", &cancelled);
    assert_eq!(h.call(&h.receiver, &cancel).await.status, 202);
    h.lose(&h.emulator.requests_url, Duration::from_secs(1))
        .await;
    assert_eq!(h.job(&queued).await.status, JobStatus::Queued);
    assert_eq!(h.job(&running).await.status, JobStatus::Running);

    // The schedule's tick, as EventBridge delivers it, with every job old enough to sweep.
    let sweeper = Poller {
        delivery: DeliverySettings {
            sweep_after: Duration::ZERO,
            ..h.poller.delivery.clone()
        },
        ..(*h.poller).clone()
    };
    let tick = export_emulator::events::sample("eventbridge-scheduled-sweep.json", "").unwrap();
    let tick = PollMessage::parse(&tick.to_string()).unwrap();
    assert_eq!(tick, PollMessage::Sweep);
    sweeper.handle(&tick.to_body()).await.unwrap();
    let requests = h
        .receive(&h.emulator.requests_url, Duration::from_secs(1))
        .await;
    let bodies: Vec<_> = requests
        .iter()
        .filter_map(|(m, _)| m.body.clone())
        .collect();
    assert_eq!(bodies, [Message::start(&queued).body()]);
    let polls = h
        .receive(&h.emulator.polls_url, Duration::from_secs(1))
        .await;
    let bodies: Vec<_> = polls.iter().filter_map(|(m, _)| m.body.clone()).collect();
    assert_eq!(bodies, [Message::follow_up(&running, None).body()]);
    h.deliver(h.processor.as_ref(), &h.emulator.requests_url, requests)
        .await;
    h.deliver(h.poller.as_ref(), &h.emulator.polls_url, polls)
        .await;

    for request_id in [&queued, &running] {
        let job = h.run_until_done(request_id).await;
        assert_eq!(job.status, JobStatus::Succeeded, "{job:?}");
        assert_eq!(h.emails_about(request_id).await.len(), 1);
    }
    assert_eq!(h.job(&cancelled).await.status, JobStatus::Cancelled);
    // Every job is settled. Once the follow-ups still in flight have run their course (a job
    // can end before its own chain's last look is due), the next tick sends nothing.
    h.settle().await;
    sweeper.sweep().await.unwrap();
    assert_eq!(h.depth(&h.emulator.requests_url).await, 0);
    assert_eq!(h.depth(&h.emulator.polls_url).await, 0);
}

#[tokio::test]
async fn parameter_values_full_of_quotes_and_backslashes_match_exactly_their_rows() {
    let h = Harness::start().await;
    let cases = [
        ("O'NEIL\\7", Some("90001")),
        ("x' OR '1'='1", None),
        ("FLOWER12' --", None),
        ("\\", None),
        ("\\');DROP TABLE p;--", None),
    ];
    let mut ids = Vec::new();
    for (sku, _) in &cases {
        ids.push(
            submitted(
                &h,
                json!({"dataset": "product_detail", "params": {"sku": sku}}),
            )
            .await,
        );
    }
    for ((sku, expected), request_id) in cases.iter().zip(&ids) {
        let job = h.run_until_done(request_id).await;
        assert_eq!(job.status, JobStatus::Succeeded, "{sku}: {job:?}");
        let rows = data_rows(&download(&h, request_id).await);
        match expected {
            Some(id) => {
                assert_eq!(rows.len(), 1, "{sku}: {rows:?}");
                assert!(rows[0].contains(&format!(",{id},")), "{sku}: {rows:?}");
            }
            None => assert!(rows.is_empty(), "{sku} must match nothing: {rows:?}"),
        }
    }
    // The statement text carried the value quoted once for the SELECT and once for UNLOAD.
    let sql = h
        .emulator
        .data_api
        .api
        .statement_sql(h.job(&ids[0]).await.statement_id.as_deref().unwrap())
        .await
        .unwrap();
    assert!(
        sql.starts_with("UNLOAD ('") && sql.contains(r"'O''''NEIL\\\\7'"),
        "{sql}"
    );
    assert!(
        sql.contains("MANIFEST VERBOSE") && !sql.contains("ALLOWOVERWRITE"),
        "{sql}"
    );
}

#[tokio::test]
async fn transient_failures_are_retried_within_seconds_not_a_visibility_timeout() {
    // Messages left to SQS's redelivery would come back only after ten minutes, long after
    // `run_until_done` gives up; retry copies wait one second, then two.
    let h = Harness::start_with(|o| o.visibility_timeout = Duration::from_secs(600)).await;
    h.emulator.data_api.api.refuse_next_executions(2);
    let request_id = submitted(
        &h,
        json!({"dataset": "product_detail", "params": {"sku": "FLOWER16"}}),
    )
    .await;
    let job = h.run_until_done(&request_id).await;
    assert_eq!(job.status, JobStatus::Succeeded, "{job:?}");
    let executions = h.emulator.data_api.api.executions();
    assert_eq!(
        executions.len(),
        1,
        "one statement, after two refusals: {executions:?}"
    );
    assert_eq!(h.depth(&h.emulator.requests_url).await, 0);
}

#[tokio::test]
async fn parts_handed_out_as_they_are_go_through_every_function() {
    let h = Harness::start().await;
    let request_id = submitted(
        &h,
        json!({"dataset": "customers", "params": {"ids": [1, 2, 3, 4]}, "archive": "none", "notify": ["analyst@example.com"]}),
    )
    .await;
    let job = h.run_until_done(&request_id).await;
    assert_eq!(job.status, JobStatus::Succeeded, "{job:?}");
    assert_eq!(job.rows, Some(4));
    // No archive was written: the result is the UNLOAD's own parts.
    let archives = h.keys(&h.emulator.downloads_bucket, "").await;
    assert!(
        archives.iter().all(|k| !k.contains(&request_id)),
        "{archives:?}"
    );
    let status = h
        .status_of("status-get-export.json", &request_id, ALICE)
        .await;
    assert_eq!(status.status, 200, "{}", status.body);
    let view: JobView = status.read();
    assert_eq!(view.summary.archive, Archive::None);
    let listed = h
        .status_of("status-get-export-parts.json", &request_id, ALICE)
        .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let parts = listed.read::<PartList>().parts;
    assert_eq!(listed.read::<PartList>().total_parts, parts.len());
    // The job's status shows the same first page of parts (each link signed afresh).
    let fields = |parts: &[PartLink]| -> Vec<(String, u64, u64)> {
        parts
            .iter()
            .map(|p| (p.name.clone(), p.size, p.rows))
            .collect()
    };
    assert_eq!(fields(&parts), fields(&view.parts.unwrap()));
    let mut rows = Vec::new();
    for part in &parts {
        let url = part.url.as_str();
        assert!(
            url.starts_with(&h.emulator.moto_endpoint) && url.contains("X-Amz-Signature="),
            "{url}"
        );
        let body = reqwest::get(url)
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(body.len() as u64, part.size);
        let text = String::from_utf8(body.to_vec()).unwrap();
        rows.extend(text.lines().skip(1).map(str::to_owned));
    }
    let keys: Vec<&str> = rows.iter().map(|r| r.split(',').next().unwrap()).collect();
    assert_eq!(keys, ["1", "2", "3", "4"]);
    // Others see nothing of it; the one email links the parts.
    let theirs = h
        .status_of("status-get-export-parts.json", &request_id, BOB)
        .await;
    assert_eq!(theirs.status, 404, "{}", theirs.body);
    let emails = h.emails_about(&request_id).await;
    assert_eq!(emails.len(), 1, "{emails:?}");
    assert!(
        emails[0].body.contains("/exports/") && emails[0].body.contains("/parts"),
        "{}",
        emails[0].body
    );

    // The results bucket forgets the UNLOAD output after `ResultsExpiryDays`.
    h.delete_all(
        &h.emulator.results_bucket,
        &format!("exports/{request_id}/"),
    )
    .await;
    let status = h
        .status_of("status-get-export.json", &request_id, ALICE)
        .await;
    assert_eq!(status.status, 200, "{}", status.body);
    let view: JobView = status.read();
    assert!(view.expired, "{}", status.body);
    assert!(view.parts.is_none(), "{}", status.body);
    for route in [
        "status-get-export-parts.json",
        "status-get-export-download.json",
    ] {
        let gone = h.status_of(route, &request_id, ALICE).await;
        assert_eq!(gone.status, 410, "{route}: {}", gone.body);
    }
}

#[tokio::test]
async fn packaging_that_outlives_an_invocation_carries_on_in_the_next() {
    // At this scale the whole table is about 9 MB of CSV: two parts of at most 5 MB.
    let h = Harness::start_with(|o| o.data_api.scale = 0.02).await;
    // A poller whose invocations end at once: each packages one part and hands on.
    let short = Poller {
        packaging: export_core::settings::PackagingSettings {
            budget: Some(Duration::ZERO),
            ..h.poller.packaging.clone()
        },
        ..(*h.poller).clone()
    };
    // Parts of at most 5 MB (UNLOAD's smallest MAXFILESIZE): the whole table takes several.
    let processor = export_core::service::Processor {
        unload: export_core::settings::UnloadSettings {
            max_file_size_mb: 5,
            ..h.processor.unload.clone()
        },
        ..(*h.processor).clone()
    };
    let request_id = submitted(
        &h,
        json!({"dataset": "shipped_lineitems", "params": {"ship_from": "1992-01-01", "ship_to": "1998-12-31"}, "archive": "tar.gz"}),
    )
    .await;
    let requests = h
        .receive(&h.emulator.requests_url, Duration::from_secs(1))
        .await;
    h.deliver(&processor, &h.emulator.requests_url, requests)
        .await;
    let job = eventually(
        "the job packaged in several invocations",
        Duration::from_secs(90),
        || async {
            let job = h.job(&request_id).await;
            if job.status.is_terminal() && job.notified_at.is_some() {
                return Ok(job);
            }
            let polls = h
                .receive(&h.emulator.polls_url, Duration::from_secs(1))
                .await;
            let delivered = polls.len();
            let failed = if polls.is_empty() {
                0
            } else {
                h.deliver(&short, &h.emulator.polls_url, polls)
                    .await
                    .batch_item_failures
                    .len()
            };
            // What a failed wait reports: the job, and what the Data API says of its
            // statement, and this round's polls, so a stall shows where it is.
            let statement = match &job.statement_id {
                Some(id) => h
                    .emulator
                    .clients
                    .redshift
                    .describe_statement()
                    .id(id)
                    .send()
                    .await
                    .map(|d| format!("{:?}", d.status()))
                    .unwrap_or_else(|e| format!("{e}")),
                None => "no statement".into(),
            };
            Err(format!(
                "{:?}; statement {statement}; polls delivered {delivered}, failed {failed}",
                job.status
            ))
        },
    )
    .await;
    assert_eq!(job.status, JobStatus::Succeeded, "{job:?}");
    let history = h
        .status_of("status-get-export-events.json", &request_id, ALICE)
        .await;
    let paused = history
        .read::<JobHistory>()
        .events
        .iter()
        .filter(|e| e.step == "packaging" && e.outcome == "paused")
        .count();
    let files = download(&h, &request_id).await;
    assert!(files.len() >= 2, "{} files", files.len());
    assert_eq!(paused, files.len() - 1, "{}", history.body);
    assert_eq!(Some(data_rows(&files).len() as u64), job.rows);
    // Nothing staged is left, and no upload is open.
    let staged = h
        .keys(
            &h.emulator.downloads_bucket,
            &format!("archives/{request_id}/staging/"),
        )
        .await;
    assert!(staged.is_empty(), "{staged:?}");
    let uploads = h
        .emulator
        .clients
        .s3
        .list_multipart_uploads()
        .bucket(&h.emulator.downloads_bucket)
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty(), "{uploads:?}");
    assert_eq!(h.emails_about(&request_id).await.len(), 1);
}
