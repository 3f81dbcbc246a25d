//! AWS on one machine, for the test suite and the benchmarks: moto's server for DynamoDB,
//! SQS, S3 and SES v2; this crate's own Redshift Data API endpoint over the DataFusion
//! warehouse (moto's cannot run statements); the stack's resources created as the SAM
//! template creates them; and a Lambda runtime API to start the real function binaries against.

pub mod data_api;
pub mod eventbridge;
pub mod events;
pub mod moto;
pub mod provision;
pub mod quotas;
pub mod runtime_api;

pub use data_api::DataApiServer;
pub use moto::Moto;
pub use provision::{Emulator, EmulatorOptions};
