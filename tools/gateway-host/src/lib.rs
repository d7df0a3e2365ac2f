//! The edge-session gateway as a plain native HTTP server: the same
//! [`Gateway`] the Cloudflare Worker and the AWS Lambda host, built from the
//! same environment variables ([`Settings`] and [`GatewayConfig`]), served by
//! axum (HTTP/1.1, keep-alive) with the origin reached over reqwest.
//!
//! What the host adds to the gateway: the peer's IP address as the request's
//! [`ClientAddr`] (for `SESSION_BIND_SUBNET` when no trusted
//! `SESSION_CLIENT_IP_HEADER` is configured), request bodies read up to
//! `SESSION_MAX_BODY_BYTES` and no further (`413 body_too_large` past it, as
//! the gateway answers), and a graceful stop: [`serve`] stops accepting when
//! its shutdown future resolves and lets the requests in flight finish.
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

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use bytes::Bytes;
use edge_session::gateway::{
    ClientAddr, ErrorCode, EventLog, Gateway, GatewayConfig, ReqwestUpstream, error_response,
};
use edge_session::{AnyBackend, SessionStore, Settings};
use http_body_util::{BodyExt as _, Limited};

/// The gateway this host serves.
pub type HostGateway = Gateway<AnyBackend, ReqwestUpstream>;

/// Builds the gateway from the process environment (see [`gateway_from_lookup`]).
pub async fn gateway_from_env() -> edge_session::Result<HostGateway> {
    gateway_from_lookup(|name| std::env::var(name).ok()).await
}

/// Builds the gateway from `get` (a variable name to its value), exactly as
/// the Worker and the Lambda do: [`Settings::from_lookup`] for the store,
/// [`GatewayConfig::from_lookup`] for the gateway, and the [`EventLog`] hooks
/// when `SESSION_LOG_EVENTS` is on. The store's scripts are loaded when the
/// store answers. A REST store that is down at start-up is not an error (the
/// outage policy handles it per request); the direct backend connects here
/// and fails when Redis does not answer.
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
    let upstream = ReqwestUpstream::new()?.with_max_body_bytes(config.max_body_bytes);
    let gateway = Gateway::new(store, upstream, config);
    Ok(if log_events {
        gateway.with_hooks(Arc::new(EventLog))
    } else {
        gateway
    })
}

/// Every path and method, handled by `gateway`. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()` (as [`serve`] does)
/// for the peer's address to reach the gateway; without it requests carry no
/// [`ClientAddr`].
pub fn router(gateway: Arc<HostGateway>) -> Router {
    Router::new().fallback(handle).with_state(gateway)
}

async fn handle(State(gateway): State<Arc<HostGateway>>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let limit = gateway.config().max_body_bytes;
    let body: Bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return error_response(
                ErrorCode::BodyTooLarge,
                &format!("the request body is over the limit of {limit} bytes"),
            )
            .map(Body::from);
        }
        Err(e) => {
            log::debug!("edge-session-host: request body not read: {e}");
            return error_response(ErrorCode::BadRequest, "the request body could not be read")
                .map(Body::from);
        }
    };
    if let Some(ConnectInfo(addr)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() {
        let ip = addr.ip();
        parts.extensions.insert(ClientAddr(ip));
    }
    gateway
        .handle(axum::http::Request::from_parts(parts, body))
        .await
        .map(Body::from)
}

/// Serves `gateway` on `listener` (HTTP/1.1 with keep-alive) until `shutdown`
/// resolves, then stops accepting connections, lets the requests in flight
/// finish and returns.
pub async fn serve<F>(
    listener: tokio::net::TcpListener,
    gateway: HostGateway,
    shutdown: F,
) -> io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let app = router(Arc::new(gateway)).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
