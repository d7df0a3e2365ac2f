//! Stacks 1 and 2: an axum app using edge-session as a library. The backend
//! comes from the environment like everywhere else (`REDIS_URL` for the
//! direct backend, `UPSTASH_REDIS_REST_URL`/`TOKEN` for REST), with
//! `SESSION_SECRETS` and the other `SESSION_*` settings.
//!
//! `GET /incr` is written the way a user of the library reads and increments
//! one field: verify the cookie (no Redis call), then one
//! [`SessionStore::apply`] with an increment, which checks that the session
//! is alive, increments, slides the expiry and returns the new value: one
//! round trip. `POST /login` uses the request flow (`begin`, `login`,
//! `commit`): no round trip to begin without a cookie, one to log in.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bench_stacks::{Login, exit_on_error, serve};
use edge_session::{AnyBackend, Changes, ClientInfo, Error, SessionStore, Settings};

type Store = Arc<SessionStore<AnyBackend>>;

#[tokio::main]
async fn main() {
    exit_on_error(run().await, "es-app");
}

async fn run() -> Result<(), String> {
    let settings = Settings::from_env().map_err(|e| e.to_string())?;
    let backend = settings
        .backend
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let store =
        SessionStore::new(backend, settings.session, settings.keys).map_err(|e| e.to_string())?;
    store.preload_scripts().await.map_err(|e| e.to_string())?;
    let router = Router::new()
        .route("/anon", get(anon))
        .route("/login", post(login))
        .route("/incr", get(incr))
        .with_state(Arc::new(store));
    serve("es-app", router).await
}

async fn anon() -> &'static str {
    "ok"
}

fn cookie_header(headers: &HeaderMap) -> Option<&str> {
    headers.get(COOKIE).and_then(|v| v.to_str().ok())
}

fn failure(e: &Error) -> Response {
    eprintln!("es-app: {e}");
    (StatusCode::SERVICE_UNAVAILABLE, "store error").into_response()
}

async fn login(State(store): State<Store>, Query(q): Query<Login>, headers: HeaderMap) -> Response {
    let mut request = match store
        .begin(cookie_header(&headers), ClientInfo::default())
        .await
    {
        Ok(request) => request,
        Err(e) => return failure(&e),
    };
    request.login(q.user);
    match store.commit(request).await {
        Ok(commit) => {
            let mut response = "ok".into_response();
            for value in [commit.set_cookie, commit.sync_cookie]
                .into_iter()
                .flatten()
            {
                if let Ok(value) = value.parse() {
                    response.headers_mut().append(SET_COOKIE, value);
                }
            }
            response
        }
        Err(e) => failure(&e),
    }
}

async fn incr(State(store): State<Store>, headers: HeaderMap) -> Response {
    let Some(verified) = cookie_header(&headers).and_then(|h| store.cookies().from_header(h))
    else {
        return (StatusCode::UNAUTHORIZED, "sign in first").into_response();
    };
    let mut changes = Changes::new();
    if let Err(e) = changes.incr("counter", 1) {
        return failure(&e);
    }
    match store.apply(&verified.token, &changes).await {
        Ok(applied) => {
            let value = applied.increments.first().copied().unwrap_or_default();
            let mut response = value.to_string().into_response();
            if verified.needs_resign {
                let secs = applied.now.until(applied.absolute_expiry).as_secs();
                if let Ok(v) = store.cookies().set_cookie(&verified.token, secs).parse() {
                    response.headers_mut().insert(SET_COOKIE, v);
                }
            }
            response
        }
        Err(Error::SessionGone) => (StatusCode::UNAUTHORIZED, "session expired").into_response(),
        Err(e) => failure(&e),
    }
}
