//! edge-session as a Cloudflare Worker.
//!
//! With the default `gateway` feature this crate *is* the Worker: every
//! request goes through [`edge_session::gateway::Gateway`] (origin proxy,
//! browser API, admin API), configured from the Worker's vars and secrets.
//!
//! Without it (`default-features = false`) it is a library for writing your
//! own Worker with sessions: `settings` reads the configuration from `Env`,
//! `store` builds the store once per isolate, and `to_http` / `from_http` /
//! `WorkerFetch` translate between `worker` and `http` types. (The crate is
//! empty on targets other than wasm32.)
//! Session logic lives in the core crate only.

#![forbid(unsafe_code)]
// A Worker only exists on wasm32: on other targets this crate is empty, so
// native workspace builds skip it (its futures are not `Send`).
#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use edge_session::backend::RestBackend;
use edge_session::gateway::{EventLog, Gateway, GatewayConfig, Upstream};
use edge_session::{BackendConfig, SessionStore, Settings};
use worker::{Env, Fetch, Headers, Method, Request, RequestInit, RequestRedirect, Response};

/// Reads a var or secret of the Worker (`wrangler.toml` `[vars]`,
/// `wrangler secret put`, or `.dev.vars` locally).
pub fn lookup(env: &Env, name: &str) -> Option<String> {
    env.secret(name)
        .map(|s| s.to_string())
        .or_else(|_| env.var(name).map(|v| v.to_string()))
        .ok()
}

/// The session settings from the Worker's environment. The backend is always
/// REST on Workers (`UPSTASH_REDIS_REST_URL` / `_TOKEN`).
pub fn settings(env: &Env) -> edge_session::Result<Settings> {
    Settings::from_lookup(|name| match name {
        // There is no TCP Redis inside a Worker.
        "SESSION_BACKEND" => Some("rest".to_owned()),
        _ => lookup(env, name),
    })
}

/// Builds the store for `settings` (REST backend; no I/O happens here).
pub fn store(settings: Settings) -> edge_session::Result<SessionStore<RestBackend>> {
    let backend = match settings.backend {
        BackendConfig::Rest(config) => RestBackend::new(config)?,
        #[allow(unreachable_patterns)]
        _ => {
            return Err(edge_session::Error::Config {
                name: "SESSION_BACKEND",
                reason: "only the REST backend runs in a Worker".to_owned(),
            });
        }
    };
    SessionStore::new(backend, settings.session, settings.keys)
}

/// Converts a Worker request into an `http` request with its whole body, and
/// the client IP (`CF-Connecting-IP`) as a [`edge_session::gateway::ClientAddr`]
/// extension.
pub async fn to_http(mut request: Request) -> worker::Result<http::Request<Bytes>> {
    let body = request.bytes().await.unwrap_or_default();
    let mut builder = http::Request::builder()
        .method(request.method().as_ref())
        .uri(request.url()?.as_str());
    for (name, value) in request.headers().entries() {
        builder = builder.header(name, value);
    }
    // Cloudflare sets CF-Connecting-IP on every request (a client cannot):
    // the client IP for subnet binding.
    if let Some(ip) = request
        .headers()
        .get("cf-connecting-ip")
        .ok()
        .flatten()
        .and_then(|ip| ip.trim().parse().ok())
    {
        builder = builder.extension(edge_session::gateway::ClientAddr(ip));
    }
    builder
        .body(Bytes::from(body))
        .map_err(|e| worker::Error::RustError(format!("bad request: {e}")))
}

/// Converts an `http` response into a Worker response (every `Set-Cookie` kept).
pub fn from_http(response: http::Response<Bytes>) -> worker::Result<Response> {
    let (parts, body) = response.into_parts();
    let headers = Headers::new();
    for (name, value) in &parts.headers {
        if let Ok(value) = value.to_str() {
            headers.append(name.as_str(), value)?;
        }
    }
    let response = if body.is_empty() {
        Response::empty()?
    } else {
        Response::from_bytes(body.to_vec())?
    };
    Ok(response
        .with_status(parts.status.as_u16())
        .with_headers(headers))
}

