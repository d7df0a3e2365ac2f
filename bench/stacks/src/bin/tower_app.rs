//! Stack 3: axum with `tower-sessions` and its Redis store
//! (`tower-sessions-redis-store`, on a fred pool), used the way its README
//! and examples show: the session is one serialized record under one key,
//! read on first access and written back whole when modified.

use axum::Router;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bench_stacks::{Login, env, exit_on_error, serve};
use tower_sessions::{Expiry, Session, SessionManagerLayer};
use tower_sessions_redis_store::RedisStore;
use tower_sessions_redis_store::fred::prelude::{ClientLike, Config, Pool};

#[tokio::main]
async fn main() {
    exit_on_error(run().await, "tower-app");
}

async fn run() -> Result<(), String> {
    let config = Config::from_url(&env("REDIS_URL")?).map_err(|e| e.to_string())?;
    // The pool size of the store's documentation example.
    let pool = Pool::new(config, None, None, None, 6).map_err(|e| e.to_string())?;
    let _connection = pool.connect();
    pool.wait_for_connect().await.map_err(|e| e.to_string())?;
    let layer = SessionManagerLayer::new(RedisStore::new(pool))
        .with_secure(false)
        .with_expiry(Expiry::OnInactivity(time::Duration::minutes(30)));
    let router = Router::new()
        .route("/anon", get(anon))
        .route("/login", post(login))
        .route("/incr", get(incr))
        .layer(layer);
    serve("tower-app", router).await
}

async fn anon() -> &'static str {
    "ok"
}

fn failure(e: impl std::fmt::Display) -> Response {
    eprintln!("tower-app: {e}");
    (StatusCode::SERVICE_UNAVAILABLE, "store error").into_response()
}

async fn login(session: Session, Query(q): Query<Login>) -> Response {
    // Regenerate the id on login (fixation defence), then bind the user.
    if let Err(e) = session.cycle_id().await {
        return failure(e);
    }
    match session.insert("user", q.user).await {
        Ok(()) => "ok".into_response(),
        Err(e) => failure(e),
    }
}

async fn incr(session: Session) -> Response {
    match session.get::<String>("user").await {
        Ok(Some(_)) => {}
        Ok(None) => return (StatusCode::UNAUTHORIZED, "sign in first").into_response(),
        Err(e) => return failure(e),
    }
    let counter = match session.get::<i64>("counter").await {
        Ok(value) => value.unwrap_or(0) + 1,
        Err(e) => return failure(e),
    };
    match session.insert("counter", counter).await {
        Ok(()) => counter.to_string().into_response(),
        Err(e) => failure(e),
    }
}
