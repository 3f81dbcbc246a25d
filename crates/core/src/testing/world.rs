use super::{
    FakeMailer, FakeWarehouse, ManualClock, MemoryAudit, MemoryControlTable, MemoryObjectStore,
    MemoryQueue, RecordedWebhooks,
};
use crate::access::AccessPolicy;
use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::domain::{Job, ObjectRef, Owner};
use crate::error::ApiError;
use crate::messages::{Message, PollMessage, StatementEvent};
use crate::ports::{QueueName, QueueSender, StatementState};
use crate::service::compose::{Ports, Services, Settings};
use crate::service::{
    consume, AdmissionSettings, Consumer, Delivered, ExportRequest, Lookups, Poller, Processor,
    Queries, Submissions, Subscriptions,
};
use crate::settings::{
    DeliverySettings, MailSettings, PackagingSettings, RetrySettings, UnloadSettings,
};
use std::sync::Arc;
use std::time::Duration;

/// The four services over the fakes, on one manual clock, with a queue runner that delivers
/// messages as the Lambda event source does (receive counts, visibility, give-up on the last
/// delivery). Tests drive it step by step; nothing in it sleeps.
pub struct World {
    pub clock: Arc<ManualClock>,
    pub control: Arc<MemoryControlTable>,
    pub queue: Arc<MemoryQueue>,
    pub warehouse: Arc<FakeWarehouse>,
    pub objects: Arc<MemoryObjectStore>,
    pub mailer: Arc<FakeMailer>,
    /// Every webhook notice POSTed.
    pub webhooks: Arc<RecordedWebhooks>,
    /// Every audit record, in order.
    pub audit: Arc<MemoryAudit>,
    pub submissions: Arc<Submissions>,
    pub subscriptions: Arc<Subscriptions>,
    pub processor: Arc<Processor>,
    pub poller: Arc<Poller>,
    pub queries: Arc<Queries>,
    pub lookups: Arc<Lookups>,
    /// The queue's `maxReceiveCount`.
    pub max_receives: u32,
    /// How long a received message stays hidden.
    pub visibility: Duration,
}

/// The key the world's webhook notices are signed with.
pub const WORLD_WEBHOOK_KEY: &[u8] = b"the world's webhook key";

/// The one export of the world's catalogue: `things`, by an integer id; it may be looked up
/// too, three rows at most, cached for three minutes.
pub const THINGS: &str = "-- export: things
-- description: Things by id.
-- lookup: max_rows=3 cache=180s
-- param: id integer
SELECT id, name FROM things WHERE id = :id";

/// A partner's dataset: its supplier is the caller's, never the request's.
pub const SUPPLIER_THINGS: &str = "-- export: supplier_things
-- description: A supplier's things.
-- allow: internal, suppliers
-- lookup: max_rows=3 cache=180s
-- param: supplier integer bound=supplier
-- param: id integer
SELECT id, name FROM things WHERE supplier = :supplier AND id = :id";

/// A supplier's shipments of one day: the world's one dataset with a date parameter.
pub const SUPPLIER_SHIPMENTS: &str = "-- export: supplier_shipments
-- description: A supplier's shipments of a day.
-- allow: internal, suppliers
-- param: supplier integer bound=supplier
-- param: day date
SELECT id, name FROM things WHERE supplier = :supplier AND shipped = :day";

/// Internal only.
pub const INTERNAL_THINGS: &str = "-- export: internal_things
-- allow: internal
-- lookup: max_rows=3 cache=180s
-- param: id integer
SELECT id, name FROM things WHERE id = :id";

/// The world's callers: `alice` internal (supplier 1 when she asks as one), `partner-7` and
/// `partner-9` suppliers, `limited-…` callers within quotas (two unfinished exports, three a
/// day, 1,000 bytes a day, two lookups a second), `ops` an admin, `vip` of a group with
/// twice the turns for warehouse slots, `crew-*` of a group whose callers share their turns,
/// anyone else nothing. Only `partner-7` may deliver into a bucket: `partner-7-feed`, under
/// `inbound/`.
pub const WORLD_POLICY: &str = r#"
[[caller]]
owner = "alice"
groups = ["internal"]
attributes = { supplier = "1" }

[[caller]]
owner = "partner-*"
groups = ["suppliers"]

