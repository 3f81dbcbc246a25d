use crate::service::{Consumer, Retry};
use async_trait::async_trait;
use std::sync::Mutex;

/// A consumer that fails every body starting with `bad` and keeps what it gave up on: for
/// tests of the runners around [`crate::service::consume`].
#[derive(Default)]
pub struct PickyConsumer {
    given_up: Mutex<Vec<String>>,
}

impl PickyConsumer {
    /// The bodies it was told to give up on, in order.
    pub fn given_up(&self) -> Vec<String> {
        self.given_up.lock().expect("consumer lock").clone()
    }
}

#[async_trait]
impl Consumer for PickyConsumer {
    async fn handle(&self, body: &str) -> Result<(), Retry> {
        if body.starts_with("bad") {
            Err(Retry(format!("cannot handle {body}")))
        } else {
            Ok(())
        }
    }
    async fn give_up(&self, body: &str, _reason: &str) -> Result<(), Retry> {
        self.given_up
            .lock()
            .expect("consumer lock")
            .push(body.to_owned());
        Ok(())
    }
    fn request_id(&self, body: &str) -> Option<String> {
        Some(body.to_owned())
    }
}
