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

pub mod faults;
pub mod gateway;
pub mod objects;
pub mod outbox;
pub mod sigv4;
pub mod sqlite;
pub mod stack;
pub mod tables;
pub mod warehouse;

pub use stack::{LocalConfig, LocalStack};
