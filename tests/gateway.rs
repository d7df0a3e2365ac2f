//! The gateway service in process (no HTTP server in front of it), against a
//! real origin (the demo origin on a free port), the real backends and a real
//! redis-server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use edge_session::gateway::{Gateway, GatewayConfig};
use edge_session::{
    Hooks, IndexSpec, KeyRing, SessionConfig, SessionEvent, SessionHandle, SessionStore,
};
use http::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use crate::support::gateway::TestGateway;
use crate::support::{
    Counting, Harness, Kind, ROTATED, Store, assert_secure_cookie, counting, test_config,
};

const ADMIN: &str = "admin-token-0123456789";
const HOST: &str = "shop.example";

struct Rig {
    h: Harness,
    gateway: TestGateway<Counting<edge_session::AnyBackend>>,
    origin: String,
}

async fn start_origin() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(demo_origin::serve(listener));
    origin
}

impl Rig {
    async fn start(kind: Kind) -> Self {
        Self::start_with(kind, test_config()).await
    }

    async fn start_with(kind: Kind, config: SessionConfig) -> Self {
        let h = Harness::with_config(kind, config).await;
        h.store.preload_scripts().await.unwrap();
        let origin = start_origin().await;
        let gateway = Self::gateway_over(h.store.clone(), &origin, Some(ADMIN));
        Self { h, gateway, origin }
    }

    fn gateway_over(
        store: Store,
        origin: &str,
        admin: Option<&str>,
    ) -> TestGateway<Counting<edge_session::AnyBackend>> {
        let get = |name: &str| match name {
            "ORIGIN_URL" => Some(origin.to_owned()),
            "SESSION_SKIP_PATHS" => Some("/static,/health".to_owned()),
            "SESSION_PUBLIC_FIELDS" => Some("cart".to_owned()),
            "ADMIN_TOKEN" => admin.map(str::to_owned),
            _ => None,
        };
        let config = GatewayConfig::from_lookup(get).unwrap();
        TestGateway::reqwest(Gateway::new(store, config))
    }

    fn trips(&self) -> usize {
        self.h.trips()
    }

    async fn send(&self, request: Request<Bytes>) -> Response<Bytes> {
        self.gateway.handle(request).await
    }
}

pub(crate) fn get(path: &str, cookie: Option<&str>) -> Request<Bytes> {
    request(Method::GET, path, cookie, Bytes::new())
}

pub(crate) fn request(
    method: Method,
    path: &str,
    cookie: Option<&str>,
    body: Bytes,
) -> Request<Bytes> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", HOST)
        .header("user-agent", "gateway-test/1");
    if let Some(cookie) = cookie {
        builder = builder.header("cookie", cookie);
    }
    builder.body(body).unwrap()
}

/// `POST /api/instruct`: the demo origin answers with these instructions.
pub(crate) fn instruct(cookie: Option<&str>, instructions: Value) -> Request<Bytes> {
    let mut r = request(
        Method::POST,
        "/api/instruct",
        cookie,
        Bytes::from(instructions.to_string()),
    );
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

pub(crate) fn json_body(response: &Response<Bytes>) -> Value {
    serde_json::from_slice(response.body()).unwrap_or(Value::Null)
}

pub(crate) fn set_cookie(response: &Response<Bytes>) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("__Host-session="))
}

