use crate::ports::{PortError, PortResult};
use std::collections::HashMap;
use std::sync::Mutex;

/// Failures a test has asked a fake to answer with, per operation: the next `n` calls, or
/// every call until cleared.
#[derive(Debug, Default)]
pub struct Faults {
    planned: Mutex<HashMap<&'static str, (PortError, Option<u32>)>>,
}

impl Faults {
    /// The next `times` calls of `operation` fail with `error`.
    pub fn fail(&self, operation: &'static str, error: PortError, times: u32) {
        self.lock().insert(operation, (error, Some(times)));
    }

    /// Every call of `operation` fails with `error` until [`Self::clear`].
    pub fn fail_always(&self, operation: &'static str, error: PortError) {
        self.lock().insert(operation, (error, None));
    }

    pub fn clear(&self, operation: &'static str) {
        self.lock().remove(operation);
    }

    /// What a call of `operation` answers: the planned failure, if one is due.
    pub fn check(&self, operation: &'static str) -> PortResult<()> {
        let mut planned = self.lock();
        let Some((error, remaining)) = planned.get_mut(operation) else {
            return Ok(());
        };
        let error = copy(error);
        match remaining {
            Some(1) => {
                planned.remove(operation);
            }
            Some(n) => *n -= 1,
            None => {}
        }
        Err(error)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<&'static str, (PortError, Option<u32>)>> {
        self.planned.lock().expect("faults lock")
    }
}

fn copy(error: &PortError) -> PortError {
    match error {
        PortError::Unavailable(m) => PortError::Unavailable(m.clone()),
        PortError::Throttled(m) => PortError::Throttled(m.clone()),
        PortError::NotFound(m) => PortError::NotFound(m.clone()),
        PortError::Rejected(m) => PortError::Rejected(m.clone()),
    }
}
