//! Each function's state, built once at init from the environment: the services of
//! `export-core` over the AWS adapters. A function reads only the variables it uses.

use crate::audit::CloudWatchAudit;
use crate::dynamodb::DynamoControlTable;
use crate::env::Env;
use crate::iam_tags::IamTagGrants;
use crate::redshift::{ClusterCredentials, DataApiWarehouse, Target};
use crate::s3::{LinkSigner, S3ObjectStore, MAX_LINK_TTL};
use crate::ses::SesMailer;
use crate::sqs::{SqsQueues, MAX_DELAY};
use aws_config::SdkConfig;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use export_core::access::{Access, AttributeSource};
use export_core::catalog::Catalog;
use export_core::clock::{Clock, SystemClock};
use export_core::identity::RoleOwner;
use export_core::ports::AdmissionLedger;
use export_core::service::{
    admission, Admission, AdmissionSettings, Audit, LookupSettings, Lookups, Poller, Processor,
    Queries, Quotas, Submissions, Subscriptions,
};
use export_core::settings::WebhookSettings;
use export_core::settings::{
    DeliverySettings, MailSettings, PackagingSettings, RetrySettings, UnloadSettings,
};
use export_core::webhook::{Reach, SigningKeys};
use export_webhook::HttpWebhooks;
use std::sync::Arc;
use std::time::Duration;

/// The SDK clients, from one shared configuration (credentials, region, endpoints).
#[derive(Clone)]
pub struct Clients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub redshift: aws_sdk_redshiftdata::Client,
    pub s3: aws_sdk_s3::Client,
    pub ses: aws_sdk_sesv2::Client,
    /// Reads callers' tags, when a deployment grants access by them (`ACCESS_TAGS_ACCOUNT`).
    pub iam: aws_sdk_iam::Client,
    /// Writes the audit log (`AUDIT_LOG_GROUP`).
    pub logs: aws_sdk_cloudwatchlogs::Client,
    /// What presigns download links: the function's own credentials, or the access key kept
    /// for it in Secrets Manager when the deployment has one (`LINK_SIGNER_SECRET_ARN`).
    pub link_signer: LinkSigner,
    /// The keys webhook notices are signed with, from the Secrets Manager secret
    /// `WEBHOOK_KEY_SECRET_ARN`; None: the deployment delivers no webhooks.
    pub webhook_keys: Option<SigningKeys>,
}

impl Clients {
    /// Loads the SDK configuration the standard way: environment, profile, container or
    /// instance credentials; `AWS_ENDPOINT_URL[_<SERVICE>]` for endpoints. Fails if the link
    /// signer's secret cannot be read.
    pub async fn from_environment() -> Result<Clients, String> {
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        // Emulators and most S3-compatible endpoints serve buckets by path, not by host name.
        let custom_endpoint = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
            .iter()
            .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()));
        let mut clients = Clients::new(&sdk, custom_endpoint);
        if let Some(role) = std::env::var("REDSHIFT_DATA_ROLE_ARN")
            .ok()
            .filter(|v| !v.trim().is_empty())
        {
            let data_api = data_api_config(&sdk, role.trim()).await;
            clients.redshift = data_api_client(&data_api);
        }
        if let Some(secret) = std::env::var("LINK_SIGNER_SECRET_ARN")
            .ok()
            .filter(|v| !v.trim().is_empty())
        {
            let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
            clients.link_signer =
                link_signer_from_secret(&secrets, &sdk, secret.trim(), custom_endpoint).await?;
        }
        if let Some(secret) = std::env::var("WEBHOOK_KEY_SECRET_ARN")
            .ok()
            .filter(|v| !v.trim().is_empty())
        {
            let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
            clients.webhook_keys = Some(webhook_keys_from_secret(&secrets, secret.trim()).await?);
        }
        Ok(clients)
    }

    pub fn new(sdk: &SdkConfig, s3_path_style: bool) -> Clients {
        let s3 = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(s3_path_style)
            .build();
        let s3 = aws_sdk_s3::Client::from_conf(s3);
        Clients {
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            sqs: aws_sdk_sqs::Client::new(sdk),
            redshift: data_api_client(sdk),
            link_signer: LinkSigner::new(sdk, None, s3_path_style),
            s3,
            ses: aws_sdk_sesv2::Client::new(sdk),
            iam: aws_sdk_iam::Client::new(sdk),
            logs: aws_sdk_cloudwatchlogs::Client::new(sdk),
            webhook_keys: None,
        }
    }
}

