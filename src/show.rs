//! The API's answers as a person reads them: times in local time (RFC 3339), a job as a few
//! aligned lines, a history as one line per event. `--json` prints the answers as JSON.

use chrono::{DateTime, Local, SecondsFormat};
use export_api::{AuditRecord, Datasets, JobHistory, JobList, JobView, LookupAnswer, QuotaView};
use serde_json::Value;
use std::fmt::Write;

/// Epoch milliseconds as local RFC 3339, to the millisecond.
pub fn time(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|t| {
            t.with_timezone(&Local)
                .to_rfc3339_opts(SecondsFormat::Millis, false)
        })
        .unwrap_or_else(|| ms.to_string())
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// `GET /exports/{id}`: the job's state and what it produced.
pub fn job(view: &JobView) -> String {
    let job = &view.summary;
    let mut out = String::new();
    let mut line = |label: &str, value: String| {
        let _ = writeln!(out, "{label:<10} {value}");
    };
    line("request", job.request_id.clone());
    line("dataset", job.dataset.clone());
    line("params", Value::Object(view.params.clone()).to_string());
    line("status", job.status.to_string());
    if let Some(ahead) = view.queue_position {
        line(
            "in line",
            format!("{ahead} jobs ahead of it for a warehouse slot"),
        );
    }
    line(
        "output",
        format!(
            "{}, compression {}, archive {}",
            job.format, job.compression, job.archive
        ),
    );
    line("created", time(job.created_at));
    line("updated", time(job.updated_at));
    if let Some(rows) = job.rows {
        line("rows", rows.to_string());
    }
    if let Some(bytes) = job.bytes {
        line("bytes", bytes.to_string());
    }
    if let Some(error) = &job.error {
        line("error", error.clone());
    }
    if view.expired {
        line(
            "files",
            "expired and removed; submit the export again for a new copy".into(),
        );
    }
    if let Some(url) = &view.download_url {
        line("download", url.clone());
        if let Some(expires) = view.download_expires_at {
            line("expires", time(expires));
        }
    }
    out
}

/// `GET /exports/{id}/events`: one line per event, oldest first.
pub fn history(history: &JobHistory) -> String {
    let mut out = String::new();
    for event in &history.events {
        let _ = writeln!(
            out,
            "{}  {:<20} {:<10} {}",
            time(event.at),
            event.step,
            event.outcome,
            event.message
        );
    }
    out
}

/// `GET /exports`: the caller's jobs, newest first, and where the next page starts.
pub fn jobs(page: &JobList) -> String {
    let mut out = String::new();
    for job in &page.jobs {
        let _ = writeln!(
            out,
            "{}  {:<10} {:<20} {}",
            time(job.created_at),
            job.status,
            job.dataset,
            job.request_id
        );
    }
    if let Some(cursor) = &page.next_cursor {
        let _ = writeln!(out, "more: --cursor {cursor}");
    }
    out
}

/// `GET /datasets`: each export, what it is, and its parameters.
pub fn datasets(catalogue: &Datasets) -> String {
    let mut out = String::new();
    for dataset in &catalogue.datasets {
        let _ = writeln!(out, "{} — {}", dataset.name, dataset.description);
        for param in &dataset.params {
            let note = match (&param.bound, &param.value) {
                // Set by the caller's access: shown, never asked for.
                (Some(_), Some(value)) => format!(" (yours, fixed: {value})"),
                (Some(attribute), None) => format!(" (yours, from '{attribute}', which you lack)"),
                (None, _) if !param.required => " (optional)".to_owned(),
                (None, _) => String::new(),
            };
            let _ = writeln!(
                out,
                "  {} {}{note}  {}",
                param.name, param.type_name, param.description
            );
        }
    }
    out
}

/// `GET /lookups/{dataset}`: the rows as an aligned table, then how many and from where.
pub fn lookup(answer: &LookupAnswer) -> String {
    let columns: Vec<&str> = answer.columns.iter().map(|c| c.name.as_str()).collect();
    let rows: Vec<Vec<String>> = answer
        .rows
        .iter()
        .map(|row| {
            columns
                .iter()
                .map(|c| text(row.get(*c).unwrap_or(&Value::Null)))
                .collect()
        })
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([c.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let header: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
    let mut out = String::new();
    for line in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    let source = if answer.cached {
        format!("from the cache, {} s old", answer.age_seconds)
    } else {
        "from the warehouse".to_owned()
    };
    let _ = writeln!(out, "({} rows, {source})", answer.row_count);
    out
}

/// `GET /quota`: one line per quota, its use against its limit.
pub fn quota(view: &QuotaView) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} on {} (UTC), renewed {}",
        view.owner,
        view.day,
        time(view.renews_at)
    );
    let mut line = |label: &str, used: u64, limit: Option<u64>| {
        let limit = limit.map_or("no limit".to_owned(), |l| format!("of {l}"));
        let _ = writeln!(out, "{label:<20} {used} {limit}");
    };
    line(
        "unfinished exports",
        view.unfinished_exports.used,
        view.unfinished_exports.limit,
    );
    line(
        "exports today",
        view.exports_per_day.used,
        view.exports_per_day.limit,
    );
    line(
        "bytes today",
        view.bytes_per_day.used,
        view.bytes_per_day.limit,
    );
    let _ = match view.lookups_per_second {
        Some(rate) => writeln!(
            out,
            "{:<20} {rate} a second, {} at once",
            "lookups",
            view.lookup_burst.unwrap_or(rate)
        ),
        None => writeln!(out, "{:<20} no limit", "lookups"),
    };
    if view.priority != 1 {
        let _ = writeln!(out, "{:<20} {}", "priority", view.priority);
    }
    out
}

/// One audit record on a line: when, what, how it ended, who, and what was read.
pub fn audit(record: &AuditRecord) -> String {
    let mut line = format!(
        "{} {:<12} {:<9} {}",
        time(record.at),
        record.kind.as_str(),
        record.outcome,
        record.caller
    );
    if let Some(dataset) = &record.dataset {
        let _ = write!(line, " {dataset}");
    }
    if !record.params.is_empty() {
        let _ = write!(line, " {}", Value::Object(record.params.clone()));
    }
    if let Some(id) = &record.request_id {
        let _ = write!(line, " job {id}");
    }
    if let Some(rows) = record.rows {
        let _ = write!(line, " rows {rows}");
    }
    if let Some(bytes) = record.bytes {
        let _ = write!(line, " bytes {bytes}");
    }
    if let (Some(status), Some(code)) = (record.status, &record.code) {
        let _ = write!(line, " ({status} {code})");
    }
    line.push('\n');
    line
}
