//! The signature on a webhook notice, so a partner's system can tell a notice from this
//! deployment from anyone else's POST: `Export-Signature: t=<unix seconds>,v1=<hex>`, where
//! the hex is HMAC-SHA256, keyed with the secret issued for the webhook, over the timestamp,
//! a full stop and the body exactly as sent. The timestamp is signed too, so a notice cannot be
//! replayed later: a receiver refuses one older than its tolerance. Several `v1=` values may
//! come at once while a secret is being replaced; one matching is enough.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header the signature travels in.
pub const SIGNATURE_HEADER: &str = "Export-Signature";

/// How old a notice a receiver accepts by default, in seconds.
pub const DEFAULT_TOLERANCE_SECONDS: i64 = 300;

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The header's value for `body` sent at `timestamp` (unix seconds).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let digest = mac(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", hex::encode(digest))
}

/// Why a signature was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the signature header is not t=<unix seconds>,v1=<hex>")]
    Malformed,
    #[error("no v1 signature matches the body with this secret")]
    Mismatch,
    #[error("the notice was signed {age} s ago, more than the {tolerance} s allowed")]
    TooOld { age: i64, tolerance: i64 },
    #[error("the notice is signed {ahead} s in the future, more than the {tolerance} s allowed")]
    FromTheFuture { ahead: i64, tolerance: i64 },
}

/// Checks `header` against `body` at `now` (unix seconds): a `v1` signature of it with
/// `secret`, signed within `tolerance` seconds either way. The comparison takes the same time
/// whatever the signature, so it cannot be guessed byte by byte.
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: i64,
    tolerance: i64,
) -> Result<(), Refused> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = Some(t.parse::<i64>().map_err(|_| Refused::Malformed)?),
            Some(("v1", hex_digest)) => {
                signatures.push(hex::decode(hex_digest).map_err(|_| Refused::Malformed)?)
            }
            // Other schemes a later version may add are not this one's to judge.
            Some(_) => {}
            None => return Err(Refused::Malformed),
        }
    }
    let timestamp = timestamp.ok_or(Refused::Malformed)?;
    if signatures.is_empty() {
        return Err(Refused::Malformed);
    }
    if !signatures
        .iter()
        .any(|s| mac(secret, timestamp, body).verify_slice(s).is_ok())
    {
        return Err(Refused::Mismatch);
    }
    if now - timestamp > tolerance {
        return Err(Refused::TooOld {
            age: now - timestamp,
            tolerance,
        });
    }
    if timestamp - now > tolerance {
        return Err(Refused::FromTheFuture {
            ahead: timestamp - now,
            tolerance,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test";
    const BODY: &[u8] = br#"{"request_id":"r1","status":"SUCCEEDED"}"#;

    #[test]
    fn a_signed_notice_verifies_and_any_change_is_refused() {
        let header = sign(SECRET, 1_700_000_000, BODY);
        assert!(header.starts_with("t=1700000000,v1="));
        assert_eq!(verify(SECRET, &header, BODY, 1_700_000_010, 300), Ok(()));
        let tampered = br#"{"request_id":"r2","status":"SUCCEEDED"}"#;
        assert_eq!(
            verify(SECRET, &header, tampered, 1_700_000_010, 300),
            Err(Refused::Mismatch)
        );
        assert_eq!(
            verify(b"other", &header, BODY, 1_700_000_010, 300),
            Err(Refused::Mismatch)
        );
        // The timestamp is signed: moving it breaks the signature.
        let moved = header.replace("t=1700000000", "t=1700000300");
        assert_eq!(
            verify(SECRET, &moved, BODY, 1_700_000_300, 300),
            Err(Refused::Mismatch)
        );
    }

    #[test]
    fn an_old_notice_is_refused_and_a_rotating_secret_accepted() {
        let header = sign(SECRET, 1_700_000_000, BODY);
        assert_eq!(
            verify(SECRET, &header, BODY, 1_700_000_301, 300),
            Err(Refused::TooOld {
                age: 301,
                tolerance: 300
            })
        );
        assert!(matches!(
            verify(SECRET, &header, BODY, 1_699_999_000, 300),
            Err(Refused::FromTheFuture { .. })
        ));
        let old = sign(b"old-secret", 1_700_000_000, BODY);
        let both = format!("{header},{}", old.split_once(',').unwrap().1);
        assert_eq!(
            verify(b"old-secret", &both, BODY, 1_700_000_000, 300),
            Ok(())
        );
        assert_eq!(verify(SECRET, &both, BODY, 1_700_000_000, 300), Ok(()));
        for bad in ["", "v1=00", "t=x,v1=00", "t=1,v1=zz", "t=1"] {
            assert_eq!(
                verify(SECRET, bad, BODY, 1, 300),
                Err(Refused::Malformed),
                "{bad}"
            );
        }
    }
}
