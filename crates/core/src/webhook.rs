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

/// Where a deployment lets webhooks go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reach {
    /// Only `https` URLs (every AWS deployment).
    pub https_only: bool,
    /// Loopback, private and link-local addresses too: only the local stack, whose user
    /// runs the receiver on the same machine.
    pub private_addresses: bool,
}

impl Reach {
    /// A deployment in a cloud network: https to public addresses only.
    pub const PUBLIC_HTTPS: Reach = Reach {
        https_only: true,
        private_addresses: false,
    };
    /// One machine: any http(s) URL, this machine's own included.
    pub const ANYWHERE: Reach = Reach {
        https_only: false,
        private_addresses: true,
    };

    /// Whether a webhook may be delivered to `ip`, an address its host resolved to.
    pub fn allows(self, ip: std::net::IpAddr) -> bool {
        self.private_addresses || !forbidden_address(ip)
    }
}

/// Where a webhook may be delivered: the URL's host and port, once the URL is one a caller
/// may name. On AWS only `https` is taken; a URL with credentials in it, or an address
/// literal no deployment should call, is refused here, and every address its name resolves
/// to must pass [`Reach::allows`] when it is called, so a caller cannot make the function
/// call into the VPC or the instance metadata endpoint.
pub fn destination(text: &str, reach: Reach) -> Result<(String, u16), String> {
    // Read by the WHATWG URL rules, as reqwest reads the URL it connects to: an address
    // written as one number, in octal or hex, or with a trailing dot is an address here too.
    let url = url::Url::parse(text).map_err(|_| format!("'{text}' is not a URL"))?;
    let default_port = match url.scheme() {
        "https" => 443,
        "http" if !reach.https_only => 80,
        other => return Err(format!("a webhook is delivered over https, not {other}")),
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err("a webhook URL carries no user name or password".into());
    }
    let refused = |host: &dyn std::fmt::Display| {
        format!("{host} is not an address a webhook may be delivered to")
    };
    let host = match url.host() {
        None => return Err(format!("'{text}' names no host")),
        Some(url::Host::Ipv4(ip)) if !reach.allows(ip.into()) => return Err(refused(&ip)),
        Some(url::Host::Ipv6(ip)) if !reach.allows(ip.into()) => return Err(refused(&ip)),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        Some(url::Host::Domain(name)) => {
            let bare = name.trim_end_matches('.').to_ascii_lowercase();
            let local = bare == "localhost" || bare.ends_with(".localhost");
            if local && !reach.private_addresses {
                return Err(refused(&name));
            }
            name.to_owned()
        }
    };
    Ok((host, url.port().unwrap_or(default_port)))
}

/// A caller's webhook secret: HMAC-SHA256 of the caller under the deployment's webhook key,
/// so it needs no storage and no lookup per notice, and replacing the key replaces every
/// caller's secret (notices are signed with the old key too while [`SigningKeys::previous`]
/// is set). `whsec_` and hex, as `redshift-export verify-webhook` and a partner's code read it.
pub fn caller_secret(key: &[u8], owner: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(b"webhook-secret\0");
    mac.update(owner.as_bytes());
    format!("whsec_{}", hex::encode(mac.finalize().into_bytes()))
}

/// The deployment's webhook keys: the current one, and the one it replaces while partners
/// move to their new secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigningKeys {
    pub current: Vec<u8>,
    pub previous: Option<Vec<u8>>,
}

impl SigningKeys {
    /// The `Export-Signature` value for `owner`'s notice: one `v1` per key.
    pub fn sign(&self, owner: &str, timestamp: i64, body: &[u8]) -> String {
        let mut header = sign(
            caller_secret(&self.current, owner).as_bytes(),
            timestamp,
            body,
        );
        if let Some(previous) = &self.previous {
            let old = sign(caller_secret(previous, owner).as_bytes(), timestamp, body);
            if let Some((_, v1)) = old.split_once(',') {
                header.push(',');
                header.push_str(v1);
            }
        }
        header
    }
}

