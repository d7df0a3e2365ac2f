//! The HTTP-level session gateway shared by every packaging (Cloudflare
//! Worker, AWS Lambda, a native host): `http::Request` in, `http::Response`
//! out, with the origin behind an injected [`Upstream`].
//!
//! Three faces:
//!
//! - **Gateway** (every path outside the API prefix): removes client-sent
//!   `x-session-*` headers and the session cookie, loads and slides the session
//!   (one round trip, none without a valid cookie), forwards to the origin with
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
//! unavailable ([`Error::is_unavailable`]), [`OutagePolicy`]
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
pub mod instructions;

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::hooks::{Hooks, SessionEvent};
use crate::platform::{MaybeSend, MaybeSync, with_timeout};
use crate::session::{ClientInfo, Session};
use crate::store::SessionStore;

pub use instructions::{InstructionError, Instructions};

/// Request header: the session's non-secret handle.
pub const SESSION_ID: &str = "x-session-id";
/// Request header: the bound user id.
pub const SESSION_USER: &str = "x-session-user";
/// Request header: the session fields as a JSON object.
pub const SESSION_DATA: &str = "x-session-data";
/// Request header sent instead of `x-session-data` when the data is larger
/// than the header limit: the size in bytes of the JSON that was left out.
pub const SESSION_DATA_OMITTED: &str = "x-session-data-omitted";

/// Request header sent to the origin, with the value `unavailable`, when the
/// store could not be reached and [`OutagePolicy::FailOpen`] let the request
/// through anonymous.
pub const SESSION_STORE: &str = "x-session-store";
/// Response header (to the client) listing the origin's instructions that
/// were not applied because the store was unavailable under
/// [`OutagePolicy::FailOpen`], e.g. `x-session-incr, x-session-set`.
pub const SESSION_DROPPED: &str = "x-session-dropped";

/// Default of [`GatewayConfig::store_deadline`]: 5 s.
pub const DEFAULT_STORE_DEADLINE: Duration = Duration::from_secs(5);

/// What the gateway does when the session store is unavailable
/// (`SESSION_STORE_OUTAGE`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutagePolicy {
    /// `fail-closed` (default): `503 store_unavailable` with `Retry-After`.
    #[default]
    FailClosed,
    /// `fail-open`: the request reaches the origin anonymous with
    /// `x-session-store: unavailable`; its session instructions are dropped
    /// (listed in `x-session-dropped`) and the cookie is left untouched.
    FailOpen,
}

impl OutagePolicy {
    /// Parses `fail-closed` or `fail-open` (case-insensitive, `_` allowed).
    pub fn parse(text: &str) -> Result<Self> {
        match text.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "fail-closed" | "closed" => Ok(Self::FailClosed),
            "fail-open" | "open" => Ok(Self::FailOpen),
            _ => Err(Error::config(
                "SESSION_STORE_OUTAGE",
                "must be fail-closed or fail-open",
            )),
        }
    }

    /// `fail-closed` or `fail-open`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FailClosed => "fail-closed",
            Self::FailOpen => "fail-open",
        }
    }
}

/// Largest `x-session-data` value sent to the origin.
pub const MAX_DATA_HEADER_BYTES: usize = 16 * 1024;

/// Largest total of a request's header names and values: past it the
/// gateway answers `431 headers_too_large` before any other work.
pub const MAX_REQUEST_HEADER_BYTES: usize = 32 * 1024;
/// Largest value of one `x-session-*` instruction header from the origin:
/// past it the response is `502 bad_session_instruction`, nothing applied.
pub const MAX_INSTRUCTION_BYTES: usize = 64 * 1024;
/// Largest request body of the browser and admin APIs (their routes take no
/// body): past it, `413 body_too_large`.
pub const MAX_API_BODY_BYTES: usize = 1024;
/// Default of [`GatewayConfig::max_body_bytes`]: 10 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// The client's IP address as the packaging established it, put in the
/// request's extensions before [`Gateway::handle`]: the Worker takes it from
/// `CF-Connecting-IP` (set by Cloudflare), the Lambda from the API Gateway
/// request context's source IP. Used for subnet binding
/// (`SESSION_BIND_SUBNET`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// The client's IP address: from `trusted_header` when one is configured
/// (`SESSION_CLIENT_IP_HEADER`, a header set by a trusted proxy in front of
/// the gateway, such as `x-forwarded-for`; its last comma-separated entry, the
/// one that proxy added), else the packaging's [`ClientAddr`]. A header any
/// client can send is never read unless configured.
pub fn client_ip(
    headers: &HeaderMap,
    extensions: &http::Extensions,
    trusted_header: Option<&HeaderName>,
) -> Option<IpAddr> {
    if let Some(name) = trusted_header {
        return headers
            .get_all(name)
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|ip| ip.trim().parse().ok());
    }
    extensions.get::<ClientAddr>().map(|addr| addr.0)
}

