//! Subscriptions on the manual clock: runs at the schedule's wall-clock times across daylight
//! saving, relative dates read at each run, exactly one job per run whatever a tick does, and
//! every run held to its caller's access and quotas as they stand.

use super::*;
use chrono::{TimeZone, Utc};
use chrono_tz::America::New_York;
use export_api::SubscriptionRequest;
use export_core::clock::Clock;
use export_core::domain::Owner;
use export_core::ports::PortError;
use std::time::Duration;

const PARTNER_7: &str = "partner-7";

fn daily(schedule: &str, timezone: &str) -> SubscriptionRequest {
    export_api::from_value(json!({
        "dataset": "supplier_shipments",
        "params": {"day": "yesterday"},
        "schedule": schedule,
        "timezone": timezone,
    }))
    .unwrap()
}

fn new_york(y: i32, m: u32, d: u32, h: u32, min: u32) -> i64 {
    New_York
        .with_ymd_and_hms(y, m, d, h, min, 0)
        .earliest()
        .unwrap()
        .timestamp_millis()
}

fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> i64 {
    Utc.with_ymd_and_hms(y, m, d, h, min, 0)
        .unwrap()
        .timestamp_millis()
}

/// Ticks once an hour from now for `hours`, as a scheduler would; answers the runs' times.
async fn tick_hourly(world: &World, hours: u32) {
    for _ in 0..hours {
        world.clock.advance(Duration::from_secs(3600));
        world.subscriptions.run_due().await.unwrap();
    }
}

async fn scheduled(world: &World, owner: &str, id: &str) -> Vec<i64> {
    let mut runs: Vec<i64> = world
        .subscriptions
        .runs(&Owner(owner.into()), id)
        .await
        .unwrap()
        .iter()
        .map(|r| r.scheduled_at)
        .collect();
    runs.reverse();
    runs
}

#[tokio::test]
async fn a_daily_run_keeps_the_wall_clock_across_daylight_saving_and_reads_yesterday_there() {
    let world = World::new();
    let owner = Owner(PARTNER_7.into());
    // Spring: on 14 March 2027 New York's clocks skip from 02:00 to 03:00, so 02:30 is not a
    // time that day: it does not run.
    world.clock.set(new_york(2027, 3, 12, 12, 0));
    let spring = world
        .subscriptions
        .create(&owner, daily("cron(30 2 * * ? *)", "America/New_York"))
        .await
        .unwrap();
    assert_eq!(spring.next_run_at, Some(new_york(2027, 3, 13, 2, 30)));
    tick_hourly(&world, 4 * 24).await;
    assert_eq!(
        scheduled(&world, PARTNER_7, &spring.subscription_id).await,
        [
            utc(2027, 3, 13, 7, 30), // EST, UTC-5
            utc(2027, 3, 15, 6, 30), // EDT, UTC-4; the 14th had no 02:30
            utc(2027, 3, 16, 6, 30),
        ]
    );
    // Each run is a job of its own, "yesterday" read in New York on the run's day, and the
    // supplier the caller's, never the subscription's.
    let runs = world
        .subscriptions
        .runs(&owner, &spring.subscription_id)
        .await
        .unwrap();
    let days: Vec<String> = {
        let mut days = Vec::new();
        for run in runs.iter().rev() {
            let job = world.job(run.request_id.as_ref().unwrap()).await;
            assert_eq!(
                job.subscription_id.as_deref(),
                Some(spring.subscription_id.as_str())
            );
            assert_eq!(job.params["supplier"], json!(7));
            assert_eq!(job.bound, ["supplier"]);
            days.push(job.params["day"].as_str().unwrap().to_owned());
        }
        days
    };
    assert_eq!(days, ["2027-03-12", "2027-03-14", "2027-03-15"]);

    // Autumn: on 7 November 2027 01:30 happens twice; it runs once, the first time.
    world.clock.set(new_york(2027, 11, 5, 12, 0));
    let autumn = world
        .subscriptions
        .create(&owner, daily("cron(30 1 * * ? *)", "America/New_York"))
        .await
        .unwrap();
    tick_hourly(&world, 4 * 24).await;
    assert_eq!(
        scheduled(&world, PARTNER_7, &autumn.subscription_id).await,
        [
            utc(2027, 11, 6, 5, 30), // EDT
            utc(2027, 11, 7, 5, 30), // the first 01:30, still EDT
            utc(2027, 11, 8, 6, 30), // EST
            utc(2027, 11, 9, 6, 30),
        ]
    );
}

