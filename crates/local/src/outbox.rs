//! The mailer as an outbox directory: one RFC 5322 message per `.eml` file (plain text and
//! HTML alternatives), built by `mail-builder`, which encodes headers that are not plain ASCII
//! and chooses each body's transfer encoding so no line is over the limit; and one log line.

use async_trait::async_trait;
use export_core::ports::{Email, Mailer, PortError, PortResult};
use mail_builder::headers::address::Address;
use mail_builder::headers::raw::Raw;
use mail_builder::MessageBuilder;
use std::path::{Path, PathBuf};

pub struct OutboxMailer {
    dir: PathBuf,
    /// The sender's display name and address.
    sender: (String, String),
}

impl OutboxMailer {
    pub fn open(
        dir: &Path,
        sender_name: &str,
        sender_address: &str,
    ) -> anyhow::Result<OutboxMailer> {
        std::fs::create_dir_all(dir)?;
        Ok(OutboxMailer {
            dir: dir.to_owned(),
            sender: (sender_name.to_owned(), sender_address.to_owned()),
        })
    }

    /// The message as RFC 5322 text, with a multipart/alternative body.
    pub fn render(&self, email: &Email, message_id: &str) -> PortResult<String> {
        let to: Vec<Address<'_>> = email.to.iter().map(|a| Address::from(a.as_str())).collect();
        MessageBuilder::new()
            .from((self.sender.0.as_str(), self.sender.1.as_str()))
            .to(to)
            .subject(email.subject.as_str())
            .date(chrono::Utc::now().timestamp())
            .message_id(message_id)
            .header("X-Export-Request-Id", Raw::new(email.request_id.as_str()))
            .text_body(email.text.as_str())
            .html_body(email.html.as_str())
            .write_to_string()
            .map_err(|e| PortError::Rejected(format!("the message could not be written: {e}")))
    }
}

/// How many mails the outbox holds about each job, by request id, read from the files' names
/// (`<time>-<request id>-<message>.eml`, as `send` writes them).
pub fn mails_per_job(outbox: &Path) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(outbox).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let request_id = name
            .strip_suffix(".eml")
            .and_then(|stem| stem.split_once('-'))
            .and_then(|(_, rest)| rest.rsplit_once('-'))
            .map(|(request_id, _)| request_id.to_owned());
        if let Some(request_id) = request_id {
            *counts.entry(request_id).or_default() += 1;
        }
    }
    counts
}

#[async_trait]
impl Mailer for OutboxMailer {
    async fn send(&self, email: &Email) -> PortResult<String> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let message_id = format!("{id}@export.local");
        let file = self.dir.join(format!(
            "{}-{}-{}.eml",
            chrono::Utc::now().format("%Y%m%dT%H%M%S%.3f"),
            email.request_id,
            &id[..8]
        ));
        let text = self.render(email, &message_id)?;
        tokio::fs::write(&file, text)
            .await
            .map_err(|e| PortError::Unavailable(format!("outbox {}: {e}", file.display())))?;
        tracing::info!(request_id = %email.request_id, to = %email.to.join(", "), subject = %email.subject, file = %file.display(), "mail written to the outbox");
        Ok(message_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::MessageParser;

    #[tokio::test]
    async fn writes_a_mime_message_a_mail_reader_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let mailer =
            OutboxMailer::open(dir.path(), "Redshift Export API", "exports@localhost").unwrap();
        let long_link = format!(
            "https://downloads.example/{}?X-Amz-Signature=abc",
            "x".repeat(1500)
        );
        let email = Email {
            to: vec!["a@example.com".into(), "b@example.org".into()],
            subject: "Export ready – ünïcode".into(),
            text: format!("Download: {long_link}\n"),
            html: format!("<p><a href=\"{long_link}\">Download</a></p>"),
            request_id: "r-1".into(),
        };
        mailer.send(&email).await.unwrap();
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(files.len(), 1);
        let raw = std::fs::read(files[0].as_ref().unwrap().path()).unwrap();
        let text = String::from_utf8(raw.clone()).unwrap();
        // RFC 5322 caps a line at 998 characters; a 1.5 KB link must not break that.
        assert!(text.split("\r\n").all(|line| line.len() <= 998), "{text}");
        assert!(text.contains("X-Export-Request-Id: r-1"), "{text}");
        let message = MessageParser::default().parse(&raw).unwrap();
        assert_eq!(message.subject(), Some("Export ready – ünïcode"));
        let to: Vec<&str> = message
            .to()
            .unwrap()
            .iter()
            .filter_map(|a| a.address())
            .collect();
        assert_eq!(to, ["a@example.com", "b@example.org"]);
        let from = message.from().unwrap().first().unwrap();
        assert_eq!(
            (from.name(), from.address()),
            (Some("Redshift Export API"), Some("exports@localhost"))
        );
        assert_eq!(
            message.body_text(0).unwrap().trim_end(),
            email.text.trim_end()
        );
        assert_eq!(message.body_html(0).unwrap(), email.html);
    }
}
