//! Stack 6, the limit: a bare axum handler that makes exactly the Redis round
//! trip edge-session needs for each request, and nothing else: no cookie, no
//! signature, no session logic, no Lua.
//!
//! - `GET /anon`: no Redis call (edge-session makes none for a visitor
//!   without a cookie).
//! - `GET /incr`: one pipeline `HINCRBY` + `PEXPIRE` on one hash (the
//!   increment and the slide of edge-session's apply).
//! - `POST /login`: one pipeline `HSET` + `PEXPIRE` on a new hash with a
//!   random name (edge-session's create).
//!
//! The same multiplexed connection as edge-session's direct backend
//! (`redis::aio::ConnectionManager`).

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bench_stacks::{Login, env, exit_on_error, serve};
use redis::aio::ConnectionManager;

/// The hash every `/incr` increments (there is no session to pick another).
const COUNTER_KEY: &str = "limit:counter";
const IDLE_TTL_MS: u64 = 30 * 60 * 1000;

#[tokio::main]
async fn main() {
    exit_on_error(run().await, "limit-app");
}

async fn run() -> Result<(), String> {
    let client = redis::Client::open(env("REDIS_URL")?).map_err(|e| e.to_string())?;
    let connection = ConnectionManager::new(client)
        .await
        .map_err(|e| e.to_string())?;
    let router = Router::new()
        .route("/anon", get(anon))
        .route("/login", post(login))
        .route("/incr", get(incr))
        .with_state(connection);
    serve("limit-app", router).await
}

async fn anon() -> &'static str {
    "ok"
}

fn failure(e: &redis::RedisError) -> Response {
    eprintln!("limit-app: {e}");
    (StatusCode::SERVICE_UNAVAILABLE, "store error").into_response()
}

async fn incr(State(mut connection): State<ConnectionManager>) -> Response {
    let result: redis::RedisResult<(i64,)> = redis::pipe()
        .hincr(COUNTER_KEY, "counter", 1)
        .pexpire(COUNTER_KEY, IDLE_TTL_MS as i64)
        .ignore()
        .query_async(&mut connection)
        .await;
    match result {
        Ok((value,)) => value.to_string().into_response(),
        Err(e) => failure(&e),
    }
}

async fn login(
    State(mut connection): State<ConnectionManager>,
    Query(q): Query<Login>,
) -> Response {
    let mut id = [0u8; 32];
    if getrandom::fill(&mut id).is_err() {
        return (StatusCode::INTERNAL_SERVER_ERROR, "no randomness").into_response();
    }
    let key = format!("limit:s:{}", hex::encode(id));
    let result: redis::RedisResult<()> = redis::pipe()
        .hset(&key, "_user", q.user)
        .ignore()
        .pexpire(&key, IDLE_TTL_MS as i64)
        .ignore()
        .query_async(&mut connection)
        .await;
    match result {
        Ok(()) => "ok".into_response(),
        Err(e) => failure(&e),
    }
}