#[tokio::test]
async fn a_run_is_made_once_whatever_the_ticks_do_and_none_is_skipped_after_a_stop() {
    let world = World::new();
    let owner = Owner(PARTNER_7.into());
    world.clock.set(utc(2027, 1, 10, 0, 0));
    let sub = world
        .subscriptions
        .create(&owner, daily("cron(0 6 * * ? *)", "UTC"))
        .await
        .unwrap();
    // The tick dies after the run's job is submitted, before the subscription moves on.
    world.clock.set(utc(2027, 1, 10, 6, 0));
    world.control.faults.fail(
        "replace_subscription",
        PortError::Unavailable("the process stopped".into()),
        1,
    );
    assert!(world.subscriptions.run_due().await.is_err());
    assert_eq!(world.control.jobs().len(), 1);
    // The next tick (another instance, or the stack started again) makes the same run: the
    // job already accepted answers it, and the subscription moves on.
    assert_eq!(world.subscriptions.run_due().await.unwrap(), 1);
    assert_eq!(world.control.jobs().len(), 1);
    // Two ticks at once make it once.
    world.clock.set(utc(2027, 1, 11, 6, 0));
    let (a, b) = tokio::join!(world.subscriptions.run_due(), world.subscriptions.run_due());
    a.unwrap();
    b.unwrap();
    assert_eq!(world.control.jobs().len(), 2);
    // Stopped for three days: the three runs it missed are made when it starts, in order.
    world.clock.set(utc(2027, 1, 14, 12, 0));
    assert_eq!(world.subscriptions.run_due().await.unwrap(), 3);
    assert_eq!(world.subscriptions.run_due().await.unwrap(), 0);
    assert_eq!(
        scheduled(&world, PARTNER_7, &sub.subscription_id).await,
        (10..=14).map(|d| utc(2027, 1, d, 6, 0)).collect::<Vec<_>>()
    );
    assert_eq!(world.control.jobs().len(), 5);
    let view = world
        .subscriptions
        .get(&owner, &sub.subscription_id)
        .await
        .unwrap();
    assert_eq!(
        (view.runs, view.next_run_at),
        (5, Some(utc(2027, 1, 15, 6, 0)))
    );
}

#[tokio::test]
async fn every_run_is_held_to_the_callers_quotas_as_they_stand() {
    let world = World::new();
    // Two unfinished exports at most, three a day.
    let owner = Owner("limited-1".into());
    world.clock.set(utc(2027, 2, 1, 0, 30));
    let hourly: SubscriptionRequest = export_api::from_value(json!({
        "dataset": "things", "params": {"id": 1}, "schedule": "rate(1 hour)"
    }))
    .unwrap();
    let sub = world.subscriptions.create(&owner, hourly).await.unwrap();
    tick_hourly(&world, 3).await;
    let runs = world
        .subscriptions
        .runs(&owner, &sub.subscription_id)
        .await
        .unwrap();
    assert_eq!(runs.len(), 3);
    assert!(runs[2].request_id.is_some() && runs[1].request_id.is_some());
    let refused = &runs[0];
    assert!(refused.request_id.is_none(), "{refused:?}");
    assert!(
        refused
            .error
            .as_deref()
            .unwrap()
            .contains("quota_unfinished_exports"),
        "{refused:?}"
    );
    assert_eq!(world.control.jobs().len(), 2);
}