[[caller]]
owner = "partner-7"
attributes = { supplier = "7" }
deliver_to = ["s3://partner-7-feed/inbound/"]

[[caller]]
owner = "partner-9"
attributes = { supplier = "9" }

[[group]]
name = "limited"
quotas = { unfinished_exports = 2, exports_per_day = 3, bytes_per_day = 1000, lookups_per_second = 2, lookup_burst = 2 }

[[caller]]
owner = "limited-*"
groups = ["limited"]

[[group]]
name = "ops"
admin = true

[[caller]]
owner = "ops"
groups = ["ops"]

[[group]]
name = "favoured"
priority = 2

[[caller]]
owner = "vip"
groups = ["favoured"]

[[group]]
name = "crew"
share_turns = true

[[caller]]
owner = "crew-*"
groups = ["crew"]
"#;

pub const RESULTS_BUCKET: &str = "results";
/// What the world's statements are named after, before the request id.
pub const STATEMENT_PREFIX: &str = "world:";
pub const DOWNLOADS_BUCKET: &str = "downloads";
/// The world's smallest upload part, and the part size its poller packages with.
pub const WORLD_PART_SIZE: usize = 4 * 1024;
/// Where mail goes when a request names no allowed address.
pub const DEFAULT_RECIPIENT: &str = "ops@example.com";

impl Default for World {
    fn default() -> Self {
        World::new()
    }
}

impl World {
    pub fn new() -> World {
        World::with_settings(|_| {})
    }

    /// A world whose poller settings `configure` changes first.
    pub fn with_settings(configure: impl FnOnce(&mut DeliverySettings)) -> World {
        World::build(configure, |_| {}, AdmissionSettings::default())
    }

    /// A world whose poller packages as `configure` says.
    pub fn with_packaging(configure: impl FnOnce(&mut PackagingSettings)) -> World {
        World::build(|_| {}, configure, AdmissionSettings::default())
    }

    /// A world whose warehouse runs at most `slots` of its statements at once (None: any).
    pub fn with_slots(slots: Option<u32>) -> World {
        World::build(|_| {}, |_| {}, AdmissionSettings { slots })
    }

    fn build(
        configure: impl FnOnce(&mut DeliverySettings),
        packaging: impl FnOnce(&mut PackagingSettings),
        admission: AdmissionSettings,
    ) -> World {
        let clock = Arc::new(ManualClock::at(1_800_000_000_000));
        let dyn_clock: Arc<dyn Clock> = clock.clone();
        let catalog = Arc::new(
            Catalog::from_sources([
                ("things.sql", THINGS),
                ("supplier_things.sql", SUPPLIER_THINGS),
                ("internal_things.sql", INTERNAL_THINGS),
                ("supplier_shipments.sql", SUPPLIER_SHIPMENTS),
            ])
            .expect("the world's catalogue"),
        );
        let control = Arc::new(MemoryControlTable::default());
        let queue = Arc::new(MemoryQueue::new(dyn_clock.clone()));
        let warehouse = Arc::new(FakeWarehouse::default());
        let objects = Arc::new(MemoryObjectStore::default());
        // Parts of a few KiB, so that small archives still take several.
        *objects.min_part_size.lock().expect("part size lock") = WORLD_PART_SIZE;
        let mailer = Arc::new(FakeMailer::default());
        let webhooks = Arc::new(RecordedWebhooks::default());
        let audit = Arc::new(MemoryAudit::default());
        let mut unload = UnloadSettings::new(RESULTS_BUCKET, STATEMENT_PREFIX);
        unload.iam_role = "arn:aws:iam::123456789012:role/unload".into();
        let mut settings = Settings::new(
            unload,
            DeliverySettings::new(
                DOWNLOADS_BUCKET,
                MailSettings {
                    allowed_recipients: vec!["@example.com".into()],
                    default_recipients: vec![DEFAULT_RECIPIENT.into()],
                },
            ),
        );
        // Signed with a key of the world's own; the receivers are fakes, anywhere.
        settings.delivery.webhooks = crate::settings::WebhookSettings {
            reach: crate::webhook::Reach::ANYWHERE,
            keys: Some(crate::webhook::SigningKeys {
                current: WORLD_WEBHOOK_KEY.to_vec(),
                previous: None,
            }),
        };
        configure(&mut settings.delivery);
        settings.packaging = PackagingSettings {
            part_size: WORLD_PART_SIZE,
            threads: 2,
            ..PackagingSettings::default()
        };
        packaging(&mut settings.packaging);
        settings.retry = RetrySettings {
            first_delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(900),
        };
        settings.admission = admission;
        let Services {
            submissions,
            subscriptions,
            queries,
            lookups,
            processor,
            poller,
        } = Services::new(
            &Ports {
                catalog,
                policy: AccessPolicy::parse(WORLD_POLICY).expect("the world's policy"),
                attributes: None,
                control: control.clone(),
                answers: control.clone(),
                ledger: control.clone(),
                usage: control.clone(),
                audit: audit.clone(),
                subscriptions: control.clone(),
                queue: queue.clone(),
                warehouse: warehouse.clone(),
                objects: objects.clone(),
                mailer: mailer.clone(),
                webhooks: webhooks.clone(),
                clock: dyn_clock,
            },
            &settings,
        );
        World {
            clock,
            control,
            queue,
            warehouse,
            objects,
            mailer,
            webhooks,
            audit,
            submissions,
            subscriptions,
            processor,
            poller,
            queries,
            lookups,
            max_receives: 5,
            visibility: Duration::from_secs(60),
        }
    }