/// The webhook keys in the secret `secret`: its `AWSCURRENT` version signs, and while a
/// rotation's `AWSPREVIOUS` version is there, notices are signed with it too, so partners can
/// move to their new secrets ("PutSecretValue" and "UpdateSecretVersionStage", AWS Secrets
/// Manager API Reference: moving `AWSCURRENT` moves `AWSPREVIOUS` to the version it left).
pub async fn webhook_keys_from_secret(
    secrets: &aws_sdk_secretsmanager::Client,
    secret: &str,
) -> Result<SigningKeys, String> {
    let version = |stage: &'static str| {
        let call = secrets
            .get_secret_value()
            .secret_id(secret)
            .version_stage(stage)
            .send();
        async move {
            match call.await {
                Ok(value) => Ok(value.secret_string().map(|s| s.as_bytes().to_vec())),
                Err(e)
                    if stage == "AWSPREVIOUS"
                        && e.as_service_error()
                            .is_some_and(|e| e.is_resource_not_found_exception()) =>
                {
                    Ok(None)
                }
                Err(e) => Err(format!(
                    "reading the webhook key {secret} ({stage}): {}",
                    DisplayErrorContext(&e)
                )),
            }
        }
    };
    let current = version("AWSCURRENT")
        .await?
        .filter(|key| key.len() >= 32)
        .ok_or_else(|| {
            format!("the webhook key {secret} must be a string of at least 32 characters")
        })?;
    let previous = version("AWSPREVIOUS").await?.filter(|key| key != &current);
    Ok(SigningKeys { current, previous })
}

/// The Data API's client, retrying with the SDK's adaptive mode: its quotas are per account
/// and region and shared by every function instance ("Quotas and limits in Amazon Redshift"),
/// so a throttled client also slows its own later calls instead of only backing off the one
/// that was refused.
fn data_api_client(sdk: &SdkConfig) -> aws_sdk_redshiftdata::Client {
    let config = aws_sdk_redshiftdata::config::Builder::from(sdk)
        .retry_config(aws_config::retry::RetryConfig::adaptive())
        .build();
    aws_sdk_redshiftdata::Client::from_conf(config)
}

/// A link signer on the access key kept in the Secrets Manager secret `secret` as JSON
/// (`{"AccessKeyId": …, "SecretAccessKey": …}`, as the template writes it). Its URLs live as
/// long as they are asked to (S3 allows seven days), unlike those signed with a function's
/// temporary credentials.
pub async fn link_signer_from_secret(
    secrets: &aws_sdk_secretsmanager::Client,
    sdk: &SdkConfig,
    secret: &str,
    s3_path_style: bool,
) -> Result<LinkSigner, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct AccessKey {
        access_key_id: String,
        secret_access_key: String,
    }
    let value = secrets
        .get_secret_value()
        .secret_id(secret)
        .send()
        .await
        .map_err(|e| {
            format!(
                "reading the link signer's secret {secret}: {}",
                DisplayErrorContext(&e)
            )
        })?;
    let key: AccessKey = serde_json::from_str(value.secret_string().unwrap_or_default())
        .map_err(|e| format!("the link signer's secret {secret} is not an access key: {e}"))?;
    let credentials = aws_credential_types::Credentials::new(
        key.access_key_id,
        key.secret_access_key,
        None,
        None,
        "link-signer-secret",
    );
    Ok(LinkSigner::new(
        sdk,
        Some(SharedCredentialsProvider::new(credentials)),
        s3_path_style,
    ))
}

/// The session every function's Data API calls run in, when they share a role.
pub const DATA_API_SESSION: &str = "redshift-export";

/// `sdk` with credentials of `role`, assumed as [`DATA_API_SESSION`]. The Data API lets only
/// the role that started a statement describe or cancel it, so the processor (which starts
/// statements), the poller (which follows them) and the receiver (which cancels them) all
/// call it as this one role. The provider refreshes the credentials before they expire.
pub async fn data_api_config(sdk: &SdkConfig, role: &str) -> SdkConfig {
    let provider = aws_config::sts::AssumeRoleProvider::builder(role)
        .session_name(DATA_API_SESSION)
        .configure(sdk)
        .build()
        .await;
    sdk.to_builder()
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(provider),
        )
        .build()
}

