//! The [`Webhooks`] port over HTTP(S), for every deployment: each notice POSTed once per call
//! (the poller retries), no redirect followed, no proxy from the environment, and every
//! address the URL's host resolves to held to the deployment's [`Reach`] before any
//! connection is made. Checking the resolved addresses, not only the name, is what stops a
//! caller's name that resolves to `169.254.169.254` or a VPC address (or comes to resolve to
//! one later): the connection goes only to the addresses checked here.

use async_trait::async_trait;
use export_core::ports::{PortError, PortResult, WebhookPost, Webhooks};
use export_core::webhook::{destination, Reach, SIGNATURE_HEADER};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// How long one POST may take, connecting included: a receiver should answer at once and do
/// its work later.
pub const POST_TIMEOUT: Duration = Duration::from_secs(10);

/// What resolves a host name to its addresses (the system's resolver, or a test's).
pub type Lookup = Arc<
    dyn Fn(String) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send>>
        + Send
        + Sync,
>;

/// Webhook notices POSTed with reqwest.
pub struct HttpWebhooks {
    client: reqwest::Client,
    reach: Reach,
}

/// A name that resolved to an address the deployment does not deliver to.
#[derive(Debug)]
struct ForbiddenAddress(String);

impl std::fmt::Display for ForbiddenAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ForbiddenAddress {}

/// Resolves with `lookup`, then refuses the whole name if any address is out of reach: a
/// name with one public and one private address is not delivered to at all.
struct CheckedResolver {
    lookup: Lookup,
    reach: Reach,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let lookup = self.lookup.clone();
        let reach = self.reach;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addresses = lookup(host.clone()).await?;
            if addresses.is_empty() {
                return Err(format!("{host} resolves to no address").into());
            }
            if let Some(bad) = addresses.iter().find(|a| !reach.allows(a.ip())) {
                return Err(Box::new(ForbiddenAddress(format!(
                    "{host} resolves to {}, which is not an address a webhook may be delivered to",
                    bad.ip()
                )))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The system's resolver, as tokio asks it.
fn system_lookup() -> Lookup {
    Arc::new(|host: String| {
        Box::pin(async move { Ok(tokio::net::lookup_host((host.as_str(), 0)).await?.collect()) })
    })
}

impl HttpWebhooks {
    /// POSTs within `reach`, resolving names with the system's resolver.
    pub fn new(reach: Reach) -> HttpWebhooks {
        HttpWebhooks::with_lookup(reach, system_lookup())
    }

    /// POSTs within `reach`, resolving names with `lookup`.
    pub fn with_lookup(reach: Reach, lookup: Lookup) -> HttpWebhooks {
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(CheckedResolver { lookup, reach }))
            // A redirect could lead anywhere, the deployment's own network included.
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would make the connection, to addresses this never checked.
            .no_proxy()
            .timeout(POST_TIMEOUT)
            .user_agent(concat!(
                "redshift-export-webhooks/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .expect("the webhook client's settings are valid");
        HttpWebhooks { client, reach }
    }
}

#[async_trait]
impl Webhooks for HttpWebhooks {
    async fn post(&self, post: &WebhookPost) -> PortResult<u16> {
        // Address literals never reach the resolver: they are checked here.
        destination(&post.url, self.reach).map_err(PortError::Rejected)?;
        let answer = self
            .client
            .post(&post.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, &post.signature)
            .header("Export-Request-Id", &post.request_id)
            .body(post.body.clone())
            .send()
            .await;
        match answer {
            Ok(response) => Ok(response.status().as_u16()),
            Err(e) => Err(match forbidden(&e) {
                Some(reason) => PortError::Rejected(reason),
                None => PortError::Unavailable(format!("POST {}: {}", post.url, chain(&e))),
            }),
        }
    }
}

/// The refusal of a resolved address, if that is what stopped the request.
fn forbidden(e: &reqwest::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(error) = source {
        if let Some(forbidden) = error.downcast_ref::<ForbiddenAddress>() {
            return Some(forbidden.0.clone());
        }
        source = error.source();
    }
    None
}

/// The error and its causes, so a history line says why (refused, timed out, TLS).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