    /// Submits `body` (a `POST /exports` body) as `owner`.
    pub async fn submit(&self, owner: &str, body: serde_json::Value) -> Result<String, ApiError> {
        let request = ExportRequest::read(body)?;
        let submitted = self
            .submissions
            .submit(&Owner(owner.into()), request, None)
            .await?;
        Ok(submitted.request_id)
    }

    /// The job as the control table holds it.
    pub async fn job(&self, request_id: &str) -> Job {
        self.control
            .jobs()
            .into_iter()
            .find(|j| j.request_id == request_id)
            .unwrap_or_else(|| panic!("no job {request_id}"))
    }

    /// The steps of the job's history, in order.
    pub async fn steps(&self, request_id: &str) -> Vec<String> {
        super::conformance::steps(self.control.as_ref(), request_id).await
    }

    fn consumer(&self, queue: QueueName) -> &dyn Consumer {
        match queue {
            QueueName::Requests => self.processor.as_ref(),
            QueueName::Polls => self.poller.as_ref(),
        }
    }

    /// Delivers every message of `queue` visible now, one after another, and acknowledges or
    /// releases each as the outcome says.
    pub async fn deliver(&self, queue: QueueName) -> Vec<Delivered> {
        let mut outcomes = Vec::new();
        for message in self.queue.receive(queue, self.visibility) {
            let outcome = consume(
                self.consumer(queue),
                &message.body,
                message.receives,
                self.max_receives,
                None,
            )
            .await;
            self.settle_message(message.id, &outcome);
            outcomes.push(outcome);
        }
        outcomes
    }

    /// Delivers every message of `queue` visible now all at once, as one batch handled
    /// concurrently: duplicates race each other.
    pub async fn deliver_at_once(&self, queue: QueueName) -> Vec<Delivered> {
        let messages = self.queue.receive(queue, self.visibility);
        let outcomes = futures::future::join_all(messages.iter().map(|m| {
            consume(
                self.consumer(queue),
                &m.body,
                m.receives,
                self.max_receives,
                None,
            )
        }))
        .await;
        for (message, outcome) in messages.iter().zip(&outcomes) {
            self.settle_message(message.id, outcome);
        }
        outcomes
    }

    fn settle_message(&self, id: u64, outcome: &Delivered) {
        match outcome {
            // A retry's copy is already on the queue.
            Delivered::Done | Delivered::Requeued(_) => self.queue.ack(id),
            // Visible again at once: the tests move the clock themselves.
            Delivered::Retry(_) => self.queue.release(id, Duration::ZERO),
            // What the queue's redrive does after the last receive.
            Delivered::GaveUp(_) => self.queue.ack(id),
        }
    }

