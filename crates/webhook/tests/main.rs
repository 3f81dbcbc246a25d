//! The webhook sender against a receiver on this machine: what arrives, what a status comes
//! back as, and names that resolve into the deployment's own network refused before any
//! connection.

use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use export_core::ports::{PortError, WebhookPost, Webhooks};
use export_core::webhook::Reach;
use export_webhook::{HttpWebhooks, Lookup};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

type Received = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// A receiver on 127.0.0.1 that keeps what it is sent and answers `/ok` 200, `/busy` 503
/// and `/moved` a redirect to `/ok`.
async fn receiver() -> (SocketAddr, Received) {
    let received: Received = Arc::default();
    let keep = |status: u16| {
        let received = received.clone();
        move |headers: HeaderMap, body: Bytes| {
            let received = received.clone();
            async move {
                received.lock().unwrap().push((headers, body));
                let mut response = axum::http::Response::new(axum::body::Body::empty());
                *response.status_mut() = axum::http::StatusCode::from_u16(status).unwrap();
                if status == 307 {
                    response
                        .headers_mut()
                        .insert("location", "/ok".parse().unwrap());
                }
                response
            }
        }
    };
    let app = Router::new()
        .route("/ok", post(keep(200)))
        .route("/busy", post(keep(503)))
        .route("/moved", post(keep(307)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (address, received)
}

fn post_to(url: String) -> WebhookPost {
    WebhookPost {
        url,
        body: Bytes::from_static(br#"{"request_id":"r1"}"#),
        signature: "t=1,v1=00".into(),
        request_id: "r1".into(),
    }
}

/// Every name resolves to `to`, as a caller's DNS record can be made to.
fn resolving_to(to: SocketAddr) -> Lookup {
    Arc::new(move |_host: String| Box::pin(async move { Ok(vec![to]) }))
}

#[tokio::test]
async fn a_notice_arrives_with_its_signature_and_the_status_comes_back() {
    let (address, received) = receiver().await;
    let webhooks = HttpWebhooks::new(Reach::ANYWHERE);
    let status = webhooks
        .post(&post_to(format!("http://{address}/ok")))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        webhooks
            .post(&post_to(format!("http://{address}/busy")))
            .await
            .unwrap(),
        503
    );
    // A redirect is answered as it is, never followed.
    assert_eq!(
        webhooks
            .post(&post_to(format!("http://{address}/moved")))
            .await
            .unwrap(),
        307
    );
    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 3, "the redirect was not followed");
    let (headers, body) = &received[0];
    assert_eq!(headers["export-signature"], "t=1,v1=00");
    assert_eq!(headers["export-request-id"], "r1");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(&body[..], br#"{"request_id":"r1"}"#);
}

#[tokio::test]
async fn a_receiver_that_is_not_there_is_a_transient_failure() {
    // Bound, then closed: nothing listens there now.
    let address = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let e = HttpWebhooks::new(Reach::ANYWHERE)
        .post(&post_to(format!("http://{address}/ok")))
        .await
        .unwrap_err();
    assert!(matches!(e, PortError::Unavailable(_)), "{e:?}");
}

#[tokio::test]
async fn a_name_that_resolves_into_the_deployments_network_is_never_called() {
    let (address, received) = receiver().await;
    // http allowed, so that the receiver on this machine could answer; private addresses not.
    let reach = Reach {
        https_only: false,
        private_addresses: false,
    };
    let webhooks = HttpWebhooks::with_lookup(reach, resolving_to(address));
    let e = webhooks
        .post(&post_to(format!(
            "http://hooks.partner.example:{}/ok",
            address.port()
        )))
        .await
        .unwrap_err();
    match e {
        PortError::Rejected(reason) => {
            assert!(reason.contains("resolves to 127.0.0.1"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // Literals are refused before any lookup, however the address is written.
    let port = address.port();
    for url in [
        format!("http://{address}/ok"),
        format!("http://2130706433:{port}/ok"),
        format!("http://0x7f.1:{port}/ok"),
        format!("http://127.1:{port}/ok"),
        format!("http://127.0.0.1.:{port}/ok"),
        "http://169.254.169.254/latest/meta-data/".into(),
        "http://2852039166/latest/meta-data/".into(),
        "http://[::ffff:10.0.0.1]/".into(),
    ] {
        let e = webhooks.post(&post_to(url.clone())).await.unwrap_err();
        assert!(matches!(e, PortError::Rejected(_)), "{url}: {e:?}");
    }
    assert!(
        received.lock().unwrap().is_empty(),
        "nothing reached the receiver"
    );
}
