//! The whole local stack in one process: the gateway and the processor and poller workers,
//! over the embedded adapters, with all state under one data directory.

use crate::audit::JsonLinesAudit;
use crate::check;
use crate::faults::{Faults, Faulty};
use crate::gateway;
use crate::objects::FsObjectStore;
use crate::outbox::OutboxMailer;
use crate::sigv4::{LocalIdentity, Verifier};
use crate::sql_source::SqlSource;
use crate::sqlite::SqliteStore;
use crate::tables::{self, TableFile};
use crate::warehouse::{ClientTokens, DataFusionWarehouse, CLIENT_TOKEN_LIFETIME};
use anyhow::Context;
use export_client::Signer;
use export_console::{Console, Credentials, Identity};
use export_core::access::AccessPolicy;
use export_core::catalog::Catalog;
use export_core::clock::{Clock, SystemClock};
use export_core::http::api_router;
use export_core::messages::{Message, PollMessage};
use export_core::ports::{QueueName, QueueSender};
use export_core::service::compose::{Ports, Services, Settings};
use export_core::service::{
    consume, AdmissionSettings, Consumer, LookupSettings, Poller, Subscriptions,
};
use export_core::settings::{
    DeliverySettings, MailSettings, PackagingSettings, RetrySettings, UnloadSettings,
    WebhookSettings,
};
use export_core::webhook::{Reach, SigningKeys};
use export_webhook::HttpWebhooks;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const RESULTS_BUCKET: &str = "export-results";
/// The role the local warehouse's UNLOADs name (it assumes none).
pub const UNLOAD_ROLE: &str = "arn:aws:iam::000000000000:role/local-unload";
/// The local stack's statements are named `local:<request id>`.
pub const STATEMENT_PREFIX: &str = "local:";
pub const DOWNLOADS_BUCKET: &str = "export-downloads";

/// Everything the local stack can be told.
#[derive(Clone, Debug)]
pub struct LocalConfig {
    /// All state lives here; deleting it is a full reset.
    pub data_dir: PathBuf,
    /// The catalogue, schema and access policy: the demo's, built in, or a directory's.
    pub sql: SqlSource,
    /// A team's own tables (`--table schema.name=path`), beside the schema's.
    pub tables: Vec<TableFile>,
    pub addr: SocketAddr,
    /// TPC-H scale for `orders` and `lineitem`.
    pub scale: f64,
    /// Workers per queue; 0 runs the gateway alone (as the benchmark's submit run does).
    pub processors: usize,
    pub pollers: usize,
    pub identities: Vec<LocalIdentity>,
    /// How long a received message stays hidden before it is delivered again.
    pub visibility_timeout: Duration,
    /// Receives before a message goes to the dead-letter table; also the tries a failing
    /// message and its retry copies get together.
    pub max_receives: u32,
    /// The delay before a failed message's first retry copy; it doubles for each next one,
    /// up to 30 s.
    pub retry_first_delay: Duration,
    /// Time each statement waits before it runs (a stand-in for a busy cluster).
    pub statement_delay: Duration,
    /// Statements the warehouse runs at once, the rest waiting their turn (a WLM queue's
    /// slots); None runs every statement at once.
    pub warehouse_concurrency: Option<usize>,
    pub max_file_size_mb: u32,
    pub link_ttl: Duration,
    pub poll_initial_delay: Duration,
    pub poll_max_delay: Duration,
    pub packaging_lease: Duration,
    /// How archives are written; its `budget` is each poller message's time, the stand-in
    /// for a function's timeout, after which packaging goes on in a continuation.
    pub packaging: PackagingSettings,
    /// How often the sweep runs (the template's schedule), and how long a job must sit
    /// unsettled before the sweep looks at it.
    pub sweep_every: Duration,
    pub sweep_after: Duration,
    /// How often the scheduler makes the subscriptions' runs that are due.
    pub subscription_tick: Duration,
    /// How lookups run: how long one may wait for the warehouse, what is cached.
    pub lookups: LookupSettings,
    /// How many export statements the warehouse runs at once; `slots: None` starts every
    /// job as it comes.
    pub admission: AdmissionSettings,
    /// Faults to inject into the services' calls of every port (`faults`); none by default.
    pub faults: Option<Arc<Faults>>,
}

