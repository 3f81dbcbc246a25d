//! The composition root: every service built from the ports a deployment supplies and the
//! settings it chose, in one place. The local stack, the test world and the AWS tests build
//! all of them here; each Lambda function builds its own service from the same settings'
//! defaults (`export_aws::functions`), since it holds only the ports that service needs.

use super::{
    Admission, AdmissionSettings, Audit, LookupSettings, Lookups, Poller, Processor, Queries,
    Quotas, Submissions, Subscriptions,
};
use crate::access::{Access, AccessPolicy, AttributeSource};
use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::ports::{
    AdmissionLedger, AnswerCache, AuditLog, ControlTable, Mailer, ObjectStore, QueueSender,
    SubscriptionStore, UsageLedger, Warehouse, Webhooks,
};
use crate::settings::{DeliverySettings, PackagingSettings, RetrySettings, UnloadSettings};
use std::sync::Arc;

/// The ports, each once.
#[derive(Clone)]
pub struct Ports {
    pub catalog: Arc<Catalog>,
    /// Who may use which dataset, beside the catalogue (`access.toml`).
    pub policy: AccessPolicy,
    /// Grants from the callers' identities too (IAM tags on AWS), if the deployment says so.
    pub attributes: Option<Arc<dyn AttributeSource>>,
    pub control: Arc<dyn ControlTable>,
    pub answers: Arc<dyn AnswerCache>,
    /// Who holds the warehouse's slots, and the line for them.
    pub ledger: Arc<dyn AdmissionLedger>,
    /// What each caller has used of its quotas.
    pub usage: Arc<dyn UsageLedger>,
    /// Where every read is recorded.
    pub audit: Arc<dyn AuditLog>,
    /// Subscriptions and their runs.
    pub subscriptions: Arc<dyn SubscriptionStore>,
    pub queue: Arc<dyn QueueSender>,
    pub warehouse: Arc<dyn Warehouse>,
    pub objects: Arc<dyn ObjectStore>,
    pub mailer: Arc<dyn Mailer>,
    /// Where webhook notices are POSTed.
    pub webhooks: Arc<dyn Webhooks>,
    pub clock: Arc<dyn Clock>,
}

/// Every service's settings.
#[derive(Clone, Debug)]
pub struct Settings {
    pub unload: UnloadSettings,
    pub delivery: DeliverySettings,
    pub packaging: PackagingSettings,
    pub retry: RetrySettings,
    pub lookups: LookupSettings,
    pub admission: AdmissionSettings,
}

impl Settings {
    /// The defaults, for a deployment's buckets, statement names and mail.
    pub fn new(unload: UnloadSettings, delivery: DeliverySettings) -> Settings {
        Settings {
            unload,
            delivery,
            packaging: PackagingSettings::default(),
            retry: RetrySettings::default(),
            lookups: LookupSettings::default(),
            admission: AdmissionSettings::default(),
        }
    }
}

/// The services, over one set of ports.
pub struct Services {
    pub submissions: Arc<Submissions>,
    /// Exports on a schedule; its `run_due` is the scheduler's tick.
    pub subscriptions: Arc<Subscriptions>,
    pub queries: Arc<Queries>,
    pub lookups: Arc<Lookups>,
    pub processor: Arc<Processor>,
    pub poller: Arc<Poller>,
}

impl Services {
    pub fn new(ports: &Ports, settings: &Settings) -> Services {
        let Ports {
            catalog,
            policy,
            attributes,
            control,
            answers,
            ledger,
            usage,
            audit,
            subscriptions,
            queue,
            warehouse,
            objects,
            mailer,
            webhooks,
            clock,
        } = ports.clone();
        let access = Arc::new(Access::new(catalog.clone(), policy, attributes));
        let admission = Admission {
            ledger,
            queue: queue.clone(),
            clock: clock.clone(),
            settings: settings.admission,
        };
        let quotas = Quotas {
            ledger: usage,
            clock: clock.clone(),
        };
        let audit = Audit {
            log: audit,
            clock: clock.clone(),
        };
        let queries = Arc::new(Queries {
            access: access.clone(),
            control: control.clone(),
            objects: objects.clone(),
            clock: clock.clone(),
            link_ttl: settings.delivery.link_ttl,
            line: settings.admission.slots.map(|_| admission.ledger.clone()),
            quotas: quotas.clone(),
            audit: audit.clone(),
            webhooks: settings.delivery.webhooks.clone(),
            webhook_sender: webhooks.clone(),
        });
        let submissions = Arc::new(Submissions {
            access: access.clone(),
            control: control.clone(),
            queue: queue.clone(),
            warehouse: warehouse.clone(),
            clock: clock.clone(),
            admission: admission.clone(),
            quotas: quotas.clone(),
            audit: audit.clone(),
            webhooks: settings.delivery.webhooks.delivers(),
            finished: Some(queries.clone()),
        });
        Services {
            subscriptions: Arc::new(Subscriptions {
                store: subscriptions,
                submissions: submissions.clone(),
                control: control.clone(),
                clock: clock.clone(),
            }),
            submissions,
            queries,
            lookups: Arc::new(
                Lookups::new(
                    access,
                    warehouse.clone(),
                    answers,
                    clock.clone(),
                    settings.lookups.clone(),
                )
                .with_quotas(quotas.clone())
                .with_slots(admission.ledger.clone())
                .with_audit(audit.clone()),
            ),
            processor: Arc::new(Processor {
                catalog,
                control: control.clone(),
                warehouse: warehouse.clone(),
                queue: queue.clone(),
                clock: clock.clone(),
                unload: settings.unload.clone(),
                first_poll_delay: settings.delivery.poll_initial_delay,
                retry: settings.retry.clone(),
                admission: admission.clone(),
            }),
            poller: Arc::new(Poller {
                control,
                warehouse,
                objects,
                mailer,
                webhooks,
                queue,
                clock,
                unload: settings.unload.clone(),
                delivery: settings.delivery.clone(),
                packaging: settings.packaging.clone(),
                retry: settings.retry.clone(),
                admission,
                quotas,
                audit,
                subscriptions: None,
            }),
        }
    }
}