fn cookie_of(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

async fn sign_in(rig: &Rig, user: &str, cookie: Option<&str>) -> String {
    let response = rig.send(instruct(cookie, json!({ "login": user }))).await;
    assert_eq!(response.status(), StatusCode::OK);
    cookie_of(&set_cookie(&response).expect("login sets a cookie"))
}

async fn whoami(rig: &Rig, cookie: Option<&str>) -> Value {
    let response = rig.send(get("/api/whoami", cookie)).await;
    assert_eq!(response.status(), StatusCode::OK);
    json_body(&response)
}

both_backends!(
    anonymous_requests_cost_nothing_and_spoofing_is_stripped,
    login_sets_a_host_cookie_and_the_origin_sees_the_user,
    origin_instructions_persist_in_one_round_trip,
    malformed_instructions_are_a_502_and_never_half_apply,
    logout_and_logout_all_through_the_origin,
    tampered_cookies_are_anonymous,
    rotated_keys_are_resigned_by_the_gateway,
    skip_paths_do_no_session_work,
    browser_api_and_csrf,
    admin_api,
    admin_query_counts_active_and_stats,
    admin_analytics_refuse_bad_requests,
    hooks_see_the_lifecycle_through_the_http_api,
    store_outage_is_a_503_with_retry_after,
);

async fn anonymous_requests_cost_nothing_and_spoofing_is_stripped(kind: Kind) {
    let rig = Rig::start(kind).await;
    let before = rig.trips();
    let mut request = get("/api/whoami", Some("theme=dark"));
    for (name, value) in [
        ("x-session-user", "admin"),
        ("x-session-id", "f".repeat(64).as_str()),
        ("x-session-data", r#"{"role":"admin"}"#),
        ("x-session-anything", "1"),
    ] {
        request.headers_mut().insert(name, value.parse().unwrap());
    }
    let response = rig.send(request).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = json_body(&response);
    assert_eq!(body["session_headers"], json!({}), "{body}");
    assert_eq!(body["cookie_header"], json!("theme=dark"));
    assert!(set_cookie(&response).is_none());
    let page = rig.send(get("/", None)).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(set_cookie(&page).is_none());
    assert_eq!(rig.trips(), before, "no Redis call for anonymous visitors");
    assert!(rig.h.all_keys().is_empty(), "nothing written for them");
}

async fn login_sets_a_host_cookie_and_the_origin_sees_the_user(kind: Kind) {
    let rig = Rig::start(kind).await;
    let before = rig.trips();
    let response = rig.send(instruct(None, json!({ "login": "José%" }))).await;
    assert_eq!(rig.trips() - before, 1, "login: one round trip");
    let set = set_cookie(&response).unwrap();
    assert_secure_cookie(&set);
    assert!(
        response.headers().get("x-session-login").is_none(),
        "instructions never reach the browser"
    );
    let cookie = cookie_of(&set);
    let before = rig.trips();
    let me = whoami(&rig, Some(&format!("{cookie}; theme=dark"))).await;
    // The test config slides on every read: the slide is the second one.
    assert_eq!(
        rig.trips() - before,
        2,
        "signed-in read: one HGETALL, then the due slide"
    );
    assert_eq!(me["user"], json!("José%"));
    assert_eq!(
        me["session_headers"]["x-session-user"],
        json!("Jos%C3%A9%25")
    );
    assert_eq!(me["session_id"].as_str().unwrap().len(), 64);
    assert_eq!(me["data"], json!({}));
    assert_eq!(
        me["cookie_header"],
        json!("theme=dark"),
        "the token never reaches the origin"
    );
    let devices = rig.h.store.devices("José%").await.unwrap();
    assert_eq!(devices[0].user_agent.as_deref(), Some("gateway-test/1"));
}

async fn origin_instructions_persist_in_one_round_trip(kind: Kind) {
    let rig = Rig::start(kind).await;
    // An anonymous visitor's first write creates the session.
    let before = rig.trips();
    let response = rig
        .send(instruct(
            None,
            json!({ "set": { "cart": ["tea"], "theme": "dark" }, "incr": { "n": 2 } }),
        ))
        .await;
    assert_eq!(rig.trips() - before, 1);
    let cookie = cookie_of(&set_cookie(&response).unwrap());
    // Read + write: one round trip to load, one to apply.
    let before = rig.trips();
    let response = rig
        .send(instruct(
            Some(&cookie),
            json!({ "set": { "theme": null, "note": "ünïcode ✓" }, "incr": { "n": 3 } }),
        ))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(rig.trips() - before, 2);
    assert!(set_cookie(&response).is_none(), "same session, same cookie");
    let me = whoami(&rig, Some(&cookie)).await;
    assert_eq!(
        me["data"],
        json!({ "cart": ["tea"], "n": 5, "note": "ünïcode ✓" })
    );
    assert!(
        me["session_headers"]["x-session-data"]
            .as_str()
            .unwrap()
            .is_ascii()
    );
    // Sliding: the read moved the expiry.
    let token = rig.h.store.cookies().from_header(&cookie).unwrap().token;
    let key = rig.h.store.layout().session(&token);
    assert!(rig.h.pttl(&key) > 1_700_000);
}

async fn malformed_instructions_are_a_502_and_never_half_apply(kind: Kind) {
    let rig = Rig::start(kind).await;
    let cookie = sign_in(&rig, "mallory", None).await;
    let seed = rig
        .send(instruct(Some(&cookie), json!({ "set": { "a": 1 } })))
        .await;
    assert_eq!(seed.status(), StatusCode::OK);
    for raw in [
        json!({ "x-session-set": "not json" }),
        json!({ "x-session-set": "[1]" }),
        json!({ "x-session-incr": "{\"a\": 1.5}" }),
        json!({ "x-session-logout": "everyone" }),
        json!({ "x-session-set": "{\"_ver\": 1}" }),
        json!({ "x-session-set": format!("{{\"big\": \"{}\"}}", "x".repeat(20_000)) }),
    ] {
        let response = rig
            .send(instruct(
                Some(&cookie),
                json!({ "set": { "a": 2 }, "incr": { "n": 1 }, "raw": raw }),
            ))
            .await;
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY, "{raw}");
        assert_eq!(
            json_body(&response)["code"],
            json!("bad_session_instruction")
        );
    }
    let me = whoami(&rig, Some(&cookie)).await;
    assert_eq!(me["data"], json!({ "a": 1 }), "nothing was applied");
}

async fn logout_and_logout_all_through_the_origin(kind: Kind) {
    let rig = Rig::start(kind).await;
    let laptop = sign_in(&rig, "olga", None).await;
    let phone = sign_in(&rig, "olga", None).await;
    let tablet = sign_in(&rig, "olga", None).await;
    let response = rig
        .send(instruct(Some(&laptop), json!({ "logout": "current" })))
        .await;
    assert!(set_cookie(&response).unwrap().contains("Max-Age=0"));
    assert_eq!(whoami(&rig, Some(&laptop)).await["user"], Value::Null);
    assert_eq!(whoami(&rig, Some(&phone)).await["user"], json!("olga"));
    let response = rig
        .send(instruct(Some(&phone), json!({ "logout": "all" })))
        .await;
    assert!(set_cookie(&response).unwrap().contains("Max-Age=0"));
    assert_eq!(whoami(&rig, Some(&tablet)).await["user"], Value::Null);
    assert!(rig.h.store.devices("olga").await.unwrap().is_empty());
}

async fn tampered_cookies_are_anonymous(kind: Kind) {
    let rig = Rig::start(kind).await;
    let cookie = sign_in(&rig, "trent", None).await;
    let mut tampered = cookie.clone().into_bytes();
    let i = tampered.len() - 3;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let before = rig.trips();
    let me = whoami(&rig, Some(&tampered)).await;
    assert_eq!(me["user"], Value::Null);
    assert_eq!(rig.trips(), before, "a forged cookie costs no Redis call");
}

async fn rotated_keys_are_resigned_by_the_gateway(kind: Kind) {
    let rig = Rig::start(kind).await;
    let old_cookie = sign_in(&rig, "rosa", None).await;
    let (_, backend) = Harness::backend_for_existing(&rig.h).await;
    let rotated = SessionStore::new(
        counting(backend),
        test_config(),
        KeyRing::parse(ROTATED).unwrap(),
    )
    .unwrap();
    let gateway = Rig::gateway_over(rotated, &rig.origin, None);
    let response = gateway.handle(get("/api/whoami", Some(&old_cookie))).await;
    assert_eq!(json_body(&response)["user"], json!("rosa"));
    let resigned = set_cookie(&response).expect("re-signed on the response");
    assert!(resigned.contains("=k2."), "{resigned}");
    let response = gateway
        .handle(get("/api/whoami", Some(&cookie_of(&resigned))))
        .await;
    assert_eq!(json_body(&response)["user"], json!("rosa"));
    assert!(set_cookie(&response).is_none());
}

async fn skip_paths_do_no_session_work(kind: Kind) {
    let rig = Rig::start(kind).await;
    let cookie = sign_in(&rig, "sam", None).await;
    let before = rig.trips();
    for path in ["/static/hello.txt", "/health"] {
        let response = rig.send(get(path, Some(&cookie))).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    assert_eq!(rig.trips(), before);
    let response = rig.send(get("/staticky", Some(&cookie))).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        rig.trips(),
        before + 2,
        "only whole path segments are skipped (a read and its due slide)"
    );
}

fn same_origin(mut request: Request<Bytes>) -> Request<Bytes> {
    request
        .headers_mut()
        .insert("sec-fetch-site", "same-origin".parse().unwrap());
    request
}

async fn browser_api_and_csrf(kind: Kind) {
    let rig = Rig::start(kind).await;
    let response = rig.send(get("/_session", None)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json_body(&response)["code"], json!("unauthenticated"));

    let first = sign_in(&rig, "uma", None).await;
    let second = sign_in(&rig, "uma", None).await;
    let third = sign_in(&rig, "uma", None).await;
    let response = rig
        .send(instruct(
            Some(&first),
            json!({ "set": { "cart": [1], "role": "admin" } }),
        ))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let me = json_body(&rig.send(get("/_session", Some(&first))).await);
    assert_eq!(me["user"], json!("uma"));
    // Only the fields declared in SESSION_PUBLIC_FIELDS reach page JavaScript.
    assert_eq!(me["fields"], json!({ "cart": [1] }));
    assert!(me["expires"].as_u64().unwrap() <= me["absolute_expiry"].as_u64().unwrap());

    let devices = json_body(&rig.send(get("/_session/devices", Some(&first))).await);
    let sessions = devices["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 3);
    assert_eq!(
        sessions
            .iter()
            .filter(|s| s["current"] == json!(true))
            .count(),
        1
    );
    let current_id = me["id"].as_str().unwrap();
    let other = sessions
        .iter()
        .find(|s| s["id"] != json!(current_id))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // CSRF: state changes need same-origin.
    let delete = |cookie: &str| {
        request(
            Method::DELETE,
            &format!("/_session/devices/{other}"),
            Some(cookie),
            Bytes::new(),
        )
    };
    let response = rig.send(delete(&first)).await;
    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "no Sec-Fetch-Site, no Origin"
    );
    let mut cross = delete(&first);
    cross
        .headers_mut()
        .insert("sec-fetch-site", "cross-site".parse().unwrap());
    assert_eq!(rig.send(cross).await.status(), StatusCode::FORBIDDEN);
    let mut evil = delete(&first);
    evil.headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    assert_eq!(rig.send(evil).await.status(), StatusCode::FORBIDDEN);
    let mut own = delete(&first);
    own.headers_mut()
        .insert("origin", format!("https://{HOST}").parse().unwrap());
    assert_eq!(
        rig.send(own).await.status(),
        StatusCode::OK,
        "Origin of the gateway itself"
    );
    let response = rig.send(same_origin(delete(&first))).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND, "already revoked");

    let response = rig
        .send(request(
            Method::GET,
            "/_session/logout",
            Some(&first),
            Bytes::new(),
        ))
        .await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "POST");

    let response = rig
        .send(same_origin(request(
            Method::POST,
            "/_session/logout-all",
            Some(&third),
            Bytes::new(),
        )))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json_body(&response)["logged_out"], json!(2));
    assert!(set_cookie(&response).unwrap().contains("Max-Age=0"));
    for cookie in [&first, &second, &third] {
        let response = rig.send(get("/_session", Some(cookie))).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let response = rig.send(get("/_session/nope", None)).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

async fn admin_api(kind: Kind) {
    let rig = Rig::start(kind).await;
    sign_in(&rig, "vic", None).await;
    sign_in(&rig, "vic", None).await;
    sign_in(&rig, "wes", None).await;
    let response = rig
        .send(admin(Method::GET, "/_session/admin/stats", None))
        .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let response = rig
        .send(admin(
            Method::GET,
            "/_session/admin/stats",
            Some("wrong-token-xxxxxxxx"),
        ))
        .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let stats = json_body(
        &rig.send(admin(Method::GET, "/_session/admin/stats", Some(ADMIN)))
            .await,
    );
    assert_eq!(stats["active_sessions"], json!(3));
    let list = json_body(
        &rig.send(admin(
            Method::GET,
            "/_session/admin/users/vic/sessions",
            Some(ADMIN),
        ))
        .await,
    );
    assert_eq!(list["sessions"].as_array().unwrap().len(), 2);
    let revoked = json_body(
        &rig.send(admin(
            Method::DELETE,
            "/_session/admin/users/vic/sessions",
            Some(ADMIN),
        ))
        .await,
    );
    assert_eq!(revoked["revoked"], json!(2));
    let stats = json_body(
        &rig.send(admin(Method::GET, "/_session/admin/stats", Some(ADMIN)))
            .await,
    );
    assert_eq!(stats["active_sessions"], json!(1));

    // Disabled without ADMIN_TOKEN.
    let gateway = Rig::gateway_over(rig.h.store.clone(), &rig.origin, None);
    let response = gateway
        .handle(admin(Method::GET, "/_session/admin/stats", Some(ADMIN)))
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(json_body(&response)["code"], json!("admin_disabled"));
}

/// A request to the admin API, with `Authorization: Bearer {token}` if given.
fn admin(method: Method, path: &str, token: Option<&str>) -> Request<Bytes> {
    let mut r = request(method, path, None, Bytes::new());
    if let Some(token) = token {
        r.headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    r
}

/// `GET {path}` on the admin API with the right token: status 200, JSON body.
async fn admin_get(rig: &Rig, path: &str) -> Value {
    let response = rig.send(admin(Method::GET, path, Some(ADMIN))).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{path}: {:?}",
        response.body()
    );
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["cache-control"], "no-store");
    json_body(&response)
}

