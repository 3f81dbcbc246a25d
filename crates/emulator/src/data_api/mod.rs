//! A Redshift Data API endpoint (the AWS JSON 1.1 protocol the SDK speaks) over the local
//! DataFusion warehouse. `ExecuteStatement` runs the UNLOAD text exactly as sent: its SELECT
//! runs in DataFusion, the parts and the manifest go to the named S3 prefix through the S3
//! API, and the end of the statement is announced on the polls queue the way the template's
//! EventBridge rule forwards it. `DescribeStatement` and `CancelStatement` follow it. A
//! SELECT runs in DataFusion with its `Parameters` bound by name, and `GetStatementResult`
//! hands its rows out in pages, typed by their columns. `WaitTimeSeconds` holds an
//! `ExecuteStatement`, `DescribeStatement` or `GetStatementResult` until the statement ends,
//! and each operation is held to its documented rate ([`crate::quotas`]).

use crate::quotas::{QuotaRates, RequestQuotas};
use axum::routing::post;
use axum::Router;
use datafusion::execution::context::SessionContext;
use export_core::catalog::SqlParameter;
use export_core::ports::{
    ObjectStore, PortError, QueueSender, StatementRequest, StatementState, Warehouse,
};
use export_local::warehouse::select::LookupSession;
use export_local::warehouse::{redshift_session, ClientTokens, DataFusionWarehouse};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// What the endpoint serves and how.
#[derive(Clone, Debug)]
pub struct DataApiOptions {
    /// The warehouse's files (generated tables, statement log).
    pub data_dir: PathBuf,
    /// `schema.sql` (the demo tables).
    pub sql_dir: PathBuf,
    /// TPC-H scale for `orders` and `lineitem`.
    pub scale: f64,
    /// Cluster identifiers and workgroup names that exist; any other is refused.
    pub clusters: Vec<String>,
    pub workgroups: Vec<String>,
    /// Time each statement waits before it runs (a busy cluster).
    pub statement_delay: Duration,
    /// How long a `ClientToken` names its statement, on which clock.
    pub client_tokens: ClientTokens,
    /// Rows per `GetStatementResult` page. The Data API pages "depending on result to be
    /// retrieved, volume, etc." and documents no size, so any size here is a choice; tests
    /// pick a small one to see several pages.
    pub result_page_rows: usize,
    /// Each operation's rate per second, past which it is throttled; None for no limit.
    pub quotas: Option<QuotaRates>,
}

mod protocol;
mod selects;

use protocol::*;
use selects::Query;

/// One `ExecuteStatement` call as it was answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Execution {
    pub client_token: Option<String>,
    pub statement_name: Option<String>,
    pub statement_id: String,
}

pub struct DataApi {
    warehouse: DataFusionWarehouse,
    session: SessionContext,
    options: DataApiOptions,
    /// Where each statement ran (cluster or workgroup, database, user), for `DescribeStatement`.
    targets: Mutex<HashMap<String, Map<String, Value>>>,
    executions: Mutex<Vec<Execution>>,
    /// How many of the next `ExecuteStatement` calls are refused as a busy cluster refuses
    /// them, for tests of what a transient failure costs.
    busy_for: std::sync::atomic::AtomicU32,
    /// The SELECTs, by statement id (shared with the tasks that run them).
    queries: Arc<Mutex<HashMap<String, Query>>>,
    /// How long each SELECT waits before it runs (a busy cluster), for tests of deadlines.
    select_delay: Mutex<Duration>,
    /// Where SELECTs run: the warehouse's tables, each text planned once.
    lookups: Arc<LookupSession>,
    quotas: Option<RequestQuotas>,
    /// Calls received per operation, throttled ones included.
    calls: Mutex<HashMap<String, u64>>,
}

/// The endpoint, listening on a loopback port.
pub struct DataApiServer {
    pub endpoint: String,
    pub api: Arc<DataApi>,
    server: JoinHandle<()>,
}

