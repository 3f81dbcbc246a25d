//! Each AWS adapter on its own, through the real SDK against the emulators.

use super::Harness;
use crate::common::eventually;
use bytes::Bytes;
use export_aws::dynamodb::DynamoControlTable;
use export_aws::redshift::{ClusterCredentials, DataApiWarehouse, Target};
use export_aws::s3::S3ObjectStore;
use export_aws::ses::SesMailer;
use export_aws::sqs::SqsQueues;
use export_core::domain::ObjectRef;
use export_core::messages::Message;
use export_core::ports::{
    Email, Mailer, ObjectStore, PortError, QueueName, QueueSender, StatementRequest,
    StatementState, Warehouse,
};
use export_core::testing::admission_conformance::check_admission_ledger;
use export_core::testing::answer_conformance::check_answer_cache;
use export_core::testing::conformance::check_control_table;
use export_core::testing::object_conformance::check_object_store;
use export_core::testing::queue_conformance::{check_queue, QueueUnderTest, Received};
use export_emulator::provision::{CLUSTER_ID, DATABASE, SECRET_ARN, SENDER, WORKGROUP};
use std::time::Duration;

#[tokio::test]
async fn the_dynamodb_table_meets_the_contract() {
    let h = Harness::start().await;
    let table = DynamoControlTable::new(
        h.emulator.clients.dynamodb.clone(),
        &h.emulator.table,
        Duration::from_secs(86_400),
    );
    check_control_table(&table).await;
    check_answer_cache(&table).await;
    check_admission_ledger(&table).await;
    export_core::testing::usage_conformance::check_usage_ledger(&table).await;
    export_core::testing::subscription_conformance::check_subscription_store(&table).await;

    // Every item it wrote carries the TTL attribute the table expires them by, but the
    // subscriptions, which live until they are deleted.
    let items: Vec<_> = h
        .emulator
        .clients
        .dynamodb
        .scan()
        .table_name(&h.emulator.table)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .unwrap();
    assert!(items.len() > 50, "{} items", items.len());
    let subscription = |i: &std::collections::HashMap<
        String,
        aws_sdk_dynamodb::types::AttributeValue,
    >| { i["pk"].as_s().is_ok_and(|pk| pk.starts_with("SUBS#")) };
    assert!(items.iter().any(subscription));
    assert!(items
        .iter()
        .all(|i| i.contains_key("expires_at") != subscription(i)));
}

/// SQS on the emulator, as Lambda's event source drives it: receive with a visibility
/// timeout, delete what was handled; time passes for real.
struct SqsUnderTest<'a> {
    h: &'a Harness,
    queues: SqsQueues,
}

impl SqsUnderTest<'_> {
    fn url(&self, queue: QueueName) -> &str {
        match queue {
            QueueName::Requests => &self.h.emulator.requests_url,
            QueueName::Polls => &self.h.emulator.polls_url,
        }
    }
}

#[async_trait::async_trait]
impl QueueUnderTest for SqsUnderTest<'_> {
    fn sender(&self) -> &dyn QueueSender {
        &self.queues
    }

    async fn receive(&self, queue: QueueName, visibility: Duration) -> Vec<Received> {
        let output = self
            .h
            .emulator
            .clients
            .sqs
            .receive_message()
            .queue_url(self.url(queue))
            .max_number_of_messages(10)
            .visibility_timeout(visibility.as_secs() as i32)
            .message_system_attribute_names(
                aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount,
            )
            .send()
            .await
            .unwrap();
        output
            .messages()
            .iter()
            .map(|m| Received {
                body: m.body().unwrap_or_default().to_owned(),
                receipt: m.receipt_handle().unwrap_or_default().to_owned(),
                receives: m
                    .attributes()
                    .and_then(|a| {
                        a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)
                    })
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0),
            })
            .collect()
    }

    async fn delete(&self, queue: QueueName, receipt: &str) {
        self.h
            .emulator
            .clients
            .sqs
            .delete_message()
            .queue_url(self.url(queue))
            .receipt_handle(receipt)
            .send()
            .await
            .unwrap();
    }

    async fn pass(&self, time: Duration) {
        tokio::time::sleep(time).await;
    }
}

#[tokio::test]
async fn sqs_meets_the_queue_contract() {
    let h = Harness::start().await;
    let queues = SqsQueues::new(
        h.emulator.clients.sqs.clone(),
        Some(h.emulator.requests_url.clone()),
        Some(h.emulator.polls_url.clone()),
    );
    check_queue(&SqsUnderTest { h: &h, queues }).await;
    let queues = SqsQueues::new(
        h.emulator.clients.sqs.clone(),
        Some(h.emulator.requests_url.clone()),
        None,
    );
    // A function configured without the polls queue cannot send there.
    assert!(matches!(
        queues
            .send(&Message::follow_up("x", None), Duration::ZERO)
            .await,
        Err(PortError::Rejected(_))
    ));
}

