//! In-memory fakes of every port, a clock that moves only when told, and the contract every
//! control table must meet. Behind the `testing` feature: for the core's own tests of the
//! services (which run in milliseconds, with no sleeps) and for the adapters' conformance
//! tests in the crates that implement the ports.

pub mod admission_conformance;
pub mod answer_conformance;
mod audit;
mod clock;
pub mod conformance;
mod consumer;
mod control;
mod faults;
mod mailer;
pub mod object_conformance;
mod objects;
mod queue;
pub mod queue_conformance;
pub mod subscription_conformance;
pub mod usage_conformance;
mod warehouse;
mod webhooks;
mod world;

pub use audit::MemoryAudit;
pub use clock::ManualClock;
pub use consumer::PickyConsumer;
pub use control::MemoryControlTable;
pub use faults::Faults;
pub use mailer::FakeMailer;
pub use objects::{MemoryObjectStore, ReadHold};
pub use queue::{MemoryQueue, QueuedMessage};
pub use warehouse::FakeWarehouse;
pub use webhooks::RecordedWebhooks;
pub use world::{
    World, DOWNLOADS_BUCKET, INTERNAL_THINGS, STATEMENT_PREFIX, SUPPLIER_SHIPMENTS,
    SUPPLIER_THINGS, THINGS, WORLD_PART_SIZE, WORLD_POLICY, WORLD_WEBHOOK_KEY,
};

/// Every call on a fake gives other tasks a turn first, so services run side by side (in one
/// `join_all`) interleave at each port call, as they would against real dependencies.
async fn interleave() {
    tokio::task::yield_now().await;
}
