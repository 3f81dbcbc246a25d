//! The two queues as one table of messages, with SQS's delivery rules: a received message is
//! hidden for a visibility timeout and delivered again unless acknowledged, a delay hides a
//! new one, and after `max_receives` receives without an ack it moves to the dead letters.

use super::SqliteStore;
use async_trait::async_trait;
use export_core::clock::system_millis;
use export_core::messages::Message;
use export_core::ports::{PortResult, QueueName, QueueSender};
use rusqlite::params;
use std::time::Duration;
use tokio::sync::Notify;

/// One message handed to a worker; `receipt` acknowledges it.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub id: i64,
    pub receipt: String,
    pub body: String,
    pub receive_count: u32,
}

fn millis(d: Duration) -> i64 {
    d.as_millis() as i64
}

impl SqliteStore {
    /// Takes up to `max` visible messages, hiding each for `visibility`; a message received
    /// `max_receives` times without an ack moves to the dead-letter table instead.
    pub async fn receive_now(
        &self,
        queue: QueueName,
        max: usize,
        visibility: Duration,
    ) -> PortResult<Vec<Delivery>> {
        let now = system_millis();
        let max_receives = self.max_receives;
        self.call(move |conn| {
            let tx = conn.savepoint()?;
            let mut delivered = Vec::new();
            {
                let mut select = tx.prepare_cached(
                    "SELECT id, body, receive_count, sent_at FROM queue_messages
                     WHERE queue = ?1 AND visible_at <= ?2 ORDER BY visible_at, id LIMIT ?3",
                )?;
                let rows: Vec<(i64, String, u32, i64)> = select
                    .query_map(params![queue.as_str(), now, max as i64 * 2], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                    })?
                    .collect::<Result<_, _>>()?;
                for (id, body, count, sent_at) in rows {
                    if count >= max_receives {
                        tx.execute(
                            "INSERT INTO dead_letters (message_id, queue, body, receive_count, sent_at, dead_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                            params![id, queue.as_str(), body, count, sent_at, now],
                        )?;
                        tx.execute("DELETE FROM queue_messages WHERE id = ?1", params![id])?;
                        tracing::warn!(queue = queue.as_str(), message_id = id, receives = count, "message moved to the dead-letter table");
                        continue;
                    }
                    if delivered.len() == max {
                        break;
                    }
                    let receipt = uuid::Uuid::new_v4().to_string();
                    tx.execute(
                        "UPDATE queue_messages SET receive_count = receive_count + 1, visible_at = ?2, receipt = ?3 WHERE id = ?1",
                        params![id, now + millis(visibility), receipt],
                    )?;
                    delivered.push(Delivery { id, receipt, body, receive_count: count + 1 });
                }
            }
            tx.commit()?;
            Ok(delivered)
        })
        .await
    }

    /// Like [`Self::receive_now`], but waits up to `wait` for a message to arrive.
    pub async fn receive(
        &self,
        queue: QueueName,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> PortResult<Vec<Delivery>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.wakers[&queue].notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let delivered = self.receive_now(queue, max, visibility).await?;
            if !delivered.is_empty() {
                return Ok(delivered);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(delivered);
            }
            // Sleep until something is sent, the next delayed message is due, or time is up.
            let next_due = self
                .next_visible_in(queue)
                .await?
                .unwrap_or(Duration::from_secs(1));
            let nap = next_due.min(deadline - now).max(Duration::from_millis(1));
            let _ = tokio::time::timeout(nap, notified).await;
        }
    }

    async fn next_visible_in(&self, queue: QueueName) -> PortResult<Option<Duration>> {
        let next: Option<i64> = self
            .call(move |conn| {
                Ok(conn
                    .prepare_cached("SELECT MIN(visible_at) FROM queue_messages WHERE queue = ?1")?
                    .query_row(params![queue.as_str()], |r| r.get(0))?)
            })
            .await?;
        Ok(next.map(|at| Duration::from_millis((at - system_millis()).max(0) as u64)))
    }

    /// Deletes a handled message; a stale receipt (the message was redelivered since) does nothing.
    pub async fn ack(&self, receipt: &str) -> PortResult<()> {
        let receipt = receipt.to_owned();
        self.call(move |conn| {
            conn.prepare_cached("DELETE FROM queue_messages WHERE receipt = ?1")?
                .execute(params![receipt])?;
            Ok(())
        })
        .await
    }

    /// Keeps a message hidden for another `visibility` while its handler is still working.
    pub async fn extend(&self, receipt: &str, visibility: Duration) -> PortResult<()> {
        self.hide(receipt, visibility).await
    }

    /// Makes a message visible again after `delay` (a failed attempt).
    pub async fn release(&self, receipt: &str, delay: Duration) -> PortResult<()> {
        self.hide(receipt, delay).await?;
        self.wakers.values().for_each(Notify::notify_waiters);
        Ok(())
    }

    /// Sets when the message with `receipt` next becomes visible: `from_now` from now.
    async fn hide(&self, receipt: &str, from_now: Duration) -> PortResult<()> {
        let (receipt, at) = (receipt.to_owned(), system_millis() + millis(from_now));
        self.call(move |conn| {
            conn.prepare_cached("UPDATE queue_messages SET visible_at = ?2 WHERE receipt = ?1")?
                .execute(params![receipt, at])?;
            Ok(())
        })
        .await
    }

    /// Receives after which a message is dead-lettered.
    pub fn max_receives(&self) -> u32 {
        self.max_receives
    }

    /// The bodies of the queue's dead letters, oldest first: what an operator reads to see
    /// what was given up on.
    pub async fn dead_letters(&self, queue: QueueName) -> PortResult<Vec<String>> {
        self.bodies(
            "SELECT body FROM dead_letters WHERE queue = ?1 ORDER BY dead_at",
            queue,
        )
        .await
    }

    /// The bodies of the messages waiting in the queue, visible or not, oldest first: what
    /// is still to be handled.
    pub async fn waiting(&self, queue: QueueName) -> PortResult<Vec<String>> {
        self.bodies(
            "SELECT body FROM queue_messages WHERE queue = ?1 ORDER BY sent_at, id",
            queue,
        )
        .await
    }

    /// The bodies `select` reads for `queue` (its one parameter).
    async fn bodies(&self, select: &'static str, queue: QueueName) -> PortResult<Vec<String>> {
        self.call(move |conn| {
            let bodies = conn
                .prepare_cached(select)?
                .query_map(params![queue.as_str()], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(bodies)
        })
        .await
    }

    /// Messages waiting (visible or not) and dead letters, per queue.
    pub async fn depth(&self, queue: QueueName) -> PortResult<(u64, u64)> {
        self.call(move |conn| {
            let waiting = conn.query_row(
                "SELECT COUNT(*) FROM queue_messages WHERE queue = ?1",
                params![queue.as_str()],
                |r| r.get(0),
            )?;
            let dead = conn.query_row(
                "SELECT COUNT(*) FROM dead_letters WHERE queue = ?1",
                params![queue.as_str()],
                |r| r.get(0),
            )?;
            Ok((waiting, dead))
        })
        .await
    }
}