/// The origin behind the gateway.
pub trait Upstream: MaybeSend + MaybeSync {
    /// Sends `request` (its URI is the full origin URL) and returns the
    /// origin's response without following redirects.
    fn forward(
        &self,
        request: Request<Bytes>,
    ) -> impl Future<Output = Result<Response<Bytes>>> + MaybeSend;
}

/// Gateway settings.
#[derive(Clone)]
#[non_exhaustive]
pub struct GatewayConfig {
    /// Base URL of the origin (`ORIGIN_URL`), without a trailing slash.
    pub origin: String,
    /// Prefix of the browser and admin APIs (`SESSION_API_PREFIX`, default `/_session`).
    pub api_prefix: String,
    /// Path prefixes passed straight to the origin with no session work
    /// (`SESSION_SKIP_PATHS`, comma-separated).
    pub skip_paths: Vec<String>,
    /// Origins (`scheme://host[:port]`) allowed to make state-changing API
    /// calls besides the gateway's own (`SESSION_TRUSTED_ORIGINS`).
    pub trusted_origins: Vec<String>,
    /// `Retry-After` seconds on 503 (`SESSION_RETRY_AFTER`, default 5).
    pub retry_after_secs: u32,
    /// Log every session lifecycle event as a JSON line (`SESSION_LOG_EVENTS`,
    /// default false): the packagings then give the gateway an [`EventLog`].
    pub log_events: bool,
    /// What to do when the store is unavailable (`SESSION_STORE_OUTAGE`,
    /// default fail-closed).
    pub outage: OutagePolicy,
    /// Longest wait for one store step of a request, retries included
    /// (`SESSION_STORE_DEADLINE_MS`, default 5 s): the load before the origin,
    /// the write after it, and an API call are each given up after this long
    /// and treated as an unavailable store.
    pub store_deadline: Duration,
    /// Largest request body the gateway forwards, and largest origin response
    /// body it passes back (`SESSION_MAX_BODY_BYTES`, default 10 MiB): past
    /// it, `413 body_too_large` or `502 origin_response_too_large`.
    pub max_body_bytes: usize,
    /// A header set by a trusted proxy in front of the gateway that carries
    /// the client IP (`SESSION_CLIENT_IP_HEADER`, unset by default); see
    /// [`client_ip`].
    pub client_ip_header: Option<HeaderName>,
    admin_token: Option<String>,
}

impl fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("origin", &self.origin)
            .field("api_prefix", &self.api_prefix)
            .field("skip_paths", &self.skip_paths)
            .field("trusted_origins", &self.trusted_origins)
            .field("retry_after_secs", &self.retry_after_secs)
            .field("log_events", &self.log_events)
            .field("outage", &self.outage)
            .field("store_deadline", &self.store_deadline)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("client_ip_header", &self.client_ip_header)
            .field("admin_api", &self.admin_token.is_some())
            .finish()
    }
}

impl GatewayConfig {
    /// Settings for an origin at `origin` with the defaults.
    pub fn new(origin: impl Into<String>) -> Result<Self> {
        let origin = origin.into().trim_end_matches('/').to_owned();
        if !(origin.starts_with("http://") || origin.starts_with("https://")) {
            return Err(Error::config(
                "ORIGIN_URL",
                "must be an http:// or https:// URL",
            ));
        }
        Ok(Self {
            origin,
            api_prefix: "/_session".to_owned(),
            skip_paths: Vec::new(),
            trusted_origins: Vec::new(),
            retry_after_secs: 5,
            log_events: false,
            outage: OutagePolicy::FailClosed,
            store_deadline: DEFAULT_STORE_DEADLINE,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            client_ip_header: None,
            admin_token: None,
        })
    }

    /// Enables the admin API with this bearer token (at least 16 bytes).
    pub fn with_admin_token(mut self, token: impl Into<String>) -> Result<Self> {
        let token = token.into();
        if token.len() < 16 {
            return Err(Error::config(
                "ADMIN_TOKEN",
                "must be at least 16 characters",
            ));
        }
        self.admin_token = Some(token);
        Ok(self)
    }