/// The origin, reached with the Workers `fetch`; redirects are passed back
/// to the browser, not followed.
#[derive(Debug, Clone, Copy, Default)]
pub struct WorkerFetch;

impl Upstream for WorkerFetch {
    async fn forward(
        &self,
        request: http::Request<Bytes>,
    ) -> edge_session::Result<http::Response<Bytes>> {
        let origin_error = |e: worker::Error| edge_session::Error::Http {
            status: 502,
            message: e.to_string(),
        };
        let (parts, body) = request.into_parts();
        let headers = Headers::new();
        for (name, value) in &parts.headers {
            if let Ok(value) = value.to_str() {
                headers.append(name.as_str(), value).map_err(origin_error)?;
            }
        }
        let mut init = RequestInit::new();
        init.with_method(Method::from(parts.method.as_str().to_owned()))
            .with_headers(headers)
            .with_redirect(RequestRedirect::Manual);
        if !body.is_empty() {
            init.with_body(Some(worker::js_sys::Uint8Array::from(&body[..]).into()));
        }
        let request =
            Request::new_with_init(&parts.uri.to_string(), &init).map_err(origin_error)?;
        let mut response = Fetch::Request(request).send().await.map_err(origin_error)?;
        let mut builder = http::Response::builder().status(response.status_code());
        for (name, value) in response.headers().entries() {
            builder = builder.header(name, value);
        }
        let body = response.bytes().await.map_err(origin_error)?;
        builder
            .body(Bytes::from(body))
            .map_err(|e| edge_session::Error::Http {
                status: 502,
                message: format!("bad origin response: {e}"),
            })
    }
}

type WorkerGateway = Gateway<RestBackend, WorkerFetch>;

thread_local! {
    /// One gateway per isolate: built on the first request, reused after.
    static GATEWAY: RefCell<Option<Rc<WorkerGateway>>> = const { RefCell::new(None) };
}

/// The isolate's gateway, built from `env` on first use. With
/// `SESSION_LOG_EVENTS=true` it logs every session lifecycle event as one
/// JSON line to the console ([`EventLog`], see `wrangler tail`).
pub fn gateway(env: &Env) -> edge_session::Result<Rc<WorkerGateway>> {
    if let Some(gateway) = GATEWAY.with(|g| g.borrow().clone()) {
        return Ok(gateway);
    }
    let store = store(settings(env)?)?;
    let config = GatewayConfig::from_lookup(|name| lookup(env, name))?;
    let log_events = config.log_events;
    let mut gateway = Gateway::new(store, WorkerFetch, config);
    if log_events {
        gateway = gateway.with_hooks(Arc::new(EventLog));
    }
    let gateway = Rc::new(gateway);
    GATEWAY.with(|g| *g.borrow_mut() = Some(Rc::clone(&gateway)));
    Ok(gateway)
}

/// A logger that writes to the Workers console (`wrangler tail`).
struct ConsoleLog;

impl log::Log for ConsoleLog {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Info
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            match record.level() {
                log::Level::Error => worker::console_error!("{}", record.args()),
                log::Level::Warn => worker::console_warn!("{}", record.args()),
                _ => worker::console_log!("{}", record.args()),
            }
        }
    }

    fn flush(&self) {}
}

/// Sends the `log` records of edge-session to the Workers console.
pub fn init_logging() {
    static LOGGER: ConsoleLog = ConsoleLog;
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
}

#[cfg(feature = "gateway")]
#[worker::event(fetch)]
async fn fetch(request: Request, env: Env, _ctx: worker::Context) -> worker::Result<Response> {
    console_error_panic_hook::set_once();
    init_logging();
    let gateway = match gateway(&env) {
        Ok(g) => g,
        Err(e) => {
            worker::console_error!("edge-session: configuration error: {e}");
            return from_http(edge_session::gateway::error_response(
                edge_session::gateway::ErrorCode::Internal,
                "the session gateway is misconfigured",
            ));
        }
    };
    let request = to_http(request).await?;
    from_http(gateway.handle(request).await)
}