    /// Runs both queues until nothing is left on them, moving the clock to each next message
    /// when none is visible. Panics, with what is left, if that takes more than `max_rounds`.
    pub async fn run_until_quiet(&self, max_rounds: usize) {
        for _ in 0..max_rounds {
            if self.queue.is_empty() {
                return;
            }
            let requests = self.deliver(QueueName::Requests).await;
            let polls = self.deliver(QueueName::Polls).await;
            if requests.is_empty() && polls.is_empty() {
                if let Some(at) = self.queue.next_visible_at() {
                    self.clock.set(at.max(self.clock.now()));
                }
            }
        }
        panic!(
            "the queues did not drain in {max_rounds} rounds: requests {:?}, polls {:?}",
            self.queue.waiting(QueueName::Requests),
            self.queue.waiting(QueueName::Polls)
        );
    }

    /// Where UNLOAD writes the output of the job's first start.
    pub fn job_prefix(&self, request_id: &str) -> ObjectRef {
        self.processor.unload.job_prefix(request_id)
    }

    /// The statement of the job's latest start, if any.
    pub fn statement_of(&self, request_id: &str) -> Option<String> {
        let unload = &self.processor.unload;
        self.warehouse
            .executions()
            .iter()
            .rev()
            .find(|r| {
                unload
                    .attempt_of(&r.name)
                    .is_some_and(|(id, _)| id == request_id)
            })
            .and_then(|r| self.warehouse.statement_named(&r.name))
    }

    /// The job and attempt a statement was started for.
    fn attempt_of_statement(&self, statement: &str) -> (String, u32) {
        let name = self
            .warehouse
            .name_of(statement)
            .unwrap_or_else(|| panic!("no statement {statement}"));
        let (request_id, attempt) = self
            .processor
            .unload
            .attempt_of(&name)
            .unwrap_or_else(|| panic!("statement {statement} is not a job's: {name}"));
        (request_id.to_owned(), attempt)
    }

    /// [`Self::finish`] for the statement of the job's latest start.
    pub fn finish_statement(&self, request_id: &str, parts: &[&[&str]]) -> String {
        let statement = self
            .statement_of(request_id)
            .unwrap_or_else(|| panic!("no statement was started for {request_id}"));
        self.finish(&statement, parts);
        statement
    }

    /// What a finished UNLOAD leaves under its attempt's prefix: one CSV part per item of
    /// `parts` (each a header and its rows) and a verbose manifest counting as Redshift's does
    /// with HEADER (each file's header line included); the statement is FINISHED.
    pub fn finish(&self, statement: &str, parts: &[&[&str]]) {
        let (request_id, attempt) = self.attempt_of_statement(statement);
        let prefix = self.processor.unload.attempt_prefix(&request_id, attempt);
        let mut entries = Vec::new();
        let mut total_rows = 0;
        let mut total_lines = 0;
        for (index, rows) in parts.iter().enumerate() {
            let object = ObjectRef::new(
                &prefix.bucket,
                format!("{}0000_part_{index:02}", prefix.key),
            );
            let body: String = std::iter::once("id,name")
                .chain(rows.iter().copied())
                .map(|line| format!("{line}\n"))
                .collect();
            entries.push(serde_json::json!({
                "url": object.s3_url(),
                "meta": {"content_length": body.len(), "record_count": rows.len() + 1}
            }));
            total_rows += rows.len() as u64;
            total_lines += rows.len() as u64 + 1;
            self.objects.insert(&object, body);
        }
        let manifest = serde_json::json!({
            "entries": entries,
            "meta": {"record_count": total_lines}
        });
        self.objects.insert(
            &ObjectRef::new(&prefix.bucket, format!("{}manifest", prefix.key)),
            manifest.to_string(),
        );
        self.warehouse
            .set_state(statement, StatementState::Finished, Some(total_rows), None);
    }

    /// The status-change event of the statement of the job's latest start.
    pub async fn announce(&self, request_id: &str) {
        let statement = self
            .statement_of(request_id)
            .expect("a statement to announce");
        self.announce_statement(&statement).await;
    }

    /// A statement's status-change event, as the EventBridge rule puts it on the polls queue.
    pub async fn announce_statement(&self, statement: &str) {
        let state = crate::ports::Warehouse::describe(self.warehouse.as_ref(), statement)
            .await
            .expect("the statement exists")
            .state;
        let event = Message::Poll(PollMessage::StatementEvent(StatementEvent {
            statement_id: statement.to_owned(),
            statement_name: self.warehouse.name_of(statement),
            state: state.as_str().to_owned(),
            rows: None,
        }));
        self.queue
            .send(&event, Duration::ZERO)
            .await
            .expect("the event is queued");
    }
}