    /// Reads `ORIGIN_URL`, `SESSION_API_PREFIX`, `SESSION_SKIP_PATHS`,
    /// `SESSION_TRUSTED_ORIGINS`, `SESSION_RETRY_AFTER`, `SESSION_LOG_EVENTS`,
    /// `SESSION_STORE_OUTAGE`, `SESSION_STORE_DEADLINE_MS` and `ADMIN_TOKEN`
    /// through `get` (empty values count as unset).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let origin = get("ORIGIN_URL").ok_or_else(|| Error::config("ORIGIN_URL", "is required"))?;
        let mut config = Self::new(origin)?;
        if let Some(prefix) = get("SESSION_API_PREFIX") {
            let prefix = prefix.trim().trim_end_matches('/').to_owned();
            if !prefix.starts_with('/') || prefix.len() < 2 {
                return Err(Error::config(
                    "SESSION_API_PREFIX",
                    "must be a path such as /_session",
                ));
            }
            config.api_prefix = prefix;
        }
        let list = |v: Option<String>| -> Vec<String> {
            v.map(|v| {
                v.split(',')
                    .map(|p| p.trim().to_owned())
                    .filter(|p| !p.is_empty())
                    .collect()
            })
            .unwrap_or_default()
        };
        config.skip_paths = list(get("SESSION_SKIP_PATHS"));
        if config.skip_paths.iter().any(|p| !p.starts_with('/')) {
            return Err(Error::config(
                "SESSION_SKIP_PATHS",
                "every prefix must start with /",
            ));
        }
        config.trusted_origins = list(get("SESSION_TRUSTED_ORIGINS"))
            .into_iter()
            .map(|o| o.trim_end_matches('/').to_owned())
            .collect();
        if let Some(secs) = get("SESSION_RETRY_AFTER") {
            config.retry_after_secs = secs.trim().parse().map_err(|_| {
                Error::config("SESSION_RETRY_AFTER", "must be a whole number of seconds")
            })?;
        }
        if let Some(value) = get("SESSION_LOG_EVENTS") {
            config.log_events = match value.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                _ => return Err(Error::config("SESSION_LOG_EVENTS", "must be true or false")),
            };
        }
        if let Some(policy) = get("SESSION_STORE_OUTAGE") {
            config.outage = OutagePolicy::parse(&policy)?;
        }
        if let Some(ms) = get("SESSION_STORE_DEADLINE_MS") {
            let ms: u64 = ms.trim().parse().map_err(|_| {
                Error::config(
                    "SESSION_STORE_DEADLINE_MS",
                    "must be a whole number of milliseconds",
                )
            })?;
            if ms == 0 {
                return Err(Error::config(
                    "SESSION_STORE_DEADLINE_MS",
                    "must be at least 1",
                ));
            }
            config.store_deadline = Duration::from_millis(ms);
        }
        config.read_limits(&get)?;
        if let Some(token) = get("ADMIN_TOKEN") {
            config = config.with_admin_token(token)?;
        }
        Ok(config)
    }

    /// Reads `SESSION_MAX_BODY_BYTES` and `SESSION_CLIENT_IP_HEADER`.
    fn read_limits(&mut self, get: &impl Fn(&str) -> Option<String>) -> Result<()> {
        if let Some(bytes) = get("SESSION_MAX_BODY_BYTES") {
            self.max_body_bytes = bytes.trim().parse().map_err(|_| {
                Error::config("SESSION_MAX_BODY_BYTES", "must be a whole number of bytes")
            })?;
        }
        if let Some(name) = get("SESSION_CLIENT_IP_HEADER") {
            let name = HeaderName::from_bytes(name.trim().to_ascii_lowercase().as_bytes())
                .map_err(|_| Error::config("SESSION_CLIENT_IP_HEADER", "not a header name"))?;
            self.client_ip_header = Some(name);
        }
        Ok(())
    }

    fn skips(&self, path: &str) -> bool {
        self.skip_paths.iter().any(|p| under(path, p))
    }
}

/// True when `path` is `prefix` or below it (`/static` covers `/static/x`,
/// not `/staticky`).
fn under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/') || prefix.is_empty())
}

/// The `code` of every error the gateway answers, with its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// 400: a malformed API request.
    BadRequest,
    /// 401: the browser API needs a signed-in session.
    Unauthenticated,
    /// 401: the admin API needs `Authorization: Bearer $ADMIN_TOKEN`.
    Unauthorized,
    /// 403: a state-changing API call that is not same-origin (CSRF defence).
    CrossOrigin,
    /// 404: no such API route, or no such session.
    NotFound,
    /// 404: the admin API is disabled (no `ADMIN_TOKEN`).
    AdminDisabled,
    /// 405: the route exists with other methods.
    MethodNotAllowed,
    /// 413: the request body is over the limit.
    BodyTooLarge,
    /// 431: the request headers are over the limit.
    HeadersTooLarge,
    /// 502: the origin's response body is over the limit.
    OriginResponseTooLarge,
    /// 502: the origin could not be reached.
    OriginUnavailable,
    /// 502: the origin sent a malformed or refused `x-session-*` instruction;
    /// nothing was applied.
    BadSessionInstruction,
    /// 503: the session store is unavailable (with `Retry-After`).
    StoreUnavailable,
    /// 500: anything else.
    Internal,
}

