//! The fakes meet the contracts their adapters meet, so what the services' tests show on them
//! holds on the engines.

use export_core::ports::{QueueName, QueueSender};
use export_core::testing::admission_conformance::check_admission_ledger;
use export_core::testing::answer_conformance::check_answer_cache;
use export_core::testing::conformance::check_control_table;
use export_core::testing::object_conformance::check_object_store;
use export_core::testing::queue_conformance::{check_queue, QueueUnderTest, Received};
use export_core::testing::{ManualClock, MemoryControlTable, MemoryObjectStore, MemoryQueue};
use std::time::Duration;

#[tokio::test]
async fn the_memory_control_table_meets_the_contract() {
    let table = MemoryControlTable::default();
    check_control_table(&table).await;
    check_answer_cache(&table).await;
    check_admission_ledger(&table).await;
    export_core::testing::usage_conformance::check_usage_ledger(&table).await;
    export_core::testing::subscription_conformance::check_subscription_store(&table).await;
}

#[tokio::test]
async fn the_memory_object_store_meets_the_contract() {
    check_object_store(&MemoryObjectStore::default(), "downloads").await;
}

/// The memory queue on its manual clock: time passes when the suite says so.
struct MemoryQueueUnderTest {
    clock: std::sync::Arc<ManualClock>,
    queue: MemoryQueue,
}

#[async_trait::async_trait]
impl QueueUnderTest for MemoryQueueUnderTest {
    fn sender(&self) -> &dyn QueueSender {
        &self.queue
    }

    async fn receive(&self, queue: QueueName, visibility: Duration) -> Vec<Received> {
        self.queue
            .receive(queue, visibility)
            .into_iter()
            .map(|m| Received {
                body: m.body,
                receipt: m.id.to_string(),
                receives: m.receives,
            })
            .collect()
    }

    async fn delete(&self, _queue: QueueName, receipt: &str) {
        self.queue
            .ack(receipt.parse().expect("a receipt this queue gave"));
    }

    async fn pass(&self, time: Duration) {
        self.clock.advance(time);
    }
}

#[tokio::test]
async fn the_memory_queue_meets_the_contract() {
    let clock = std::sync::Arc::new(ManualClock::at(1_800_000_000_000));
    let queue = MemoryQueue::new(clock.clone());
    check_queue(&MemoryQueueUnderTest { clock, queue }).await;
}
