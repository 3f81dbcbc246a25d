//! The ports: what the services need from the outside world. Each has an AWS adapter and a
//! local (embedded) adapter; nothing in this crate knows which one it is talking to.

use crate::catalog::BoundSelect;
use crate::domain::{
    Job, JobEvent, JobStatus, JobUpdate, Millis, ObjectRef, Owner, Subscription, Transition,
};
use crate::messages::Message;
use crate::page::{JobPage, PageToken};
use async_trait::async_trait;
use bytes::Bytes;
pub use export_api::ResultColumn;
use futures::stream::BoxStream;
use std::time::Duration;

/// How an adapter call failed, in the terms the services act on.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The dependency is down or timed out: retry later (HTTP 503).
    #[error("dependency unavailable: {0}")]
    Unavailable(String),
    /// The dependency refused the call for its rate (a quota, throttling) after the SDK's own
    /// retries: retry later (HTTP 503). It says nothing of the work asked about, so a running
    /// statement's follow-up is not counted as a failed try for it.
    #[error("dependency throttled: {0}")]
    Throttled(String),
    /// The thing asked for does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The dependency refused the request itself; retrying the same request will not help.
    #[error("{0}")]
    Rejected(String),
}

pub type PortResult<T> = Result<T, PortError>;

/// A caller's `Idempotency-Key`, scoped to the caller, with a digest of the request it named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub owner: Owner,
    pub key: String,
    pub request_digest: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CreateOutcome {
    Created,
    /// The key was used before: by this request (`same_request`) or by a different one.
    KeyUsed {
        request_id: String,
        same_request: bool,
    },
}

/// The control table: jobs, their events and idempotency keys.
#[async_trait]
pub trait ControlTable: Send + Sync {
    /// Records a new job with its first event and, if given, its idempotency key — all or
    /// nothing. A key already used returns [`CreateOutcome::KeyUsed`] and writes nothing.
    async fn create_job(
        &self,
        job: &Job,
        event: &JobEvent,
        key: Option<&IdempotencyKey>,
    ) -> PortResult<CreateOutcome>;

    /// Whether `key` was used: [`CreateOutcome::KeyUsed`] naming the job, or None. Reads
    /// only, so a replay can be answered before anything is counted or written.
    async fn key_used(&self, key: &IdempotencyKey) -> PortResult<Option<CreateOutcome>>;

    /// Removes a job that never reached the queue, with its events and key.
    async fn delete_job(&self, request_id: &str, key: Option<&IdempotencyKey>) -> PortResult<()>;

    async fn get_job(&self, request_id: &str) -> PortResult<Option<Job>>;

    /// Makes the move only if the job is still where it starts (`transition.from()`), applying
    /// `update` and appending `event` in the same write; the job's `updated_at` becomes
    /// `event.at`. Returns false (and writes nothing) otherwise.
    async fn transition(
        &self,
        request_id: &str,
        transition: Transition,
        update: &JobUpdate,
        event: &JobEvent,
    ) -> PortResult<bool>;

    async fn append_event(&self, request_id: &str, event: &JobEvent) -> PortResult<()>;

    /// The job's history, oldest first.
    async fn events(&self, request_id: &str) -> PortResult<Vec<JobEvent>>;

    /// Sets the job's `notified_at` if it is not yet set; true only for the first caller, so
    /// a redelivered message cannot send the same email twice.
    async fn claim_notification(&self, request_id: &str, at: Millis) -> PortResult<bool>;

    /// Undoes a claim whose email could not be sent, so a retry can send it, and records the
    /// attempt as the job's last change (`updated_at = at`): the sweep then waits its full
    /// delay before it looks at the job again.
    async fn release_notification(&self, request_id: &str, at: Millis) -> PortResult<()>;

    /// Jobs not yet settled — still in flight, or ended without their notice sent — whose last
    /// change is older than `updated_before`, oldest first, at most `limit`. Cancelled jobs
    /// and notified ones are settled.
    async fn unsettled_jobs(&self, updated_before: Millis, limit: usize) -> PortResult<Vec<Job>>;

