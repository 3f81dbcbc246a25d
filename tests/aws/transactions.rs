//! The control table's transactions when DynamoDB's answer is lost on the way back: the write
//! was applied, the SDK tries again, and the retry must not be read as a lost race.
//!
//! "TransactWriteItems" (Amazon DynamoDB API Reference) makes a call with a
//! `ClientRequestToken` idempotent for ten minutes: a repeat with the same token and
//! parameters succeeds without applying anything again. The SDK fills the token once per call
//! and sends it with every attempt of that call; the emulator keeps tokens as DynamoDB does
//! (`moto_fidelity.py`).

use super::Harness;
use aws_sdk_dynamodb::config::interceptors::BeforeDeserializationInterceptorContextMut;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use export_aws::dynamodb::DynamoControlTable;
use export_core::domain::{JobEvent, JobStatus, JobUpdate, Owner, Transition};
use export_core::ports::{ControlTable, CreateOutcome, SavedCheckpoint};
use export_core::testing::conformance::{queued_job, steps};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Turns the answers of the next `remaining` transactions into a 500, after DynamoDB applied
/// them: what a caller sees when a connection drops on the way back.
#[derive(Clone, Debug, Default)]
struct LoseAnswers {
    remaining: Arc<AtomicUsize>,
    lost: Arc<AtomicUsize>,
}

impl LoseAnswers {
    fn lose_next(&self, count: usize) {
        self.remaining.store(count, Ordering::SeqCst);
    }
}

impl Intercept for LoseAnswers {
    fn name(&self) -> &'static str {
        "LoseAnswers"
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _config: &mut ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        let take = self
            .remaining
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if take.is_ok() {
            self.lost.fetch_add(1, Ordering::SeqCst);
            let response = context.response_mut();
            *response.status_mut() = 500u16.try_into().expect("a status");
            *response.body_mut() =
                r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"the answer was lost"}"#
                    .into();
        }
        Ok(())
    }
}

fn event(at: i64, step: &str) -> JobEvent {
    JobEvent::new(at, step, "ok", step.to_owned())
}

#[tokio::test]
async fn a_transaction_whose_answer_is_lost_is_not_read_as_a_lost_race() {
    let h = Harness::start().await;
    let lose = LoseAnswers::default();
    let config = h
        .emulator
        .clients
        .dynamodb
        .config()
        .to_builder()
        .interceptor(lose.clone())
        .build();
    let table = DynamoControlTable::new(
        aws_sdk_dynamodb::Client::from_conf(config),
        &h.emulator.table,
        Duration::from_secs(86_400),
    );
    let owner = Owner("arn:aws:iam::123456789012:user/partner-alice".into());
    let id = uuid::Uuid::new_v4().to_string();

    // The job is recorded although the first answer was lost: not "request id taken".
    lose.lose_next(1);
    let created = table
        .create_job(
            &queued_job(&id, &owner, 1_000),
            &event(1_000, "submitted"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(created, CreateOutcome::Created);

    // The move applies once and says so, with one event.
    lose.lose_next(1);
    let update = JobUpdate {
        statement_id: Some("s1".into()),
        unload_attempt: Some(1),
        ..JobUpdate::default()
    };
    assert!(table
        .transition(&id, Transition::START, &update, &event(1_500, "started"))
        .await
        .unwrap());
    let job = table.get_job(&id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Running);
    assert_eq!(steps(&table, &id).await, ["submitted", "started"]);
    assert_eq!(
        lose.lost.load(Ordering::SeqCst),
        2,
        "two answers were lost so far"
    );

    // A packaging checkpoint saved with its answer lost counts as saved.
    assert!(table
        .transition(
            &id,
            Transition::FINISH,
            &JobUpdate::default(),
            &event(2_000, "finished")
        )
        .await
        .unwrap());
    lose.lose_next(1);
    let checkpoint = SavedCheckpoint {
        seq: 1,
        body: "{}".into(),
    };
    assert!(table
        .save_checkpoint(&id, 0, &checkpoint, 2_200)
        .await
        .unwrap());
    let saved = table.checkpoint(&id).await.unwrap().unwrap();
    assert_eq!((saved.seq, saved.body), (checkpoint.seq, checkpoint.body));
    assert_eq!(
        lose.lost.load(Ordering::SeqCst),
        3,
        "three answers were lost"
    );

    // The same move again is a different call, with a token of its own: it loses, as a
    // redelivered message's move must.
    assert!(!table
        .transition(
            &id,
            Transition::START,
            &update,
            &event(2_300, "started again")
        )
        .await
        .unwrap());
}
