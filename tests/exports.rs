//! Exports in every format, checked against the warehouse's own answer to the same query.

use crate::common::*;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use export_api::{JobStatus, JobView};
use export_client::unpack::unpack;
use export_core::catalog::Catalog;
use serde_json::{json, Value};

/// The rows the warehouse itself returns for the export, as CSV text with a header.
async fn expected_csv(stack: &TestStack, dataset: &str, params: &Value) -> String {
    let catalog = Catalog::load_dir(&repo().join("sql/catalog")).unwrap();
    let select = catalog
        .get(dataset)
        .unwrap()
        .render(params.as_object().unwrap())
        .unwrap();
    let ctx = export_local::warehouse::redshift_session().unwrap();
    export_local::tables::load_schema(&ctx, &repo().join("sql/schema.sql"))
        .await
        .unwrap();
    export_local::tables::load_tpch(&ctx, &stack.dir.path().join("warehouse"), stack.scale)
        .await
        .unwrap();
    let batches = ctx.sql(&select).await.unwrap().collect().await.unwrap();
    csv_of(&batches)
}

fn csv_of(batches: &[RecordBatch]) -> String {
    let mut out = Vec::new();
    {
        let mut writer = datafusion::arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(&mut out);
        for batch in batches {
            writer.write(batch).unwrap();
        }
    }
    String::from_utf8(out).unwrap()
}

/// Joins CSV parts, keeping the first part's header only.
fn join_csv(parts: &[String]) -> String {
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        let body = if i == 0 {
            part.as_str()
        } else {
            part.split_once('\n').map_or("", |(_, rest)| rest)
        };
        out.push_str(body);
    }
    out
}

async fn run_export(
    stack: &TestStack,
    request: Value,
) -> (JobView, Vec<export_client::unpack::ArchiveFile>) {
    let id = submit_ok(&stack.alice, request).await;
    let status = wait_done(&stack.alice, &id).await;
    assert_eq!(status.summary.status, JobStatus::Succeeded, "{status:?}");
    let link = stack.alice.download_link(&id).await.unwrap();
    let files = unpack(&stack.alice.fetch(&link).await.unwrap()).unwrap();
    (status, files)
}

