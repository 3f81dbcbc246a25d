//! A SigV4-signing client for the export API: local stack or a deployed API Gateway alike,
//! and [`unpack`], which opens the archives it downloads.

pub mod unpack;

use anyhow::{bail, Context};
use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::Value;
use std::time::SystemTime;

/// Credentials to sign with.
#[derive(Clone, Debug)]
pub struct Signer {
    pub access_key: String,
    pub secret_key: String,
    pub session_token: Option<String>,
    pub region: String,
}

impl Signer {
    /// Long-term keys, such as a local stack's identities.
    pub fn with_keys(access_key: &str, secret_key: &str, region: &str) -> Signer {
        Signer {
            access_key: access_key.to_owned(),
            secret_key: secret_key.to_owned(),
            session_token: None,
            region: region.to_owned(),
        }
    }

    /// The standard AWS credential chain: environment, profile, SSO, instance role…
    pub async fn from_environment(region: Option<String>) -> anyhow::Result<Signer> {
        CredentialChain::load(region).await?.signer().await
    }
}

/// The standard AWS credential chain, kept so that each request can be signed with current
/// credentials: temporary ones (SSO, assumed roles) are renewed by the chain as they expire.
#[derive(Clone, Debug)]
pub struct CredentialChain {
    provider: aws_credential_types::provider::SharedCredentialsProvider,
    region: String,
}

impl CredentialChain {
    /// Environment, profile, SSO, instance role…; the region is `region`, else the chain's,
    /// else us-east-1.
    pub async fn load(region: Option<String>) -> anyhow::Result<CredentialChain> {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let provider = config.credentials_provider().context("no AWS credentials found (set AWS_PROFILE or AWS_ACCESS_KEY_ID, or use --as alice for the local stack)")?;
        let region = region
            .or_else(|| config.region().map(|r| r.to_string()))
            .unwrap_or_else(|| "us-east-1".into());
        Ok(CredentialChain { provider, region })
    }

    /// A signer with the chain's current credentials (cached by the chain until they expire).
    pub async fn signer(&self) -> anyhow::Result<Signer> {
        let credentials = self
            .provider
            .provide_credentials()
            .await
            .context("loading AWS credentials")?;
        Ok(Signer {
            access_key: credentials.access_key_id().to_owned(),
            secret_key: credentials.secret_access_key().to_owned(),
            session_token: credentials.session_token().map(str::to_owned),
            region: self.region.clone(),
        })
    }
}

/// A response: status, headers and body.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "the API answered {} with a body that is not JSON",
                self.status
            )
        })
    }

    /// The body as JSON when the status is a success, else the API's error as an error.
    pub fn ok_json(&self) -> anyhow::Result<Value> {
        let value = self.json()?;
        if !self.status.is_success() && !self.status.is_redirection() {
            let message = value["error"]["message"].as_str().unwrap_or("(no message)");
            let code = value["error"]["code"].as_str().unwrap_or("error");
            bail!("{} {code}: {message}", self.status.as_u16());
        }
        Ok(value)
    }
}

/// The path of a lookup: `/lookups/<dataset>?<name>=<value>&…`, each part escaped.
pub fn lookup_path(dataset: &str, params: &[(&str, &str)]) -> String {
    let mut url = reqwest::Url::parse("http://lookup/lookups/").expect("a fixed URL");
    url.path_segments_mut()
        .expect("an http URL has segments")
        .pop_if_empty()
        .push(dataset);
    if !params.is_empty() {
        url.query_pairs_mut().extend_pairs(params);
    }
    match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    }
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    endpoint: reqwest::Url,
    signer: Signer,
}

