//! A small web app to put behind the edge-session gateway. It keeps no state of its own: it reads
//! the session from the request headers the gateway adds (`x-session-id`, `x-session-user`,
//! `x-session-data`) and changes it with response headers the gateway applies and strips
//! (`x-session-set`, `x-session-incr`, `x-session-login`, `x-session-logout`).
//!
//! Pages: `/` (sign in, counter, cart), `/devices` (sessions of the signed-in user, through the
//! gateway's `/_session` API). Form posts: `/login`, `/logout`, `/counter`, `/cart/add`,
//! `/cart/clear`. For tests and benchmarks: `/api/whoami`, `/api/instruct`, `/incr`, `/health`,
//! `/static/hello.txt`. Streaming (server-sent events, large downloads and uploads, a WebSocket
//! echo, an origin that dies mid-body or answers slowly): [`stream`].
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! println!("listening on http://{}", listener.local_addr()?);
//! demo_origin::serve(listener).await
//! # }
//! ```
//!
//! This is a demo: anyone can sign in under any name, and `/api/instruct` answers with whatever
//! headers it is asked for. Never expose it as a real application.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod api;
mod instruct;
mod pages;
mod session;
pub mod stream;

use std::future::Future;
use std::io;

use axum::Router;
use axum::extract::{Form, Request};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::instruct::Instructions;
use crate::session::SessionView;

/// Longest user id accepted by the sign-in form, in characters (after trimming).
pub const MAX_USER_CHARS: usize = 64;
/// Longest cart item, in characters (after trimming).
pub const MAX_ITEM_CHARS: usize = 100;
/// Most items a cart may hold.
pub const MAX_CART_ITEMS: usize = 50;
/// Largest cart, as the ASCII JSON of its `x-session-set`: well under the store's default
/// per-field limit (16 KiB) and the gateway's `x-session-data` limit (16 KiB).
pub const MAX_CART_JSON_BYTES: usize = 8 * 1024;

/// The whole app. Stateless: build it as often as you like.
pub fn router() -> Router {
    Router::new()
        .route("/", get(home))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/counter", post(counter))
        .route("/cart/add", post(cart_add))
        .route("/cart/clear", post(cart_clear))
        .route("/devices", get(devices))
        .route("/api/whoami", get(api::whoami))
        .route("/api/instruct", post(api::instruct))
        .route("/incr", get(incr))
        .route("/health", get(|| async { "ok" }))
        .route("/static/hello.txt", get(|| async { "hello" }))
        .merge(stream::routes())
        .fallback(not_found)
        .layer(middleware::from_fn(refuse_cross_site))
}

/// Serves [`router`] on `listener` until the process ends.
pub async fn serve(listener: TcpListener) -> io::Result<()> {
    axum::serve(listener, router()).await
}

/// Serves [`router`] on `listener` until `shutdown` resolves, then finishes the requests in
/// flight and returns.
pub async fn serve_with_shutdown<F>(listener: TcpListener, shutdown: F) -> io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    axum::serve(listener, router())
        .with_graceful_shutdown(shutdown)
        .await
}

/// Refuses state-changing requests a browser marks as coming from another site (login CSRF,
/// cross-site posts to `/api/instruct`). Requests without `Sec-Fetch-Site` (non-browser
/// clients, old browsers) pass.
async fn refuse_cross_site(request: Request, next: Next) -> Response {
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let site = request
        .headers()
        .get("sec-fetch-site")
        .map(HeaderValue::as_bytes);
    if !safe && !matches!(site, None | Some(b"same-origin" | b"none")) {
        return page(
            StatusCode::FORBIDDEN,
            pages::message("Refused", "This form can only be sent from this site."),
        );
    }
    next.run(request).await
}

/// An HTML response that no cache keeps (it shows one visitor's session).
fn page(status: StatusCode, html: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

/// `303 See Other` to `/` carrying the instructions.
fn back_home(instructions: &Instructions) -> Response {
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for (name, value) in instructions.headers() {
        headers.append(name, value.clone());
    }
    response
}

fn unprocessable(title: &str, text: &str) -> Response {
    page(
        StatusCode::UNPROCESSABLE_ENTITY,
        pages::message(title, text),
    )
}

async fn home(headers: HeaderMap) -> Response {
    page(
        StatusCode::OK,
        pages::home(&SessionView::from_headers(&headers)),
    )
}

async fn devices(headers: HeaderMap) -> Response {
    page(
        StatusCode::OK,
        pages::devices(&SessionView::from_headers(&headers)),
    )
}

async fn not_found() -> Response {
    page(
        StatusCode::NOT_FOUND,
        pages::message("Not found", "There is no page here."),
    )
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    #[serde(default)]
    username: String,
}

/// Trimmed text of 1..=`max` characters without control characters.
fn valid_text(text: &str, max: usize) -> Option<&str> {
    let text = text.trim();
    let chars = text.chars().count();
    (1..=max)
        .contains(&chars)
        .then_some(text)
        .filter(|text| !text.chars().any(char::is_control))
}

async fn login(Form(form): Form<LoginForm>) -> Response {
    let Some(user) = valid_text(&form.username, MAX_USER_CHARS) else {
        return unprocessable(
            "Cannot sign in",
            &format!(
                "A username has 1 to {MAX_USER_CHARS} characters, without control characters."
            ),
        );
    };
    match Instructions::default().login(user) {
        Ok(instructions) => back_home(&instructions),
        Err(_) => unprocessable(
            "Cannot sign in",
            "This username cannot be sent to the gateway.",
        ),
    }
}

async fn logout() -> Response {
    match Instructions::default().logout("current") {
        Ok(instructions) => back_home(&instructions),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn counter() -> Response {
    back_home(&Instructions::default().incr(&json!({ "counter": 1 })))
}

#[derive(Debug, Deserialize)]
struct CartForm {
    #[serde(default)]
    item: String,
}

async fn cart_add(headers: HeaderMap, Form(form): Form<CartForm>) -> Response {
    let Some(item) = valid_text(&form.item, MAX_ITEM_CHARS) else {
        return unprocessable(
            "Cannot add this item",
            &format!("An item has 1 to {MAX_ITEM_CHARS} characters, without control characters."),
        );
    };
    let session = SessionView::from_headers(&headers);
    if session.data_omitted {
        // Writing a cart built from nothing would drop the one the gateway could not send.
        return unprocessable(
            "Cannot add this item",
            "The session data is too large to read here. Clear the cart first.",
        );
    }
    let mut cart = session.cart();
    if cart.len() >= MAX_CART_ITEMS {
        return unprocessable(
            "Cannot add this item",
            &format!("The cart holds at most {MAX_CART_ITEMS} items."),
        );
    }
    cart.push(Value::String(item.to_owned()));
    let set = json!({ "cart": cart });
    if instruct::ascii_json(&set).len() > MAX_CART_JSON_BYTES {
        return unprocessable(
            "Cannot add this item",
            &format!("The cart would take more than {MAX_CART_JSON_BYTES} bytes of JSON."),
        );
    }
    back_home(&Instructions::default().set(&set))
}

async fn cart_clear() -> Response {
    back_home(&Instructions::default().set(&json!({ "cart": null })))
}

async fn incr() -> Response {
    let instructions = Instructions::default().incr(&json!({ "n": 1 }));
    let mut response = "ok".into_response();
    for (name, value) in instructions.headers() {
        response.headers_mut().append(name, value.clone());
    }
    response
}
