//! The gateway function in process: API Gateway REST and HTTP API events and
//! Function URL events from the fixtures, against a real redis-server, the
//! local REST endpoint and the demo origin.

use std::time::Duration;

use edge_session_lambda::{EventKind, event};
use http::StatusCode;
use serde_json::{Value, json};

use crate::support::{ADMIN, Event, Kind, Reply, Rig, assert_secure_cookie, fixtures};

/// `GET /api/whoami` on the demo origin: what reached it.
async fn whoami(rig: &Rig, event: Event, cookie: Option<&str>) -> Value {
    let mut event = event.method("GET").path("/api/whoami");
    if let Some(cookie) = cookie {
        event = event.cookie(cookie);
    }
    let reply = rig.invoke(&event).await;
    assert_eq!(reply.status(), 200, "{:?}", reply.json);
    reply.body()
}

async fn sign_in(rig: &Rig, event: Event, user: &str) -> Reply {
    let reply = rig.invoke(&event.instruct(&json!({ "login": user }))).await;
    assert_eq!(reply.status(), 200, "{:?}", reply.json);
    reply
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_requests_on_every_event_kind_cost_nothing() {
    let rig = Rig::start().await;
    for event in [
        Event::rest(),
        Event::http(),
        Event::http_stage(),
        Event::function_url(),
        Event::cargo_lambda(),
    ] {
        let kind = event.kind;
        let reply = rig
            .invoke(
                &event
                    .path("/api/whoami")
                    .cookie("theme=dark")
                    .header("x-session-user", "admin"),
            )
            .await;
        assert_eq!(reply.status(), 200);
        assert!(reply.set_cookies().is_empty());
        let body = reply.body();
        assert_eq!(body["session_headers"], json!({}), "spoofing stripped");
        assert_eq!(body["cookie_header"], json!("theme=dark"));
        assert_eq!(body["uri"], json!("/api/whoami"), "{kind:?}: no stage");
        assert_eq!(
            reply.header("content-type").as_deref(),
            Some("application/json")
        );
    }
    assert_eq!(rig.redis.key_count(), 0, "nothing written for visitors");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_via_the_origin_and_cookie_round_trip_http_api() {
    let rig = Rig::start().await;
    let reply = sign_in(&rig, Event::http(), "alice").await;
    assert!(reply.json.get("cookies").is_some());
    let set = reply.session_cookie().unwrap();
    assert_secure_cookie(&set);
    assert!(reply.header("x-session-login").is_none());
    let cookie = reply.cookie();
    // v2: the browser's cookies arrive as the `cookies` array.
    let me = whoami(&rig, Event::http(), Some(&format!("theme=dark; {cookie}"))).await;
    assert_eq!(me["user"], json!("alice"));
    assert_eq!(me["session_id"].as_str().map(str::len), Some(64));
    assert_eq!(
        me["cookie_header"],
        json!("theme=dark"),
        "the token never reaches the origin"
    );
    // The same cookie works on the Function URL.
    let me = whoami(&rig, Event::function_url(), Some(&cookie)).await;
    assert_eq!(me["user"], json!("alice"));
    let devices = rig.gateway.store().devices("alice").await.unwrap();
    assert_eq!(
        devices[0].user_agent.as_deref(),
        Some("lambda-fixture/1 (http-api)")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_and_cookie_round_trip_rest_api() {
    let rig = Rig::start().await;
    let reply = sign_in(&rig, Event::rest(), "bob").await;
    assert!(reply.json.get("cookies").is_none());
    assert_secure_cookie(&reply.session_cookie().unwrap());
    let cookie = reply.cookie();
    // v1: one `Cookie` header.
    let me = whoami(&rig, Event::rest(), Some(&format!("{cookie}; theme=dark"))).await;
    assert_eq!(me["user"], json!("bob"));
    assert_eq!(me["cookie_header"], json!("theme=dark"));
    // A cookie issued behind the REST API works behind the HTTP API too.
    let me = whoami(&rig, Event::http(), Some(&cookie)).await;
    assert_eq!(me["user"], json!("bob"));

    // An HTTP/2 client may split the Cookie header: every value counts, not
    // only the last one that API Gateway copies into `headers`.
    let mut split = Event::rest().method("GET").path("/api/whoami");
    split.json["multiValueHeaders"]["Cookie"] = json!([cookie, "theme=dark"]);
    split.json["headers"]["Cookie"] = json!("theme=dark");
    let me = rig.invoke(&split).await.body();
    assert_eq!(me["user"], json!("bob"), "{me}");
    assert_eq!(me["cookie_header"], json!("theme=dark"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_prefixes_never_reach_the_gateway() {
    let rig = Rig::start().await;
    // REST API, stage prod: the browser's URL is /prod/...; lambda_http's URI
    // has the stage, the gateway's path does not.
    let event = Event::rest().path("/api/whoami");
    let request = lambda_http::request::from_str(&event.text()).unwrap();
    assert_eq!(request.uri().path(), "/prod/api/whoami");
    assert_eq!(EventKind::of(&request), Some(EventKind::RestApi));
    let converted = event::to_gateway_request(request).unwrap();
    assert_eq!(
        converted.uri().to_string(),
        "https://gy415nuibc.execute-api.us-east-1.amazonaws.com/api/whoami"
    );
    // HTTP API on a named stage: rawPath holds the stage.
    let event = Event::http_stage().path("/api/whoami");
    let request = lambda_http::request::from_str(&event.text()).unwrap();
    assert_eq!(request.uri().path(), "/prod/api/whoami");
    assert_eq!(edge_session_lambda::app_path(&request), "/api/whoami");
    // The same path on a custom domain (no stage in it) is kept.
    let mut custom = Event::http_stage().path("/api/whoami");
    custom.json["requestContext"]["domainName"] = json!("app.example.com");
    custom.json["headers"]["host"] = json!("app.example.com");
    let request = lambda_http::request::from_str(&custom.text()).unwrap();
    assert_eq!(edge_session_lambda::app_path(&request), "/prod/api/whoami");

    // The browser API is reached under a stage, and so is the origin with a query.
    let login = sign_in(&rig, Event::http_stage(), "carol").await;
    let reply = rig
        .invoke(&Event::rest().path("/_session").cookie(&login.cookie()))
        .await;
    assert_eq!(reply.status(), 200, "{:?}", reply.json);
    assert_eq!(reply.body()["user"], json!("carol"));
    let mut with_query = Event::http_stage().path("/api/whoami");
    with_query.json["rawQueryString"] = json!("a=1&b=%20x");
    assert_eq!(
        rig.invoke(&with_query).await.body()["uri"],
        json!("/api/whoami?a=1&b=%20x")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_slide_on_use() {
    let rig = Rig::with(&[("SESSION_IDLE_TTL", "10m")]).await;
    let cookie = sign_in(&rig, Event::http(), "dave").await.cookie();
    let first = rig
        .invoke(&Event::http().path("/_session").cookie(&cookie))
        .await
        .body();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let second = rig
        .invoke(&Event::rest().path("/_session").cookie(&cookie))
        .await
        .body();
    let (e1, e2) = (first["expires"].as_u64(), second["expires"].as_u64());
    assert!(e2 > e1, "idle expiry slid: {e1:?} -> {e2:?}");
    assert!(second["last_seen"].as_u64() > first["last_seen"].as_u64());
    assert!(e2.unwrap() <= second["absolute_expiry"].as_u64().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_field_set_and_incr() {
    let rig = Rig::start().await;
    // An anonymous visitor's first write creates the session.
    let reply = rig
        .invoke(&Event::function_url().instruct(&json!({
            "set": { "theme": "dark", "cart": ["book"] },
            "incr": { "n": 2 }
        })))
        .await;
    assert_eq!(reply.status(), 200);
    let cookie = reply.cookie();
    let me = whoami(&rig, Event::rest(), Some(&cookie)).await;
    assert_eq!(
        me["data"],
        json!({ "theme": "dark", "cart": ["book"], "n": 2 })
    );
    assert_eq!(me["user"], Value::Null);
    let reply = rig
        .invoke(
            &Event::http()
                .instruct(&json!({ "incr": { "n": 5 }, "set": { "theme": null } }))
                .cookie(&cookie),
        )
        .await;
    assert_eq!(reply.status(), 200);
    assert!(
        reply.session_cookie().is_none(),
        "same session, no new cookie"
    );
    let me = whoami(&rig, Event::http(), Some(&cookie)).await;
    assert_eq!(me["data"], json!({ "cart": ["book"], "n": 7 }));
    // A malformed instruction is a 502 and changes nothing.
    let reply = rig
        .invoke(
            &Event::rest()
                .instruct(&json!({ "set": { "_user": "root" } }))
                .cookie(&cookie),
        )
        .await;
    assert_eq!(reply.status(), 502);
    assert_eq!(reply.body()["code"], json!("bad_session_instruction"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_and_logout_all() {
    let rig = Rig::start().await;
    let laptop = sign_in(&rig, Event::http(), "erin").await.cookie();
    let phone = sign_in(&rig, Event::rest(), "erin").await.cookie();
    let tablet = sign_in(&rig, Event::function_url(), "erin").await.cookie();
    // The origin signs the tablet out.
    let reply = rig
        .invoke(
            &Event::http()
                .instruct(&json!({ "logout": "current" }))
                .cookie(&tablet),
        )
        .await;
    assert!(reply.session_cookie().unwrap().contains("Max-Age=0"));
    assert_eq!(
        whoami(&rig, Event::http(), Some(&tablet)).await["user"],
        Value::Null
    );
    // Cross-site logout-all is refused (CSRF), same-origin is accepted.
    let refused = rig
        .invoke(
            &Event::rest()
                .method("POST")
                .path("/_session/logout-all")
                .cookie(&laptop)
                .header("Origin", "https://evil.example"),
        )
        .await;
    assert_eq!(refused.status(), 403);
    let own_origin = rig
        .invoke(
            &Event::rest()
                .method("POST")
                .path("/_session/logout-all")
                .cookie(&laptop)
                .header(
                    "Origin",
                    "https://gy415nuibc.execute-api.us-east-1.amazonaws.com",
                ),
        )
        .await;
    assert_eq!(own_origin.status(), 200, "{:?}", own_origin.json);
    assert_eq!(own_origin.body()["logged_out"], json!(2));
    assert!(own_origin.session_cookie().unwrap().contains("Max-Age=0"));
    for cookie in [&laptop, &phone] {
        assert_eq!(
            whoami(&rig, Event::http(), Some(cookie)).await["user"],
            Value::Null
        );
    }
    assert!(
        rig.gateway
            .store()
            .devices("erin")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_needs_the_token() {
    let rig = Rig::start().await;
    sign_in(&rig, Event::http(), "frank").await;
    sign_in(&rig, Event::http(), "frank").await;
    let stats = Event::http().path("/_session/admin/stats");
    let reply = rig.invoke(&stats).await;
    assert_eq!(reply.status(), 401);
    assert_eq!(reply.body()["code"], json!("unauthorized"));
    let reply = rig
        .invoke(
            &stats
                .clone()
                .header("authorization", "Bearer wrong-token-0123456789"),
        )
        .await;
    assert_eq!(reply.status(), 401);
    let bearer = format!("Bearer {ADMIN}");
    let reply = rig.invoke(&stats.header("authorization", &bearer)).await;
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.body()["active_sessions"], json!(2));
    let sessions = Event::rest().path("/_session/admin/users/frank/sessions");
    let reply = rig
        .invoke(&sessions.clone().header("Authorization", &bearer))
        .await;
    assert_eq!(reply.body()["sessions"].as_array().map(Vec::len), Some(2));
    let reply = rig
        .invoke(&sessions.method("DELETE").header("Authorization", &bearer))
        .await;
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.body(), json!({ "user": "frank", "revoked": 2 }));
    // Without ADMIN_TOKEN the admin API is off.
    let off = Rig::with(&[("ADMIN_TOKEN", "")]).await;
    let reply = off
        .invoke(
            &Event::http()
                .path("/_session/admin/stats")
                .header("authorization", &bearer),
        )
        .await;
    assert_eq!(reply.status(), 404);
    assert_eq!(reply.body()["code"], json!("admin_disabled"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base64_request_bodies_are_decoded() {
    let rig = Rig::start().await;
    // REST API with binary media types */*: the body arrives base64-encoded.
    let event = Event::from_fixture(fixtures::REST_API_BASE64);
    let reply = rig.invoke(&event).await;
    assert_eq!(reply.status(), 200, "{:?}", reply.json);
    let me = whoami(&rig, Event::rest(), Some(&reply.cookie())).await;
    assert_eq!(me["user"], json!("bob"));
    assert_eq!(me["data"], json!({ "theme": "dark" }));
    // HTTP API: the same, built from the v2 fixture.
    let body = json!({ "login": "zoë", "incr": { "n": 1 } }).to_string();
    let event = Event::http()
        .method("POST")
        .path("/api/instruct")
        .header("content-type", "application/json")
        .base64_body(body.as_bytes());
    let reply = rig.invoke(&event).await;
    assert_eq!(reply.status(), 200);
    let me = whoami(&rig, Event::http(), Some(&reply.cookie())).await;
    assert_eq!(me["user"], json!("zoë"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_set_cookie_headers_survive_both_formats() {
    let rig = Rig::start().await;
    let instructions = json!({
        "login": "gina",
        "raw": { "set-cookie": ["a=1; Path=/", "b=2; Path=/; HttpOnly"] }
    });
    for event in [Event::http(), Event::rest(), Event::function_url()] {
        let kind = event.kind;
        let reply = rig.invoke(&event.instruct(&instructions)).await;
        assert_eq!(reply.status(), 200);
        let cookies = reply.set_cookies();
        // The origin's two, the session cookie, and the sync cookie that
        // carries the REST store's sync token to the next request.
        assert_eq!(cookies.len(), 4, "{kind:?}: {cookies:?}");
        assert_eq!(&cookies[..2], ["a=1; Path=/", "b=2; Path=/; HttpOnly"]);
        assert!(cookies[2].starts_with("__Host-session="));
        assert!(cookies[3].starts_with("__Host-session-sync="));
        match kind {
            Kind::Http => {
                assert_eq!(reply.json["cookies"].as_array().map(Vec::len), Some(4))
            }
            Kind::Rest => assert_eq!(
                reply.json["multiValueHeaders"]["set-cookie"]
                    .as_array()
                    .map(Vec::len),
                Some(4)
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_events_are_a_400_without_panic() {
    let rig = Rig::start().await;
    let mut cases: Vec<(&str, Value)> = fixtures::MALFORMED
        .iter()
        .map(|(name, text)| (*name, serde_json::from_str(text).unwrap()))
        .collect();
    cases.extend([
        ("empty object", json!({})),
        ("array", json!([1, 2])),
        ("string", json!("GET / HTTP/1.1")),
        ("null", Value::Null),
        (
            "v2 without requestContext",
            json!({ "version": "2.0", "rawPath": "/" }),
        ),
        (
            "v1 with a numeric path",
            json!({ "httpMethod": "GET", "path": 7, "requestContext": { "httpMethod": "GET" } }),
        ),
    ]);
    for (name, event) in cases {
        let reply_event = event.clone();
        // Every refusal comes from a check, never from a caught panic.
        let refused = event::parse_event(event.clone()).map(|_| ()).unwrap_err();
        assert_ne!(
            refused.reason(),
            "the event could not be converted to an HTTP request",
            "{name}: reached lambda_http"
        );
        let reply = edge_session_lambda::handle_event(&rig.gateway, reply_event).await;
        assert_eq!(reply["statusCode"], json!(400), "{name}: {reply}");
        let body: Value = serde_json::from_str(reply["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["code"], json!("bad_request"), "{name}");
        assert_eq!(body["error"], json!(refused.reason()), "{name}");
        // In the format the event asked for, when it can be told.
        let content_type = match EventKind::from_event(&event) {
            Some(EventKind::RestApi) => &reply["multiValueHeaders"]["content-type"][0],
            Some(EventKind::HttpApi) => {
                assert_eq!(reply["cookies"], json!([]), "{name}");
                &reply["headers"]["content-type"]
            }
            None => {
                assert!(reply.get("cookies").is_none(), "{name}");
                &reply["headers"]["content-type"]
            }
        };
        assert_eq!(content_type, &json!("application/json"), "{name}");
    }
    // Without the checks, lambda_http panics on some of these.
    let bad_base64 = fixtures::MALFORMED[1].1;
    let panicked = std::panic::catch_unwind(|| lambda_http::request::from_str(bad_base64));
    assert!(panicked.is_err(), "lambda_http unwraps the base64 body");
    // A valid event with an invalid path for a URI is still a clean 400.
    let reply = rig.invoke(&Event::http().path("/a b\"<>{}|\\^`/%zz")).await;
    assert!(
        reply.status() == 404 || reply.status() == 400,
        "{:?}",
        reply.json
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_outage_is_a_503_with_retry_after() {
    let mut rig = Rig::with(&[
        ("SESSION_STORE_RETRIES", "0"),
        ("SESSION_STORE_TIMEOUT_MS", "1000"),
        ("SESSION_RETRY_AFTER", "7"),
    ])
    .await;
    let cookie = sign_in(&rig, Event::http(), "hank").await.cookie();
    rig.redis.stop();
    for event in [Event::http(), Event::rest()] {
        let reply = rig.invoke(&event.path("/api/whoami").cookie(&cookie)).await;
        assert_eq!(reply.status(), 503, "{:?}", reply.json);
        assert_eq!(reply.body()["code"], json!("store_unavailable"));
        assert_eq!(reply.header("retry-after").as_deref(), Some("7"));
    }
    // Anonymous visitors never need the store.
    assert_eq!(
        rig.invoke(&Event::http().path("/api/whoami"))
            .await
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_handler_over_lambda_http_requests() {
    let rig = Rig::start().await;
    // The fixture parsed by lambda_http, then the handler, as in main.rs.
    let request = lambda_http::request::from_str(fixtures::FUNCTION_URL).unwrap();
    let response = edge_session_lambda::handle(&rig.gateway, request).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(body["uri"], json!("/api/whoami"));
    let forwarded = body["method"].as_str();
    assert_eq!(forwarded, Some("GET"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misconfiguration_names_the_variable() {
    let env = edge_session_lambda::Env::from_pairs([
        ("SESSION_SECRETS", crate::support::SECRETS),
        ("UPSTASH_REDIS_REST_URL", "http://127.0.0.1:9"),
        ("UPSTASH_REDIS_REST_TOKEN", "t"),
    ]);
    let client = edge_session_lambda::http_client().unwrap();
    let error = edge_session_lambda::gateway(&env, client)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("ORIGIN_URL"), "{error}");
    assert!(!format!("{env:?}").contains("MDEy"), "values never printed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_responses_follow_session_max_body_bytes() {
    // The origin's whoami JSON is far longer than 64 bytes.
    let rig = Rig::with(&[("SESSION_MAX_BODY_BYTES", "64")]).await;
    let reply = rig
        .invoke(&Event::http().method("GET").path("/api/whoami"))
        .await;
    assert_eq!(reply.status(), 502, "{:?}", reply.json);
    assert_eq!(reply.body()["code"], json!("origin_response_too_large"));
    // The default limit passes it.
    let rig = Rig::start().await;
    let reply = rig
        .invoke(&Event::http().method("GET").path("/api/whoami"))
        .await;
    assert_eq!(reply.status(), 200, "{:?}", reply.json);
}
