//! The audit record through the functions against the emulator: each act is an event of the
//! stack's own log group, as CloudWatch Logs keeps it.

use super::{Harness, ALICE, BOB};
use export_api::{Accepted, AuditKind, AuditRecord};
use serde_json::json;

/// Every record in the emulated stack's audit log group.
async fn records(h: &Harness) -> Vec<AuditRecord> {
    let mut events = Vec::new();
    let mut pages = h
        .emulator
        .clients
        .logs
        .filter_log_events()
        .log_group_name(&h.emulator.audit_group)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        events.extend(page.unwrap().events.unwrap_or_default());
    }
    events
        .iter()
        .map(|e| serde_json::from_str(e.message().unwrap()).unwrap())
        .collect()
}

#[tokio::test]
async fn the_functions_record_every_read_in_the_audit_log_group() {
    let h = Harness::start().await;
    let reply = h
        .submit(
            ALICE,
            &json!({"dataset": "product_detail", "params": {"sku": "FLOWER12"}}),
        )
        .await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let id = reply.read::<Accepted>().request_id;
    h.run_until_done(&id).await;
    let view = h.status_of("status-get-export.json", &id, ALICE).await;
    assert_eq!(view.status, 200);
    // A partner asking for an internal dataset: refused, and on record.
    let refused = h
        .submit(
            BOB,
            &json!({"dataset": "customers", "params": {"ids": [1]}}),
        )
        .await;
    assert_eq!(refused.status, 400);

    let records = records(&h).await;
    let id = id.as_str();
    let ours = |kind: AuditKind| {
        records
            .iter()
            .filter(move |r| r.kind == kind && r.request_id.as_deref() == Some(id))
    };
    assert_eq!(ours(AuditKind::Export).count(), 1, "{records:#?}");
    let ended: Vec<_> = ours(AuditKind::ExportEnded).collect();
    assert_eq!(ended.len(), 1, "{records:#?}");
    assert_eq!(ended[0].outcome, "succeeded");
    assert!(ended[0].statement_id.is_some() && ended[0].bytes.is_some());
    // Mailed, and handed out by the status route.
    let links: Vec<&str> = ours(AuditKind::Link).map(|r| r.outcome.as_str()).collect();
    assert!(
        links.contains(&"emailed") && links.contains(&"issued"),
        "{links:?}"
    );
    let bobs = records
        .iter()
        .find(|r| r.caller == BOB && r.kind == AuditKind::Export)
        .expect("bob's refused export on record");
    assert_eq!(bobs.outcome, "refused");
    assert_eq!(bobs.code.as_deref(), Some("unknown_dataset"));
}
