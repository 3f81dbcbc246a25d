//! The four services, one per Lambda function, each holding only the ports it uses.

pub mod poll;
pub mod process;
pub mod query;
pub mod submit;

pub use poll::Poller;
pub use process::{Processor, Retry};
pub use query::Queries;
pub use submit::{ExportRequest, Submissions, Submitted};