/// The handle (non-secret id) of the session of a `Cookie` value.
fn handle_of(rig: &Rig, cookie: &str) -> SessionHandle {
    rig.h
        .store
        .cookies()
        .from_header(cookie)
        .unwrap()
        .token
        .handle()
}

/// Asserts a `Page` answer: exactly `expected` (summaries as the core gives
/// them), `total` and `next_cursor`. `expires` is Redis's `now + PTTL` at
/// read time, so it may differ by a millisecond between two reads.
fn assert_page(page: &Value, expected: &[Value], total: u64, next_cursor: Option<u64>) {
    let mut page = page.clone();
    let sessions = page["sessions"].as_array_mut().unwrap();
    assert_eq!(sessions.len(), expected.len(), "{page}");
    for (got, want) in sessions.iter_mut().zip(expected) {
        let (g, w) = (
            got["expires"].as_u64().unwrap(),
            want["expires"].as_u64().unwrap(),
        );
        assert!(g.abs_diff(w) <= 2, "expires {g} vs {w}");
        got["expires"] = want["expires"].clone();
    }
    assert_eq!(
        page,
        json!({ "sessions": expected, "total": total, "next_cursor": next_cursor })
    );
}

/// A rig whose store indexes `tenant` (a value) and `cart[]` (each element).
fn indexed_config() -> SessionConfig {
    let mut config = test_config();
    config.indexes = IndexSpec::parse_list("tenant,cart[]").unwrap();
    config.stats_days = 2;
    config
}

