//! The statements running now, one task each, so a cancel can stop its statement and a halt
//! (a crash, as the tests have it) can stop them all without recording an outcome.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::task::AbortHandle;

#[derive(Clone, Default)]
pub struct Supervisor {
    running: Arc<Mutex<HashMap<String, AbortHandle>>>,
}

impl Supervisor {
    /// Runs `work` as statement `id`'s task, which ends by calling [`Self::finished`].
    pub fn spawn(&self, id: String, work: impl Future<Output = ()> + Send + 'static) {
        // Registered under the lock the task takes to deregister itself, so a statement that
        // ends at once cannot leave a stale entry behind.
        let mut running = self.running.lock().expect("running lock");
        let handle = tokio::spawn(work);
        running.insert(id, handle.abort_handle());
    }

    /// The task of `id` is done (or about to be): it is no longer running.
    pub fn finished(&self, id: &str) {
        self.running.lock().expect("running lock").remove(id);
    }

    /// Stops the task of `id`, if it is running; true if it was.
    pub fn abort(&self, id: &str) -> bool {
        match self.running.lock().expect("running lock").remove(id) {
            Some(handle) => {
                handle.abort();
                true
            }
            None => false,
        }
    }

    /// Stops every task.
    pub fn halt(&self) {
        for (_, handle) in self.running.lock().expect("running lock").drain() {
            handle.abort();
        }
    }
}