#[async_trait]
impl QueueSender for SqliteStore {
    async fn send(&self, message: &Message, delay: Duration) -> PortResult<()> {
        let now = system_millis();
        let (queue, body) = (message.queue(), message.body());
        self.call(move |conn| {
            conn.prepare_cached("INSERT INTO queue_messages (queue, body, visible_at, sent_at) VALUES (?1, ?2, ?3, ?4)")?
                .execute(params![queue.as_str(), body, now + millis(delay), now])?;
            Ok(())
        })
        .await?;
        self.wakers[&queue].notify_waiters();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(id: &str) -> Message {
        Message::start(id)
    }

    /// The queue table in real time, as the local stack's workers drive it.
    struct SqliteQueueUnderTest(SqliteStore);

    #[async_trait::async_trait]
    impl export_core::testing::queue_conformance::QueueUnderTest for SqliteQueueUnderTest {
        fn sender(&self) -> &dyn QueueSender {
            &self.0
        }

        async fn receive(
            &self,
            queue: QueueName,
            visibility: Duration,
        ) -> Vec<export_core::testing::queue_conformance::Received> {
            self.0
                .receive_now(queue, 10, visibility)
                .await
                .unwrap()
                .into_iter()
                .map(|d| export_core::testing::queue_conformance::Received {
                    body: d.body,
                    receipt: d.receipt,
                    receives: d.receive_count,
                })
                .collect()
        }

        async fn delete(&self, _queue: QueueName, receipt: &str) {
            self.0.ack(receipt).await.unwrap();
        }

        async fn pass(&self, time: Duration) {
            tokio::time::sleep(time).await;
        }
    }

    #[tokio::test]
    async fn the_queue_table_meets_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("q.sqlite"), 5).unwrap();
        export_core::testing::queue_conformance::check_queue(&SqliteQueueUnderTest(store)).await;
    }

    #[tokio::test]
    async fn messages_hide_reappear_and_go_to_dead_letters() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("q.sqlite"), 2).unwrap();
        let q = QueueName::Requests;
        store.send(&start("a"), Duration::ZERO).await.unwrap();
        store
            .send(&start("later"), Duration::from_secs(60))
            .await
            .unwrap();

        // Received: hidden for the visibility timeout; the delayed one is not yet visible.
        let first = store
            .receive_now(q, 10, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(
            first.iter().map(|d| d.body.as_str()).collect::<Vec<_>>(),
            [start("a").body()]
        );
        assert!(store
            .receive_now(q, 10, Duration::from_secs(60))
            .await
            .unwrap()
            .is_empty());

        // Not acknowledged: released, it is delivered again, counting receives.
        store
            .release(&first[0].receipt, Duration::ZERO)
            .await
            .unwrap();
        let second = store.receive_now(q, 10, Duration::ZERO).await.unwrap();
        assert_eq!(
            (second[0].body.clone(), second[0].receive_count),
            (start("a").body(), 2)
        );
        // A stale receipt acknowledges nothing.
        store.ack(&first[0].receipt).await.unwrap();
        assert_eq!(store.depth(q).await.unwrap(), (2, 0));

        // Past max_receives, the next receive moves it to the dead-letter table instead.
        assert!(store
            .receive_now(q, 10, Duration::ZERO)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(store.depth(q).await.unwrap(), (1, 1));

        // Acknowledged messages are gone.
        store.send(&start("b"), Duration::ZERO).await.unwrap();
        let b = store.receive_now(q, 10, Duration::ZERO).await.unwrap();
        store.ack(&b[0].receipt).await.unwrap();
        assert_eq!(store.depth(q).await.unwrap(), (1, 1));
        assert_eq!(store.waiting(q).await.unwrap(), [start("later").body()]);
        // Each message went on its own queue.
        assert_eq!(store.depth(QueueName::Polls).await.unwrap(), (0, 0));
    }

    #[tokio::test]
    async fn receive_waits_for_a_message_sent_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("q.sqlite"), 5).unwrap();
        let sender = store.clone();
        let receiving = tokio::spawn(async move {
            store
                .receive(
                    QueueName::Polls,
                    1,
                    Duration::from_secs(30),
                    Duration::from_secs(10),
                )
                .await
                .unwrap()
        });
        // Sent once the receiver has had time to find the queue empty and start waiting.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let look = Message::follow_up("p", None);
        sender.send(&look, Duration::ZERO).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(20), receiving)
            .await
            .expect("the receive returns within its wait")
            .unwrap();
        assert_eq!(got[0].body, look.body());
    }
}