    /// Records `at` as the job's last change if it is still `status`: the heartbeat of a long
    /// step, which keeps the sweep and the packaging lease off it. False if it moved on.
    async fn touch(&self, request_id: &str, status: JobStatus, at: Millis) -> PortResult<bool>;

    /// Saves the job's packaging checkpoint if the job is still PACKAGING and the checkpoint
    /// it has is still number `expected_seq` (0: none yet), recording `at` as its last change;
    /// false, writing nothing, otherwise: another packager has moved on.
    async fn save_checkpoint(
        &self,
        request_id: &str,
        expected_seq: u64,
        checkpoint: &SavedCheckpoint,
        at: Millis,
    ) -> PortResult<bool>;

    /// The job's packaging checkpoint, if it has one.
    async fn checkpoint(&self, request_id: &str) -> PortResult<Option<SavedCheckpoint>>;

    /// Forgets the job's packaging checkpoint (its archive is written, or given up).
    async fn delete_checkpoint(&self, request_id: &str) -> PortResult<()>;

    /// The owner's jobs, newest first, `limit` at a time, starting just after `after`.
    async fn list_jobs(
        &self,
        owner: &Owner,
        limit: usize,
        after: Option<&PageToken>,
    ) -> PortResult<JobPage>;
}

/// Where a job's packaging stands, as the control table keeps it: opaque to the table (the
/// packager writes and reads `body`), numbered so that only one packager's next save wins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedCheckpoint {
    pub seq: u64,
    pub body: String,
}

/// The two queues behind the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QueueName {
    /// New jobs, for the processor.
    Requests,
    /// Statements to follow, for the poller (own polls and statement events).
    Polls,
}

impl QueueName {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueName::Requests => "requests",
            QueueName::Polls => "polls",
        }
    }
}

/// Sending side of the queues. Receiving belongs to whatever runs the workers (the Lambda
/// event source on AWS, the local runtime's loop), not to the services.
#[async_trait]
pub trait QueueSender: Send + Sync {
    /// Puts `message` on its queue ([`Message::queue`]), visible after `delay`.
    async fn send(&self, message: &Message, delay: Duration) -> PortResult<()>;
}

/// A statement for the warehouse, as the Data API's `ExecuteStatement` takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatementRequest {
    pub sql: String,
    /// The same token always yields the same statement: a redelivered request starts nothing new.
    pub client_token: String,
    /// Carried into the statement's status-change events; the request id.
    pub name: String,
}

/// The Data API's statement states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatementState {
    Submitted,
    Picked,
    Started,
    Finished,
    Failed,
    Aborted,
}

