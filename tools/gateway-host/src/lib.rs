//! The edge-session gateway as a native streaming reverse proxy: the same
//! [`Gateway`] the Cloudflare Worker and the AWS Lambda host, built from the
//! same environment variables ([`Settings`] and [`GatewayConfig`]), served
//! over HTTP/1.1 (keep-alive, upgrades) by hyper, the origin reached over a
//! pooled hyper client ([`OriginClient`]).
//!
//! The gateway reads and changes heads only; the host streams the bodies:
//!
//! - **Both ways, untouched.** The client's request body goes to the origin
//!   as it arrives, the origin's response body to the client as it arrives
//!   (server-sent events, downloads, uploads), with hyper's back-pressure:
//!   memory does not grow with a body's size.
//! - **`SESSION_MAX_BODY_BYTES`** (unset: no limit). A `Content-Length` over
//!   it is refused by the gateway (`413 body_too_large`, `502
//!   origin_response_too_large`); a body without one is cut off as it
//!   streams: an upload past the limit is aborted (the origin sees a broken
//!   request, the client `413 body_too_large`), a download past it ends
//!   truncated.
//! - **WebSocket** and other `Upgrade` handshakes: when the origin answers
//!   `101`, the client gets it (with its session cookie changes) and both
//!   connections are bridged byte for byte.
//! - **Timeouts**: `SESSION_ORIGIN_CONNECT_TIMEOUT_MS` for the TCP connect to
//!   the origin and `SESSION_ORIGIN_TIMEOUT_MS` for its response head, timed
//!   from the end of the upload; past either, `504 origin_timeout`. An origin
//!   that cannot be reached is `502 origin_unavailable`; one that fails
//!   mid-body ends the client's response there (truncated, never a hang).
//! - The peer's IP address is the request's [`ClientAddr`] (for
//!   `SESSION_BIND_SUBNET` when no trusted `SESSION_CLIENT_IP_HEADER` is
//!   configured), and [`serve`] stops gracefully.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let gateway = edge_session_host::gateway_from_env().await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! edge_session_host::serve(listener, gateway, std::future::pending()).await?;
//! # Ok(())
//! # }
//! ```
//!
//! [`ClientAddr`]: edge_session::gateway::ClientAddr
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod body;
mod origin;
mod pool;
mod proxy;
mod server;

use std::sync::Arc;

use edge_session::gateway::{EventLog, Gateway, GatewayConfig};
use edge_session::{SessionStore, Settings};

pub use body::{BodyTooLarge, BoxError, Capped, Direction};
pub use origin::{ORIGIN_IDLE_TIMEOUT, OriginBody, OriginClient};
pub use proxy::{HostBody, HostGateway, LINGER_BYTES, LINGER_TIME};
pub use server::serve;

/// Builds the gateway from the process environment (see [`gateway_from_lookup`]).
pub async fn gateway_from_env() -> edge_session::Result<HostGateway> {
    gateway_from_lookup(|name| std::env::var(name).ok()).await
}

/// Builds the gateway from `get` (a variable name to its value), exactly as
/// the Worker and the Lambda do: [`Settings::from_lookup`] for the store,
/// [`GatewayConfig::from_lookup`] for the gateway (`ORIGIN_URL` is required:
/// `http://` or `https://`), and the [`EventLog`] hooks when
/// `SESSION_LOG_EVENTS` is on. The store's scripts are loaded when the store
/// answers. A REST store that is down at start-up is not an error (the
/// outage policy handles it per request); the direct backend connects here
/// and fails when Redis does not answer.
pub async fn gateway_from_lookup(
    get: impl Fn(&str) -> Option<String>,
) -> edge_session::Result<HostGateway> {
    let settings = Settings::from_lookup(&get)?;
    let config = GatewayConfig::from_lookup(&get)?;
    config.origin.url()?;
    let backend = settings.backend.connect().await?;
    let store = SessionStore::new(backend, settings.session, settings.keys)?;
    if let Err(e) = store.preload_scripts().await {
        log::warn!("edge-session-host: could not preload the store's scripts yet: {e}");
    }
    let log_events = config.log_events;
    let gateway = Gateway::new(store, config);
    HostGateway::new(if log_events {
        gateway.with_hooks(Arc::new(EventLog))
    } else {
        gateway
    })
}
