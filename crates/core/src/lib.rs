//! The export API's core: domain, catalogue, ports, services and HTTP handlers.
//!
//! Nothing here knows AWS or any embedded engine: adapters implement [`ports`], and the
//! Lambda functions and the local stack both wire the same services and routers.

pub mod access;
pub mod archive;
pub mod catalog;
pub mod clock;
pub mod domain;
pub mod error;
pub mod http;
pub mod identity;
pub mod messages;
pub mod page;
pub mod ports;
pub mod schedule;
pub mod service;
pub mod settings;
pub mod sql;
#[cfg(feature = "testing")]
pub mod testing;
pub mod webhook;

pub use catalog::Catalog;
pub use error::ApiError;
