//! Failures on either side, timeouts and the body limit while streaming:
//! every one ends in an answer or a cut-off body, never a hang.

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use bytes::Bytes;
use http_body_util::BodyExt as _;

use crate::support::{
    BoxError, Host, MIB, Origin, Redis, demo_origin, full, pattern_body, receive,
};

/// Within 10 s or the test fails: a hang is the bug these tests look for.
async fn soon<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .unwrap_or_else(|_| panic!("{what}: no end within 10 s"))
}

#[tokio::test]
async fn an_origin_dying_mid_body_ends_the_response_truncated() {
    const BYTES: u64 = MIB as u64;
    let redis = Redis::start().await;
    let host = Host::start(&demo_origin().await, &redis, &[]).await;
    let mut connection = host.connect().await;
    let request = connection
        .request(Method::GET, &format!("/stream/broken?bytes={BYTES}"), None)
        .body(full(""))
        .unwrap();
    let response = soon("the head", connection.stream(request)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-length"],
        (2 * BYTES).to_string()
    );
    let received = soon(
        "the body",
        receive(response.into_body(), Instant::now(), true),
    )
    .await;
    assert!(received.error.is_some(), "a clean end: {received:?}");
    assert!(
        received.bytes <= BYTES && received.pattern_ok,
        "{received:?}"
    );
    // The host is fine.
    assert_eq!(host.connect().await.get("/health", None).await.body, "ok");
}

#[tokio::test]
async fn a_slow_origin_is_a_504_but_a_slow_upload_is_not() {
    let redis = Redis::start().await;
    let host = Host::start(
        &demo_origin().await,
        &redis,
        &[("SESSION_ORIGIN_TIMEOUT_MS", "300")],
    )
    .await;
    let mut connection = host.connect().await;
    let started = Instant::now();
    let answer = soon("/stream/slow", connection.get("/stream/slow?ms=2000", None)).await;
    let elapsed = started.elapsed();
    assert_eq!(
        answer.status,
        StatusCode::GATEWAY_TIMEOUT,
        "{}",
        answer.body
    );
    assert_eq!(answer.json()["code"], "origin_timeout");
    assert!(
        elapsed < Duration::from_millis(2000),
        "answered after {elapsed:?}"
    );
    // An origin within the timeout is fine.
    let answer = connection.get("/stream/slow?ms=10", None).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::OK, "slow")
    );

    // An upload of 8 chunks 150 ms apart takes over 1 s, more than the
    // timeout: the timeout counts from its end.
    const BYTES: u64 = 8 * 256 * 1024;
    let mut connection = host.connect().await;
    let request = connection
        .request(Method::POST, "/stream/upload", None)
        .body(pattern_body(BYTES, Some(Duration::from_millis(150))))
        .unwrap();
    let started = Instant::now();
    let response = soon("the slow upload", connection.stream(request))
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(response.status(), StatusCode::OK);
    let seen: serde_json::Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(
        (&seen["bytes"], &seen["pattern_ok"]),
        (&BYTES.into(), &true.into())
    );
    assert!(elapsed >= Duration::from_millis(1050), "{elapsed:?}");
}