impl LocalConfig {
    pub fn new(data_dir: PathBuf, sql: SqlSource) -> Self {
        LocalConfig {
            data_dir,
            sql,
            tables: Vec::new(),
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            scale: 0.01,
            processors: 4,
            pollers: 4,
            identities: LocalIdentity::demo(),
            visibility_timeout: Duration::from_secs(30),
            max_receives: 5,
            retry_first_delay: Duration::from_secs(1),
            statement_delay: Duration::ZERO,
            warehouse_concurrency: None,
            max_file_size_mb: 256,
            link_ttl: Duration::from_secs(3600),
            poll_initial_delay: Duration::from_secs(1),
            poll_max_delay: Duration::from_secs(10),
            packaging_lease: Duration::from_secs(60),
            packaging: PackagingSettings {
                budget: Some(Duration::from_secs(900)),
                heartbeat_every: Duration::from_secs(10),
                ..PackagingSettings::default()
            },
            sweep_every: Duration::from_secs(60),
            sweep_after: Duration::from_secs(300),
            subscription_tick: Duration::from_secs(10),
            lookups: LookupSettings::default(),
            admission: AdmissionSettings::default(),
            faults: None,
        }
    }
}

/// A running local stack.
pub struct LocalStack {
    pub addr: SocketAddr,
    pub store: SqliteStore,
    pub objects: FsObjectStore,
    pub outbox: PathBuf,
    warehouse: Arc<DataFusionWarehouse>,
    poller: Arc<Poller>,
    shutdown: CancellationToken,
    server: JoinHandle<()>,
    workers: Vec<JoinHandle<()>>,
    checkpointer: JoinHandle<()>,
}

impl LocalStack {
    /// Opens (or creates) the data directory, loads the warehouse, binds the gateway and
    /// starts the workers. Jobs left unfinished by a previous run carry on.
    pub async fn start(config: LocalConfig) -> anyhow::Result<LocalStack> {
        let dir = &config.data_dir;
        std::fs::create_dir_all(dir.join("warehouse"))
            .with_context(|| format!("creating {}", dir.display()))?;
        // Said plainly now, rather than as the first store's "unable to open database file".
        let probe = dir.join(".writable");
        std::fs::write(&probe, b"")
            .and_then(|_| std::fs::remove_file(&probe))
            .with_context(|| format!("the data directory {} cannot be written", dir.display()))?;
        let catalog = Arc::new(config.sql.catalog()?);
        let policy = config.sql.policy().map_err(anyhow::Error::msg)?;
        let store = SqliteStore::open(&dir.join("control.sqlite"), config.max_receives)?;
        let checkpointer =
            store.spawn_checkpointer(&dir.join("control.sqlite"), Duration::from_millis(100))?;
        let objects = FsObjectStore::open(&dir.join("objects"), &dir.join("link-signing.key"))?;
        let audit = Arc::new(JsonLinesAudit::open(dir)?);
        let outbox = dir.join("outbox");
        let mailer = Arc::new(OutboxMailer::open(
            &outbox,
            "Redshift Export API",
            "exports@localhost",
        )?);

        let session = config.sql.session().await?;
        tables::load_tpch(&session, &dir.join("warehouse"), config.scale).await?;
        for table in &config.tables {
            tables::load_table_file(&session, table).await?;
        }
        // Every entry is planned now, so one that cannot run stops the start, not a caller.
        let problems = check::check_catalogue(&session, &catalog).await;
        if !problems.is_empty() {
            return Err(check::refusal(&problems));
        }
        let warehouse = Arc::new(
            DataFusionWarehouse::open(
                session,
                &dir.join("warehouse").join("statements.sqlite"),
                Arc::new(objects.clone()),
                Arc::new(store.clone()),
                config.statement_delay,
                ClientTokens {
                    clock: Arc::new(SystemClock),
                    lifetime: CLIENT_TOKEN_LIFETIME,
                },
            )?
            .with_concurrency(config.warehouse_concurrency),
        );

        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("binding {}", config.addr))?;
        let addr = listener.local_addr()?;
        objects.set_base_url(&format!("http://{addr}"));

