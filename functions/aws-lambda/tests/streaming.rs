//! Both response modes against the demo origin's streaming routes, in
//! process: the streamed mode (`stream_event`, what a Function URL with
//! `InvokeMode: RESPONSE_STREAM` or a REST API in `STREAM` mode gets) sends
//! the prelude as soon as the origin's head is in and then the origin's
//! chunks as they come; the buffered mode (`handle_event`, the HTTP API)
//! collects the body and refuses one that cannot fit in Lambda's 6 MB
//! payload. The same checks run end to end under `cargo lambda watch` in
//! `scripts/test-lambda`.

use std::time::Duration;

use demo_origin::stream::pattern;
use edge_session_lambda::{BUFFERED_PAYLOAD_LIMIT, ResponseMode};
use serde_json::{Value, json};

use crate::support::{Event, Received, Rig, fixtures};

const MIB: u64 = 1024 * 1024;

/// Signs `user` in through the origin; the session cookie.
async fn sign_in(rig: &Rig, user: &str) -> String {
    let reply = rig
        .invoke(&Event::http().instruct(&json!({ "login": user })))
        .await;
    assert_eq!(reply.status(), 200, "{:?}", reply.json);
    reply.cookie()
}

/// `GET path?query` as `event`, with the session cookie if any.
fn get(event: Event, path: &str, query: &str, cookie: Option<&str>) -> Event {
    let event = event.method("GET").path(path).query(query);
    match cookie {
        Some(cookie) => event.cookie(cookie),
        None => event,
    }
}

/// True when `bytes` are the demo origin's pattern from offset 0.
fn is_pattern(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .enumerate()
        .all(|(i, b)| *b == pattern(i as u64))
}

fn pattern_bytes(len: usize) -> Vec<u8> {
    (0..len as u64).map(pattern).collect()
}

