//! The sample events in `events/`, for the tests and the benchmark to feed the functions.

use anyhow::Context;
use serde_json::Value;
use std::path::PathBuf;

/// The request id the sample events carry; callers put a real one in its place.
pub const SAMPLE_REQUEST_ID: &str = "6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f";

pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../events")
}

/// The sample event `name`, with the sample request id replaced by `request_id`.
pub fn sample(name: &str, request_id: &str) -> anyhow::Result<Value> {
    let path = dir().join(name);
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    Ok(serde_json::from_str(
        &text.replace(SAMPLE_REQUEST_ID, request_id),
    )?)
}
