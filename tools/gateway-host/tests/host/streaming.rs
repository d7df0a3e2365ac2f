//! Bodies stream through the host both ways, for an anonymous and a
//! signed-in visitor, in front of the demo origin's streaming routes; a
//! WebSocket is bridged.

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use futures_util::{SinkExt as _, StreamExt as _};
use http_body::Body as _;
use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{ClientRequestBuilder, Message};

use crate::support::{
    Host, MIB, Received, Redis, demo_origin, full, pattern_body, receive, session_cookie, visitors,
};

#[tokio::test]
async fn server_sent_events_arrive_as_the_origin_sends_them() {
    let redis = Redis::start().await;
    let host = Host::start(&demo_origin().await, &redis, &[]).await;
    for (visitor, cookie, user) in visitors(&host).await {
        let mut connection = host.connect().await;
        let started = Instant::now();
        let request = connection
            .request(
                Method::GET,
                "/stream/sse?n=10&every_ms=300",
                cookie.as_deref(),
            )
            .body(full(""))
            .unwrap();
        let response = connection.stream(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{visitor}");
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let mut body = response.into_body();
        let mut text = String::new();
        while !text.contains("\n\n") {
            let frame = body.frame().await.expect("an event").unwrap();
            text.push_str(std::str::from_utf8(&frame.into_data().unwrap()).unwrap());
        }
        let first = started.elapsed();
        assert!(
            first < Duration::from_secs(1),
            "{visitor}: first event after {first:?}"
        );
        assert!(!body.is_end_stream(), "{visitor}: the stream is still open");
        while let Some(frame) = body.frame().await {
            text.push_str(std::str::from_utf8(&frame.unwrap().into_data().unwrap()).unwrap());
        }
        let last = started.elapsed();
        let events: Vec<serde_json::Value> = text
            .split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
            .collect();
        assert_eq!(events.len(), 10, "{visitor}: {text}");
        for (i, event) in events.iter().enumerate() {
            assert_eq!(event["i"], i, "{visitor}");
            assert_eq!(event["user"], user, "{visitor}");
        }
        // The origin paces them 300 ms apart: nine gaps after the first.
        assert!(
            last - first >= Duration::from_millis(2500),
            "{visitor}: events not paced ({first:?} .. {last:?})"
        );
        eprintln!("{visitor}: first event after {first:?}, last after {last:?}");
    }
}

/// Downloads `path` (the demo origin's pattern, `bytes` long) on a new
/// connection to `addr`, checking every byte.
async fn download(addr: &str, path: &str, cookie: Option<&str>, bytes: u64) -> Received {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut request = axum::http::Request::get(path).header("host", addr);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let started = Instant::now();
    let response = sender
        .send_request(request.body(full("")).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-length"], bytes.to_string());
    let received = receive(response.into_body(), started, true).await;
    assert!(received.error.is_none(), "{received:?}");
    assert_eq!(received.bytes, bytes);
    assert!(received.pattern_ok, "the bytes are not the origin's");
    received
}

#[tokio::test]
async fn a_64_mib_download_arrives_whole_its_first_byte_long_before_its_last() {
    const BYTES: u64 = 64 * MIB as u64;
    let redis = Redis::start().await;
    let origin = demo_origin().await;
    let host = Host::start(&origin, &redis, &[]).await;
    let addr = host.addr.to_string();
    // 1024 chunks of 64 KiB at least 1 ms apart: the origin takes over a
    // second to send it all, which a buffering proxy would wait for.
    let paced = format!("/stream/download?bytes={BYTES}&every_ms=1");
    for (visitor, cookie, _) in visitors(&host).await {
        let received = download(&addr, &paced, cookie.as_deref(), BYTES).await;
        let first = received.first.unwrap();
        assert!(
            first * 2 < received.last,
            "{visitor}: first byte after {first:?}, last after {:?}: buffered?",
            received.last
        );
        eprintln!(
            "{visitor}: 64 MiB (paced) through the host: first byte {first:?}, last {:?}",
            received.last
        );
    }
    // As fast as it goes, through the host and from the origin alone
    // (figures printed with --nocapture).
    let fast = format!("/stream/download?bytes={BYTES}");
    let through = download(&addr, &fast, None, BYTES).await;
    let alone = download(origin.strip_prefix("http://").unwrap(), &fast, None, BYTES).await;
    eprintln!(
        "64 MiB through the host: first byte {:?}, last {:?}; from the origin alone: {:?}, {:?}",
        through.first.unwrap(),
        through.last,
        alone.first.unwrap(),
        alone.last
    );
}

#[tokio::test]
async fn a_48_mib_upload_reaches_the_origin_whole() {
    const BYTES: u64 = 48 * MIB as u64;
    let redis = Redis::start().await;
    let host = Host::start(&demo_origin().await, &redis, &[]).await;
    for (visitor, cookie, user) in visitors(&host).await {
        // Chunked, then with a Content-Length.
        for declared in [false, true] {
            let mut connection = host.connect().await;
            let mut request = connection.request(Method::POST, "/stream/upload", cookie.as_deref());
            if declared {
                request = request.header("content-length", BYTES);
            }
            let request = request.body(pattern_body(BYTES, None)).unwrap();
            let started = Instant::now();
            let response = connection.stream(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{visitor}");
            let body = response.into_body().collect().await.unwrap().to_bytes();
            let seen: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(seen["bytes"], BYTES, "{visitor} {declared}: {seen}");
            assert_eq!(seen["pattern_ok"], true, "{visitor} {declared}: {seen}");
            assert_eq!(seen["user"], user, "{visitor} {declared}: {seen}");
            eprintln!(
                "{visitor}: 48 MiB upload (content-length: {declared}) in {:?}",
                started.elapsed()
            );
        }
    }
}

#[tokio::test]
async fn an_instruction_on_a_streamed_response_is_applied_and_never_reaches_the_client() {
    const BYTES: u64 = 16 * MIB as u64;
    let redis = Redis::start().await;
    let host = Host::start(&demo_origin().await, &redis, &[]).await;
    let path = format!("/stream/download?bytes={BYTES}&instruct=1");
    for (visitor, mut cookie, user) in visitors(&host).await {
        for downloads in 1..=2 {
            let mut connection = host.connect().await;
            let request = connection
                .request(Method::GET, &path, cookie.as_deref())
                .body(full(""))
                .unwrap();
            let response = connection.stream(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{visitor}");
            assert!(
                !response.headers().contains_key("x-session-incr"),
                "{visitor}: the instruction reached the client"
            );
            if let Some(set) = session_cookie(response.headers()) {
                cookie = Some(set);
            }
            let received = receive(response.into_body(), Instant::now(), true).await;
            assert!(received.error.is_none(), "{visitor}: {received:?}");
            assert_eq!(received.bytes, BYTES, "{visitor}");
            assert!(received.pattern_ok, "{visitor}");

            let cookie = cookie.as_deref().expect("a session after the instruction");
            let whoami = connection.get("/api/whoami", Some(cookie)).await.json();
            assert_eq!(
                whoami["data"]["downloads"], downloads,
                "{visitor}: {whoami}"
            );
            assert_eq!(whoami["user"], user, "{visitor}: {whoami}");
        }
    }
}

#[tokio::test]
async fn a_websocket_is_bridged_and_its_origin_sees_the_user() {
    let redis = Redis::start().await;
    let host = Host::start(&demo_origin().await, &redis, &[]).await;
    for (visitor, cookie, user) in visitors(&host).await {
        let uri = format!("ws://{}/stream/ws", host.addr).parse().unwrap();
        let mut request = ClientRequestBuilder::new(uri);
        if let Some(cookie) = &cookie {
            request = request.with_header("Cookie", cookie);
        }
        let stream = TcpStream::connect(host.addr).await.unwrap();
        let (mut socket, response) = tokio_tungstenite::client_async(request, stream)
            .await
            .unwrap_or_else(|e| panic!("{visitor}: handshake: {e}"));
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert!(
            !response
                .headers()
                .keys()
                .any(|name| name.as_str().starts_with("x-session-")),
            "{visitor}: {:?}",
            response.headers()
        );
        let next = async |socket: &mut tokio_tungstenite::WebSocketStream<TcpStream>| {
            tokio::time::timeout(Duration::from_secs(10), socket.next())
                .await
                .expect("a message within 10 s")
                .expect("an open socket")
                .unwrap()
        };
        let hello: serde_json::Value =
            serde_json::from_str(next(&mut socket).await.to_text().unwrap()).unwrap();
        assert_eq!(hello["user"], user, "{visitor}: {hello}");
        for text in ["one", "two"] {
            socket.send(Message::text(text)).await.unwrap();
            assert_eq!(next(&mut socket).await, Message::text(text), "{visitor}");
        }
        let binary = vec![0u8, 1, 2, 255];
        socket.send(Message::binary(binary.clone())).await.unwrap();
        assert_eq!(next(&mut socket).await, Message::binary(binary));
        socket.close(None).await.unwrap();
    }
}
