//! Tunables shared by the services; each deployment fills them from its own configuration.

use crate::domain::{Compression, Format, Millis, ObjectRef};
use crate::sql::{render_unload, UnloadOptions};
use std::time::Duration;

/// How long a start's attempt lasts: redeliveries within it send the same statement (its
/// `ClientToken`), a start after it is a new attempt. Well inside any plausible life of a Data
/// API client token (how long one protects a retry is not documented; docs/EMULATORS.md).
pub const RESTART_AFTER: Duration = Duration::from_secs(600);

/// Where UNLOAD writes and how it is told to write.
#[derive(Clone, Debug)]
pub struct UnloadSettings {
    /// Bucket UNLOAD writes parts and manifests into.
    pub results_bucket: String,
    /// Key prefix under which each job gets `<prefix><request_id>/`.
    pub results_prefix: String,
    /// The role Redshift assumes to write to the bucket (`default` for the cluster's default).
    pub iam_role: String,
    pub max_file_size_mb: u32,
    /// Starts the name of every statement this deployment runs (then the request id), so its
    /// statement events can be told from any other statement's by name alone.
    pub statement_prefix: String,
    /// A start this long after the job was created is a new attempt, with a client token and
    /// a prefix of its own: the Data API's client token protects a retry only for a while
    /// (how long is not documented), and UNLOAD refuses a prefix an earlier statement filled.
    pub restart_after: std::time::Duration,
}

/// One start of a job's UNLOAD. Every redelivery of the start message within the same
/// attempt sends the same statement (same client token, same text), so the Data API answers
/// with the statement already running; a later attempt cannot collide with an earlier one.
impl UnloadSettings {
    /// UNLOAD into `results_bucket` under `exports/`, statements named `statement_prefix` and
    /// the request id, with Redshift's usual 256 MB files and no role yet (the processor's
    /// deployment names the one Redshift assumes).
    pub fn new(results_bucket: &str, statement_prefix: &str) -> UnloadSettings {
        UnloadSettings {
            results_bucket: results_bucket.to_owned(),
            results_prefix: "exports/".into(),
            iam_role: String::new(),
            max_file_size_mb: 256,
            statement_prefix: statement_prefix.to_owned(),
            restart_after: RESTART_AFTER,
        }
    }

    /// The attempt a start of a job created at `created_at` makes at `now`: one per
    /// `restart_after` since creation, 0 for the first.
    pub fn attempt_at(&self, created_at: Millis, now: Millis) -> u32 {
        let window = self.restart_after.as_millis().max(1) as i64;
        u32::try_from((now - created_at).max(0) / window).unwrap_or(u32::MAX)
    }

    /// The prefix UNLOAD writes an attempt's parts and manifest under: `<id>/` for the first,
    /// `<id>/<attempt>/` after it.
    pub fn attempt_prefix(&self, request_id: &str, attempt: u32) -> ObjectRef {
        let key = match attempt {
            0 => format!("{}{request_id}/", self.results_prefix),
            n => format!("{}{request_id}/{n}/", self.results_prefix),
        };
        ObjectRef::new(&self.results_bucket, key)
    }

    /// The UNLOAD an attempt of the job `request_id` sends: `select` written as `format` with
    /// `compression` under the attempt's prefix, `parallel` or not.
    pub fn unload_sql(
        &self,
        select: &str,
        request_id: &str,
        attempt: u32,
        format: Format,
        compression: Compression,
        parallel: bool,
    ) -> String {
        render_unload(
            select,
            &UnloadOptions {
                target: self.attempt_prefix(request_id, attempt),
                iam_role: self.iam_role.clone(),
                format,
                compression,
                max_file_size_mb: self.max_file_size_mb,
                allow_overwrite: false,
                parallel,
            },
        )
    }

    /// Where the first attempt writes; every attempt writes below it.
    pub fn job_prefix(&self, request_id: &str) -> ObjectRef {
        self.attempt_prefix(request_id, 0)
    }

    /// The attempt's `ClientToken`: the request id, then `<id>.<attempt>`.
    pub fn client_token(&self, request_id: &str, attempt: u32) -> String {
        match attempt {
            0 => request_id.to_owned(),
            n => format!("{request_id}.{n}"),
        }
    }

    /// The name an attempt's statement runs under: the deployment's prefix, the request id,
    /// and `/<attempt>` after the first. The EventBridge rule forwards the events of the
    /// statements whose name has the prefix.
    pub fn statement_name(&self, request_id: &str, attempt: u32) -> String {
        match attempt {
            0 => format!("{}{request_id}", self.statement_prefix),
            n => format!("{}{request_id}/{n}", self.statement_prefix),
        }
    }