#[tokio::test]
async fn a_subscription_is_checked_as_its_runs_will_be_and_only_its_caller_sees_it() {
    let world = World::new();
    let partner = Owner(PARTNER_7.into());
    for (body, status, field) in [
        // A bound parameter is the caller's, never the subscription's.
        (
            json!({"dataset": "supplier_shipments", "params": {"day": "today", "supplier": 9}, "schedule": "rate(1 day)"}),
            400,
            "params.supplier",
        ),
        (
            json!({"dataset": "internal_things", "params": {"id": 1}, "schedule": "rate(1 day)"}),
            400,
            "dataset",
        ),
        (
            json!({"dataset": "supplier_shipments", "params": {"day": "today+x"}, "schedule": "rate(1 day)"}),
            400,
            "params.day",
        ),
        (
            json!({"dataset": "supplier_shipments", "params": {"day": "today"}, "schedule": "rate(1 fortnight)"}),
            400,
            "schedule",
        ),
        (
            json!({"dataset": "supplier_shipments", "params": {"day": "today"}, "schedule": "cron(0 6 L * ? *)"}),
            400,
            "schedule",
        ),
        (
            json!({"dataset": "supplier_shipments", "params": {"day": "today"}, "schedule": "rate(1 day)", "timezone": "Mars/Olympus"}),
            400,
            "timezone",
        ),
        (
            json!({"dataset": "supplier_shipments", "params": {"day": "today"}, "schedule": "rate(1 day)",
                "deliver": [{"s3": "s3://someone-else/"}]}),
            403,
            "deliver[0].s3",
        ),
    ] {
        let request: SubscriptionRequest = export_api::from_value(body.clone()).unwrap();
        let e = world
            .subscriptions
            .create(&partner, request)
            .await
            .unwrap_err();
        assert_eq!(
            (e.status.as_u16(), e.field.as_deref()),
            (status, Some(field)),
            "{body}: {e:?}"
        );
    }
    let sub = world
        .subscriptions
        .create(&partner, daily("rate(1 day)", ""))
        .await
        .unwrap();
    assert_eq!(sub.timezone, "UTC");
    let other = Owner("partner-9".into());
    let id = &sub.subscription_id;
    assert!(world.subscriptions.list(&other).await.unwrap().is_empty());
    for e in [
        world.subscriptions.get(&other, id).await.unwrap_err(),
        world.subscriptions.pause(&other, id).await.unwrap_err(),
        world.subscriptions.runs(&other, id).await.unwrap_err(),
        world.subscriptions.delete(&other, id).await.unwrap_err(),
    ] {
        assert_eq!(e.status.as_u16(), 404);
    }
    // Paused, it does not run; resumed, it runs from the next time after the resume.
    let paused = world.subscriptions.pause(&partner, id).await.unwrap();
    assert!(paused.paused && paused.next_run_at.is_none());
    world.clock.advance(Duration::from_secs(3 * 86_400 + 60));
    assert_eq!(world.subscriptions.run_due().await.unwrap(), 0);
    let resumed = world.subscriptions.resume(&partner, id).await.unwrap();
    assert!(!resumed.paused);
    assert!(resumed.next_run_at.unwrap() > world.clock.now());
    world.subscriptions.delete(&partner, id).await.unwrap();
    assert!(world.subscriptions.list(&partner).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_rate_started_now_runs_now_and_then_every_period_from_then() {
    let world = World::new();
    let owner = Owner(PARTNER_7.into());
    world.clock.set(utc(2027, 4, 1, 10, 17));
    let mut request = daily("rate(1 day)", "Europe/Berlin");
    request.start = Some("now".into());
    let sub = world.subscriptions.create(&owner, request).await.unwrap();
    assert_eq!(sub.next_run_at, Some(utc(2027, 4, 1, 10, 17)));
    assert_eq!(world.subscriptions.run_due().await.unwrap(), 1);
    tick_hourly(&world, 24).await;
    assert_eq!(
        scheduled(&world, PARTNER_7, &sub.subscription_id).await,
        [utc(2027, 4, 1, 10, 17), utc(2027, 4, 2, 10, 17)]
    );
    // Given as a time, the first run is that time.
    let mut later = daily("rate(6 hours)", "");
    later.start = Some("2027-05-01T06:00:00Z".into());
    let later = world.subscriptions.create(&owner, later).await.unwrap();
    assert_eq!(later.next_run_at, Some(utc(2027, 5, 1, 6, 0)));
}

#[tokio::test]
async fn one_subscription_that_cannot_run_holds_no_other_back() {
    let world = World::new();
    let owner = Owner(PARTNER_7.into());
    world.clock.set(utc(2027, 6, 1, 0, 0));
    let first = world
        .subscriptions
        .create(&owner, daily("cron(0 5 * * ? *)", "UTC"))
        .await
        .unwrap();
    let second = world
        .subscriptions
        .create(&owner, daily("cron(0 6 * * ? *)", "UTC"))
        .await
        .unwrap();
    world.clock.set(utc(2027, 6, 1, 7, 0));
    // The first's run cannot be recorded this tick; the second runs all the same.
    world
        .control
        .faults
        .fail("record_run", PortError::Unavailable("throttled".into()), 1);
    assert_eq!(world.subscriptions.run_due().await.unwrap(), 1);
    assert_eq!(
        scheduled(&world, PARTNER_7, &second.subscription_id)
            .await
            .len(),
        1
    );
    // The next tick makes the first's, once.
    assert_eq!(world.subscriptions.run_due().await.unwrap(), 1);
    assert_eq!(
        scheduled(&world, PARTNER_7, &first.subscription_id).await,
        [utc(2027, 6, 1, 5, 0)]
    );
    assert_eq!(world.control.jobs().len(), 2);
}