/// `YYYY-MM-DD` of a day number (days since 1970-01-01, UTC).
fn date(day: u64) -> String {
    let julian = i32::try_from(day).unwrap() + 2_440_588;
    let d = time::Date::from_julian_day(julian).unwrap();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

async fn admin_query_counts_active_and_stats(kind: Kind) {
    let rig = Rig::start_with(kind, indexed_config()).await;
    // Five sessions, made one after the other (so expiries and last uses are
    // distinct and ordered): three anonymous, two signed in.
    let mut cookies = Vec::new();
    for instructions in [
        json!({ "set": { "tenant": "acme", "cart": ["tea", "jam"] } }),
        json!({ "login": "ann", "set": { "tenant": "acme", "cart": ["tea"] } }),
        json!({ "login": "bob", "set": { "tenant": "globex & zoë", "cart": ["tea"] } }),
        json!({ "set": { "tenant": "acme" } }),
        json!({ "set": { "theme": "dark" } }),
    ] {
        let response = rig.send(instruct(None, instructions)).await;
        assert_eq!(response.status(), StatusCode::OK);
        cookies.push(cookie_of(&set_cookie(&response).unwrap()));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let ids: Vec<String> = cookies
        .iter()
        .map(|c| handle_of(&rig, c).as_str().to_owned())
        .collect();
    let [a, ann, bob, b, c] = <[String; 5]>::try_from(ids).unwrap();
    // What the core says about each session, to compare the HTTP answers with.
    let everyone = rig
        .h
        .store
        .active_since(Duration::from_secs(600), 0, 10)
        .await
        .unwrap();
    let summary: BTreeMap<String, Value> = everyone
        .sessions
        .iter()
        .map(|s| {
            (
                s.handle.as_str().to_owned(),
                serde_json::to_value(s).unwrap(),
            )
        })
        .collect();
    assert_eq!(summary.len(), 5);
    assert_eq!(summary[&ann]["user"], json!("ann"));
    assert_eq!(summary[&a]["user"], Value::Null);
    let s = |id: &String| summary[id].clone();

    // Query: two pages of tenant=acme, soonest expiry first.
    let before = rig.trips();
    let page = admin_get(
        &rig,
        "/_session/admin/query?field=tenant&value=acme&limit=2",
    )
    .await;
    assert_eq!(rig.trips() - before, 2, "a query page: two round trips");
    assert_page(&page, &[s(&a), s(&ann)], 3, Some(2));
    let page = admin_get(
        &rig,
        "/_session/admin/query?field=tenant&value=acme&limit=2&cursor=2",
    )
    .await;
    assert_page(&page, &[s(&b)], 3, None);
    // Form-encoded values are decoded; array indexes match each element.
    let page = admin_get(
        &rig,
        "/_session/admin/query?value=globex+%26+zo%C3%AB&field=tenant",
    )
    .await;
    assert_page(&page, &[s(&bob)], 1, None);
    let page = admin_get(&rig, "/_session/admin/query?field=cart&value=tea").await;
    assert_page(&page, &[s(&a), s(&ann), s(&bob)], 3, None);
    let page = admin_get(&rig, "/_session/admin/query?field=tenant&value=initech").await;
    assert_page(&page, &[], 0, None);

    // Counts.
    let before = rig.trips();
    let counts = admin_get(&rig, "/_session/admin/counts?field=tenant").await;
    assert_eq!(rig.trips() - before, 1, "counts: one round trip");
    let tenants = json!({
        "field": "tenant",
        "distinct": 2,
        "top": [
            { "value": "acme", "sessions": 3 },
            { "value": "globex & zoë", "sessions": 1 },
        ],
    });
    assert_eq!(counts, tenants);
    let counts = admin_get(&rig, "/_session/admin/counts?field=cart&top=1").await;
    assert_eq!(
        counts,
        json!({ "field": "cart", "distinct": 2, "top": [{ "value": "tea", "sessions": 3 }] })
    );

    // Active: every session, oldest use first, in pages of three.
    let page = admin_get(&rig, "/_session/admin/active?limit=3").await;
    assert_page(&page, &[s(&a), s(&ann), s(&bob)], 5, Some(3));
    let page = admin_get(&rig, "/_session/admin/active?since=600&cursor=3&limit=3").await;
    assert_page(&page, &[s(&b), s(&c)], 5, None);

    // Stats: everything in one round trip.
    let before = rig.trips();
    let stats = admin_get(&rig, "/_session/admin/stats").await;
    assert_eq!(rig.trips() - before, 1, "stats: one round trip");
    let now = stats["now"].as_u64().unwrap();
    let today = now / 86_400_000;
    assert_eq!(
        stats,
        json!({
            "now": now,
            "active_sessions": 5,
            "active_last_10_minutes": 5,
            "days": [
                { "date": date(today), "created": 5, "logins": 2, "distinct_users": 2 },
                { "date": date(today - 1), "created": 0, "logins": 0, "distinct_users": 0 },
            ],
            "fields": [tenants],
        })
    );

    // `since` narrows the window: only the session used in the last second.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    whoami(&rig, Some(&cookies[4])).await;
    let page = admin_get(&rig, "/_session/admin/active?since=1").await;
    let sessions = page["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{page}");
    assert_eq!(sessions[0]["handle"], json!(c));
    assert_eq!(page["total"], json!(1));
}

async fn admin_analytics_refuse_bad_requests(kind: Kind) {
    let rig = Rig::start_with(kind, indexed_config()).await;
    sign_in(&rig, "ivy", None).await;
    let refused = |path: &'static str| {
        let rig = &rig;
        async move {
            let before = rig.trips();
            let response = rig.send(admin(Method::GET, path, Some(ADMIN))).await;
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
            let body = json_body(&response);
            assert_eq!(body["code"], json!("bad_request"), "{path}");
            assert_eq!(rig.trips(), before, "{path}: refused before any store call");
            body["error"].as_str().unwrap().to_owned()
        }
    };
    // Not an indexed field: the message says where indexes are declared.
    for path in [
        "/_session/admin/query?field=color&value=red",
        "/_session/admin/counts?field=color",
    ] {
        let error = refused(path).await;
        assert!(error.contains("SESSION_INDEXES"), "{error}");
        assert!(error.contains("color"), "{error}");
    }
    // Indexed values are at most 256 bytes.
    let long = format!(
        "/_session/admin/query?field=tenant&value={}",
        "x".repeat(300)
    );
    let response = rig.send(admin(Method::GET, &long, Some(ADMIN))).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error = json_body(&response)["error"].as_str().unwrap().to_owned();
    assert!(error.contains("256"), "{error}");
    // Missing, malformed, unknown or repeated parameters.
    for (path, names) in [
        ("/_session/admin/query?field=tenant", "value"),
        ("/_session/admin/query?value=acme", "field"),
        ("/_session/admin/query", "field"),
        ("/_session/admin/counts", "field"),
        ("/_session/admin/counts?field=tenant&top=ten", "top"),
        (
            "/_session/admin/query?field=tenant&value=a&limit=-1",
            "limit",
        ),
        (
            "/_session/admin/query?field=tenant&value=a&cursor=x",
            "cursor",
        ),
        ("/_session/admin/active?since=-5", "since"),
        ("/_session/admin/active?since=10m", "since"),
        ("/_session/admin/active?limt=5", "limt"),
        (
            "/_session/admin/query?field=tenant&field=cart&value=a",
            "field",
        ),
        ("/_session/admin/stats?verbose=1", "parameters"),
    ] {
        let error = refused(path).await;
        assert!(error.contains(names), "{path}: {error}");
    }
    // The admin token is checked first; only GET is allowed.
    for path in [
        "/_session/admin/query?field=tenant&value=acme",
        "/_session/admin/counts?field=tenant",
        "/_session/admin/active",
        "/_session/admin/stats",
        "/_session/admin/query",
    ] {
        for token in [None, Some("wrong-token-xxxxxxxx")] {
            let response = rig.send(admin(Method::GET, path, token)).await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
            assert_eq!(json_body(&response)["code"], json!("unauthorized"));
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
        }
        for method in [Method::POST, Method::DELETE] {
            let response = rig.send(admin(method, path, Some(ADMIN))).await;
            assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{path}");
            assert_eq!(json_body(&response)["code"], json!("method_not_allowed"));
            assert_eq!(response.headers()["allow"], "GET");
        }
    }
    // Disabled without ADMIN_TOKEN.
    let gateway = Rig::gateway_over(rig.h.store.clone(), &rig.origin, None);
    let response = gateway
        .handle(admin(
            Method::GET,
            "/_session/admin/counts?field=tenant",
            Some(ADMIN),
        ))
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(json_body(&response)["code"], json!("admin_disabled"));
    // A store outage is a 503, as everywhere else.
    let mut rig = rig;
    rig.h.redis.stop();
    let response = rig
        .send(admin(
            Method::GET,
            "/_session/admin/counts?field=tenant",
            Some(ADMIN),
        ))
        .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json_body(&response)["code"], json!("store_unavailable"));
    assert_eq!(response.headers()["retry-after"], "5");
}

