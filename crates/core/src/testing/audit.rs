use super::Faults;
use crate::ports::{AuditLog, PortResult};
use async_trait::async_trait;
use export_api::AuditRecord;
use std::sync::Mutex;

/// The audit log in memory: every record kept, in order, for tests to read.
#[derive(Default)]
pub struct MemoryAudit {
    records: Mutex<Vec<AuditRecord>>,
    pub faults: Faults,
}

impl MemoryAudit {
    /// Every record so far, oldest first.
    pub fn records(&self) -> Vec<AuditRecord> {
        self.records.lock().expect("audit lock").clone()
    }
}

#[async_trait]
impl AuditLog for MemoryAudit {
    async fn record(&self, record: &AuditRecord) -> PortResult<()> {
        super::interleave().await;
        self.faults.check("record")?;
        self.records
            .lock()
            .expect("audit lock")
            .push(record.clone());
        Ok(())
    }
}
