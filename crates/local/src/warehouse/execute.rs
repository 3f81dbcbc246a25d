//! Running one UNLOAD: its text parsed as Redshift would get it, its SELECT run in DataFusion
//! (read-only), the rows streamed into part files, then the manifest.

use super::manifest::manifest_json;
use super::parts::PartWriter;
use super::unload::parse_unload;
use bytes::Bytes;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::context::{SQLOptions, SessionContext};
use export_core::domain::ObjectRef;
use export_core::ports::ObjectStore;
use futures::StreamExt;
use std::sync::Arc;

/// Runs the UNLOAD `sql`: returns the rows written, or Redshift-like error text.
pub async fn unload(
    ctx: &SessionContext,
    objects: &dyn ObjectStore,
    sql: &str,
) -> Result<u64, String> {
    let plan = parse_unload(sql)?;
    export_core::sql::parse_query(&plan.query)
        .map_err(|e| format!("ERROR: the UNLOAD query is not a SELECT: {e}"))?;
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let frame = ctx
        .sql_with_options(&plan.query, options)
        .await
        .map_err(|e| format!("ERROR: {e}"))?;
    let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
    let mut stream = frame
        .execute_stream()
        .await
        .map_err(|e| format!("ERROR: {e}"))?;
    let mut parts = PartWriter::new(objects, &plan, schema.clone());
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| format!("ERROR: {e}"))?;
        parts
            .write(&batch)
            .await
            .map_err(|e| format!("ERROR: writing to S3 failed: {e}"))?;
    }
    let entries = parts
        .finish()
        .await
        .map_err(|e| format!("ERROR: writing to S3 failed: {e}"))?;
    let rows = entries.iter().map(|e| e.rows).sum();
    if let Some(verbose) = plan.manifest {
        let manifest = manifest_json(&entries, &schema, verbose);
        let object = ObjectRef::new(&plan.target.bucket, format!("{}manifest", plan.target.key));
        objects
            .put(
                &object,
                Bytes::from(manifest.to_string()),
                "application/json",
            )
            .await
            .map_err(|e| format!("ERROR: writing the manifest failed: {e}"))?;
    }
    Ok(rows)
}
