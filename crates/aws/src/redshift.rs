//! The warehouse through the Redshift Data API: a provisioned cluster or a Serverless workgroup.

use crate::error::port_error;
use async_trait::async_trait;
use aws_sdk_redshiftdata::operation::execute_statement::builders::ExecuteStatementFluentBuilder;
use aws_sdk_redshiftdata::types::{Field, SqlParameter, StatusString};
use aws_sdk_redshiftdata::Client;
use export_core::catalog::BoundSelect;
use export_core::ports::{
    PortError, PortResult, ResultColumn, ResultSet, SelectOutcome, StatementRequest,
    StatementState, StatementStatus, Warehouse,
};
use serde_json::Value;
use std::time::Duration;
use tokio::time::Instant;

/// The Data API's quotas are per account and region, shared by every function ("Quotas and
/// limits in Amazon Redshift": `ExecuteStatement` 30 calls a second, `DescribeStatement` 100,
/// `GetStatementResult` 20), so a lookup waits for its statement on the server
/// (`WaitTimeSeconds`, "Reduce API calls with long polling", at most 30 s a call) instead of
/// polling: one that ends within its wait costs an `ExecuteStatement` and a
/// `GetStatementResult` per page. Under a second left, no call can wait that briefly, and the
/// lookup looks again after a short sleep that doubles, from [`FIRST_WAIT`] to [`LONGEST_WAIT`].
const LONGEST_LONG_POLL: u64 = 30;
const FIRST_WAIT: Duration = Duration::from_millis(20);
const LONGEST_WAIT: Duration = Duration::from_millis(500);

/// Whole seconds of `left` a call may wait on the server, if there is at least one.
fn long_poll(left: Duration) -> Option<i32> {
    let seconds = left.as_secs().min(LONGEST_LONG_POLL);
    (seconds >= 1).then_some(seconds as i32)
}

/// Where statements run and as whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A provisioned cluster, with credentials from Secrets Manager or temporary ones for a
    /// database user.
    Cluster {
        cluster_id: String,
        credentials: ClusterCredentials,
    },
    /// Redshift Serverless; the secret is optional (the caller's IAM identity maps to a user).
    Workgroup {
        name: String,
        secret_arn: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterCredentials {
    SecretArn(String),
    DbUser(String),
}

#[derive(Clone)]
pub struct DataApiWarehouse {
    client: Client,
    target: Target,
    database: String,
}

impl DataApiWarehouse {
    pub fn new(client: Client, target: Target, database: impl Into<String>) -> Self {
        DataApiWarehouse {
            client,
            target,
            database: database.into(),
        }
    }
}

impl DataApiWarehouse {
    /// `call` aimed at this warehouse's cluster or workgroup, as its user.
    fn on_target(&self, call: ExecuteStatementFluentBuilder) -> ExecuteStatementFluentBuilder {
        let call = call.database(&self.database);
        match &self.target {
            Target::Cluster {
                cluster_id,
                credentials,
            } => {
                let call = call.cluster_identifier(cluster_id);
                match credentials {
                    ClusterCredentials::SecretArn(arn) => call.secret_arn(arn),
                    ClusterCredentials::DbUser(user) => call.db_user(user),
                }
            }
            Target::Workgroup { name, secret_arn } => {
                call.workgroup_name(name).set_secret_arn(secret_arn.clone())
            }
        }
    }

    /// `DescribeStatement`, held on the server until the statement ends or `wait` seconds pass.
    async fn describe_waiting(
        &self,
        statement_id: &str,
        wait: Option<i32>,
    ) -> PortResult<StatementStatus> {
        let output = self
            .client
            .describe_statement()
            .id(statement_id)
            .set_wait_time_seconds(wait)
            .send()
            .await
            .map_err(|e| {
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception())
                {
                    PortError::NotFound(format!("statement {statement_id}"))
                } else {
                    port_error("DescribeStatement", e)
                }
            })?;
        let status = output
            .status
            .as_ref()
            .ok_or_else(|| PortError::Rejected("DescribeStatement returned no status".into()))?;
        Ok(StatementStatus {
            id: statement_id.to_owned(),
            state: state(status)?,
            // -1 means "not applicable" to the Data API.
            rows: u64::try_from(output.result_rows).ok(),
            error: output.error.filter(|e| !e.is_empty()),
        })
    }

    /// Every page of a finished statement's result (`GetStatementResult`), typed by its
    /// column metadata.
    async fn result(&self, statement_id: &str) -> PortResult<ResultSet> {
        let mut result = ResultSet::default();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .get_statement_result()
                .id(statement_id)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| port_error("GetStatementResult", e))?;
            if result.columns.is_empty() {
                result.columns = page
                    .column_metadata()
                    .iter()
                    .map(|c| ResultColumn {
                        name: c.name().or(c.label()).unwrap_or_default().to_owned(),
                        type_name: c.type_name().unwrap_or_default().to_owned(),
                    })
                    .collect();
            }
            result
                .rows
                .extend(page.records().iter().map(|r| r.iter().map(value).collect()));
            // "If the NextToken field is empty, all response records have been retrieved."
            match page.next_token().filter(|t| !t.is_empty()) {
                Some(next) => token = Some(next.to_owned()),
                None => return Ok(result),
            }
        }
    }
}

