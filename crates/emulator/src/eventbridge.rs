//! The statement events' way to the poller, as on AWS: the emulated Data API puts each
//! "Redshift Data Statement Status Change" event on moto's EventBridge, where the stack's rule
//! (its pattern read from `template.yaml`) routes the ones it matches to the polls queue.

use async_trait::async_trait;
use aws_sdk_eventbridge::types::{PutEventsRequestEntry, Target};
use export_core::messages::Message;
use export_core::ports::{PortError, PortResult, QueueSender};
use std::time::Duration;

/// The template the stack deploys, as built into this crate.
const TEMPLATE: &str = include_str!("../../../template.yaml");

/// The statement-events rule's pattern, exactly as `template.yaml` has it, for the stack
/// named `stack`: the one-line JSON `EventPattern` of `StatementEventsRule` with its
/// `!Sub "${AWS::StackName}:"` resolved.
pub fn statement_rule_pattern(stack: &str) -> anyhow::Result<String> {
    let rule = TEMPLATE
        .find("StatementEventsRule:")
        .map(|at| &TEMPLATE[at..])
        .ok_or_else(|| anyhow::anyhow!("template.yaml has no StatementEventsRule"))?;
    let line = rule
        .lines()
        .find_map(|l| l.trim().strip_prefix("EventPattern: "))
        .ok_or_else(|| anyhow::anyhow!("StatementEventsRule's pattern is not on one line"))?;
    let pattern = line.replace(
        r#"!Sub "${AWS::StackName}:""#,
        &serde_json::to_string(&format!("{stack}:"))?,
    );
    anyhow::ensure!(!pattern.contains('!'), "a tag left in {pattern}");
    serde_json::from_str::<serde_json::Value>(&pattern)?;
    Ok(pattern)
}

/// Creates the stack's rule on the default bus, forwarding to the queue `target_arn`.
pub async fn create_statement_rule(
    events: &aws_sdk_eventbridge::Client,
    stack: &str,
    target_arn: &str,
) -> anyhow::Result<()> {
    let name = format!("{stack}-statement-events");
    events
        .put_rule()
        .name(&name)
        .event_pattern(statement_rule_pattern(stack)?)
        .send()
        .await?;
    events
        .put_targets()
        .rule(&name)
        .targets(Target::builder().id("polls").arn(target_arn).build()?)
        .send()
        .await?;
    Ok(())
}

/// Where the emulated warehouse sends its statement events: EventBridge's `PutEvents`, with
/// the fields a Data API event carries ("Monitoring events for the Amazon Redshift Data API
/// in Amazon EventBridge"), the principal being the role the functions share.
pub struct EventBridgeEvents {
    pub client: aws_sdk_eventbridge::Client,
    pub principal: String,
}

#[async_trait]
impl QueueSender for EventBridgeEvents {
    async fn send(&self, message: &Message, _delay: Duration) -> PortResult<()> {
        let event: serde_json::Value = serde_json::from_str(&message.body())
            .map_err(|e| PortError::Rejected(format!("not an event: {e}")))?;
        let mut detail = event["detail"].clone();
        detail["principal"] = self.principal.clone().into();
        let put = self
            .client
            .put_events()
            .entries(
                PutEventsRequestEntry::builder()
                    .source(event["source"].as_str().unwrap_or_default())
                    .detail_type(event["detail-type"].as_str().unwrap_or_default())
                    .detail(detail.to_string())
                    .build(),
            )
            .send()
            .await
            .map_err(|e| PortError::Unavailable(format!("PutEvents: {e}")))?;
        match put.failed_entry_count {
            0 => Ok(()),
            n => Err(PortError::Unavailable(format!(
                "PutEvents: {n} entries failed"
            ))),
        }
    }
}
