use super::*;
use axum::body::Body;
use http::Request;
use tower::ServiceExt;

fn console() -> Arc<Console> {
    Arc::new(
        Console::new(
            // Nothing listens here (a port just found free): the checks under test answer
            // before any call is made, and the one call that is made is refused.
            &format!("http://127.0.0.1:{}", free_port()),
            vec![Identity {
                name: "alice".into(),
                credentials: Credentials::Keys(Signer::with_keys("A", "S", "us-east-1")),
            }],
        )
        .unwrap(),
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn call(request: Request<Body>) -> (StatusCode, HeaderMap, serde_json::Value) {
    let response = router(console()).oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    (status, headers, json)
}

fn get(uri: &str, host: &str) -> http::request::Builder {
    Request::get(uri).header(header::HOST, host)
}

#[tokio::test]
async fn the_page_is_served_with_a_policy_that_allows_only_its_own_files() {
    let (status, headers, _) = call(
        get("/console/", "127.0.0.1:8080")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    let (status, headers, _) = call(
        get("/console/app.js", "localhost:1")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    let (status, headers, _) =
        call(get("/console", "localhost").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(headers[header::LOCATION], "/console/");
}

#[tokio::test]
async fn the_proxy_refuses_calls_without_the_identity_header() {
    let (status, _, body) = call(
        get("/console/api/exports", "127.0.0.1:8080")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "console_forbidden");
}

#[tokio::test]
async fn the_proxy_refuses_other_sites_and_rebound_host_names() {
    let cross_site = get("/console/api/exports", "127.0.0.1:8080")
        .header(IDENTITY_HEADER, "alice")
        .header("sec-fetch-site", "cross-site")
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = call(cross_site).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // A name of the attacker's that resolves to 127.0.0.1 (DNS rebinding).
    let rebound = get("/console/api/exports", "evil.example:8080")
        .header(IDENTITY_HEADER, "alice")
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = call(rebound).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _, _) = call(
        get("/console/identities", "evil.example")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_unknown_identity_is_named_in_the_error() {
    let request = get("/console/api/exports", "[::1]:8080")
        .header(IDENTITY_HEADER, "mallory")
        .header("sec-fetch-site", "same-origin")
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = call(request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "unknown_identity");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("mallory"));
}

#[tokio::test]
async fn an_unreachable_api_answers_502_in_the_api_error_shape() {
    let request = get("/console/api/datasets", "localhost:8080")
        .header(IDENTITY_HEADER, "alice")
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = call(request).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(body["error"]["code"], "api_unreachable");
}

#[test]
fn loopback_hosts_are_told_apart_from_others() {
    for host in [
        "127.0.0.1",
        "127.0.0.1:8080",
        "localhost:3000",
        "LOCALHOST",
        "[::1]:80",
        "[::1]",
    ] {
        assert!(is_loopback_host(host), "{host}");
    }
    for host in [
        "",
        "example.com",
        "10.0.0.1:8080",
        "127.0.0.1.nip.io",
        "[2001:db8::1]:80",
    ] {
        assert!(!is_loopback_host(host), "{host}");
    }
}

#[test]
fn the_console_listens_on_loopback_addresses_only() {
    for addr in ["127.0.0.1:8080", "[::1]:0"] {
        check_listen_address(addr.parse().unwrap()).unwrap();
    }
    for addr in ["0.0.0.0:8080", "[::]:8080", "192.168.1.10:8080"] {
        let refused = check_listen_address(addr.parse().unwrap()).unwrap_err();
        assert!(refused.to_string().contains("loopback"), "{refused}");
    }
}

#[tokio::test]
async fn a_console_with_a_token_refuses_calls_without_it() {
    let console = Console::new(
        &format!("http://127.0.0.1:{}", free_port()),
        vec![Identity {
            name: "aws".into(),
            credentials: Credentials::Keys(Signer::with_keys("A", "S", "us-east-1")),
        }],
    )
    .unwrap()
    .with_token();
    let address = console.address("127.0.0.1:8080".parse().unwrap());
    let token = address
        .split_once("/console/?token=")
        .map(|(_, token)| token.to_owned())
        .expect("the address carries the token");
    assert_eq!(token.len(), 32, "{address}");
    let app = router(Arc::new(console));
    let ask = |token: Option<&str>| {
        let mut request =
            get("/console/api/datasets", "127.0.0.1:8080").header(IDENTITY_HEADER, "aws");
        if let Some(token) = token {
            request = request.header(TOKEN_HEADER, token);
        }
        request.body(Body::empty()).unwrap()
    };
    for wrong in [None, Some(""), Some("0123456789abcdef0123456789abcdef")] {
        let response = app.clone().oneshot(ask(wrong)).await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{wrong:?}");
    }
    // With it, the call goes on to the API (which is not there).
    let response = app.clone().oneshot(ask(Some(&token))).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let identities = get("/console/identities", "localhost")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        app.oneshot(identities).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
}
