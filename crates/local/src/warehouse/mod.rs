//! The warehouse on Apache DataFusion, spoken to like the Redshift Data API.
//!
//! Statements are recorded in their own log ([`statements`]), so they outlive the process the
//! way a Redshift statement outlives the Lambda that started it: a statement still running
//! when the process stops is run again when it starts. Each runs as a task of the
//! [`supervisor`]: its UNLOAD is parsed exactly as Redshift would get it ([`unload`]), its
//! SELECT runs in DataFusion and the rows are written through the object store port as parts
//! ([`parts`]) plus a manifest in Redshift's format ([`manifest`]). When a statement ends, a
//! status-change event goes onto the polls queue, as the EventBridge rule does on AWS.

mod execute;
mod manifest;
mod parts;
mod rows;
pub mod select;
pub mod statements;
mod supervisor;
pub mod unload;
mod upload;

pub use statements::{ClientTokens, StatementDetails};

/// How long the local warehouse's client tokens name their statement unless told otherwise:
/// longer than the processor's restart window, as the Data API's must be for its retries to
/// be safe.
pub const CLIENT_TOKEN_LIFETIME: Duration = Duration::from_secs(8 * 3600);

use async_trait::async_trait;
use datafusion::execution::context::SessionContext;
use export_core::catalog::BoundSelect;
use export_core::messages::{Message, PollMessage, StatementEvent};
use export_core::ports::{
    ObjectStore, PortResult, QueueSender, SelectOutcome, StatementRequest, StatementState,
    StatementStatus, Warehouse,
};
use statements::StatementLog;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use supervisor::Supervisor;

pub struct DataFusionWarehouse {
    inner: Arc<Inner>,
}

struct Inner {
    ctx: SessionContext,
    /// Lookups' own session over the same tables.
    lookups: select::LookupSession,
    log: StatementLog,
    objects: Arc<dyn ObjectStore>,
    /// Where status-change events go; the polls queue.
    events: Arc<dyn QueueSender>,
    tasks: Supervisor,
    /// Time a statement waits before it runs, to stand in for a busy cluster.
    queue_delay: Duration,
    /// How many statements run at once, as a WLM queue's slots: the rest wait their turn,
    /// first come first served, SUBMITTED meanwhile. None: every statement at once.
    slots: Option<Arc<tokio::sync::Semaphore>>,
}

impl DataFusionWarehouse {
    /// Opens the statement log at `statements_db` over a session whose tables are loaded.
    pub fn open(
        ctx: SessionContext,
        statements_db: &Path,
        objects: Arc<dyn ObjectStore>,
        events: Arc<dyn QueueSender>,
        queue_delay: Duration,
        tokens: ClientTokens,
    ) -> anyhow::Result<DataFusionWarehouse> {
        Ok(DataFusionWarehouse {
            inner: Arc::new(Inner {
                lookups: select::LookupSession::over(&ctx),
                ctx,
                log: StatementLog::open(statements_db, tokens)?,
                objects,
                events,
                tasks: Supervisor::default(),
                queue_delay,
                slots: None,
            }),
        })
    }

    /// This warehouse, running at most `slots` statements at once (each taking at least the
    /// queue delay), as a manual WLM queue with that concurrency does: "queries run
    /// concurrently until they reach the WLM query slot count … subsequent queries wait in
    /// the queue" ("Implementing manual WLM", Amazon Redshift Database Developer Guide).
    pub fn with_concurrency(mut self, slots: Option<usize>) -> DataFusionWarehouse {
        let inner = Arc::get_mut(&mut self.inner).expect("set before the warehouse is shared");
        inner.slots = slots.map(|n| Arc::new(tokio::sync::Semaphore::new(n.max(1))));
        self
    }

    /// Runs again every statement a previous process left unfinished.
    pub async fn resume_unfinished(&self) -> PortResult<usize> {
        let ids = self.inner.log.unfinished().await?;
        for id in &ids {
            tracing::info!(statement_id = %id, "resuming a statement left unfinished");
            Inner::spawn(&self.inner, id.clone());
        }
        Ok(ids.len())
    }

    /// Stops every running statement without recording an outcome, as a crash would; they are
    /// resumed by the next [`Self::resume_unfinished`].
    pub fn halt(&self) {
        self.inner.tasks.halt();
    }

    /// Starts `request` (or returns the statement its client token already started);
    /// `with_event` says whether its end is announced on the events queue.
    pub async fn start(&self, request: &StatementRequest, with_event: bool) -> PortResult<String> {
        let (id, new) = self.inner.log.insert(request, with_event).await?;
        if new {
            Inner::spawn(&self.inner, id.clone());
        }
        Ok(id)
    }

