//! The web console: a page, a script and a style sheet embedded in the binary, served under
//! `/console`, and the proxy that signs the page's calls to the API.
//!
//! The browser never holds a secret. The page names the identity it acts as in a header; the
//! proxy signs the call with that identity's credentials (the local stack's demo keys, or the
//! AWS credential chain for a deployed API) and forwards it unchanged to the API's own routes.
//! Because such a proxy would sign for anyone who can reach it, it answers only same-origin
//! calls made to a loopback host name: the custom header makes any cross-site call need a CORS
//! preflight, which is never granted, and the host check defeats DNS rebinding.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use export_client::{Client, CredentialChain, Signer};
use http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use serde_json::json;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Under this prefix, the API's own routes.
const PROXY_PREFIX: &str = "/console/api";

/// The header naming the identity a call is signed as.
pub const IDENTITY_HEADER: &str = "x-console-identity";
/// The header carrying the console's access token, when it has one.
pub const TOKEN_HEADER: &str = "x-console-token";

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const STYLE_CSS: &str = include_str!("../assets/style.css");

/// Request headers the API reads, passed on; everything else (cookies included) stays behind.
const FORWARDED_REQUEST_HEADERS: [&str; 5] = [
    "accept",
    "cache-control",
    "content-type",
    "if-none-match",
    "idempotency-key",
];

/// Response headers the page reads, passed back.
const FORWARDED_RESPONSE_HEADERS: [header::HeaderName; 6] = [
    header::CACHE_CONTROL,
    header::CONTENT_TYPE,
    header::ETAG,
    header::LOCATION,
    header::RETRY_AFTER,
    header::VARY,
];

/// Whose credentials sign a call.
#[derive(Clone)]
pub enum Credentials {
    /// Fixed keys: the local stack's identities.
    Keys(Signer),
    /// The AWS credential chain, asked for current credentials at each call.
    Chain(CredentialChain),
}

/// One identity the page may act as.
#[derive(Clone)]
pub struct Identity {
    /// What the page's selector shows and sends back (`alice`, `bob`, `aws`).
    pub name: String,
    pub credentials: Credentials,
}

/// What the console serves and signs for.
pub struct Console {
    /// The API the calls go to: its connections, shared by every identity (each call signs
    /// with [`Client::with_signer`]).
    client: Client,
    endpoint: String,
    identities: Vec<Identity>,
    /// When set, calls must carry it: other local users and processes can reach a loopback
    /// port too, and must not borrow the credentials it signs with.
    token: Option<String>,
}

impl Console {
    /// A console for the API at `endpoint`; the first identity is the page's default.
    pub fn new(endpoint: &str, identities: Vec<Identity>) -> anyhow::Result<Console> {
        anyhow::ensure!(!identities.is_empty(), "the console needs an identity");
        // Never used to sign: every call names its identity.
        let unsigned = Signer::with_keys("", "", "us-east-1");
        Ok(Console {
            client: Client::new(endpoint, unsigned)?,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            identities,
            token: None,
        })
    }

    /// Requires a fresh random token on every call, which [`Self::address`] hands to the page.
    pub fn with_token(mut self) -> Console {
        self.token = Some(uuid::Uuid::new_v4().simple().to_string());
        self
    }

    /// The page's address on `addr`, with the token when there is one: the one address to
    /// open (the page keeps the token and drops it from the address bar).
    pub fn address(&self, addr: std::net::SocketAddr) -> String {
        match &self.token {
            Some(token) => format!("http://{addr}/console/?token={token}"),
            None => format!("http://{addr}/console/"),
        }
    }

    fn check_token(&self, headers: &HeaderMap) -> Result<(), ProxyError> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        let given = headers
            .get(TOKEN_HEADER)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        // Compared in time that does not depend on where they differ.
        if bool::from(given.ct_eq(token.as_bytes())) {
            Ok(())
        } else {
            Err(ProxyError::forbidden(
                "this console needs its token: open the address it printed when it started"
                    .to_owned(),
            ))
        }
    }

    async fn client_for(&self, name: &str) -> Result<Client, ProxyError> {
        let identity = self
            .identities
            .iter()
            .find(|i| i.name == name)
            .ok_or_else(|| {
                ProxyError::new(
                    StatusCode::BAD_REQUEST,
                    "unknown_identity",
                    format!("the console has no identity named '{name}'"),
                )
            })?;
        let signer = match &identity.credentials {
            Credentials::Keys(signer) => signer.clone(),
            Credentials::Chain(chain) => chain.signer().await.map_err(|e| {
                ProxyError::new(StatusCode::UNAUTHORIZED, "no_credentials", format!("{e:#}"))
            })?,
        };
        Ok(self.client.with_signer(signer))
    }
}

