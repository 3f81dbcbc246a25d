//! The warehouse through the Redshift Data API: a provisioned cluster or a Serverless workgroup.

use crate::error::port_error;
use async_trait::async_trait;
use aws_sdk_redshiftdata::types::StatusString;
use aws_sdk_redshiftdata::Client;
use export_core::ports::{
    PortError, PortResult, StatementRequest, StatementState, StatementStatus, Warehouse,
};

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

fn state(status: &StatusString) -> PortResult<StatementState> {
    StatementState::parse(status.as_str())
        .ok_or_else(|| PortError::Rejected(format!("unknown statement status {status:?}")))
}

#[async_trait]
impl Warehouse for DataApiWarehouse {
    async fn execute(&self, request: &StatementRequest) -> PortResult<String> {
        let mut call = self
            .client
            .execute_statement()
            .sql(&request.sql)
            .database(&self.database)
            // The same token returns the same statement: a redelivered message starts nothing.
            .client_token(&request.client_token)
            .statement_name(&request.name)
            // The status-change event goes to EventBridge, whose rule forwards it to the poller.
            .with_event(true);
        call = match &self.target {
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
        };
        let output = call
            .send()
            .await
            .map_err(|e| port_error("ExecuteStatement", e))?;
        output
            .id
            .ok_or_else(|| PortError::Rejected("ExecuteStatement returned no statement id".into()))
    }

    async fn describe(&self, statement_id: &str) -> PortResult<StatementStatus> {
        let output = self
            .client
            .describe_statement()
            .id(statement_id)
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
}