        let mut unload = UnloadSettings::new(RESULTS_BUCKET, STATEMENT_PREFIX);
        unload.iam_role = UNLOAD_ROLE.into();
        unload.max_file_size_mb = config.max_file_size_mb;
        let mut delivery = DeliverySettings::new(
            DOWNLOADS_BUCKET,
            MailSettings {
                allowed_recipients: vec!["*".into()],
                default_recipients: vec!["exports@localhost".into()],
            },
        );
        delivery.link_ttl = config.link_ttl;
        delivery.poll_initial_delay = config.poll_initial_delay;
        delivery.poll_max_delay = config.poll_max_delay;
        delivery.packaging_lease = config.packaging_lease;
        delivery.sweep_after = config.sweep_after;
        // One machine: its user's receiver runs beside it, on http and loopback.
        let webhook_reach = Reach::ANYWHERE;
        delivery.webhooks = WebhookSettings {
            reach: webhook_reach,
            keys: Some(SigningKeys {
                current: crate::objects::stored_key(&dir.join("webhook-signing.key"))?,
                previous: None,
            }),
        };
        let settings = Settings {
            unload,
            delivery,
            packaging: config.packaging.clone(),
            retry: RetrySettings {
                first_delay: config.retry_first_delay,
                max_delay: Duration::from_secs(30),
            },
            lookups: config.lookups.clone(),
            admission: config.admission,
        };
        let ports = ports(
            catalog,
            policy,
            Adapters {
                store: store.clone(),
                warehouse: warehouse.clone(),
                objects: objects.clone(),
                mailer,
                audit,
                webhooks: Arc::new(HttpWebhooks::new(webhook_reach)),
            },
            config.faults.as_ref(),
        );
        let Services {
            submissions,
            subscriptions,
            queries,
            lookups,
            processor,
            poller,
        } = Services::new(&ports, &settings);

        let shutdown = CancellationToken::new();
        let app = gateway::router(
            api_router(submissions, queries, lookups, subscriptions.clone()),
            Arc::new(Verifier::new(config.identities.clone())),
            objects.clone(),
        )
        .merge(export_console::router(Arc::new(console(
            &format!("http://{addr}"),
            &config.identities,
        )?)));
        let server = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let serve = axum::serve(listener, app)
                    .with_graceful_shutdown(async move { shutdown.cancelled().await });
                if let Err(e) = serve.await {
                    tracing::error!(error = %e, "gateway stopped");
                }
            })
        };
        let mut workers = Vec::new();
        let consumers: [(QueueName, Arc<dyn Consumer>, usize); 2] = [
            (QueueName::Requests, processor, config.processors),
            (QueueName::Polls, poller.clone(), config.pollers),
        ];
        for (queue, consumer, count) in consumers {
            for _ in 0..count {
                workers.push(tokio::spawn(work(
                    store.clone(),
                    queue,
                    consumer.clone(),
                    config.visibility_timeout,
                    shutdown.clone(),
                )));
            }
        }
        if config.pollers > 0 {
            workers.push(tokio::spawn(schedule_subscriptions(
                subscriptions.clone(),
                config.subscription_tick,
                shutdown.clone(),
            )));
            workers.push(tokio::spawn(schedule_sweeps(
                store.clone(),
                config.sweep_every,
                shutdown.clone(),
            )));
        }
        let resumed = warehouse.resume_unfinished().await?;
        tracing::info!(%addr, data_dir = %dir.display(), resumed_statements = resumed, "local stack started");
        Ok(LocalStack {
            addr,
            store,
            objects,
            outbox,
            warehouse,
            poller,
            shutdown,
            server,
            workers,
            checkpointer,
        })
    }

    /// The web console's address.
    pub fn console_url(&self) -> String {
        format!("http://{}/console/", self.addr)
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Runs one sweep now, as the schedule does every `sweep_every`: the jobs unsettled for
    /// longer than `sweep_after` get their next step queued again.
    pub async fn sweep(&self) -> anyhow::Result<()> {
        self.poller
            .sweep()
            .await
            .map_err(|e| anyhow::anyhow!("sweep failed: {e}"))
    }

    /// Stops cleanly: no new messages are taken, the ones in hand finish, the gateway drains.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for worker in self.workers {
            let _ = worker.await;
        }
        let _ = self.server.await;
        self.warehouse.halt();
        self.checkpointer.abort();
    }

    /// Stops at once, as a crash would: work in hand is abandoned mid-step. Whatever was
    /// durable is picked up by the next start.
    pub async fn kill(self) {
        self.shutdown.cancel();
        for worker in &self.workers {
            worker.abort();
        }
        self.server.abort();
        self.checkpointer.abort();
        self.warehouse.halt();
        for worker in self.workers {
            let _ = worker.await;
        }
    }
}

/// The console at `/console`, signing as each identity through this same gateway, so that the
/// page's calls are checked as every other client's are.
fn console(base_url: &str, identities: &[LocalIdentity]) -> anyhow::Result<Console> {
    let identities = identities
        .iter()
        .map(|identity| Identity {
            name: identity.name().to_owned(),
            credentials: Credentials::Keys(Signer::with_keys(
                &identity.access_key,
                &identity.secret_key,
                crate::sigv4::REGION,
            )),
        })
        .collect();
    Console::new(base_url, identities)
}