#[tokio::test]
async fn s3_presigns_downloads_named_for_the_caller() {
    let h = Harness::start().await;
    let store = S3ObjectStore::new(h.emulator.clients.s3.clone());
    let bucket = &h.emulator.downloads_bucket;
    let small = ObjectRef::new(bucket, "archives/small.txt");
    store
        .put(&small, Bytes::from_static(b"hello"), "text/plain")
        .await
        .unwrap();

    // A presigned GET downloads it, named for the caller, without credentials.
    let url = store
        .presign_get(&small, Duration::from_secs(600), "export.txt")
        .await
        .unwrap()
        .url;
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
    eventually(
        "the statement to finish",
        Duration::from_secs(30),
        || async {
            let status = warehouse.describe(&id).await.unwrap();
            match status.state {
                StatementState::Finished => Ok(()),
                _ => Err(status),
            }
        },
    )
    .await;
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
        let status = eventually("the statement to end", Duration::from_secs(30), || async {
            let status = warehouse.describe(&id).await.unwrap();
            match status.state {
                StatementState::Finished | StatementState::Failed => Ok(status),
                _ => Err(status),
            }
        })
        .await;
        assert_eq!(
            (status.state, status.rows, status.error),
            (StatementState::Finished, Some(1), None)
        );
        // "If the HEADER option is specified, the row count includes the header line"
        // (UNLOAD, MANIFEST VERBOSE): one data row, counted with its file's header.
        let manifest = h
            .emulator
            .clients
            .s3
            .get_object()
            .bucket(&h.emulator.results_bucket)
            .key(format!("adapter/{i}/manifest"))
            .send()
            .await
            .unwrap();
        let manifest: serde_json::Value =
            serde_json::from_slice(&manifest.body.collect().await.unwrap().into_bytes()).unwrap();
        assert_eq!(manifest["meta"]["record_count"], 2, "{manifest}");
        assert_eq!(
            manifest["entries"][0]["meta"]["record_count"], 2,
            "{manifest}"
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

#[tokio::test]
async fn the_data_api_forgets_client_tokens_and_unload_refuses_a_used_prefix() {
    let clock = std::sync::Arc::new(export_core::testing::ManualClock::at(1_000_000));
    let tokens = export_local::warehouse::ClientTokens {
        clock: clock.clone(),
        lifetime: Duration::from_secs(3600),
    };
    let h = Harness::start_with(|o| o.data_api.client_tokens = tokens).await;
    let warehouse = DataApiWarehouse::new(
        h.emulator.clients.redshift.clone(),
        Target::Workgroup {
            name: WORKGROUP.into(),
            secret_arn: None,
        },
        DATABASE,
    );
    let sql = format!(
        "UNLOAD ('SELECT 1 AS n') TO 's3://{}/late/' IAM_ROLE default FORMAT AS CSV HEADER MANIFEST VERBOSE",
        h.emulator.results_bucket
    );
    let request = |token: &str| StatementRequest {
        sql: sql.clone(),
        client_token: token.into(),
        name: "late".into(),
    };
    let ended = |id: String| {
        let warehouse = &warehouse;
        async move {
            eventually("the statement to end", Duration::from_secs(30), || async {
                let status = warehouse.describe(&id).await.unwrap();
                match status.state {
                    StatementState::Finished | StatementState::Failed => Ok(status),
                    _ => Err(status),
                }
            })
            .await
        }
    };
    let first = warehouse.execute(&request("first")).await.unwrap();
    assert_eq!(ended(first.clone()).await.state, StatementState::Finished);
    // Within the token's life, a retry names the statement already run.
    clock.advance(Duration::from_secs(1800));
    assert_eq!(warehouse.execute(&request("first")).await.unwrap(), first);
    // A new token is a new statement, and it finds the prefix full: "By default, UNLOAD
    // fails if it finds files that it would possibly overwrite" (UNLOAD).
    let second = warehouse.execute(&request("second")).await.unwrap();
    let status = ended(second).await;
    assert_eq!(status.state, StatementState::Failed);
    assert!(status.error.unwrap().contains("is not empty"));
    // Past its life, the first token is forgotten: the retry is a statement of its own.
    clock.advance(Duration::from_secs(3600));
    let late = warehouse.execute(&request("first")).await.unwrap();
    assert_ne!(late, first);
    assert_eq!(ended(late).await.state, StatementState::Failed);
}

#[tokio::test]
async fn links_expire_with_their_signer_and_a_kept_access_key_signs_for_days() {
    use aws_credential_types::provider::SharedCredentialsProvider;
    use export_aws::s3::LinkSigner;
    let h = Harness::start().await;
    let sdk = export_emulator::provision::sdk_config(&super::moto().endpoint).await;
    let object = ObjectRef::new(&h.emulator.downloads_bucket, "archives/linked.txt");
    S3ObjectStore::new(h.emulator.clients.s3.clone())
        .put(&object, Bytes::from_static(b"linked"), "text/plain")
        .await
        .unwrap();

    // A role's temporary credentials, thirty minutes from expiring: an hour's link works for
    // thirty minutes only, and says so.
    let expiry = std::time::SystemTime::now() + Duration::from_secs(1800);
    let session = aws_credential_types::Credentials::new(
        "ASIAEXAMPLE",
        "secret",
        Some("session-token".into()),
        Some(expiry),
        "test",
    );
    let store = S3ObjectStore::new(h.emulator.clients.s3.clone()).with_link_signer(
        LinkSigner::new(&sdk, Some(SharedCredentialsProvider::new(session)), true),
    );
    let link = store
        .presign_get(&object, Duration::from_secs(3600), "linked.txt")
        .await
        .unwrap();
    let expiry_ms = expiry
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert_eq!(link.signer_expires_at, Some(expiry_ms));
    assert!(link.url.contains("X-Amz-Security-Token="), "{}", link.url);

    // The access key kept in Secrets Manager for links, as the template's LongLivedLinks
    // option keeps it: its links last the seven days asked for.
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let name = format!("{}-link-signer", h.emulator.downloads_bucket);
    let secret = secrets
        .create_secret()
        .name(&name)
        .secret_string(r#"{"AccessKeyId":"AKIALINKSIGNER","SecretAccessKey":"kept-for-links"}"#)
        .send()
        .await
        .unwrap();
    let kept =
        export_aws::functions::link_signer_from_secret(&secrets, &sdk, secret.arn().unwrap(), true)
            .await
            .unwrap();
    let store = S3ObjectStore::new(h.emulator.clients.s3.clone()).with_link_signer(kept);
    let link = store
        .presign_get(&object, Duration::from_secs(7 * 24 * 3600), "linked.txt")
        .await
        .unwrap();
    assert_eq!(link.signer_expires_at, None);
    assert!(
        link.url.contains("X-Amz-Credential=AKIALINKSIGNER"),
        "{}",
        link.url
    );
    assert!(link.url.contains("X-Amz-Expires=604800"), "{}", link.url);
    assert!(!link.url.contains("X-Amz-Security-Token"), "{}", link.url);
    let response = reqwest::get(&link.url).await.unwrap();
    assert_eq!(response.bytes().await.unwrap(), "linked");
    // A secret that is not an access key stops the function at init, naming it.
    let broken = secrets
        .create_secret()
        .name(format!("{name}-broken"))
        .secret_string("not json")
        .send()
        .await
        .unwrap();
    let error =
        export_aws::functions::link_signer_from_secret(&secrets, &sdk, broken.arn().unwrap(), true)
            .await
            .unwrap_err();
    assert!(error.contains("is not an access key"), "{error}");
}

/// The object store's contract, on S3 (moto, with the fidelity fixes), and what S3 adds to
/// it: each part's CRC-32, listed back by `ListParts` and repeated on completion, for an
/// upload created with that algorithm ("CompletedPart").
#[tokio::test]
async fn the_s3_store_meets_the_contract_with_its_checksums() {
    let h = Harness::start().await;
    let store = S3ObjectStore::new(h.emulator.clients.s3.clone());
    let bucket = &h.emulator.downloads_bucket;
    check_object_store(&store, bucket).await;

    let target = ObjectRef::new(bucket, "archives/checksummed.tar.gz");
    let upload = store
        .create_multipart(&target, "application/gzip")
        .await
        .unwrap();
    let part1 = store
        .upload_part(&target, &upload, 1, Bytes::from(vec![7u8; 5 * 1024 * 1024]))
        .await
        .unwrap();
    // Another process (another client) carries the same upload on with what it was told.
    let other = S3ObjectStore::new(h.emulator.clients.s3.clone());
    let part2 = other
        .upload_part(
            &target,
            &upload,
            2,
            Bytes::from_static(b"the short last part"),
        )
        .await
        .unwrap();
    let listed = other.list_parts(&target, &upload, 2).await.unwrap();
    assert_eq!(listed, [part1, part2]);
    assert!(
        listed.iter().all(|p| p.checksum_crc32.is_some()),
        "{listed:?}"
    );
    other
        .complete_multipart(&target, &upload, &listed)
        .await
        .unwrap();
    // Created with CRC-32 and completed with each part's: the object's checksum is of the
    // parts' checksums, with their count.
    let head = h
        .emulator
        .clients
        .s3
        .head_object()
        .bucket(bucket)
        .key(&target.key)
        .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert!(
        head.checksum_crc32().is_some_and(|c| c.ends_with("-2")),
        "{head:?}"
    );
    store.delete(&target).await.unwrap();
}
