//! The manifest UNLOAD writes with `MANIFEST [VERBOSE]`, in Redshift's format ("UNLOAD",
//! Amazon Redshift Database Developer Guide: with VERBOSE, each entry's `meta` has its
//! `content_length` and `record_count`, and "if the HEADER option is specified, the row count
//! includes the header line"; the top-level `meta` has the totals, header lines included).

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use serde_json::json;

/// A written part, for the manifest.
pub struct PartEntry {
    pub url: String,
    pub bytes: u64,
    /// Data rows.
    pub rows: u64,
    /// Rows as the manifest counts them: with HEADER, the header line too.
    pub lines: u64,
}

/// Redshift's name for an Arrow type, for the verbose manifest's schema.
fn redshift_type(data_type: &DataType) -> serde_json::Value {
    match data_type {
        DataType::Int16 => json!({"base": "smallint"}),
        DataType::Int32 => json!({"base": "integer"}),
        DataType::Int64 => json!({"base": "bigint"}),
        DataType::Float32 => json!({"base": "real"}),
        DataType::Float64 => json!({"base": "double precision"}),
        DataType::Boolean => json!({"base": "boolean"}),
        DataType::Date32 | DataType::Date64 => json!({"base": "date"}),
        DataType::Timestamp(_, None) => json!({"base": "timestamp without time zone"}),
        DataType::Timestamp(_, Some(_)) => json!({"base": "timestamp with time zone"}),
        DataType::Decimal128(p, s) => json!({"base": "numeric", "precision": p, "scale": s}),
        _ => json!({"base": "character varying", "max_length": 65535}),
    }
}

pub fn manifest_json(
    entries: &[PartEntry],
    schema: &SchemaRef,
    verbose: bool,
) -> serde_json::Value {
    if !verbose {
        return json!({ "entries": entries.iter().map(|e| json!({"url": e.url})).collect::<Vec<_>>() });
    }
    json!({
        "entries": entries.iter().map(|e| json!({
            "url": e.url,
            "meta": { "content_length": e.bytes, "record_count": e.lines }
        })).collect::<Vec<_>>(),
        "schema": {
            "elements": schema.fields().iter().map(|f| json!({"name": f.name(), "type": redshift_type(f.data_type())})).collect::<Vec<_>>()
        },
        "meta": {
            "content_length": entries.iter().map(|e| e.bytes).sum::<u64>(),
            "record_count": entries.iter().map(|e| e.lines).sum::<u64>(),
        },
        "author": { "name": "Amazon Redshift", "version": "1.0.0" }
    })
}
