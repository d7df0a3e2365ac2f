//! The security review's gateway findings, each at the HTTP level through
//! the gateway in process: spoofed session headers, origin signatures,
//! cache hygiene, forwarding headers, skip paths and path forms, error
//! bodies, trusted origins, joined instruction headers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use edge_session::gateway::ClientAddr;
use edge_session::gateway::signature::{self, DEFAULT_WINDOW, SIGNATURE};
use http::{Method, Request, Response, StatusCode};
use serde_json::Value;

use crate::support::gateway::{
    RecordingOrigin, TestGateway, browser_get as get, error_code as code, gateway_with,
};
use crate::support::{Counting, Harness, Kind};

both_backends!(
    underscored_session_headers_never_reach_the_origin,
    requests_are_signed_for_the_origin,
    personal_responses_are_kept_out_of_shared_caches,
    forwarding_headers_are_the_gateways_own,
    skip_paths_drop_the_cookies_and_odd_paths_are_refused,
    error_bodies_name_the_code_not_the_details,
    trusted_origins_pass_the_csrf_check_with_sec_fetch_site,
    a_joined_login_header_is_refused,
    instructions_apply_on_origin_errors_too,
);

const SECRET: &str = "0123456789abcdef0123456789abcdef-origin";

type Rig = (
    Harness,
    RecordingOrigin,
    TestGateway<Counting<edge_session::AnyBackend>, RecordingOrigin>,
);

/// A store on `kind`, a recording origin, and a gateway configured with `extra`.
async fn rig(kind: Kind, extra: &[(&str, &str)]) -> Rig {
    let h = Harness::start(kind).await;
    let origin = RecordingOrigin::default();
    let gateway = gateway_with(h.store.clone(), origin.clone(), extra);
    (h, origin, gateway)
}

fn plain(builder: http::request::Builder) -> Request<Bytes> {
    builder.body(Bytes::new()).unwrap()
}

fn session_cookie(response: &Response<Bytes>) -> String {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|c| c.starts_with("__Host-session="))
        .map(|c| c.split(';').next().unwrap().to_owned())
        .expect("a session cookie")
}

async fn underscored_session_headers_never_reach_the_origin(kind: Kind) {
    let (_h, origin, gateway) = rig(kind, &[("SESSION_SKIP_PATHS", "/static")]).await;
    for path in ["/", "/static/a.css"] {
        let spoofed = get(path, None)
            .header("x_session_user", "admin")
            .header("X-Session_Id", "forged")
            .header("x-session-data", "{}");
        assert_eq!(
            gateway.handle(plain(spoofed)).await.status(),
            StatusCode::OK
        );
        let seen = origin.last();
        let spoof: Vec<&str> = seen
            .keys()
            .map(http::HeaderName::as_str)
            .filter(|n| n.replace('_', "-").starts_with("x-session-"))
            .collect();
        assert!(spoof.is_empty(), "{path}: {spoof:?}");
    }
}

async fn requests_are_signed_for_the_origin(kind: Kind) {
    let (h, origin, gateway) = rig(kind, &[("SESSION_ORIGIN_SECRET", SECRET)]).await;
    origin.answer_with(&[("x-session-login", "alice")], Bytes::new());
    let response = gateway.handle(plain(get("/a?x=1", None))).await;
    let cookie = session_cookie(&response);
    origin.answer_with(&[], Bytes::new());
    gateway.handle(plain(get("/page?y=2", Some(&cookie)))).await;

    let headers = origin.last();
    let (method, uri) = origin.requests.lock().unwrap().last().cloned().unwrap();
    assert_eq!(headers["x-session-user"], "alice");
    let path = uri.path_and_query().unwrap().as_str();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let check = |headers: &http::HeaderMap, method: &str, path: &str, now: u64| {
        signature::verify(
            SECRET.as_bytes(),
            method,
            path,
            headers,
            now,
            DEFAULT_WINDOW,
        )
    };
    check(&headers, method.as_str(), path, now).unwrap();
    // A client that reached the origin directly cannot make one up, nor move
    // one to another identity, path or time.
    let mut forged = headers.clone();
    forged.insert("x-session-user", "admin".parse().unwrap());
    assert!(check(&forged, "GET", path, now).is_err());
    assert!(check(&headers, "GET", "/admin", now).is_err());
    assert!(check(&headers, "GET", path, now + 3600).is_err());
    let mut unsigned = headers.clone();
    unsigned.remove(SIGNATURE);
    assert!(check(&unsigned, "GET", path, now).is_err());
    // The README's Node and Python verifiers agree.
    for program in [["node", "verify.mjs"], ["python3", "verify.py"]] {
        assert!(
            verified_by(program, &headers, method.as_str(), path),
            "{program:?}"
        );
        assert!(!verified_by(program, &forged, "GET", path), "{program:?}");
        assert!(
            !verified_by(program, &headers, "GET", "/admin"),
            "{program:?}"
        );
    }
    // A client's own signature header never reaches the origin.
    let sent = get("/", None).header(SIGNATURE, "t=1,v1=00");
    let without = gateway_with(h.store.clone(), origin.clone(), &[]);
    without.handle(plain(sent)).await;
    assert!(origin.last().get(SIGNATURE).is_none());
}