#[tokio::test]
async fn every_format_matches_the_warehouse() {
    let stack = start().await;
    let params = json!({"ship_from": "1995-01-01", "ship_to": "1995-01-31"});
    let expected = expected_csv(&stack, "shipped_lineitems", &params).await;
    let expected_rows = expected.lines().count() - 1;
    assert!(
        expected_rows > 100,
        "the range should hold a fair number of rows, got {expected_rows}"
    );

    for (compression, archive) in [("none", "zip"), ("gzip", "tar.gz"), ("zstd", "zip")] {
        let (status, files) = run_export(&stack, json!({"dataset": "shipped_lineitems", "params": params, "compression": compression, "archive": archive})).await;
        assert_eq!(status.summary.rows, Some(expected_rows as u64));
        let parts: Vec<String> = files
            .iter()
            .map(|f| String::from_utf8(f.contents.clone()).unwrap())
            .collect();
        assert!(
            files.iter().all(|f| f.name.ends_with(".csv")),
            "{:?}",
            files.iter().map(|f| &f.name).collect::<Vec<_>>()
        );
        assert_eq!(join_csv(&parts), expected, "csv/{compression}/{archive}");
    }

    let (_, files) = run_export(
        &stack,
        json!({"dataset": "shipped_lineitems", "params": params, "format": "parquet"}),
    )
    .await;
    let mut batches = Vec::new();
    for file in &files {
        assert!(file.name.ends_with(".parquet"));
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(file.contents.clone()))
                .unwrap()
                .build()
                .unwrap();
        batches.extend(reader.map(Result::unwrap));
    }
    assert_eq!(csv_of(&batches), expected, "parquet");

    let (_, files) = run_export(&stack, json!({"dataset": "shipped_lineitems", "params": params, "format": "json", "compression": "gzip"})).await;
    let lines: Vec<Value> = files
        .iter()
        .flat_map(|f| {
            String::from_utf8(f.contents.clone())
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(lines.len(), expected_rows);
    let expected_keys: Vec<i64> = expected
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    let got_keys: Vec<i64> = lines
        .iter()
        .map(|l| l["l_orderkey"].as_i64().unwrap())
        .collect();
    assert_eq!(
        got_keys, expected_keys,
        "json rows in the warehouse's order"
    );
    assert!(lines[0]["l_shipdate"]
        .as_str()
        .unwrap()
        .starts_with("1995-01"));
    stack.stack.stop().await;
}

#[tokio::test]
async fn a_large_export_is_split_into_parts_and_packaged_whole() {
    let dir = tempfile::tempdir().unwrap();
    // About 9 MB of CSV at this scale: more than one part at Redshift's smallest MAXFILESIZE.
    let mut config = config_at_scale(&dir, 0.02);
    config.max_file_size_mb = 5;
    let stack = start_with(dir, config).await;
    let params = json!({"ship_from": "1992-01-01", "ship_to": "1998-12-31"});
    let expected = expected_csv(&stack, "shipped_lineitems", &params).await;
    let (status, files) = run_export(
        &stack,
        json!({"dataset": "shipped_lineitems", "params": params}),
    )
    .await;
    assert!(
        files.len() >= 2,
        "expected several parts above 5 MB, got {}",
        files.len()
    );
    assert_eq!(
        status.summary.rows,
        Some(expected.lines().count() as u64 - 1)
    );
    let parts: Vec<String> = files
        .iter()
        .map(|f| String::from_utf8(f.contents.clone()).unwrap())
        .collect();
    assert_eq!(join_csv(&parts), expected);
    stack.stack.stop().await;
}

#[tokio::test]
async fn parameter_values_full_of_sql_syntax_match_exactly_their_rows() {
    let stack = start().await;
    for (sku, product_id) in [
        ("O'NEIL\\7", Some(90001)),
        ("--;/*x*/", Some(90002)),
        ("Bläumchen", Some(90003)),
        ("x' OR '1'='1", None),
        ("FLOWER12' --", None),
        ("\\", None),
    ] {
        let (status, files) = run_export(
            &stack,
            json!({"dataset": "product_detail", "params": {"sku": sku}}),
        )
        .await;
        let text = String::from_utf8(files[0].contents.clone()).unwrap();
        let rows: Vec<&str> = text.lines().skip(1).collect();
        match product_id {
            Some(id) => {
                assert_eq!(status.summary.rows, Some(1), "{sku}: {text}");
                assert!(rows[0].contains(&format!(",{id},")), "{sku}: {text}");
            }
            None => assert!(rows.is_empty(), "{sku} must match nothing: {text}"),
        }
    }
    stack.stack.stop().await;
}

#[tokio::test]
async fn history_is_ordered_and_listing_is_newest_first() {
    let stack = start().await;
    let first = submit_ok(
        &stack.alice,
        json!({"dataset": "product_detail", "params": {"sku": "FLOWER13"}}),
    )
    .await;
    let second = submit_ok(
        &stack.alice,
        json!({"dataset": "customers", "params": {"ids": [7, 8]}}),
    )
    .await;
    wait_done(&stack.alice, &first).await;
    wait_done(&stack.alice, &second).await;
    let events = stack.alice.events(&first).await.unwrap();
    let events = events.events;
    let steps: Vec<&str> = events.iter().map(|e| e.step.as_str()).collect();
    assert_eq!(
        steps,
        ["submitted", "started", "finished", "packaged", "notified"]
    );
    let times: Vec<i64> = events.iter().map(|e| e.at).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");

    let status = stack.alice.status(&first).await.unwrap();
    assert!(status.download_url.unwrap().contains("/objects/"));
    assert!(status.timings.started_at.unwrap() >= status.summary.created_at);

    let page = stack.alice.jobs(Some(1), None).await.unwrap();
    assert_eq!(page.jobs[0].request_id, second);
    let cursor = page.next_cursor.unwrap();
    let next = stack.alice.jobs(Some(1), Some(&cursor)).await.unwrap();
    assert_eq!(next.jobs[0].request_id, first);
    assert!(next.next_cursor.is_none());

    let datasets = stack.alice.datasets().await.unwrap().datasets;
    let names: Vec<&str> = datasets.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "customers",
            "product_detail",
            "shipped_lineitems",
            "supplier_shipments"
        ]
    );
    stack.stack.stop().await;
}

#[tokio::test]
async fn compatibility_routes_answer_like_the_original_sample() {
    let stack = start().await;
    let reply = stack
        .alice
        .send(
            http::Method::POST,
            "/product",
            Some(&json!({"sku": "FLOWER12"})),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    let id = reply.json().unwrap()["RequestId"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_done(&stack.alice, &id).await;
    let latest = stack
        .alice
        .send(
            http::Method::GET,
            "/product",
            None,
            &[("requestid", &id), ("type", "latest")],
        )
        .await
        .unwrap()
        .ok_json()
        .unwrap();
    assert_eq!(latest["Status"], "SUCCEEDED");
    let all = stack
        .alice
        .send(
            http::Method::GET,
            "/product",
            None,
            &[("requestid", &id), ("type", "all")],
        )
        .await
        .unwrap()
        .ok_json()
        .unwrap();
    assert_eq!(all.as_array().unwrap().len(), 5);
    let bad = stack
        .alice
        .send(
            http::Method::POST,
            "/product",
            Some(&json!({"sku": "FLOWER12", "createdate": "yesterday"})),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json().unwrap()["error"]["field"], "createdate");
    stack.stack.stop().await;
}
