//! The export API's wire contract: what each route reads and answers, as types.
//!
//! The core's handlers read requests into these types and answer with them; the OpenAPI
//! document (`docs/openapi.json`) is generated from them; the client returns them. A field
//! changed here changes all three, so they cannot drift apart.

mod audit;
mod delivery;
mod request;
mod response;
mod strict_json;
mod subscription;
mod vocabulary;

pub use audit::{AuditKind, AuditRecord};
pub use delivery::{
    render_key, Delivery, S3Place, WebhookNotice, WebhookSecret, WebhookTest, WebhookTestResult,
    KEY_PLACEHOLDERS, MAX_DELIVER, MAX_WEBHOOK_URL,
};
pub use request::{
    from_slice, from_value, is_email_address, BodyError, DatasetExportRequest, ExportRequest,
    FieldError, ProductRequest, MAX_NOTIFY,
};
pub use response::*;
pub use subscription::{
    SubscriptionList, SubscriptionRequest, SubscriptionRun, SubscriptionRuns, SubscriptionView,
    MAX_SUBSCRIPTIONS,
};
pub use vocabulary::{Archive, Compression, Format, JobEvent, JobStatus, Millis, ResultColumn};