#[tokio::test]
async fn streamed_bodies_over_the_limit_are_cut_off() {
    let redis = Redis::start().await;
    let origin = Origin::start().await;
    let limit = MIB.to_string();
    let host = Host::start(&origin.url, &redis, &[("SESSION_MAX_BODY_BYTES", &limit)]).await;

    // A chunked upload under the limit goes through.
    let mut connection = host.connect().await;
    let request = connection
        .request(Method::POST, "/record", None)
        .body(pattern_body(MIB as u64, None))
        .unwrap();
    let response = connection.stream(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let upload = origin.upload().await;
    assert_eq!((upload.bytes, upload.complete), (MIB as u64, true));

    // Over it: the origin's request is aborted, the client refused.
    let mut connection = host.connect().await;
    let request = connection
        .request(Method::POST, "/record", None)
        .body(pattern_body(4 * MIB as u64, None))
        .unwrap();
    // The host reads the rest of the upload and throws it away, so the
    // client gets to read its answer.
    let response = soon("the refused upload", connection.stream(request))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error["code"], "body_too_large", "{error}");
    let upload = origin.upload().await;
    assert!(!upload.complete && upload.bytes <= MIB as u64, "{upload:?}");

    // A chunked download over it is cut off at the limit.
    let mut connection = host.connect().await;
    let path = format!("/bulk?bytes={}&chunked=1", 4 * MIB);
    let request = connection
        .request(Method::GET, &path, None)
        .body(full(""))
        .unwrap();
    let response = soon("the head", connection.stream(request)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let received = soon(
        "the body",
        receive(response.into_body(), Instant::now(), false),
    )
    .await;
    assert!(received.error.is_some(), "{received:?}");
    assert!(received.bytes <= MIB as u64, "{received:?}");

    // One with a Content-Length over it is refused before its body.
    let answer = host
        .connect()
        .await
        .get(&format!("/bulk?bytes={}", MIB + 1), None)
        .await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert_eq!(answer.json()["code"], "origin_response_too_large");
}

#[tokio::test]
async fn a_client_aborting_its_upload_aborts_the_origin_request() {
    let redis = Redis::start().await;
    let origin = Origin::start().await;
    let host = Host::start(&origin.url, &redis, &[]).await;
    let mut connection = host.connect().await;
    let (mut sender, body) = http_body_util::channel::Channel::<Bytes, BoxError>::new(1);
    let request = connection
        .request(Method::POST, "/record", None)
        .body(body.boxed())
        .unwrap();
    let in_flight = tokio::spawn(async move { connection.stream(request).await });
    for _ in 0..4 {
        sender
            .send_data(Bytes::from(vec![1u8; 64 * 1024]))
            .await
            .unwrap();
    }
    // The request is at the origin, its body not over (an abort before the
    // client's buffered bytes leave would never reach the origin at all).
    soon(
        "the request at the origin",
        origin.record_started.notified(),
    )
    .await;
    sender.abort("the client gives up".into());
    let upload = origin.upload().await;
    assert!(!upload.complete, "{upload:?}");
    assert!(upload.bytes <= 4 * 64 * 1024, "{upload:?}");
    assert!(soon("the client", in_flight).await.unwrap().is_err());
}

#[tokio::test]
async fn an_origin_that_is_down_is_a_502_and_one_that_does_not_accept_a_504() {
    let redis = Redis::start().await;
    // Nothing listens there; an https origin that speaks plain HTTP fails
    // its TLS handshake.
    let closed = format!("http://127.0.0.1:{}", crate::support::free_port());
    let plain = demo_origin().await.replace("http://", "https://");
    for origin in [closed, plain] {
        let host = Host::start(&origin, &redis, &[]).await;
        let answer = soon("down", host.connect().await.get("/", None)).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_GATEWAY,
            "{origin}: {}",
            answer.body
        );
        assert_eq!(answer.json()["code"], "origin_unavailable", "{origin}");
    }

    // A listener that never accepts and whose backlog is full: the
    // kernel drops further SYNs, so a connect hangs until its timeout.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let full_backlog = socket.listen(1).unwrap();
    let address = full_backlog.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        let connect = tokio::net::TcpStream::connect(address);
        match tokio::time::timeout(Duration::from_millis(200), connect).await {
            Ok(Ok(stream)) => fillers.push(stream),
            _ => break,
        }
    }
    let host = Host::start(
        &format!("http://{address}"),
        &redis,
        &[("SESSION_ORIGIN_CONNECT_TIMEOUT_MS", "300")],
    )
    .await;
    let started = Instant::now();
    let answer = soon("not accepting", host.connect().await.get("/", None)).await;
    let elapsed = started.elapsed();
    assert_eq!(
        answer.status,
        StatusCode::GATEWAY_TIMEOUT,
        "{}",
        answer.body
    );
    assert_eq!(answer.json()["code"], "origin_timeout");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    drop((fillers, full_backlog));
}
