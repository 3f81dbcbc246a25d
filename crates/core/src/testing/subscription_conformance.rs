//! What every subscription store must do, as one suite each adapter runs (the in-memory fake,
//! SQLite, DynamoDB on the emulator): keep a subscription whole, show it to its owner only,
//! replace it only from the version it was read at, list the due ones earliest first and
//! never a paused one, and keep one run per time it was due.

use crate::domain::{Owner, Subscription};
use crate::ports::SubscriptionStore;
use export_api::SubscriptionRun;

fn subscription(id: &str, owner: &Owner, created_at: i64, next: Option<i64>) -> Subscription {
    Subscription {
        id: id.to_owned(),
        owner: owner.clone(),
        request: export_api::from_value(serde_json::json!({
            "dataset": "supplier_shipments",
            "params": {"day": "yesterday", "note": "O'NEIL\\7 ünïcode"},
            "schedule": "cron(0 6 * * ? *)",
            "timezone": "Europe/Berlin",
            "deliver": [{"webhook": "https://hooks.example/x"}, {"s3": "s3://feed/in/"}]
        }))
        .expect("a subscription request"),
        paused: false,
        created_at,
        start: created_at,
        next_run_at: next,
        runs: 0,
        version: 1,
    }
}

/// The suite. Ids and owners are fresh per run, so a shared store may be used; what is due
/// is read among this run's subscriptions only.
pub async fn check_subscription_store(store: &dyn SubscriptionStore) {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let id = |name: &str| format!("{name}-{run}");
    let alice = Owner(format!("arn:aws:iam::1:user/alice-{run}"));
    let bob = Owner(format!("arn:aws:iam::1:user/bob-{run}"));
    let ours = |due: Vec<Subscription>| -> Vec<String> {
        due.into_iter()
            .filter(|s| s.id.ends_with(&run))
            .map(|s| s.id)
            .collect()
    };

    let first = subscription(&id("s1"), &alice, 1_000, Some(5_000));
    let second = subscription(&id("s2"), &alice, 2_000, Some(4_000));
    let bobs = subscription(&id("s3"), &bob, 3_000, Some(6_000));
    for s in [&first, &second, &bobs] {
        store.create_subscription(s).await.unwrap();
    }
    // Whole, and its owner's only.
    assert_eq!(
        store.subscription(&alice, &first.id).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(store.subscription(&bob, &first.id).await.unwrap(), None);
    let listed: Vec<String> = store
        .subscriptions(&alice)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(
        listed,
        [first.id.clone(), second.id.clone()],
        "oldest first"
    );

    // Due: at or before now, earliest first, at most the limit.
    assert_eq!(
        ours(store.due_subscriptions(3_999, 100).await.unwrap()),
        Vec::<String>::new()
    );
    assert_eq!(
        ours(store.due_subscriptions(5_000, 100).await.unwrap()),
        [second.id.clone(), first.id.clone()]
    );

    // Replaced only from the version read; a stale write changes nothing.
    let mut moved = first.clone();
    moved.next_run_at = Some(7_000);
    moved.runs = 1;
    moved.version = 2;
    assert!(store.replace_subscription(&moved).await.unwrap());
    assert!(
        !store.replace_subscription(&moved).await.unwrap(),
        "version 2 is taken"
    );
    let mut stale = first.clone();
    stale.paused = true;
    stale.version = 2;
    assert!(!store.replace_subscription(&stale).await.unwrap());
    assert_eq!(
        store.subscription(&alice, &first.id).await.unwrap(),
        Some(moved.clone())
    );

    // Paused: never due.
    let mut paused = second.clone();
    paused.paused = true;
    paused.next_run_at = None;
    paused.version = 2;
    assert!(store.replace_subscription(&paused).await.unwrap());
    assert_eq!(
        ours(store.due_subscriptions(10_000, 100).await.unwrap()),
        [bobs.id.clone(), first.id.clone()]
    );

    // One run per time it was due; the latest record of it stands; newest first.
    let run_at = |at: i64, request_id: Option<&str>| SubscriptionRun {
        scheduled_at: at,
        request_id: request_id.map(str::to_owned),
        status: None,
        error: request_id
            .is_none()
            .then(|| "quota_exports_per_day".to_owned()),
    };
    store
        .record_run(&first.id, &run_at(5_000, None))
        .await
        .unwrap();
    store
        .record_run(&first.id, &run_at(5_000, Some("r1")))
        .await
        .unwrap();
    store
        .record_run(&first.id, &run_at(6_000, Some("r2")))
        .await
        .unwrap();
    store
        .record_run(&bobs.id, &run_at(6_000, Some("r3")))
        .await
        .unwrap();
    assert_eq!(
        store.runs(&first.id, 10).await.unwrap(),
        [run_at(6_000, Some("r2")), run_at(5_000, Some("r1"))]
    );
    assert_eq!(store.runs(&first.id, 1).await.unwrap().len(), 1);

    // Deleted by its owner only, with its runs.
    assert!(!store.delete_subscription(&bob, &first.id).await.unwrap());
    assert!(store.delete_subscription(&alice, &first.id).await.unwrap());
    assert!(!store.delete_subscription(&alice, &first.id).await.unwrap());
    assert_eq!(store.subscription(&alice, &first.id).await.unwrap(), None);
    assert!(store.runs(&first.id, 10).await.unwrap().is_empty());
    assert_eq!(store.runs(&bobs.id, 10).await.unwrap().len(), 1);
    assert!(
        !store.replace_subscription(&moved.clone()).await.unwrap(),
        "gone"
    );
}
