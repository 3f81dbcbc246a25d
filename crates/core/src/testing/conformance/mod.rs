//! What every control table must do, as one suite each adapter runs against its own engine
//! (the in-memory fake, SQLite, DynamoDB on the emulator). Each check makes its own jobs
//! under fresh ids and owners, so the checks can share a table with each other and with
//! other tests; timestamps are far in the past, so nothing other tests write (stamped now)
//! falls under the sweep's cutoffs here.

use crate::domain::{
    Archive, Compression, Delivery, Format, Job, JobEvent, JobStatus, JobUpdate, Millis, ObjectRef,
    Owner, Transition,
};
use crate::page::PageToken;
use crate::ports::{ControlTable, CreateOutcome, IdempotencyKey, PortError, SavedCheckpoint};

mod moves;

pub use moves::{
    checkpoints_replace_each_other_in_order_while_packaging,
    events_keep_the_order_they_were_written_in, notices_are_claimed_once,
    one_of_concurrent_transitions_wins, transitions_are_conditional_on_the_current_status,
};

/// Runs every check against `control`.
pub async fn check_control_table(control: &dyn ControlTable) {
    creates_and_reads_jobs(control).await;
    idempotency_keys_name_one_job_per_owner(control).await;
    transitions_are_conditional_on_the_current_status(control).await;
    one_of_concurrent_transitions_wins(control).await;
    events_keep_the_order_they_were_written_in(control).await;
    notices_are_claimed_once(control).await;
    lists_the_jobs_the_sweep_needs(control).await;
    pages_through_an_owner_s_jobs(control).await;
    deletes_a_job_that_never_reached_the_queue(control).await;
    checkpoints_replace_each_other_in_order_while_packaging(control).await;
}

fn fresh_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn fresh_owner() -> Owner {
    Owner(format!(
        "arn:aws:iam::123456789012:user/{}",
        uuid::Uuid::new_v4().simple()
    ))
}

/// A queued job as the receiver records it, created (and last changed) at `created_at`.
pub fn queued_job(request_id: &str, owner: &Owner, created_at: Millis) -> Job {
    let mut params = serde_json::Map::new();
    params.insert("sku".into(), "O'NEIL\\7 ünïcode".into());
    params.insert("ids".into(), serde_json::json!([1, 2, 3]));
    Job {
        request_id: request_id.into(),
        owner: owner.clone(),
        dataset: "product_detail".into(),
        params,
        format: Format::Csv,
        compression: Compression::Gzip,
        archive: Archive::TarGz,
        notify: vec!["a@example.com".into(), "b@example.com".into()],
        deliver: vec![
            Delivery::Email("c@example.com".into()),
            Delivery::Webhook("https://hooks.example/x?y=1".into()),
            Delivery::S3("s3://partner-feed/in/{date}/{request_id}.zip".into()),
        ],
        bound: vec!["ids".into()],
        status: JobStatus::Queued,
        created_at,
        updated_at: created_at,
        statement_id: None,
        unload_attempt: 0,
        priority: 1,
        turns_of: Some("suppliers".into()),
        rows: None,
        bytes: None,
        archive_object: None,
        error: None,
        notified_at: None,
        subscription_id: Some("subscription-1".into()),
    }
}

fn event(at: Millis, step: &str) -> JobEvent {
    JobEvent::new(at, step, "ok", format!("{step} at {at}"))
}

async fn create(control: &dyn ControlTable, job: &Job) {
    let outcome = control
        .create_job(job, &event(job.created_at, "submitted"), None)
        .await
        .expect("create_job");
    assert_eq!(outcome, CreateOutcome::Created, "{}", job.request_id);
}

/// The steps of the job's history, oldest first.
pub async fn steps(control: &dyn ControlTable, request_id: &str) -> Vec<String> {
    control
        .events(request_id)
        .await
        .expect("events")
        .into_iter()
        .map(|e| e.step)
        .collect()
}

/// Moves the job along `path`, each step at `at`.
async fn walk(control: &dyn ControlTable, request_id: &str, path: &[JobStatus], at: Millis) {
    let mut from = JobStatus::Queued;
    for &to in path {
        let transition = Transition::new(from, to).expect("a legal path");
        assert!(
            control
                .transition(
                    request_id,
                    transition,
                    &JobUpdate::default(),
                    &event(at, to.as_str())
                )
                .await
                .expect("transition"),
            "{request_id}: {transition}"
        );
        from = to;
    }
}

