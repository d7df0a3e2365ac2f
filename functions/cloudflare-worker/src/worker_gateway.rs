//! The Worker's configuration, store, gateway and `fetch` handler.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use edge_session::backend::RestBackend;
use edge_session::gateway::{ErrorCode, Gateway, GatewayConfig, error_response};
use edge_session::{BackendConfig, SessionStore, Settings};
use worker::{Context, Env, Request, Response};

use crate::events::{EventQueue, log_after_response};
use crate::origin::Target;
use crate::proxy::{own, proxy};

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

/// The gateway of a Worker.
pub type WorkerGateway = Gateway<RestBackend>;

thread_local! {
    /// One gateway per isolate: built on the first request, reused after.
    static GATEWAY: RefCell<Option<Rc<WorkerGateway>>> = const { RefCell::new(None) };
}

/// The isolate's gateway, built from `env` on first use. With
/// `SESSION_LOG_EVENTS=true` its session lifecycle events are queued
/// ([`EventQueue`]) and [`handle`] logs them after the response, one JSON
/// line each on the console (`wrangler tail`).
pub fn gateway(env: &Env) -> edge_session::Result<Rc<WorkerGateway>> {
    if let Some(gateway) = GATEWAY.with(|g| g.borrow().clone()) {
        return Ok(gateway);
    }
    let store = store(settings(env)?)?;
    let config = GatewayConfig::from_lookup(|name| lookup(env, name))?;
    let log_events = config.log_events;
    let mut gateway = Gateway::new(store, config);
    if log_events {
        gateway = gateway.with_hooks(Arc::new(EventQueue));
    }
    let gateway = Rc::new(gateway);
    GATEWAY.with(|g| *g.borrow_mut() = Some(Rc::clone(&gateway)));
    Ok(gateway)
}

/// The whole gateway for one request: the browser and admin APIs, or the
/// origin (`ORIGIN_URL`, `ORIGIN_SERVICE` or the request's own URL) with the
/// session headers, bodies and WebSockets passed through untouched. Queued
/// lifecycle events are logged in `ctx.wait_until` after the response, and
/// a slide the session's read found due runs there too
/// (`Gateway::after_response`). Never fails: errors are the gateway's JSON
/// answers.
pub async fn handle(request: Request, env: &Env, ctx: &Context) -> Response {
    let configured = gateway(env).and_then(|gateway| {
        let target = Target::of(&gateway.config().origin, env)?;
        Ok((gateway, target))
    });
    let response = match configured {
        Ok((gateway, target)) => {
            let (response, touch) = proxy(&gateway, &target, request).await;
            if touch.is_some() {
                ctx.wait_until(async move { gateway.after_response(touch).await });
            }
            response
        }
        Err(e) => {
            worker::console_error!("edge-session: configuration error: {e}");
            own(error_response(
                ErrorCode::Internal,
                "the session gateway is misconfigured",
            ))
        }
    };
    log_after_response(ctx);
    response
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
async fn fetch(request: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    console_error_panic_hook::set_once();
    init_logging();
    Ok(handle(request, &env, &ctx).await)
}
