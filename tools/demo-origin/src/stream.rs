//! Streaming routes, to show (and test) that the gateway streams bodies both ways:
//!
//! | route | answer |
//! |---|---|
//! | `GET /stream/sse?n=10&every_ms=300` | `text/event-stream`: `n` events `data: {"i":i,"user":...}`, one every `every_ms` |
//! | `GET /stream/download?bytes=N[&chunked=1][&every_ms=M][&instruct=1]` | `N` bytes of [`pattern`] in 64 KiB chunks (one every `M` ms), with `Content-Length` unless `chunked`; `instruct=1` adds `x-session-incr: {"downloads":1}` |
//! | `POST /stream/upload` | reads the body as it arrives: `{"bytes": n, "pattern_ok": bool, "user": ...}` |
//! | `GET /stream/ws` | a WebSocket that first sends `{"user": ...}` (the `x-session-user` it saw), then echoes every message |
//! | `GET /stream/broken?bytes=N` | declares `2N` bytes, sends `N`, then drops the connection |
//! | `GET /stream/slow?ms=N` | waits `N` ms before its response head |

use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt as _;
use serde::Deserialize;
use serde_json::json;

/// Size of one chunk of `/stream/download`.
pub const CHUNK_BYTES: usize = 64 * 1024;

/// The byte at offset `i` of every streamed body: `i % 251`, so a reordered,
/// repeated or lost chunk shows.
pub fn pattern(i: u64) -> u8 {
    (i % 251) as u8
}

/// The streaming routes, to merge into the app.
pub(crate) fn routes() -> Router {
    Router::new()
        .route("/stream/sse", get(sse))
        .route("/stream/download", get(download))
        .route("/stream/upload", post(upload))
        .route("/stream/ws", get(ws))
        .route("/stream/broken", get(broken))
        .route("/stream/slow", get(slow))
}

fn user(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-session-user")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[derive(Deserialize)]
struct SseQuery {
    n: Option<u32>,
    every_ms: Option<u64>,
}

async fn sse(headers: HeaderMap, Query(q): Query<SseQuery>) -> Response {
    let (n, every) = (
        q.n.unwrap_or(10),
        Duration::from_millis(q.every_ms.unwrap_or(300)),
    );
    let user = user(&headers);
    let events = futures_util::stream::unfold(0u32, move |i| {
        let user = user.clone();
        async move {
            if i >= n {
                return None;
            }
            if i > 0 {
                tokio::time::sleep(every).await;
            }
            let event = format!("data: {}\n\n", json!({ "i": i, "user": user }));
            Some((Ok::<_, std::io::Error>(Bytes::from(event)), i + 1))
        }
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(events),
    )
        .into_response()
}

#[derive(Deserialize)]
struct DownloadQuery {
    bytes: u64,
    chunked: Option<u8>,
    every_ms: Option<u64>,
    instruct: Option<u8>,
}

/// `total` bytes of [`pattern`] from offset 0, in [`CHUNK_BYTES`] chunks, one every `every`.
fn pattern_stream(
    total: u64,
    every: Option<Duration>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::unfold(0u64, move |offset| async move {
        if offset >= total {
            return None;
        }
        if let Some(every) = every.filter(|_| offset > 0) {
            tokio::time::sleep(every).await;
        }
        let len = (total - offset).min(CHUNK_BYTES as u64);
        let chunk: Vec<u8> = (offset..offset + len).map(pattern).collect();
        Some((Ok(Bytes::from(chunk)), offset + len))
    })
}

async fn download(Query(q): Query<DownloadQuery>) -> Response {
    let every = q.every_ms.map(Duration::from_millis);
    let mut response = Body::from_stream(pattern_stream(q.bytes, every)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if q.chunked != Some(1) {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(q.bytes));
    }
    if q.instruct == Some(1) {
        headers.insert(
            "x-session-incr",
            HeaderValue::from_static(r#"{"downloads":1}"#),
        );
    }
    response
}

async fn upload(request: Request) -> Response {
    let user = user(request.headers());
    let mut body = request.into_body().into_data_stream();
    let (mut bytes, mut pattern_ok) = (0u64, true);
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else {
            return (StatusCode::BAD_REQUEST, "the upload was cut off").into_response();
        };
        pattern_ok &= chunk
            .iter()
            .enumerate()
            .all(|(k, b)| *b == pattern(bytes + k as u64));
        bytes += chunk.len() as u64;
    }
    axum::Json(json!({ "bytes": bytes, "pattern_ok": pattern_ok, "user": user })).into_response()
}

async fn ws(headers: HeaderMap, upgrade: WebSocketUpgrade) -> Response {
    let user = user(&headers);
    upgrade.on_upgrade(move |socket| echo(socket, user))
}

async fn echo(mut socket: WebSocket, user: Option<String>) {
    let hello = json!({ "user": user }).to_string();
    if socket.send(Message::Text(hello.into())).await.is_err() {
        return;
    }
    while let Some(Ok(message)) = socket.recv().await {
        let reply = match message {
            Message::Text(_) | Message::Binary(_) => message,
            Message::Close(_) => break,
            _ => continue,
        };
        if socket.send(reply).await.is_err() {
            break;
        }
    }
}

#[derive(Deserialize)]
struct BrokenQuery {
    bytes: u64,
}

async fn broken(Query(q): Query<BrokenQuery>) -> Response {
    let sent = pattern_stream(q.bytes, None).chain(futures_util::stream::once(async {
        Err(std::io::Error::other("the demo origin dies mid-body"))
    }));
    let mut response = Body::from_stream(sent).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(q.bytes * 2));
    response
}

#[derive(Deserialize)]
struct SlowQuery {
    ms: u64,
}

async fn slow(Query(q): Query<SlowQuery>) -> &'static str {
    tokio::time::sleep(Duration::from_millis(q.ms)).await;
    "slow"
}