/// Addresses a deployment never delivers to: loopback, private (RFC 1918, unique local),
/// shared (100.64.0.0/10), link-local (169.254.0.0/16, where the instance metadata endpoint
/// answers, and fe80::/10), unspecified, broadcast, multicast, documentation, protocol
/// (192.0.0.0/24), benchmarking (198.18.0.0/15) and reserved (240.0.0.0/4) ranges; and IPv6
/// addresses that lead to IPv4 ones: mapped, compatible, NAT64 (64:ff9b::/96 and the local
/// 64:ff9b:1::/48), 6to4 (2002::/16, judged by the IPv4 address it carries) and Teredo
/// (2001::/32). The ranges are IANA's special-purpose address registries, IPv4 and IPv6.
pub fn forbidden_address(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240
                || a == 0
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_address(IpAddr::V4(v4));
            }
            let segments = v6.segments();
            let first = segments[0];
            if first == 0x2002 {
                let [hi, lo] = [segments[1].to_be_bytes(), segments[2].to_be_bytes()];
                let carried = std::net::Ipv4Addr::new(hi[0], hi[1], lo[0], lo[1]);
                return forbidden_address(IpAddr::V4(carried));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first == 0x2001 && v6.segments()[1] == 0x0db8)
                // IPv4-compatible and NAT64 forms carry an IPv4 address in their last 32 bits.
                || (v6.segments()[..6] == [0; 6])
                || (v6.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0])
                || (segments[..3] == [0x64, 0xff9b, 1])
                || (segments[..2] == [0x2001, 0])
        }
    }
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
    fn a_webhook_cannot_be_pointed_into_the_network_it_runs_in() {
        assert_eq!(
            destination("https://hooks.partner.example/exports", Reach::PUBLIC_HTTPS),
            Ok(("hooks.partner.example".into(), 443))
        );
        assert_eq!(
            destination("http://127.0.0.1:9000/x", Reach::PUBLIC_HTTPS).unwrap_err(),
            "a webhook is delivered over https, not http"
        );
        assert_eq!(
            destination("https://127.0.0.1:9000/x", Reach::PUBLIC_HTTPS).unwrap_err(),
            "127.0.0.1 is not an address a webhook may be delivered to"
        );
        // The local stack's user runs the receiver on the same machine.
        assert_eq!(
            destination("http://127.0.0.1:9000/x", Reach::ANYWHERE),
            Ok(("127.0.0.1".into(), 9000))
        );
        assert_eq!(
            destination("http://localhost/x", Reach::ANYWHERE),
            Ok(("localhost".into(), 80))
        );
        assert!(destination("http://u:p@localhost/x", Reach::ANYWHERE).is_err());
        for (url, says) in [
            ("http://hooks.partner.example/", "over https"),
            ("ftp://hooks.partner.example/", "over https"),
            ("https://user:pw@hooks.partner.example/", "no user name"),
            (
                "https://169.254.169.254/latest/meta-data/",
                "not an address",
            ),
            ("https://10.0.0.5/", "not an address"),
            ("https://172.16.0.1/", "not an address"),
            ("https://192.168.1.1/", "not an address"),
            ("https://100.64.0.1/", "not an address"),
            ("https://0.0.0.0/", "not an address"),
            ("https://[::1]/", "not an address"),
            ("https://[fd00::1]/", "not an address"),
            ("https://[fe80::1]/", "not an address"),
            ("https://[::ffff:169.254.169.254]/", "not an address"),
            ("https://localhost/", "not an address"),
            ("https://api.localhost/", "not an address"),
            ("https://localhost./", "not an address"),
            // An address written otherwise than in four decimal parts is the same address.
            ("https://2130706433/", "not an address"),
            ("https://0x7f.1/", "not an address"),
            ("https://127.1/", "not an address"),
            ("https://0177.0.0.1/", "not an address"),
            ("https://127.0.0.1./", "not an address"),
            ("https://167772161/", "not an address"),
            ("https://2852039166/latest/meta-data/", "not an address"),
            ("https://[::ffff:a9fe:a9fe]/", "not an address"),
            // Special-purpose ranges, and IPv6 forms that reach IPv4 addresses.
            ("https://192.0.0.8/", "not an address"),
            ("https://198.18.0.1/", "not an address"),
            ("https://240.0.0.1/", "not an address"),
            ("https://[2002:a9fe:a9fe::1]/", "not an address"),
            ("https://[2002:7f00:1::]/", "not an address"),
            ("https://[2001:0:4136:e378::1]/", "not an address"),
            ("https://[64:ff9b:1::a00:1]/", "not an address"),
            ("not a url", "not a URL"),
        ] {
            let e = destination(url, Reach::PUBLIC_HTTPS).unwrap_err();
            assert!(e.contains(says), "{url}: {e}");
        }
        assert!(!forbidden_address("203.0.114.7".parse().unwrap()));
        assert!(!forbidden_address("2a00:1450:4001::200e".parse().unwrap()));
        // 6to4 of a public address (203.0.114.7) is judged by that address.
        assert!(!forbidden_address("2002:cb00:7207::1".parse().unwrap()));
        assert!(!forbidden_address("198.20.0.1".parse().unwrap()));
    }

    #[test]
    fn each_caller_has_its_own_secret_and_a_replaced_key_signs_twice() {
        let keys = SigningKeys {
            current: b"key-2".to_vec(),
            previous: None,
        };
        let alice = caller_secret(&keys.current, "arn:aws:iam::1:user/alice");
        let bob = caller_secret(&keys.current, "arn:aws:iam::1:user/bob");
        assert!(alice.starts_with("whsec_") && alice.len() == 6 + 64);
        assert_ne!(alice, bob);
        assert_ne!(alice, caller_secret(b"key-1", "arn:aws:iam::1:user/alice"));
        let header = keys.sign("arn:aws:iam::1:user/alice", 1_700_000_000, BODY);
        assert_eq!(
            verify(alice.as_bytes(), &header, BODY, 1_700_000_000, 300),
            Ok(())
        );
        assert_eq!(
            verify(bob.as_bytes(), &header, BODY, 1_700_000_000, 300),
            Err(Refused::Mismatch)
        );
        let rotating = SigningKeys {
            current: b"key-2".to_vec(),
            previous: Some(b"key-1".to_vec()),
        };
        let header = rotating.sign("arn:aws:iam::1:user/alice", 1_700_000_000, BODY);
        assert_eq!(header.matches("v1=").count(), 2);
        let old = caller_secret(b"key-1", "arn:aws:iam::1:user/alice");
        assert_eq!(
            verify(old.as_bytes(), &header, BODY, 1_700_000_000, 300),
            Ok(())
        );
        assert_eq!(
            verify(alice.as_bytes(), &header, BODY, 1_700_000_000, 300),
            Ok(())
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
