//! Each AWS adapter on its own, through the real SDK against the emulators.

use super::Harness;
use crate::sweep::{job, unsettled_jobs_contract};
use bytes::Bytes;
use export_aws::dynamodb::DynamoControlTable;
use export_aws::redshift::{ClusterCredentials, DataApiWarehouse, Target};
use export_aws::s3::S3ObjectStore;
use export_aws::ses::SesMailer;
use export_aws::sqs::SqsQueues;
use export_core::domain::{now_ms, JobEvent, JobStatus, JobUpdate, ObjectRef, Owner};
use export_core::ports::{
    ControlTable, CreateOutcome, Email, IdempotencyKey, Mailer, ObjectStore, PortError, QueueName,
    QueueSender, StatementRequest, StatementState, Warehouse,
};
use export_emulator::provision::{CLUSTER_ID, DATABASE, SECRET_ARN, SENDER, WORKGROUP};
use futures::StreamExt;
use std::time::{Duration, Instant};

#[tokio::test]
async fn dynamodb_control_table_keeps_jobs_events_and_keys_consistent() {
    let h = Harness::start().await;
    let table = DynamoControlTable::new(
        h.emulator.clients.dynamodb.clone(),
        &h.emulator.table,
        Duration::from_secs(86_400),
    );
    let submitted = JobEvent::new("submitted", "QUEUED", "accepted");
    let key = IdempotencyKey {
        owner: Owner("alice".into()),
        key: "k-1".into(),
        request_digest: "d1".into(),
    };
    let first = job("r1", "alice", 1_000);
    assert_eq!(
        table
            .create_job(&first, &submitted, Some(&key))
            .await
            .unwrap(),
        CreateOutcome::Created
    );
    // The same key again writes nothing and names the first job.
    let other = job("r2", "alice", 2_000);
    assert_eq!(
        table
            .create_job(&other, &submitted, Some(&key))
            .await
            .unwrap(),
        CreateOutcome::KeyUsed {
            request_id: "r1".into(),
            same_request: true
        }
    );
    let changed = IdempotencyKey {
        request_digest: "d2".into(),
        ..key.clone()
    };
    assert_eq!(
        table
            .create_job(&other, &submitted, Some(&changed))
            .await
            .unwrap(),
        CreateOutcome::KeyUsed {
            request_id: "r1".into(),
            same_request: false
        }
    );
    assert!(table.get_job("r2").await.unwrap().is_none());
    assert_eq!(table.get_job("r1").await.unwrap().unwrap(), first);

    // Transitions are conditional on the current status.
    let start = JobUpdate {
        statement_id: Some("s1".into()),
        ..JobUpdate::default()
    };
    let started = JobEvent::new("started", "RUNNING", "statement s1 started");
    assert!(table
        .transition(
            "r1",
            JobStatus::Queued,
            JobStatus::Running,
            &start,
            &started
        )
        .await
        .unwrap());
    assert!(!table
        .transition(
            "r1",
            JobStatus::Queued,
            JobStatus::Running,
            &start,
            &started
        )
        .await
        .unwrap());
    assert!(!table
        .transition(
            "nope",
            JobStatus::Queued,
            JobStatus::Running,
            &start,
            &started
        )
        .await
        .unwrap());
    assert!(matches!(
        table
            .transition(
                "r1",
                JobStatus::Running,
                JobStatus::Queued,
                &start,
                &started
            )
            .await,
        Err(PortError::Rejected(_))
    ));
    let done = JobUpdate {
        rows: Some(7),
        bytes: Some(1234),
        archive_object: Some(ObjectRef::new("downloads", "archives/r1/x.zip")),
        ..JobUpdate::default()
    };
    assert!(table
        .transition(
            "r1",
            JobStatus::Running,
            JobStatus::Packaging,
            &done,
            &JobEvent::new("finished", "PACKAGING", "")
        )
        .await
        .unwrap());
    let stored = table.get_job("r1").await.unwrap().unwrap();
    assert_eq!(
        (
            stored.status,
            stored.statement_id.as_deref(),
            stored.rows,
            stored.bytes
        ),
        (JobStatus::Packaging, Some("s1"), Some(7), Some(1234))
    );
    assert_eq!(stored.archive_object, done.archive_object);

    // Notification is claimed once; a release lets a retry claim it again.
    assert!(table.claim_notification("r1", now_ms()).await.unwrap());
    assert!(!table.claim_notification("r1", now_ms()).await.unwrap());
    table.release_notification("r1").await.unwrap();
    assert!(table.claim_notification("r1", now_ms()).await.unwrap());
    assert!(!table.claim_notification("missing", now_ms()).await.unwrap());

    // History in time order, however many were written in the same millisecond.
    let later = now_ms() + 60_000;
    for i in 0..5 {
        table
            .append_event(
                "r1",
                &JobEvent {
                    at: later,
                    step: format!("step{i}"),
                    outcome: "ok".into(),
                    message: String::new(),
                },
            )
            .await
            .unwrap();
    }
    let steps: Vec<String> = table
        .events("r1")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.step)
        .collect();
    assert_eq!(steps[..3], ["submitted", "started", "finished"]);
    assert_eq!(steps[3..], ["step0", "step1", "step2", "step3", "step4"]);

    // Listing: newest first, by pages, the owner's jobs only.
    for (i, at) in [3_000, 4_000, 5_000, 6_000].iter().enumerate() {
        table
            .create_job(&job(&format!("a{i}"), "alice", *at), &submitted, None)
            .await
            .unwrap();
    }
    table
        .create_job(&job("b0", "bob", 7_000), &submitted, None)
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = table
            .list_jobs(&Owner("alice".into()), 2, cursor.as_deref())
            .await
            .unwrap();
        seen.extend(page.jobs.iter().map(|j| j.request_id.clone()));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ["a3", "a2", "a1", "a0", "r1"]);
    assert!(matches!(
        table
            .list_jobs(&Owner("alice".into()), 2, Some("garbage"))
            .await,
        Err(PortError::Invalid { .. })
    ));

    // A job removed before it was queued leaves nothing, its key included.
    let k2 = IdempotencyKey {
        key: "k-2".into(),
        ..key.clone()
    };
    table
        .create_job(&job("r9", "alice", 9_000), &submitted, Some(&k2))
        .await
        .unwrap();
    table.delete_job("r9", Some(&k2)).await.unwrap();
    assert!(table.get_job("r9").await.unwrap().is_none());
    assert!(table.events("r9").await.unwrap().is_empty());
    assert_eq!(
        table
            .create_job(&job("r10", "alice", 9_500), &submitted, Some(&k2))
            .await
            .unwrap(),
        CreateOutcome::Created
    );

    // Every item carries the TTL attribute the table expires them by.
    let scan = h
        .emulator
        .clients
        .dynamodb
        .scan()
        .table_name(&h.emulator.table)
        .send()
        .await
        .unwrap();
    assert!(scan.items().iter().all(|i| i.contains_key("expires_at")));
}

