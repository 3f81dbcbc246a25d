//! How a job moves, for every control table: conditional transitions, one winner among
//! concurrent ones, events in order, a notice claimed once, packaging checkpoints replaced in
//! order while the job is PACKAGING.

use super::*;

pub async fn transitions_are_conditional_on_the_current_status(control: &dyn ControlTable) {
    let job = queued_job(&fresh_id(), &fresh_owner(), 1_000);
    create(control, &job).await;
    let id = &job.request_id;
    let start = JobUpdate {
        statement_id: Some("s1".into()),
        unload_attempt: Some(2),
        ..JobUpdate::default()
    };
    assert!(control
        .transition(id, Transition::START, &start, &event(1_500, "started"))
        .await
        .unwrap());
    // From a status the job has left: nothing is written, not even the event.
    assert!(!control
        .transition(
            id,
            Transition::START,
            &start,
            &event(1_600, "started again")
        )
        .await
        .unwrap());
    assert!(!control
        .transition(
            &fresh_id(),
            Transition::START,
            &start,
            &event(1_600, "nobody")
        )
        .await
        .unwrap());
    let stored = control.get_job(id).await.unwrap().unwrap();
    assert_eq!(
        (
            stored.status,
            stored.statement_id.as_deref(),
            stored.updated_at
        ),
        (JobStatus::Running, Some("s1"), 1_500)
    );
    let finish = JobUpdate {
        rows: Some(7),
        ..JobUpdate::default()
    };
    assert!(control
        .transition(id, Transition::FINISH, &finish, &event(2_000, "finished"))
        .await
        .unwrap());
    let archive = ObjectRef::new("downloads", format!("archives/{id}/x.tar.gz"));
    let done = JobUpdate {
        rows: Some(7),
        bytes: Some(1234),
        archive_object: Some(archive.clone()),
        ..JobUpdate::default()
    };
    assert!(control
        .transition(id, Transition::SUCCEED, &done, &event(2_500, "packaged"))
        .await
        .unwrap());
    let stored = control.get_job(id).await.unwrap().unwrap();
    let expected = Job {
        status: JobStatus::Succeeded,
        updated_at: 2_500,
        statement_id: Some("s1".into()),
        unload_attempt: 2,
        rows: Some(7),
        bytes: Some(1234),
        archive_object: Some(archive),
        ..job.clone()
    };
    assert_eq!(stored, expected);
    assert_eq!(
        steps(control, id).await,
        ["submitted", "started", "finished", "packaged"]
    );

    // A failure keeps what the job had and adds its error.
    let failing = queued_job(&fresh_id(), &fresh_owner(), 1_000);
    create(control, &failing).await;
    walk(control, &failing.request_id, &[JobStatus::Running], 1_100).await;
    let error = JobUpdate {
        error: Some("ERROR: relation does not exist".into()),
        ..JobUpdate::default()
    };
    let fail = Transition::fail(JobStatus::Running).unwrap();
    assert!(control
        .transition(
            &failing.request_id,
            fail,
            &error,
            &event(1_200, "statement")
        )
        .await
        .unwrap());
    let stored = control.get_job(&failing.request_id).await.unwrap().unwrap();
    assert_eq!(stored.status, JobStatus::Failed);
    assert_eq!(
        stored.error.as_deref(),
        Some("ERROR: relation does not exist")
    );
}

/// Transitions racing from the same status (a statement's event and a follow-up poll both
/// seeing it finish) move the job once: one wins, and only its event is written. Several
/// jobs race at once, so a store that checks and writes in two steps shows it.
pub async fn one_of_concurrent_transitions_wins(control: &dyn ControlTable) {
    const JOBS: usize = 12;
    const CONTENDERS: usize = 8;
    let mut ids = Vec::new();
    for _ in 0..JOBS {
        let job = queued_job(&fresh_id(), &fresh_owner(), 1_000);
        create(control, &job).await;
        walk(control, &job.request_id, &[JobStatus::Running], 1_100).await;
        ids.push(job.request_id);
    }
    let finish = JobUpdate {
        rows: Some(1),
        ..JobUpdate::default()
    };
    let races: Vec<(&String, JobEvent)> = ids
        .iter()
        .flat_map(|id| (0..CONTENDERS).map(move |i| (id, event(2_000 + i as Millis, "finished"))))
        .collect();
    let outcomes = futures::future::join_all(
        races
            .iter()
            .map(|(id, e)| control.transition(id, Transition::FINISH, &finish, e)),
    )
    .await;
    for (n, id) in ids.iter().enumerate() {
        // A loser sees the status moved (`false`), or, where the store cancels a transaction
        // that conflicts with another in flight, an error its caller's redelivery retries.
        let theirs = &outcomes[n * CONTENDERS..(n + 1) * CONTENDERS];
        let won = theirs.iter().filter(|o| matches!(o, Ok(true))).count();
        assert_eq!(won, 1, "{id}: {theirs:?}");
        assert!(
            theirs
                .iter()
                .all(|o| matches!(o, Ok(_) | Err(PortError::Unavailable(_)))),
            "{id}: {theirs:?}"
        );
        let steps = steps(control, id).await;
        assert_eq!(steps, ["submitted", "RUNNING", "finished"], "{id}");
        let stored = control.get_job(id).await.unwrap().unwrap();
        assert_eq!(stored.status, JobStatus::Packaging, "{id}");
    }
}

