//! Subscriptions and their runs: `subscriptions` (the subscription as JSON, with the columns
//! the queries read: its owner, its next run while it is not paused, its version) and
//! `subscription_runs` (one row per run, by the time it was due).

use super::db::StoreError;
use super::SqliteStore;
use async_trait::async_trait;
use export_api::SubscriptionRun;
use export_core::domain::{Millis, Owner, Subscription};
use export_core::ports::{PortResult, SubscriptionStore};
use rusqlite::{params, OptionalExtension};

fn decode<T: serde::de::DeserializeOwned>(body: String) -> Result<T, StoreError> {
    serde_json::from_str(&body)
        .map_err(|e| StoreError::Corrupt(format!("stored subscription is corrupt: {e}")))
}

fn encode<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("a subscription serialises")
}

/// The column the due-runs index reads: the next run, or NULL while paused.
fn due_at(subscription: &Subscription) -> Option<Millis> {
    subscription.next_run_at.filter(|_| !subscription.paused)
}

#[async_trait]
impl SubscriptionStore for SqliteStore {
    async fn create_subscription(&self, subscription: &Subscription) -> PortResult<()> {
        let subscription = subscription.clone();
        self.call(move |conn| {
            conn.prepare_cached(
                "INSERT INTO subscriptions (id, owner, created_at, due_at, version, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                subscription.id,
                subscription.owner.0,
                subscription.created_at,
                due_at(&subscription),
                subscription.version as i64,
                encode(&subscription)
            ])?;
            Ok(())
        })
        .await
    }

    async fn subscription(&self, owner: &Owner, id: &str) -> PortResult<Option<Subscription>> {
        let (owner, id) = (owner.0.clone(), id.to_owned());
        self.call(move |conn| {
            conn.prepare_cached("SELECT body FROM subscriptions WHERE id = ?1 AND owner = ?2")?
                .query_row(params![id, owner], |r| r.get::<_, String>(0))
                .optional()?
                .map(decode)
                .transpose()
        })
        .await
    }

    async fn subscriptions(&self, owner: &Owner) -> PortResult<Vec<Subscription>> {
        let owner = owner.0.clone();
        self.call(move |conn| {
            let bodies = conn
                .prepare_cached(
                    "SELECT body FROM subscriptions WHERE owner = ?1 ORDER BY created_at, id",
                )?
                .query_map(params![owner], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            bodies.into_iter().map(decode).collect()
        })
        .await
    }

    async fn replace_subscription(&self, subscription: &Subscription) -> PortResult<bool> {
        let subscription = subscription.clone();
        self.call(move |conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE subscriptions SET due_at = ?2, version = ?3, body = ?4
                     WHERE id = ?1 AND version = ?3 - 1",
                )?
                .execute(params![
                    subscription.id,
                    due_at(&subscription),
                    subscription.version as i64,
                    encode(&subscription)
                ])?;
            Ok(changed == 1)
        })
        .await
    }

    async fn delete_subscription(&self, owner: &Owner, id: &str) -> PortResult<bool> {
        let (owner, id) = (owner.0.clone(), id.to_owned());
        self.call(move |conn| {
            let tx = conn.savepoint()?;
            let deleted = tx
                .prepare_cached("DELETE FROM subscriptions WHERE id = ?1 AND owner = ?2")?
                .execute(params![id, owner])?;
            if deleted == 1 {
                tx.prepare_cached("DELETE FROM subscription_runs WHERE subscription_id = ?1")?
                    .execute(params![id])?;
            }
            tx.commit()?;
            Ok(deleted == 1)
        })
        .await
    }

    async fn due_subscriptions(&self, now: Millis, limit: usize) -> PortResult<Vec<Subscription>> {
        self.call(move |conn| {
            let bodies = conn
                .prepare_cached(
                    "SELECT body FROM subscriptions WHERE due_at <= ?1 ORDER BY due_at, id LIMIT ?2",
                )?
                .query_map(params![now, limit as i64], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            bodies.into_iter().map(decode).collect()
        })
        .await
    }

    async fn record_run(&self, id: &str, run: &SubscriptionRun) -> PortResult<()> {
        let (id, run) = (id.to_owned(), run.clone());
        self.call(move |conn| {
            conn.prepare_cached(
                "INSERT INTO subscription_runs (subscription_id, scheduled_at, body) VALUES (?1, ?2, ?3)
                 ON CONFLICT (subscription_id, scheduled_at) DO UPDATE SET body = excluded.body",
            )?
            .execute(params![id, run.scheduled_at, encode(&run)])?;
            Ok(())
        })
        .await
    }

    async fn runs(&self, id: &str, limit: usize) -> PortResult<Vec<SubscriptionRun>> {
        let id = id.to_owned();
        self.call(move |conn| {
            let bodies = conn
                .prepare_cached(
                    "SELECT body FROM subscription_runs WHERE subscription_id = ?1
                     ORDER BY scheduled_at DESC LIMIT ?2",
                )?
                .query_map(params![id, limit as i64], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            bodies.into_iter().map(decode).collect()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use export_core::access::AccessPolicy;
    use export_core::catalog::Catalog;
    use export_core::service::compose::{Ports, Services, Settings};
    use export_core::settings::{DeliverySettings, MailSettings, UnloadSettings};
    use export_core::testing::{
        FakeMailer, FakeWarehouse, ManualClock, MemoryAudit, MemoryObjectStore, MemoryQueue,
        RecordedWebhooks, SUPPLIER_SHIPMENTS, WORLD_POLICY,
    };
    use std::path::Path;
    use std::sync::Arc;

    /// The services over the SQLite file at `path`, on `clock`: a stack as it starts.
    fn start(path: &Path, clock: Arc<ManualClock>) -> (SqliteStore, Services) {
        let store = SqliteStore::open(path, 5).unwrap();
        let catalog =
            Catalog::from_sources([("supplier_shipments.sql", SUPPLIER_SHIPMENTS)]).unwrap();
        let store_port = Arc::new(store.clone());
        let ports = Ports {
            catalog: Arc::new(catalog),
            policy: AccessPolicy::parse(WORLD_POLICY).unwrap(),
            attributes: None,
            control: store_port.clone(),
            answers: store_port.clone(),
            ledger: store_port.clone(),
            usage: store_port.clone(),
            audit: Arc::new(MemoryAudit::default()),
            subscriptions: store_port,
            queue: Arc::new(MemoryQueue::new(clock.clone())),
            warehouse: Arc::new(FakeWarehouse::default()),
            objects: Arc::new(MemoryObjectStore::default()),
            mailer: Arc::new(FakeMailer::default()),
            webhooks: Arc::new(RecordedWebhooks::default()),
            clock,
        };
        let settings = Settings::new(
            UnloadSettings::new("results", "local:"),
            DeliverySettings::new("downloads", MailSettings::default()),
        );
        let services = Services::new(&ports, &settings);
        (store, services)
    }

    fn at(text: &str) -> Millis {
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_millis()
    }

    /// The stack stops and starts again across a daylight-saving change: each run due while it
    /// was down is made once when it starts, at its own wall-clock time, and a tick repeated
    /// after the restart makes none twice.
    #[tokio::test]
    async fn a_stack_started_again_makes_the_runs_it_missed_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sqlite");
        let clock = Arc::new(ManualClock::at(at("2027-03-12T12:00:00-05:00")));
        let owner = Owner("partner-7".into());
        let (store, services) = start(&path, clock.clone());
        let request = export_api::from_value(serde_json::json!({
            "dataset": "supplier_shipments",
            "params": {"day": "today"},
            "schedule": "cron(0 9 * * ? *)",
            "timezone": "America/New_York",
        }))
        .unwrap();
        let sub = services
            .subscriptions
            .create(&owner, request)
            .await
            .unwrap();
        clock.set(at("2027-03-13T09:00:00-05:00"));
        assert_eq!(services.subscriptions.run_due().await.unwrap(), 1);
        drop(services);
        drop(store);

        // Down over the weekend the clocks go forward; up again on Tuesday at noon.
        clock.set(at("2027-03-16T12:00:00-04:00"));
        let (_store, services) = start(&path, clock.clone());
        assert_eq!(services.subscriptions.run_due().await.unwrap(), 3);
        assert_eq!(services.subscriptions.run_due().await.unwrap(), 0);
        let runs = services
            .subscriptions
            .runs(&owner, &sub.subscription_id)
            .await
            .unwrap();
        let due: Vec<Millis> = runs.iter().rev().map(|r| r.scheduled_at).collect();
        assert_eq!(
            due,
            [
                at("2027-03-13T09:00:00-05:00"),
                at("2027-03-14T09:00:00-04:00"),
                at("2027-03-15T09:00:00-04:00"),
                at("2027-03-16T09:00:00-04:00"),
            ]
        );
        // One job each, its day the run's own.
        let mut days = Vec::new();
        for run in runs.iter().rev() {
            let job = services
                .queries
                .job(&owner, run.request_id.as_ref().unwrap())
                .await
                .unwrap();
            days.push(job.params["day"].as_str().unwrap().to_owned());
        }
        assert_eq!(
            days,
            ["2027-03-13", "2027-03-14", "2027-03-15", "2027-03-16"]
        );
    }
}
