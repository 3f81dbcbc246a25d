//! Quotas on the local stack, over HTTP: each refusal a 429 with `Retry-After` and a code
//! naming the quota, `GET /quota` showing limits and use, recovery once the quota allows it,
//! and the admin listing (`GET /exports?owner=`) open to the policy's admins only.

use crate::common::{config, eventually, start_with, submit_ok, wait_done, SqlSource};
use export_api::{ErrorBody, JobStatus};
use export_client::Refused;
use http::Method;
use serde_json::json;
use std::time::Duration;

/// The shipped callers, with quotas for the suppliers and the internal group as admins.
const POLICY: &str = r#"
[[group]]
name = "suppliers"
quotas = { unfinished_exports = 1, exports_per_day = 50, lookups_per_second = 1, lookup_burst = 1 }

[[group]]
name = "internal"
admin = true

[[caller]]
owner = "arn:aws:iam::000000000000:user/alice"
groups = ["internal"]
attributes = { supplier = ["1", "2", "3"] }

[[caller]]
owner = "arn:aws:iam::000000000000:user/bob"
groups = ["suppliers"]
attributes = { supplier = "7" }
"#;

#[tokio::test]
async fn each_quota_refuses_with_429_and_lets_go_when_it_allows() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    let sql = crate::common::sql_dir_with(&[], &[]);
    std::fs::write(sql.path().join("access.toml"), POLICY).unwrap();
    config.sql = SqlSource::Dir(sql.path().to_owned());
    // Long enough that bob's first export is unfinished when he submits the second.
    config.statement_delay = Duration::from_millis(1500);
    let stack = start_with(dir, config).await;
    let export = json!({"dataset": "product_detail", "params": {"sku": "FLOWER12"}});

    let first = submit_ok(&stack.bob, export.clone()).await;
    let refused = stack
        .bob
        .send(Method::POST, "/exports", Some(&export), &[])
        .await
        .unwrap();
    assert_eq!(refused.status, 429, "{:?}", refused.body);
    assert_eq!(refused.headers["retry-after"], "30");
    let body: ErrorBody = serde_json::from_slice(&refused.body).unwrap();
    assert_eq!(body.error.code, "quota_unfinished_exports");
    // Nothing of the refused request was kept.
    assert_eq!(stack.bob.jobs(None, None).await.unwrap().jobs.len(), 1);

    let quota = stack.bob.quota().await.unwrap();
    assert_eq!(
        (
            quota.unfinished_exports.limit,
            quota.unfinished_exports.used
        ),
        (Some(1), 1)
    );
    assert_eq!(
        (quota.exports_per_day.limit, quota.exports_per_day.used),
        (Some(50), 1)
    );
    assert_eq!(quota.bytes_per_day.limit, None);
    assert_eq!(
        (quota.lookups_per_second, quota.lookup_burst),
        (Some(1), Some(1))
    );
    // Alice has no quotas: none shown, none counted against her.
    let alices = stack.alice.quota().await.unwrap();
    assert_eq!(alices.unfinished_exports.limit, None);

    // One lookup a second.
    let path = export_client::lookup_path("product_detail", &[("sku", "FLOWER12")]);
    stack
        .bob
        .lookup("product_detail", &[("sku", "FLOWER12")])
        .await
        .unwrap();
    let too_soon = stack
        .bob
        .send(Method::GET, &path, None, &[("cache-control", "no-cache")])
        .await
        .unwrap();
    assert_eq!(too_soon.status, 429);
    assert_eq!(too_soon.headers["retry-after"], "1");
    let body: ErrorBody = serde_json::from_slice(&too_soon.body).unwrap();
    assert_eq!(body.error.code, "quota_lookups_per_second");
    eventually(
        "the lookup rate to allow one more",
        Duration::from_secs(10),
        || async {
            stack
                .bob
                .lookup("product_detail", &[("sku", "FLOWER12")])
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        },
    )
    .await;

    // Only an admin lists another caller's jobs.
    let bob_arn = "arn:aws:iam::000000000000:user/bob";
    let alice_arn = "arn:aws:iam::000000000000:user/alice";
    let listed = stack.alice.jobs_of(bob_arn, None, None).await.unwrap();
    assert_eq!(listed.jobs.len(), 1);
    assert_eq!(listed.jobs[0].request_id, first);
    let not_admin = stack.bob.jobs_of(alice_arn, None, None).await.unwrap_err();
    let not_admin = not_admin.downcast_ref::<Refused>().unwrap();
    assert_eq!(not_admin.status, 403);
    assert_eq!(not_admin.error.field.as_deref(), Some("owner"));

    // Once the first has ended, bob may submit again.
    assert_eq!(
        wait_done(&stack.bob, &first).await.summary.status,
        JobStatus::Succeeded
    );
    let again = submit_ok(&stack.bob, export).await;
    wait_done(&stack.bob, &again).await;
    let quota = stack.bob.quota().await.unwrap();
    assert_eq!(quota.unfinished_exports.used, 0);
    assert_eq!(quota.exports_per_day.used, 2);
    assert!(quota.bytes_per_day.used > 0);
}
