//! Quotas through the functions' own services against the emulator: the counts are items of
//! the DynamoDB control table, so a limit holds across every instance; each refusal is a 429
//! naming its quota, and stores nothing.

use super::{Harness, BOB};
use export_aws::functions;
use export_core::access::{Access, AccessPolicy};
use export_core::domain::Owner;
use export_core::service::{ExportRequest, Lookups, Submissions};
use http::StatusCode;
use serde_json::{json, Map};
use std::sync::Arc;

/// The shipped callers' entries, bob's group with one unfinished export and one lookup a
/// second.
const TIGHT: &str = r#"
[[group]]
name = "suppliers"
quotas = { unfinished_exports = 1, lookups_per_second = 1, lookup_burst = 1 }

[[caller]]
owner = "arn:aws:iam::123456789012:user/partner-bob"
groups = ["suppliers"]
attributes = { supplier = "7" }
"#;

#[tokio::test]
async fn the_functions_count_quotas_in_the_control_table() {
    let h = Harness::start().await;
    let clients = h.emulator.clients.clone();
    let mut env = h.emulator.env();
    let access = Arc::new(Access::new(
        Arc::new(export_aws::catalog::load().unwrap()),
        AccessPolicy::parse(TIGHT).unwrap(),
        None,
    ));
    // Two receivers, as two instances of the function would be.
    let receiver = |env: &mut export_aws::env::Env| Submissions {
        access: access.clone(),
        ..Arc::try_unwrap(functions::receiver(env, &clients))
            .ok()
            .expect("one owner")
    };
    let first_instance = receiver(&mut env);
    let second_instance = receiver(&mut env);
    let lookups: Lookups = Arc::try_unwrap(functions::lookups(&mut env, &clients, access.clone()))
        .ok()
        .expect("one owner");
    env.finish().unwrap();

    let bob = Owner(BOB.into());
    let request = || {
        ExportRequest::read(json!({"dataset": "product_detail", "params": {"sku": "FLOWER12"}}))
            .unwrap()
    };
    let first = first_instance.submit(&bob, request(), None).await.unwrap();
    let refused = second_instance
        .submit(&bob, request(), None)
        .await
        .unwrap_err();
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.code, "quota_unfinished_exports");
    assert_eq!(refused.retry_after, Some(30));
    // The refused request left no job behind.
    let table = export_aws::dynamodb::DynamoControlTable::new(
        clients.dynamodb.clone(),
        &h.emulator.table,
        std::time::Duration::from_secs(86_400),
    );
    use export_core::ports::ControlTable;
    let page = table.list_jobs(&bob, 10, None).await.unwrap();
    assert_eq!(page.jobs.len(), 1);

    // Cancelling the first ends its count: the next is accepted by the other instance.
    second_instance
        .cancel(&bob, &first.request_id)
        .await
        .unwrap();
    second_instance.submit(&bob, request(), None).await.unwrap();

    // One lookup a second, across instances too: the rate is an item of the table.
    let mut params = Map::new();
    params.insert("sku".into(), json!("FLOWER12"));
    lookups
        .lookup(&bob, "product_detail", &params, false)
        .await
        .unwrap();
    let too_soon = lookups
        .lookup(&bob, "product_detail", &params, false)
        .await
        .unwrap_err();
    assert_eq!(too_soon.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(too_soon.code, "quota_lookups_per_second");
}
