//! Where a finished export goes besides its mail: `"deliver": [{"email": …}, {"webhook": …},
//! {"s3": …}]` on a request, and the notice a webhook receives.

use crate::request::{is_email_address, FieldError};
use crate::vocabulary::{JobStatus, Millis};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// At most this many deliveries per request.
pub const MAX_DELIVER: usize = 10;

/// The longest webhook URL accepted.
pub const MAX_WEBHOOK_URL: usize = 2048;

/// One place a finished export is delivered to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    /// The link mailed to this address, as `notify` does.
    Email(String),
    /// A signed JSON notice (`WebhookNotice`) POSTed to this URL: `https` on AWS, never to a
    /// private, loopback or link-local address. Signed in the `Export-Signature` header with
    /// the caller's webhook secret (`GET /webhook-secret`).
    Webhook(String),
    /// The archive (or, with `archive: none`, each part) copied to this place in a bucket
    /// the access policy lets the caller deliver to: `s3://bucket/prefix/` (file names
    /// `{dataset}/{date}/{request_id}.zip` below it), or a whole key template naming
    /// `{request_id}` (and `{part}` for parts), e.g. `s3://bucket/feeds/{date}/{request_id}.zip`.
    S3(String),
}

impl Delivery {
    /// What kind of place, as the job's history names it.
    pub fn kind(&self) -> &'static str {
        match self {
            Delivery::Email(_) => "email",
            Delivery::Webhook(_) => "webhook",
            Delivery::S3(_) => "s3",
        }
    }

    /// The address, URL or S3 place as given.
    pub fn target(&self) -> &str {
        match self {
            Delivery::Email(s) | Delivery::Webhook(s) | Delivery::S3(s) => s,
        }
    }

    /// The rules of each kind's value that need no deployment to judge; `field` is where the
    /// delivery sits in the body (`deliver[2]`).
    pub fn check(&self, field: &str) -> Result<(), FieldError> {
        let field = format!("{field}.{}", self.kind());
        match self {
            Delivery::Email(address) if !is_email_address(address) => Err(FieldError::new(
                &field,
                format!("'{field}' is not a valid email address"),
            )),
            Delivery::Email(_) => Ok(()),
            Delivery::Webhook(url) => {
                let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
                if !scheme_ok || url.len() > MAX_WEBHOOK_URL || url.chars().any(char::is_whitespace)
                {
                    return Err(FieldError::new(
                        &field,
                        format!("'{field}' must be an http(s) URL of at most {MAX_WEBHOOK_URL} characters"),
                    ));
                }
                Ok(())
            }
            Delivery::S3(place) => S3Place::parse(place)
                .map(|_| ())
                .map_err(|reason| FieldError::new(&field, format!("'{field}': {reason}"))),
        }
    }
}

/// An S3 delivery's bucket and key template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Place {
    pub bucket: String,
    /// The key with its placeholders, `{dataset}/{date}/{request_id}.zip` appended to a
    /// prefix that ends in `/` (or is empty).
    pub template: String,
}

/// The placeholders a key template may name.
pub const KEY_PLACEHOLDERS: [&str; 5] = ["dataset", "date", "request_id", "part", "ext"];

impl S3Place {
    /// The template a prefix gets: the dataset, the day the export ended (UTC, or the
    /// subscription run's day), the job, and the archive's own extension; with `archive:
    /// none`, a folder per job holding its parts under their own names.
    pub const DEFAULT_NAME: &'static str = "{dataset}/{date}/{request_id}.{ext}";
    pub const DEFAULT_PARTS_NAME: &'static str = "{dataset}/{date}/{request_id}/{part}";

    /// Reads `s3://bucket/prefix/` or `s3://bucket/key-template`.
    pub fn parse(place: &str) -> Result<S3Place, String> {
        let rest = place
            .strip_prefix("s3://")
            .ok_or("an S3 delivery is written s3://bucket/prefix/")?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if !valid_bucket(bucket) {
            return Err(format!(
                "'{bucket}' is not an S3 bucket name (3 to 63 lower-case letters, digits, '.' and '-')"
            ));
        }
        if key.len() > 900 || key.chars().any(char::is_control) {
            return Err(
                "the key must be at most 900 characters, none of them control characters".into(),
            );
        }
        if key
            .split('/')
            .any(|segment| segment == "." || segment == "..")
        {
            return Err("the key must not have '.' or '..' segments".into());
        }
        let mut rest = key;
        while let Some(open) = rest.find('{') {
            let after = &rest[open + 1..];
            let close = after.find('}').ok_or("a '{' in the key is not closed")?;
            let name = &after[..close];
            if !KEY_PLACEHOLDERS.contains(&name) {
                return Err(format!(
                    "'{{{name}}}' is not a placeholder (these are: {})",
                    KEY_PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
                ));
            }
            rest = &after[close + 1..];
        }
        let template = if key.is_empty() || key.ends_with('/') {
            format!("{key}{}", S3Place::DEFAULT_NAME)
        } else if !key.contains("{request_id}") {
            return Err(
                "a key template must name {request_id}, so one export never overwrites another"
                    .into(),
            );
        } else {
            key.to_owned()
        };
        Ok(S3Place {
            bucket: bucket.to_owned(),
            template,
        })
    }

