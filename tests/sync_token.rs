//! Read-your-writes across instances on a replicated Upstash database: the
//! local endpoint emulates a lagging read replica, and every "new isolate"
//! is a new backend that knows nothing but the cookies it is given.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use edge_session::backend::RestBackend;
use edge_session::gateway::{Gateway, GatewayConfig};
use edge_session::{ClientInfo, Commit, KeyRing, SessionConfig, SessionStore};
use http::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use crate::support::gateway::TestGateway;
use crate::support::{
    Harness, Kind, REST_TOKEN, RedisServer, SECRETS, assert_secure_cookie, cookie_header,
};

type RestBackendStore = SessionStore<RestBackend>;

/// A redis-server and the local endpoint in front of it, its replica lagging.
async fn lagging() -> (RedisServer, upstash_local::Server) {
    let redis = RedisServer::start();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let options = upstash_local::Options::new(redis.url(), REST_TOKEN).with_lagging_replica(1);
    let server = upstash_local::spawn(listener, options).await.unwrap();
    (redis, server)
}

/// A store over a backend of its own: a fresh isolate.
fn isolate(server: &upstash_local::Server) -> RestBackendStore {
    let config = edge_session::backend::RestConfig::new(server.url(), REST_TOKEN);
    let backend = RestBackend::new(config).unwrap();
    // The default touch interval: a load that is not due to slide its expiry
    // writes nothing, so the replica may serve it.
    let config = SessionConfig::default();
    SessionStore::new(backend, config, KeyRing::parse(SECRETS).unwrap()).unwrap()
}

/// The `Cookie` header a browser sends after `commit`.
fn cookies(commit: &Commit) -> (String, String) {
    let session = cookie_header(commit.set_cookie.as_deref().expect("a session cookie"));
    let sync = cookie_header(commit.sync_cookie.as_deref().expect("a sync cookie"));
    (session, sync)
}