#[tokio::test]
async fn dynamodb_lists_unsettled_jobs_from_its_sparse_index() {
    let h = Harness::start().await;
    let table = DynamoControlTable::new(
        h.emulator.clients.dynamodb.clone(),
        &h.emulator.table,
        Duration::from_secs(86_400),
    );
    unsettled_jobs_contract(&table, "d").await;
}

#[tokio::test]
async fn sqs_sends_now_or_after_the_delay() {
    let h = Harness::start().await;
    let queues = SqsQueues::new(
        h.emulator.clients.sqs.clone(),
        Some(h.emulator.requests_url.clone()),
        None,
    );
    queues
        .send(
            QueueName::Requests,
            "{\"request_id\":\"now\"}",
            Duration::ZERO,
        )
        .await
        .unwrap();
    queues
        .send(
            QueueName::Requests,
            "{\"request_id\":\"later\"}",
            Duration::from_secs(2),
        )
        .await
        .unwrap();
    let sent = Instant::now();
    let first = h
        .receive(&h.emulator.requests_url, Duration::from_secs(1))
        .await;
    let bodies: Vec<_> = first.iter().map(|(m, _)| m.body.clone().unwrap()).collect();
    assert_eq!(bodies, ["{\"request_id\":\"now\"}"]);
    h.emulator
        .clients
        .sqs
        .delete_message()
        .queue_url(&h.emulator.requests_url)
        .receipt_handle(&first[0].1)
        .send()
        .await
        .unwrap();
    let mut later = Vec::new();
    while later.is_empty() && sent.elapsed() < Duration::from_secs(10) {
        later = h
            .receive(&h.emulator.requests_url, Duration::from_secs(1))
            .await;
    }
    assert_eq!(
        later[0].0.body.as_deref(),
        Some("{\"request_id\":\"later\"}")
    );
    assert!(
        sent.elapsed() >= Duration::from_secs(2),
        "delivered before its delay"
    );
    // A function configured without the polls queue cannot send there.
    assert!(matches!(
        queues.send(QueueName::Polls, "{}", Duration::ZERO).await,
        Err(PortError::Rejected(_))
    ));
}

