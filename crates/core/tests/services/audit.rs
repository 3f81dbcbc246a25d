//! The audit record of each route, refused ones included; and an answer the record cannot be
//! written for is not given.

use super::*;
use export_api::{AuditKind, AuditRecord};
use export_core::domain::Owner;
use export_core::ports::PortError;
use export_core::service::ExportRequest;
use export_core::testing::World;
use http::StatusCode;
use serde_json::Map;

fn of_kind(world: &World, kind: AuditKind) -> Vec<AuditRecord> {
    world
        .audit
        .records()
        .into_iter()
        .filter(|r| r.kind == kind)
        .collect()
}

#[tokio::test]
async fn an_export_is_on_record_from_its_submission_to_its_links() {
    let world = World::new();
    let id = submit(&world, 7).await;
    let accepted = of_kind(&world, AuditKind::Export);
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].outcome, "accepted");
    assert_eq!(accepted[0].caller, ALICE);
    assert_eq!(accepted[0].dataset.as_deref(), Some("things"));
    assert_eq!(accepted[0].params["id"], json!(7));
    assert_eq!(accepted[0].request_id.as_deref(), Some(id.as_str()));

    world.deliver(QueueName::Requests).await;
    world.finish_statement(&id, &[&["7,seven"]]);
    world.announce(&id).await;
    world.deliver(QueueName::Polls).await;
    let ended = of_kind(&world, AuditKind::ExportEnded);
    assert_eq!(ended.len(), 1, "{ended:?}");
    let job = world.job(&id).await;
    assert_eq!(ended[0].outcome, "succeeded");
    assert_eq!(ended[0].rows, Some(1));
    assert_eq!(ended[0].bytes, job.bytes);
    assert_eq!(ended[0].statement_id, job.statement_id);
    // The mail carried a link: on record before it went.
    let mailed = of_kind(&world, AuditKind::Link);
    assert_eq!(mailed.len(), 1);
    assert_eq!(mailed[0].outcome, "emailed");

    // Each link handed out by the status route is on record too.
    world.queries.download_link(&job).await.unwrap();
    let links = of_kind(&world, AuditKind::Link);
    assert_eq!(links.len(), 2);
    assert_eq!(links[1].outcome, "issued");
    assert_eq!(links[1].request_id.as_deref(), Some(id.as_str()));
}

#[tokio::test]
async fn refused_exports_are_on_record_with_their_reason() {
    let world = World::new();
    let refused = world
        .submit(ALICE, json!({"dataset": "no_such", "params": {}}))
        .await
        .unwrap_err();
    assert_eq!(refused.code, "unknown_dataset");
    // A partner naming its bound parameter: refused, and what it asked is kept.
    world
        .submit(
            "partner-7",
            json!({"dataset": "supplier_things", "params": {"supplier": 9, "id": 1}}),
        )
        .await
        .unwrap_err();
    let records = of_kind(&world, AuditKind::Export);
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|r| r.outcome == "refused"));
    assert_eq!(records[0].code.as_deref(), Some("unknown_dataset"));
    assert_eq!(records[0].status, Some(400));
    assert_eq!(records[1].caller, "partner-7");
    assert_eq!(records[1].code.as_deref(), Some("bound_parameter"));
    assert_eq!(records[1].params["supplier"], json!(9));
}

#[tokio::test]
async fn a_cancelled_export_is_on_record_as_ended() {
    let world = World::new();
    let id = submit(&world, 1).await;
    world
        .submissions
        .cancel(&Owner(ALICE.into()), &id)
        .await
        .unwrap();
    let ended = of_kind(&world, AuditKind::ExportEnded);
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].outcome, "cancelled");
}

#[tokio::test]
async fn lookups_are_on_record_with_bound_values_whether_answered_cached_or_refused() {
    let world = World::new();
    let partner = Owner("partner-7".into());
    let mut params = Map::new();
    params.insert("id".into(), json!(3));
    world
        .lookups
        .lookup(&partner, "supplier_things", &params, false)
        .await
        .unwrap();
    world
        .lookups
        .lookup(&partner, "supplier_things", &params, false)
        .await
        .unwrap();
    world
        .lookups
        .lookup(&partner, "internal_things", &params, false)
        .await
        .unwrap_err();
    let records = of_kind(&world, AuditKind::Lookup);
    let outcomes: Vec<&str> = records.iter().map(|r| r.outcome.as_str()).collect();
    assert_eq!(outcomes, ["answered", "cached", "refused"]);
    // The bound supplier is the partner's, and says so.
    assert_eq!(records[0].params["supplier"], json!(7));
    assert_eq!(records[0].bound, ["supplier"]);
    assert_eq!(records[0].rows, Some(0));
    // Refused as an unknown dataset would be: the record says what was asked.
    assert_eq!(records[2].dataset.as_deref(), Some("internal_things"));
    assert_eq!(records[2].status, Some(404));
}

#[tokio::test]
async fn what_cannot_be_recorded_is_not_given() {
    let world = World::new();
    world
        .audit
        .faults
        .fail_always("record", PortError::Unavailable("log down".into()));
    let mut params = Map::new();
    params.insert("id".into(), json!(3));
    let refused = world
        .lookups
        .lookup(&Owner(ALICE.into()), "things", &params, false)
        .await
        .unwrap_err();
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    let refused = world
        .submissions
        .submit(
            &Owner(ALICE.into()),
            ExportRequest::read(json!({"dataset": "things", "params": {"id": 1}})).unwrap(),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    // Nothing of the refused export is kept, and its charge is undone.
    assert!(world.control.jobs().is_empty());
    assert!(world.queue.waiting(QueueName::Requests).is_empty());
}