fn catalog() -> Arc<Catalog> {
    // Checked by the test suite; a build whose catalogue does not parse cannot ship.
    Arc::new(crate::catalog::load().expect("the embedded catalogue parses"))
}

/// The catalogue as each caller may see it: the embedded catalogue and access policy, and,
/// when `ACCESS_TAGS_ACCOUNT` names the deployment's account, its users' and roles' IAM tags.
pub fn access(env: &mut Env, clients: &Clients) -> Arc<Access> {
    // Checked by the test suite, as the catalogue is.
    let policy = crate::catalog::access_policy().expect("the embedded access policy parses");
    let tags = env.optional("ACCESS_TAGS_ACCOUNT").map(|account| {
        Arc::new(IamTagGrants::new(clients.iam.clone(), &account)) as Arc<dyn AttributeSource>
    });
    Arc::new(Access::new(catalog(), policy, tags))
}

fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

fn control(env: &mut Env, clients: &Clients) -> Arc<DynamoControlTable> {
    let table = env.required("CONTROL_TABLE");
    let days: u64 = env.parsed("JOB_RETENTION_DAYS", 30);
    Arc::new(DynamoControlTable::new(
        clients.dynamodb.clone(),
        table,
        Duration::from_secs(days * 24 * 3600),
    ))
}

fn warehouse(env: &mut Env, clients: &Clients) -> Arc<DataApiWarehouse> {
    let database = env.required("REDSHIFT_DATABASE");
    let secret = env.optional("REDSHIFT_SECRET_ARN");
    let target = match (
        env.optional("REDSHIFT_CLUSTER_ID"),
        env.optional("REDSHIFT_WORKGROUP"),
    ) {
        (Some(cluster_id), None) => {
            let credentials = match (secret, env.optional("REDSHIFT_DB_USER")) {
                (Some(arn), _) => ClusterCredentials::SecretArn(arn),
                (None, Some(user)) => ClusterCredentials::DbUser(user),
                (None, None) => {
                    env.note_missing("REDSHIFT_SECRET_ARN or REDSHIFT_DB_USER");
                    ClusterCredentials::DbUser(String::new())
                }
            };
            Target::Cluster {
                cluster_id,
                credentials,
            }
        }
        (None, Some(name)) => Target::Workgroup {
            name,
            secret_arn: secret,
        },
        (Some(_), Some(_)) => {
            env.note_invalid(
                "REDSHIFT_CLUSTER_ID",
                "set either it or REDSHIFT_WORKGROUP, not both",
            );
            Target::Workgroup {
                name: String::new(),
                secret_arn: None,
            }
        }
        (None, None) => {
            env.note_missing("REDSHIFT_CLUSTER_ID or REDSHIFT_WORKGROUP");
            Target::Workgroup {
                name: String::new(),
                secret_arn: None,
            }
        }
    };
    Arc::new(DataApiWarehouse::new(
        clients.redshift.clone(),
        target,
        database,
    ))
}

fn queues(env: &mut Env, clients: &Clients, requests: bool, polls: bool) -> Arc<SqsQueues> {
    let requests = requests.then(|| env.required("REQUESTS_QUEUE_URL"));
    let polls = polls.then(|| env.required("POLLS_QUEUE_URL"));
    Arc::new(SqsQueues::new(clients.sqs.clone(), requests, polls))
}

/// Where UNLOAD writes; `for_unload` adds what only the statement's text needs (the
/// processor renders it, the poller only reads what it wrote).
fn unload_settings(env: &mut Env, for_unload: bool) -> UnloadSettings {
    let mut settings = UnloadSettings::new(
        &env.required("RESULTS_BUCKET"),
        &env.required("STATEMENT_NAME_PREFIX"),
    );
    settings.results_prefix = prefix(env.optional("RESULTS_PREFIX"), &settings.results_prefix);
    settings.restart_after = env.seconds(
        "RESTART_AFTER_SECONDS",
        settings.restart_after.as_secs(),
        86_400,
    );
    if for_unload {
        settings.iam_role = env.required("UNLOAD_IAM_ROLE");
        settings.max_file_size_mb = env.parsed("MAX_FILE_SIZE_MB", 256);
        if !(5..=6200).contains(&settings.max_file_size_mb) {
            env.note_invalid("MAX_FILE_SIZE_MB", "Redshift accepts 5 to 6200");
        }
    }
    settings
}