#[tokio::test]
async fn s3_uploads_in_parts_reads_back_and_presigns() {
    let h = Harness::start().await;
    let store = S3ObjectStore::new(h.emulator.clients.s3.clone());
    let bucket = &h.emulator.downloads_bucket;

    // 20 MiB in 1 MiB writes: three parts, the last one short.
    let big = ObjectRef::new(bucket, "archives/big.bin");
    let mut upload = store
        .start_upload(&big, "application/octet-stream")
        .await
        .unwrap();
    let mut expected = Vec::new();
    for i in 0..20u8 {
        let chunk = vec![i; 1024 * 1024];
        expected.extend_from_slice(&chunk);
        upload.write(Bytes::from(chunk)).await.unwrap();
    }
    assert_eq!(upload.complete().await.unwrap(), 20 * 1024 * 1024);
    let mut read = Vec::new();
    let mut stream = store.get(&big).await.unwrap();
    while let Some(chunk) = stream.next().await {
        read.extend_from_slice(&chunk.unwrap());
    }
    assert!(read == expected, "the object reads back as written");
    let head = h
        .emulator
        .clients
        .s3
        .head_object()
        .bucket(bucket)
        .key(&big.key)
        .send()
        .await
        .unwrap();
    assert!(
        head.e_tag().unwrap().ends_with("-3\""),
        "a three-part upload: {:?}",
        head.e_tag()
    );

    // Small objects are one PUT; an aborted upload leaves nothing.
    let small = ObjectRef::new(bucket, "archives/small.txt");
    let mut upload = store.start_upload(&small, "text/plain").await.unwrap();
    upload.write(Bytes::from_static(b"hello")).await.unwrap();
    assert_eq!(upload.complete().await.unwrap(), 5);
    let gone = ObjectRef::new(bucket, "archives/aborted.bin");
    let mut upload = store
        .start_upload(&gone, "application/octet-stream")
        .await
        .unwrap();
    upload
        .write(Bytes::from(vec![0u8; 9 * 1024 * 1024]))
        .await
        .unwrap();
    upload.abort().await.unwrap();
    assert!(matches!(
        store.get(&gone).await,
        Err(PortError::NotFound(_))
    ));
    let pending = h
        .emulator
        .clients
        .s3
        .list_multipart_uploads()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    assert!(pending.uploads().is_empty(), "{:?}", pending.uploads());

    // A presigned GET downloads it, named for the caller, without credentials.
    let url = store
        .presign_get(&small, Duration::from_secs(600), "export.txt")
        .await
        .unwrap();
    assert!(url.contains("X-Amz-Expires=600"), "{url}");
    // S3 names the download after the export (moto ignores the override; S3 honours it).
    assert!(
        url.contains("response-content-disposition=attachment%3B%20filename%3D%22export.txt%22"),
        "{url}"
    );
    let response = reqwest::get(&url).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap(), "hello");
}

#[tokio::test]
async fn ses_sends_text_and_html_from_the_verified_sender() {
    let h = Harness::start().await;
    let mailer = SesMailer::new(h.emulator.clients.ses.clone(), SENDER, None);
    let request_id = uuid::Uuid::new_v4().to_string();
    let id = mailer
        .send(&Email {
            to: vec!["one@example.com".into(), "two@example.com".into()],
            subject: format!("Export ready ({request_id})"),
            text: "plain".into(),
            html: "<p>html</p>".into(),
            request_id: request_id.clone(),
        })
        .await
        .unwrap();
    assert!(!id.is_empty());
    let sent = h.emails_about(&request_id).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, ["one@example.com", "two@example.com"]);
    assert_eq!(sent[0].body, "<p>html</p>");
    // An unverified sender is refused, and not as something a retry would fix.
    let stranger = SesMailer::new(
        h.emulator.clients.ses.clone(),
        "nobody@unverified.org",
        None,
    );
    let refused = stranger
        .send(&Email {
            to: vec!["x@example.com".into()],
            subject: "s".into(),
            text: "t".into(),
            html: "h".into(),
            request_id,
        })
        .await;
    assert!(
        matches!(refused, Err(PortError::Rejected(_))),
        "{refused:?}"
    );
}

