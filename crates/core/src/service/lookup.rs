//! Lookups: small answers at once, for the catalogue entries that offer them. A lookup is
//! validated as an export is, run as a SELECT with its values bound as parameters, and its
//! answer cached at two levels: in this process (bounded, checked first) and in the shared
//! cache every instance reads (the control table), so a cold instance still hits. Identical
//! lookups that miss together run one statement between them.

use super::audit::Asked;
use super::local_answers::{resident_size, LocalAnswers};
use crate::access::{Access, BoundParams, EmptyText, Principal};
use crate::catalog::Export;
use crate::clock::Clock;
use crate::domain::Millis;
use crate::domain::Owner;
use crate::error::ApiError;
use crate::ports::{AnswerCache, CachedAnswer, ResultColumn, SelectOutcome, Warehouse};
use export_api::AuditKind;
use futures::future::{BoxFuture, FutureExt, Shared};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Lookup statements at once, by default: a few, beside the exports' five, so lookups stay
/// quick without taking the warehouse from the exports.
pub const DEFAULT_LOOKUP_SLOTS: u32 = 16;

/// The read path's tunables.
#[derive(Clone, Debug)]
pub struct LookupSettings {
    /// How long a lookup may wait for the warehouse before answering 504.
    pub timeout: Duration,
    /// Answers kept in this process, at most this many…
    pub local_entries: usize,
    /// …taking at most about this many bytes of memory (estimated from their cells and text):
    /// the function has the memory it was given, and one answer may be megabytes.
    pub local_bytes: usize,
    /// The largest answer the shared cache takes; a bigger one stays in this process only
    /// (a DynamoDB item holds at most 400 KB).
    pub shared_max_bytes: usize,
    /// Lookup statements running in the warehouse at once, across every instance, apart
    /// from the exports' slots (None: no limit). A lookup that finds them all taken answers
    /// 503 with `Retry-After`.
    pub slots: Option<u32>,
}

impl Default for LookupSettings {
    fn default() -> Self {
        LookupSettings {
            timeout: Duration::from_secs(10),
            local_entries: 1024,
            local_bytes: 32 * 1024 * 1024,
            shared_max_bytes: 300 * 1024,
            slots: Some(DEFAULT_LOOKUP_SLOTS),
        }
    }
}

/// A lookup's rows, as read from the warehouse.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub dataset: String,
    pub columns: Vec<ResultColumn>,
    pub rows: Vec<Vec<Value>>,
    /// When the warehouse answered.
    pub fetched_at: Millis,
    /// Until when it may be served from a cache.
    pub expires_at: Millis,
    /// The validator, worked out once per answer however often it is served.
    #[serde(skip)]
    etag: std::sync::OnceLock<String>,
}

impl Answer {
    pub fn new(
        dataset: String,
        columns: Vec<ResultColumn>,
        rows: Vec<Vec<Value>>,
        fetched_at: Millis,
        expires_at: Millis,
    ) -> Answer {
        Answer {
            dataset,
            columns,
            rows,
            fetched_at,
            expires_at,
            etag: std::sync::OnceLock::new(),
        }
    }

    /// A strong validator of the rows: the same rows, the same tag, whenever they were read.
    pub fn etag(&self) -> &str {
        self.etag.get_or_init(|| {
            let mut digest = Sha256::new();
            digest.update(self.dataset.as_bytes());
            digest.update(serde_json::to_vec(&(&self.columns, &self.rows)).unwrap_or_default());
            format!("\"{}\"", hex::encode(&digest.finalize()[..16]))
        })
    }

    /// Each row as an object keyed by column name.
    pub fn row_objects(&self) -> Vec<Map<String, Value>> {
        self.rows
            .iter()
            .map(|row| {
                self.columns
                    .iter()
                    .zip(row)
                    .map(|(c, v)| (c.name.clone(), v.clone()))
                    .collect()
            })
            .collect()
    }
}

/// What a lookup returns: the answer, and whether a cache supplied it.
#[derive(Clone, Debug)]
pub struct Looked {
    pub answer: Arc<Answer>,
    pub cached: bool,
}

type Pending = Shared<BoxFuture<'static, Result<Arc<Answer>, ApiError>>>;