/// A key prefix that ends in `/` (or is empty).
fn prefix(value: Option<String>, default: &str) -> String {
    match value {
        None => default.to_owned(),
        Some(p) if p.ends_with('/') => p,
        Some(p) => format!("{p}/"),
    }
}

fn link_ttl(env: &mut Env) -> Duration {
    env.seconds("LINK_TTL_SECONDS", 86_400, MAX_LINK_TTL.as_secs())
}

fn delivery_settings(env: &mut Env) -> DeliverySettings {
    let poll_initial_delay = env.seconds("POLL_INITIAL_DELAY_SECONDS", 5, MAX_DELAY.as_secs());
    let poll_max_delay = env.seconds("POLL_MAX_DELAY_SECONDS", 60, MAX_DELAY.as_secs());
    if poll_max_delay < poll_initial_delay {
        env.note_invalid(
            "POLL_MAX_DELAY_SECONDS",
            "must not be below POLL_INITIAL_DELAY_SECONDS",
        );
    }
    let default_recipients = env.list("DEFAULT_RECIPIENTS");
    if default_recipients.is_empty() {
        env.note_missing("DEFAULT_RECIPIENTS");
    }
    DeliverySettings {
        downloads_bucket: env.required("DOWNLOADS_BUCKET"),
        downloads_prefix: prefix(env.optional("DOWNLOADS_PREFIX"), "archives/"),
        link_ttl: link_ttl(env),
        poll_initial_delay,
        poll_max_delay,
        packaging_lease: env.seconds("PACKAGING_LEASE_SECONDS", 600, 86_400),
        sweep_after: env.seconds("SWEEP_AFTER_SECONDS", 900, 86_400),
        mail: MailSettings {
            allowed_recipients: env.list("NOTIFY_ALLOWLIST"),
            default_recipients,
        },
        webhooks: WebhookSettings::default(),
    }
}

/// How the poller writes archives: on every core the function has (Lambda gives a function
/// more vCPUs as its memory grows), stopping `PACKAGING_MARGIN_SECONDS` before the
/// invocation's deadline at an entry boundary, with a checkpoint every `CHECKPOINT_SECONDS`.
pub fn packaging_settings(env: &mut Env) -> PackagingSettings {
    PackagingSettings {
        margin: env.seconds("PACKAGING_MARGIN_SECONDS", 30, 600),
        checkpoint_every: env.seconds("CHECKPOINT_SECONDS", 120, 3_600),
        ..PackagingSettings::default()
    }
}

/// Who owns the jobs of a caller that assumed a role (`ASSUMED_ROLE_OWNER`: `session`, the
/// default, or `role`); the receiver and the status function must agree.
pub fn role_owner(env: &mut Env) -> RoleOwner {
    env.parsed("ASSUMED_ROLE_OWNER", RoleOwner::Session)
}

/// How many export statements run at once (`WAREHOUSE_SLOTS`, 5 by default; 0 starts every
/// job as it comes), counted in the control table.
fn admission_settings(env: &mut Env) -> AdmissionSettings {
    let slots: u32 = env.parsed("WAREHOUSE_SLOTS", admission::DEFAULT_SLOTS);
    AdmissionSettings {
        slots: (slots > 0).then_some(slots),
    }
}

/// Admission over the control table; a freed slot's start goes on `queue`.
fn admission(env: &mut Env, control: &Arc<DynamoControlTable>, queue: Arc<SqsQueues>) -> Admission {
    Admission {
        ledger: control.clone(),
        queue,
        clock: clock(),
        settings: admission_settings(env),
    }
}

/// What each caller has used of its quotas, counted in the control table.
fn quotas(control: &Arc<DynamoControlTable>) -> Quotas {
    Quotas {
        ledger: control.clone(),
        clock: clock(),
    }
}

/// The audit log: the log group `AUDIT_LOG_GROUP`, kept apart from the functions' logs.
fn audit(env: &mut Env, clients: &Clients) -> Audit {
    Audit {
        log: Arc::new(CloudWatchAudit::new(
            clients.logs.clone(),
            env.required("AUDIT_LOG_GROUP"),
        )),
        clock: clock(),
    }
}