impl ErrorCode {
    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthenticated | ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::CrossOrigin => StatusCode::FORBIDDEN,
            ErrorCode::NotFound | ErrorCode::AdminDisabled => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorCode::OriginUnavailable
            | ErrorCode::BadSessionInstruction
            | ErrorCode::OriginResponseTooLarge => StatusCode::BAD_GATEWAY,
            ErrorCode::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `code` string in the JSON body.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::CrossOrigin => "cross_origin",
            ErrorCode::NotFound => "not_found",
            ErrorCode::AdminDisabled => "admin_disabled",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::BodyTooLarge => "body_too_large",
            ErrorCode::HeadersTooLarge => "headers_too_large",
            ErrorCode::OriginResponseTooLarge => "origin_response_too_large",
            ErrorCode::OriginUnavailable => "origin_unavailable",
            ErrorCode::BadSessionInstruction => "bad_session_instruction",
            ErrorCode::StoreUnavailable => "store_unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

/// The session gateway: a store, an origin and settings. Build it once per
/// process or isolate.
#[derive(Debug)]
pub struct Gateway<B, U> {
    store: SessionStore<B>,
    upstream: U,
    config: GatewayConfig,
}

impl<B: Backend, U: Upstream> Gateway<B, U> {
    /// A gateway over `store`, forwarding to `upstream`.
    pub fn new(store: SessionStore<B>, upstream: U, config: GatewayConfig) -> Self {
        Self {
            store,
            upstream,
            config,
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

    /// Handles one request. Never fails: errors become JSON error responses.
    pub async fn handle(&self, request: Request<Bytes>) -> Response<Bytes> {
        if let Some(refusal) = self.oversized_request(&request) {
            return refusal;
        }
        let path = request.uri().path().to_owned();
        if under(&path, &self.config.api_prefix) {
            let rest = path[self.config.api_prefix.len()..].to_owned();
            let answer = self.within_deadline(async { Ok(self.api(request, &rest).await) });
            return match answer.await {
                Ok(response) => response,
                Err(e) => self.store_error(&e),
            };
        }
        if self.config.skips(&path) {
            return self.pass_through(request).await;
        }
        self.proxy(request).await
    }

    async fn pass_through(&self, request: Request<Bytes>) -> Response<Bytes> {
        let (mut parts, body) = request.into_parts();
        strip_session_headers(&mut parts.headers);
        match self.forward(parts, body).await {
            Ok(response) => clean_response(response),
            Err(response) => response,
        }
    }

    async fn proxy(&self, request: Request<Bytes>) -> Response<Bytes> {
        let (mut parts, body) = request.into_parts();
        strip_session_headers(&mut parts.headers);
        let client = self.client_of(&parts.headers, &parts.extensions);
        let cookie = cookie_header(&parts.headers);
        let begun = self.within_deadline(self.store.begin(cookie.as_deref(), client));
        let mut session = match begun.await {
            Ok(s) => s,
            Err(e) if self.fails_open(&e) => {
                return self.proxy_without_store(parts, body, &e).await;
            }
            Err(e) => return self.store_error(&e),
        };
        remove_cookie(&mut parts.headers, &self.store.cookies().config().name);
        remove_cookie(&mut parts.headers, &self.store.sync_cookie_name());
        if let Some(s) = session.session() {
            add_session_headers(&mut parts.headers, s);
        }

        let response = match self.forward(parts, body).await {
            Ok(response) => response,
            Err(response) => return response,
        };
        let (mut parts, body) = response.into_parts();
        let sent = instruction_names(&parts.headers);
        if let Some(refusal) = oversized_instruction(&parts.headers) {
            return refusal;
        }
        let instructions = match Instructions::take(&mut parts.headers) {
            Ok(i) => i,
            Err(e) => {
                log::error!("edge-session: origin sent a bad session instruction: {e}");
                return error_response(ErrorCode::BadSessionInstruction, &e.to_string());
            }
        };
        if let Err(e) = instructions.apply(&mut session) {
            log::error!("edge-session: origin sent a refused session instruction: {e}");
            return error_response(ErrorCode::BadSessionInstruction, &e.to_string());
        }
        let commit = match self.within_deadline(self.store.commit(session)).await {
            Ok(c) => c,
            Err(e) if instructions::is_instruction_fault(&e) => {
                log::error!("edge-session: origin sent a refused session instruction: {e}");
                return error_response(ErrorCode::BadSessionInstruction, &e.to_string());
            }
            Err(e) if self.fails_open(&e) => {
                // The origin has answered: its response goes out, without
                // the instructions (not applied, or after a timeout not
                // confirmed) and without any cookie change.
                let mut response = clean_response(Response::from_parts(parts, body));
                mark_dropped(&mut response, &sent, &e);
                return response;
            }
            Err(e) => return self.store_error(&e),
        };
        if let Some(cookie) = commit.set_cookie {
            append_set_cookie(&mut parts.headers, &cookie);
        }
        if let Some(cookie) = commit.sync_cookie {
            append_set_cookie(&mut parts.headers, &cookie);
        }
        clean_response(Response::from_parts(parts, body))
    }

    /// `fail-open` with the store unavailable: the request goes to the origin
    /// anonymous (session cookie removed, `x-session-store: unavailable`), its
    /// instructions are dropped and the cookie is left as it is.
    async fn proxy_without_store(
        &self,
        mut parts: http::request::Parts,
        body: Bytes,
        error: &Error,
    ) -> Response<Bytes> {
        log::warn!(
            "edge-session: session store unavailable, request forwarded without a session (fail-open): {error}"
        );
        remove_cookie(&mut parts.headers, &self.store.cookies().config().name);
        parts.headers.insert(
            HeaderName::from_static(SESSION_STORE),
            HeaderValue::from_static("unavailable"),
        );
        let response = match self.forward(parts, body).await {
            Ok(response) => response,
            Err(response) => return response,
        };
        let sent = instruction_names(response.headers());
        let mut response = clean_response(response);
        mark_dropped(&mut response, &sent, error);
        response
    }

    /// Runs one store step within [`GatewayConfig::store_deadline`].
    async fn within_deadline<T>(&self, step: impl Future<Output = Result<T>>) -> Result<T> {
        with_timeout(self.config.store_deadline, step).await
    }

    /// True when `error` is an outage the policy lets through.
    fn fails_open(&self, error: &Error) -> bool {
        self.config.outage == OutagePolicy::FailOpen && error.is_unavailable()
    }

    /// Sends the request to the origin; an unreachable origin is a 502 response.
    async fn forward(
        &self,
        mut parts: http::request::Parts,
        body: Bytes,
    ) -> std::result::Result<Response<Bytes>, Response<Bytes>> {
        let path_and_query = parts
            .uri
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str);
        let uri = format!("{}{}", self.config.origin, path_and_query);
        // The scheme the client used (Workers see absolute URLs).
        let client_scheme = parts
            .uri
            .scheme_str()
            .and_then(|s| HeaderValue::from_str(s).ok());
        parts.uri = uri.parse().map_err(|_| {
            error_response(ErrorCode::BadRequest, "the request path is not a valid URI")
        })?;
        if let Some(host) = parts.headers.remove(header::HOST) {
            parts
                .headers
                .insert(HeaderName::from_static("x-forwarded-host"), host);
        }
        if let Some(scheme) = client_scheme {
            parts
                .headers
                .insert(HeaderName::from_static("x-forwarded-proto"), scheme);
        }
        remove_hop_by_hop(&mut parts.headers);
        let response = self
            .upstream
            .forward(Request::from_parts(parts, body))
            .await
            .map_err(|e| match e {
                Error::TooLarge { .. } => self.origin_too_large(&e),
                e => {
                    log::error!("edge-session: origin unavailable: {e}");
                    error_response(
                        ErrorCode::OriginUnavailable,
                        "the origin could not be reached",
                    )
                }
            })?;
        let actual = response.body().len();
        if actual > self.config.max_body_bytes {
            return Err(self.origin_too_large(&Error::TooLarge {
                what: "origin response body",
                limit: self.config.max_body_bytes,
                actual,
            }));
        }
        Ok(response)
    }

    fn origin_too_large(&self, error: &Error) -> Response<Bytes> {
        log::error!("edge-session: origin response refused: {error}");
        error_response(ErrorCode::OriginResponseTooLarge, &error.to_string())
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

    /// `431 headers_too_large` or `413 body_too_large` for a request over the
    /// limits, before any other work.
    fn oversized_request(&self, request: &Request<Bytes>) -> Option<Response<Bytes>> {
        let headers: usize = request
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len())
            .sum();
        if headers > MAX_REQUEST_HEADER_BYTES {
            return Some(error_response(
                ErrorCode::HeadersTooLarge,
                &format!(
                    "the request headers are {headers} bytes, over the limit of {MAX_REQUEST_HEADER_BYTES} bytes"
                ),
            ));
        }
        let limit = if under(request.uri().path(), &self.config.api_prefix) {
            MAX_API_BODY_BYTES
        } else {
            self.config.max_body_bytes
        };
        let body = request.body().len();
        (body > limit).then(|| {
            error_response(
                ErrorCode::BodyTooLarge,
                &format!("the request body is {body} bytes, over the limit of {limit} bytes"),
            )
        })
    }

    fn store_error(&self, error: &Error) -> Response<Bytes> {
        store_error_response(error, self.config.retry_after_secs)
    }
}

/// The answer to a session store error: `503 store_unavailable` with
/// `Retry-After` when the store could not be reached, else `500 internal`.
/// Shared by the gateway and the adapters' own wrappers.
pub fn store_error_response(error: &Error, retry_after_secs: u32) -> Response<Bytes> {
    if error.is_unavailable() {
        log::warn!("edge-session: session store unavailable: {error}");
        let mut response = error_response(
            ErrorCode::StoreUnavailable,
            "the session store is unavailable",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        response
    } else {
        log::error!("edge-session: unexpected session store error: {error}");
        error_response(ErrorCode::Internal, "internal error")
    }
}

/// The instruction headers present in an origin response, in contract order.
fn instruction_names(headers: &HeaderMap) -> Vec<&'static str> {
    [
        instructions::SET,
        instructions::INCR,
        instructions::LOGIN,
        instructions::LOGOUT,
    ]
    .into_iter()
    .filter(|name| headers.contains_key(*name))
    .collect()
}

/// Logs the instructions a fail-open response drops and names them in
/// `x-session-dropped`.
fn mark_dropped(response: &mut Response<Bytes>, dropped: &[&str], error: &Error) {
    if dropped.is_empty() {
        return;
    }
    let list = dropped.join(", ");
    log::warn!(
        "edge-session: session store unavailable (fail-open): the origin's {list} not applied: {error}"
    );
    if let Ok(value) = HeaderValue::from_str(&list) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(SESSION_DROPPED), value);
    }
}

