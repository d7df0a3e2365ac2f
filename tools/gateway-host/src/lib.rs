//! The edge-session gateway as a plain native HTTP server: the same
//! [`Gateway`] the Cloudflare Worker and the AWS Lambda host, built from the
//! same environment variables ([`Settings`] and [`GatewayConfig`]), served by
//! axum (HTTP/1.1) with the origin reached over reqwest.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let gateway = edge_session_host::gateway_from_env().await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! edge_session_host::serve(listener, gateway, std::future::pending()).await?;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::future::Future;
use std::io;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use edge_session::gateway::{
    ErrorCode, EventLog, Gateway, GatewayConfig, ReqwestUpstream, error_response,
};
use edge_session::{AnyBackend, SessionStore, Settings};
use http_body_util::{BodyExt as _, Limited};

/// The gateway this host serves.
pub type HostGateway = Gateway<AnyBackend, ReqwestUpstream>;

/// Largest request body forwarded to the origin: 10 MiB (larger ones get 413).
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// Builds the gateway from the process environment (see [`gateway_from_lookup`]).
pub async fn gateway_from_env() -> edge_session::Result<HostGateway> {
    gateway_from_lookup(|name| std::env::var(name).ok()).await
}

/// Builds the gateway from `get` (a variable name to its value), exactly as
/// the Worker and the Lambda do: [`Settings::from_lookup`] for the store,
/// [`GatewayConfig::from_lookup`] for the gateway, and the [`EventLog`] hooks
/// when `SESSION_LOG_EVENTS` is on. The store's scripts are loaded when the
/// store answers; a store that is down at start-up is not an error (the
/// outage policy handles it per request).
pub async fn gateway_from_lookup(
    get: impl Fn(&str) -> Option<String>,
) -> edge_session::Result<HostGateway> {
    let settings = Settings::from_lookup(&get)?;
    let config = GatewayConfig::from_lookup(&get)?;
    let backend = settings.backend.connect().await?;
    let store = SessionStore::new(backend, settings.session, settings.keys)?;
    if let Err(e) = store.preload_scripts().await {
        log::warn!("edge-session-host: could not preload the store's scripts yet: {e}");
    }
    let log_events = config.log_events;
    let gateway = Gateway::new(store, ReqwestUpstream::new()?, config);
    Ok(if log_events {
        gateway.with_hooks(Arc::new(EventLog))
    } else {
        gateway
    })
}

/// Every path and method, handled by `gateway`.
pub fn router(gateway: Arc<HostGateway>) -> Router {
    Router::new().fallback(handle).with_state(gateway)
}

async fn handle(State(gateway): State<Arc<HostGateway>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body: Bytes = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            let too_large = e.is::<http_body_util::LengthLimitError>();
            let mut response = error_response(
                ErrorCode::BadRequest,
                if too_large {
                    "the request body is too large"
                } else {
                    "the request body could not be read"
                },
            );
            if too_large {
                *response.status_mut() = axum::http::StatusCode::PAYLOAD_TOO_LARGE;
            }
            return response.map(Body::from);
        }
    };
    gateway
        .handle(axum::http::Request::from_parts(parts, body))
        .await
        .map(Body::from)
}

/// Serves `gateway` on `listener` until `shutdown` resolves, then lets the
/// requests in flight finish.
pub async fn serve<F>(
    listener: tokio::net::TcpListener,
    gateway: HostGateway,
    shutdown: F,
) -> io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    axum::serve(listener, router(Arc::new(gateway)))
        .with_graceful_shutdown(shutdown)
        .await
}
