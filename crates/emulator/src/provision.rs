//! The stack's resources on the emulators, made as the SAM template makes them, and the
//! configuration the functions get from it.

use crate::data_api::{DataApiOptions, DataApiServer};
use crate::eventbridge::EventBridgeEvents;
use anyhow::Context;
use aws_credential_types::Credentials;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;
use export_aws::dynamodb::schema;
use export_aws::s3::S3ObjectStore;
use export_aws::{Clients, Env};
use export_core::clock::SystemClock;
use export_local::warehouse::{ClientTokens, CLIENT_TOKEN_LIFETIME};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub const REGION: &str = "us-east-1";
pub const CLUSTER_ID: &str = "export-cluster";
pub const WORKGROUP: &str = "export-workgroup";
pub const DATABASE: &str = "dev";
pub const SECRET_ARN: &str =
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:export-redshift-AbCdEf";
pub const UNLOAD_ROLE: &str = "arn:aws:iam::123456789012:role/export-unload";
pub const SENDER: &str = "exports@example.com";
pub const DEFAULT_RECIPIENT: &str = "data-team@example.com";

#[derive(Clone, Debug)]
pub struct EmulatorOptions {
    /// Names every resource, so several emulated stacks can share one moto server.
    pub prefix: String,
    pub data_api: DataApiOptions,
    /// How long a received message stays hidden before SQS delivers it again.
    pub visibility_timeout: Duration,
}

impl EmulatorOptions {
    pub fn new(prefix: &str, data_dir: PathBuf, sql_dir: PathBuf) -> Self {
        EmulatorOptions {
            prefix: prefix.to_owned(),
            data_api: DataApiOptions {
                data_dir,
                sql_dir,
                scale: 0.01,
                clusters: vec![CLUSTER_ID.into()],
                workgroups: vec![WORKGROUP.into()],
                statement_delay: Duration::ZERO,
                client_tokens: ClientTokens {
                    clock: Arc::new(SystemClock),
                    lifetime: CLIENT_TOKEN_LIFETIME,
                },
                result_page_rows: 1000,
                quotas: Some(crate::quotas::QuotaRates::DOCUMENTED),
            },
            visibility_timeout: Duration::from_secs(30),
        }
    }
}

/// One emulated stack: its resources on moto and its own Data API endpoint.
pub struct Emulator {
    pub moto_endpoint: String,
    pub data_api: DataApiServer,
    /// Clients pointed at the emulators (the Data API client at this crate's endpoint).
    pub clients: Clients,
    pub table: String,
    pub requests_url: String,
    pub polls_url: String,
    pub results_bucket: String,
    pub downloads_bucket: String,
    /// The stack's statement names start with this: `<prefix>:`, as the template makes it of
    /// the stack's name, so emulated stacks sharing one moto keep their events apart.
    pub statement_prefix: String,
    /// The log group the audit record goes to.
    pub audit_group: String,
    /// The webhook key's secret (`WEBHOOK_KEY_SECRET_ARN`); its keys are in `clients`.
    pub webhook_key: String,
}

/// The SDK configuration for an emulator: fixed test credentials, one region, one endpoint.
pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .credentials_provider(Credentials::new(
            "testing", "testing", None, None, "emulator",
        ))
        .endpoint_url(endpoint)
        .load()
        .await
}

impl Emulator {
    /// Creates the table, queues, buckets and sender identity on moto at `moto_endpoint`,
    /// then starts a Data API endpoint that writes to them.
    pub async fn start(moto_endpoint: &str, options: EmulatorOptions) -> anyhow::Result<Emulator> {
        let sdk = sdk_config(moto_endpoint).await;
        let mut clients = Clients::new(&sdk, true);
        let prefix = &options.prefix;
        let table = format!("{prefix}-control");
        create_table(&clients.dynamodb, &table).await?;
        let requests_url = create_queue(
            &clients.sqs,
            &format!("{prefix}-requests"),
            options.visibility_timeout,
        )
        .await?;
        let polls_url = create_queue(
            &clients.sqs,
            &format!("{prefix}-polls"),
            options.visibility_timeout,
        )
        .await?;
        let results_bucket = format!("{prefix}-results");
        let downloads_bucket = format!("{prefix}-downloads");
        for bucket in [&results_bucket, &downloads_bucket] {
            clients
                .s3
                .create_bucket()
                .bucket(bucket)
                .send()
                .await
                .with_context(|| format!("creating bucket {bucket}"))?;
        }
        clients
            .ses
            .create_email_identity()
            .email_identity(SENDER)
            .send()
            .await
            .context("creating the SES identity")?;
        // The audit record's own log group, as the template's AuditLogGroup.
        let audit_group = format!("/{prefix}/audit");
        clients
            .logs
            .create_log_group()
            .log_group_name(&audit_group)
            .send()
            .await
            .with_context(|| format!("creating log group {audit_group}"))?;

        // The webhook key, as the template's WebhookKeySecret generates it.
        let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
        let webhook_key = secrets
            .create_secret()
            .name(format!("{prefix}-webhook-key"))
            .secret_string(uuid::Uuid::new_v4().simple().to_string().repeat(2))
            .send()
            .await
            .context("creating the webhook key")?
            .arn
            .unwrap_or_default();
        clients.webhook_keys = Some(
            export_aws::functions::webhook_keys_from_secret(&secrets, &webhook_key)
                .await
                .map_err(anyhow::Error::msg)?,
        );

        // Statement events reach the polls queue through the template's rule on EventBridge.
        let events = aws_sdk_eventbridge::Client::new(&sdk);
        let polls_arn = queue_arn(&clients.sqs, &polls_url).await?;
        crate::eventbridge::create_statement_rule(&events, prefix, &polls_arn).await?;
        let data_api = DataApiServer::start(
            options.data_api.clone(),
            Arc::new(S3ObjectStore::new(clients.s3.clone())),
            Arc::new(EventBridgeEvents {
                client: events,
                principal: format!(
                    "arn:aws:sts::123456789012:assumed-role/{prefix}-data-api/redshift-export"
                ),
            }),
        )
        .await?;
        clients.redshift = aws_sdk_redshiftdata::Client::from_conf(
            aws_sdk_redshiftdata::config::Builder::from(&sdk)
                .endpoint_url(&data_api.endpoint)
                .build(),
        );
        Ok(Emulator {
            moto_endpoint: moto_endpoint.to_owned(),
            data_api,
            clients,
            table,
            requests_url,
            polls_url,
            results_bucket,
            downloads_bucket,
            statement_prefix: format!("{prefix}:"),
            audit_group,
            webhook_key,
        })
    }

