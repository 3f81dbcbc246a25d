//! The mailer as an outbox directory: one RFC 5322 `.eml` file per message (plain text and
//! HTML alternatives), and one log line.

use async_trait::async_trait;
use base64::Engine;
use export_core::ports::{Email, Mailer, PortError, PortResult};
use std::path::{Path, PathBuf};

pub struct OutboxMailer {
    dir: PathBuf,
    sender: String,
}

impl OutboxMailer {
    pub fn open(dir: &Path, sender: &str) -> anyhow::Result<OutboxMailer> {
        std::fs::create_dir_all(dir)?;
        Ok(OutboxMailer {
            dir: dir.to_owned(),
            sender: sender.to_owned(),
        })
    }
}

/// RFC 2047 encoding for a header value that is not plain ASCII.
fn header_value(s: &str) -> String {
    if s.chars().all(|c| c.is_ascii() && !c.is_ascii_control()) {
        s.to_owned()
    } else {
        format!(
            "=?UTF-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
    }
}

/// A body as 8-bit text with CRLF line ends; HTML is broken between tags so no line nears
/// the 998-character limit of RFC 5322.
fn body_lines(s: &str, html: bool) -> String {
    let s = if html {
        s.replace("><", ">\n<")
    } else {
        s.to_owned()
    };
    s.lines().collect::<Vec<_>>().join("\r\n")
}

/// Renders the message as RFC 5322 text with a multipart/alternative body.
pub fn render_eml(email: &Email, sender: &str, message_id: &str) -> String {
    let boundary = format!(
        "=_export_{}",
        message_id.split('@').next().unwrap_or(message_id)
    );
    let date = chrono::Utc::now().to_rfc2822();
    format!(
        "From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {date}\r\nMessage-ID: <{message_id}>\r\nX-Export-Request-Id: {request_id}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{text}\r\n--{boundary}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{html}\r\n--{boundary}--\r\n",
        to = email.to.join(", "),
        subject = header_value(&email.subject),
        request_id = email.request_id,
        text = body_lines(&email.text, false),
        html = body_lines(&email.html, true),
    )
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
        let text = render_eml(email, &self.sender, &message_id);
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

    #[tokio::test]
    async fn writes_a_mime_message() {
        let dir = tempfile::tempdir().unwrap();
        let mailer = OutboxMailer::open(dir.path(), "exports@localhost").unwrap();
        let email = Email {
            to: vec!["a@example.com".into()],
            subject: "Export ready – ünïcode".into(),
            text: "link: http://x/y".into(),
            html: "<a href=\"http://x/y\">y</a>".into(),
            request_id: "r-1".into(),
        };
        mailer.send(&email).await.unwrap();
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(files.len(), 1);
        let text = std::fs::read_to_string(files[0].as_ref().unwrap().path()).unwrap();
        assert!(text.contains("Subject: =?UTF-8?B?"));
        assert!(text.contains("Content-Type: text/html; charset=utf-8"));
        assert!(text.contains("X-Export-Request-Id: r-1"));
        assert!(text.contains("link: http://x/y\r\n"));
    }
}