pub async fn creates_and_reads_jobs(control: &dyn ControlTable) {
    let job = queued_job(&fresh_id(), &fresh_owner(), 1_000);
    create(control, &job).await;
    assert_eq!(
        control.get_job(&job.request_id).await.unwrap(),
        Some(job.clone())
    );
    assert_eq!(steps(control, &job.request_id).await, ["submitted"]);
    assert_eq!(control.get_job(&fresh_id()).await.unwrap(), None);
    assert!(control.events(&fresh_id()).await.unwrap().is_empty());
}

pub async fn idempotency_keys_name_one_job_per_owner(control: &dyn ControlTable) {
    let owner = fresh_owner();
    let key = IdempotencyKey {
        owner: owner.clone(),
        key: "k-1".into(),
        request_digest: "d1".into(),
    };
    let first = queued_job(&fresh_id(), &owner, 1_000);
    let submitted = event(1_000, "submitted");
    assert_eq!(control.key_used(&key).await.unwrap(), None);
    assert_eq!(
        control
            .create_job(&first, &submitted, Some(&key))
            .await
            .unwrap(),
        CreateOutcome::Created
    );
    // Read without writing: the job it named, and whether it was for the same request.
    assert_eq!(
        control.key_used(&key).await.unwrap(),
        Some(CreateOutcome::KeyUsed {
            request_id: first.request_id.clone(),
            same_request: true
        })
    );
    let changed = IdempotencyKey {
        request_digest: "other".into(),
        ..key.clone()
    };
    assert_eq!(
        control.key_used(&changed).await.unwrap(),
        Some(CreateOutcome::KeyUsed {
            request_id: first.request_id.clone(),
            same_request: false
        })
    );
    // The same key again writes nothing and names the first job.
    let second = queued_job(&fresh_id(), &owner, 2_000);
    assert_eq!(
        control
            .create_job(&second, &submitted, Some(&key))
            .await
            .unwrap(),
        CreateOutcome::KeyUsed {
            request_id: first.request_id.clone(),
            same_request: true
        }
    );
    let other_request = IdempotencyKey {
        request_digest: "d2".into(),
        ..key.clone()
    };
    assert_eq!(
        control
            .create_job(&second, &submitted, Some(&other_request))
            .await
            .unwrap(),
        CreateOutcome::KeyUsed {
            request_id: first.request_id.clone(),
            same_request: false
        }
    );
    assert_eq!(control.get_job(&second.request_id).await.unwrap(), None);
    assert!(control.events(&second.request_id).await.unwrap().is_empty());
    // Keys belong to their owner: another caller's same key is a key of its own.
    let stranger = fresh_owner();
    let theirs = IdempotencyKey {
        owner: stranger.clone(),
        ..key.clone()
    };
    let third = queued_job(&fresh_id(), &stranger, 3_000);
    assert_eq!(
        control
            .create_job(&third, &submitted, Some(&theirs))
            .await
            .unwrap(),
        CreateOutcome::Created
    );
}
pub async fn lists_the_jobs_the_sweep_needs(control: &dyn ControlTable) {
    let owner = fresh_owner();
    let ids: Vec<String> = (0..6).map(|_| fresh_id()).collect();
    let [queued, running, cancelled, unnotified, notified, failed] =
        [0, 1, 2, 3, 4, 5].map(|i| ids[i].as_str());
    for (id, at) in [
        (queued, 1_000),
        (running, 1_100),
        (cancelled, 1_200),
        (unnotified, 1_300),
        (notified, 1_400),
        (failed, 1_500),
    ] {
        create(control, &queued_job(id, &owner, at)).await;
    }
    use JobStatus::*;
    walk(control, running, &[Running], 2_100).await;
    walk(control, cancelled, &[Running, Cancelled], 2_200).await;
    walk(control, unnotified, &[Running, Packaging, Succeeded], 2_300).await;
    walk(control, notified, &[Running, Packaging, Succeeded], 2_400).await;
    walk(control, failed, &[Failed], 2_500).await;
    assert!(control.claim_notification(notified, 2_450).await.unwrap());
    let fresh = queued_job(&fresh_id(), &owner, crate::clock::system_millis());
    create(control, &fresh).await;

    let ours = |jobs: Vec<Job>| -> Vec<String> {
        jobs.into_iter()
            .map(|j| j.request_id)
            .filter(|id| ids.contains(id) || *id == fresh.request_id)
            .collect()
    };
    // Oldest change first; cancelled and notified jobs are settled, the fresh one too young.
    let stuck = control.unsettled_jobs(10_000, 100).await.unwrap();
    assert_eq!(ours(stuck.clone()), [queued, running, unnotified, failed]);
    assert_eq!(
        stuck
            .iter()
            .find(|j| j.request_id == running)
            .unwrap()
            .status,
        Running
    );
    assert_eq!(
        ours(control.unsettled_jobs(2_200, 100).await.unwrap()),
        [queued, running]
    );
    assert_eq!(control.unsettled_jobs(10_000, 2).await.unwrap().len(), 2);

    // A claimed notice settles the job; a released one (the send failed) unsettles it again.
    assert!(control.claim_notification(failed, 3_000).await.unwrap());
    assert!(!ours(control.unsettled_jobs(10_000, 100).await.unwrap()).contains(&failed.to_owned()));
    // Released at 3_100: the job's last change, so a sweep looking for jobs older than that
    // leaves it for later.
    control.release_notification(failed, 3_100).await.unwrap();
    assert!(ours(control.unsettled_jobs(10_000, 100).await.unwrap()).contains(&failed.to_owned()));
    assert!(!ours(control.unsettled_jobs(3_000, 100).await.unwrap()).contains(&failed.to_owned()));
}

