//! `redshift-export audit`: the local stack's audit record, filtered. (On AWS the record is a
//! log group; docs/DEPLOY.md shows the CloudWatch Logs Insights queries that read it.)

use anyhow::Context;
use clap::Args;
use export_api::AuditKind;
use export_local::audit::{read_audit, AuditFilter};
use redshift_export::show;
use std::path::PathBuf;

#[derive(Args)]
pub struct AuditArgs {
    /// The local stack's data directory.
    #[arg(long, default_value = ".export-local", env = "EXPORT_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Only callers whose owner contains this (`bob`, an account id, a whole ARN).
    #[arg(long)]
    pub caller: Option<String>,
    #[arg(long)]
    pub dataset: Option<String>,
    /// export, export_ended, lookup or link.
    #[arg(long, value_parser = parse_kind)]
    pub kind: Option<AuditKind>,
    /// From this time: RFC 3339 (`2026-12-04T10:00:00Z`) or milliseconds since the epoch.
    #[arg(long, value_parser = parse_time)]
    pub since: Option<i64>,
    /// Until this time (not included), written as --since.
    #[arg(long, value_parser = parse_time)]
    pub until: Option<i64>,
    /// One JSON record a line, as kept.
    #[arg(long)]
    pub json: bool,
}

fn parse_kind(text: &str) -> Result<AuditKind, String> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|_| format!("'{text}': one of export, export_ended, lookup, link"))
}

fn parse_time(text: &str) -> Result<i64, String> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("'{text}': not an RFC 3339 time nor epoch milliseconds ({e})"))
}

pub fn audit(args: AuditArgs) -> anyhow::Result<()> {
    let filter = AuditFilter {
        caller: args.caller,
        dataset: args.dataset,
        kind: args.kind,
        since: args.since,
        until: args.until,
    };
    let records = read_audit(&args.data_dir, &filter)
        .with_context(|| format!("reading the audit record in {}", args.data_dir.display()))?;
    for record in &records {
        if args.json {
            println!("{}", serde_json::to_string(record)?);
        } else {
            print!("{}", show::audit(record));
        }
    }
    Ok(())
}
