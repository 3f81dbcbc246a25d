//! The local audit log: `<data-dir>/audit.jsonl`, one JSON record a line, appended (and
//! flushed to the file) before the act it records is answered; and its reader, for
//! `redshift-export audit`.

use async_trait::async_trait;
use export_api::{AuditKind, AuditRecord};
use export_core::domain::Millis;
use export_core::ports::{AuditLog, PortError, PortResult};
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The file's name in the data directory.
pub const AUDIT_FILE: &str = "audit.jsonl";

pub struct JsonLinesAudit {
    /// One writer at a time, so lines never interleave.
    file: Arc<Mutex<std::fs::File>>,
}

impl JsonLinesAudit {
    pub fn open(data_dir: &Path) -> anyhow::Result<JsonLinesAudit> {
        let path = data_dir.join(AUDIT_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        Ok(JsonLinesAudit {
            file: Arc::new(Mutex::new(file)),
        })
    }
}

#[async_trait]
impl AuditLog for JsonLinesAudit {
    async fn record(&self, record: &AuditRecord) -> PortResult<()> {
        let mut line = serde_json::to_vec(record).expect("an audit record serialises");
        line.push(b'\n');
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || {
            let mut file = file.lock().expect("audit file lock");
            // One writer at a time: a line is never split by another. A line cut short (the
            // disk full) is taken back, so the file holds whole records only.
            let before = file.metadata()?.len();
            let written = file.write_all(&line).and_then(|()| file.flush());
            if written.is_err() {
                let _ = file.set_len(before);
            }
            written
        })
        .await
        .map_err(|e| PortError::Unavailable(format!("audit log writer: {e}")))?
        .map_err(|e| PortError::Unavailable(format!("audit log: {e}")))
    }
}

/// Which records to read.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    /// Records of callers whose owner contains this.
    pub caller: Option<String>,
    pub dataset: Option<String>,
    pub kind: Option<AuditKind>,
    /// From this time (inclusive)…
    pub since: Option<Millis>,
    /// …to this one (exclusive).
    pub until: Option<Millis>,
}

impl AuditFilter {
    pub fn admits(&self, record: &AuditRecord) -> bool {
        self.caller
            .as_deref()
            .is_none_or(|c| record.caller.contains(c))
            && self
                .dataset
                .as_deref()
                .is_none_or(|d| record.dataset.as_deref() == Some(d))
            && self.kind.is_none_or(|k| record.kind == k)
            && self.since.is_none_or(|t| record.at >= t)
            && self.until.is_none_or(|t| record.at < t)
    }
}

/// The records of the audit file in `data_dir` that `filter` admits, oldest first. A line that
/// does not read (a write cut off by a crash) is reported by its number, not skipped silently.
pub fn read_audit(data_dir: &Path, filter: &AuditFilter) -> anyhow::Result<Vec<AuditRecord>> {
    let path = data_dir.join(AUDIT_FILE);
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(anyhow::anyhow!("{}: {e}", path.display())),
    };
    let mut records = Vec::new();
    for (number, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let record: AuditRecord = serde_json::from_str(&line).map_err(|e| {
            anyhow::anyhow!(
                "{}, line {}: not an audit record: {e}",
                path.display(),
                number + 1
            )
        })?;
        if filter.admits(&record) {
            records.push(record);
        }
    }
    Ok(records)
}
