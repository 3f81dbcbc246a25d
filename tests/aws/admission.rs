//! Admission through the functions against the emulator: with one slot, one statement runs;
//! the other job waits QUEUED with its place shown by the status function, and starts when
//! the poller sees the first statement end, handed the slot without any polling.

use super::{Harness, ALICE, BOB};
use crate::common::eventually;
use export_api::JobView;
use export_aws::functions;
use export_core::domain::{JobStatus, Owner};
use export_core::service::{
    Admission, AdmissionSettings, ExportRequest, Poller, Processor, Submissions,
};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

fn one_slot(admission: &Admission) -> Admission {
    Admission {
        settings: AdmissionSettings { slots: Some(1) },
        ..admission.clone()
    }
}

#[tokio::test]
async fn one_slot_one_statement_and_the_slot_handed_on() {
    let h = Harness::start().await;
    let processor = Processor {
        admission: one_slot(&h.processor.admission),
        ..(*h.processor).clone()
    };
    let poller = Poller {
        admission: one_slot(&h.poller.admission),
        ..(*h.poller).clone()
    };
    // The receiver, as the function builds it, with the same one slot.
    let mut env = h.emulator.env();
    let base = Arc::try_unwrap(functions::receiver(&mut env, &h.emulator.clients))
        .ok()
        .expect("one owner");
    let receiver = Submissions {
        admission: one_slot(&base.admission),
        ..base
    };
    let mut jobs = Vec::new();
    for (caller, sku) in [(ALICE, "FLOWER12"), (BOB, "FLOWER13")] {
        let request =
            ExportRequest::read(json!({"dataset": "product_detail", "params": {"sku": sku}}))
                .unwrap();
        let accepted = receiver
            .submit(&Owner(caller.into()), request, None)
            .await
            .unwrap();
        jobs.push((caller, accepted.request_id));
    }
    // Only the admitted job's start is queued: the other's comes with its slot.
    let requests = h
        .receive(&h.emulator.requests_url, Duration::from_secs(1))
        .await;
    assert_eq!(requests.len(), 1);
    h.deliver(&processor, &h.emulator.requests_url, requests)
        .await;

    let mut running = Vec::new();
    let mut waiting = Vec::new();
    for (caller, id) in &jobs {
        let view: JobView = h
            .status_of("status-get-export.json", id, caller)
            .await
            .read();
        match view.summary.status {
            JobStatus::Running => running.push(id.clone()),
            JobStatus::Queued => {
                assert_eq!(view.queue_position, Some(0), "{view:?}");
                waiting.push(id.clone());
            }
            other => panic!("{id} is {other}"),
        }
    }
    assert_eq!((running.len(), waiting.len()), (1, 1));

    // Both end, the second started only by the first's end.
    eventually("both jobs done", Duration::from_secs(90), || async {
        let mut states = Vec::new();
        for (_, id) in &jobs {
            let job = h.job(id).await;
            states.push((job.status, job.notified_at.is_some()));
        }
        if states
            .iter()
            .all(|(s, notified)| s.is_terminal() && *notified)
        {
            return Ok(());
        }
        let requests = h.receive(&h.emulator.requests_url, Duration::ZERO).await;
        if !requests.is_empty() {
            h.deliver(&processor, &h.emulator.requests_url, requests)
                .await;
        }
        let polls = h
            .receive(&h.emulator.polls_url, Duration::from_secs(1))
            .await;
        if !polls.is_empty() {
            h.deliver(&poller, &h.emulator.polls_url, polls).await;
        }
        Err(states)
    })
    .await;
    let first = h.job(&running[0]).await;
    let second = h.job(&waiting[0]).await;
    assert_eq!(first.status, JobStatus::Succeeded);
    assert_eq!(second.status, JobStatus::Succeeded);
    let at = |events: &[export_core::domain::JobEvent], step: &str| {
        events
            .iter()
            .find(|e| e.step == step)
            .map(|e| e.at)
            .unwrap_or_else(|| panic!("no {step} in {events:?}"))
    };
    use export_core::ports::{AdmissionLedger, ControlTable};
    let table = export_aws::dynamodb::DynamoControlTable::new(
        h.emulator.clients.dynamodb.clone(),
        &h.emulator.table,
        Duration::from_secs(86_400),
    );
    let first_events = table.events(&first.request_id).await.unwrap();
    let second_events = table.events(&second.request_id).await.unwrap();
    assert!(
        at(&first_events, "finished") <= at(&second_events, "started"),
        "{first_events:?}\n{second_events:?}"
    );
    assert!(second_events.iter().any(|e| e.step == "admission"));
    assert!(
        table.holders().await.unwrap().is_empty(),
        "every slot freed"
    );
}