    pub async fn details(&self, statement_id: &str) -> PortResult<Option<StatementDetails>> {
        self.inner.log.details(statement_id).await
    }
}

impl Drop for DataFusionWarehouse {
    fn drop(&mut self) {
        self.halt();
    }
}

impl Inner {
    fn spawn(this: &Arc<Inner>, id: String) {
        let inner = Arc::clone(this);
        let task_id = id.clone();
        this.tasks
            .spawn(id, async move { inner.run(&task_id).await });
    }

    async fn run(&self, id: &str) {
        // A slot of the queue's, held until the statement ends (or its task is aborted).
        let _slot = match &self.slots {
            Some(slots) => Some(slots.clone().acquire_owned().await.expect("never closed")),
            None => None,
        };
        if !self.queue_delay.is_zero() {
            tokio::time::sleep(self.queue_delay).await;
        }
        let work = self.log.work(id).await;
        let outcome = match &work {
            Ok(work) => {
                let _ = self
                    .log
                    .set_state(id, StatementState::Started, None, None)
                    .await;
                // A statement carried on after a restart may find its own earlier parts.
                execute::unload(&self.ctx, self.objects.as_ref(), &work.sql, work.resumed).await
            }
            Err(e) => Err(e.to_string()),
        };
        self.tasks.finished(id);
        let (state, rows, error) = match outcome {
            Ok(rows) => (StatementState::Finished, Some(rows), None),
            Err(message) => (StatementState::Failed, None, Some(message)),
        };
        match self.log.set_state(id, state, rows, error.clone()).await {
            Ok(true) => {
                let name = work.as_ref().ok().and_then(|w| w.name.clone());
                tracing::info!(
                    request_id = name.as_deref().unwrap_or(""),
                    statement_id = id,
                    state = state.as_str(),
                    rows,
                    error = error.as_deref().unwrap_or(""),
                    "statement ended"
                );
                if work.as_ref().is_ok_and(|w| w.with_event) {
                    self.emit(id, name, state, rows).await;
                }
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(statement_id = id, error = %e, "could not record the statement's end")
            }
        }
    }

    /// Puts the status-change event on the polls queue, shaped as EventBridge delivers it.
    async fn emit(&self, id: &str, name: Option<String>, state: StatementState, rows: Option<u64>) {
        let event = Message::Poll(PollMessage::StatementEvent(StatementEvent {
            statement_id: id.to_owned(),
            statement_name: name,
            state: state.as_str().to_owned(),
            rows: rows.map(|r| r as i64),
        }));
        if let Err(e) = self.events.send(&event, Duration::ZERO).await {
            tracing::warn!(statement_id = id, error = %e, "could not emit the statement event; the poller's own polls will notice");
        }
    }
}

#[async_trait]
impl Warehouse for DataFusionWarehouse {
    async fn execute(&self, request: &StatementRequest) -> PortResult<String> {
        self.start(request, true).await
    }

    async fn describe(&self, statement_id: &str) -> PortResult<StatementStatus> {
        self.inner.log.status(statement_id).await
    }

    async fn cancel(&self, statement_id: &str) -> PortResult<bool> {
        let work = self.inner.log.work(statement_id).await;
        self.describe(statement_id).await?;
        self.inner.tasks.abort(statement_id);
        let aborted = self
            .inner
            .log
            .set_state(
                statement_id,
                StatementState::Aborted,
                None,
                Some("Query cancelled by the user".into()),
            )
            .await?;
        if aborted {
            tracing::info!(statement_id, "statement aborted");
            match work {
                Ok(work) if work.with_event => {
                    self.inner
                        .emit(statement_id, work.name, StatementState::Aborted, None)
                        .await
                }
                _ => {}
            }
        }
        Ok(aborted)
    }

    /// Runs at once, outside the statement log: a lookup is answered or given up within the
    /// request, and nothing about it outlives the process.
    async fn select(&self, select: &BoundSelect, timeout: Duration) -> PortResult<SelectOutcome> {
        let statement_id = uuid::Uuid::new_v4().to_string();
        Ok(
            match tokio::time::timeout(timeout, self.inner.lookups.select(select)).await {
                Ok(Ok(rows)) => SelectOutcome::Rows(rows),
                Ok(Err(error)) => SelectOutcome::Failed {
                    statement_id,
                    error,
                },
                Err(_) => SelectOutcome::TimedOut { statement_id },
            },
        )
    }
}

/// A DataFusion session that speaks Redshift's SQL: its functions registered (`export_dialect`),
/// text parsed as Redshift parses it (backslash escapes in literals).
pub fn redshift_session() -> anyhow::Result<SessionContext> {
    Ok(export_dialect::session())
}