pub async fn pages_through_an_owner_s_jobs(control: &dyn ControlTable) {
    let owner = fresh_owner();
    // Two share a creation time: the request id breaks the tie.
    let mut jobs: Vec<Job> = [3_000, 4_000, 5_000, 5_000, 6_000]
        .iter()
        .map(|at| queued_job(&fresh_id(), &owner, *at))
        .collect();
    for job in &jobs {
        create(control, job).await;
    }
    let stranger = fresh_owner();
    create(control, &queued_job(&fresh_id(), &stranger, 7_000)).await;
    jobs.sort_by(|a, b| (b.created_at, &b.request_id).cmp(&(a.created_at, &a.request_id)));
    let expected: Vec<String> = jobs.iter().map(|j| j.request_id.clone()).collect();

    for limit in [1, 2, 5, 10] {
        let mut seen = Vec::new();
        let mut cursor: Option<PageToken> = None;
        for _ in 0..10 {
            let page = control
                .list_jobs(&owner, limit, cursor.as_ref())
                .await
                .unwrap();
            assert!(page.jobs.len() <= limit);
            seen.extend(page.jobs.iter().map(|j| j.request_id.clone()));
            match page.next {
                Some(next) => {
                    // A token survives the trip through a caller.
                    cursor = Some(PageToken::decode(&next.encode()).unwrap());
                }
                None => break,
            }
        }
        assert_eq!(seen, expected, "pages of {limit}");
    }
    let last_page = control.list_jobs(&owner, 5, None).await.unwrap();
    assert!(
        last_page.next.is_none(),
        "exactly one page's worth has no next page"
    );
    assert_eq!(
        control
            .list_jobs(&stranger, 10, None)
            .await
            .unwrap()
            .jobs
            .len(),
        1
    );
    assert!(control
        .list_jobs(&fresh_owner(), 10, None)
        .await
        .unwrap()
        .jobs
        .is_empty());
}

pub async fn deletes_a_job_that_never_reached_the_queue(control: &dyn ControlTable) {
    let owner = fresh_owner();
    let key = IdempotencyKey {
        owner: owner.clone(),
        key: "retry-me".into(),
        request_digest: "d".into(),
    };
    let job = queued_job(&fresh_id(), &owner, 1_000);
    control
        .create_job(&job, &event(1_000, "submitted"), Some(&key))
        .await
        .unwrap();
    control
        .delete_job(&job.request_id, Some(&key))
        .await
        .unwrap();
    assert_eq!(control.get_job(&job.request_id).await.unwrap(), None);
    assert!(control.events(&job.request_id).await.unwrap().is_empty());
    // The key is free again: the caller's retry creates its job.
    let retry = queued_job(&fresh_id(), &owner, 2_000);
    assert_eq!(
        control
            .create_job(&retry, &event(2_000, "submitted"), Some(&key))
            .await
            .unwrap(),
        CreateOutcome::Created
    );
    // Deleting an old job never takes the key another job holds now.
    control
        .delete_job(&job.request_id, Some(&key))
        .await
        .unwrap();
    let again = queued_job(&fresh_id(), &owner, 3_000);
    assert_eq!(
        control
            .create_job(&again, &event(3_000, "submitted"), Some(&key))
            .await
            .unwrap(),
        CreateOutcome::KeyUsed {
            request_id: retry.request_id.clone(),
            same_request: true
        }
    );
}
async fn walk_from(
    control: &dyn ControlTable,
    request_id: &str,
    from: JobStatus,
    to: JobStatus,
    at: Millis,
) {
    let transition = Transition::new(from, to).expect("a legal move");
    assert!(control
        .transition(
            request_id,
            transition,
            &JobUpdate::default(),
            &event(at, to.as_str())
        )
        .await
        .expect("transition"));
}