/// [`Hooks`] that log every session event as one JSON line through the `log`
/// facade, at level info with target `edge_session::events`:
///
/// ```json
/// {"handle":"<64 hex>","kind":"created","source":"edge-session","user":null}
/// {"handle":"<new>","kind":"regenerated","previous":"<old>","source":"edge-session","user":"u-1"}
/// {"handle":"<64 hex>","kind":"destroyed","source":"edge-session","user":"u-1"}
/// {"kind":"logged_out_everywhere","sessions":3,"source":"edge-session","user":"u-1"}
/// ```
///
/// Handles are the non-secret session ids (`x-session-id`); no token is
/// ever logged. A `user` of `destroyed` is null when the session ended by
/// its own logout.
#[derive(Debug, Clone, Copy, Default)]
pub struct EventLog;

impl EventLog {
    /// The JSON line logged for `event`.
    pub fn line(event: &SessionEvent) -> String {
        // Keys in alphabetical order: the same line with or without
        // serde_json's `preserve_order`.
        let (source, kind) = ("edge-session", event.kind());
        let line = match event {
            SessionEvent::Created { handle, user } | SessionEvent::Destroyed { handle, user } => {
                serde_json::json!({
                    "handle": handle.as_str(),
                    "kind": kind,
                    "source": source,
                    "user": user,
                })
            }
            SessionEvent::Regenerated { old, new, user } => serde_json::json!({
                "handle": new.as_str(),
                "kind": kind,
                "previous": old.as_str(),
                "source": source,
                "user": user,
            }),
            SessionEvent::LoggedOutEverywhere { user, sessions } => serde_json::json!({
                "kind": kind,
                "sessions": sessions,
                "source": source,
                "user": user,
            }),
            SessionEvent::BindingMismatch {
                handle,
                user,
                reason,
            } => serde_json::json!({
                "handle": handle.as_str(),
                "kind": kind,
                "reason": reason,
                "source": source,
                "user": user,
            }),
        };
        line.to_string()
    }
}