impl Client {
    pub fn new(endpoint: &str, signer: Signer) -> anyhow::Result<Client> {
        let endpoint = reqwest::Url::parse(endpoint.trim_end_matches('/'))
            .with_context(|| format!("invalid endpoint '{endpoint}'"))?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Client {
            http,
            endpoint,
            signer,
        })
    }

    /// The same endpoint and connections, signing as `signer`.
    pub fn with_signer(&self, signer: Signer) -> Client {
        Client {
            http: self.http.clone(),
            endpoint: self.endpoint.clone(),
            signer,
        }
    }

    /// Sends a signed request; `path` is relative to the endpoint (which may carry a stage).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Reply> {
        let mut all_headers: Vec<(&str, &str)> = Vec::with_capacity(headers.len() + 1);
        if body.is_some() {
            all_headers.push(("content-type", "application/json"));
        }
        all_headers.extend_from_slice(headers);
        let payload = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        self.send_bytes(method, path, payload, &all_headers).await
    }

    /// Sends a signed request whose body is `payload` as it is (its content type, if any,
    /// among `headers`).
    pub async fn send_bytes(
        &self,
        method: Method,
        path: &str,
        payload: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Reply> {
        let base = self.endpoint.as_str().trim_end_matches('/');
        let url = reqwest::Url::parse(&format!("{base}{path}"))?;
        let host = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_owned(),
        };
        let mut all_headers: Vec<(String, String)> = vec![("host".into(), host)];
        all_headers.extend(
            headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string())),
        );
        let signed = self.sign(method.as_str(), url.as_str(), &all_headers, &payload)?;
        let mut request = self.http.request(method, url);
        for (k, v) in all_headers.iter().chain(signed.iter()) {
            request = request.header(k, v);
        }
        let response = request
            .body(payload)
            .send()
            .await
            .context("calling the export API")?;
        Ok(Reply {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.bytes().await?,
        })
    }

    /// The headers SigV4 adds (authorization, x-amz-date, and the session token if any).
    pub fn sign(
        &self,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        payload: &[u8],
    ) -> anyhow::Result<Vec<(String, String)>> {
        self.sign_at(SystemTime::now(), method, url, headers, payload)
    }

    /// [`Self::sign`] as of `time` (a request signed in the past, for instance).
    pub fn sign_at(
        &self,
        time: SystemTime,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        payload: &[u8],
    ) -> anyhow::Result<Vec<(String, String)>> {
        let credentials = aws_credential_types::Credentials::new(
            &self.signer.access_key,
            &self.signer.secret_key,
            self.signer.session_token.clone(),
            None,
            "redshift-export",
        )
        .into();
        let params = v4::SigningParams::builder()
            .identity(&credentials)
            .region(&self.signer.region)
            .name("execute-api")
            .time(time)
            .settings(SigningSettings::default())
            .build()?
            .into();
        let signable = SignableRequest::new(
            method,
            url,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(payload),
        )?;
        let (instructions, _) = sign(signable, &params)?.into_parts();
        Ok(instructions
            .headers()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect())
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(Method::GET, path, None, &[]).await?.ok_json()
    }

    /// `GET /lookups/{dataset}?name=value…`: the answer, or the API's error as an error.
    pub async fn lookup(&self, dataset: &str, params: &[(&str, &str)]) -> anyhow::Result<Value> {
        self.send(Method::GET, &lookup_path(dataset, params), None, &[])
            .await?
            .ok_json()
    }

    pub async fn submit(
        &self,
        request: &Value,
        idempotency_key: Option<&str>,
    ) -> anyhow::Result<Value> {
        let headers: Vec<(&str, &str)> = idempotency_key
            .map(|k| ("idempotency-key", k))
            .into_iter()
            .collect();
        self.send(Method::POST, "/exports", Some(request), &headers)
            .await?
            .ok_json()
    }

    pub async fn status(&self, request_id: &str) -> anyhow::Result<Value> {
        self.get(&format!("/exports/{request_id}")).await
    }

    pub async fn events(&self, request_id: &str) -> anyhow::Result<Value> {
        self.get(&format!("/exports/{request_id}/events")).await
    }

    pub async fn cancel(&self, request_id: &str) -> anyhow::Result<Value> {
        self.send(Method::DELETE, &format!("/exports/{request_id}"), None, &[])
            .await?
            .ok_json()
    }

    /// A fresh download link (the `303` of `GET /exports/{id}/download`).
    pub async fn download_link(&self, request_id: &str) -> anyhow::Result<String> {
        let reply = self
            .send(
                Method::GET,
                &format!("/exports/{request_id}/download"),
                None,
                &[],
            )
            .await?;
        if reply.status != StatusCode::SEE_OTHER {
            reply.ok_json()?;
            bail!("expected a redirect to the archive, got {}", reply.status);
        }
        Ok(reply
            .headers
            .get(http::header::LOCATION)
            .context("redirect without a Location")?
            .to_str()?
            .to_owned())
    }

    /// One page of an export's parts (`archive: none`): `GET /exports/{id}/parts`.
    pub async fn parts(
        &self,
        request_id: &str,
        limit: Option<usize>,
        cursor: Option<&str>,
    ) -> anyhow::Result<Value> {
        let mut query = Vec::new();
        if let Some(limit) = limit {
            query.push(format!("limit={limit}"));
        }
        if let Some(cursor) = cursor {
            // Part cursors are decimal: nothing in them needs escaping.
            query.push(format!("cursor={cursor}"));
        }
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("?{}", query.join("&"))
        };
        self.get(&format!("/exports/{request_id}/parts{query}"))
            .await
    }

    /// Every part of an export handed out as parts, each with a fresh link, page by page: no
    /// more pages than the export's `total_parts` need, whatever cursors come back.
    pub async fn all_parts(&self, request_id: &str) -> anyhow::Result<Vec<Value>> {
        const PAGE: usize = 1000;
        let mut parts = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages_left: Option<usize> = None;
        loop {
            let page = self
                .parts(request_id, Some(PAGE), cursor.as_deref())
                .await?;
            let left = pages_left.get_or_insert_with(|| {
                page["total_parts"]
                    .as_u64()
                    .map_or(1, |total| (total as usize).div_ceil(PAGE).max(1))
            });
            *left -= 1;
            parts.extend(page["parts"].as_array().cloned().unwrap_or_default());
            match page["next_cursor"].as_str() {
                None => return Ok(parts),
                Some(_) if *left == 0 => bail!(
                    "export {request_id}: the API handed out more pages of parts than its total_parts need"
                ),
                Some(next) => cursor = Some(next.to_owned()),
            }
        }
    }

    /// Streams a presigned URL into `path`, whatever its size; returns the bytes written.
    pub async fn fetch_to(&self, url: &str, path: &std::path::Path) -> anyhow::Result<u64> {
        use tokio::io::AsyncWriteExt;
        let mut response = self.http.get(url).send().await?;
        let status = response.status();
        if !status.is_success() {
            let body = response.bytes().await.unwrap_or_default();
            bail!(
                "downloading {} failed: {status} {}",
                path.display(),
                String::from_utf8_lossy(&body)
            );
        }
        let mut file = tokio::fs::File::create(path)
            .await
            .with_context(|| format!("creating {}", path.display()))?;
        let mut written = 0;
        while let Some(chunk) = response.chunk().await? {
            file.write_all(&chunk).await?;
            written += chunk.len() as u64;
        }
        file.flush().await?;
        Ok(written)
    }

    /// Fetches a presigned URL (no signing: the URL carries its own authorisation).
    pub async fn fetch(&self, url: &str) -> anyhow::Result<Bytes> {
        let response = self.http.get(url).send().await?;
        let status = response.status();
        let body = response.bytes().await?;
        if !status.is_success() {
            bail!(
                "downloading the archive failed: {status} {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(body)
    }

    /// Polls until the job reaches a final state; `progress` sees every answer.
    pub async fn wait(
        &self,
        request_id: &str,
        timeout: std::time::Duration,
        mut progress: impl FnMut(&Value),
    ) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut delay = std::time::Duration::from_millis(50);
        loop {
            let status = self.status(request_id).await?;
            progress(&status);
            if matches!(
                status["status"].as_str(),
                Some("SUCCEEDED" | "FAILED" | "CANCELLED")
            ) {
                return Ok(status);
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "export {request_id} still {} after {timeout:?}",
                    status["status"]
                );
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(std::time::Duration::from_secs(2));
        }
    }
}
