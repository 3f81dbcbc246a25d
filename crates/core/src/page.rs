//! Paging through a caller's jobs: the page token the API hands out and takes back.
//!
//! Jobs are listed newest first, ordered by `(created_at, request_id)`; a token names the last
//! job of a page, and the next page starts just after it. Callers treat the token as opaque:
//! it is that position, base64url-encoded, and it is checked before any adapter sees it.

use crate::domain::{Job, Millis};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Where the next page of a caller's jobs begins: just after this job, going back in time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageToken {
    pub created_at: Millis,
    pub request_id: String,
}

/// Why a `cursor` was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("'cursor' is not a page token this API issued")]
pub struct BadPageToken;

impl PageToken {
    /// The token that continues after `job`.
    pub fn after(job: &Job) -> PageToken {
        PageToken {
            created_at: job.created_at,
            request_id: job.request_id.clone(),
        }
    }

    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}.{}", self.created_at, self.request_id))
    }

    /// Reads a token [`Self::encode`] wrote; anything else is refused.
    pub fn decode(token: &str) -> Result<PageToken, BadPageToken> {
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| BadPageToken)?;
        let text = String::from_utf8(bytes).map_err(|_| BadPageToken)?;
        let (at, id) = text.split_once('.').ok_or(BadPageToken)?;
        let created_at: Millis = at.parse().map_err(|_| BadPageToken)?;
        // Request ids are UUIDs: a token naming anything else was not issued here.
        let request_id = uuid::Uuid::parse_str(id).map_err(|_| BadPageToken)?;
        if created_at < 0 || request_id.hyphenated().to_string() != id {
            return Err(BadPageToken);
        }
        Ok(PageToken {
            created_at,
            request_id: id.to_owned(),
        })
    }
}

/// One page of a caller's jobs, newest first.
#[derive(Clone, Debug, Default)]
pub struct JobPage {
    pub jobs: Vec<Job>,
    /// Where the next page starts; `None` on the last one.
    pub next: Option<PageToken>,
}

impl JobPage {
    /// A page of at most `limit` from `jobs`, which an adapter read as `limit + 1` rows in
    /// the listing's order: the extra row only tells that there is a next page.
    pub fn from_rows(mut jobs: Vec<Job>, limit: usize) -> JobPage {
        let next = if jobs.len() > limit {
            jobs.truncate(limit);
            jobs.last().map(PageToken::after)
        } else {
            None
        };
        JobPage { jobs, next }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_refuse_what_was_not_issued() {
        let token = PageToken {
            created_at: 1_795_395_230_806,
            request_id: "0b6f6d2e-6c1a-4c58-9d55-0b8c7f2e9a11".into(),
        };
        let text = token.encode();
        assert!(text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(PageToken::decode(&text), Ok(token));
        let encode = |s: &str| URL_SAFE_NO_PAD.encode(s);
        for bad in [
            "junk".to_owned(),
            String::new(),
            "1795395230806.0b6f6d2e-6c1a-4c58-9d55-0b8c7f2e9a11".to_owned(),
            encode("12.not-a-uuid"),
            encode("-5.0b6f6d2e-6c1a-4c58-9d55-0b8c7f2e9a11"),
            encode("x.0b6f6d2e-6c1a-4c58-9d55-0b8c7f2e9a11"),
            encode("12.0B6F6D2E-6C1A-4C58-9D55-0B8C7F2E9A11"),
            encode("120b6f6d2e-6c1a-4c58-9d55-0b8c7f2e9a11"),
            encode("12.0b6f6d2e-6c1a-4c58-9d55-0b8c7f2e9a11#x"),
        ] {
            assert_eq!(PageToken::decode(&bad), Err(BadPageToken), "{bad}");
        }
    }
}
