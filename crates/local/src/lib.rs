//! The local stack: every port on an embedded engine, and a gateway that checks SigV4 the way
//! API Gateway's IAM auth does. Nothing to install and nothing to start but this process.
//!
//! | port          | adapter                                            |
//! |---------------|----------------------------------------------------|
//! | control table | [`sqlite::SqliteStore`] (SQLite, WAL)              |
//! | queues        | [`sqlite::SqliteStore`] (same file, durable)       |
//! | warehouse     | [`warehouse::DataFusionWarehouse`] (DataFusion)    |
//! | object store  | [`objects::FsObjectStore`] (directory tree)        |
//! | mailer        | [`outbox::OutboxMailer`] (`.eml` files)            |
//! | audit log     | [`audit::JsonLinesAudit`] (`audit.jsonl`)          |

pub mod audit;
pub mod check;
pub mod faults;
pub mod gateway;
pub mod objects;
pub mod options;
pub mod outbox;
pub mod sigv4;
pub mod sql_source;
pub mod sqlite;
pub mod stack;
pub mod tables;
pub mod warehouse;

pub use options::StackOptions;
pub use stack::{LocalConfig, LocalStack};

/// A duration as the local stack's settings write one: a number and its unit, `ms`, `s` or
/// `m` (`250ms`, `1.5s`, `5m`).
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("'{text}': a duration such as 250ms, 30s or 5m");
    let at = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .ok_or_else(bad)?;
    let (number, unit) = text.split_at(at);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        _ => return Err(bad()),
    };
    Ok(std::time::Duration::from_secs_f64(seconds))
}
