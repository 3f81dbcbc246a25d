//! Running one UNLOAD: its text parsed as Redshift would get it, its SELECT run in DataFusion
//! (read-only), the rows streamed into part files, then the manifest.

use super::manifest::manifest_json;
use super::parts::PartWriter;
use super::unload::parse_unload;
use bytes::Bytes;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::context::{SQLOptions, SessionContext};
use export_core::domain::ObjectRef;
use export_core::ports::{ObjectStore, PortError};
use futures::StreamExt;
use std::sync::Arc;

/// The slices of the emulated cluster: each writes its own files under PARALLEL ON.
pub const SLICES: usize = 4;

/// Runs the UNLOAD `sql`: returns the rows written, or Redshift-like error text. `resumed`
/// (the same statement carried on after a restart) may replace the files it wrote before.
pub async fn unload(
    ctx: &SessionContext,
    objects: &dyn ObjectStore,
    sql: &str,
    resumed: bool,
) -> Result<u64, String> {
    let plan = parse_unload(sql)?;
    export_core::sql::parse_query(&plan.query)
        .map_err(|e| format!("ERROR: the UNLOAD query is not a SELECT: {e}"))?;
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let logical = export_dialect::plan(ctx, &plan.query, options).await?;
    let frame = ctx
        .execute_logical_plan(logical)
        .await
        .map_err(|e| format!("ERROR: {e}"))?;
    let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
    let mut stream = frame
        .execute_stream()
        .await
        .map_err(|e| format!("ERROR: {e}"))?;
    // "By default, UNLOAD writes data in parallel to multiple files, according to the number
    // of slices in the cluster"; with PARALLEL OFF "serially, sorted absolutely according to
    // the ORDER BY clause" (UNLOAD). Here the batches are dealt to the slices in turn, so an
    // ordered result holds its order only within each file, as on a cluster.
    let slices = if plan.parallel { SLICES } else { 1 };
    let mut writers: Vec<PartWriter> = (0..slices)
        .map(|slice| PartWriter::new(objects, &plan, schema.clone(), slice))
        .collect();
    // "By default, UNLOAD fails if it finds files that it would possibly overwrite. If
    // ALLOWOVERWRITE is specified, UNLOAD overwrites existing files, including the manifest
    // file." (UNLOAD)
    if !plan.allow_overwrite && !resumed {
        let mut keys: Vec<String> = writers.iter().map(PartWriter::first_part_key).collect();
        if plan.manifest.is_some() {
            keys.push(format!("{}manifest", plan.target.key));
        }
        for key in keys {
            match objects.get(&ObjectRef::new(&plan.target.bucket, key)).await {
                Err(PortError::NotFound(_)) => {}
                Ok(_) => return Err("ERROR: Specified unload destination on S3 is not empty. Consider using a different bucket / prefix, manually removing the target files in S3, or using the ALLOWOVERWRITE option.".into()),
                Err(e) => return Err(format!("ERROR: reading the UNLOAD target failed: {e}")),
            }
        }
    }
    let mut dealt = 0;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| format!("ERROR: {e}"))?;
        if batch.num_rows() == 0 {
            continue;
        }
        writers[dealt % slices]
            .write(&batch)
            .await
            .map_err(|e| format!("ERROR: writing to S3 failed: {e}"))?;
        dealt += 1;
    }
    let mut entries = Vec::new();
    for writer in writers {
        let lone = dealt == 0 && entries.is_empty();
        entries.extend(
            writer
                .finish(lone)
                .await
                .map_err(|e| format!("ERROR: writing to S3 failed: {e}"))?,
        );
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use export_core::testing::MemoryObjectStore;

    /// The data rows of every part the manifest lists, in its order.
    fn rows_in_manifest_order(objects: &MemoryObjectStore, prefix: &str) -> Vec<i64> {
        let manifest = objects
            .read(&ObjectRef::new("b", format!("{prefix}manifest")))
            .expect("a manifest");
        let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
        let mut rows = Vec::new();
        for entry in manifest["entries"].as_array().unwrap() {
            let object = ObjectRef::parse_s3_url(entry["url"].as_str().unwrap()).unwrap();
            let text = String::from_utf8(objects.read(&object).unwrap().to_vec()).unwrap();
            rows.extend(text.lines().skip(1).map(|l| l.parse::<i64>().unwrap()));
        }
        rows
    }

    #[tokio::test]
    async fn parallel_unloads_write_a_file_per_slice_ordered_within_each_only() {
        let ctx = crate::warehouse::redshift_session().unwrap();
        let objects = MemoryObjectStore::default();
        // Several record batches' worth of rows, in descending order.
        let select = "SELECT value AS n FROM generate_series(1, 40000) ORDER BY value DESC";
        let statement = |prefix: &str, parallel: &str| {
            format!(
                "UNLOAD ('{select}') TO 's3://b/{prefix}' IAM_ROLE default FORMAT AS CSV HEADER MANIFEST VERBOSE {parallel}"
            )
        };
        let sorted: Vec<i64> = (1..=40000).rev().collect();

        assert_eq!(
            unload(&ctx, &objects, &statement("on/", ""), false).await,
            Ok(40000)
        );
        let files = objects.keys("b", "on/");
        assert!(
            files.iter().any(|k| k.starts_with("on/0001_part_")),
            "more than one slice wrote: {files:?}"
        );
        let rows = rows_in_manifest_order(&objects, "on/");
        assert_eq!(rows.len(), 40000);
        assert_ne!(
            rows, sorted,
            "files of several slices do not keep a global order"
        );

        assert_eq!(
            unload(&ctx, &objects, &statement("off/", "PARALLEL OFF"), false).await,
            Ok(40000)
        );
        assert!(objects
            .keys("b", "off/")
            .iter()
            .all(|k| !k.starts_with("off/0001")));
        assert_eq!(rows_in_manifest_order(&objects, "off/"), sorted);
    }

    #[tokio::test]
    async fn a_second_unload_into_a_used_target_fails_unless_it_may_overwrite() {
        let ctx = crate::warehouse::redshift_session().unwrap();
        let objects = MemoryObjectStore::default();
        let sql = |options: &str| {
            format!("UNLOAD ('SELECT 1 AS n') TO 's3://b/used/' IAM_ROLE default FORMAT AS CSV HEADER MANIFEST VERBOSE {options}")
        };
        assert_eq!(unload(&ctx, &objects, &sql(""), false).await, Ok(1));
        let refused = unload(&ctx, &objects, &sql(""), false).await.unwrap_err();
        assert!(refused.contains("is not empty"), "{refused}");
        assert_eq!(
            unload(&ctx, &objects, &sql("ALLOWOVERWRITE"), false).await,
            Ok(1)
        );
        // The same statement carried on after a restart replaces its own parts.
        assert_eq!(unload(&ctx, &objects, &sql(""), true).await, Ok(1));
    }
}