/// A field as the API's typed JSON: numbers, booleans, null, and text for the rest.
fn value(field: &Field) -> Value {
    match field {
        Field::IsNull(true) => Value::Null,
        Field::LongValue(v) => Value::from(*v),
        Field::DoubleValue(v) => serde_json::Number::from_f64(*v)
            .map_or_else(|| Value::String(v.to_string()), Value::Number),
        Field::BooleanValue(v) => Value::Bool(*v),
        Field::StringValue(v) => Value::String(v.clone()),
        Field::BlobValue(v) => Value::String(base64_of(v.as_ref())),
        _ => Value::Null,
    }
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn state(status: &StatusString) -> PortResult<StatementState> {
    state_named(status.as_str())
}

fn state_named(status: &str) -> PortResult<StatementState> {
    StatementState::parse(status)
        .ok_or_else(|| PortError::Rejected(format!("unknown statement status {status:?}")))
}

#[async_trait]
impl Warehouse for DataApiWarehouse {
    async fn execute(&self, request: &StatementRequest) -> PortResult<String> {
        let call = self.on_target(
            self.client
                .execute_statement()
                .sql(&request.sql)
                // The same token returns the same statement: a redelivered message starts
                // nothing.
                .client_token(&request.client_token)
                .statement_name(&request.name)
                // The status-change event goes to EventBridge, whose rule forwards it to the
                // poller.
                .with_event(true),
        );
        let output = call
            .send()
            .await
            .map_err(|e| port_error("ExecuteStatement", e))?;
        output
            .id
            .ok_or_else(|| PortError::Rejected("ExecuteStatement returned no statement id".into()))
    }

    async fn describe(&self, statement_id: &str) -> PortResult<StatementStatus> {
        self.describe_waiting(statement_id, None).await
    }

    async fn cancel(&self, statement_id: &str) -> PortResult<bool> {
        let result = self.client.cancel_statement().id(statement_id).send().await;
        match result {
            Ok(output) => Ok(output.status.unwrap_or(false)),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                Err(PortError::NotFound(format!("statement {statement_id}")))
            }
            // The Data API refuses to cancel a statement that has already ended: nothing to stop.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_validation_exception()) =>
            {
                tracing::info!(statement_id, error = %crate::error::error_chain(&e), "statement not cancelled");
                Ok(false)
            }
            Err(e) => Err(port_error("CancelStatement", e)),
        }
    }

    /// `ExecuteStatement` with the values as `Parameters` (bound by Redshift, never part of
    /// the text), held on the server until the statement ends (see [`LONGEST_LONG_POLL`]), then
    /// every page of `GetStatementResult`. A statement still running at the deadline is
    /// cancelled.
    async fn select(&self, select: &BoundSelect, timeout: Duration) -> PortResult<SelectOutcome> {
        let deadline = Instant::now() + timeout;
        let parameters = select
            .params
            .iter()
            .map(|p| {
                SqlParameter::builder()
                    .name(&p.name)
                    .value(&p.value)
                    .build()
                    .map_err(|e| PortError::Rejected(e.to_string()))
            })
            .collect::<PortResult<Vec<_>>>()?;
        let output = self
            .on_target(
                self.client
                    .execute_statement()
                    .sql(&select.sql)
                    .set_parameters((!parameters.is_empty()).then_some(parameters))
                    .set_wait_time_seconds(long_poll(timeout)),
            )
            .send()
            .await
            .map_err(|e| port_error("ExecuteStatement", e))?;
        let statement_id = output.id.ok_or_else(|| {
            PortError::Rejected("ExecuteStatement returned no statement id".into())
        })?;
        let mut state = match &output.status {
            Some(status) => state_named(status.as_str())?,
            None => StatementState::Submitted,
        };
        let mut error = None;
        let mut wait = FIRST_WAIT;
        loop {
            match state {
                StatementState::Finished => break,
                StatementState::Failed | StatementState::Aborted => {
                    // An answer held by the wait says how the statement ended, not why.
                    let error = match error {
                        Some(error) => Some(error),
                        None => self.describe(&statement_id).await?.error,
                    };
                    return Ok(SelectOutcome::Failed {
                        statement_id,
                        error: error.unwrap_or_else(|| "the statement did not finish".into()),
                    });
                }
                _ => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                if let Err(e) = self.cancel(&statement_id).await {
                    tracing::warn!(statement_id, error = %e, "could not cancel a lookup past its deadline");
                }
                return Ok(SelectOutcome::TimedOut { statement_id });
            }
            let status = match long_poll(left) {
                Some(seconds) => self.describe_waiting(&statement_id, Some(seconds)).await?,
                None => {
                    tokio::time::sleep(wait.min(left)).await;
                    wait = (wait * 2).min(LONGEST_WAIT);
                    self.describe(&statement_id).await?
                }
            };
            state = status.state;
            error = status.error;
        }
        Ok(SelectOutcome::Rows(self.result(&statement_id).await?))
    }
}
