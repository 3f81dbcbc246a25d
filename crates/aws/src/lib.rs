//! The AWS side of the export API: one adapter per port on the official SDK crates, the
//! configuration the SAM template passes in environment variables, and the glue that feeds
//! Lambda events (API Gateway, SQS) to the services in `export-core`.
//!
//! Endpoints come from the SDK's own configuration (`AWS_ENDPOINT_URL`,
//! `AWS_ENDPOINT_URL_<SERVICE>`), so the same code runs against AWS or an emulator.

pub mod audit;
pub mod catalog;
pub mod dynamodb;
pub mod env;
mod error;
pub mod functions;
pub mod iam_tags;
pub mod lambda;
pub mod redshift;
pub mod s3;
pub mod ses;
pub mod sqs;

pub use env::{ConfigError, Env};
pub use functions::Clients;
