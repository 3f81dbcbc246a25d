//! One delivery of a queue message, the same on every runner (Lambda's SQS event source, the
//! local stack's workers): handle it; if that fails for a transient reason, send a copy that
//! tries again after a short, growing delay and acknowledge the original; once its tries are
//! spent, give up on its job, so the job fails with a reason instead of waiting forever behind
//! a dead letter.

use super::{Poller, Processor, Retry};
use crate::messages::{FollowUp, Message, PollMessage, StartJob};
use crate::ports::QueueSender;
use crate::settings::RetrySettings;
use async_trait::async_trait;
use tokio::time::Instant;
use tracing::Instrument;

/// A service fed by a queue.
#[async_trait]
pub trait Consumer: Send + Sync {
    /// Handles one message, done by `deadline` if there is one (the invocation's end);
    /// `Retry` asks for it to be tried again.
    async fn handle(&self, body: &str, deadline: Option<Instant>) -> Result<(), Retry>;
    /// Called once a message has failed on its last try.
    async fn give_up(&self, body: &str, reason: &str) -> Result<(), Retry>;
    /// The job a message is about, for the log lines.
    fn request_id(&self, body: &str) -> Option<String>;
    /// The tries an earlier copy of this message had (0 for an original).
    fn earlier_tries(&self, body: &str) -> u32;
    /// The copy that tries `body` again, carrying `tries`; None when no copy can be made, so
    /// the queue delivers `body` itself again.
    fn retry_copy(&self, body: &str, tries: u32) -> Option<Message>;
    /// Where copies go, and how long each waits.
    fn retries(&self) -> (&dyn QueueSender, &RetrySettings);
}

/// What became of one delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivered {
    /// Handled: acknowledge (delete) the message.
    Done,
    /// Not handled; a delayed copy will try again: acknowledge this one.
    Requeued(String),
    /// Not handled, and no copy could be sent: the queue delivers it again once its
    /// visibility timeout runs out.
    Retry(String),
    /// Not handled on its last try; its job was failed (or could not be), and the queue moves
    /// the message to its dead letters.
    GaveUp(String),
}

impl Delivered {
    pub fn is_done(&self) -> bool {
        *self == Delivered::Done
    }

    /// Whether the queue should delete the message now.
    pub fn acknowledges(&self) -> bool {
        matches!(self, Delivered::Done | Delivered::Requeued(_))
    }
}

/// Handles `body`, delivered for the `receives`-th time; `max_tries` bounds the tries of the
/// message and its copies together, and `deadline` is when the runner stops the handler.
pub async fn consume(
    consumer: &dyn Consumer,
    body: &str,
    receives: u32,
    max_tries: u32,
    deadline: Option<Instant>,
) -> Delivered {
    let request_id = consumer.request_id(body).unwrap_or_default();
    let tries = consumer.earlier_tries(body).saturating_add(receives);
    let span = tracing::info_span!("message", request_id = %request_id, tries);
    async move {
        match consumer.handle(body, deadline).await {
            Ok(()) => Delivered::Done,
            Err(Retry(reason)) if tries >= max_tries => {
                tracing::error!(%reason, "last try failed; giving up on the job");
                if let Err(e) = consumer.give_up(body, &reason).await {
                    tracing::error!(error = %e, "could not fail the job");
                }
                Delivered::GaveUp(reason)
            }
            Err(Retry(reason)) => {
                let Some(copy) = consumer.retry_copy(body, tries) else {
                    tracing::warn!(%reason, "message will be delivered again");
                    return Delivered::Retry(reason);
                };
                let (queue, settings) = consumer.retries();
                let delay = settings.delay(tries);
                match queue.send(&copy, delay).await {
                    Ok(()) => {
                        tracing::warn!(%reason, delay_seconds = delay.as_secs(), "will try again");
                        Delivered::Requeued(reason)
                    }
                    Err(e) => {
                        tracing::warn!(%reason, error = %e, "could not queue a retry; the message will be delivered again");
                        Delivered::Retry(reason)
                    }
                }
            }
        }
    }
    .instrument(span)
    .await
}

