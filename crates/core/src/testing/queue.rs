use super::Faults;
use crate::clock::Clock;
use crate::domain::Millis;
use crate::messages::Message;
use crate::ports::{PortResult, QueueName, QueueSender};
use async_trait::async_trait;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Both queues in memory, on the test's clock: a delayed message becomes visible when the
/// clock reaches it, a received one is hidden until acknowledged or released, and each
/// counts its receives, as SQS does.
pub struct MemoryQueue {
    clock: Arc<dyn Clock>,
    messages: Mutex<Vec<QueuedMessage>>,
    next_id: Mutex<u64>,
    pub faults: Faults,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedMessage {
    pub id: u64,
    pub queue: QueueName,
    pub body: String,
    pub visible_at: Millis,
    pub receives: u32,
}

impl MemoryQueue {
    pub fn new(clock: Arc<dyn Clock>) -> MemoryQueue {
        MemoryQueue {
            clock,
            messages: Mutex::new(Vec::new()),
            next_id: Mutex::new(0),
            faults: Faults::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<QueuedMessage>> {
        self.messages.lock().expect("queue lock")
    }

    /// Takes every message of `queue` visible now, hiding each for `visibility` and counting
    /// the receive; oldest first.
    pub fn receive(&self, queue: QueueName, visibility: Duration) -> Vec<QueuedMessage> {
        let now = self.clock.now();
        let mut messages = self.lock();
        let mut taken = Vec::new();
        for message in messages
            .iter_mut()
            .filter(|m| m.queue == queue && m.visible_at <= now)
        {
            message.receives += 1;
            message.visible_at = now + visibility.as_millis() as Millis;
            taken.push(message.clone());
        }
        taken
    }

    /// Deletes a handled message.
    pub fn ack(&self, id: u64) {
        self.lock().retain(|m| m.id != id);
    }

    /// Makes a received message visible again after `delay`.
    pub fn release(&self, id: u64, delay: Duration) {
        let at = self.clock.now() + delay.as_millis() as Millis;
        if let Some(message) = self.lock().iter_mut().find(|m| m.id == id) {
            message.visible_at = at;
        }
    }

    /// Every message of `queue`, visible or not.
    pub fn waiting(&self, queue: QueueName) -> Vec<QueuedMessage> {
        self.lock()
            .iter()
            .filter(|m| m.queue == queue)
            .cloned()
            .collect()
    }

    /// When the next message of any queue becomes visible.
    pub fn next_visible_at(&self) -> Option<Millis> {
        self.lock().iter().map(|m| m.visible_at).min()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

#[async_trait]
impl QueueSender for MemoryQueue {
    async fn send(&self, message: &Message, delay: Duration) -> PortResult<()> {
        super::interleave().await;
        self.faults.check("send")?;
        let id = {
            let mut next = self.next_id.lock().expect("queue id lock");
            *next += 1;
            *next
        };
        self.lock().push(QueuedMessage {
            id,
            queue: message.queue(),
            body: message.body(),
            visible_at: self.clock.now() + delay.as_millis() as Millis,
            receives: 0,
        });
        Ok(())
    }
}