impl Hooks for EventLog {
    fn on_event(&self, event: &SessionEvent) {
        log::info!(target: "edge_session::events", "{}", Self::line(event));
    }
}

/// `502 bad_session_instruction` when an instruction header of the origin's
/// response is longer than [`MAX_INSTRUCTION_BYTES`].
fn oversized_instruction(headers: &HeaderMap) -> Option<Response<Bytes>> {
    let (name, value) = headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("x-session-"))
        .find(|(_, value)| value.len() > MAX_INSTRUCTION_BYTES)?;
    let message = format!(
        "{name}: {} bytes, over the limit of {MAX_INSTRUCTION_BYTES} bytes",
        value.len()
    );
    log::error!("edge-session: origin sent a refused session instruction: {message}");
    Some(error_response(ErrorCode::BadSessionInstruction, &message))
}

/// Removes every `x-session-*` header (clients may not spoof them).
pub fn strip_session_headers(headers: &mut HeaderMap) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|n| n.as_str().starts_with("x-session-"))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

/// All `Cookie` request headers joined into one value (`None` without any).
pub fn cookie_header(headers: &HeaderMap) -> Option<String> {
    let parts: Vec<&str> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// Removes the session cookie from the `Cookie` header sent to the origin:
/// the origin gets the non-secret handle, never the token.
fn remove_cookie(headers: &mut HeaderMap, name: &str) {
    let Some(all) = cookie_header(headers) else {
        return;
    };
    let kept: Vec<&str> = all
        .split(';')
        .map(str::trim)
        .filter(|c| !c.is_empty() && c.split('=').next().map(str::trim) != Some(name))
        .collect();
    headers.remove(header::COOKIE);
    if !kept.is_empty()
        && let Ok(value) = HeaderValue::from_str(&kept.join("; "))
    {
        headers.insert(header::COOKIE, value);
    }
}

/// The client info recorded for new sessions, from the request headers.
pub fn client_info(headers: &HeaderMap) -> ClientInfo {
    ClientInfo::with_user_agent(
        headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok()),
    )
}