async fn hooks_see_the_lifecycle_through_the_http_api(kind: Kind) {
    let mut rig = Rig::start(kind).await;
    let events: Arc<Mutex<Vec<SessionEvent>>> = Arc::default();
    let sink = Arc::clone(&events);
    let hooks: Arc<dyn Hooks> =
        Arc::new(move |event: &SessionEvent| sink.lock().unwrap().push(event.clone()));
    rig.gateway =
        Rig::gateway_over(rig.h.store.clone(), &rig.origin, Some(ADMIN)).with_hooks(hooks);
    let take = || std::mem::take(&mut *events.lock().unwrap());

    // A visitor's first write creates an anonymous session.
    let response = rig
        .send(instruct(None, json!({ "set": { "cart": ["tea"] } })))
        .await;
    let visitor = cookie_of(&set_cookie(&response).unwrap());
    let anonymous = handle_of(&rig, &visitor);
    assert_eq!(
        take(),
        [SessionEvent::Created {
            handle: anonymous.clone(),
            user: None
        }]
    );
    // Signing in from it regenerates it; a second device creates one.
    let laptop = sign_in(&rig, "kim", Some(&visitor)).await;
    let phone = sign_in(&rig, "kim", None).await;
    let tablet = sign_in(&rig, "kim", None).await;
    let (laptop_id, phone_id, tablet_id) = (
        handle_of(&rig, &laptop),
        handle_of(&rig, &phone),
        handle_of(&rig, &tablet),
    );
    assert_eq!(
        take(),
        [
            SessionEvent::Regenerated {
                old: anonymous,
                new: laptop_id.clone(),
                user: "kim".to_owned()
            },
            SessionEvent::Created {
                handle: phone_id.clone(),
                user: Some("kim".to_owned())
            },
            SessionEvent::Created {
                handle: tablet_id.clone(),
                user: Some("kim".to_owned())
            },
        ]
    );
    // Logout through the browser API destroys the current session.
    let logout = |path: &str, cookie: &str| {
        same_origin(request(Method::POST, path, Some(cookie), Bytes::new()))
    };
    let response = rig.send(logout("/_session/logout", &tablet)).await;
    assert_eq!(json_body(&response)["logged_out"], json!(1));
    assert_eq!(
        take(),
        [SessionEvent::Destroyed {
            handle: tablet_id,
            user: None
        }]
    );
    // Logout-all: each session destroyed, then the summary.
    let response = rig.send(logout("/_session/logout-all", &laptop)).await;
    assert_eq!(json_body(&response)["logged_out"], json!(2));
    let mut seen = take();
    assert_eq!(
        seen.pop(),
        Some(SessionEvent::LoggedOutEverywhere {
            user: "kim".to_owned(),
            sessions: 2
        })
    );
    let mut destroyed: Vec<SessionHandle> = seen
        .into_iter()
        .map(|e| match e {
            SessionEvent::Destroyed {
                handle,
                user: Some(user),
            } if user == "kim" => handle,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    destroyed.sort_by(|x, y| x.as_str().cmp(y.as_str()));
    let mut expected = vec![laptop_id, phone_id];
    expected.sort_by(|x, y| x.as_str().cmp(y.as_str()));
    assert_eq!(destroyed, expected);
    // The admin API's logout everywhere reports the same way.
    let lee = sign_in(&rig, "lee", None).await;
    let lee_id = handle_of(&rig, &lee);
    take();
    let response = rig
        .send(admin(
            Method::DELETE,
            "/_session/admin/users/lee/sessions",
            Some(ADMIN),
        ))
        .await;
    assert_eq!(json_body(&response)["revoked"], json!(1));
    assert_eq!(
        take(),
        [
            SessionEvent::Destroyed {
                handle: lee_id,
                user: Some("lee".to_owned())
            },
            SessionEvent::LoggedOutEverywhere {
                user: "lee".to_owned(),
                sessions: 1
            },
        ]
    );
    // Reads and writes of a live session are not lifecycle events.
    whoami(&rig, Some(&phone)).await;
    assert!(take().is_empty());
}

async fn store_outage_is_a_503_with_retry_after(kind: Kind) {
    let mut rig = Rig::start(kind).await;
    let cookie = sign_in(&rig, "xena", None).await;
    rig.h.redis.stop();
    let response = rig.send(get("/api/whoami", Some(&cookie))).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json_body(&response)["code"], json!("store_unavailable"));
    assert_eq!(response.headers()["retry-after"], "5");
    // Anonymous visitors never needed Redis: they still get through.
    let response = rig.send(get("/api/whoami", None)).await;
    assert_eq!(response.status(), StatusCode::OK);
    // An unreachable origin is a 502.
    rig.gateway = Rig::gateway_over(rig.h.store.clone(), "http://127.0.0.1:9", None);
    let response = rig.send(get("/api/whoami", None)).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(json_body(&response)["code"], json!("origin_unavailable"));
}
