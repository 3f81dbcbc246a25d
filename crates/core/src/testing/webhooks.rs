use super::Faults;
use crate::ports::{PortResult, WebhookPost, Webhooks};
use async_trait::async_trait;
use std::collections::VecDeque;
use std::sync::Mutex;

/// A webhook receiver that keeps every notice POSTed to it and answers each with the next of
/// the statuses it was told to give (then 200).
#[derive(Default)]
pub struct RecordedWebhooks {
    posted: Mutex<Vec<WebhookPost>>,
    answers: Mutex<VecDeque<u16>>,
    pub faults: Faults,
}

impl RecordedWebhooks {
    /// The notices posted, oldest first, the failed ones included.
    pub fn posted(&self) -> Vec<WebhookPost> {
        self.posted.lock().expect("webhooks lock").clone()
    }

    /// The next posts are answered with these statuses, in order.
    pub fn answer_with(&self, statuses: &[u16]) {
        self.answers
            .lock()
            .expect("webhooks lock")
            .extend(statuses.iter().copied());
    }
}

#[async_trait]
impl Webhooks for RecordedWebhooks {
    async fn post(&self, post: &WebhookPost) -> PortResult<u16> {
        super::interleave().await;
        self.faults.check("post")?;
        self.posted
            .lock()
            .expect("webhooks lock")
            .push(post.clone());
        Ok(self
            .answers
            .lock()
            .expect("webhooks lock")
            .pop_front()
            .unwrap_or(200))
    }
}