impl Drop for DataApiServer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl DataApiServer {
    /// Loads the warehouse and serves it on a free 127.0.0.1 port. UNLOAD output goes to
    /// `objects`; statement events to `events` (the polls queue).
    pub async fn start(
        options: DataApiOptions,
        objects: Arc<dyn ObjectStore>,
        events: Arc<dyn QueueSender>,
    ) -> anyhow::Result<DataApiServer> {
        std::fs::create_dir_all(&options.data_dir)?;
        let session = redshift_session()?;
        export_local::tables::load_schema(&session, &options.sql_dir.join("schema.sql")).await?;
        export_local::tables::load_tpch(&session, &options.data_dir, options.scale).await?;
        let warehouse = DataFusionWarehouse::open(
            session.clone(),
            &options.data_dir.join("statements.sqlite"),
            objects,
            events,
            options.statement_delay,
            options.client_tokens.clone(),
        )?;
        let lookups = Arc::new(LookupSession::over(&session));
        let quotas = options.quotas.clone().map(RequestQuotas::new);
        let api = Arc::new(DataApi {
            warehouse,
            session,
            options,
            targets: Mutex::new(HashMap::new()),
            executions: Mutex::new(Vec::new()),
            busy_for: std::sync::atomic::AtomicU32::new(0),
            queries: Arc::new(Mutex::new(HashMap::new())),
            select_delay: Mutex::new(Duration::ZERO),
            lookups,
            quotas,
            calls: Mutex::new(HashMap::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let app = Router::new()
            .route("/", post(dispatch))
            .with_state(api.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "Data API endpoint stopped");
            }
        });
        Ok(DataApiServer {
            endpoint,
            api,
            server,
        })
    }
}

impl DataApi {
    /// The warehouse's session, to change its tables under a test.
    pub fn session(&self) -> &SessionContext {
        &self.session
    }

    /// The text a statement was started with.
    pub async fn statement_sql(&self, statement_id: &str) -> Option<String> {
        self.warehouse
            .details(statement_id)
            .await
            .ok()
            .flatten()
            .map(|d| d.sql)
    }

    /// Refuses the next `calls` `ExecuteStatement` calls with `ActiveStatementsExceededException`
    /// ("The number of active statements exceeds the limit", HTTP 400: ExecuteStatement,
    /// Amazon Redshift Data API Reference), as a cluster at its limit of running statements does.
    pub fn refuse_next_executions(&self, calls: u32) {
        self.busy_for
            .store(calls, std::sync::atomic::Ordering::SeqCst);
    }

    /// Makes every SELECT from now on wait `delay` before it runs.
    pub fn delay_selects(&self, delay: Duration) {
        *self.select_delay.lock().expect("delay lock") = delay;
    }

    /// The SELECTs run so far: their text and parameters, oldest first.
    pub fn selects(&self) -> Vec<(String, Vec<SqlParameter>)> {
        let queries = self.queries.lock().expect("queries lock");
        let mut all: Vec<_> = queries.values().collect();
        all.sort_by_key(|q| q.created_at);
        all.into_iter()
            .map(|q| (q.sql.clone(), q.params.clone()))
            .collect()
    }

    /// How many calls of `operation` were received so far.
    pub fn calls(&self, operation: &str) -> u64 {
        let calls = self.calls.lock().expect("calls lock");
        calls.get(operation).copied().unwrap_or(0)
    }

    /// How many calls of `operation` were refused for its rate so far.
    pub fn throttled(&self, operation: &str) -> u64 {
        self.quotas.as_ref().map_or(0, |q| q.throttled(operation))
    }

    /// Every `ExecuteStatement` call answered so far, in order.
    pub fn executions(&self) -> Vec<Execution> {
        self.executions.lock().expect("executions lock").clone()
    }
}