impl StatementState {
    pub fn parse(s: &str) -> Option<StatementState> {
        Some(match s {
            "SUBMITTED" => StatementState::Submitted,
            "PICKED" => StatementState::Picked,
            "STARTED" => StatementState::Started,
            "FINISHED" => StatementState::Finished,
            "FAILED" => StatementState::Failed,
            "ABORTED" => StatementState::Aborted,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StatementState::Submitted => "SUBMITTED",
            StatementState::Picked => "PICKED",
            StatementState::Started => "STARTED",
            StatementState::Finished => "FINISHED",
            StatementState::Failed => "FAILED",
            StatementState::Aborted => "ABORTED",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatementStatus {
    pub id: String,
    pub state: StatementState,
    /// Rows the statement produced (UNLOAD: rows written), once finished.
    pub rows: Option<u64>,
    pub error: Option<String>,
}

/// A lookup's answer as kept for every instance of the read path: its body (as the lookup
/// service wrote it), when it was read from the warehouse, and until when it may be served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedAnswer {
    pub body: String,
    pub stored_at: Millis,
    pub expires_at: Millis,
}

/// The cache lookups share across instances: on AWS items of the control table with a TTL,
/// locally rows of its SQLite file. An answer past its `expires_at` is never returned, even
/// while the store has not yet removed it.
#[async_trait]
pub trait AnswerCache: Send + Sync {
    /// The answer under `key`, unless there is none or it expired by `now`.
    async fn cached_answer(&self, key: &str, now: Millis) -> PortResult<Option<CachedAnswer>>;
    /// Keeps `answer` under `key`, in place of any other.
    async fn cache_answer(&self, key: &str, answer: &CachedAnswer) -> PortResult<()>;
}

/// The rows a SELECT returned, each value typed by its column: integers and floating-point
/// numbers as JSON numbers, booleans as booleans, NULL as null, and everything else
/// (decimals, dates, timestamps, text) as strings, so no precision is lost.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ResultSet {
    pub columns: Vec<ResultColumn>,
    pub rows: Vec<Vec<serde_json::Value>>,
}

/// How a SELECT ended.
#[derive(Clone, Debug, PartialEq)]
pub enum SelectOutcome {
    Rows(ResultSet),
    /// Still running when the time allowed ran out; it is cancelled.
    TimedOut {
        statement_id: String,
    },
    /// The warehouse refused or failed it, with its error.
    Failed {
        statement_id: String,
        error: String,
    },
}

/// The warehouse, spoken to the way the Redshift Data API is.
#[async_trait]
pub trait Warehouse: Send + Sync {
    /// Starts the statement and returns its id without waiting for it.
    async fn execute(&self, request: &StatementRequest) -> PortResult<String>;
    async fn describe(&self, statement_id: &str) -> PortResult<StatementStatus>;
    /// Asks the statement to stop; false if it had already finished.
    async fn cancel(&self, statement_id: &str) -> PortResult<bool>;
    /// Runs a SELECT with its values bound as parameters and waits for its rows, at most
    /// `timeout`.
    async fn select(&self, select: &BoundSelect, timeout: Duration) -> PortResult<SelectOutcome>;
}

pub type ByteStream = BoxStream<'static, PortResult<Bytes>>;

/// The object store: where UNLOAD writes its parts and where archives are served from.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    async fn get(&self, object: &ObjectRef) -> PortResult<ByteStream>;
    async fn put(&self, object: &ObjectRef, body: Bytes, content_type: &str) -> PortResult<()>;
    /// The object's size, or None if there is no such object (S3's `HeadObject`).
    async fn size_of(&self, object: &ObjectRef) -> PortResult<Option<u64>>;
    /// Removes the object; removing one that is not there succeeds, as on S3.
    async fn delete(&self, object: &ObjectRef) -> PortResult<()>;

    /// Starts a multipart upload of `object` and returns its id. The parts live with the
    /// store, not with the caller, so another process can carry the upload on.
    async fn create_multipart(&self, object: &ObjectRef, content_type: &str) -> PortResult<String>;
    /// Uploads part `number` (1 to 10,000); every part but the last must be at least 5 MiB
    /// when the upload completes. `NotFound` if the upload was completed or aborted.
    async fn upload_part(
        &self,
        object: &ObjectRef,
        upload_id: &str,
        number: u32,
        body: Bytes,
    ) -> PortResult<UploadedPart>;
    /// Makes the object of `parts`, in order. `NotFound` if the upload is no longer there.
    async fn complete_multipart(
        &self,
        object: &ObjectRef,
        upload_id: &str,
        parts: &[UploadedPart],
    ) -> PortResult<()>;
    /// Drops the upload and its parts.
    async fn abort_multipart(&self, object: &ObjectRef, upload_id: &str) -> PortResult<()>;
    /// Parts 1 to `count` of the upload as the store keeps them, numbers, ETags and checksums
    /// ("ListParts"), so a packager carrying an upload on needs no list of its own; a part
    /// numbered past `count` is left out. `NotFound` if the upload, or one of the parts, is
    /// no longer there.
    async fn list_parts(
        &self,
        object: &ObjectRef,
        upload_id: &str,
        count: u32,
    ) -> PortResult<Vec<UploadedPart>>;

    /// Copies `from` to `to`, which may be in another account's bucket: the copy belongs to
    /// the destination bucket's owner (S3: `x-amz-acl: bucket-owner-full-control`), so a
    /// partner's bucket never holds an object its owner cannot read. `NotFound` if `from` is
    /// not there; `Rejected` if the store may not write to `to`.
    async fn copy(&self, from: &ObjectRef, to: &ObjectRef) -> PortResult<()>;

    /// A URL anyone holding it can GET until it expires.
    async fn presign_get(
        &self,
        object: &ObjectRef,
        expires_in: Duration,
        file_name: &str,
    ) -> PortResult<PresignedUrl>;
}

/// A part of a multipart upload, as completing the upload must name it: its number, its ETag
/// and, where the store keeps one, its checksum ("CompleteMultipartUpload").
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UploadedPart {
    #[serde(rename = "n")]
    pub number: u32,
    #[serde(rename = "e")]
    pub etag: String,
    /// The part's CRC-32 where the store sent one; completing must repeat it.
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub checksum_crc32: Option<String>,
}

/// A presigned GET, and when it stops working if that is before `expires_in` runs out: a URL
/// signed with temporary credentials "expires when the token expires, even if the URL was
/// created with a later expiration time" ("Sharing objects with presigned URLs", Amazon S3
/// User Guide).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresignedUrl {
    pub url: String,
    /// When the credentials that signed it expire, if they do and the signer knows.
    pub signer_expires_at: Option<crate::domain::Millis>,
}

