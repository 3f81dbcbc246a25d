//! SigV4 verification as API Gateway's IAM authoriser does it: the signature is recomputed
//! over the request as received, with the `aws-sigv4` signer, and compared.

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use chrono::{DateTime, NaiveDateTime, Utc};
use export_core::domain::Owner;
use http::{HeaderMap, Method, Uri};
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

pub const REGION: &str = "us-east-1";
pub const SERVICE: &str = "execute-api";
/// How far a request's time may be from the gateway's, either way.
pub const MAX_SKEW: Duration = Duration::from_secs(5 * 60);

/// A caller the local gateway knows: access key, secret, and the IAM ARN it stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalIdentity {
    pub access_key: String,
    pub secret_key: String,
    pub arn: String,
}

impl LocalIdentity {
    pub fn new(access_key: &str, secret_key: &str, arn: &str) -> Self {
        LocalIdentity {
            access_key: access_key.into(),
            secret_key: secret_key.into(),
            arn: arn.into(),
        }
    }

    /// `alice` and `bob`, so that ownership can be seen on the local stack.
    pub fn demo() -> Vec<LocalIdentity> {
        vec![
            LocalIdentity::new(
                "LOCALALICE",
                "local-alice-secret",
                "arn:aws:iam::000000000000:user/alice",
            ),
            LocalIdentity::new(
                "LOCALBOB",
                "local-bob-secret",
                "arn:aws:iam::000000000000:user/bob",
            ),
        ]
    }

    /// What the identity is called: the last part of its ARN (`alice` for
    /// `arn:aws:iam::000000000000:user/alice`), else its access key.
    pub fn name(&self) -> &str {
        match self.arn.rsplit(['/', ':']).next() {
            Some(name) if !name.is_empty() => name,
            _ => &self.access_key,
        }
    }

    /// The demo identity called `name` (`alice`, `bob`).
    pub fn demo_named(name: &str) -> Option<LocalIdentity> {
        LocalIdentity::demo().into_iter().find(|i| i.name() == name)
    }

    /// Parses `ACCESS_KEY:SECRET:ARN` (the ARN keeps its own colons).
    pub fn parse(spec: &str) -> Result<LocalIdentity, String> {
        let mut parts = spec.splitn(3, ':');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(s), Some(arn))
                if !a.is_empty() && !s.is_empty() && arn.starts_with("arn:") =>
            {
                Ok(LocalIdentity::new(a, s, arn))
            }
            _ => Err(format!("identity '{spec}' must be ACCESS_KEY:SECRET:ARN")),
        }
    }
}

/// The identities the gateway accepts, by access key.
#[derive(Clone, Debug, Default)]
pub struct Verifier {
    identities: HashMap<String, LocalIdentity>,
}

struct Authorization<'a> {
    access_key: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Option<Authorization<'_>> {
    let rest = value.strip_prefix("AWS4-HMAC-SHA256")?.trim_start();
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (key, val) = part.trim().split_once('=')?;
        match key {
            "Credential" => credential = Some(val),
            "SignedHeaders" => signed_headers = Some(val),
            "Signature" => signature = Some(val),
            _ => return None,
        }
    }
    let mut scope = credential?.split('/');
    let access_key = scope.next()?;
    let date = scope.next()?;
    let region = scope.next()?;
    let service = scope.next()?;
    if scope.next()? != "aws4_request" || scope.next().is_some() {
        return None;
    }
    Some(Authorization {
        access_key,
        date,
        region,
        service,
        signed_headers: signed_headers?.split(';').collect(),
        signature: signature?,
    })
}

impl Verifier {
    pub fn new(identities: impl IntoIterator<Item = LocalIdentity>) -> Verifier {
        Verifier {
            identities: identities
                .into_iter()
                .map(|i| (i.access_key.clone(), i))
                .collect(),
        }
    }

    /// Checks the request's signature; returns the caller's ARN, or API Gateway's message.
    pub fn verify(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Owner, String> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let authorization = header("authorization").ok_or("Missing Authentication Token")?;
        let auth = parse_authorization(authorization).ok_or("Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters (AWS4-HMAC-SHA256).")?;
        let identity = self
            .identities
            .get(auth.access_key)
            .ok_or("The security token included in the request is invalid.")?;
        if auth.region != REGION || auth.service != SERVICE {
            return Err(format!("Credential should be scoped to a valid region and service: expected {REGION}/{SERVICE}."));
        }
        let amz_date = header("x-amz-date").ok_or(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
        )?;
        let signed_at = NaiveDateTime::parse_from_str(amz_date, "%Y%m%dT%H%M%SZ")
            .map_err(|_| format!("Invalid X-Amz-Date '{amz_date}'"))?
            .and_utc();
        if auth.date.len() != 8 || amz_date.get(..8) != Some(auth.date) {
            return Err("Credential should be scoped to the date of X-Amz-Date.".into());
        }
        let skew = (now - signed_at).num_seconds().unsigned_abs();
        if skew > MAX_SKEW.as_secs() {
            return Err(format!(
                "Signature expired: {amz_date} is now earlier than {} ({} - 5 min.)",
                (now - chrono::Duration::minutes(5)).format("%Y%m%dT%H%M%SZ"),
                now.format("%Y%m%dT%H%M%SZ")
            ));
        }
        if !auth.signed_headers.contains(&"host") {
            return Err("'Host' must be a signed header.".into());
        }
        // Sign exactly the headers the caller listed, with the caller's time, then compare.
        let mut signed = Vec::with_capacity(auth.signed_headers.len());
        for name in &auth.signed_headers {
            let values: Vec<&str> = headers
                .get_all(*name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            if values.is_empty() {
                return Err(format!(
                    "Signed header '{name}' is missing from the request."
                ));
            }
            signed.push((*name, values.join(",")));
        }
        let mut settings = SigningSettings::default();
        settings.excluded_headers = Some(Vec::new());
        let credentials = Credentials::new(
            &identity.access_key,
            &identity.secret_key,
            None,
            None,
            "local-gateway",
        )
        .into();
        let params = v4::SigningParams::builder()
            .identity(&credentials)
            .region(REGION)
            .name(SERVICE)
            .time(SystemTime::from(signed_at))
            .settings(settings)
            .build()
            .map_err(|e| format!("cannot build signing parameters: {e}"))?
            .into();
        let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
        let signable = SignableRequest::new(
            method.as_str(),
            path_and_query,
            signed.iter().map(|(k, v)| (*k, v.as_str())),
            SignableBody::Bytes(body),
        )
        .map_err(|e| format!("the request cannot be signed: {e}"))?;
        let expected =
            sign(signable, &params).map_err(|e| format!("the request cannot be signed: {e}"))?;
        let matches: bool = subtle::ConstantTimeEq::ct_eq(
            expected.signature().as_bytes(),
            auth.signature.as_bytes(),
        )
        .into();
        if !matches {
            return Err("The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.".into());
        }
        Ok(Owner(identity.arn.clone()))
    }
}
