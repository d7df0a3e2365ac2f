//! Test support: real servers started by the tests themselves, on free ports,
//! cleaned up on drop. Nothing here talks to a Redis it did not start.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use edge_session::backend::{Command as RedisCommand, Reply, Retry};
use edge_session::{
    AnyBackend, Backend, Changes, ClientInfo, KeyRing, SessionConfig, SessionStore, SessionToken,
};

pub mod cluster;
pub mod gateway;

/// Runs each named `async fn name(kind: Kind)` of the calling module as one
/// test per backend, in modules `direct` and `rest`.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod direct {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Kind::Direct).await })*
        }
        mod rest {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Kind::Rest).await })*
        }
    };
}

/// Asserts the session cookie attributes of a `Set-Cookie` value.
pub fn assert_secure_cookie(set_cookie: &str) {
    for attr in [
        "__Host-session=",
        "Secure",
        "HttpOnly",
        "SameSite=Lax",
        "Path=/",
    ] {
        assert!(set_cookie.contains(attr), "{set_cookie} lacks {attr}");
    }
}

pub const SECRETS: &str = "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
pub const ROTATED: &str = "k2:ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=,k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
pub const REST_TOKEN: &str = "test-rest-token";

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A redis-server of our own, killed and removed on drop.
pub struct RedisServer {
    child: Child,
    dir: PathBuf,
    pub port: u16,
    /// The other masters when this is the first node of a cluster
    /// ([`cluster::start_cluster`]); dropped with it.
    pub peers: Vec<RedisServer>,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Self {
        let binary = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into());
        for _ in 0..5 {
            let port = free_port();
            let dir = std::env::temp_dir()
                .join(format!("edge-session-test-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let child = Command::new(&binary)
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .arg("--dir")
                .arg(&dir)
                .args(extra)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server must be installed (scripts/test installs it)");
            let mut server = Self {
                child,
                dir,
                port,
                peers: Vec::new(),
            };
            if server.wait_ready() {
                return server;
            }
        }
        panic!("could not start redis-server");
    }

    fn wait_ready(&mut self) -> bool {
        // False: the port was taken or the flags are bad; try another port.
        let url = self.url();
        wait_ready(&mut self.child, &url, Duration::from_secs(10))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops the server (an outage); dropping it later is harmless.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A plain connection for inspecting what the store left in Redis.
    pub fn inspect(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }

    /// This server and its cluster peers.
    pub fn nodes(&self) -> impl Iterator<Item = &RedisServer> {
        std::iter::once(self).chain(&self.peers)
    }

    /// The URLs of [`Self::nodes`].
    pub fn node_urls(&self) -> Vec<String> {
        self.nodes().map(RedisServer::url).collect()
    }

    /// Commands the server (every node of a cluster) executed since the last
    /// `CONFIG RESETSTAT`, by name.
    pub fn command_counts(&self) -> std::collections::BTreeMap<String, u64> {
        let mut counts = std::collections::BTreeMap::new();
        for node in self.nodes() {
            let info: String = redis::cmd("INFO")
                .arg("commandstats")
                .query(&mut node.inspect())
                .unwrap();
            for line in info.lines() {
                let Some(rest) = line.strip_prefix("cmdstat_") else {
                    continue;
                };
                let Some((name, stats)) = rest.split_once(':') else {
                    continue;
                };
                let calls = stats.split(',').find_map(|kv| kv.strip_prefix("calls="));
                if let Some(calls) = calls.and_then(|c| c.parse::<u64>().ok()) {
                    *counts.entry(name.to_owned()).or_insert(0) += calls;
                }
            }
        }
        counts
    }

    pub fn reset_stats(&self) {
        for node in self.nodes() {
            let _: () = redis::cmd("CONFIG")
                .arg("RESETSTAT")
                .query(&mut node.inspect())
                .unwrap();
        }
    }

    /// Commands executed other than the ones the test's own inspection uses.
    pub fn store_commands(&self) -> u64 {
        self.command_counts()
            .into_iter()
            .filter(|(name, _)| {
                !matches!(
                    name.as_str(),
                    "info"
                        | "config|resetstat"
                        | "ping"
                        | "client|setinfo"
                        | "hello"
                        | "cluster|slots"
                        | "cluster|info"
                )
            })
            .map(|(_, n)| n)
            .sum()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Which backend a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Direct,
    Rest,
}

/// A backend wrapper that counts round trips and commands. It forwards
/// everything to the real backend.
#[derive(Debug, Clone)]
pub struct Counting<B> {
    inner: B,
    trips: Arc<AtomicUsize>,
    commands: Arc<AtomicUsize>,
}

impl<B> Counting<B> {
    pub fn round_trips(&self) -> usize {
        self.trips.load(Ordering::SeqCst)
    }

    pub fn commands(&self) -> usize {
        self.commands.load(Ordering::SeqCst)
    }

    pub fn inner(&self) -> &B {
        &self.inner
    }
}

impl<B: Backend> Backend for Counting<B> {
    async fn pipeline(
        &self,
        commands: &[RedisCommand],
        retry: Retry,
    ) -> edge_session::Result<Vec<Reply>> {
        self.trips.fetch_add(1, Ordering::SeqCst);
        self.commands.fetch_add(commands.len(), Ordering::SeqCst);
        self.inner.pipeline(commands, retry).await
    }

    async fn transaction(
        &self,
        commands: &[RedisCommand],
        retry: Retry,
    ) -> edge_session::Result<Vec<Reply>> {
        self.trips.fetch_add(1, Ordering::SeqCst);
        self.commands.fetch_add(commands.len(), Ordering::SeqCst);
        self.inner.transaction(commands, retry).await
    }
}

pub type Store = SessionStore<Counting<AnyBackend>>;

/// A redis-server, optionally the local REST endpoint in front of it, and a
/// store over the chosen backend.
pub struct Harness {
    pub kind: Kind,
    pub rest: Option<upstash_local::Server>,
    pub redis: RedisServer,
    pub store: Store,
}

/// Test defaults: short lifetimes are set per test; slides on every read.
pub fn test_config() -> SessionConfig {
    let mut config = SessionConfig::default();
    config.touch_interval = Duration::ZERO;
    config
}

impl Harness {
    pub async fn start(kind: Kind) -> Self {
        Self::with_config(kind, test_config()).await
    }

    pub async fn with_config(kind: Kind, mut config: SessionConfig) -> Self {
        // Direct, inside `cluster::on_cluster`: a local 3-master Redis
        // Cluster, and the store in cluster mode.
        let redis = if kind == Kind::Direct && cluster::requested() {
            config.cluster = true;
            cluster::start_cluster(3)
        } else {
            RedisServer::start()
        };
        let (rest, backend) = Self::backend_for(kind, &redis).await;
        let store =
            SessionStore::new(counting(backend), config, KeyRing::parse(SECRETS).unwrap()).unwrap();
        Self {
            kind,
            rest,
            redis,
            store,
        }
    }

    pub async fn backend_for(
        kind: Kind,
        redis: &RedisServer,
    ) -> (Option<upstash_local::Server>, AnyBackend) {
        match kind {
            // A server with peers is a cluster.
            Kind::Direct if !redis.peers.is_empty() => (
                None,
                AnyBackend::Cluster(
                    edge_session::backend::ClusterBackend::connect(&redis.node_urls())
                        .await
                        .unwrap(),
                ),
            ),
            Kind::Direct => (
                None,
                AnyBackend::Direct(
                    edge_session::backend::DirectBackend::connect(&redis.url())
                        .await
                        .unwrap(),
                ),
            ),
            Kind::Rest => {
                let server = spawn_rest(redis).await;
                let config = edge_session::backend::RestConfig::new(server.url(), REST_TOKEN);
                let backend = edge_session::backend::RestBackend::new(config).unwrap();
                (Some(server), AnyBackend::Rest(backend))
            }
        }
    }

    /// A second backend of the same kind over the same Redis (and the same REST endpoint).
    pub async fn backend_for_existing(h: &Harness) -> (Option<upstash_local::Server>, AnyBackend) {
        match h.kind {
            Kind::Direct => Self::backend_for(Kind::Direct, &h.redis).await,
            Kind::Rest => {
                let url = h.rest.as_ref().unwrap().url();
                let config = edge_session::backend::RestConfig::new(url, REST_TOKEN);
                (
                    None,
                    AnyBackend::Rest(edge_session::backend::RestBackend::new(config).unwrap()),
                )
            }
        }
    }

    /// A second store over the same Redis with other settings (e.g. another key ring).
    pub async fn other_store(&self, mut config: SessionConfig, secrets: &str) -> Store {
        // On a cluster, every store runs cluster mode.
        config.cluster |= !self.redis.peers.is_empty();
        let (_, backend) = Self::backend_for_existing(self).await;
        SessionStore::new(counting(backend), config, KeyRing::parse(secrets).unwrap()).unwrap()
    }

    pub fn trips(&self) -> usize {
        self.store.backend().round_trips()
    }

    /// A connection for inspection (on a cluster, routed by key).
    pub fn inspect(&self) -> cluster::Inspector {
        cluster::Inspector::of(&self.redis)
    }

    /// Every key in the database, on every node of a cluster (SCAN,
    /// test-side only).
    pub fn all_keys(&self) -> Vec<String> {
        cluster::keys_of_every_node(&self.redis)
    }

    /// Every key except the daily statistics (counters and HyperLogLogs,
    /// which outlive the sessions they counted by design).
    pub fn data_keys(&self) -> Vec<String> {
        self.all_keys()
            .into_iter()
            .filter(|k| !k.contains("{g}:st:"))
            .collect()
    }

    pub fn pttl(&self, key: &str) -> i64 {
        redis::cmd("PTTL")
            .arg(key)
            .query(&mut self.inspect())
            .unwrap()
    }

    /// Signs `user` in, from the session of `current` if given, with no
    /// other change: the new session's token.
    pub async fn sign_in(&self, current: Option<&SessionToken>, user: &str) -> SessionToken {
        self.store
            .login(current, user, &Changes::new(), &ClientInfo::default())
            .await
            .unwrap()
            .0
    }
}

/// Waits up to `limit` until the redis-server `child` answers PING at `url`;
/// false when it exits first or never answers.
pub fn wait_ready(child: &mut Child, url: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if let Ok(client) = redis::Client::open(url)
            && let Ok(mut c) = client.get_connection()
            && redis::cmd("PING").query::<String>(&mut c).is_ok()
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// The local Upstash-compatible endpoint in front of `redis`, on a free port.
pub async fn spawn_rest(redis: &RedisServer) -> upstash_local::Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let options = upstash_local::Options::new(redis.url(), REST_TOKEN);
    upstash_local::spawn(listener, options).await.unwrap()
}

pub fn counting(backend: AnyBackend) -> Counting<AnyBackend> {
    Counting {
        inner: backend,
        trips: Arc::default(),
        commands: Arc::default(),
    }
}

/// Builds a `Cookie` header from a `Set-Cookie` value.
pub fn cookie_header(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}
