//! The security review's gateway findings through the binary, over real
//! HTTP/1.1: spoofed `x_session_*` headers, the origin signature, cache
//! hygiene, forwarding headers, cookies on skip paths and odd paths.

use axum::http::{Method, StatusCode};
use edge_session::gateway::signature::{self, DEFAULT_WINDOW, SIGNATURE};
use http_body_util::BodyExt as _;

use crate::support::{Host, Origin, Redis, full};

const SECRET: &str = "0123456789abcdef0123456789abcdef-host";

/// What the origin's `/headers` saw of one request.
struct Seen(serde_json::Value);

impl Seen {
    fn values(&self, name: &str) -> Vec<String> {
        self.0["headers"][name]
            .as_array()
            .map(|v| {
                v.iter()
                    .map(|s| s.as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn one(&self, name: &str) -> Option<String> {
        self.values(name).into_iter().next()
    }

    /// The head as `http` types, for the signature check.
    fn head(&self) -> (String, String, http::HeaderMap) {
        let mut headers = http::HeaderMap::new();
        for (name, values) in self.0["headers"].as_object().unwrap() {
            for value in values.as_array().unwrap() {
                headers.append(
                    http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    value.as_str().unwrap().parse().unwrap(),
                );
            }
        }
        let method = self.0["method"].as_str().unwrap().to_owned();
        let path = self.0["path"].as_str().unwrap().to_owned();
        (method, path, headers)
    }
}

#[tokio::test]
async fn the_review_findings_hold_through_the_binary() {
    let redis = Redis::start().await;
    let origin = Origin::start().await;
    let host = Host::start(
        &origin.url,
        &redis,
        &[
            ("SESSION_ORIGIN_SECRET", SECRET),
            ("SESSION_SKIP_PATHS", "/static"),
        ],
    )
    .await;
    let mut connection = host.connect().await;

    // Signed in (the cookie response is private and varies on the cookie).
    let login = connection.post("/login", None, Vec::new()).await;
    let cookie = login.session_cookie().unwrap();
    assert_eq!(login.headers["vary"], "Cookie");
    assert!(
        login.headers["cache-control"]
            .to_str()
            .unwrap()
            .starts_with("private")
    );

    // A spoofing client: underscored session headers and forwarding headers.
    let request = connection
        .request(Method::GET, "/headers?x=1", Some(&cookie))
        .header("x_session_user", "admin")
        .header("x-forwarded-for", "6.6.6.6")
        .header("forwarded", "for=6.6.6.6")
        .header("x-real-ip", "6.6.6.6")
        .body(full(Vec::new()))
        .unwrap();
    let response = connection.stream(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let cache = response.headers()["cache-control"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(cache, "private, max-age=600", "a signed-in page is private");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let seen = Seen(serde_json::from_slice(&body).unwrap());
    assert!(
        seen.values("x_session_user").is_empty(),
        "x_session_user stripped"
    );
    assert_eq!(seen.one("x-session-user").as_deref(), Some("alice"));
    assert_eq!(seen.values("x-forwarded-for"), ["127.0.0.1"]);
    assert!(seen.values("forwarded").is_empty() && seen.values("x-real-ip").is_empty());
    assert_eq!(seen.one("x-forwarded-proto").as_deref(), Some("http"));
    // The origin can verify the request came through the gateway.
    let (method, path, headers) = seen.head();
    assert!(headers.contains_key(SIGNATURE));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    signature::verify(
        SECRET.as_bytes(),
        &method,
        &path,
        &headers,
        now,
        DEFAULT_WINDOW,
    )
    .unwrap();
    let mut forged = headers.clone();
    forged.insert("x-session-user", "admin".parse().unwrap());
    assert!(
        signature::verify(
            SECRET.as_bytes(),
            &method,
            &path,
            &forged,
            now,
            DEFAULT_WINDOW
        )
        .is_err()
    );

    // Neither the session cookie nor the sync cookie reaches the origin, on
    // a skip path too; a dot segment is refused before the prefix checks.
    let both = format!("{cookie}; __Host-session-sync=abc; theme=dark");
    let dodged = connection.get("/static/../headers", Some(&both)).await;
    assert_eq!(dodged.status, StatusCode::BAD_REQUEST);
    for path in ["/static/headers", "/headers"] {
        let answer = connection.get(path, Some(&both)).await;
        let seen = Seen(answer.json());
        assert_eq!(seen.values("cookie"), ["theme=dark"], "{path}");
    }
    // An anonymous visitor without a session keeps the origin's caching.
    let anonymous = connection.get("/headers", None).await;
    assert_eq!(anonymous.headers["cache-control"], "public, max-age=600");
}
