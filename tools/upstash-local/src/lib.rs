//! A local, Upstash-compatible REST endpoint in front of a real `redis-server`, for development
//! and for the tests of edge-session's REST backend.
//!
//! It speaks the wire protocol of Upstash's REST API as the official clients use it: bearer or
//! `?_token=` auth, `POST /` (one command), `POST /pipeline` (not atomic), `POST /multi-exec`
//! (MULTI/EXEC), path-style commands, the JSON result mapping, the `Upstash-Encoding: base64`
//! rule, an `upstash-sync-token` header on every response, a request size limit, and the
//! commands Upstash refuses. On top of that a [`Faults`] handle injects failures (5xx, delays,
//! hangs, cut JSON, plain-text gateway errors) and counts requests, for client tests.
//!
//! It can also behave like a **global database**, whose primary is far away and whose nearby
//! read replica lags:
//!
//! - [`Options::with_primary_delay`] (binary: `--primary-delay-ms N`): every request that needs
//!   the primary (a command Redis flags `write`, a script or script management such as `EVAL`,
//!   `EVALSHA`, `SCRIPT LOAD`, `PUBLISH`, any `/multi-exec`, a pipeline with any of those) waits
//!   that long once before it runs, while reads (`GET`, `HGETALL`, `PTTL`, `ZRANGE`, `EVAL_RO`,
//!   read-only pipelines) are answered at once. The classification comes from Redis's own
//!   command table (`COMMAND`, read at start). [`Stats::delayed`] and [`Stats::immediate`] count
//!   both kinds.
//! - [`Options::with_lagging_replica`] (binary: `--lagging-replica-db N`): reads without a
//!   recent enough `upstash-sync-token` see a stale copy of the data.
//!
//! Scripts may start with Upstash's `#!lua flags=allow-key-locking`: that flag, which
//! redis-server refuses, is removed before the script reaches Redis, and `SCRIPT LOAD`,
//! `EVALSHA` and `SCRIPT EXISTS` keep using the SHA1 of the text the client sent.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let server = upstash_local::spawn(
//!     listener,
//!     upstash_local::Options::new("redis://127.0.0.1:6379", "secret-token"),
//! )
//! .await?;
//! // Point the client at server.url() with the token "secret-token".
//! server.faults().inject(upstash_local::Fault::status(503), 1);
//! assert_eq!(server.faults().requests(), 0);
//! server.shutdown().await?;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod backend;
mod command;
mod encode;
mod faults;
mod replica;
mod routing;
mod scripts;
mod service;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use faults::{Fault, Faults, PlannedFault, Route, Stats};

/// Upstash's request size limit on most plans: 10 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// How long a Redis reply may take by default before the request fails with a 503.
pub const DEFAULT_REDIS_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of one endpoint. Build with [`Options::new`], then adjust fields or use the
/// `with_*` methods.
#[derive(Clone)]
#[non_exhaustive]
pub struct Options {
    /// Where Redis is, e.g. `redis://127.0.0.1:6379` (any URL the `redis` crate accepts).
    pub redis_url: String,
    /// The bearer token clients must present.
    pub token: String,
    /// Largest accepted request body; larger ones get `ERR max request size exceeded`.
    pub max_body_bytes: usize,
    /// Serve the HTTP fault-control endpoints `/__faults` and `/__stats` (behind the token);
    /// without it they answer 404. The in-process [`Faults`] handle works either way.
    pub fault_endpoint: bool,
    /// Per-reply timeout towards Redis; `None` waits forever.
    pub redis_response_timeout: Option<Duration>,
    /// Emulate a lagging read replica in this database number of the same Redis (see
    /// [`Options::with_lagging_replica`]); `None` (the default) serves everything from Redis.
    pub lagging_replica: Option<i64>,
    /// The emulated round trip to a far primary region (see [`Options::with_primary_delay`]);
    /// `None` (the default) or zero answers every request at once.
    pub primary_delay: Option<Duration>,
}

impl Options {
    /// Options with the default limits and the fault endpoint off.
    pub fn new(redis_url: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            redis_url: redis_url.into(),
            token: token.into(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            fault_endpoint: false,
            redis_response_timeout: Some(DEFAULT_REDIS_RESPONSE_TIMEOUT),
            lagging_replica: None,
            primary_delay: None,
        }
    }

    /// Emulates a global database whose primary region is far away: every request that needs
    /// the primary waits `delay` once before it runs, as the round trip to that region would
    /// take. That is a request with a command Redis flags `write` (`SET`, `HSET`, `DEL`,
    /// `EXPIRE`, ...) or `pubsub` (`PUBLISH`), a script or script management (`EVAL`,
    /// `EVALSHA`, `FCALL`, `SCRIPT LOAD`: the `@scripting` commands Redis does not flag
    /// `readonly`), a command Redis does not know, and every `/multi-exec`. A pipeline waits
    /// once, not per command. Requests of reads only (`GET`, `HGETALL`, `HMGET`, `PTTL`,
    /// `ZRANGE`, `EVAL_RO`, ...) and of commands that touch no data (`PING`, `ECHO`, `TIME`) are
    /// answered at once: from the lagging replica when [`Options::lagging_replica`] is set (a
    /// recent `upstash-sync-token` still brings it up to date first), else from Redis.
    ///
    /// [`Stats::delayed`] and [`Stats::immediate`] count the two kinds (with or without a
    /// delay). A request waiting for the primary when the server shuts down gets a 503.
    pub fn with_primary_delay(mut self, delay: Duration) -> Self {
        self.primary_delay = Some(delay);
        self
    }

