//! What the benchmark apps share: where to listen, how to serve, and the
//! shape of the three routes.
//!
//! Every app answers the same three requests:
//!
//! - `GET /anon`: no session; answers `ok`.
//! - `POST /login?user=NAME`: signs `NAME` in (a new session, or a
//!   regenerated one when the request carries a live session cookie) and sets
//!   the cookie; answers `ok`.
//! - `GET /incr`: a signed-in request that reads the session's `counter`
//!   field and increments it; answers the new value (401 without a session).

use std::net::SocketAddr;

use axum::Router;

/// The address from the first argument, else `BENCH_LISTEN`, else
/// `127.0.0.1:0`.
pub fn listen_addr() -> Result<SocketAddr, String> {
    let text = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("BENCH_LISTEN").ok())
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    text.parse()
        .map_err(|e| format!("bad listen address {text:?}: {e}"))
}

/// A required environment variable.
pub fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

/// Serves `router` on the address of [`listen_addr`] until SIGTERM or
/// Ctrl-C, after printing `listening on http://ADDR` on stderr.
pub async fn serve(name: &str, router: Router) -> Result<(), String> {
    let addr = listen_addr()?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    eprintln!("{name}: listening on http://{local}");
    axum::serve(listener, router)
        .with_graceful_shutdown(stop_signal())
        .await
        .map_err(|e| e.to_string())
}

async fn stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// The query of `POST /login`.
#[derive(Debug, serde::Deserialize)]
pub struct Login {
    /// The user to sign in.
    pub user: String,
}

/// Runs an app's `main`: prints the error and exits 1 on failure.
pub fn exit_on_error(result: Result<(), String>, name: &str) {
    if let Err(e) = result {
        eprintln!("{name}: {e}");
        std::process::exit(1);
    }
}
