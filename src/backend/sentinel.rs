//! Redis Sentinel backend: direct Redis that follows a failover (`redis`
//! crate's sentinel client; native only, feature `direct`).
//!
//! The master's address is asked of the sentinels, then one multiplexed
//! connection to it serves every batch (one round trip each, as with
//! [`super::DirectBackend`]). When a batch fails at the connection level
//! (refused, reset, timed out) or a reply says `READONLY` (the node was
//! demoted to a replica), the connection is dropped and the next batch asks
//! the sentinels again, so the backend moves to the promoted replica by itself.
//!
//! Retries follow [`Retry`]: an idempotent batch is sent again; a batch with
//! increments only when it provably did not run (no connection could be made,
//! or every reply was `READONLY`). During a failover, requests fail until the
//! sentinels have promoted a replica: see the README ("Redis Cluster /
//! Sentinel") for the window measured here.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};

use super::direct::{Boxed, send, to_pipeline};
use super::{Backend, Command, Reply, Retry};
use crate::error::{Error, Result};
use crate::platform::{sleep, with_timeout};

/// The Sentinel backend. Cheap to clone; build it once and share it.
#[derive(Clone)]
pub struct SentinelBackend {
    shared: Arc<Shared>,
}

struct Shared {
    sentinel: tokio::sync::Mutex<SentinelClient>,
    current: Mutex<Option<Current>>,
    generation: AtomicU64,
    timeout: Duration,
    max_retries: u32,
}

/// The connection to the master as last resolved.
#[derive(Clone)]
struct Current {
    generation: u64,
    connection: MultiplexedConnection,
}

impl fmt::Debug for SentinelBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URLs and the password are not kept.
        f.debug_struct("SentinelBackend")
            .field("timeout", &self.shared.timeout)
            .field("max_retries", &self.shared.max_retries)
            .field("master_lookups", &self.master_lookups())
            .finish_non_exhaustive()
    }
}

impl SentinelBackend {
    /// Connects to the master named `master` as the `sentinels`
    /// (`redis://[:password@]host:port`, the password being the sentinel's)
    /// report it.
    pub async fn connect<S: AsRef<str>>(sentinels: &[S], master: &str) -> Result<Self> {
        Self::connect_with(sentinels, master, None, Duration::from_secs(3), 2).await
    }

    /// Connects with the data nodes' `password` (if they need one), a
    /// per-attempt `timeout` and `max_retries` extra attempts.
    pub async fn connect_with<S: AsRef<str>>(
        sentinels: &[S],
        master: &str,
        password: Option<&str>,
        timeout: Duration,
        max_retries: u32,
    ) -> Result<Self> {
        if sentinels.is_empty() {
            return Err(Error::config("REDIS_SENTINELS", "names no sentinel"));
        }
        if master.is_empty() {
            return Err(Error::config("REDIS_SENTINEL_MASTER", "is empty"));
        }
        let mut node = redis::RedisConnectionInfo::default();
        if let Some(password) = password {
            node = node.set_password(password);
        }
        let node = SentinelNodeConnectionInfo::default().set_redis_connection_info(node);
        let urls: Vec<&str> = sentinels.iter().map(AsRef::as_ref).collect();
        let client = SentinelClient::build(
            urls,
            master.to_owned(),
            Some(node),
            SentinelServerType::Master,
        )
        .map_err(|e| {
            // The redis error may echo a URL, which may hold a password.
            Error::config(
                "REDIS_SENTINELS",
                format!("not a list of sentinel URLs ({:?})", e.kind()),
            )
        })?;
        let backend = Self {
            shared: Arc::new(Shared {
                sentinel: tokio::sync::Mutex::new(client),
                current: Mutex::new(None),
                generation: AtomicU64::new(0),
                timeout,
                max_retries,
            }),
        };
        {
            // Boxed: the lookup and connect futures are deep (see `Boxed`).
            let first: std::pin::Pin<
                Box<dyn std::future::Future<Output = Result<Current>> + Send + '_>,
            > = Box::pin(backend.connection());
            first.await?;
        }
        Ok(backend)
    }

