//! What every queue must do, as SQS's API Reference has it ("SendMessage" `DelaySeconds`,
//! "ReceiveMessage" `VisibilityTimeout`, "DeleteMessage"), as one suite each adapter runs
//! against its own engine: the in-memory fake on its manual clock, the SQLite queue table and
//! SQS on the emulator in real time. The suite sends through the port, [`QueueSender`], and
//! receives and deletes as each runner does, through [`QueueUnderTest`].

use crate::messages::Message;
use crate::ports::{QueueName, QueueSender};
use async_trait::async_trait;
use std::time::Duration;

/// One message as a runner received it.
#[derive(Clone, Debug)]
pub struct Received {
    pub body: String,
    /// What deletes it: this receive's handle.
    pub receipt: String,
    /// How many times it has been received, this time included.
    pub receives: u32,
}

/// A queue as its runner drives it, for the suite.
#[async_trait]
pub trait QueueUnderTest: Send + Sync {
    fn sender(&self) -> &dyn QueueSender;
    /// The messages of `queue` visible now, each hidden for `visibility` once received.
    async fn receive(&self, queue: QueueName, visibility: Duration) -> Vec<Received>;
    async fn delete(&self, queue: QueueName, receipt: &str);
    /// Lets `time` pass for the queue: a manual clock's step, or a real wait.
    async fn pass(&self, time: Duration);
}

/// Runs every check against `queue`, whose queues must be empty.
pub async fn check_queue(queue: &dyn QueueUnderTest) {
    a_message_is_received_hidden_and_deleted(queue).await;
    a_delayed_message_waits_its_delay(queue).await;
    a_message_not_deleted_comes_again(queue).await;
}

fn request(id: &str) -> Message {
    Message::start(id)
}

/// Receives until one message whose body names `id` comes, at most `within` of passing time.
async fn receive_one(
    queue: &dyn QueueUnderTest,
    name: QueueName,
    id: &str,
    visibility: Duration,
    within: Duration,
) -> Received {
    let step = Duration::from_millis(250);
    let mut waited = Duration::ZERO;
    loop {
        let received = queue.receive(name, visibility).await;
        if let Some(message) = received.iter().find(|m| m.body.contains(id)) {
            return message.clone();
        }
        assert!(
            waited < within,
            "{id} not received within {within:?}; received {received:?}"
        );
        queue.pass(step).await;
        waited += step;
    }
}

/// "ReceiveMessage": a message received is hidden for its visibility timeout; "DeleteMessage"
/// removes it for good. Each queue has its own messages.
pub async fn a_message_is_received_hidden_and_deleted(queue: &dyn QueueUnderTest) {
    queue
        .sender()
        .send(&request("conformance-now"), Duration::ZERO)
        .await
        .unwrap();
    let poll = Message::follow_up("conformance-poll", None);
    queue.sender().send(&poll, Duration::ZERO).await.unwrap();
    let visibility = Duration::from_secs(30);
    let received = receive_one(
        queue,
        QueueName::Requests,
        "conformance-now",
        visibility,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(received.receives, 1);
    let again = queue.receive(QueueName::Requests, visibility).await;
    assert!(again.is_empty(), "hidden while received: {again:?}");
    queue.delete(QueueName::Requests, &received.receipt).await;
    // The polls queue's message went there, not to the requests queue.
    let polled = receive_one(
        queue,
        QueueName::Polls,
        "conformance-poll",
        visibility,
        Duration::from_secs(5),
    )
    .await;
    queue.delete(QueueName::Polls, &polled.receipt).await;
}

/// A delay long enough that a busy machine receives before it runs out.
const DELAY: Duration = Duration::from_secs(5);

/// "SendMessage" `DelaySeconds`: a delayed message is not received before its delay.
pub async fn a_delayed_message_waits_its_delay(queue: &dyn QueueUnderTest) {
    queue
        .sender()
        .send(&request("conformance-later"), DELAY)
        .await
        .unwrap();
    let early = queue
        .receive(QueueName::Requests, Duration::from_secs(30))
        .await;
    assert!(early.is_empty(), "received before its delay: {early:?}");
    // Awaited, not slept out: it comes once its delay has passed.
    let later = receive_one(
        queue,
        QueueName::Requests,
        "conformance-later",
        Duration::from_secs(30),
        DELAY + Duration::from_secs(10),
    )
    .await;
    queue.delete(QueueName::Requests, &later.receipt).await;
}

/// "ReceiveMessage" `VisibilityTimeout`: a message received and not deleted comes again once
/// its visibility runs out, counted as received twice.
pub async fn a_message_not_deleted_comes_again(queue: &dyn QueueUnderTest) {
    queue
        .sender()
        .send(&request("conformance-again"), Duration::ZERO)
        .await
        .unwrap();
    let first = receive_one(
        queue,
        QueueName::Requests,
        "conformance-again",
        Duration::from_secs(1),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(first.receives, 1);
    let second = receive_one(
        queue,
        QueueName::Requests,
        "conformance-again",
        Duration::from_secs(30),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(second.receives, 2, "{second:?}");
    queue.delete(QueueName::Requests, &second.receipt).await;
    // Nothing to await: that a deleted message never comes again is seen only by waiting past
    // the visibility it would have come back after.
    queue.pass(Duration::from_secs(1)).await;
    let left = queue
        .receive(QueueName::Requests, Duration::from_secs(30))
        .await;
    assert!(left.is_empty(), "deleted, yet received: {left:?}");
}