async fn user_seen(store: &RestBackendStore, cookie: &str) -> Option<String> {
    let request = store
        .begin(Some(cookie), ClientInfo::default())
        .await
        .unwrap();
    request.user().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_is_seen_by_a_new_isolate_that_carries_the_cookies() {
    let (_redis, server) = lagging().await;
    let first = isolate(&server);
    let mut request = first.begin(None, ClientInfo::default()).await.unwrap();
    request.login("alice");
    let commit = first.commit(request).await.unwrap();
    let (session, sync) = cookies(&commit);
    let set_sync = commit.sync_cookie.as_deref().unwrap();
    assert!(set_sync.starts_with("__Host-session-sync="), "{set_sync}");
    for attr in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=60"] {
        assert!(set_sync.contains(attr), "{set_sync} lacks {attr}");
    }
    assert_eq!(first.sync_cookie_name(), "__Host-session-sync");

    // Without the sync cookie a new isolate reads from the lagging replica
    // (a read is one plain HGETALL), which has no session yet.
    assert_eq!(user_seen(&isolate(&server), &session).await, None);
    // With it, a new isolate sees the login.
    let both = format!("{session}; {sync}");
    assert_eq!(
        user_seen(&isolate(&server), &both).await.as_deref(),
        Some("alice")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_is_read_back_by_a_new_isolate_that_carries_the_cookies() {
    let (_redis, server) = lagging().await;
    let first = isolate(&server);
    let mut request = first.begin(None, ClientInfo::default()).await.unwrap();
    request.changes().set("cart", &json!(["book"])).unwrap();
    let created = first.commit(request).await.unwrap();
    let (session, _) = cookies(&created);
    server.sync_replica().await.unwrap();

    // The session exists on the replica; now a write it does not have yet.
    let second = isolate(&server);
    let mut request = second
        .begin(Some(&session), ClientInfo::default())
        .await
        .unwrap();
    assert!(request.session().is_some());
    request
        .changes()
        .set("cart", &json!(["book", "pen"]))
        .unwrap();
    let written = second.commit(request).await.unwrap();
    assert!(
        written.set_cookie.is_none(),
        "the session cookie is unchanged"
    );
    let sync = cookie_header(written.sync_cookie.as_deref().expect("a sync cookie"));

    let cart = |store: RestBackendStore, cookie: String| async move {
        let request = store
            .begin(Some(&cookie), ClientInfo::default())
            .await
            .unwrap();
        request.get::<Value>("cart").unwrap()
    };
    assert_eq!(
        cart(isolate(&server), session.clone()).await,
        Some(json!(["book"]))
    );
    let both = format!("{sync}; {session}");
    assert_eq!(
        cart(isolate(&server), both).await,
        Some(json!(["book", "pen"]))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_written_no_sync_cookie_and_none_on_the_direct_backend() {
    let (_redis, server) = lagging().await;
    let store = isolate(&server);
    let mut request = store.begin(None, ClientInfo::default()).await.unwrap();
    request.login("bob");
    let commit = store.commit(request).await.unwrap();
    let (session, sync) = cookies(&commit);
    // A read-only request: no cookie change at all.
    let request = store
        .begin(Some(&format!("{session}; {sync}")), ClientInfo::default())
        .await
        .unwrap();
    let commit = store.commit(request).await.unwrap();
    assert!(commit.set_cookie.is_none() && commit.sync_cookie.is_none());
    // Junk in the sync cookie is ignored, not sent to the store.
    let junk = format!("{session}; __Host-session-sync=\"a b\"");
    assert_eq!(user_seen(&store, &junk).await.as_deref(), Some("bob"));

    let h = Harness::start(Kind::Direct).await;
    let mut request = h.store.begin(None, ClientInfo::default()).await.unwrap();
    request.login("carol");
    let commit = h.store.commit(request).await.unwrap();
    assert!(commit.set_cookie.is_some());
    assert!(
        commit.sync_cookie.is_none(),
        "the direct backend issues no tokens"
    );
}

async fn start_origin() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(demo_origin::serve(listener));
    origin
}

fn gateway(server: &upstash_local::Server, origin: &str) -> TestGateway<RestBackend> {
    let config = GatewayConfig::new(origin).unwrap();
    TestGateway::reqwest(Gateway::new(isolate(server), config))
}

fn request(method: Method, path: &str, cookie: Option<&str>, body: &str) -> Request<Bytes> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "shop.example")
        .header("content-type", "application/json");
    if let Some(cookie) = cookie {
        builder = builder.header("cookie", cookie);
    }
    builder.body(Bytes::from(body.to_owned())).unwrap()
}

fn set_cookies(response: &Response<Bytes>) -> Vec<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// The gateway sets the sync cookie, never shows it to the origin, and a
/// gateway on another isolate honours it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_carries_the_token_between_isolates() {
    let (_redis, server) = lagging().await;
    let origin = start_origin().await;
    let find = |response: &Response<Bytes>, name: &str| {
        set_cookies(response)
            .into_iter()
            .find(|c| c.starts_with(&format!("{name}=")))
    };
    let login = request(Method::POST, "/api/instruct", None, r#"{"login":"dora"}"#);
    let response = gateway(&server, &origin).handle(login).await;
    assert_eq!(response.status(), StatusCode::OK);
    let session = find(&response, "__Host-session").expect("a session cookie");
    assert_secure_cookie(&session);
    let sync = find(&response, "__Host-session-sync").expect("a sync cookie");
    let session = cookie_header(&session);
    server.sync_replica().await.unwrap();

    // A write on one isolate...
    let cookies = format!("{session}; {}", cookie_header(&sync));
    let set = request(
        Method::POST,
        "/api/instruct",
        Some(&cookies),
        r#"{"set":{"cart":["tea"]}}"#,
    );
    let response = gateway(&server, &origin).handle(set).await;
    assert_eq!(response.status(), StatusCode::OK);
    let sync = find(&response, "__Host-session-sync").expect("a new sync cookie");

    // ...read on others, with and without the sync cookie.
    let whoami = |header: String| {
        let g = gateway(&server, &origin);
        async move {
            let response = g
                .handle(request(Method::GET, "/api/whoami", Some(&header), ""))
                .await;
            assert_eq!(response.status(), StatusCode::OK);
            serde_json::from_slice::<Value>(response.body()).unwrap()
        }
    };
    let stale = whoami(session.clone()).await;
    assert_eq!(stale["user"], json!("dora"));
    assert_eq!(
        stale["data"]["cart"],
        Value::Null,
        "the replica lags without the token"
    );
    let fresh = whoami(format!("{}; {session}; theme=dark", cookie_header(&sync))).await;
    assert_eq!(fresh["data"]["cart"], json!(["tea"]));
    assert_eq!(
        fresh["cookie_header"],
        json!("theme=dark"),
        "neither cookie reaches the origin"
    );
}
