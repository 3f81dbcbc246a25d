//! The audit record: one line per read of the warehouse's data and per link to it, for the
//! people who must answer who read what. Written as JSON, one record a line (locally) or a
//! log event (on AWS), and read back by `redshift-export audit`.

use crate::Millis;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What was done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    /// An export submitted (accepted, or refused with its reason).
    Export,
    /// An export's end: its rows, bytes and statement, or why it failed.
    ExportEnded,
    /// A lookup answered (from the warehouse or a cache), or refused.
    Lookup,
    /// A link to an export's files handed out: in an answer, or in its email.
    Link,
}

impl AuditKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::Export => "export",
            AuditKind::ExportEnded => "export_ended",
            AuditKind::Lookup => "lookup",
            AuditKind::Link => "link",
        }
    }
}

/// One audited act.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub at: Millis,
    pub kind: AuditKind,
    /// Who: the caller's owner (an IAM ARN or a Cognito identity).
    pub caller: String,
    /// The dataset, as the request named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    /// The parameters the statement ran (or would have run) with, bound ones included.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub params: Map<String, Value>,
    /// Which of `params` came from the caller's access.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bound: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// `accepted`, `refused`, `succeeded`, `failed`, `cancelled`, `answered`, `cached`,
    /// `issued`, `emailed`, `webhook` (a notice with links POSTed), `copied` (files copied into a
    /// bucket).
    pub outcome: String,
    /// For a refusal: the HTTP status and the error's code and message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl AuditRecord {
    /// A record of `kind` by `caller` at `at`, with `outcome` and nothing else yet.
    pub fn new(at: Millis, kind: AuditKind, caller: &str, outcome: &str) -> AuditRecord {
        AuditRecord {
            at,
            kind,
            caller: caller.to_owned(),
            dataset: None,
            params: Map::new(),
            bound: Vec::new(),
            request_id: None,
            statement_id: None,
            rows: None,
            bytes: None,
            outcome: outcome.to_owned(),
            status: None,
            code: None,
            message: None,
        }
    }
}