    /// Emulates a global database whose read replica lags: reads that do not carry a recent
    /// enough `upstash-sync-token` are answered from database `db` of the same Redis, a copy of
    /// the primary database synced only when a request's token asks for writes it lacks (or by
    /// [`Server::sync_replica`]). Everything in `db` is replaced at each sync. See the README.
    pub fn with_lagging_replica(mut self, db: i64) -> Self {
        self.lagging_replica = Some(db);
        self
    }

    /// Sets [`Options::max_body_bytes`].
    pub fn with_max_body_bytes(mut self, max_body_bytes: usize) -> Self {
        self.max_body_bytes = max_body_bytes;
        self
    }

    /// Sets [`Options::fault_endpoint`].
    pub fn with_fault_endpoint(mut self, enabled: bool) -> Self {
        self.fault_endpoint = enabled;
        self
    }

    /// Sets [`Options::redis_response_timeout`].
    pub fn with_redis_response_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.redis_response_timeout = timeout;
        self
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("redis_url", &redact_url(&self.redis_url))
            .field("token", &"<redacted>")
            .field("max_body_bytes", &self.max_body_bytes)
            .field("fault_endpoint", &self.fault_endpoint)
            .field("redis_response_timeout", &self.redis_response_timeout)
            .field("lagging_replica", &self.lagging_replica)
            .field("primary_delay", &self.primary_delay)
            .finish()
    }
}

/// The URL without its user and password.
fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let authority_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            return format!("{scheme}://<redacted>@{}", &rest[at + 1..]);
        }
    }
    url.to_owned()
}

/// A running endpoint. Dropping it starts a graceful shutdown in the background;
/// [`Server::shutdown`] does the same and waits for it.
#[must_use = "dropping the Server shuts the endpoint down"]
pub struct Server {
    addr: SocketAddr,
    faults: Faults,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<io::Result<()>>>,
    app: Arc<service::App>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// The address the endpoint listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL for clients, e.g. `http://127.0.0.1:41234` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The fault plan and request counters of this endpoint.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// With [`Options::lagging_replica`]: brings the replica up to date now, as a replica that
    /// caught up would be. Returns `false` when no replica is emulated.
    ///
    /// # Errors
    ///
    /// Redis failed during the sync.
    pub async fn sync_replica(&self) -> io::Result<bool> {
        let Some(replica) = &self.app.replica else {
            return Ok(false);
        };
        replica
            .sync(self.app.sync_tokens.current())
            .await
            .map_err(io::Error::other)?;
        Ok(true)
    }

    /// With [`Options::lagging_replica`]: how many times the replica was synced (once at start,
    /// then on demand) and how many requests it answered; `None` when no replica is emulated.
    pub fn replica_counts(&self) -> Option<(u64, u64)> {
        self.app.replica.as_ref().map(|replica| replica.counts())
    }

    /// Stops accepting connections, ends requests held by [`Fault::Hang`], [`Fault::Delay`] or
    /// [`Options::primary_delay`] with a 503, lets the others finish, and waits until the server has stopped.
    pub async fn shutdown(mut self) -> io::Result<()> {
        self.shutdown.send_replace(true);
        match self.task.take() {
            Some(task) => task.await.map_err(io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

/// Starts an endpoint on `listener` (on the current Tokio runtime) in front of the Redis at
/// `options.redis_url`.
///
/// Connects to Redis before returning, so a Redis that is not reachable fails here. Bind the
/// listener to `127.0.0.1:0` to get a free port.
///
/// # Errors
///
/// An empty token ([`io::ErrorKind::InvalidInput`]), a listener without a local address, or no
/// connection to Redis.
pub async fn spawn(listener: TcpListener, options: Options) -> io::Result<Server> {
    if options.token.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the token must not be empty",
        ));
    }
    let addr = listener.local_addr()?;
    let backend = backend::Backend::connect(&options.redis_url, options.redis_response_timeout)
        .await
        .map_err(|err| {
            io::Error::other(format!(
                "cannot connect to Redis at {}: {err}",
                redact_url(&options.redis_url)
            ))
        })?;
    let commands = Arc::new(backend.command_table().await.map_err(|err| {
        io::Error::other(format!(
            "cannot read Redis's command table (COMMAND): {err}"
        ))
    })?);
    if commands.is_empty() {
        return Err(io::Error::other(
            "Redis answered COMMAND without any command",
        ));
    }
    let replica = match options.lagging_replica {
        Some(db) => Some(Arc::new(
            replica::Replica::connect(
                &options.redis_url,
                db,
                options.redis_response_timeout,
                Arc::clone(&commands),
            )
            .await
            .map_err(|err| {
                io::Error::other(format!(
                    "cannot set up the lagging replica (database {db}): {err}"
                ))
            })?,
        )),
        None => None,
    };
    let faults = Faults::new();
    let (shutdown, shutdown_rx) = watch::channel(false);
    let app = Arc::new(service::App {
        token: options.token,
        max_body_bytes: options.max_body_bytes,
        fault_endpoint: options.fault_endpoint,
        backend,
        faults: faults.clone(),
        sync_tokens: service::SyncTokens::new(),
        shutdown: shutdown_rx.clone(),
        replica,
        commands,
        primary_delay: options.primary_delay,
        scripts: scripts::Scripts::default(),
    });
    let router = service::router(Arc::clone(&app));
    let mut stop = shutdown_rx;
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|stopping| *stopping).await;
            })
            .await
    });
    Ok(Server {
        addr,
        faults,
        shutdown,
        task: Some(task),
        app,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        let options = Options::new("redis://user:hunter2@localhost:6379/0", "tok-secret");
        let text = format!("{options:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("tok-secret"), "{text}");
        assert!(text.contains("localhost:6379/0"), "{text}");
        assert_eq!(redact_url("redis://localhost"), "redis://localhost");
    }
}
