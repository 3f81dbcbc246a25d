//! The record of every read: each export submitted (or refused), each export's end, each
//! lookup answered (or refused) and each link handed out, with who, the dataset, the
//! parameters bound ones included, rows, bytes, statement and outcome, written to the
//! deployment's audit log (a port: JSON lines locally, a log group of its own on AWS).
//!
//! What lets data out is recorded before the data goes: a lookup's answer or a link whose
//! record could not be written is not given (503). A refusal's record is written as well as
//! it can be; the request is refused either way.

use crate::clock::Clock;
use crate::domain::{Job, JobStatus, Owner};
use crate::error::ApiError;
use crate::ports::{AuditLog, PortResult};
use export_api::{AuditKind, AuditRecord};
use serde_json::{Map, Value};
use std::sync::Arc;

#[derive(Clone)]
pub struct Audit {
    pub log: Arc<dyn AuditLog>,
    pub clock: Arc<dyn Clock>,
}

/// What a request asked for, as far as it got: the dataset it named and the parameters it
/// ran (or would have run) with.
#[derive(Clone, Debug, Default)]
pub struct Asked<'a> {
    pub dataset: Option<&'a str>,
    pub params: Option<&'a Map<String, Value>>,
    pub bound: &'a [String],
}

impl Audit {
    fn record(&self, kind: AuditKind, owner: &Owner, outcome: &str, asked: &Asked) -> AuditRecord {
        let mut record = AuditRecord::new(self.clock.now(), kind, &owner.0, outcome);
        record.dataset = asked.dataset.map(str::to_owned);
        record.params = asked.params.cloned().unwrap_or_default();
        record.bound = asked.bound.to_vec();
        record
    }

    /// Writes `record`; a failure is the caller's to judge.
    pub async fn write(&self, record: &AuditRecord) -> PortResult<()> {
        self.log.record(record).await
    }

    /// A request refused: recorded with its status and code, as well as it can be.
    pub async fn refused(
        &self,
        kind: AuditKind,
        owner: &Owner,
        asked: &Asked<'_>,
        error: &ApiError,
    ) {
        let mut record = self.record(kind, owner, "refused", asked);
        record.status = Some(error.status.as_u16());
        record.code = Some(error.code.to_owned());
        record.message = Some(error.message.clone());
        if let Err(e) = self.log.record(&record).await {
            tracing::error!(caller = %owner, code = error.code, error = %e, "could not record a refused request in the audit log");
        }
    }

    /// An export accepted: recorded before it is queued.
    pub async fn export_accepted(&self, job: &Job) -> PortResult<()> {
        let asked = Asked {
            dataset: Some(&job.dataset),
            params: Some(&job.params),
            bound: &job.bound,
        };
        let mut record = self.record(AuditKind::Export, &job.owner, "accepted", &asked);
        record.request_id = Some(job.request_id.clone());
        self.log.record(&record).await
    }

    /// An export's end, with its rows, bytes and statement, or its error.
    pub async fn export_ended(&self, job: &Job) -> PortResult<()> {
        let asked = Asked {
            dataset: Some(&job.dataset),
            params: Some(&job.params),
            bound: &job.bound,
        };
        let outcome = match job.status {
            JobStatus::Succeeded => "succeeded",
            JobStatus::Cancelled => "cancelled",
            _ => "failed",
        };
        let mut record = self.record(AuditKind::ExportEnded, &job.owner, outcome, &asked);
        record.request_id = Some(job.request_id.clone());
        record.statement_id = job.statement_id.clone();
        record.rows = job.rows;
        record.bytes = job.bytes;
        record.message = job.error.clone();
        self.log.record(&record).await
    }

    /// A lookup's answer, recorded before it is given.
    pub async fn lookup_answered(
        &self,
        owner: &Owner,
        asked: &Asked<'_>,
        rows: usize,
        cached: bool,
    ) -> PortResult<()> {
        let outcome = if cached { "cached" } else { "answered" };
        let mut record = self.record(AuditKind::Lookup, owner, outcome, asked);
        record.rows = Some(rows as u64);
        self.log.record(&record).await
    }

    /// Links to the job's files handed out (`outcome`: `issued` in an answer, `emailed`):
    /// recorded before they are given. `parts` says which parts, for an export of parts.
    pub async fn links(
        &self,
        job: &Job,
        outcome: &str,
        parts: Option<std::ops::Range<usize>>,
    ) -> PortResult<()> {
        let mut record = self.link_record(job, outcome);
        record.message = parts.map(|p| format!("parts {} to {}", p.start, p.end.max(1) - 1));
        self.log.record(&record).await
    }

    /// The job's files, or links to them, delivered (`outcome`: `webhook` for a notice with
    /// links, `copied` for files copied into a bucket) to `to`: recorded before they go.
    pub async fn delivered(&self, job: &Job, outcome: &str, to: &str) -> PortResult<()> {
        let mut record = self.link_record(job, outcome);
        record.message = Some(format!("to {to}"));
        self.log.record(&record).await
    }

    fn link_record(&self, job: &Job, outcome: &str) -> AuditRecord {
        let asked = Asked {
            dataset: Some(&job.dataset),
            params: Some(&job.params),
            bound: &job.bound,
        };
        let mut record = self.record(AuditKind::Link, &job.owner, outcome, &asked);
        record.request_id = Some(job.request_id.clone());
        record.statement_id = job.statement_id.clone();
        record.rows = job.rows;
        record.bytes = job.bytes;
        record
    }
}