/// The lookup service the read path (the `status` function, or the local stack) serves.
pub struct Lookups {
    /// The catalogue as each caller may see it: the one way to it from here.
    pub access: Arc<Access>,
    pub warehouse: Arc<dyn Warehouse>,
    pub shared: Arc<dyn AnswerCache>,
    pub clock: Arc<dyn Clock>,
    pub settings: LookupSettings,
    /// Each caller's lookups per second; none without it.
    pub quotas: Option<super::Quotas>,
    /// Who holds the lookups' slots (`settings.slots`); no limit without it.
    pub slots: Option<Arc<dyn crate::ports::AdmissionLedger>>,
    /// Where every lookup answered or refused is recorded.
    pub audit: Option<super::Audit>,
    local: Mutex<LocalAnswers>,
    in_flight: Mutex<HashMap<String, Pending>>,
}

impl Lookups {
    pub fn new(
        access: Arc<Access>,
        warehouse: Arc<dyn Warehouse>,
        shared: Arc<dyn AnswerCache>,
        clock: Arc<dyn Clock>,
        settings: LookupSettings,
    ) -> Lookups {
        let local = LocalAnswers::new(settings.local_entries, settings.local_bytes);
        Lookups {
            access,
            warehouse,
            shared,
            clock,
            settings,
            quotas: None,
            slots: None,
            audit: None,
            local: Mutex::new(local),
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    /// These lookups, each answer or refusal on record in `audit`.
    pub fn with_audit(mut self, audit: super::Audit) -> Lookups {
        self.audit = Some(audit);
        self
    }

    /// These lookups, their statements limited to `settings.slots` at once, counted in
    /// `ledger` across every instance.
    pub fn with_slots(mut self, ledger: Arc<dyn crate::ports::AdmissionLedger>) -> Lookups {
        self.slots = Some(ledger);
        self
    }

    /// These lookups, each taken from its caller's rate (`lookups_per_second`).
    pub fn with_quotas(mut self, quotas: super::Quotas) -> Lookups {
        self.quotas = Some(quotas);
        self
    }

    /// Takes the lookup from the caller's rate, once it is known to be one it may make.
    async fn take_turn(&self, principal: &Principal) -> Result<(), ApiError> {
        match &self.quotas {
            Some(quotas) => quotas.take_lookup(principal).await,
            None => Ok(()),
        }
    }

    /// The export `dataset` names, if `principal` may use it and it may be looked up.
    fn lookup_export(&self, principal: &Principal, dataset: &str) -> Result<&Export, ApiError> {
        let export = self.access.dataset(principal, dataset).ok_or_else(|| {
            self.access
                .unknown_dataset(principal, dataset, StatusCode::NOT_FOUND)
        })?;
        if export.lookup.is_none() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "lookup_not_offered",
                format!(
                    "dataset '{dataset}' is not offered for lookups; ask for it with POST /exports"
                ),
            )
            .with_field("dataset"));
        }
        Ok(export)
    }

    /// Looks `dataset` up for `owner` with `params` (JSON values, as an export takes them).
    /// `fresh` (`Cache-Control: no-cache`) skips the caches, though not a statement already
    /// running for the same lookup, and the answer it reads replaces the cached one.
    pub async fn lookup(
        &self,
        owner: &Owner,
        dataset: &str,
        params: &Map<String, Value>,
        fresh: bool,
    ) -> Result<Looked, ApiError> {
        let looked = async {
            let principal = self.access.principal(owner).await?;
            let export = self.lookup_export(&principal, dataset)?;
            let bound = self.access.bind(&principal, export, params)?;
            self.take_turn(&principal).await?;
            self.run_recorded(owner, export, bound, fresh).await
        }
        .await;
        self.record_refusal(owner, dataset, params, &looked).await;
        looked
    }

    /// [`Lookups::lookup`] with the parameters written as text (a query string's pairs).
    pub async fn lookup_text<'a>(
        &self,
        owner: &Owner,
        dataset: &str,
        pairs: impl IntoIterator<Item = (Cow<'a, str>, Cow<'a, str>)>,
        fresh: bool,
    ) -> Result<Looked, ApiError> {
        // What was asked, as text, for the record of a refusal.
        let pairs: Vec<(Cow<'a, str>, Cow<'a, str>)> = pairs.into_iter().collect();
        let looked = async {
            let principal = self.access.principal(owner).await?;
            let export = self.lookup_export(&principal, dataset)?;
            let bound =
                self.access
                    .bind_text(&principal, export, pairs.clone(), EmptyText::Empty)?;
            self.take_turn(&principal).await?;
            self.run_recorded(owner, export, bound, fresh).await
        }
        .await;
        if looked.is_err() {
            let asked: Map<String, Value> = pairs
                .iter()
                .map(|(name, value)| (name.to_string(), Value::String(value.to_string())))
                .collect();
            self.record_refusal(owner, dataset, &asked, &looked).await;
        }
        looked
    }

    /// The lookup, and its answer on record before it is given: one the audit log could not
    /// record is not given.
    async fn run_recorded(
        &self,
        owner: &Owner,
        export: &Export,
        bound: BoundParams,
        fresh: bool,
    ) -> Result<Looked, ApiError> {
        let params = bound.values.clone();
        let names: Vec<String> = export
            .params
            .iter()
            .filter(|p| p.bound.is_some())
            .map(|p| p.name.clone())
            .collect();
        let looked = self.run(export, bound, fresh).await?;
        if let Some(audit) = &self.audit {
            let asked = Asked {
                dataset: Some(&export.name),
                params: Some(&params),
                bound: &names,
            };
            audit
                .lookup_answered(owner, &asked, looked.answer.rows.len(), looked.cached)
                .await?;
        }
        Ok(looked)
    }

    async fn record_refusal(
        &self,
        owner: &Owner,
        dataset: &str,
        asked: &Map<String, Value>,
        looked: &Result<Looked, ApiError>,
    ) {
        if let (Some(audit), Err(refused)) = (&self.audit, looked) {
            let asked = Asked {
                dataset: Some(dataset),
                params: Some(asked),
                bound: &[],
            };
            audit
                .refused(AuditKind::Lookup, owner, &asked, refused)
                .await;
        }
    }

    /// The lookup itself, access decided: its parameters include the caller's bound values,
    /// and so does the cache key, so no caller is served another's answer.
    async fn run(
        &self,
        export: &Export,
        bound: BoundParams,
        fresh: bool,
    ) -> Result<Looked, ApiError> {
        let dataset = export.name.as_str();
        let policy = export.lookup.clone().expect("checked by lookup_export");
        let bound = bound.literals;
        let key = cache_key(dataset, &bound);
        let caching = !policy.cache.is_zero();
        if caching && !fresh {
            if let Some(answer) = self.cached(&key).await {
                return Ok(Looked {
                    answer,
                    cached: true,
                });
            }
        }
        let pending = {
            let mut in_flight = self.in_flight.lock().expect("in-flight lock");
            match in_flight.get(&key) {
                Some(pending) => pending.clone(),
                None => {
                    let select = export
                        .lookup_select(&bound, policy.max_rows + 1)
                        .map_err(|e| {
                            tracing::error!(dataset, error = %e, "a lookup's SELECT could not be built");
                            ApiError::internal()
                        })?;
                    let warehouse = self.warehouse.clone();
                    let clock = self.clock.clone();
                    let timeout = self.settings.timeout;
                    let dataset = dataset.to_owned();
                    let max_rows = policy.max_rows;
                    let ttl = policy.cache;
                    let slots = self.settings.slots.zip(self.slots.clone());
                    let pending = async move {
                        // A slot of the lookups' own, held on a lease that ends with the
                        // deadline, so a holder that dies frees it.
                        let slot = match &slots {
                            Some((count, ledger)) => {
                                let holder = uuid::Uuid::new_v4().to_string();
                                let now = clock.now();
                                let until = now + timeout.as_millis() as Millis + 5_000;
                                match ledger.take_lookup_slot(*count, &holder, now, until).await? {
                                    Some(slot) => Some((ledger.clone(), slot, holder)),
                                    None => {
                                        return Err(ApiError::new(
                                            StatusCode::SERVICE_UNAVAILABLE,
                                            "lookups_busy",
                                            format!("the warehouse's {count} lookup slots are all in use; retry in a moment"),
                                        )
                                        .with_retry_after(1))
                                    }
                                }
                            }
                            None => None,
                        };
                        let outcome = warehouse.select(&select, timeout).await;
                        if let Some((ledger, slot, holder)) = slot {
                            if let Err(e) = ledger.free_lookup_slot(slot, &holder).await {
                                tracing::warn!(slot, error = %e, "could not free a lookup slot; its lease frees it");
                            }
                        }
                        let now = clock.now();
                        read_answer(outcome?, &dataset, max_rows, timeout, now, ttl).map(Arc::new)
                    }
                    .boxed()
                    .shared();
                    in_flight.insert(key.clone(), pending.clone());
                    pending
                }
            }
        };
        let result = pending.clone().await;
        // Whoever gets here first retires the statement and keeps its answer; the rest
        // already hold it. (A later statement for the same key is left in flight.)
        let retired = {
            let mut in_flight = self.in_flight.lock().expect("in-flight lock");
            let ours = in_flight.get(&key).is_some_and(|p| p.ptr_eq(&pending));
            if ours {
                in_flight.remove(&key);
            }
            ours
        };
        let answer = result?;
        if caching && retired {
            self.keep(&key, &answer).await;
        }
        Ok(Looked {
            answer,
            cached: false,
        })
    }

    /// An unexpired answer from this process, else from the shared cache (kept here too).
    async fn cached(&self, key: &str) -> Option<Arc<Answer>> {
        let now = self.clock.now();
        if let Some(answer) = self.local.lock().expect("local cache lock").get(key) {
            if answer.expires_at > now {
                return Some(answer.clone());
            }
        }
        match self.shared.cached_answer(key, now).await {
            Ok(Some(cached)) => match serde_json::from_str::<Answer>(&cached.body) {
                Ok(answer) if answer.expires_at > now => {
                    let answer = Arc::new(answer);
                    let size = resident_size(&answer, cached.body.len());
                    self.keep_local(key, &answer, size);
                    Some(answer)
                }
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "a shared cache entry does not read back; ignored");
                    None
                }
            },
            Ok(None) => None,
            // The cache only saves work: without it, the warehouse answers.
            Err(e) => {
                tracing::warn!(error = %e, "the shared lookup cache is unavailable");
                None
            }
        }
    }

    async fn keep(&self, key: &str, answer: &Arc<Answer>) {
        // Shared before the lookup answers: a Lambda function's environment is frozen once it
        // has answered, so a write left running then would wait for its next request.
        let Ok(body) = serde_json::to_string(answer.as_ref()) else {
            return;
        };
        self.keep_local(key, answer, resident_size(answer, body.len()));
        if body.len() > self.settings.shared_max_bytes {
            return;
        }
        let cached = CachedAnswer {
            body,
            stored_at: answer.fetched_at,
            expires_at: answer.expires_at,
        };
        if let Err(e) = self.shared.cache_answer(key, &cached).await {
            tracing::warn!(error = %e, "could not share a lookup's answer");
        }
    }

    fn keep_local(&self, key: &str, answer: &Arc<Answer>, size: usize) {
        let now = self.clock.now();
        let mut local = self.local.lock().expect("local cache lock");
        local.insert(key, answer.clone(), size, now);
    }
}

