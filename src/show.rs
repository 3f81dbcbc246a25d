//! The API's answers as a person reads them: times in local time (RFC 3339), a job as a few
//! aligned lines, a history as one line per event. `--json` prints the answers unchanged.

use chrono::{DateTime, Local, SecondsFormat};
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

fn when(value: &Value) -> String {
    value.as_i64().map(time).unwrap_or_else(|| "-".into())
}

/// `GET /exports/{id}`: the job's state and what it produced.
pub fn job(job: &Value) -> String {
    let mut out = String::new();
    let mut line = |label: &str, value: String| {
        let _ = writeln!(out, "{label:<10} {value}");
    };
    line("request", text(&job["request_id"]));
    line("dataset", text(&job["dataset"]));
    if let Some(params) = job.get("params") {
        line("params", params.to_string());
    }
    line("status", text(&job["status"]));
    line(
        "output",
        format!(
            "{}, compression {}, archive {}",
            text(&job["format"]),
            text(&job["compression"]),
            text(&job["archive"])
        ),
    );
    line("created", when(&job["created_at"]));
    line("updated", when(&job["updated_at"]));
    if !job["rows"].is_null() {
        line("rows", text(&job["rows"]));
    }
    if !job["bytes"].is_null() {
        line("bytes", text(&job["bytes"]));
    }
    if !job["error"].is_null() {
        line("error", text(&job["error"]));
    }
    if job["expired"] == true {
        line(
            "files",
            "expired and removed; submit the export again for a new copy".into(),
        );
    }
    if let Some(url) = job["download_url"].as_str() {
        line("download", url.to_owned());
        line("expires", when(&job["download_expires_at"]));
    }
    out
}

/// `GET /exports/{id}/events`: one line per event, oldest first.
pub fn history(events: &Value) -> String {
    let mut out = String::new();
    for event in events["events"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "{}  {:<20} {:<10} {}",
            when(&event["at"]),
            text(&event["step"]),
            text(&event["outcome"]),
            text(&event["message"])
        );
    }
    out
}

/// `GET /exports`: the caller's jobs, newest first, and where the next page starts.
pub fn jobs(page: &Value) -> String {
    let mut out = String::new();
    for job in page["jobs"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "{}  {:<10} {:<20} {}",
            when(&job["created_at"]),
            text(&job["status"]),
            text(&job["dataset"]),
            text(&job["request_id"])
        );
    }
    if let Some(cursor) = page["next_cursor"].as_str() {
        let _ = writeln!(out, "more: --cursor {cursor}");
    }
    out
}

/// `GET /datasets`: each export, what it is, and its parameters.
pub fn datasets(catalogue: &Value) -> String {
    let mut out = String::new();
    for dataset in catalogue["datasets"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "{} — {}",
            text(&dataset["name"]),
            text(&dataset["description"])
        );
        for param in dataset["params"].as_array().into_iter().flatten() {
            let required = if param["required"] == true {
                ""
            } else {
                " (optional)"
            };
            let _ = writeln!(
                out,
                "  {} {}{required}  {}",
                text(&param["name"]),
                text(&param["type"]),
                param["description"].as_str().unwrap_or("")
            );
        }
    }
    out
}

/// `GET /lookups/{dataset}`: the rows as an aligned table, then how many and from where.
pub fn lookup(answer: &Value) -> String {
    let columns: Vec<String> = answer["columns"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| text(&c["name"]))
        .collect();
    let rows: Vec<Vec<String>> = answer["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|row| columns.iter().map(|c| text(&row[c.as_str()])).collect())
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
    let mut out = String::new();
    for line in std::iter::once(&columns).chain(&rows) {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    let source = if answer["cached"] == true {
        format!("from the cache, {} s old", text(&answer["age_seconds"]))
    } else {
        "from the warehouse".to_owned()
    };
    let _ = writeln!(out, "({} rows, {source})", text(&answer["row_count"]));
    out
}
