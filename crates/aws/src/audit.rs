//! The audit log on AWS: a CloudWatch Logs log group of its own (`AUDIT_LOG_GROUP`, kept
//! `AuditRetentionDays`, apart from the functions' logs), one JSON event per record, written
//! by `PutLogEvents` before the act it records is answered. Each function instance writes
//! its own log stream, created the first time it writes ("CreateLogStream": a stream takes
//! events from one writer at a time, without the sequence tokens "PutLogEvents" no longer
//! needs, Amazon CloudWatch Logs API Reference). Auditors query it with CloudWatch Logs
//! Insights (docs/DEPLOY.md, "The audit record").

use crate::error::port_error;
use async_trait::async_trait;
use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use aws_sdk_cloudwatchlogs::Client;
use export_api::AuditRecord;
use export_core::ports::{AuditLog, PortError, PortResult};
use tokio::sync::OnceCell;

pub struct CloudWatchAudit {
    client: Client,
    group: String,
    stream: String,
    created: OnceCell<()>,
}

impl CloudWatchAudit {
    /// Records into `group`, on a stream named for this instance.
    pub fn new(client: Client, group: impl Into<String>) -> CloudWatchAudit {
        let instance = uuid::Uuid::new_v4().simple().to_string();
        let day = chrono::Utc::now().format("%Y/%m/%d");
        CloudWatchAudit {
            client,
            group: group.into(),
            stream: format!("{day}/{instance}"),
            created: OnceCell::new(),
        }
    }

    async fn ensure_stream(&self) -> PortResult<()> {
        self.created
            .get_or_try_init(|| async {
                match self
                    .client
                    .create_log_stream()
                    .log_group_name(&self.group)
                    .log_stream_name(&self.stream)
                    .send()
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|e| e.is_resource_already_exists_exception()) =>
                    {
                        Ok(())
                    }
                    Err(e) => Err(port_error("CreateLogStream", e)),
                }
            })
            .await
            .map(drop)
    }
}

#[async_trait]
impl AuditLog for CloudWatchAudit {
    async fn record(&self, record: &AuditRecord) -> PortResult<()> {
        self.ensure_stream().await?;
        let message = serde_json::to_string(record).expect("an audit record serialises");
        let event = InputLogEvent::builder()
            .timestamp(record.at)
            .message(message)
            .build()
            .map_err(|e| PortError::Rejected(e.to_string()))?;
        self.client
            .put_log_events()
            .log_group_name(&self.group)
            .log_stream_name(&self.stream)
            .log_events(event)
            .send()
            .await
            .map_err(|e| port_error("PutLogEvents", e))?;
        Ok(())
    }
}
