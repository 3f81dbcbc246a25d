//! Sending to the requests and polls queues on SQS. Receiving is the Lambda event source's job.

use crate::error::port_error;
use async_trait::async_trait;
use aws_sdk_sqs::Client;
use export_core::messages::Message;
use export_core::ports::{PortError, PortResult, QueueName, QueueSender};
use std::time::Duration;

/// SQS delays a message by at most 15 minutes.
pub const MAX_DELAY: Duration = Duration::from_secs(900);

#[derive(Clone)]
pub struct SqsQueues {
    client: Client,
    requests_url: Option<String>,
    polls_url: Option<String>,
}

impl SqsQueues {
    /// A sender for the queues whose URLs are given; sending to another is an error.
    pub fn new(client: Client, requests_url: Option<String>, polls_url: Option<String>) -> Self {
        SqsQueues {
            client,
            requests_url,
            polls_url,
        }
    }

    fn url(&self, queue: QueueName) -> PortResult<&str> {
        match queue {
            QueueName::Requests => self.requests_url.as_deref(),
            QueueName::Polls => self.polls_url.as_deref(),
        }
        .ok_or_else(|| {
            PortError::Rejected(format!(
                "this function has no URL for the {} queue",
                queue.as_str()
            ))
        })
    }
}

#[async_trait]
impl QueueSender for SqsQueues {
    async fn send(&self, message: &Message, delay: Duration) -> PortResult<()> {
        self.client
            .send_message()
            .queue_url(self.url(message.queue())?)
            .message_body(message.body())
            .delay_seconds(delay.min(MAX_DELAY).as_secs() as i32)
            .send()
            .await
            .map_err(|e| port_error("SendMessage", e))?;
        Ok(())
    }
}