    /// The job and attempt a statement named `name` runs for, if it is this deployment's.
    pub fn attempt_of<'a>(&self, name: &'a str) -> Option<(&'a str, u32)> {
        let rest = name.strip_prefix(self.statement_prefix.as_str())?;
        let (request_id, attempt) = match rest.split_once('/') {
            Some((id, n)) => (id, n.parse().ok()?),
            None => (rest, 0),
        };
        (!request_id.is_empty()).then_some((request_id, attempt))
    }
}

/// How the poller follows statements and hands out results.
#[derive(Clone, Debug)]
pub struct DeliverySettings {
    /// Bucket archives are written to and presigned from.
    pub downloads_bucket: String,
    pub downloads_prefix: String,
    /// How long a presigned link stays valid (S3 SigV4 allows at most 7 days).
    pub link_ttl: Duration,
    /// First delay before following a new statement, then doubled per attempt up to the cap.
    pub poll_initial_delay: Duration,
    pub poll_max_delay: Duration,
    /// A job left in PACKAGING longer than this (its packager died) may be packaged again.
    pub packaging_lease: Duration,
    /// A job that has not moved for this long, and is not settled (ended and notified, or
    /// cancelled), is looked at again by the sweep.
    pub sweep_after: Duration,
    pub mail: MailSettings,
    /// Where webhooks may go and what signs them.
    pub webhooks: WebhookSettings,
}

/// Webhook deliveries: where they may go, and the deployment's keys that sign them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookSettings {
    pub reach: crate::webhook::Reach,
    /// None: this deployment has no webhook key, and a webhook delivery is refused at submit.
    pub keys: Option<crate::webhook::SigningKeys>,
}

impl WebhookSettings {
    /// Where webhooks go, if this deployment delivers them (it has a key).
    pub fn delivers(&self) -> Option<crate::webhook::Reach> {
        self.keys.as_ref().map(|_| self.reach)
    }
}

impl Default for WebhookSettings {
    /// Public https addresses only, no key.
    fn default() -> Self {
        WebhookSettings {
            reach: crate::webhook::Reach::PUBLIC_HTTPS,
            keys: None,
        }
    }
}

/// How archives are written: the upload's parts, the cores used, and when a run stops to
/// leave the rest to the next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackagingSettings {
    /// The smallest upload part (S3 wants 5 MiB but for the last); larger archives get larger
    /// parts, so that they need at most `archive::package::MAX_PARTS`.
    pub part_size: usize,
    /// Blocks compressed at once: the cores the function has.
    pub threads: usize,
    /// Time left at the end of a run for the checkpoint and the continuation's message.
    pub margin: Duration,
    /// A checkpoint at least this often, so that a packager that dies loses little.
    pub checkpoint_every: Duration,
    /// The job's `updated_at` moves at least this often while it is packaged, well inside
    /// the packaging lease, so no second packager starts beside a live one.
    pub heartbeat_every: Duration,
    /// Where a run stops when its invocation has no deadline of its own (the local stack's
    /// workers): a budget per message, like a function's timeout.
    pub budget: Option<Duration>,
    /// Entries this large get ZIP64 fields; only tests set it, to exercise them on small data.
    pub zip64_entry_size: Option<u64>,
}

impl Default for PackagingSettings {
    fn default() -> Self {
        PackagingSettings {
            part_size: 8 * 1024 * 1024,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            margin: Duration::from_secs(30),
            checkpoint_every: Duration::from_secs(120),
            heartbeat_every: Duration::from_secs(30),
            budget: None,
            zip64_entry_size: None,
        }
    }
}

/// Who gets notified.
#[derive(Clone, Debug, Default)]
pub struct MailSettings {
    /// `notify` addresses are used only if they match one of these: an exact address,
    /// `@domain` for a whole domain, or `*` for anyone.
    pub allowed_recipients: Vec<String>,
    /// Used when a request names no allowed address.
    pub default_recipients: Vec<String>,
}

impl MailSettings {
    pub fn is_allowed(&self, address: &str) -> bool {
        let address = address.to_ascii_lowercase();
        self.allowed_recipients.iter().any(|rule| {
            let rule = rule.to_ascii_lowercase();
            rule == "*"
                || rule == address
                || (rule.starts_with('@') && address.ends_with(rule.as_str()))
        })
    }

