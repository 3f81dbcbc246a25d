use super::{ManualClock, MemoryQueue};
use crate::messages::{Message, StartJob};
use crate::ports::QueueSender;
use crate::service::{Consumer, Retry};
use crate::settings::RetrySettings;
use async_trait::async_trait;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A consumer that fails every job whose id starts with `bad` and keeps what it gave up on:
/// for tests of the runners around [`crate::service::consume`]. Its messages are bare ids or
/// start messages; with `copies` it retries by sending copies to `queue`, else it leaves
/// retries to the queue's redelivery.
pub struct PickyConsumer {
    pub given_up: Mutex<Vec<String>>,
    pub copies: bool,
    pub queue: MemoryQueue,
    pub retry: RetrySettings,
}

impl Default for PickyConsumer {
    fn default() -> Self {
        PickyConsumer {
            given_up: Mutex::default(),
            copies: false,
            queue: MemoryQueue::new(Arc::new(ManualClock::at(0))),
            retry: RetrySettings {
                first_delay: Duration::from_secs(10),
                max_delay: Duration::from_secs(900),
            },
        }
    }
}

impl PickyConsumer {
    /// The bodies it was told to give up on, in order.
    pub fn given_up(&self) -> Vec<String> {
        self.given_up.lock().expect("consumer lock").clone()
    }

    fn start(body: &str) -> StartJob {
        serde_json::from_str(body).unwrap_or_else(|_| StartJob {
            request_id: body.to_owned(),
            tries: 0,
        })
    }
}

#[async_trait]
impl Consumer for PickyConsumer {
    async fn handle(
        &self,
        body: &str,
        _deadline: Option<tokio::time::Instant>,
    ) -> Result<(), Retry> {
        let request_id = Self::start(body).request_id;
        if request_id.starts_with("bad") {
            Err(Retry(format!("cannot handle {request_id}")))
        } else {
            Ok(())
        }
    }
    async fn give_up(&self, body: &str, _reason: &str) -> Result<(), Retry> {
        self.given_up
            .lock()
            .expect("consumer lock")
            .push(Self::start(body).request_id);
        Ok(())
    }
    fn request_id(&self, body: &str) -> Option<String> {
        Some(Self::start(body).request_id)
    }
    fn earlier_tries(&self, body: &str) -> u32 {
        Self::start(body).tries
    }
    fn retry_copy(&self, body: &str, tries: u32) -> Option<Message> {
        self.copies.then(|| {
            Message::Start(StartJob {
                tries,
                ..Self::start(body)
            })
        })
    }
    fn retries(&self) -> (&dyn QueueSender, &RetrySettings) {
        (&self.queue, &self.retry)
    }
}