/// Turns the warehouse's outcome into an answer, or into the error the caller sees.
fn read_answer(
    outcome: SelectOutcome,
    dataset: &str,
    max_rows: usize,
    timeout: Duration,
    now: Millis,
    ttl: Duration,
) -> Result<Answer, ApiError> {
    match outcome {
        SelectOutcome::Rows(result) if result.rows.len() > max_rows => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_many_rows",
            format!(
                "more than {max_rows} rows match, more than a lookup of '{dataset}' answers; ask for them with POST /exports"
            ),
        )),
        SelectOutcome::Rows(result) => Ok(Answer::new(
            dataset.to_owned(),
            result.columns,
            result.rows,
            now,
            now + ttl.as_millis() as Millis,
        )),
        SelectOutcome::TimedOut { statement_id } => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "lookup_timed_out",
            format!(
                "the warehouse did not answer within {} s; try again, or ask for an export",
                timeout.as_secs_f64()
            ),
        )
        .with_statement(statement_id)),
        SelectOutcome::Failed {
            statement_id,
            error,
        } => Err(ApiError::new(StatusCode::BAD_GATEWAY, "statement_failed", error)
            .with_statement(statement_id)),
    }
}

/// The dataset and the values as bound (typed, canonical: `1.50` and `01.5` are one
/// decimal), digested: identical lookups share a key however their query strings were written.
fn cache_key(
    dataset: &str,
    bound: &std::collections::BTreeMap<String, Vec<crate::sql::Literal>>,
) -> String {
    let mut digest = Sha256::new();
    digest.update(dataset.as_bytes());
    for (name, literals) in bound {
        digest.update([0]);
        digest.update(name.as_bytes());
        for literal in literals {
            digest.update([1]);
            digest.update(literal.to_sql().as_bytes());
        }
    }
    format!("LOOKUP#{}", hex::encode(digest.finalize()))
}