/// One message for the mailer, with both a plain-text and an HTML body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email {
    pub to: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// For the log line and headers; the job this mail is about.
    pub request_id: String,
}

#[async_trait]
pub trait Mailer: Send + Sync {
    /// Sends the mail and returns the message id the mailer assigned.
    async fn send(&self, email: &Email) -> PortResult<String>;
}

/// A signed webhook notice to POST.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookPost {
    pub url: String,
    /// The JSON notice, exactly as signed.
    pub body: Bytes,
    /// The `Export-Signature` header's value.
    pub signature: String,
    /// The job it is about, sent as `Export-Request-Id` and used for the log line.
    pub request_id: String,
}

#[async_trait]
pub trait Webhooks: Send + Sync {
    /// POSTs the notice (no redirect followed) and answers the receiver's HTTP status;
    /// `Transient` if no answer came, `Rejected` if the URL resolves to an address the
    /// deployment does not deliver to.
    async fn post(&self, post: &WebhookPost) -> PortResult<u16>;
}

/// S3's rules for multipart uploads, for the stand-ins that keep uploads themselves (the local
/// store, the in-memory fake), so they refuse what S3 would.
pub mod multipart {
    use super::{PortError, PortResult, UploadedPart};
    use sha2::Digest;

    /// The smallest part but for the last ("Amazon S3 multipart upload limits": 5 MiB).
    pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;

    /// Part numbers run from 1 to 10,000 ("UploadPart").
    pub fn check_number(number: u32) -> PortResult<()> {
        if (1..=10_000).contains(&number) {
            Ok(())
        } else {
            Err(PortError::Rejected(format!(
                "InvalidArgument: part number {number} is not from 1 to 10,000"
            )))
        }
    }

    /// What listing parts 1 to `count` answers when part `number` is not there.
    pub fn missing_part(number: u32, count: u32) -> PortError {
        PortError::NotFound(format!(
            "part {number} of the {count} the upload should have is not there"
        ))
    }

    /// A stand-in's ETag for a part: quoted hex, as S3's, of the first half of its SHA-256.
    pub fn etag(body: &[u8]) -> String {
        format!("\"{}\"", hex::encode(&sha2::Sha256::digest(body)[..16]))
    }

    /// Checks the `index`-th part named to complete an upload, whose stored body (if there
    /// is one under its number) is `stored` ("CompleteMultipartUpload": `InvalidPart`,
    /// `InvalidPartOrder`, `EntityTooSmall`).
    pub fn check_part(
        parts: &[UploadedPart],
        index: usize,
        stored: Option<&[u8]>,
        min_part_size: usize,
    ) -> PortResult<()> {
        let part = &parts[index];
        if index > 0 && parts[index - 1].number >= part.number {
            return Err(PortError::Rejected(
                "InvalidPartOrder: the parts must be named in ascending order".into(),
            ));
        }
        let Some(body) = stored.filter(|b| etag(b) == part.etag) else {
            return Err(PortError::Rejected(format!(
                "InvalidPart: part {} was not uploaded with that ETag",
                part.number
            )));
        };
        if index + 1 < parts.len() && body.len() < min_part_size {
            return Err(PortError::Rejected(format!(
                "EntityTooSmall: part {} is under the smallest part size",
                part.number
            )));
        }
        Ok(())
    }
}