/// Characters percent-encoded in `x-session-user`.
const USER_ENCODE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b'%');

fn add_session_headers(headers: &mut HeaderMap, session: &Session) {
    let mut set = |name: &'static str, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    };
    set(SESSION_ID, session.handle().as_str());
    if let Some(user) = session.user() {
        let encoded = percent_encoding::utf8_percent_encode(user, USER_ENCODE).to_string();
        set(SESSION_USER, &encoded);
    }
    let (data, invalid) = session.data();
    if !invalid.is_empty() {
        log::warn!(
            "edge-session: session fields {invalid:?} are not valid JSON and were left out of {SESSION_DATA}"
        );
    }
    let json = ascii_json(&serde_json::Value::Object(data));
    if json.len() <= MAX_DATA_HEADER_BYTES {
        set(SESSION_DATA, &json);
    } else {
        set(SESSION_DATA_OMITTED, &json.len().to_string());
    }
}

/// JSON text with every non-ASCII character escaped as `\uXXXX`, so it is a
/// valid header value.
pub fn ascii_json(value: &serde_json::Value) -> String {
    let text = value.to_string();
    if text.is_ascii() {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut units = [0u16; 2];
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

fn append_set_cookie(headers: &mut HeaderMap, cookie: &str) {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        headers.append(header::SET_COOKIE, value);
    }
}

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn remove_hop_by_hop(headers: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

fn clean_response(mut response: Response<Bytes>) -> Response<Bytes> {
    remove_hop_by_hop(response.headers_mut());
    strip_session_headers(response.headers_mut());
    response
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A JSON error response `{"error": message, "code": code}`.
pub fn error_response(code: ErrorCode, message: &str) -> Response<Bytes> {
    json_response(
        code.status(),
        &serde_json::json!({ "error": message, "code": code.as_str() }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(under("/static", "/static"));
        assert!(under("/static/a.css", "/static/"));
        assert!(!under("/staticky", "/static"));
        assert!(under("/_session/devices", "/_session"));
    }

    #[test]
    fn ascii_json_escapes_non_ascii() {
        let v = serde_json::json!({"name": "Zoë 🚀", "n": 1});
        let text = ascii_json(&v);
        assert!(text.is_ascii());
        assert!(text.contains("\\ud83d\\ude80"));
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).ok(),
            Some(v)
        );
    }

    #[test]
    fn the_session_cookie_is_removed_others_kept() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Host-session=secret; b=2"),
        );
        remove_cookie(&mut h, "__Host-session");
        assert_eq!(
            h.get(header::COOKIE).map(|v| v.as_bytes()),
            Some(&b"a=1; b=2"[..])
        );
        let mut only = HeaderMap::new();
        only.insert(header::COOKIE, HeaderValue::from_static("__Host-session=x"));
        remove_cookie(&mut only, "__Host-session");
        assert!(only.get(header::COOKIE).is_none());
    }

    #[test]
    fn config_from_lookup() {
        let get = |name: &str| match name {
            "ORIGIN_URL" => Some("http://127.0.0.1:3000/".to_owned()),
            "SESSION_SKIP_PATHS" => Some("/static, /health".to_owned()),
            "ADMIN_TOKEN" => Some("0123456789abcdef0123".to_owned()),
            _ => None,
        };
        let c = GatewayConfig::from_lookup(get).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.origin, "http://127.0.0.1:3000");
        assert_eq!(c.skip_paths, ["/static", "/health"]);
        assert!(c.skips("/health") && !c.skips("/healthz"));
        assert!(!format!("{c:?}").contains("0123456789abcdef"));
        assert!(!c.log_events);
        assert!(GatewayConfig::new("ftp://x").is_err());
        let with_events = |value: &str| {
            let value = value.to_owned();
            GatewayConfig::from_lookup(move |name| match name {
                "ORIGIN_URL" => Some("https://origin.example".to_owned()),
                "SESSION_LOG_EVENTS" => Some(value.clone()),
                _ => None,
            })
        };
        assert!(with_events("true").is_ok_and(|c| c.log_events));
        assert!(with_events(" On ").is_ok_and(|c| c.log_events));
        assert!(with_events("false").is_ok_and(|c| !c.log_events));
        let e = with_events("ture").err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("SESSION_LOG_EVENTS")));
    }

    #[test]
    fn outage_policy_and_deadline_from_lookup() {
        let with = |policy: Option<&str>, deadline: Option<&str>| {
            let (policy, deadline) = (policy.map(str::to_owned), deadline.map(str::to_owned));
            GatewayConfig::from_lookup(move |name| match name {
                "ORIGIN_URL" => Some("https://origin.example".to_owned()),
                "SESSION_STORE_OUTAGE" => policy.clone(),
                "SESSION_STORE_DEADLINE_MS" => deadline.clone(),
                _ => None,
            })
        };
        let defaults = with(None, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(defaults.outage, OutagePolicy::FailClosed);
        assert_eq!(defaults.store_deadline, DEFAULT_STORE_DEADLINE);
        let open = with(Some(" Fail-Open "), Some("1500")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(open.outage, OutagePolicy::FailOpen);
        assert_eq!(open.outage.as_str(), "fail-open");
        assert_eq!(open.store_deadline, Duration::from_millis(1500));
        assert!(
            with(Some("fail_closed"), None).is_ok_and(|c| c.outage == OutagePolicy::FailClosed)
        );
        for (policy, deadline, name) in [
            (Some("fail-sometimes"), None, "SESSION_STORE_OUTAGE"),
            (None, Some("0"), "SESSION_STORE_DEADLINE_MS"),
            (None, Some("5s"), "SESSION_STORE_DEADLINE_MS"),
        ] {
            let e = with(policy, deadline).err().map(|e| e.to_string());
            assert!(
                e.is_some_and(|e| e.contains(name)),
                "{policy:?} {deadline:?}"
            );
        }
    }

    #[test]
    fn dropped_instructions_are_named_in_contract_order() {
        let mut headers = HeaderMap::new();
        headers.insert(instructions::LOGOUT, HeaderValue::from_static("current"));
        headers.insert(instructions::SET, HeaderValue::from_static("{}"));
        headers.insert("x-session-other", HeaderValue::from_static("1"));
        let names = instruction_names(&headers);
        assert_eq!(names, [instructions::SET, instructions::LOGOUT]);
        let mut response = Response::new(Bytes::new());
        mark_dropped(&mut response, &names, &Error::Timeout { ms: 5 });
        assert_eq!(
            response.headers()[SESSION_DROPPED],
            "x-session-set, x-session-logout"
        );
        let mut untouched = Response::new(Bytes::new());
        mark_dropped(&mut untouched, &[], &Error::Timeout { ms: 5 });
        assert!(untouched.headers().is_empty());
    }

    #[test]
    fn event_lines_are_one_json_object() {
        let token = crate::SessionToken::generate(None);
        let handle = token.handle();
        let line = EventLog::line(&SessionEvent::Created {
            handle: handle.clone(),
            user: None,
        });
        assert_eq!(
            line,
            format!(
                r#"{{"handle":"{}","kind":"created","source":"edge-session","user":null}}"#,
                handle.as_str()
            )
        );
        let line = EventLog::line(&SessionEvent::LoggedOutEverywhere {
            user: "zoë \"z\"".to_owned(),
            sessions: 3,
        });
        assert_eq!(
            line,
            r#"{"kind":"logged_out_everywhere","sessions":3,"source":"edge-session","user":"zoë \"z\""}"#
        );
    }
}

/// An [`Upstream`] over reqwest: native hosts and the AWS Lambda packaging.
///
/// It refuses origin response bodies over `max_body_bytes` (default
/// [`DEFAULT_MAX_BODY_BYTES`]): before reading when `Content-Length` says so,
/// else once read.
#[cfg(feature = "rest")]
#[derive(Debug, Clone)]
pub struct ReqwestUpstream {
    client: reqwest::Client,
    max_body_bytes: usize,
}

#[cfg(feature = "rest")]
impl ReqwestUpstream {
    /// An upstream with its own client, which does not follow redirects
    /// (they go back to the browser, as from any proxy).
    pub fn new() -> Result<Self> {
        Ok(Self::with_client(crate::platform::proxy_client()?))
    }

    /// An upstream over an existing client (configure it not to follow redirects).
    pub fn with_client(client: reqwest::Client) -> Self {
        Self {
            client,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }

    /// Gives up on origin response bodies longer than `bytes`
    /// ([`Error::TooLarge`], answered `502 origin_response_too_large`).
    #[must_use]
    pub fn with_max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }
}

#[cfg(feature = "rest")]
impl Upstream for ReqwestUpstream {
    async fn forward(&self, request: Request<Bytes>) -> Result<Response<Bytes>> {
        let (parts, body) = request.into_parts();
        let response = self
            .client
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .send()
            .await
            .map_err(Error::Transport)?;
        let mut builder = Response::builder().status(response.status());
        if let Some(headers) = builder.headers_mut() {
            *headers = response.headers().clone();
        }
        let limit = self.max_body_bytes;
        let too_large = |actual: usize| Error::TooLarge {
            what: "origin response body",
            limit,
            actual,
        };
        if let Some(length) = response.content_length()
            && length > limit as u64
        {
            return Err(too_large(usize::try_from(length).unwrap_or(usize::MAX)));
        }
        // (reqwest's wasm32 response cannot be read in chunks: a body without
        // Content-Length is checked once read.)
        let body = response.bytes().await.map_err(Error::Transport)?;
        if body.len() > limit {
            return Err(too_large(body.len()));
        }
        builder
            .body(body)
            .map_err(|e| Error::protocol_with("could not build the origin response", e))
    }
}