impl DataApi {
    /// Holds the call until statement `id` has ended or `wait` has passed, and answers the
    /// statement's state then. The statement is looked at where it runs, not through the API.
    async fn wait_for_end(&self, id: &str, wait: Duration) -> Result<StatementState, ApiFault> {
        let until = tokio::time::Instant::now() + wait;
        loop {
            let state = self.state_of(id).await?;
            let ended = matches!(
                state,
                StatementState::Finished | StatementState::Failed | StatementState::Aborted
            );
            if ended || tokio::time::Instant::now() >= until {
                return Ok(state);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The `Id` a call names, once the call has waited (`WaitTimeSeconds`) for its statement.
    async fn waited_id<'a>(
        &self,
        input: &'a Map<String, Value>,
        wait: Option<Duration>,
    ) -> Result<&'a str, ApiFault> {
        let id = text(input, "Id").ok_or_else(|| validation("Id is required"))?;
        if let Some(wait) = wait {
            self.wait_for_end(id, wait).await?;
        }
        Ok(id)
    }

    async fn state_of(&self, id: &str) -> Result<StatementState, ApiFault> {
        if let Some(query) = self.queries.lock().expect("queries lock").get(id) {
            return Ok(query.state);
        }
        match self.warehouse.describe(id).await {
            Err(PortError::NotFound(_)) => Err(not_found(id)),
            other => Ok(other?.state),
        }
    }

    async fn execute(
        &self,
        input: &Map<String, Value>,
        wait: Option<Duration>,
    ) -> Result<Value, ApiFault> {
        let sql = text(input, "Sql").ok_or_else(|| validation("Sql is required"))?;
        let busy = self.busy_for.fetch_update(
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
            |n| n.checked_sub(1),
        );
        if busy.is_ok() {
            return Err(ApiFault {
                kind: "ActiveStatementsExceededException",
                ..validation("The number of active statements exceeds the limit.")
            });
        }
        if input.contains_key("SessionId") {
            return Err(validation("SessionId is not supported by this endpoint"));
        }
        let params = parameters(input)?;
        let is_unload = sql.trim_start().to_ascii_uppercase().starts_with("UNLOAD");
        if is_unload && !params.is_empty() {
            return Err(validation(
                "Parameters with UNLOAD are not supported by this endpoint",
            ));
        }
        let database = text(input, "Database").ok_or_else(|| validation("Database is required"))?;
        let mut target = Map::new();
        target.insert("Database".into(), json!(database));
        match (
            text(input, "ClusterIdentifier"),
            text(input, "WorkgroupName"),
        ) {
            (Some(cluster), None) => {
                if !self.options.clusters.iter().any(|c| c == cluster) {
                    return Err(validation(format!("Cluster {cluster} not found.")));
                }
                let secret = text(input, "SecretArn");
                let user = text(input, "DbUser");
                if secret.is_none() && user.is_none() {
                    return Err(validation(
                        "Either SecretArn or DbUser is required with ClusterIdentifier.",
                    ));
                }
                target.insert("ClusterIdentifier".into(), json!(cluster));
                if let Some(secret) = secret {
                    target.insert("SecretArn".into(), json!(secret));
                }
                if let Some(user) = user {
                    target.insert("DbUser".into(), json!(user));
                }
            }
            (None, Some(workgroup)) => {
                if !self.options.workgroups.iter().any(|w| w == workgroup) {
                    return Err(validation(format!("Workgroup {workgroup} not found.")));
                }
                target.insert("WorkgroupName".into(), json!(workgroup));
                if let Some(secret) = text(input, "SecretArn") {
                    target.insert("SecretArn".into(), json!(secret));
                }
            }
            _ => {
                return Err(validation(
                    "Exactly one of ClusterIdentifier and WorkgroupName is required.",
                ))
            }
        }
        let client_token = text(input, "ClientToken").map(str::to_owned);
        let statement_name = text(input, "StatementName").map(str::to_owned);
        if !is_unload {
            let id = self.start_select(sql, params);
            let mut output = target.clone();
            self.targets
                .lock()
                .expect("targets lock")
                .insert(id.clone(), target);
            output.insert("Id".into(), json!(id));
            output.insert("CreatedAt".into(), epoch_seconds(now_ms()));
            if let Some(wait) = wait {
                self.answer_state(&mut output, &id, wait, true).await?;
            }
            return Ok(Value::Object(output));
        }
        let request = StatementRequest {
            sql: sql.to_owned(),
            client_token: client_token
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            name: statement_name.clone().unwrap_or_default(),
        };
        let with_event = input
            .get("WithEvent")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let id = self.warehouse.start(&request, with_event).await?;
        self.executions
            .lock()
            .expect("executions lock")
            .push(Execution {
                client_token,
                statement_name,
                statement_id: id.clone(),
            });
        let created_at = self
            .warehouse
            .details(&id)
            .await?
            .map_or(0, |details| details.created_at);
        let mut output = target.clone();
        self.targets
            .lock()
            .expect("targets lock")
            .entry(id.clone())
            .or_insert(target);
        output.insert("Id".into(), json!(id));
        output.insert("CreatedAt".into(), epoch_seconds(created_at));
        if let Some(wait) = wait {
            self.answer_state(&mut output, &id, wait, false).await?;
        }
        Ok(Value::Object(output))
    }

    /// What an `ExecuteStatement` with `WaitTimeSeconds` adds to its answer: the statement's
    /// `Status` once it ended or the wait ran out, and whether it has a result set.
    async fn answer_state(
        &self,
        output: &mut Map<String, Value>,
        id: &str,
        wait: Duration,
        select: bool,
    ) -> Result<(), ApiFault> {
        let state = self.wait_for_end(id, wait).await?;
        output.insert("Status".into(), json!(state.as_str()));
        output.insert(
            "HasResultSet".into(),
            json!(select && state == StatementState::Finished),
        );
        Ok(())
    }

    async fn describe(
        &self,
        input: &Map<String, Value>,
        wait: Option<Duration>,
    ) -> Result<Value, ApiFault> {
        let id = self.waited_id(input, wait).await?;
        if let Some(output) = self.describe_select(id) {
            return Ok(output);
        }
        let status = match self.warehouse.describe(id).await {
            Err(PortError::NotFound(_)) => return Err(not_found(id)),
            other => other?,
        };
        let details = self
            .warehouse
            .details(id)
            .await?
            .ok_or_else(|| not_found(id))?;
        let mut output = self.target_of(id);
        output.insert("Id".into(), json!(id));
        output.insert("Status".into(), json!(status.state.as_str()));
        output.insert("QueryString".into(), json!(details.sql));
        output.insert("CreatedAt".into(), epoch_seconds(details.created_at));
        output.insert("UpdatedAt".into(), epoch_seconds(details.updated_at));
        output.insert(
            "Duration".into(),
            json!((details.updated_at - details.created_at) * 1_000_000),
        );
        output.insert(
            "ResultRows".into(),
            json!(status.rows.map_or(-1, |r| r as i64)),
        );
        output.insert("ResultSize".into(), json!(-1));
        output.insert("HasResultSet".into(), json!(false));
        output.insert("RedshiftPid".into(), json!(0));
        output.insert("RedshiftQueryId".into(), json!(0));
        if let Some(error) = status.error {
            output.insert("Error".into(), json!(error));
        }
        Ok(Value::Object(output))
    }

    async fn cancel(&self, input: &Map<String, Value>) -> Result<Value, ApiFault> {
        let id = text(input, "Id").ok_or_else(|| validation("Id is required"))?;
        if let Some(cancelled) = self.cancel_select(id) {
            return cancelled;
        }
        let status = match self.warehouse.describe(id).await {
            Err(PortError::NotFound(_)) => return Err(not_found(id)),
            other => other?,
        };
        if matches!(
            status.state,
            StatementState::Finished | StatementState::Failed | StatementState::Aborted
        ) {
            return Err(validation(format!(
                "Could not cancel a query that is already in {} state.",
                status.state.as_str()
            )));
        }
        let cancelled = self.warehouse.cancel(id).await?;
        Ok(json!({ "Status": cancelled }))
    }

    /// Where statement `id` ran (cluster or workgroup, database, user), as
    /// `DescribeStatement` reports it.
    fn target_of(&self, id: &str) -> Map<String, Value> {
        self.targets
            .lock()
            .expect("targets lock")
            .get(id)
            .cloned()
            .unwrap_or_default()
    }
}