/// What the user's session holds, through the buffered mode.
async fn data_of(rig: &Rig, cookie: &str) -> Value {
    let reply = rig
        .invoke(&get(Event::http(), "/api/whoami", "", Some(cookie)))
        .await;
    reply.body()["data"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_events_arrive_as_the_origin_sends_them() {
    let rig = Rig::start().await;
    let cookie = sign_in(&rig, "sse-user").await;
    // A Function URL visitor and a signed-in REST API visitor, at once.
    let anonymous = get(
        Event::function_url(),
        "/stream/sse",
        "n=10&every_ms=300",
        None,
    );
    let signed_in = get(
        Event::rest(),
        "/stream/sse",
        "n=10&every_ms=300",
        Some(&cookie),
    );
    let limit = Duration::from_secs(10);
    let (a, s) = tokio::join!(
        async { rig.stream(&anonymous).await.receive(limit).await },
        async {
            let streamed = rig.stream(&signed_in).await;
            assert_eq!(streamed.status(), 200);
            assert_eq!(
                streamed.header("content-type").as_deref(),
                Some("text/event-stream")
            );
            streamed.receive(limit).await
        },
    );
    for (received, user) in [(a, Value::Null), (s, json!("sse-user"))] {
        let text = String::from_utf8(received.bytes.clone()).unwrap();
        let events: Vec<Value> = text
            .split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
            .collect();
        assert_eq!(events.len(), 10, "{text}");
        for (i, event) in events.iter().enumerate() {
            assert_eq!(event, &json!({ "i": i, "user": user }));
        }
        // The first event while the stream is open, the others on their pace.
        assert!(received.first() < Duration::from_secs(1), "{received:?}");
        assert!(received.chunks.len() >= 10, "{:?}", received.chunks);
        assert!(
            received.last() - received.first() >= Duration::from_millis(2500),
            "{:?}",
            received.chunks
        );
        eprintln!(
            "sse (user {user}): first event after {:?}, last after {:?}",
            received.first(),
            received.last()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_download_streams_and_the_buffered_mode_refuses_it() {
    let rig = Rig::start().await;
    let cookie = sign_in(&rig, "downloader").await;
    let size = 64 * MIB;
    // Paced by the origin (a 64 KiB chunk every ms: a second or more), so
    // that the first byte can be told from the last.
    let paced = format!("bytes={size}&every_ms=1");
    let streamed = rig
        .stream(&get(
            Event::function_url(),
            "/stream/download",
            &paced,
            Some(&cookie),
        ))
        .await;
    assert_eq!(streamed.status(), 200);
    assert_eq!(
        streamed.header("content-length"),
        None,
        "the stream is framed by the platform"
    );
    let received = streamed.receive(Duration::from_secs(60)).await;
    assert_eq!(received.bytes.len() as u64, size);
    assert!(is_pattern(&received.bytes), "every byte in order");
    assert!(
        received.first() < Duration::from_millis(500),
        "{:?}",
        received.first()
    );
    assert!(
        received.last() >= Duration::from_secs(1),
        "{:?}",
        received.last()
    );
    eprintln!(
        "64 MiB streamed: first byte after {:?}, last after {:?}",
        received.first(),
        received.last()
    );

    // Buffered: refused by Content-Length, before the body is read.
    let whole = format!("bytes={size}");
    let started = std::time::Instant::now();
    let reply = rig
        .invoke(&get(
            Event::http(),
            "/stream/download",
            &whole,
            Some(&cookie),
        ))
        .await;
    assert_eq!(reply.status(), 502);
    assert_eq!(reply.body()["code"], json!("origin_response_too_large"));
    let message = reply.body()["error"].as_str().unwrap().to_owned();
    assert!(
        message.contains("6 MB") && message.contains(&BUFFERED_PAYLOAD_LIMIT.to_string()),
        "{message}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    // Without Content-Length: read up to the limit, then refused, and the
    // origin's instruction is not applied.
    let chunked = format!("bytes={size}&chunked=1&instruct=1");
    let reply = rig
        .invoke(&get(
            Event::http(),
            "/stream/download",
            &chunked,
            Some(&cookie),
        ))
        .await;
    assert_eq!(reply.status(), 502, "{:?}", reply.json);
    assert_eq!(reply.body()["code"], json!("origin_response_too_large"));
    assert!(reply.set_cookies().is_empty());
    assert_eq!(data_of(&rig, &cookie).await, json!({}), "nothing committed");

    // The limit counts the encoded payload: binary bodies are base64 (4/3).
    let fits = rig
        .invoke(&get(
            Event::http(),
            "/stream/download",
            "bytes=4500000",
            None,
        ))
        .await;
    assert_eq!(fits.status(), 200);
    assert_eq!(fits.json["isBase64Encoded"], json!(true));
    assert!(fits.json.to_string().len() <= BUFFERED_PAYLOAD_LIMIT);
    let body = fits.body_bytes();
    assert_eq!(body.len(), 4_500_000);
    assert!(is_pattern(&body));
    let over = rig
        .invoke(&get(
            Event::rest(),
            "/stream/download",
            "bytes=4800000&chunked=1",
            None,
        ))
        .await;
    assert_eq!(over.status(), 502, "4.8 MB is 6.4 MB in base64");
    assert_eq!(over.body()["code"], json!("origin_response_too_large"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instruction_on_a_streamed_16_mib_response_is_applied_before_the_head() {
    let rig = Rig::start().await;
    let cookie = sign_in(&rig, "counter").await;
    let query = format!("bytes={}&instruct=1", 16 * MIB);
    for signed_in in [false, true] {
        let event = get(
            Event::rest(),
            "/stream/download",
            &query,
            signed_in.then_some(cookie.as_str()),
        );
        let streamed = rig.stream(&event).await;
        assert_eq!(streamed.status(), 200);
        for (name, _) in streamed.headers() {
            assert!(!name.starts_with("x-session-"), "{name} reached the client");
        }
        let cache = streamed.header("cache-control").unwrap_or_default();
        assert!(cache.starts_with("private"), "a personal response: {cache}");
        // An anonymous visitor's instruction creates the session: its cookie
        // is in the prelude, before the first byte.
        let session = if signed_in {
            assert!(streamed.session_cookie().is_none(), "same session");
            cookie.clone()
        } else {
            streamed.cookie()
        };
        let received = streamed.receive(Duration::from_secs(30)).await;
        assert_eq!(received.bytes.len() as u64, 16 * MIB);
        assert!(is_pattern(&received.bytes));
        assert_eq!(data_of(&rig, &session).await, json!({ "downloads": 1 }));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_dying_mid_body_ends_the_stream_cut_off() {
    let rig = Rig::start().await;
    let cookie = sign_in(&rig, "broken").await;
    // Declares 8 MiB, sends 4 MiB, dies.
    let streamed = rig
        .stream(&get(
            Event::function_url(),
            "/stream/broken",
            &format!("bytes={}", 4 * MIB),
            Some(&cookie),
        ))
        .await;
    assert_eq!(streamed.status(), 200);
    let received = streamed.receive(Duration::from_secs(10)).await;
    assert!((received.bytes.len() as u64) < 8 * MIB, "cut off");
    assert!(is_pattern(&received.bytes), "no error text in the body");
    // Buffered: nothing of it goes out.
    let reply = rig
        .invoke(&get(
            Event::http(),
            "/stream/broken",
            "bytes=1048576",
            Some(&cookie),
        ))
        .await;
    assert_eq!(reply.status(), 502, "{:?}", reply.json);
    assert_eq!(reply.body()["code"], json!("origin_unavailable"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_origin_is_a_504_in_both_modes() {
    let rig = Rig::with(&[("SESSION_ORIGIN_TIMEOUT_MS", "400")]).await;
    let cookie = sign_in(&rig, "patient").await;
    let started = std::time::Instant::now();
    let streamed = rig
        .stream(&get(
            Event::rest(),
            "/stream/slow",
            "ms=3000",
            Some(&cookie),
        ))
        .await;
    assert_eq!(streamed.status(), 504);
    assert_eq!(
        streamed.header("content-type").as_deref(),
        Some("application/json")
    );
    let body = streamed.receive(Duration::from_secs(5)).await.json();
    assert_eq!(body["code"], json!("origin_timeout"));
    let reply = rig
        .invoke(&get(Event::http(), "/stream/slow", "ms=3000", None))
        .await;
    assert_eq!(reply.status(), 504);
    assert_eq!(reply.body()["code"], json!("origin_timeout"));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // Under the timeout: answered.
    let streamed = rig
        .stream(&get(Event::function_url(), "/stream/slow", "ms=100", None))
        .await;
    assert_eq!(streamed.status(), 200);
    let reply = rig
        .invoke(&get(Event::http(), "/stream/slow", "ms=100", Some(&cookie)))
        .await;
    assert_eq!(reply.body_bytes(), b"slow");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_near_the_6_mb_event_cap_reach_the_origin_whole() {
    let rig = Rig::start().await;
    let cookie = sign_in(&rig, "uploader").await;
    // 4.5 MB of binary is 6 MB of base64 in the event: about what Lambda
    // accepts (its 6 MB cap counts the whole event).
    let body = pattern_bytes(4_500_000);
    let upload = |event: Event| {
        event
            .method("POST")
            .path("/stream/upload")
            .header("content-type", "application/octet-stream")
            .base64_body(&body)
    };
    let streamed = rig.stream(&upload(Event::function_url())).await;
    assert_eq!(streamed.status(), 200);
    let answer = streamed.receive(Duration::from_secs(10)).await.json();
    assert_eq!(
        answer,
        json!({ "bytes": 4_500_000, "pattern_ok": true, "user": null })
    );
    let reply = rig.invoke(&upload(Event::rest()).cookie(&cookie)).await;
    assert_eq!(
        reply.body(),
        json!({ "bytes": 4_500_000, "pattern_ok": true, "user": "uploader" })
    );
    // SESSION_MAX_BODY_BYTES refuses an upload before the origin sees it.
    let limited = Rig::with(&[("SESSION_MAX_BODY_BYTES", "1048576")]).await;
    let streamed = limited.stream(&upload(Event::function_url())).await;
    assert_eq!(streamed.status(), 413);
    let reply = limited.invoke(&upload(Event::http())).await;
    assert_eq!(reply.status(), 413);
    assert_eq!(reply.body()["code"], json!("body_too_large"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prelude_has_every_cookie_and_one_string_per_header() {
    let rig = Rig::start().await;
    let instructions = json!({
        "login": "prelude",
        "raw": {
            "set-cookie": ["a=1; Path=/", "b=2; Path=/; HttpOnly"],
            "vary": ["accept", "x-foo"]
        }
    });
    for event in [Event::rest(), Event::function_url()] {
        let streamed = rig.stream(&event.instruct(&instructions)).await;
        assert_eq!(streamed.status(), 200);
        let keys: Vec<&String> = streamed.prelude.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["cookies", "headers", "statusCode"]);
        let cookies = streamed.cookies();
        assert_eq!(cookies.len(), 4, "{cookies:?}");
        assert_eq!(&cookies[..2], ["a=1; Path=/", "b=2; Path=/; HttpOnly"]);
        assert!(cookies[2].starts_with("__Host-session="));
        assert!(cookies[3].starts_with("__Host-session-sync="));
        // Every header one string (the helper panics on an array).
        let headers = streamed.headers();
        assert!(headers.iter().all(|(name, _)| name != "set-cookie"));
        assert!(
            headers
                .iter()
                .all(|(name, _)| !name.starts_with("x-session-"))
        );
        let vary = streamed.header("vary").unwrap();
        assert!(vary.starts_with("accept, x-foo"), "{vary}");
        let cookie = streamed.cookie();
        let body = streamed.receive(Duration::from_secs(5)).await;
        assert_eq!(body.json()["status"], json!(200));
        // The browser API streams too.
        let session = rig
            .stream(&Event::function_url().path("/_session").cookie(&cookie))
            .await;
        assert_eq!(session.status(), 200);
        let session = session.receive(Duration::from_secs(5)).await.json();
        assert_eq!(session["user"], json!("prelude"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_events_are_a_streamed_400() {
    let rig = Rig::start().await;
    let mut events: Vec<Value> = fixtures::MALFORMED
        .iter()
        .map(|(_, text)| serde_json::from_str(text).unwrap())
        .collect();
    events.extend([json!({}), json!([1]), Value::Null]);
    for event in events {
        let streamed = rig.stream_json(event.clone()).await;
        assert_eq!(streamed.status(), 400, "{event}");
        assert_eq!(
            streamed.header("content-type").as_deref(),
            Some("application/json")
        );
        let body: Received = streamed.receive(Duration::from_secs(5)).await;
        assert_eq!(body.json()["code"], json!("bad_request"), "{event}");
    }
    // ... and the function keeps serving.
    let streamed = rig.stream(&Event::cargo_lambda().path("/api/whoami")).await;
    assert_eq!(streamed.status(), 200);
}

#[test]
fn the_response_mode_comes_from_session_lambda_streaming() {
    let mode = |value: Option<&str>| {
        ResponseMode::from_lookup(|name| {
            assert_eq!(name, "SESSION_LAMBDA_STREAMING");
            value.map(str::to_owned)
        })
    };
    assert_eq!(mode(None).unwrap(), ResponseMode::Buffered);
    for value in ["", "false", "0", " Off "] {
        assert_eq!(
            mode(Some(value)).unwrap(),
            ResponseMode::Buffered,
            "{value}"
        );
    }
    for value in ["true", "1", "YES", "on"] {
        assert_eq!(
            mode(Some(value)).unwrap(),
            ResponseMode::Streaming,
            "{value}"
        );
    }
    let error = mode(Some("stream")).unwrap_err().to_string();
    assert!(error.contains("SESSION_LAMBDA_STREAMING"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_handshake_is_not_upgraded() {
    // A Lambda invocation is one request and one response: the upgrade
    // headers are removed, and the origin refuses a plain GET to its
    // WebSocket route instead of answering 101.
    let rig = Rig::start().await;
    let handshake = |event: Event| {
        get(event, "/stream/ws", "", None)
            .header("upgrade", "websocket")
            .header("connection", "Upgrade")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("sec-websocket-version", "13")
    };
    let streamed = rig.stream(&handshake(Event::function_url())).await;
    assert!(
        (400..500).contains(&streamed.status()),
        "{}",
        streamed.prelude
    );
    let reply = rig.invoke(&handshake(Event::http())).await;
    assert!((400..500).contains(&reply.status()), "{:?}", reply.json);
}
