//! Lookups over the fakes: the two cache levels, expiry, bypass, one statement for identical
//! misses, and the errors a lookup can end in.

use async_trait::async_trait;
use export_core::access::{Access, AccessPolicy};
use export_core::catalog::Catalog;
use export_core::domain::{Millis, Owner};
use export_core::ports::{
    AnswerCache, CachedAnswer, PortResult, ResultColumn, ResultSet, SelectOutcome, Warehouse,
};
use export_core::service::{LookupSettings, Lookups};
use export_core::testing::{MemoryControlTable, World};
use http::StatusCode;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;

/// Another instance of the read path: its own in-process cache, over `world`'s warehouse,
/// clock and (unless given another) control table.
fn instance(world: &World, shared: Arc<MemoryControlTable>, settings: LookupSettings) -> Lookups {
    Lookups::new(
        world.lookups.access.clone(),
        world.warehouse.clone(),
        shared,
        world.clock.clone(),
        settings,
    )
}

/// The world's internal caller.
static ALICE: std::sync::LazyLock<Owner> = std::sync::LazyLock::new(|| Owner("alice".into()));

fn id(n: i64) -> Map<String, Value> {
    json!({ "id": n }).as_object().unwrap().clone()
}

/// Answers each SELECT with one row per `id` value it was given.
fn answer_with_the_ids(world: &World) {
    world.warehouse.answer_selects(|select| {
        SelectOutcome::Rows(ResultSet {
            columns: vec![
                ResultColumn {
                    name: "id".into(),
                    type_name: "int8".into(),
                },
                ResultColumn {
                    name: "name".into(),
                    type_name: "varchar".into(),
                },
            ],
            rows: select
                .params
                .iter()
                .map(|p| vec![json!(p.value.parse::<i64>().unwrap()), json!("thing")])
                .collect(),
        })
    });
}

#[tokio::test]
async fn a_second_lookup_is_answered_from_the_cache_until_it_expires() {
    let world = World::new();
    answer_with_the_ids(&world);
    let first = world
        .lookups
        .lookup(&ALICE, "things", &id(7), false)
        .await
        .unwrap();
    assert!(!first.cached);
    assert_eq!(first.answer.rows, vec![vec![json!(7), json!("thing")]]);
    let select = &world.warehouse.selects()[0];
    assert!(
        select.sql.contains("id = CAST(:p1 AS BIGINT)"),
        "{}",
        select.sql
    );
    assert!(
        select.sql.ends_with("LIMIT 4"),
        "max_rows + 1: {}",
        select.sql
    );

    world.clock.advance(Duration::from_secs(60));
    let second = world
        .lookups
        .lookup(&ALICE, "things", &id(7), false)
        .await
        .unwrap();
    assert!(second.cached);
    assert_eq!(second.answer, first.answer);
    assert_eq!(world.warehouse.selects().len(), 1);
    // Another value is another answer.
    world
        .lookups
        .lookup(&ALICE, "things", &id(8), false)
        .await
        .unwrap();
    assert_eq!(world.warehouse.selects().len(), 2);

    // Expired at 180 s: never served, read again.
    world.clock.advance(Duration::from_secs(120));
    let third = world
        .lookups
        .lookup(&ALICE, "things", &id(7), false)
        .await
        .unwrap();
    assert!(!third.cached);
    assert_eq!(world.warehouse.selects().len(), 3);
}

#[tokio::test]
async fn no_cache_reads_the_warehouse_and_replaces_the_cached_answer() {
    let world = World::new();
    answer_with_the_ids(&world);
    world
        .lookups
        .lookup(&ALICE, "things", &id(1), false)
        .await
        .unwrap();
    world.clock.advance(Duration::from_secs(100));
    let fresh = world
        .lookups
        .lookup(&ALICE, "things", &id(1), true)
        .await
        .unwrap();
    assert!(!fresh.cached);
    assert_eq!(world.warehouse.selects().len(), 2);
    // The fresh answer is the one cached now: 180 s from its own reading.
    world.clock.advance(Duration::from_secs(170));
    let again = world
        .lookups
        .lookup(&ALICE, "things", &id(1), false)
        .await
        .unwrap();
    assert!(again.cached);
    assert_eq!(again.answer.fetched_at, fresh.answer.fetched_at);
}