pub async fn events_keep_the_order_they_were_written_in(control: &dyn ControlTable) {
    let job = queued_job(&fresh_id(), &fresh_owner(), 1_000);
    let neighbour = queued_job(&fresh_id(), &fresh_owner(), 1_000);
    create(control, &job).await;
    create(control, &neighbour).await;
    // Many in the same millisecond, interleaved with another job's.
    for i in 0..6 {
        control
            .append_event(&job.request_id, &event(5_000, &format!("step{i}")))
            .await
            .unwrap();
        control
            .append_event(&neighbour.request_id, &event(5_000, "theirs"))
            .await
            .unwrap();
    }
    assert_eq!(
        steps(control, &job.request_id).await,
        [
            "submitted",
            "step0",
            "step1",
            "step2",
            "step3",
            "step4",
            "step5"
        ]
    );
    let events = control.events(&job.request_id).await.unwrap();
    assert_eq!(events[1], event(5_000, "step0"));
}

pub async fn notices_are_claimed_once(control: &dyn ControlTable) {
    let job = queued_job(&fresh_id(), &fresh_owner(), 1_000);
    create(control, &job).await;
    let id = &job.request_id;
    walk(control, id, &[JobStatus::Failed], 1_100).await;
    assert!(control.claim_notification(id, 1_200).await.unwrap());
    assert!(!control.claim_notification(id, 1_300).await.unwrap());
    assert_eq!(
        control.get_job(id).await.unwrap().unwrap().notified_at,
        Some(1_200)
    );
    control.release_notification(id, 1_350).await.unwrap();
    let released = control.get_job(id).await.unwrap().unwrap();
    assert_eq!(
        (released.notified_at, released.updated_at),
        (None, 1_350),
        "a release is the job's last change"
    );
    assert!(control.claim_notification(id, 1_400).await.unwrap());
    assert!(!control
        .claim_notification(&fresh_id(), 1_400)
        .await
        .unwrap());
}
pub async fn checkpoints_replace_each_other_in_order_while_packaging(control: &dyn ControlTable) {
    let job = queued_job(&fresh_id(), &fresh_owner(), 1_000);
    let id = job.request_id.as_str();
    create(control, &job).await;
    let first = SavedCheckpoint {
        seq: 1,
        body: "{\"next_entry\":3}".into(),
    };
    // Only a job being packaged takes a checkpoint or a packaging heartbeat.
    assert!(!control.save_checkpoint(id, 0, &first, 1_500).await.unwrap());
    assert!(!control
        .touch(id, JobStatus::Packaging, 1_500)
        .await
        .unwrap());
    assert_eq!(control.checkpoint(id).await.unwrap(), None);
    walk(
        control,
        id,
        &[JobStatus::Running, JobStatus::Packaging],
        2_000,
    )
    .await;
    assert!(control
        .touch(id, JobStatus::Packaging, 2_500)
        .await
        .unwrap());
    assert_eq!(
        control.get_job(id).await.unwrap().unwrap().updated_at,
        2_500
    );

    assert!(control.save_checkpoint(id, 0, &first, 3_000).await.unwrap());
    assert_eq!(control.checkpoint(id).await.unwrap(), Some(first.clone()));
    assert_eq!(
        control.get_job(id).await.unwrap().unwrap().updated_at,
        3_000
    );
    // A second packager that started from nothing, or from an older number, loses.
    let rival = SavedCheckpoint {
        seq: 1,
        body: "rival".into(),
    };
    assert!(!control.save_checkpoint(id, 0, &rival, 3_100).await.unwrap());
    let second = SavedCheckpoint {
        seq: 2,
        body: "x".repeat(200_000),
    };
    assert!(control
        .save_checkpoint(id, 1, &second, 4_000)
        .await
        .unwrap());
    assert!(!control.save_checkpoint(id, 1, &rival, 4_100).await.unwrap());
    assert_eq!(control.checkpoint(id).await.unwrap(), Some(second));
    let job_now = control.get_job(id).await.unwrap().unwrap();
    assert_eq!(job_now.updated_at, 4_000, "a lost save changes nothing");
    // Once the job leaves PACKAGING, nothing more is saved.
    walk_from(control, id, JobStatus::Packaging, JobStatus::Failed, 5_000).await;
    let third = SavedCheckpoint {
        seq: 3,
        body: "late".into(),
    };
    assert!(!control.save_checkpoint(id, 2, &third, 5_100).await.unwrap());
    assert!(!control
        .touch(id, JobStatus::Packaging, 5_100)
        .await
        .unwrap());
    control.delete_checkpoint(id).await.unwrap();
    assert_eq!(control.checkpoint(id).await.unwrap(), None);
    control.delete_checkpoint(id).await.unwrap();
}
