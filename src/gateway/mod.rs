//! The HTTP-level session gateway shared by every packaging (Cloudflare
//! Worker, AWS Lambda, a native host). It reads and changes headers only:
//! request and response bodies stream through untouched (server-sent events,
//! downloads, uploads, WebSocket upgrades).
//!
//! Two ways to drive it:
//!
//! - [`Gateway::prepare`] on the request head, send the rewritten head to the
//!   origin with the client's body, then [`Gateway::finish`] on the origin's
//!   response head and send it with the origin's body. The Worker does this
//!   with JavaScript streams, which never enter wasm memory.
//! - [`Gateway::handle`], the same over [`http_body`] bodies and an
//!   [`Upstream`] (the native host, the Lambda, tests).
//!
//! Three faces:
//!
//! - **Gateway** (every path outside the API prefix): removes client-sent
//!   `x-session-*` headers and the session cookie, reads the session (one
//!   `HGETALL`, none without a valid cookie; a due slide runs after the
//!   response, see [`Gateway::finish_deferred`]), forwards to the origin with
//!   `x-session-id`, `x-session-user` and `x-session-data`, then applies the
//!   origin's `x-session-set` / `-incr` / `-login` / `-logout` response headers
//!   in one round trip and sets, re-signs or clears the cookie. After a write
//!   to Upstash it also sets the sync cookie, which the next request (on any
//!   instance) sends back so that it reads its own writes; the origin never
//!   sees either cookie (see [`crate::request`]).
//! - **Browser API** under `SESSION_API_PREFIX` (default `/_session`).
//! - **Admin API** under `<prefix>/admin/`, with `Authorization: Bearer $ADMIN_TOKEN`:
//!   a user's sessions, logout everywhere, and the analytics of [`crate::query`]
//!   (queries and counts over the fields declared in `SESSION_INDEXES`, the
//!   sessions used recently, and daily figures over `SESSION_STATS_DAYS` days;
//!   both are [`SessionConfig`](crate::SessionConfig) settings of the store).
//!
//! Session lifecycle events reach [`Gateway::with_hooks`]; [`EventLog`] logs
//! them as JSON lines, which the Worker and the Lambda install when
//! `SESSION_LOG_EVENTS` is on ([`GatewayConfig::log_events`]).
//!
//! Error bodies are `{"error": "...", "code": "..."}`; see [`ErrorCode`].
//!
//! # Store outages
//!
//! Every store step of a request is bounded by [`GatewayConfig::store_deadline`]
//! (`SESSION_STORE_DEADLINE_MS`, retries included: the load before the
//! origin, the write after it, and an API call, each). When the store is
//! unavailable ([`Error::is_unavailable`](crate::Error::is_unavailable)), [`OutagePolicy`]
//! (`SESSION_STORE_OUTAGE`) decides:
//!
//! - `fail-closed` (default): `503 store_unavailable` with `Retry-After`.
//! - `fail-open`: the request reaches the origin anonymous, with
//!   `x-session-store: unavailable` ([`SESSION_STORE`]); the origin's
//!   instructions are not applied and the response names them in
//!   `x-session-dropped` ([`SESSION_DROPPED`]); the cookie is neither set nor
//!   cleared, so the user's session is there again once the store is back.
//!   The browser and admin APIs still answer 503.

mod api;
mod config;
mod events;
mod headers;
pub mod instructions;
mod proxy;
// reqwest's wasm32 client cannot stream request bodies: the Worker reaches
// its origin with the Workers `fetch` instead.
mod hygiene;
#[cfg(all(feature = "rest", not(target_arch = "wasm32")))]
mod reqwest_upstream;
mod respond;
pub mod signature;
mod upstream;

use std::sync::Arc;

use http::HeaderMap;

use crate::backend::Backend;
use crate::hooks::Hooks;
use crate::session::ClientInfo;
use crate::store::SessionStore;

pub use config::{
    DEFAULT_ORIGIN_CONNECT_TIMEOUT, DEFAULT_ORIGIN_TIMEOUT, DEFAULT_STORE_DEADLINE, GatewayConfig,
    Origin, OutagePolicy,
};
pub use events::EventLog;
pub use headers::{
    ClientAddr, MAX_API_BODY_BYTES, MAX_DATA_HEADER_BYTES, MAX_INSTRUCTION_BYTES,
    MAX_REQUEST_HEADER_BYTES, SESSION_DATA, SESSION_DATA_OMITTED, SESSION_DROPPED, SESSION_ID,
    SESSION_STORE, SESSION_USER, ascii_json, client_info, client_ip, cookie_header,
    strip_session_headers,
};
pub use instructions::{InstructionError, Instructions};
pub use proxy::{Finished, Pending, Prepared};
#[cfg(all(feature = "rest", not(target_arch = "wasm32")))]
pub use reqwest_upstream::{ReqwestBody, ReqwestUpstream};
pub use respond::{ErrorCode, error_response, store_error_response};
pub use upstream::{GatewayBody, Upstream};

/// The session gateway: a store and settings. Build it once per process or
/// isolate; the origin is reached by the packaging (see the module docs).
#[derive(Debug)]
pub struct Gateway<B> {
    store: SessionStore<B>,
    config: GatewayConfig,
    /// `ORIGIN_URL`'s scheme and authority when it has no path: a request's
    /// URI is then built from them and its own path, nothing parsed again.
    origin_base: Option<(http::uri::Scheme, http::uri::Authority)>,
}

impl<B: Backend> Gateway<B> {
    /// A gateway over `store`.
    pub fn new(store: SessionStore<B>, config: GatewayConfig) -> Self {
        let origin_base = match &config.origin {
            config::Origin::Url(base) => base.parse::<http::Uri>().ok().and_then(|uri| {
                let bare =
                    uri.path_and_query().is_none_or(|p| p.as_str() == "/") && !base.ends_with('/');
                let parts = uri.into_parts();
                match (parts.scheme, parts.authority) {
                    (Some(scheme), Some(authority)) if bare => Some((scheme, authority)),
                    _ => None,
                }
            }),
            _ => None,
        };
        Self {
            store,
            config,
            origin_base,
        }
    }

    /// Sends the lifecycle events of the gateway's sessions (created,
    /// regenerated on login, destroyed, logged out everywhere) to `hooks`,
    /// e.g. an [`EventLog`]. Replaces the store's hooks, if it had any.
    #[must_use]
    pub fn with_hooks(self, hooks: Arc<dyn Hooks>) -> Self {
        Self {
            store: self.store.with_hooks(hooks),
            ..self
        }
    }

    /// The session store.
    pub fn store(&self) -> &SessionStore<B> {
        &self.store
    }

    /// The settings.
    pub fn config(&self) -> &GatewayConfig {
        &self.config
    }

    /// The client info of a request: its user agent, and its IP address (see
    /// [`client_ip`]).
    pub(crate) fn client_of(
        &self,
        headers: &HeaderMap,
        extensions: &http::Extensions,
    ) -> ClientInfo {
        let ip = client_ip(headers, extensions, self.config.client_ip_header.as_ref());
        client_info(headers).with_ip(ip)
    }

    fn store_error(&self, error: &crate::Error) -> http::Response<bytes::Bytes> {
        store_error_response(error, self.config.retry_after_secs)
    }
}