#[tokio::test]
async fn the_functions_can_share_one_role_for_the_data_api() {
    use aws_credential_types::provider::ProvideCredentials;
    let h = Harness::start().await;
    let sdk = export_emulator::provision::sdk_config(&h.emulator.moto_endpoint).await;
    let shared = export_aws::functions::data_api_config(
        &sdk,
        "arn:aws:iam::123456789012:role/redshift-export-data-api",
    )
    .await;
    // The credentials are the role's, from STS AssumeRole (moto's), not the caller's own.
    let credentials = shared
        .credentials_provider()
        .unwrap()
        .provide_credentials()
        .await
        .unwrap();
    assert!(
        credentials.access_key_id().starts_with("ASIA"),
        "{}",
        credentials.access_key_id()
    );
    assert!(credentials.session_token().is_some());
    // And statements run and are followed with them.
    let client = aws_sdk_redshiftdata::Client::from_conf(
        aws_sdk_redshiftdata::config::Builder::from(&shared)
            .endpoint_url(&h.emulator.data_api.endpoint)
            .build(),
    );
    let target = Target::Workgroup {
        name: WORKGROUP.into(),
        secret_arn: None,
    };
    let warehouse = DataApiWarehouse::new(client, target, DATABASE);
    let request = StatementRequest {
        sql: format!(
            "UNLOAD ('SELECT sku FROM rsdataapi.product_detail WHERE product_id = 12345') TO 's3://{}/shared-role/' IAM_ROLE 'arn:aws:iam::123456789012:role/u' FORMAT AS CSV HEADER MANIFEST VERBOSE",
            h.emulator.results_bucket
        ),
        client_token: "shared-role".into(),
        name: "shared-role".into(),
    };
    let id = warehouse.execute(&request).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while warehouse.describe(&id).await.unwrap().state != StatementState::Finished {
        assert!(Instant::now() < deadline, "the statement never finished");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn data_api_runs_on_a_cluster_or_a_workgroup_and_cancels() {
    let h = Harness::start_with(|o| o.data_api.statement_delay = Duration::from_millis(300)).await;
    let client = &h.emulator.clients.redshift;
    let targets = [
        Target::Cluster {
            cluster_id: CLUSTER_ID.into(),
            credentials: ClusterCredentials::SecretArn(SECRET_ARN.into()),
        },
        Target::Cluster {
            cluster_id: CLUSTER_ID.into(),
            credentials: ClusterCredentials::DbUser("exporter".into()),
        },
        Target::Workgroup {
            name: WORKGROUP.into(),
            secret_arn: None,
        },
    ];
    for (i, target) in targets.into_iter().enumerate() {
        let warehouse = DataApiWarehouse::new(client.clone(), target, DATABASE);
        let sql = format!(
            "UNLOAD ('SELECT sku FROM rsdataapi.product_detail WHERE product_id = 12345') TO 's3://{}/adapter/{i}/' IAM_ROLE 'arn:aws:iam::123456789012:role/u' FORMAT AS CSV HEADER MANIFEST VERBOSE",
            h.emulator.results_bucket
        );
        let request = StatementRequest {
            sql,
            client_token: format!("token-{i}"),
            name: format!("name-{i}"),
        };
        let id = warehouse.execute(&request).await.unwrap();
        assert_eq!(
            warehouse.execute(&request).await.unwrap(),
            id,
            "the client token makes it idempotent"
        );
        let status = loop {
            let status = warehouse.describe(&id).await.unwrap();
            if status.state == StatementState::Finished || status.state == StatementState::Failed {
                break status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(
            (status.state, status.rows, status.error),
            (StatementState::Finished, Some(1), None)
        );
        // Already finished: nothing to cancel.
        assert!(!warehouse.cancel(&id).await.unwrap());
    }
    let warehouse = DataApiWarehouse::new(
        client.clone(),
        Target::Workgroup {
            name: WORKGROUP.into(),
            secret_arn: None,
        },
        DATABASE,
    );
    let request = StatementRequest {
        sql: format!(
            "UNLOAD ('SELECT 1') TO 's3://{}/adapter/c/' IAM_ROLE default",
            h.emulator.results_bucket
        ),
        client_token: "token-cancel".into(),
        name: "cancel".into(),
    };
    let id = warehouse.execute(&request).await.unwrap();
    assert!(warehouse.cancel(&id).await.unwrap());
    assert_eq!(
        warehouse.describe(&id).await.unwrap().state,
        StatementState::Aborted
    );
    assert!(matches!(
        warehouse.describe("missing").await,
        Err(PortError::NotFound(_))
    ));
    assert!(matches!(
        warehouse.cancel("missing").await,
        Err(PortError::NotFound(_))
    ));
}