/// The stack's scheduler: every `every`, the subscriptions' runs that are due. Their times
/// are in the store, so a stack stopped and started again makes the runs it missed, once.
async fn schedule_subscriptions(
    subscriptions: Arc<Subscriptions>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        match subscriptions.run_due().await {
            Ok(0) => {}
            Ok(made) => tracing::info!(runs = made, "subscriptions ran"),
            Err(e) => {
                tracing::warn!(error = %e, "the subscriptions' tick failed; the next tries again")
            }
        }
    }
}

/// The local stand-in for the template's schedule rule: a sweep tick on the polls queue every
/// `every`, handled by a poller like any other message.
async fn schedule_sweeps(store: SqliteStore, every: Duration, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let tick = Message::Poll(PollMessage::Sweep);
        if let Err(e) = store.send(&tick, Duration::ZERO).await {
            tracing::warn!(error = %e, "could not queue the sweep");
        }
    }
}

/// One worker: take a message, handle it, ack it (a failure's retry is a delayed copy) — or,
/// if no copy could be queued, leave it for redelivery with a backoff.
/// While a handler works, the message's invisibility is renewed so no other worker takes it;
/// on its last delivery, a failing message fails its job instead of stranding it.
async fn work(
    store: SqliteStore,
    queue: QueueName,
    consumer: Arc<dyn Consumer>,
    visibility: Duration,
    shutdown: CancellationToken,
) {
    loop {
        let received = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = store.receive(queue, 1, visibility, Duration::from_secs(1)) => r,
        };
        let deliveries = match received {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(queue = queue.as_str(), error = %e, "receive failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        for delivery in deliveries {
            let outcome = {
                let handling = consume(
                    consumer.as_ref(),
                    &delivery.body,
                    delivery.receive_count,
                    store.max_receives(),
                    // The poller's packaging budget stands in for a function's deadline.
                    None,
                );
                tokio::pin!(handling);
                let mut heartbeat = tokio::time::interval(visibility / 2);
                heartbeat.tick().await;
                loop {
                    tokio::select! {
                        outcome = &mut handling => break outcome,
                        _ = heartbeat.tick() => {
                            if let Err(e) = store.extend(&delivery.receipt, visibility).await {
                                tracing::warn!(queue = queue.as_str(), error = %e, "could not extend the message's visibility");
                            }
                        }
                    }
                }
            };
            if outcome.acknowledges() {
                if let Err(e) = store.ack(&delivery.receipt).await {
                    tracing::error!(queue = queue.as_str(), error = %e, "ack failed; the message will be handled again");
                }
            } else {
                // No copy could be queued: delivered again after a pause that grows with each
                // try; a message given up on is moved to the dead letters by its next receive.
                let delay = Duration::from_secs(u64::from(delivery.receive_count).min(30));
                let _ = store.release(&delivery.receipt, delay).await;
            }
        }
    }
}

/// The stack's adapters, each once.
struct Adapters {
    store: SqliteStore,
    warehouse: Arc<DataFusionWarehouse>,
    objects: FsObjectStore,
    mailer: Arc<OutboxMailer>,
    audit: Arc<JsonLinesAudit>,
    webhooks: Arc<HttpWebhooks>,
}

/// The ports as the services see them: the adapters themselves, or each behind the fault
/// layer when the configuration has faults to inject.
fn ports(
    catalog: Arc<Catalog>,
    policy: AccessPolicy,
    adapters: Adapters,
    faults: Option<&Arc<Faults>>,
) -> Ports {
    let Adapters {
        store,
        warehouse,
        objects,
        mailer,
        audit,
        webhooks,
    } = adapters;
    let store = Arc::new(store);
    let objects = Arc::new(objects);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    match faults {
        None => Ports {
            catalog,
            policy,
            attributes: None,
            control: store.clone(),
            answers: store.clone(),
            ledger: store.clone(),
            usage: store.clone(),
            audit,
            subscriptions: store.clone(),
            queue: store,
            warehouse: warehouse.clone(),
            objects,
            mailer,
            webhooks,
            clock,
        },
        Some(faults) => Ports {
            catalog,
            policy,
            attributes: None,
            control: Faulty::new(store.clone(), faults.clone()),
            answers: Faulty::new(store.clone(), faults.clone()),
            ledger: Faulty::new(store.clone(), faults.clone()),
            usage: Faulty::new(store.clone(), faults.clone()),
            audit: Faulty::new(audit, faults.clone()),
            subscriptions: Faulty::new(store.clone(), faults.clone()),
            queue: Faulty::new(store, faults.clone()),
            warehouse: Faulty::new(warehouse.clone(), faults.clone()),
            objects: Faulty::new(objects, faults.clone()),
            mailer: Faulty::new(mailer, faults.clone()),
            webhooks: Faulty::new(webhooks, faults.clone()),
            clock,
        },
    }
}