    /// The addresses a job's mail goes to: its allowed `notify` addresses and `email`
    /// deliveries, else the defaults.
    pub fn recipients(&self, notify: &[String], deliver: &[export_api::Delivery]) -> Vec<String> {
        let mut allowed: Vec<String> = notify
            .iter()
            .chain(deliver.iter().filter_map(|d| match d {
                export_api::Delivery::Email(address) => Some(address),
                _ => None,
            }))
            .filter(|a| self.is_allowed(a))
            .cloned()
            .collect();
        let mut seen = std::collections::HashSet::new();
        allowed.retain(|a| seen.insert(a.to_ascii_lowercase()));
        if allowed.is_empty() {
            self.default_recipients.clone()
        } else {
            allowed
        }
    }
}

/// How a message whose handling failed for a transient reason is tried again: a copy sent
/// with a delay that doubles from `first_delay` up to `max_delay`, instead of waiting out the
/// queue's visibility timeout (on the polls queue, an hour and a half).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetrySettings {
    pub first_delay: Duration,
    /// At most what a queue can delay a message by (SQS: 900 s).
    pub max_delay: Duration,
}

impl Default for RetrySettings {
    /// 15 s, doubling to SQS's longest delay (15 minutes).
    fn default() -> Self {
        RetrySettings {
            first_delay: Duration::from_secs(15),
            max_delay: Duration::from_secs(900),
        }
    }
}

impl RetrySettings {
    /// The delay before the try that follows the `tries`-th (1-based).
    pub fn delay(&self, tries: u32) -> Duration {
        let factor = 1u32
            .checked_shl(tries.saturating_sub(1).min(16))
            .unwrap_or(u32::MAX);
        self.first_delay.saturating_mul(factor).min(self.max_delay)
    }
}

impl DeliverySettings {
    /// Archives in `downloads_bucket` under `archives/`, links for an hour, follow-ups after
    /// 5 s doubling to a minute, a dead packager replaced after ten minutes, a still job swept
    /// after fifteen, and mail to no one but the defaults `mail` names.
    pub fn new(downloads_bucket: &str, mail: MailSettings) -> DeliverySettings {
        DeliverySettings {
            downloads_bucket: downloads_bucket.to_owned(),
            downloads_prefix: "archives/".into(),
            link_ttl: Duration::from_secs(3600),
            poll_initial_delay: Duration::from_secs(5),
            poll_max_delay: Duration::from_secs(60),
            packaging_lease: Duration::from_secs(600),
            sweep_after: Duration::from_secs(900),
            mail,
            webhooks: WebhookSettings::default(),
        }
    }

    /// Capped exponential backoff for the `attempt`-th follow-up poll (0-based).
    pub fn poll_delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX);
        self.poll_initial_delay
            .saturating_mul(factor)
            .min(self.poll_max_delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_longer_each_time_up_to_the_cap() {
        let retry = RetrySettings {
            first_delay: Duration::from_secs(15),
            max_delay: Duration::from_secs(900),
        };
        let delays: Vec<u64> = (1..=8).map(|t| retry.delay(t).as_secs()).collect();
        assert_eq!(delays, [15, 30, 60, 120, 240, 480, 900, 900]);
        assert_eq!(retry.delay(u32::MAX).as_secs(), 900);
    }

    #[test]
    fn backoff_doubles_then_caps() {
        let s = DeliverySettings {
            downloads_bucket: "d".into(),
            downloads_prefix: String::new(),
            link_ttl: Duration::from_secs(60),
            poll_initial_delay: Duration::from_secs(2),
            poll_max_delay: Duration::from_secs(30),
            packaging_lease: Duration::from_secs(60),
            sweep_after: Duration::from_secs(900),
            mail: MailSettings::default(),
            webhooks: WebhookSettings::default(),
        };
        let delays: Vec<u64> = (0..6).map(|a| s.poll_delay(a).as_secs()).collect();
        assert_eq!(delays, [2, 4, 8, 16, 30, 30]);
        assert_eq!(s.poll_delay(1000).as_secs(), 30);
    }

    #[test]
    fn recipients_fall_back_to_defaults() {
        let m = MailSettings {
            allowed_recipients: vec!["@example.com".into(), "ops@partner.org".into()],
            default_recipients: vec!["data@example.com".into()],
        };
        assert_eq!(
            m.recipients(&["A@Example.com".into(), "x@evil.org".into()], &[]),
            ["A@Example.com"]
        );
        assert_eq!(
            m.recipients(&["x@evil.org".into()], &[]),
            ["data@example.com"]
        );
        assert_eq!(m.recipients(&[], &[]), ["data@example.com"]);
        let deliver = [
            export_api::Delivery::Email("b@example.com".into()),
            export_api::Delivery::Webhook("https://example.com/".into()),
            export_api::Delivery::Email("a@example.com".into()),
        ];
        assert_eq!(
            m.recipients(&["a@example.com".into()], &deliver),
            ["a@example.com", "b@example.com"]
        );
    }
}