/// Runs `examples/verify-origin/<script>` on a request head: true when it
/// says the signature verifies.
fn verified_by(program: [&str; 2], headers: &http::HeaderMap, method: &str, path: &str) -> bool {
    use std::io::Write as _;
    let headers: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), Value::from(v.to_str().unwrap())))
        .collect();
    let input =
        serde_json::json!({ "secret": SECRET, "method": method, "path": path, "headers": headers });
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/verify-origin");
    let mut child = std::process::Command::new(program[0])
        .arg(program[1])
        .current_dir(dir)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program:?}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    child.wait().unwrap().success()
}

async fn personal_responses_are_kept_out_of_shared_caches(kind: Kind) {
    let (_h, origin, gateway) = rig(kind, &[("SESSION_CACHE_PUBLIC_PATHS", "/assets")]).await;
    let public = ("cache-control", "public, max-age=600");
    // Anonymous, no session: the origin's caching stands.
    origin.answer_with(&[public], Bytes::new());
    let response = gateway.handle(plain(get("/", None))).await;
    assert_eq!(response.headers()["cache-control"], "public, max-age=600");
    assert!(response.headers().get("vary").is_none());
    // A response that sets the session cookie is private and varies on it.
    origin.answer_with(&[public, ("x-session-login", "bob")], Bytes::new());
    let response = gateway.handle(plain(get("/", None))).await;
    let cookie = session_cookie(&response);
    assert_eq!(response.headers()["cache-control"], "private, max-age=600");
    assert_eq!(response.headers()["vary"], "Cookie");
    // A page made for a signed-in visitor too, with no-store kept.
    origin.answer_with(&[("cache-control", "no-store, public")], Bytes::new());
    let response = gateway.handle(plain(get("/", Some(&cookie)))).await;
    assert_eq!(response.headers()["cache-control"], "private, no-store");
    // Unless the operator opted the path out.
    origin.answer_with(&[public], Bytes::new());
    let response = gateway
        .handle(plain(get("/assets/app.js", Some(&cookie))))
        .await;
    assert_eq!(response.headers()["cache-control"], "public, max-age=600");
    // Logout (the cookie cleared) is private as well.
    origin.answer_with(&[public, ("x-session-logout", "current")], Bytes::new());
    let response = gateway.handle(plain(get("/", Some(&cookie)))).await;
    assert!(
        response.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(response.headers()["cache-control"], "private, max-age=600");
}

async fn forwarding_headers_are_the_gateways_own(kind: Kind) {
    let h = Harness::start(kind).await;
    let origin = RecordingOrigin::default();
    let spoofed = || {
        let mut request = plain(
            get("/", None)
                .header("x-forwarded-for", "6.6.6.6")
                .header("forwarded", "for=6.6.6.6")
                .header("x-real-ip", "6.6.6.6")
                .header("x-forwarded-host", "evil.example")
                .header("x-forwarded-proto", "https"),
        );
        request
            .extensions_mut()
            .insert(ClientAddr("192.0.2.7".parse().unwrap()));
        request
    };
    let gateway = gateway_with(h.store.clone(), origin.clone(), &[]);
    gateway.handle(spoofed()).await;
    let seen = origin.last();
    assert_eq!(seen["x-forwarded-for"], "192.0.2.7");
    assert_eq!(seen["x-forwarded-host"], "shop.example");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert!(seen.get("forwarded").is_none() && seen.get("x-real-ip").is_none());
    // Without a Host, a client's X-Forwarded-Host does not pass either.
    let mut hostless = spoofed();
    hostless.headers_mut().remove("host");
    gateway.handle(hostless).await;
    assert!(origin.last().get("x-forwarded-host").is_none());
    // Behind a proxy of the operator's, its values are kept and extended.
    let trusting = gateway_with(
        h.store.clone(),
        origin.clone(),
        &[("SESSION_TRUST_FORWARDED", "true")],
    );
    trusting.handle(spoofed()).await;
    let seen = origin.last();
    assert_eq!(seen["x-forwarded-for"], "6.6.6.6, 192.0.2.7");
    assert_eq!(seen["x-forwarded-proto"], "https");
}

async fn skip_paths_drop_the_cookies_and_odd_paths_are_refused(kind: Kind) {
    let (h, origin, gateway) = rig(kind, &[("SESSION_SKIP_PATHS", "/static")]).await;
    origin.answer_with(&[("x-session-login", "carol")], Bytes::new());
    let cookie = session_cookie(&gateway.handle(plain(get("/", None))).await);
    origin.answer_with(&[], Bytes::new());
    let both = format!("{cookie}; __Host-session-sync=abc; theme=dark");
    gateway
        .handle(plain(get("/static/a.css", Some(&both))))
        .await;
    let sent = origin.last();
    let cookies = sent["cookie"].to_str().unwrap();
    assert_eq!(cookies, "theme=dark", "only the site's own cookies");
    let trips = h.trips();
    let seen = origin.seen.lock().unwrap().len();
    for odd in [
        "/static/../admin",
        "/static/%2e%2e/admin",
        "/static/%2E%2E/_session/admin/stats",
        "//admin",
        "/_session/./devices",
    ] {
        let response = gateway.handle(plain(get(odd, Some(&cookie)))).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{odd}");
    }
    assert_eq!(origin.seen.lock().unwrap().len(), seen, "nothing forwarded");
    assert_eq!(h.trips(), trips, "no store call");
}

async fn error_bodies_name_the_code_not_the_details(kind: Kind) {
    let (_h, origin, gateway) = rig(kind, &[]).await;
    for (name, value) in [
        ("x-session-set", r#"{"secret_field": "#),
        ("x-session-incr", r#"{"internal_counter": "x"}"#),
        ("x-session-set", r#"{"_reserved": 1}"#),
    ] {
        origin.answer_with(&[(name, value)], Bytes::new());
        let response = gateway.handle(plain(get("/", None))).await;
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(code(&response), "bad_session_instruction");
        let body = String::from_utf8_lossy(response.body()).to_string();
        for detail in [
            "secret_field",
            "internal_counter",
            "_reserved",
            "EOF",
            "line",
            "x-session",
        ] {
            assert!(!body.contains(detail), "{body}");
        }
    }
}

async fn trusted_origins_pass_the_csrf_check_with_sec_fetch_site(kind: Kind) {
    let (_h, origin, gateway) =
        rig(kind, &[("SESSION_TRUSTED_ORIGINS", "https://app.example")]).await;
    origin.answer_with(&[("x-session-login", "dora")], Bytes::new());
    let cookie = session_cookie(&gateway.handle(plain(get("/", None))).await);
    let logout = |from: &str| {
        plain(
            get("/_session/logout", Some(&cookie))
                .method(Method::POST)
                .header("sec-fetch-site", "cross-site")
                .header("origin", from),
        )
    };
    let refused = gateway.handle(logout("https://evil.example")).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let allowed = gateway.handle(logout("https://app.example")).await;
    assert_eq!(allowed.status(), StatusCode::OK);
}

async fn a_joined_login_header_is_refused(kind: Kind) {
    let (_h, origin, gateway) = rig(kind, &[]).await;
    // What a platform that joins repeated headers (the Workers Headers API)
    // makes of two x-session-login headers.
    origin.answer_with(&[("x-session-login", "alice, bob")], Bytes::new());
    let response = gateway.handle(plain(get("/", None))).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert!(response.headers().get("set-cookie").is_none());
}

async fn instructions_apply_on_origin_errors_too(kind: Kind) {
    // Decided and documented: the origin's instructions are applied whatever
    // its status (a 500 page may log a user out), like a 200's.
    let (_h, origin, gateway) = rig(kind, &[]).await;
    origin.answer_with(&[("x-session-login", "erin")], Bytes::new());
    let cookie = session_cookie(&gateway.handle(plain(get("/", None))).await);
    *origin.status.lock().unwrap() = StatusCode::INTERNAL_SERVER_ERROR;
    origin.answer_with(&[("x-session-logout", "current")], Bytes::new());
    let response = gateway.handle(plain(get("/", Some(&cookie)))).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        response.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    *origin.status.lock().unwrap() = StatusCode::OK;
    origin.answer_with(&[], Bytes::new());
    gateway.handle(plain(get("/", Some(&cookie)))).await;
    assert!(origin.last().get("x-session-user").is_none(), "logged out");
}