/// `/console` and everything under it: the page, its files, the identities, the proxy.
pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/", get(index))
        .route("/console/app.js", get(app_js))
        .route("/console/style.css", get(style_css))
        .route("/console/identities", get(identities))
        .route("/console/api/{*path}", any(proxy))
        .with_state(console)
}

/// Serves the console alone (for a deployed API) on `listener` until `shutdown`; `/` leads to
/// it. The listener must be on a loopback address: the console signs for whoever reaches it.
pub async fn serve(
    listener: tokio::net::TcpListener,
    console: Arc<Console>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    check_listen_address(listener.local_addr()?)?;
    let app = router(console).route("/", get(|| async { Redirect::temporary("/console/") }));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

/// The console signs for whoever reaches it, so it listens on a loopback address only.
pub fn check_listen_address(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    anyhow::ensure!(
        addr.ip().is_loopback(),
        "the console signs with your credentials, so it listens on a loopback address only, not {addr}"
    );
    Ok(())
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    let headers = response.headers_mut();
    // The page is served with the build it belongs to; no stale copy should outlive it.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self' data:; form-action 'none'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn style_css() -> Response {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

/// The identities the page may choose among, and the API they reach.
async fn identities(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ProxyError> {
    check_origin(&headers, false)?;
    console.check_token(&headers)?;
    let names: Vec<&str> = console.identities.iter().map(|i| i.name.as_str()).collect();
    Ok(Json(
        json!({ "identities": names, "endpoint": console.endpoint }),
    ))
}

/// `/console/api/<path>`: the API's `/<path>`, signed as the identity the page names.
async fn proxy(
    State(console): State<Arc<Console>>,
    uri: Uri,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ProxyError> {
    check_origin(&headers, true)?;
    console.check_token(&headers)?;
    let name = headers
        .get(IDENTITY_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let client = console.client_for(name).await?;
    // The path and query as the page sent them, still percent-encoded: the API must see (and
    // the signature cover) exactly what the page asked for.
    let target = uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or_default()
        .strip_prefix(PROXY_PREFIX)
        .unwrap_or_default()
        .to_owned();
    let forwarded: Vec<(&str, &str)> = FORWARDED_REQUEST_HEADERS
        .iter()
        .filter_map(|name| Some((*name, headers.get(*name)?.to_str().ok()?)))
        .collect();
    let reply = client
        .send_bytes(method.clone(), &target, body.to_vec(), &forwarded)
        .await
        .map_err(|e| {
            tracing::warn!(error = %format!("{e:#}"), %method, path = %target, "the API could not be reached");
            ProxyError::new(
                StatusCode::BAD_GATEWAY,
                "api_unreachable",
                format!("the API at {} could not be reached: {e:#}", console.endpoint),
            )
        })?;
    let mut response = (reply.status, reply.body).into_response();
    let out = response.headers_mut();
    for name in FORWARDED_RESPONSE_HEADERS {
        for value in reply.headers.get_all(&name) {
            out.append(name.clone(), value.clone());
        }
    }
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Only the console's own page, on a loopback name, may use the proxy.
fn check_origin(headers: &HeaderMap, needs_identity: bool) -> Result<(), ProxyError> {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !is_loopback_host(host) {
        return Err(ProxyError::forbidden(format!(
            "the console answers only on a loopback address, not '{host}'"
        )));
    }
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if site != "same-origin" && site != "none" {
            return Err(ProxyError::forbidden(format!(
                "the console answers only its own page (this call came from a {site} page)"
            )));
        }
    }
    if needs_identity && !headers.contains_key(IDENTITY_HEADER) {
        return Err(ProxyError::forbidden(format!(
            "calls through the console name their identity in {IDENTITY_HEADER}"
        )));
    }
    Ok(())
}

/// `127.0.0.1`, `[::1]` or `localhost`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The proxy's own refusals, in the API's error shape.
#[derive(Debug)]
struct ProxyError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ProxyError {
    fn new(status: StatusCode, code: &'static str, message: String) -> ProxyError {
        ProxyError {
            status,
            code,
            message,
        }
    }

    fn forbidden(message: String) -> ProxyError {
        ProxyError::new(StatusCode::FORBIDDEN, "console_forbidden", message)
    }
}

impl IntoResponse for ProxyError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({ "error": { "code": self.code, "message": self.message } })),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests;
