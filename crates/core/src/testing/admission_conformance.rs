//! What every admission ledger must do, as one suite each adapter runs (the in-memory fake,
//! SQLite, DynamoDB on the emulator): keep the line in its order, give a slot to one job
//! only however many race for it, and free it only for its holder.

use crate::ports::{AdmissionLedger, WaitingJob};
use futures::future::join_all;

fn waiting(id: &str, turns_of: &str, turn: u64, queued_at: i64) -> WaitingJob {
    WaitingJob {
        request_id: id.into(),
        turns_of: turns_of.into(),
        turn,
        queued_at,
    }
}

/// The suite. The ledger must be empty: slots and the line are one per deployment.
pub async fn check_admission_ledger(ledger: &dyn AdmissionLedger) {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let id = |name: &str| format!("{name}-{run}");
    let one = format!("arn:aws:iam::1:user/one-{run}");
    let two = format!("group:two-{run}");

    assert!(ledger.holders().await.unwrap().is_empty(), "no slot held");
    assert_eq!(ledger.turns(&one).await.unwrap(), (0, 0));
    assert!(ledger.first_waiting(10).await.unwrap().is_empty());
    assert_eq!(ledger.place(&id("a")).await.unwrap(), None);

    // The line's order: turn, then the oldest job, then the id.
    let a = waiting(&id("a"), &one, 5_000, 100);
    let b = waiting(&id("b"), &one, 6_000, 50);
    let c = waiting(&id("c"), &two, 5_000, 90);
    for entry in [&a, &b, &c] {
        assert_eq!(
            ledger.join(entry).await.unwrap(),
            (entry.clone(), true),
            "joined"
        );
    }
    // Joining again keeps the first place, whatever the turn asked for now.
    let again = waiting(&a.request_id, &one, 9_000, 100);
    assert_eq!(ledger.join(&again).await.unwrap(), (a.clone(), false));
    assert_eq!(ledger.turns(&one).await.unwrap(), (0, 6_000));
    assert_eq!(ledger.turns(&two).await.unwrap(), (0, 5_000));
    assert_eq!(
        ledger.first_waiting(10).await.unwrap(),
        [c.clone(), a.clone(), b.clone()]
    );
    assert_eq!(
        ledger.first_waiting(2).await.unwrap(),
        [c.clone(), a.clone()]
    );
    assert_eq!(ledger.place(&c.request_id).await.unwrap(), Some(0));
    assert_eq!(ledger.place(&a.request_id).await.unwrap(), Some(1));
    assert_eq!(ledger.place(&b.request_id).await.unwrap(), Some(2));

    // A slot goes to a job in line, once; the line's turn moves up to the job's.
    assert!(ledger.admit(0, &c, 1_000).await.unwrap());
    assert_eq!(ledger.place(&c.request_id).await.unwrap(), None);
    // A late copy of its start does not put a holder in line again.
    assert!(!ledger.join(&c).await.unwrap().1, "c holds a slot");
    assert_eq!(ledger.place(&c.request_id).await.unwrap(), None);
    assert_eq!(ledger.place(&a.request_id).await.unwrap(), Some(0));
    assert_eq!(ledger.turns(&one).await.unwrap(), (5_000, 6_000));
    assert!(!ledger.admit(0, &a, 1_001).await.unwrap(), "slot 0 is held");
    assert!(
        !ledger.admit(1, &c, 1_001).await.unwrap(),
        "c is not in line"
    );
    let stale = waiting(&a.request_id, &one, 4_000, 100);
    assert!(
        !ledger.admit(1, &stale, 1_001).await.unwrap(),
        "an entry that is not the one in line"
    );
    assert!(ledger.admit(1, &a, 1_002).await.unwrap());
    let holders = ledger.holders().await.unwrap();
    assert_eq!(
        holders
            .iter()
            .map(|h| (h.slot, h.request_id.as_str(), h.since))
            .collect::<Vec<_>>(),
        [
            (0, c.request_id.as_str(), 1_000),
            (1, a.request_id.as_str(), 1_002)
        ]
    );

    // Freed only by its holder.
    assert!(!ledger.release(0, &a.request_id).await.unwrap());
    assert!(!ledger.release(2, &a.request_id).await.unwrap());
    assert!(ledger.release(0, &c.request_id).await.unwrap());
    assert!(!ledger.release(0, &c.request_id).await.unwrap(), "once");
    assert_eq!(ledger.holders().await.unwrap().len(), 1);

    // Leaving the line; leaving it twice, or from outside it, does nothing.
    ledger.leave(&b.request_id).await.unwrap();
    ledger.leave(&b.request_id).await.unwrap();
    assert_eq!(ledger.place(&b.request_id).await.unwrap(), None);
    assert!(ledger.first_waiting(10).await.unwrap().is_empty());
    assert!(
        !ledger.admit(0, &b, 1_003).await.unwrap(),
        "b left the line"
    );

    // The line's turn never goes back, nor an owner's.
    let d = waiting(&id("d"), &two, 3_000, 200);
    ledger.join(&d).await.unwrap();
    assert!(ledger.admit(0, &d, 1_004).await.unwrap());
    assert_eq!(ledger.turns(&two).await.unwrap(), (5_000, 5_000));

    // Many admissions racing for three slots: each slot one holder, each job at most one slot.
    ledger.release(0, &d.request_id).await.unwrap();
    ledger.release(1, &a.request_id).await.unwrap();
    let crowd: Vec<WaitingJob> = (0..8)
        .map(|i| waiting(&id(&format!("crowd{i}")), &one, 7_000, 300 + i))
        .collect();
    for entry in &crowd {
        ledger.join(entry).await.unwrap();
    }
    let attempts = crowd
        .iter()
        .flat_map(|entry| (0..3).map(move |slot| (slot, entry)))
        .map(|(slot, entry)| ledger.admit(slot, entry, 2_000));
    let won = join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .filter(|w| *w)
        .count();
    let holders = ledger.holders().await.unwrap();
    assert_eq!(won, 3, "three slots, three admissions");
    assert_eq!(holders.len(), 3);
    let mut admitted: Vec<&str> = holders.iter().map(|h| h.request_id.as_str()).collect();
    admitted.sort();
    admitted.dedup();
    assert_eq!(admitted.len(), 3, "no job holds two slots: {holders:?}");
    assert_eq!(ledger.first_waiting(10).await.unwrap().len(), 5);
    for holder in holders {
        ledger
            .release(holder.slot, &holder.request_id)
            .await
            .unwrap();
    }
    for entry in &crowd {
        ledger.leave(&entry.request_id).await.unwrap();
    }
    assert!(ledger.holders().await.unwrap().is_empty());

    // Lookup slots: leases apart from the exports' slots, freed by their holder or by time.
    let now = 10_000;
    let first = ledger
        .take_lookup_slot(2, "h1", now, now + 1_000)
        .await
        .unwrap();
    let second = ledger
        .take_lookup_slot(2, "h2", now, now + 5_000)
        .await
        .unwrap();
    assert!(first.is_some() && second.is_some() && first != second);
    assert_eq!(
        ledger
            .take_lookup_slot(2, "h3", now, now + 1_000)
            .await
            .unwrap(),
        None
    );
    assert!(
        ledger.holders().await.unwrap().is_empty(),
        "not the exports' slots"
    );
    // Only its holder frees a slot.
    ledger.free_lookup_slot(first.unwrap(), "h3").await.unwrap();
    assert_eq!(
        ledger
            .take_lookup_slot(2, "h3", now, now + 1_000)
            .await
            .unwrap(),
        None
    );
    ledger.free_lookup_slot(first.unwrap(), "h1").await.unwrap();
    assert_eq!(
        ledger
            .take_lookup_slot(2, "h3", now, now + 1_000)
            .await
            .unwrap(),
        first
    );
    // A lease run out is free again (h3's, ended at 11,000), the other is not.
    assert_eq!(
        ledger
            .take_lookup_slot(2, "h4", now + 2_000, now + 3_000)
            .await
            .unwrap(),
        first
    );
    ledger.free_lookup_slot(first.unwrap(), "h4").await.unwrap();
    ledger
        .free_lookup_slot(second.unwrap(), "h2")
        .await
        .unwrap();
}
