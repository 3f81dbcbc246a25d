//! One delivery of a queue message, the same on every runner (Lambda's SQS event source, the
//! local stack's workers): handle it, and if that fails on its last delivery, give up on its
//! job, so the job fails with a reason instead of waiting forever behind a dead letter.

use super::{Poller, Processor, Retry};
use crate::messages::{PollMessage, StartJob};
use async_trait::async_trait;
use tracing::Instrument;

/// A service fed by a queue.
#[async_trait]
pub trait Consumer: Send + Sync {
    /// Handles one message; `Retry` leaves it on the queue to be delivered again.
    async fn handle(&self, body: &str) -> Result<(), Retry>;
    /// Called once a message has failed on its last delivery.
    async fn give_up(&self, body: &str, reason: &str) -> Result<(), Retry>;
    /// The job a message is about, for the log lines.
    fn request_id(&self, body: &str) -> Option<String>;
}

/// What became of one delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivered {
    /// Handled: acknowledge (delete) the message.
    Done,
    /// Not handled; it will be delivered again.
    Retry(String),
    /// Not handled on its last delivery; its job was failed (or could not be), and the queue
    /// moves the message to its dead letters.
    GaveUp(String),
}

impl Delivered {
    pub fn is_done(&self) -> bool {
        *self == Delivered::Done
    }
}

/// Handles `body`, delivered for the `receives`-th time of at most `max_receives`.
pub async fn consume(
    consumer: &dyn Consumer,
    body: &str,
    receives: u32,
    max_receives: u32,
) -> Delivered {
    let request_id = consumer.request_id(body).unwrap_or_default();
    let span = tracing::info_span!("message", request_id = %request_id, receives);
    async move {
        match consumer.handle(body).await {
            Ok(()) => Delivered::Done,
            Err(Retry(reason)) if receives >= max_receives => {
                tracing::error!(%reason, "last delivery failed; giving up on the job");
                if let Err(e) = consumer.give_up(body, &reason).await {
                    tracing::error!(error = %e, "could not fail the job");
                }
                Delivered::GaveUp(reason)
            }
            Err(Retry(reason)) => {
                tracing::warn!(%reason, "message will be delivered again");
                Delivered::Retry(reason)
            }
        }
    }
    .instrument(span)
    .await
}

#[async_trait]
impl Consumer for Processor {
    async fn handle(&self, body: &str) -> Result<(), Retry> {
        Processor::handle(self, body).await
    }
    async fn give_up(&self, body: &str, reason: &str) -> Result<(), Retry> {
        Processor::give_up(self, body, reason).await
    }
    fn request_id(&self, body: &str) -> Option<String> {
        serde_json::from_str::<StartJob>(body)
            .ok()
            .map(|m| m.request_id)
    }
}

#[async_trait]
impl Consumer for Poller {
    async fn handle(&self, body: &str) -> Result<(), Retry> {
        Poller::handle(self, body).await
    }
    async fn give_up(&self, body: &str, reason: &str) -> Result<(), Retry> {
        Poller::give_up(self, body, reason).await
    }
    fn request_id(&self, body: &str) -> Option<String> {
        PollMessage::parse(body).ok()?.request_id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::PickyConsumer;

    #[tokio::test]
    async fn only_the_last_failed_delivery_gives_up() {
        let consumer = PickyConsumer::default();
        assert_eq!(consume(&consumer, "good", 5, 5).await, Delivered::Done);
        assert!(matches!(
            consume(&consumer, "bad-early", 4, 5).await,
            Delivered::Retry(_)
        ));
        assert!(matches!(
            consume(&consumer, "bad-last", 5, 5).await,
            Delivered::GaveUp(_)
        ));
        // A count past the maximum (a queue redriving late) is a last delivery too.
        assert!(matches!(
            consume(&consumer, "bad-later", 6, 5).await,
            Delivered::GaveUp(_)
        ));
        assert_eq!(consumer.given_up(), ["bad-last", "bad-later"]);
    }
}
