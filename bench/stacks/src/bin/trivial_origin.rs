//! The trivial origin of stack 5: behind `edge-session-host` it drives the
//! session with `x-session-*` response headers; measured alone as well, to
//! show what the gateway adds.
//!
//! - `GET /anon`: `ok`.
//! - `GET /incr`: `x-session-incr: {"counter":1}`, answering the new value as
//!   the gateway exposes it: the `counter` of `x-session-data` (the session
//!   as loaded before the origin) plus one. Alone (no session headers) it
//!   answers 1.
//! - `POST /login?user=NAME`: `x-session-login: NAME`, answers `ok`.

use axum::Router;
use axum::extract::Query;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use bench_stacks::{Login, exit_on_error, serve};

#[tokio::main]
async fn main() {
    let router = Router::new()
        .route("/anon", get(anon))
        .route("/login", post(login))
        .route("/incr", get(incr));
    exit_on_error(serve("trivial-origin", router).await, "trivial-origin");
}

async fn anon() -> &'static str {
    "ok"
}

async fn incr(headers: HeaderMap) -> impl IntoResponse {
    let before = headers
        .get("x-session-data")
        .and_then(|v| v.to_str().ok())
        .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
        .and_then(|data| data.get("counter").and_then(serde_json::Value::as_i64))
        .unwrap_or(0);
    (
        [("x-session-incr", r#"{"counter":1}"#)],
        (before + 1).to_string(),
    )
}

async fn login(Query(q): Query<Login>) -> impl IntoResponse {
    ([("x-session-login", q.user)], "ok")
}