/// `receiver`: submit and cancel.
pub fn receiver(env: &mut Env, clients: &Clients) -> Arc<Submissions> {
    Arc::new(Submissions {
        // `POST /exports?wait=` answers a job that ended as the status function shows it.
        finished: Some(status(env, clients)),
        ..submissions(env, clients)
    })
}

/// Submissions as the receiver makes them, but for the wait on submit: what the poller's
/// tick submits a subscription's runs through (it never waits, so it builds no status view).
fn submissions(env: &mut Env, clients: &Clients) -> Submissions {
    let control = control(env, clients);
    let queue = queues(env, clients, true, false);
    Submissions {
        access: access(env, clients),
        control: control.clone(),
        queue: queue.clone(),
        warehouse: warehouse(env, clients),
        clock: clock(),
        admission: admission(env, &control, queue),
        quotas: quotas(&control),
        audit: audit(env, clients),
        // The receiver only checks where a webhook may go; it never reads the key.
        webhooks: env
            .parsed("WEBHOOK_DELIVERIES", false)
            .then_some(WEBHOOK_REACH),
        finished: None,
    }
}

/// Where a deployment's webhooks may go: https to public addresses only. One value for the
/// core's check of a URL and for the sender's check of each address it connects to.
const WEBHOOK_REACH: Reach = Reach::PUBLIC_HTTPS;

/// Webhooks from a deployment: within [`WEBHOOK_REACH`], signed with the keys in
/// `WEBHOOK_KEY_SECRET_ARN`.
pub fn webhook_settings(clients: &Clients) -> WebhookSettings {
    WebhookSettings {
        reach: WEBHOOK_REACH,
        keys: clients.webhook_keys.clone(),
    }
}

/// `status`: a job, its history, its link, the caller's jobs, the catalogue.
pub fn status(env: &mut Env, clients: &Clients) -> Arc<Queries> {
    let control = control(env, clients);
    let line: Option<Arc<dyn AdmissionLedger>> = admission_settings(env)
        .slots
        .map(|_| control.clone() as Arc<dyn AdmissionLedger>);
    Arc::new(Queries {
        access: access(env, clients),
        quotas: quotas(&control),
        audit: audit(env, clients),
        control,
        line,
        objects: Arc::new(
            S3ObjectStore::new(clients.s3.clone()).with_link_signer(clients.link_signer.clone()),
        ),
        clock: clock(),
        link_ttl: link_ttl(env),
        webhooks: webhook_settings(clients),
        webhook_sender: Arc::new(HttpWebhooks::new(WEBHOOK_REACH)),
    })
}

/// `status`'s lookups: the catalogue's lookups through the Data API (the shared Data API role,
/// like every statement), their answers cached in this instance and in the control table.
/// `LOOKUP_TIMEOUT_SECONDS` (default 10, at most 25: API Gateway gives an integration 29 s)
/// bounds the wait for the warehouse. `access` is the queries' own, so the function keeps one
/// set of callers' grants (and asks IAM about each caller once a minute, not twice).
pub fn lookups(env: &mut Env, clients: &Clients, access: Arc<Access>) -> Arc<Lookups> {
    let control = control(env, clients);
    Arc::new(
        Lookups::new(
            access,
            warehouse(env, clients),
            control.clone(),
            clock(),
            LookupSettings {
                timeout: env.seconds("LOOKUP_TIMEOUT_SECONDS", 10, 25),
                // `LOOKUP_SLOTS` lookup statements at once (4 by default; 0: no limit).
                slots: Some(env.parsed(
                    "LOOKUP_SLOTS",
                    export_core::service::lookup::DEFAULT_LOOKUP_SLOTS,
                ))
                .filter(|n| *n > 0),
                ..LookupSettings::default()
            },
        )
        .with_quotas(quotas(&control))
        .with_slots(control.clone())
        .with_audit(audit(env, clients)),
    )
}

/// `processor`: renders and starts each queued job's UNLOAD.
pub fn processor(env: &mut Env, clients: &Clients) -> Arc<Processor> {
    let control = control(env, clients);
    // Follow-ups go to the polls queue, retries of a failed start and the starts of jobs
    // handed a slot to the requests queue.
    let queue = queues(env, clients, true, true);
    Arc::new(Processor {
        catalog: catalog(),
        control: control.clone(),
        warehouse: warehouse(env, clients),
        queue: queue.clone(),
        admission: admission(env, &control, queue),
        clock: clock(),
        unload: unload_settings(env, true),
        first_poll_delay: env.seconds("POLL_INITIAL_DELAY_SECONDS", 5, MAX_DELAY.as_secs()),
        retry: retry_settings(env),
    })
}