    /// The functions' configuration, as the SAM template sets it (with short poll delays).
    pub fn function_variables(&self) -> BTreeMap<String, String> {
        BTreeMap::from_iter(
            [
                ("CONTROL_TABLE", self.table.as_str()),
                ("REQUESTS_QUEUE_URL", &self.requests_url),
                ("POLLS_QUEUE_URL", &self.polls_url),
                ("REDSHIFT_DATABASE", DATABASE),
                ("REDSHIFT_CLUSTER_ID", CLUSTER_ID),
                ("REDSHIFT_SECRET_ARN", SECRET_ARN),
                ("UNLOAD_IAM_ROLE", UNLOAD_ROLE),
                ("RESULTS_BUCKET", &self.results_bucket),
                ("DOWNLOADS_BUCKET", &self.downloads_bucket),
                ("SENDER_EMAIL", SENDER),
                ("DEFAULT_RECIPIENTS", DEFAULT_RECIPIENT),
                ("NOTIFY_ALLOWLIST", "@example.com"),
                ("LINK_TTL_SECONDS", "3600"),
                ("ASSUMED_ROLE_OWNER", "session"),
                ("STATEMENT_NAME_PREFIX", &self.statement_prefix),
                ("AUDIT_LOG_GROUP", &self.audit_group),
                ("POLL_INITIAL_DELAY_SECONDS", "1"),
                ("POLL_MAX_DELAY_SECONDS", "2"),
                ("RETRY_FIRST_DELAY_SECONDS", "1"),
                ("WEBHOOK_KEY_SECRET_ARN", &self.webhook_key),
                ("WEBHOOK_DELIVERIES", "true"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        )
    }

    /// What a function process needs on top: credentials, region and the endpoints.
    pub fn process_variables(&self) -> BTreeMap<String, String> {
        let mut vars = self.function_variables();
        for (k, v) in [
            ("AWS_REGION", REGION),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_ENDPOINT_URL", &self.moto_endpoint),
            ("AWS_ENDPOINT_URL_REDSHIFT_DATA", &self.data_api.endpoint),
        ] {
            vars.insert(k.to_owned(), v.to_owned());
        }
        vars
    }

    pub fn env(&self) -> Env {
        Env::from_pairs(self.function_variables())
    }
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> anyhow::Result<String> {
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await?;
    attributes
        .attributes
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .cloned()
        })
        .ok_or_else(|| anyhow::anyhow!("queue {url} has no ARN"))
}

async fn create_table(client: &aws_sdk_dynamodb::Client, table: &str) -> anyhow::Result<()> {
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
    };
    let attribute = |name: &str| {
        let kind = if name == schema::UPDATED_AT {
            ScalarAttributeType::N
        } else {
            ScalarAttributeType::S
        };
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(kind)
            .build()
    };
    let all = || {
        Projection::builder()
            .projection_type(ProjectionType::All)
            .build()
    };
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .set_attribute_definitions(Some(
            [
                schema::PARTITION_KEY,
                schema::SORT_KEY,
                schema::OWNER,
                schema::CREATED_KEY,
                schema::UNSETTLED,
                schema::UPDATED_AT,
            ]
            .iter()
            .map(|name| attribute(name))
            .collect::<Result<_, _>>()?,
        ))
        .key_schema(key(schema::PARTITION_KEY, KeyType::Hash)?)
        .key_schema(key(schema::SORT_KEY, KeyType::Range)?)
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(schema::OWNER_INDEX)
                .key_schema(key(schema::OWNER, KeyType::Hash)?)
                .key_schema(key(schema::CREATED_KEY, KeyType::Range)?)
                .projection(all())
                .build()?,
        )
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(schema::UNSETTLED_INDEX)
                .key_schema(key(schema::UNSETTLED, KeyType::Hash)?)
                .key_schema(key(schema::UPDATED_AT, KeyType::Range)?)
                .projection(all())
                .build()?,
        )
        .send()
        .await
        .with_context(|| format!("creating table {table}"))?;
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name(schema::TTL_ATTRIBUTE)
                .enabled(true)
                .build()?,
        )
        .send()
        .await
        .context("enabling TTL")?;
    Ok(())
}

/// A queue with its dead-letter queue and a redrive policy, as the template has them.
async fn create_queue(
    client: &aws_sdk_sqs::Client,
    name: &str,
    visibility: Duration,
) -> anyhow::Result<String> {
    let dlq_url = client
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .send()
        .await
        .with_context(|| format!("creating queue {name}-dlq"))?
        .queue_url
        .unwrap_or_default();
    let dlq_arn = client
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .unwrap_or_default();
    let redrive = serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"});
    Ok(client
        .create_queue()
        .queue_name(name)
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            visibility.as_secs().to_string(),
        )
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
        .send()
        .await
        .with_context(|| format!("creating queue {name}"))?
        .queue_url
        .unwrap_or_default())
}