    /// The template for an export handed out as parts: one that names `{part}` as it is, a
    /// default one as a folder per job.
    pub fn parts_template(&self) -> String {
        if self.template.contains("{part}") {
            self.template.clone()
        } else if let Some(prefix) = self.template.strip_suffix(S3Place::DEFAULT_NAME) {
            format!("{prefix}{}", S3Place::DEFAULT_PARTS_NAME)
        } else {
            format!("{}/{{part}}", self.template)
        }
    }
}

/// The key a template gives; every placeholder's value is the job's own, never the caller's
/// text, so a value cannot reach another prefix.
pub fn render_key(template: &str, values: &[(&str, &str)]) -> String {
    let mut key = template.to_owned();
    for (name, value) in values {
        key = key.replace(&format!("{{{name}}}"), value);
    }
    key
}

/// S3's rules for a bucket name (general purpose buckets), without the IP-address form.
fn valid_bucket(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && !name.contains("..")
}

/// The body of a webhook delivery: what ended, and where its files are.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WebhookNotice {
    /// `export.succeeded` or `export.failed`.
    pub event: String,
    pub request_id: String,
    pub dataset: String,
    pub status: JobStatus,
    /// The subscription whose run this is, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// A link to the archive, until `expires_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_url: Option<String>,
    /// With `archive: none`: links to the parts (the first page; the rest by
    /// `GET /exports/{id}/parts`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>)]
    pub expires_at: Option<Millis>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the notice was sent (epoch milliseconds); the signature's own timestamp is in
    /// its header.
    #[schema(value_type = i64)]
    pub sent_at: Millis,
}

/// `GET /webhook-secret`: the key a caller checks its notices' signatures with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookSecret {
    /// HMAC-SHA256 key, as text (`whsec_…`): the signature is over `t`, a full stop and
    /// the body exactly as received.
    pub secret: String,
    /// `Export-Signature`: `t=<unix seconds>,v1=<hex>`, one `v1` per key while the
    /// deployment's key is being replaced.
    pub header: String,
    /// The age past which a receiver should refuse a notice, in seconds.
    pub tolerance_seconds: i64,
}

/// `POST /webhook-test`: where to send a signed test notice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"url": "https://partner.example/hooks/exports"}))]
pub struct WebhookTest {
    pub url: String,
}

/// What the receiver answered a test notice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookTestResult {
    pub url: String,
    /// The receiver's HTTP status; absent if it did not answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Whether it took the notice (a 2xx).
    pub delivered: bool,
    /// Why it did not answer (no such host, refused, timed out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_s3_place_is_a_bucket_and_a_template() {
        let p = S3Place::parse("s3://partner-feed/inbound/").unwrap();
        assert_eq!(p.bucket, "partner-feed");
        assert_eq!(p.template, "inbound/{dataset}/{date}/{request_id}.{ext}");
        assert_eq!(
            p.parts_template(),
            "inbound/{dataset}/{date}/{request_id}/{part}"
        );
        let bare = S3Place::parse("s3://partner-feed").unwrap();
        assert_eq!(bare.template, "{dataset}/{date}/{request_id}.{ext}");
        let own = S3Place::parse("s3://partner-feed/x/{date}-{request_id}.zip").unwrap();
        assert_eq!(own.template, "x/{date}-{request_id}.zip");
        assert_eq!(own.parts_template(), "x/{date}-{request_id}.zip/{part}");
        assert_eq!(
            render_key(
                &own.template,
                &[("date", "2026-12-04"), ("request_id", "r1")]
            ),
            "x/2026-12-04-r1.zip"
        );
        for bad in [
            "https://partner-feed/x/",
            "s3://Partner/x/",
            "s3://ab/x/",
            "s3://-feed/x/",
            "s3://feed/x/{owner}/{request_id}",
            "s3://feed/x/{request_id",
            "s3://feed/x/fixed.zip",
            "s3://feed/../{request_id}",
        ] {
            assert!(S3Place::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn each_delivery_is_checked_by_its_kind() {
        assert!(Delivery::Email("a@b.co".into()).check("deliver[0]").is_ok());
        assert!(Delivery::Webhook("https://h.example/x".into())
            .check("deliver[0]")
            .is_ok());
        let e = Delivery::Webhook("ftp://h.example/x".into())
            .check("deliver[1]")
            .unwrap_err();
        assert_eq!(e.field, "deliver[1].webhook");
        let e = Delivery::Email("nope".into())
            .check("deliver[2]")
            .unwrap_err();
        assert_eq!(e.field, "deliver[2].email");
        let e = Delivery::S3("s3://x/".into())
            .check("deliver[3]")
            .unwrap_err();
        assert_eq!(e.field, "deliver[3].s3");
    }
}