    /// How many times the master was looked up through the sentinels (1 after
    /// connecting; one more per failover followed).
    pub fn master_lookups(&self) -> u64 {
        self.shared.generation.load(Ordering::SeqCst)
    }

    fn current(&self) -> Option<Current> {
        self.shared.current.lock().ok()?.clone()
    }

    /// The connection to the master, asking the sentinels for it if there is
    /// none (one lookup at a time).
    async fn connection(&self) -> Result<Current> {
        if let Some(current) = self.current() {
            return Ok(current);
        }
        let timeout = self.shared.timeout;
        with_timeout(timeout, async {
            let mut sentinel = self.shared.sentinel.lock().await;
            if let Some(current) = self.current() {
                return Ok(current); // resolved while this task waited
            }
            let client = sentinel.async_get_client().await?;
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout));
            let connection = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            let current = Current {
                generation: self.shared.generation.fetch_add(1, Ordering::SeqCst) + 1,
                connection,
            };
            if let Ok(mut slot) = self.shared.current.lock() {
                *slot = Some(current.clone());
            }
            Ok(current)
        })
        .await
    }

    /// Drops the connection of `generation` so that the next batch looks the
    /// master up again (a newer connection is kept).
    fn forget(&self, generation: u64) {
        if let Ok(mut slot) = self.shared.current.lock()
            && slot.as_ref().is_some_and(|c| c.generation == generation)
        {
            *slot = None;
        }
    }

    async fn run(&self, commands: &[Command], atomic: bool, retry: Retry) -> Result<Vec<Reply>> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let pipe = to_pipeline(commands, atomic);
        let max_retries = self.shared.max_retries;
        let mut attempt = 0;
        loop {
            let again = attempt < max_retries;
            let current = match self.connection().await {
                Ok(current) => current,
                // Nothing was sent: any batch may try again.
                Err(error) if again && error.is_retryable() => {
                    sleep(Duration::from_millis(25 << attempt)).await;
                    attempt += 1;
                    continue;
                }
                Err(error) => return Err(error),
            };
            let result = send(
                current.connection.clone(),
                &pipe,
                commands.len(),
                self.shared.timeout,
            )
            .await;
            match result {
                Ok(replies) => {
                    let readonly = replies.iter().filter(|r| is_readonly(r)).count();
                    if readonly == 0 {
                        return Ok(replies);
                    }
                    // A demoted master: look it up again. Commands refused
                    // with READONLY did not run.
                    self.forget(current.generation);
                    let rerun = retry == Retry::Idempotent || readonly == replies.len();
                    if !(again && rerun) {
                        return Ok(replies);
                    }
                }
                Err(error) => {
                    let readonly =
                        matches!(&error, Error::Direct(e) if e.code() == Some("READONLY"));
                    if error.is_retryable() || readonly {
                        self.forget(current.generation);
                    }
                    let rerun = retry == Retry::Idempotent && (error.is_retryable() || readonly);
                    if !(again && rerun) {
                        return Err(error);
                    }
                }
            }
            sleep(Duration::from_millis(25 << attempt)).await;
            attempt += 1;
        }
    }
}

fn is_readonly(reply: &Reply) -> bool {
    matches!(reply, Err(e) if e.code() == "READONLY")
}

impl Backend for SentinelBackend {
    async fn pipeline(&self, commands: &[Command], retry: Retry) -> Result<Vec<Reply>> {
        let run: Boxed<'_> = Box::pin(self.run(commands, false, retry));
        run.await
    }

    async fn transaction(&self, commands: &[Command], retry: Retry) -> Result<Vec<Reply>> {
        let run: Boxed<'_> = Box::pin(self.run(commands, true, retry));
        run.await
    }
}