#[tokio::test]
async fn a_cold_instance_hits_the_shared_cache() {
    let world = World::new();
    answer_with_the_ids(&world);
    world
        .lookups
        .lookup(&ALICE, "things", &id(3), false)
        .await
        .unwrap();
    // A second instance: its own empty in-process cache, the same control table.
    let cold = instance(&world, world.control.clone(), LookupSettings::default());
    let hit = cold.lookup(&ALICE, "things", &id(3), false).await.unwrap();
    assert!(hit.cached);
    assert_eq!(world.warehouse.selects().len(), 1);
}

/// A shared cache that counts the answers written to it.
struct CountedWrites {
    inner: Arc<MemoryControlTable>,
    writes: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl AnswerCache for CountedWrites {
    async fn cached_answer(&self, key: &str, now: Millis) -> PortResult<Option<CachedAnswer>> {
        self.inner.cached_answer(key, now).await
    }
    async fn cache_answer(&self, key: &str, answer: &CachedAnswer) -> PortResult<()> {
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.cache_answer(key, answer).await
    }
}

#[tokio::test]
async fn identical_misses_share_their_answer_once() {
    let world = World::new();
    answer_with_the_ids(&world);
    let shared = Arc::new(CountedWrites {
        inner: Arc::new(MemoryControlTable::default()),
        writes: Default::default(),
    });
    let lookups = Lookups::new(
        world.lookups.access.clone(),
        world.warehouse.clone(),
        shared.clone(),
        world.clock.clone(),
        LookupSettings::default(),
    );
    world.warehouse.hold_selects();
    let six = id(6);
    let misses =
        futures::future::join_all((0..8).map(|_| lookups.lookup(&ALICE, "things", &six, false)));
    let release = async {
        // Every miss reaches the held statement before it is let go.
        for _ in 0..64 {
            tokio::task::yield_now().await;
        }
        world.warehouse.release_selects();
    };
    let (answered, ()) = tokio::join!(misses, release);
    assert!(
        answered.iter().all(|a| a.as_ref().is_ok_and(|a| !a.cached)),
        "{answered:?}"
    );
    assert_eq!(world.warehouse.selects().len(), 1);
    assert_eq!(shared.writes.load(std::sync::atomic::Ordering::SeqCst), 1);
    // Shared before they answered: a cold instance hits it.
    let cold = instance(&world, shared.inner.clone(), LookupSettings::default());
    assert!(
        cold.lookup(&ALICE, "things", &six, false)
            .await
            .unwrap()
            .cached
    );
}

#[tokio::test]
async fn an_expired_shared_answer_is_never_served() {
    let world = World::new();
    answer_with_the_ids(&world);
    world
        .lookups
        .lookup(&ALICE, "things", &id(4), false)
        .await
        .unwrap();
    world.clock.advance(Duration::from_secs(181));
    let cold = instance(&world, world.control.clone(), LookupSettings::default());
    assert!(
        !cold
            .lookup(&ALICE, "things", &id(4), false)
            .await
            .unwrap()
            .cached
    );
    assert_eq!(world.warehouse.selects().len(), 2);
}

#[tokio::test]
async fn an_answer_too_big_to_share_stays_in_process() {
    let world = World::new();
    answer_with_the_ids(&world);
    let control = Arc::new(MemoryControlTable::default());
    let small = instance(
        &world,
        control.clone(),
        LookupSettings {
            shared_max_bytes: 10,
            ..LookupSettings::default()
        },
    );
    small.lookup(&ALICE, "things", &id(5), false).await.unwrap();
    assert!(
        small
            .lookup(&ALICE, "things", &id(5), false)
            .await
            .unwrap()
            .cached
    );
    assert_eq!(world.warehouse.selects().len(), 1);
    // A cold instance on the same control table finds nothing shared.
    let cold = instance(&world, control, LookupSettings::default());
    assert!(
        !cold
            .lookup(&ALICE, "things", &id(5), false)
            .await
            .unwrap()
            .cached
    );
    assert_eq!(world.warehouse.selects().len(), 2);
}

#[tokio::test]
async fn the_in_process_cache_is_bounded_and_keeps_the_latest_answers() {
    let world = World::new();
    answer_with_the_ids(&world);
    // Answers too big to share: every hit below is this process's own.
    let bounded = instance(
        &world,
        Arc::new(MemoryControlTable::default()),
        LookupSettings {
            local_entries: 8,
            shared_max_bytes: 0,
            ..LookupSettings::default()
        },
    );
    for n in 1..=20 {
        bounded
            .lookup(&ALICE, "things", &id(n), false)
            .await
            .unwrap();
        world.clock.advance(Duration::from_secs(1));
    }
    // The eight read last are kept; the rest made room, soonest-expiring first.
    for n in (13..=20).rev() {
        assert!(
            bounded
                .lookup(&ALICE, "things", &id(n), false)
                .await
                .unwrap()
                .cached,
            "id {n}"
        );
    }
    assert_eq!(world.warehouse.selects().len(), 20);
    assert!(
        !bounded
            .lookup(&ALICE, "things", &id(12), false)
            .await
            .unwrap()
            .cached
    );
    assert_eq!(world.warehouse.selects().len(), 21);
}

/// On one thread, so that "every lookup has reached the statement" is a fact, not a timing:
/// the statement is held until each spawned lookup has run as far as it can.
#[tokio::test(flavor = "current_thread")]
async fn identical_misses_run_one_statement() {
    let world = World::new();
    answer_with_the_ids(&world);
    world.warehouse.hold_selects();
    let lookups: Vec<_> = (0..16)
        .map(|_| {
            let lookups = world.lookups.clone();
            tokio::spawn(async move { lookups.lookup(&ALICE, "things", &id(9), false).await })
        })
        .collect();
    // Each yield lets every runnable lookup run on until it waits: on the held statement, or
    // on the one another lookup started. A lookup yields only a bounded number of times.
    for _ in 0..64 {
        tokio::task::yield_now().await;
    }
    assert_eq!(world.warehouse.selects().len(), 1);
    world.warehouse.release_selects();
    for lookup in lookups {
        let looked = lookup.await.unwrap().unwrap();
        assert_eq!(looked.answer.rows.len(), 1);
    }
    assert_eq!(world.warehouse.selects().len(), 1);
}

#[tokio::test]
async fn more_rows_than_the_lookup_answers_points_at_an_export() {
    let world = World::new();
    world.warehouse.answer_selects(|_| {
        SelectOutcome::Rows(ResultSet {
            columns: vec![ResultColumn {
                name: "id".into(),
                type_name: "int8".into(),
            }],
            rows: (0..4).map(|n| vec![json!(n)]).collect(),
        })
    });
    let e = world
        .lookups
        .lookup(&ALICE, "things", &id(1), false)
        .await
        .unwrap_err();
    assert_eq!(
        (e.status, e.code),
        (StatusCode::UNPROCESSABLE_ENTITY, "too_many_rows")
    );
    assert!(e.message.contains("POST /exports"), "{}", e.message);
    // Nothing was cached: the next one asks again.
    world
        .lookups
        .lookup(&ALICE, "things", &id(1), false)
        .await
        .unwrap_err();
    assert_eq!(world.warehouse.selects().len(), 2);
}

#[tokio::test]
async fn a_slow_or_failed_statement_names_itself() {
    let world = World::new();
    let lookups = instance(
        &world,
        world.control.clone(),
        LookupSettings {
            timeout: Duration::from_millis(100),
            ..LookupSettings::default()
        },
    );
    world.warehouse.set_select_time(Duration::from_secs(30));
    let slow = lookups
        .lookup(&ALICE, "things", &id(1), false)
        .await
        .unwrap_err();
    assert_eq!(
        (slow.status, slow.code),
        (StatusCode::GATEWAY_TIMEOUT, "lookup_timed_out")
    );
    assert_eq!(slow.statement_id.as_deref(), Some("select-1"));

    world.warehouse.set_select_time(Duration::ZERO);
    world.warehouse.answer_selects(|_| SelectOutcome::Failed {
        statement_id: "s-2".into(),
        error: "ERROR: permission denied for relation things".into(),
    });
    let failed = lookups
        .lookup(&ALICE, "things", &id(1), false)
        .await
        .unwrap_err();
    assert_eq!(
        (failed.status, failed.code),
        (StatusCode::BAD_GATEWAY, "statement_failed")
    );
    assert_eq!(failed.statement_id.as_deref(), Some("s-2"));
    assert!(failed.message.contains("permission denied"));
}

#[tokio::test]
async fn only_declared_lookups_and_valid_values_reach_the_warehouse() {
    let world = World::new();
    let catalog = Arc::new(
        Catalog::from_sources([
            ("things.sql", export_core::testing::THINGS),
            ("big.sql", "-- export: big\nSELECT 1 AS n"),
        ])
        .unwrap(),
    );
    let lookups = Lookups::new(
        Arc::new(Access::new(catalog, AccessPolicy::default(), None)),
        world.warehouse.clone() as Arc<dyn Warehouse>,
        world.control.clone(),
        world.clock.clone(),
        LookupSettings::default(),
    );
    let e = lookups
        .lookup(&ALICE, "big", &Map::new(), false)
        .await
        .unwrap_err();
    assert_eq!(
        (e.status, e.code),
        (StatusCode::BAD_REQUEST, "lookup_not_offered")
    );
    assert!(e.message.contains("POST /exports"));
    let e = lookups
        .lookup(&ALICE, "nothing", &Map::new(), false)
        .await
        .unwrap_err();
    assert_eq!(
        (e.status, e.code),
        (StatusCode::NOT_FOUND, "unknown_dataset")
    );
    let e = lookups
        .lookup(
            &ALICE,
            "things",
            json!({"id": "1; DROP"}).as_object().unwrap(),
            false,
        )
        .await
        .unwrap_err();
    assert_eq!(
        (e.code, e.field.as_deref()),
        ("invalid_parameter", Some("params.id"))
    );
    assert!(world.warehouse.selects().is_empty());
}

/// Lookups have slots of their own: with all of them held, another lookup's statement is not
/// started (503 with Retry-After), and a slot freed is taken again.
#[tokio::test(flavor = "current_thread")]
async fn lookups_beyond_their_slots_are_turned_away_until_one_frees() {
    let world = World::new();
    answer_with_the_ids(&world);
    let lookups = Arc::new(
        instance(
            &world,
            world.control.clone(),
            LookupSettings {
                slots: Some(1),
                ..LookupSettings::default()
            },
        )
        .with_slots(world.control.clone()),
    );
    world.warehouse.hold_selects();
    let first = {
        let lookups = lookups.clone();
        tokio::spawn(async move { lookups.lookup(&ALICE, "things", &id(1), false).await })
    };
    for _ in 0..64 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        world.warehouse.selects().len(),
        1,
        "the first holds the slot"
    );
    let busy = lookups
        .lookup(&ALICE, "things", &id(2), false)
        .await
        .unwrap_err();
    assert_eq!(busy.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!((busy.code, busy.retry_after), ("lookups_busy", Some(1)));
    assert_eq!(
        world.warehouse.selects().len(),
        1,
        "no statement for the second"
    );
    // Answers from a cache need no slot; nor does anything once the first has ended.
    world.warehouse.release_selects();
    first.await.unwrap().unwrap();
    assert!(
        lookups
            .lookup(&ALICE, "things", &id(1), false)
            .await
            .unwrap()
            .cached
    );
    let second = lookups
        .lookup(&ALICE, "things", &id(2), false)
        .await
        .unwrap();
    assert_eq!(second.answer.rows.len(), 1);
}
