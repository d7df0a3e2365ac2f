//! The gateway service in process (no HTTP server in front of it), against a
//! real origin (the demo origin on a free port), the real backends and a real
//! redis-server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use edge_session::gateway::{Gateway, GatewayConfig, ReqwestUpstream};
use edge_session::{KeyRing, SessionStore};
use http::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use crate::support::{
    Counting, Harness, Kind, ROTATED, Store, assert_secure_cookie, counting, test_config,
};

const ADMIN: &str = "admin-token-0123456789";
const HOST: &str = "shop.example";

struct Rig {
    h: Harness,
    gateway: Gateway<Counting<edge_session::AnyBackend>, ReqwestUpstream>,
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
        let h = Harness::start(kind).await;
        h.store.preload_scripts().await.unwrap();
        let origin = start_origin().await;
        let gateway = Self::gateway_over(h.store.clone(), &origin, Some(ADMIN));
        Self { h, gateway, origin }
    }

    fn gateway_over(
        store: Store,
        origin: &str,
        admin: Option<&str>,
    ) -> Gateway<Counting<edge_session::AnyBackend>, ReqwestUpstream> {
        let get = |name: &str| match name {
            "ORIGIN_URL" => Some(origin.to_owned()),
            "SESSION_SKIP_PATHS" => Some("/static,/health".to_owned()),
            "ADMIN_TOKEN" => admin.map(str::to_owned),
            _ => None,
        };
        let config = GatewayConfig::from_lookup(get).unwrap();
        Gateway::new(store, ReqwestUpstream::new().unwrap(), config)
    }

    fn trips(&self) -> usize {
        self.h.trips()
    }

    async fn send(&self, request: Request<Bytes>) -> Response<Bytes> {
        self.gateway.handle(request).await
    }
}

fn get(path: &str, cookie: Option<&str>) -> Request<Bytes> {
    request(Method::GET, path, cookie, Bytes::new())
}

fn request(method: Method, path: &str, cookie: Option<&str>, body: Bytes) -> Request<Bytes> {
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
fn instruct(cookie: Option<&str>, instructions: Value) -> Request<Bytes> {
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

fn json_body(response: &Response<Bytes>) -> Value {
    serde_json::from_slice(response.body()).unwrap_or(Value::Null)
}

fn set_cookie(response: &Response<Bytes>) -> Option<String> {
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
    assert_eq!(rig.trips() - before, 1, "signed-in read: one round trip");
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
        before + 1,
        "only whole path segments are skipped"
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
        .send(instruct(Some(&first), json!({ "set": { "cart": [1] } })))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let me = json_body(&rig.send(get("/_session", Some(&first))).await);
    assert_eq!(me["user"], json!("uma"));
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
    let admin = |method: Method, path: &str, token: Option<&str>| {
        let mut r = request(method, path, None, Bytes::new());
        if let Some(token) = token {
            r.headers_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        r
    };
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
