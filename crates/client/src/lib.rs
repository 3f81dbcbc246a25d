//! A SigV4-signing client for the export API: local stack or a deployed API Gateway alike,
//! and [`unpack`], which opens the archives it downloads. It answers with the contract's own
//! types ([`export_api`]), and a refusal as a [`Refused`] carrying the API's error.

pub mod unpack;

use anyhow::{bail, Context};
use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use export_api::{
    Accepted, Datasets, ErrorBody, ErrorDetail, JobHistory, JobList, JobView, LookupAnswer,
    PartLink, PartList, QuotaView, SubscriptionList, SubscriptionRuns, SubscriptionView,
    WebhookSecret, WebhookTestResult,
};
use http::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::fmt;
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

/// A request with its signature, ready to send (see [`Client::signed_request`]).
#[derive(Clone, Debug)]
pub struct SignedRequest {
    pub method: Method,
    pub url: reqwest::Url,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
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

    /// The body as JSON when the status is a success, else the API's error as a [`Refused`].
    pub fn ok_json(&self) -> anyhow::Result<Value> {
        self.read()
    }

    /// The body as the route's answer type when the status is a success, else the API's
    /// error as a [`Refused`].
    pub fn read<T: DeserializeOwned>(&self) -> anyhow::Result<T> {
        if !self.status.is_success() && !self.status.is_redirection() {
            let error = serde_json::from_slice::<ErrorBody>(&self.body)
                .map(|body| body.error)
                .unwrap_or_else(|_| ErrorDetail {
                    code: "error".into(),
                    message: String::from_utf8_lossy(&self.body).into_owned(),
                    field: None,
                    statement_id: None,
                });
            return Err(Refused {
                status: self.status,
                error,
            }
            .into());
        }
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "the API answered {} with a body that is not what the route answers: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// The API refused a request: its status and its error (`code`, `message`, `field`).
#[derive(Clone, Debug, PartialEq)]
pub struct Refused {
    pub status: StatusCode,
    pub error: ErrorDetail,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.error.code,
            self.error.message
        )
    }
}

impl std::error::Error for Refused {}

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
    relative(&url)
}

/// A page of a listing: `path?limit=…&cursor=…`, each value escaped.
fn paged(path: &str, limit: Option<usize>, cursor: Option<&str>) -> String {
    let mut url = reqwest::Url::parse("http://api/").expect("a fixed URL");
    url.set_path(path);
    if let Some(limit) = limit {
        url.query_pairs_mut()
            .append_pair("limit", &limit.to_string());
    }
    if let Some(cursor) = cursor {
        url.query_pairs_mut().append_pair("cursor", cursor);
    }
    relative(&url)
}