/// A job in line for a warehouse slot. Slots go by `turn` (the core's fair-share order),
/// then to the oldest job (`queued_at`), then by id, so every store orders the line alike.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaitingJob {
    pub request_id: String,
    /// Whose turns it takes: its caller's owner, or a group's key when the group's callers
    /// share their turns (see `service::admission::turns_of`).
    pub turns_of: String,
    pub turn: u64,
    pub queued_at: Millis,
}

/// A warehouse slot and the job whose statement holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotHolder {
    pub slot: u32,
    pub request_id: String,
    pub since: Millis,
}

/// The admission ledger: which job holds each of the warehouse's slots, and the line of jobs
/// waiting for one. It keeps no rule of its own: how many slots there are, whose turn comes
/// next and when a slot is freed are the core's to say (`service::Admission`); every write
/// here is conditional, so a slot has at most one holder however many instances race for it.
#[async_trait]
pub trait AdmissionLedger: Send + Sync {
    /// Every slot held now, in slot order.
    async fn holders(&self) -> PortResult<Vec<SlotHolder>>;

    /// The turn the line has reached (the latest turn admitted; 0 at first) and the last
    /// turn `turns_of` was given (0 if none).
    async fn turns(&self, turns_of: &str) -> PortResult<(u64, u64)>;

    /// Puts the job in line and records `entry.turn` as its `turns_of`'s last turn if it is
    /// later. A job already in line keeps its place: its entry is returned, nothing written;
    /// a job that holds a slot is not put in line. Answers the entry and whether this call
    /// put it in line.
    async fn join(&self, entry: &WaitingJob) -> PortResult<(WaitingJob, bool)>;

    /// The first `limit` jobs in line, in order.
    async fn first_waiting(&self, limit: usize) -> PortResult<Vec<WaitingJob>>;

    /// Gives `slot` to the job of `entry` if the slot is free and the job is still in line,
    /// taking it out of line and moving the line's turn up to the entry's; false, writing
    /// nothing, if either has changed.
    async fn admit(&self, slot: u32, entry: &WaitingJob, at: Millis) -> PortResult<bool>;

    /// Frees `slot` if the job `request_id` holds it; false otherwise.
    async fn release(&self, slot: u32, request_id: &str) -> PortResult<bool>;

    /// Takes the job out of line, if it is there.
    async fn leave(&self, request_id: &str) -> PortResult<()>;

    /// How many jobs are ahead of this one in line (0: it is next); None if it is not in line.
    async fn place(&self, request_id: &str) -> PortResult<Option<u64>>;

    /// Takes one of `slots` lookup slots for `holder` until `until`: a lease, so a holder that
    /// dies frees its slot when the lease runs out. A slot is free if nobody holds it or its
    /// lease ended before `now`. Answers the slot taken, or None if all are held.
    async fn take_lookup_slot(
        &self,
        slots: u32,
        holder: &str,
        now: Millis,
        until: Millis,
    ) -> PortResult<Option<u32>>;

    /// Frees lookup slot `slot` if `holder` holds it.
    async fn free_lookup_slot(&self, slot: u32, holder: &str) -> PortResult<()>;
}

/// An export counted against its owner's quotas, on the day (UTC day number since the epoch)
/// it was submitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportCharge {
    pub owner: Owner,
    pub request_id: String,
    pub day: i64,
    /// When it was charged.
    pub at: Millis,
}

/// The limits a charge must stay within; `None` is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportLimits {
    pub unfinished: Option<u64>,
    pub per_day: Option<u64>,
}

/// Which limit a charge would have passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverLimit {
    Unfinished,
    PerDay,
}

/// A caller's use, as the usage ledger counts it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Exports charged and not yet ended.
    pub unfinished: u64,
    /// Exports charged on the day asked about.
    pub exports: u64,
    /// Bytes of exports that finished on the day asked about.
    pub bytes: u64,
}

