//! Sessions inside a Worker of your own: load the session from the cookie,
//! read and change fields, commit, and send the cookie back.
//!
//! Build and run it like the gateway Worker (`worker-build`), with the same
//! vars and secrets (`SESSION_SECRETS`, `UPSTASH_REDIS_REST_URL`,
//! `UPSTASH_REDIS_REST_TOKEN`).
//!
//! - `GET /` counts your visits in the session.
//! - `POST /login?user=NAME` signs you in (the session is regenerated, data kept).
//! - `POST /logout` signs you out.

#![forbid(unsafe_code)]
// A Worker only exists on wasm32.
#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::rc::Rc;

use edge_session::backend::RestBackend;
use edge_session::{ClientInfo, Logout, SessionStore};
use worker::{Context, Env, Method, Request, Response, event};

thread_local! {
    /// Built once per isolate.
    static STORE: RefCell<Option<Rc<SessionStore<RestBackend>>>> = const { RefCell::new(None) };
}

fn store(env: &Env) -> worker::Result<Rc<SessionStore<RestBackend>>> {
    if let Some(store) = STORE.with(|s| s.borrow().clone()) {
        return Ok(store);
    }
    let settings =
        edge_session_worker::settings(env).map_err(|e| worker::Error::RustError(e.to_string()))?;
    let store = Rc::new(
        edge_session_worker::store(settings)
            .map_err(|e| worker::Error::RustError(e.to_string()))?,
    );
    STORE.with(|s| *s.borrow_mut() = Some(Rc::clone(&store)));
    Ok(store)
}

#[event(fetch)]
async fn fetch(request: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    let store = store(&env)?;
    let cookie = request.headers().get("cookie")?;
    let client = ClientInfo::with_user_agent(request.headers().get("user-agent")?.as_deref());
    let failed = |e: edge_session::Error| worker::Error::RustError(e.to_string());

    // No cookie or a bad one: no Redis call. Otherwise one round trip.
    let mut session = store
        .begin(cookie.as_deref(), client)
        .await
        .map_err(failed)?;
    let url = request.url()?;
    let body = match (request.method(), url.path()) {
        (Method::Get, "/") => {
            let visits: i64 = session.get("visits").map_err(failed)?.unwrap_or(0) + 1;
            session.changes().incr("visits", 1).map_err(failed)?;
            serde_json::json!({ "user": session.user(), "visits": visits })
        }
        (Method::Post, "/login") => {
            let user = url
                .query_pairs()
                .find(|(k, _)| k == "user")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            session.login(user.clone());
            serde_json::json!({ "signed_in": user })
        }
        (Method::Post, "/logout") => {
            session.logout(Logout::Current);
            serde_json::json!({ "signed_out": true })
        }
        _ => return Response::error("not found", 404),
    };
    // One round trip for the changes; none if nothing changed.
    let commit = store.commit(session).await.map_err(failed)?;
    let mut response = Response::from_json(&body)?;
    if let Some(set_cookie) = commit.set_cookie {
        response.headers_mut().append("set-cookie", &set_cookie)?;
    }
    Ok(response)
}
