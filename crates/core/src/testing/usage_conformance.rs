//! What every usage ledger must do, as one suite each adapter runs (the in-memory fake,
//! SQLite, DynamoDB on the emulator): keep limits however many charges race, count each job
//! once, and replace a rate's state only from the state it was read as.

use crate::domain::Owner;
use crate::ports::{ExportCharge, ExportLimits, OverLimit, Usage, UsageLedger};
use futures::future::join_all;

fn charge(owner: &Owner, id: &str, day: i64, at: i64) -> ExportCharge {
    ExportCharge {
        owner: owner.clone(),
        request_id: id.to_owned(),
        day,
        at,
    }
}

/// The suite. Owners and keys are fresh per run, so a shared ledger may be used.
pub async fn check_usage_ledger(ledger: &dyn UsageLedger) {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let id = |name: &str| format!("{name}-{run}");
    let alice = Owner(format!("arn:aws:iam::1:user/alice-{run}"));
    let bob = Owner(format!("arn:aws:iam::1:user/bob-{run}"));
    let day = 20_000;
    let limits = ExportLimits {
        unfinished: Some(2),
        per_day: Some(3),
    };
    assert_eq!(ledger.usage(&alice, day).await.unwrap(), Usage::default());

    // Within the limits; a charge repeated for the same job counts once.
    let first = charge(&alice, &id("a1"), day, 1_000);
    assert_eq!(ledger.charge_export(&first, &limits).await.unwrap(), None);
    assert_eq!(ledger.charge_export(&first, &limits).await.unwrap(), None);
    let second = charge(&alice, &id("a2"), day, 1_001);
    assert_eq!(ledger.charge_export(&second, &limits).await.unwrap(), None);
    assert_eq!(
        ledger.usage(&alice, day).await.unwrap(),
        Usage {
            unfinished: 2,
            exports: 2,
            bytes: 0
        }
    );
    // Two unfinished: a third waits for one to end, and nothing is counted.
    let third = charge(&alice, &id("a3"), day, 1_002);
    assert_eq!(
        ledger.charge_export(&third, &limits).await.unwrap(),
        Some(OverLimit::Unfinished)
    );
    assert_eq!(ledger.usage(&alice, day).await.unwrap().exports, 2);
    // Another owner's count is its own.
    let bobs = charge(&bob, &id("b1"), day, 1_003);
    assert_eq!(ledger.charge_export(&bobs, &limits).await.unwrap(), None);
    assert_eq!(ledger.usage(&bob, day).await.unwrap().unfinished, 1);

    // An end frees one; ending twice, or a job never charged, does nothing.
    ledger.end_export(&first).await.unwrap();
    ledger.end_export(&first).await.unwrap();
    ledger
        .end_export(&charge(&alice, &id("never"), day, 1_000))
        .await
        .unwrap();
    assert_eq!(ledger.usage(&alice, day).await.unwrap().unfinished, 1);
    assert_eq!(ledger.charge_export(&third, &limits).await.unwrap(), None);
    ledger.end_export(&second).await.unwrap();
    // Three today: the day's limit, whatever ended.
    let fourth = charge(&alice, &id("a4"), day, 1_004);
    assert_eq!(
        ledger.charge_export(&fourth, &limits).await.unwrap(),
        Some(OverLimit::PerDay)
    );
    // The next day counts afresh.
    let tomorrow = charge(&alice, &id("a5"), day + 1, 90_000_000);
    assert_eq!(
        ledger.charge_export(&tomorrow, &limits).await.unwrap(),
        None
    );
    assert_eq!(ledger.usage(&alice, day + 1).await.unwrap().exports, 1);

    // A refund undoes a charge whole, once.
    ledger.refund_export(&tomorrow).await.unwrap();
    ledger.refund_export(&tomorrow).await.unwrap();
    assert_eq!(
        ledger.usage(&alice, day + 1).await.unwrap(),
        Usage {
            unfinished: 1,
            exports: 0,
            bytes: 0
        }
    );

    // Bytes, once per job.
    ledger
        .add_bytes(&alice, &first.request_id, day, 1_500)
        .await
        .unwrap();
    ledger
        .add_bytes(&alice, &first.request_id, day, 1_500)
        .await
        .unwrap();
    ledger
        .add_bytes(&alice, &second.request_id, day, 500)
        .await
        .unwrap();
    assert_eq!(ledger.usage(&alice, day).await.unwrap().bytes, 2_000);

    // Unfinished exports, for the sweep, oldest charge first, a page at a time: alice's
    // third (charged at 1,002) and bob's first (1,003).
    let mut left = Vec::new();
    let mut after: Option<ExportCharge> = None;
    loop {
        let page = ledger.unfinished_exports(after.as_ref(), 1).await.unwrap();
        assert!(page.len() <= 1);
        let Some(last) = page.last().cloned() else {
            break;
        };
        if last.request_id.ends_with(&run) {
            left.push(last.clone());
        }
        after = Some(last);
    }
    assert_eq!(left, [third.clone(), bobs.clone()]);

    // Charges racing for the last allowance: the limit holds.
    let carol = Owner(format!("arn:aws:iam::1:user/carol-{run}"));
    let tight = ExportLimits {
        unfinished: Some(3),
        per_day: None,
    };
    let racing: Vec<ExportCharge> = (0..8)
        .map(|i| charge(&carol, &id(&format!("c{i}")), day, 2_000 + i))
        .collect();
    let outcomes = join_all(racing.iter().map(|c| ledger.charge_export(c, &tight))).await;
    let charged = outcomes
        .into_iter()
        .map(|o| o.unwrap())
        .filter(Option::is_none)
        .count();
    assert_eq!(charged, 3, "three allowed");
    assert_eq!(ledger.usage(&carol, day).await.unwrap().unfinished, 3);
    for c in &racing {
        ledger.end_export(c).await.unwrap();
    }
    assert_eq!(ledger.usage(&carol, day).await.unwrap().unfinished, 0);

    // A rate's state moves only from what it was read as.
    let key = format!("lookups#{run}");
    assert_eq!(ledger.rate_state(&key).await.unwrap(), None);
    assert!(!ledger
        .set_rate_state(&key, Some(5), 10, 60_000)
        .await
        .unwrap());
    assert!(ledger
        .set_rate_state(&key, None, 100, 60_000)
        .await
        .unwrap());
    assert!(!ledger
        .set_rate_state(&key, None, 200, 60_000)
        .await
        .unwrap());
    assert_eq!(ledger.rate_state(&key).await.unwrap(), Some(100));
    let racing =
        join_all((0..4).map(|i| ledger.set_rate_state(&key, Some(100), 200 + i, 60_000))).await;
    assert_eq!(
        racing.into_iter().filter(|r| *r.as_ref().unwrap()).count(),
        1,
        "one of the racers moves it"
    );
}