/// What each caller has used of its quotas: unfinished exports, the day's exports and bytes,
/// and the state of its lookups' rate. It keeps no rule: which limits apply is the core's
/// (`service::Quotas`); every write is conditional or transactional, so a limit holds however
/// many instances charge at once, and each job is counted once.
#[async_trait]
pub trait UsageLedger: Send + Sync {
    /// Counts a new export: one more unfinished (if the owner has fewer than
    /// `limits.unfinished`) and one more on its day (if fewer than `limits.per_day`), both or
    /// neither. Answers the limit that stood in the way, if one did. A job charged already is
    /// not charged again.
    async fn charge_export(
        &self,
        charge: &ExportCharge,
        limits: &ExportLimits,
    ) -> PortResult<Option<OverLimit>>;

    /// Undoes the charge of an export that was never stored: unfinished and its day's count.
    /// Nothing if it is not charged.
    async fn refund_export(&self, charge: &ExportCharge) -> PortResult<()>;

    /// The job charged as `charge` has ended: it is no longer unfinished (its day's count
    /// stays). Nothing if it is not counted unfinished.
    async fn end_export(&self, charge: &ExportCharge) -> PortResult<()>;

    /// Adds the bytes of the job's result to `day`'s, once per job.
    async fn add_bytes(
        &self,
        owner: &Owner,
        request_id: &str,
        day: i64,
        bytes: u64,
    ) -> PortResult<()>;

    /// The owner's use: unfinished now, and `day`'s exports and bytes.
    async fn usage(&self, owner: &Owner, day: i64) -> PortResult<Usage>;

    /// Exports counted unfinished, of every owner, as they were charged, in the order they
    /// were (`at`, then request id), starting after `after`, at most `limit`: the sweep
    /// ends the ones whose jobs have ended.
    async fn unfinished_exports(
        &self,
        after: Option<&ExportCharge>,
        limit: usize,
    ) -> PortResult<Vec<ExportCharge>>;

    /// A rate's state under `key` (the time its next request would be on schedule, the
    /// "theoretical arrival time" of the generic cell rate algorithm), if it has one.
    async fn rate_state(&self, key: &str) -> PortResult<Option<Millis>>;

    /// Replaces the rate's state with `next` if it is still `expected`; false, writing
    /// nothing, if another request changed it first. The state may be forgotten after
    /// `expires_at`.
    async fn set_rate_state(
        &self,
        key: &str,
        expected: Option<Millis>,
        next: Millis,
        expires_at: Millis,
    ) -> PortResult<bool>;
}

/// The audit log: where the record of every read goes (`service::Audit` says what is
/// recorded and when). Appends only; reading it back is the auditors' (and
/// `redshift-export audit`'s) business, not the services'.
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Keeps `record`, durably enough that an act recorded and then answered is on record.
    async fn record(&self, record: &export_api::AuditRecord) -> PortResult<()>;
}

/// Subscriptions and their runs.
#[async_trait]
pub trait SubscriptionStore: Send + Sync {
    /// Records a new subscription.
    async fn create_subscription(&self, subscription: &Subscription) -> PortResult<()>;
    /// The owner's subscription `id`; None for another owner's.
    async fn subscription(&self, owner: &Owner, id: &str) -> PortResult<Option<Subscription>>;
    /// The owner's subscriptions, oldest first.
    async fn subscriptions(&self, owner: &Owner) -> PortResult<Vec<Subscription>>;
    /// Replaces the subscription if it is still at `subscription.version - 1`; false (and
    /// nothing written) if it changed or is gone.
    async fn replace_subscription(&self, subscription: &Subscription) -> PortResult<bool>;
    /// Removes the owner's subscription `id` and its runs; false if there was none.
    async fn delete_subscription(&self, owner: &Owner, id: &str) -> PortResult<bool>;
    /// Subscriptions not paused whose next run is at or before `now`, earliest first, at most
    /// `limit`.
    async fn due_subscriptions(&self, now: Millis, limit: usize) -> PortResult<Vec<Subscription>>;
    /// Records a run (again: the same `scheduled_at` replaces it).
    async fn record_run(&self, id: &str, run: &export_api::SubscriptionRun) -> PortResult<()>;
    /// The subscription's runs, newest first, at most `limit`.
    async fn runs(&self, id: &str, limit: usize) -> PortResult<Vec<export_api::SubscriptionRun>>;
}
