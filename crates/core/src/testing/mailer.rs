use super::Faults;
use crate::ports::{Email, Mailer, PortResult};
use async_trait::async_trait;
use std::sync::Mutex;

/// A mailer that keeps what it was given to send.
#[derive(Default)]
pub struct FakeMailer {
    sent: Mutex<Vec<Email>>,
    pub faults: Faults,
}

impl FakeMailer {
    pub fn sent(&self) -> Vec<Email> {
        self.sent.lock().expect("mailer lock").clone()
    }

    /// The mails about one job.
    pub fn sent_about(&self, request_id: &str) -> Vec<Email> {
        self.sent()
            .into_iter()
            .filter(|m| m.request_id == request_id)
            .collect()
    }
}

#[async_trait]
impl Mailer for FakeMailer {
    async fn send(&self, email: &Email) -> PortResult<String> {
        super::interleave().await;
        self.faults.check("send")?;
        let mut sent = self.sent.lock().expect("mailer lock");
        sent.push(email.clone());
        Ok(format!("message-{}", sent.len()))
    }
}
