//! The fakes meet the contracts their adapters meet, so what the services' tests show on them
//! holds on the engines.

use export_core::testing::conformance::{check_answer_cache, check_control_table};
use export_core::testing::object_conformance::check_object_store;
use export_core::testing::{MemoryControlTable, MemoryObjectStore};

#[tokio::test]
async fn the_memory_control_table_meets_the_contract() {
    let table = MemoryControlTable::default();
    check_control_table(&table).await;
    check_answer_cache(&table).await;
}

#[tokio::test]
async fn the_memory_object_store_meets_the_contract() {
    check_object_store(&MemoryObjectStore::default(), "downloads").await;
}