/// `poller`: follows statements, packages, presigns and mails; sweeps stuck jobs.
pub fn poller(env: &mut Env, clients: &Clients) -> Arc<Poller> {
    let sender = env.required("SENDER_EMAIL");
    let control = control(env, clients);
    // The sweep re-queues jobs whose start message was lost; a freed slot's start goes on it.
    let queue = queues(env, clients, true, true);
    Arc::new(Poller {
        control: control.clone(),
        admission: admission(env, &control, queue.clone()),
        quotas: quotas(&control),
        audit: audit(env, clients),
        warehouse: warehouse(env, clients),
        objects: Arc::new(
            S3ObjectStore::new(clients.s3.clone()).with_link_signer(clients.link_signer.clone()),
        ),
        mailer: Arc::new(SesMailer::new(
            clients.ses.clone(),
            sender,
            env.optional("SES_CONFIGURATION_SET"),
        )),
        webhooks: Arc::new(HttpWebhooks::new(WEBHOOK_REACH)),
        queue,
        clock: clock(),
        unload: unload_settings(env, false),
        delivery: DeliverySettings {
            webhooks: webhook_settings(clients),
            ..delivery_settings(env)
        },
        packaging: packaging_settings(env),
        retry: retry_settings(env),
        subscriptions: Some({
            let submissions = Arc::new(submissions(env, clients));
            subscriptions(env, clients, submissions)
        }),
    })
}

/// Subscriptions, their runs submitted through `submissions` (the receiver's own rules, as
/// the caller): the receiver serves their routes, and the poller's tick makes their runs.
pub fn subscriptions(
    env: &mut Env,
    clients: &Clients,
    submissions: Arc<Submissions>,
) -> Arc<Subscriptions> {
    let control = control(env, clients);
    Arc::new(Subscriptions {
        store: control.clone(),
        control,
        submissions,
        clock: clock(),
    })
}

/// Receives after which a failing message is given up on; the queue's redrive policy
/// (`maxReceiveCount`) must say the same.
/// How a failed message is tried again: a copy after `RETRY_FIRST_DELAY_SECONDS` (15 s by
/// default), doubling up to SQS's longest delay.
fn retry_settings(env: &mut Env) -> RetrySettings {
    RetrySettings {
        first_delay: env.seconds("RETRY_FIRST_DELAY_SECONDS", 15, MAX_DELAY.as_secs()),
        max_delay: MAX_DELAY,
    }
}

pub fn max_receives(env: &mut Env) -> u32 {
    env.parsed("MAX_RECEIVE_COUNT", 5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_missing_variable_is_named_at_once() {
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let clients = Clients::new(&sdk, false);
        let mut env = Env::from_pairs([("REDSHIFT_CLUSTER_ID", "c1")]);
        poller(&mut env, &clients);
        let error = env.finish().unwrap_err();
        for name in [
            "SENDER_EMAIL",
            "CONTROL_TABLE",
            "REDSHIFT_DATABASE",
            "REDSHIFT_SECRET_ARN or REDSHIFT_DB_USER",
            "POLLS_QUEUE_URL",
            "REQUESTS_QUEUE_URL",
            "RESULTS_BUCKET",
            "DEFAULT_RECIPIENTS",
            "DOWNLOADS_BUCKET",
        ] {
            assert!(
                error.missing.iter().any(|m| m == name),
                "{name} not in {error}"
            );
        }
        assert!(error.invalid.is_empty(), "{error}");
        // The poller reads what UNLOAD wrote; it never needs the role UNLOAD ran with.
        assert!(
            !error.missing.iter().any(|m| m == "UNLOAD_IAM_ROLE"),
            "{error}"
        );
    }

    #[test]
    fn the_embedded_catalogue_parses() {
        let catalog = crate::catalog::load().unwrap();
        assert!(catalog.get("product_detail").is_some());
        assert_eq!(catalog.names().len(), crate::catalog::sources().len());
    }
}