#[async_trait]
impl Consumer for Processor {
    async fn handle(&self, body: &str, _deadline: Option<Instant>) -> Result<(), Retry> {
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
    fn earlier_tries(&self, body: &str) -> u32 {
        serde_json::from_str::<StartJob>(body).map_or(0, |m| m.tries)
    }
    fn retry_copy(&self, body: &str, tries: u32) -> Option<Message> {
        let start = serde_json::from_str::<StartJob>(body).ok()?;
        Some(Message::Start(StartJob { tries, ..start }))
    }
    fn retries(&self) -> (&dyn QueueSender, &RetrySettings) {
        (self.queue.as_ref(), &self.retry)
    }
}

#[async_trait]
impl Consumer for Poller {
    async fn handle(&self, body: &str, deadline: Option<Instant>) -> Result<(), Retry> {
        Poller::handle_until(self, body, deadline).await
    }
    async fn give_up(&self, body: &str, reason: &str) -> Result<(), Retry> {
        Poller::give_up(self, body, reason).await
    }
    fn request_id(&self, body: &str) -> Option<String> {
        self.request_id(&PollMessage::parse(body).ok()?)
    }
    fn earlier_tries(&self, body: &str) -> u32 {
        match PollMessage::parse(body) {
            Ok(PollMessage::FollowUp(follow_up)) => follow_up.tries,
            _ => 0,
        }
    }
    /// A follow-up tries again as itself; a statement event as a single look at its job,
    /// which asks the warehouse for the same news.
    fn retry_copy(&self, body: &str, tries: u32) -> Option<Message> {
        let copy = match PollMessage::parse(body).ok()? {
            PollMessage::FollowUp(follow_up) => FollowUp { tries, ..follow_up },
            message @ PollMessage::StatementEvent(_) => FollowUp {
                request_id: self.request_id(&message)?,
                attempt: None,
                resume: None,
                tries,
            },
            PollMessage::Sweep => return None,
        };
        Some(Message::Poll(PollMessage::FollowUp(copy)))
    }
    fn retries(&self) -> (&dyn QueueSender, &RetrySettings) {
        (self.queue.as_ref(), &self.retry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::PickyConsumer;

    #[tokio::test]
    async fn only_the_last_failed_delivery_gives_up() {
        let consumer = PickyConsumer::default();
        assert_eq!(
            consume(&consumer, "good", 5, 5, None).await,
            Delivered::Done
        );
        assert!(matches!(
            consume(&consumer, "bad-early", 4, 5, None).await,
            Delivered::Retry(_)
        ));
        assert!(matches!(
            consume(&consumer, "bad-last", 5, 5, None).await,
            Delivered::GaveUp(_)
        ));
        // A count past the maximum (a queue redriving late) is a last delivery too.
        assert!(matches!(
            consume(&consumer, "bad-later", 6, 5, None).await,
            Delivered::GaveUp(_)
        ));
        assert_eq!(consumer.given_up(), ["bad-last", "bad-later"]);
    }

    #[tokio::test]
    async fn a_failure_is_tried_again_by_a_delayed_copy_that_counts_the_tries() {
        let consumer = PickyConsumer {
            copies: true,
            ..PickyConsumer::default()
        };
        // First try: a copy, 10 s later, carrying one try.
        assert!(matches!(
            consume(&consumer, "bad-job", 1, 3, None).await,
            Delivered::Requeued(_)
        ));
        let copies = consumer.queue.waiting(crate::ports::QueueName::Requests);
        assert_eq!(copies.len(), 1);
        assert_eq!(copies[0].visible_at, 10_000);
        assert_eq!(copies[0].body, r#"{"request_id":"bad-job","tries":1}"#);
        // The copy, redelivered once by the queue: its third try, the last.
        assert!(matches!(
            consume(&consumer, &copies[0].body, 2, 3, None).await,
            Delivered::GaveUp(_)
        ));
        assert_eq!(consumer.given_up(), ["bad-job"]);
        assert_eq!(
            consumer
                .queue
                .waiting(crate::ports::QueueName::Requests)
                .len(),
            1
        );
        // No queue to send the copy to: the queue's own redelivery instead.
        consumer
            .queue
            .faults
            .fail_always("send", crate::ports::PortError::Unavailable("down".into()));
        assert!(matches!(
            consume(&consumer, "bad-other", 1, 3, None).await,
            Delivered::Retry(_)
        ));
    }
}
