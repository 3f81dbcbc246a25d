//! Time, as a port: the services read it from a [`Clock`], so tests can hold it still or move
//! it on (lease expiry, sweep delays, link lifetimes) without sleeping.

use crate::domain::Millis;

/// Milliseconds since the Unix epoch, from wherever the deployment says time comes from.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> Millis;
}

/// The machine's wall clock: what every deployment uses.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        system_millis()
    }
}

/// The wall clock, for adapters that keep their own time (queue visibility, statement logs).
/// The services never call it: they ask their [`Clock`].
pub fn system_millis() -> Millis {
    chrono::Utc::now().timestamp_millis()
}