/// A URL's path and query, as the endpoint-relative path `send` takes.
fn relative(url: &reqwest::Url) -> String {
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
        let request = self.signed_request(method, path, payload, headers)?;
        self.send_signed(&request).await
    }

    /// A request signed now, to send later with [`Self::send_signed`]: a load generator signs
    /// its requests before its clock starts, so what it times is the server, not its own
    /// signing. API Gateway refuses a request signed more than five minutes from its own time
    /// ("Signature expired: … (… - 5 min.)"), as the local gateway does: send within that.
    pub fn signed_request(
        &self,
        method: Method,
        path: &str,
        payload: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<SignedRequest> {
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
        all_headers.extend(signed);
        Ok(SignedRequest {
            method,
            url,
            headers: all_headers,
            body: Bytes::from(payload),
        })
    }

    /// Sends a request signed before, as it was signed.
    pub async fn send_signed(&self, signed: &SignedRequest) -> anyhow::Result<Reply> {
        let mut request = self.http.request(signed.method.clone(), signed.url.clone());
        for (k, v) in &signed.headers {
            request = request.header(k, v);
        }
        let response = request
            .body(signed.body.clone())
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

    async fn get_as<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(Method::GET, path, None, &[]).await?.read()
    }

    /// `GET /lookups/{dataset}?name=value…`: the answer, or the API's error as an error.
    pub async fn lookup(
        &self,
        dataset: &str,
        params: &[(&str, &str)],
    ) -> anyhow::Result<LookupAnswer<'static>> {
        self.get_as(&lookup_path(dataset, params)).await
    }

    /// `POST /exports`: an [`export_api::ExportRequest`], or any body (a test's malformed one).
    pub async fn submit<B: Serialize + ?Sized>(
        &self,
        request: &B,
        idempotency_key: Option<&str>,
    ) -> anyhow::Result<Accepted> {
        let headers: Vec<(&str, &str)> = idempotency_key
            .map(|k| ("idempotency-key", k))
            .into_iter()
            .collect();
        let body = serde_json::to_value(request)?;
        self.send(Method::POST, "/exports", Some(&body), &headers)
            .await?
            .read()
    }

    /// `POST /exports` as a form: `fields` as given (`dataset`, `params.<name>`, `format`, …),
    /// parameter values as text for the API to type by the catalogue.
    pub async fn submit_form(
        &self,
        fields: &[(&str, &str)],
        idempotency_key: Option<&str>,
    ) -> anyhow::Result<Accepted> {
        let body = reqwest::Url::parse_with_params("http://form/", fields)?
            .query()
            .unwrap_or_default()
            .to_owned();
        let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
        headers.extend(idempotency_key.map(|k| ("idempotency-key", k)));
        self.send_bytes(Method::POST, "/exports", body.into_bytes(), &headers)
            .await?
            .read()
    }

    pub async fn status(&self, request_id: &str) -> anyhow::Result<JobView> {
        self.get_as(&format!("/exports/{request_id}")).await
    }

    pub async fn events(&self, request_id: &str) -> anyhow::Result<JobHistory> {
        self.get_as(&format!("/exports/{request_id}/events")).await
    }

    /// `GET /exports`: a page of the caller's jobs, newest first.
    pub async fn jobs(
        &self,
        limit: Option<usize>,
        cursor: Option<&str>,
    ) -> anyhow::Result<JobList> {
        self.get_as(&paged("/exports", limit, cursor)).await
    }

    /// `GET /exports?owner=`: another caller's jobs, newest first (for an admin of the
    /// access policy; anyone else is refused 403).
    pub async fn jobs_of(
        &self,
        owner: &str,
        limit: Option<usize>,
        cursor: Option<&str>,
    ) -> anyhow::Result<JobList> {
        let mut url = reqwest::Url::parse("http://api/").expect("a fixed URL");
        url.set_path("/exports");
        url.query_pairs_mut().append_pair("owner", owner);
        if let Some(limit) = limit {
            url.query_pairs_mut()
                .append_pair("limit", &limit.to_string());
        }
        if let Some(cursor) = cursor {
            url.query_pairs_mut().append_pair("cursor", cursor);
        }
        self.get_as(&relative(&url)).await
    }

    /// `GET /datasets`: the catalogue.
    pub async fn datasets(&self) -> anyhow::Result<Datasets> {
        self.get_as("/datasets").await
    }

    /// `GET /quota`: the caller's quotas and today's use of them.
    pub async fn quota(&self) -> anyhow::Result<QuotaView> {
        self.get_as("/quota").await
    }

    /// `POST /subscriptions`.
    pub async fn subscribe<B: Serialize + ?Sized>(
        &self,
        request: &B,
    ) -> anyhow::Result<SubscriptionView> {
        let body = serde_json::to_value(request)?;
        self.send(Method::POST, "/subscriptions", Some(&body), &[])
            .await?
            .read()
    }

    /// `GET /subscriptions`: the caller's subscriptions, oldest first.
    pub async fn subscriptions(&self) -> anyhow::Result<SubscriptionList> {
        self.get_as("/subscriptions").await
    }

    pub async fn subscription(&self, id: &str) -> anyhow::Result<SubscriptionView> {
        self.get_as(&format!("/subscriptions/{id}")).await
    }

    /// `POST /subscriptions/{id}/pause` or `/resume`.
    pub async fn pause_subscription(
        &self,
        id: &str,
        pause: bool,
    ) -> anyhow::Result<SubscriptionView> {
        let action = if pause { "pause" } else { "resume" };
        self.send(
            Method::POST,
            &format!("/subscriptions/{id}/{action}"),
            None,
            &[],
        )
        .await?
        .read()
    }

    pub async fn delete_subscription(&self, id: &str) -> anyhow::Result<()> {
        let reply = self
            .send(Method::DELETE, &format!("/subscriptions/{id}"), None, &[])
            .await?;
        if reply.status == StatusCode::NO_CONTENT {
            return Ok(());
        }
        reply.read::<Value>().map(drop)
    }

    /// `GET /subscriptions/{id}/runs`: newest first.
    pub async fn subscription_runs(&self, id: &str) -> anyhow::Result<SubscriptionRuns> {
        self.get_as(&format!("/subscriptions/{id}/runs")).await
    }

    /// `POST /webhook-test`: a signed test notice sent to `url` by the API.
    pub async fn test_webhook(&self, url: &str) -> anyhow::Result<WebhookTestResult> {
        let body = serde_json::json!({ "url": url });
        self.send(Method::POST, "/webhook-test", Some(&body), &[])
            .await?
            .read()
    }

    /// `GET /webhook-secret`: the key the caller's webhook notices are signed with.
    pub async fn webhook_secret(&self) -> anyhow::Result<WebhookSecret> {
        self.get_as("/webhook-secret").await
    }

    pub async fn cancel(&self, request_id: &str) -> anyhow::Result<Accepted> {
        self.send(Method::DELETE, &format!("/exports/{request_id}"), None, &[])
            .await?
            .read()
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
    ) -> anyhow::Result<PartList> {
        self.get_as(&paged(
            &format!("/exports/{request_id}/parts"),
            limit,
            cursor,
        ))
        .await
    }

    /// Every part of an export handed out as parts, each with a fresh link, page by page: no
    /// more pages than the export's `total_parts` need, whatever cursors come back.
    pub async fn all_parts(&self, request_id: &str) -> anyhow::Result<Vec<PartLink>> {
        const PAGE: usize = 1000;
        let mut parts = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages_left: Option<usize> = None;
        loop {
            let page = self
                .parts(request_id, Some(PAGE), cursor.as_deref())
                .await?;
            let left = pages_left.get_or_insert_with(|| page.total_parts.div_ceil(PAGE).max(1));
            *left -= 1;
            parts.extend(page.parts);
            match page.next_cursor.as_deref() {
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
        mut progress: impl FnMut(&JobView),
    ) -> anyhow::Result<JobView> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut delay = std::time::Duration::from_millis(50);
        loop {
            let status = self.status(request_id).await?;
            progress(&status);
            if status.summary.status.is_terminal() {
                return Ok(status);
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "export {request_id} still {} after {timeout:?}",
                    status.summary.status
                );
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(std::time::Duration::from_secs(2));
        }
    }
}
