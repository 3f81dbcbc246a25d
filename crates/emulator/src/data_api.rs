//! A Redshift Data API endpoint (the AWS JSON 1.1 protocol the SDK speaks) over the local
//! DataFusion warehouse. `ExecuteStatement` runs the UNLOAD text exactly as sent: its SELECT
//! runs in DataFusion, the parts and the manifest go to the named S3 prefix through the S3
//! API, and the end of the statement is announced on the polls queue the way the template's
//! EventBridge rule forwards it. `DescribeStatement` and `CancelStatement` follow it.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use datafusion::execution::context::SessionContext;
use export_core::ports::{
    ObjectStore, PortError, QueueSender, StatementRequest, StatementState, Warehouse,
};
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
}

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
        let api = Arc::new(DataApi {
            warehouse,
            session,
            options,
            targets: Mutex::new(HashMap::new()),
            executions: Mutex::new(Vec::new()),
            busy_for: std::sync::atomic::AtomicU32::new(0),
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

    /// Every `ExecuteStatement` call answered so far, in order.
    pub fn executions(&self) -> Vec<Execution> {
        self.executions.lock().expect("executions lock").clone()
    }
}

/// A Data API error: its `__type` and message.
struct ApiFault {
    status: StatusCode,
    kind: &'static str,
    message: String,
    extra: Map<String, Value>,
}

fn validation(message: impl Into<String>) -> ApiFault {
    ApiFault {
        status: StatusCode::BAD_REQUEST,
        kind: "ValidationException",
        message: message.into(),
        extra: Map::new(),
    }
}

fn not_found(id: &str) -> ApiFault {
    ApiFault {
        status: StatusCode::BAD_REQUEST,
        kind: "ResourceNotFoundException",
        message: "Query does not exist.".into(),
        extra: Map::from_iter([("ResourceId".to_owned(), json!(id))]),
    }
}

impl From<PortError> for ApiFault {
    fn from(e: PortError) -> Self {
        match e {
            PortError::NotFound(what) => not_found(&what),
            PortError::Rejected(message) => validation(message),
            PortError::Unavailable(message) => ApiFault {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                kind: "InternalServerException",
                message,
                extra: Map::new(),
            },
        }
    }
}

const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

impl IntoResponse for ApiFault {
    fn into_response(self) -> Response {
        let mut body = self.extra;
        body.insert("__type".into(), json!(self.kind));
        body.insert("message".into(), json!(self.message));
        (
            self.status,
            [
                ("content-type", CONTENT_TYPE),
                ("x-amzn-errortype", self.kind),
            ],
            Value::Object(body).to_string(),
        )
            .into_response()
    }
}

async fn dispatch(State(api): State<Arc<DataApi>>, headers: HeaderMap, body: Bytes) -> Response {
    let operation = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix("RedshiftData."))
        .unwrap_or("")
        .to_owned();
    let input: Map<String, Value> = match serde_json::from_slice(&body) {
        Ok(Value::Object(map)) => map,
        _ => {
            return ApiFault {
                kind: "SerializationException",
                ..validation("the request body is not a JSON object")
            }
            .into_response()
        }
    };
    let result = match operation.as_str() {
        "ExecuteStatement" => api.execute(&input).await,
        "DescribeStatement" => api.describe(&input).await,
        "CancelStatement" => api.cancel(&input).await,
        other => Err(ApiFault {
            kind: "UnknownOperationException",
            ..validation(format!("operation '{other}' is not served here"))
        }),
    };
    match result {
        Ok(output) => ([("content-type", CONTENT_TYPE)], output.to_string()).into_response(),
        Err(fault) => fault.into_response(),
    }
}

fn text<'a>(input: &'a Map<String, Value>, field: &str) -> Option<&'a str> {
    input
        .get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn epoch_seconds(ms: i64) -> Value {
    json!(ms as f64 / 1000.0)
}

impl DataApi {
    async fn execute(&self, input: &Map<String, Value>) -> Result<Value, ApiFault> {
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
        if input.contains_key("SessionId") || input.contains_key("Parameters") {
            return Err(validation(
                "SessionId and Parameters are not supported by this endpoint",
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
        Ok(Value::Object(output))
    }

    async fn describe(&self, input: &Map<String, Value>) -> Result<Value, ApiFault> {
        let id = text(input, "Id").ok_or_else(|| validation("Id is required"))?;
        let status = match self.warehouse.describe(id).await {
            Err(PortError::NotFound(_)) => return Err(not_found(id)),
            other => other?,
        };
        let details = self
            .warehouse
            .details(id)
            .await?
            .ok_or_else(|| not_found(id))?;
        let mut output = self
            .targets
            .lock()
            .expect("targets lock")
            .get(id)
            .cloned()
            .unwrap_or_default();
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
}
