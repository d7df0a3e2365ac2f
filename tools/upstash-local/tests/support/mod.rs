//! Test support: a private redis-server per test and an endpoint in front of it.

#![allow(dead_code, unreachable_pub)]

use std::io::Read as _;
use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use serde_json::Value as Json;
use upstash_local::{Options, Server};

pub const TOKEN: &str = "test-token-0123456789";
const REDIS_SERVER: &str = "/usr/bin/redis-server";

/// A redis-server of our own on a free port, with no persistence, in a temp dir; killed and
/// cleaned up on drop.
pub struct RedisServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

impl RedisServer {
    pub fn start() -> Self {
        let binary = std::env::var("REDIS_SERVER").unwrap_or_else(|_| REDIS_SERVER.to_owned());
        let mut last_log = String::new();
        // The port is free when picked but could be taken before redis-server binds it: retry.
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("temp dir");
            let port = free_port();
            let log = dir.path().join("redis.log");
            let mut child = Command::new(&binary)
                .arg("--port")
                .arg(port.to_string())
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                // Two databases: the lagging-replica tests use the second.
                .args(["--daemonize", "no", "--databases", "2"])
                .arg("--dir")
                .arg(dir.path())
                .arg("--logfile")
                .arg(&log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start redis-server");
            if wait_ready(&mut child, &log) {
                return Self {
                    child,
                    port,
                    _dir: dir,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            last_log = std::fs::read_to_string(&log).unwrap_or_default();
        }
        panic!("redis-server did not start; last log:\n{last_log}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A direct client connection, to check what the endpoint did.
    pub async fn direct(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("direct connection")
    }
}

/// Ready when our own log file says so (only our process writes it, so a foreign server that
/// happens to hold the port cannot fool us) and the process is still running.
fn wait_ready(child: &mut Child, log: &PathBuf) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return false;
        }
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(log) {
            let _ = file.read_to_string(&mut text);
        }
        if text.contains("Ready to accept connections") {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One test's world: its redis-server, an endpoint in front of it, an HTTP client.
pub struct Env {
    pub server: Server,
    pub redis: RedisServer,
    pub http: reqwest::Client,
}

/// A reply as the tests look at it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Json {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!(
                "not JSON ({err}): {:?} (status {})",
                String::from_utf8_lossy(&self.body),
                self.status
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn sync_token(&self) -> String {
        self.headers
            .get("upstash-sync-token")
            .and_then(|value| value.to_str().ok())
            .expect("upstash-sync-token header")
            .to_owned()
    }
}

impl Env {
    pub async fn start() -> Self {
        Self::start_with(|options| options).await
    }

    pub async fn start_with(configure: impl FnOnce(Options) -> Options) -> Self {
        let redis = RedisServer::start();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let server = upstash_local::spawn(listener, configure(Options::new(redis.url(), TOKEN)))
            .await
            .expect("spawn endpoint");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client");
        Self {
            server,
            redis,
            http,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.server.url(), path)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("HTTP request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.expect("HTTP body").to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    /// POST with the bearer token and a JSON body.
    pub async fn post(&self, path: &str, body: Json) -> Reply {
        self.send(
            self.http
                .post(self.url(path))
                .bearer_auth(TOKEN)
                .json(&body),
        )
        .await
    }

    /// Same, with `Upstash-Encoding: base64`.
    pub async fn post_b64(&self, path: &str, body: Json) -> Reply {
        self.send(
            self.http
                .post(self.url(path))
                .bearer_auth(TOKEN)
                .header("upstash-encoding", "base64")
                .json(&body),
        )
        .await
    }

    /// POST with the bearer token, a JSON body and, if given, `token` as `upstash-sync-token`.
    pub async fn post_synced(&self, path: &str, body: Json, token: Option<&str>) -> Reply {
        let mut request = self
            .http
            .post(self.url(path))
            .bearer_auth(TOKEN)
            .json(&body);
        if let Some(token) = token {
            request = request.header("upstash-sync-token", token);
        }
        self.send(request).await
    }

    /// `POST /` with one command; the `result` or panics on anything but HTTP 200.
    pub async fn cmd(&self, command: Json) -> Json {
        let reply = self.post("/", command.clone()).await;
        assert_eq!(reply.status, 200, "{command}: {}", reply.text());
        reply.json()["result"].clone()
    }
}

/// The `upstash-local` binary, started with `--listen 127.0.0.1:0` in front of `redis` and with
/// `args` added; killed on drop if still running.
pub struct Binary {
    pub child: Child,
    /// The base URL from its start line.
    pub url: String,
}

impl Binary {
    pub async fn start(redis: &RedisServer, args: &[&str]) -> Self {
        use std::io::BufRead as _;
        let mut child = Command::new(env!("CARGO_BIN_EXE_upstash-local"))
            .args(["--listen", "127.0.0.1:0", "--redis-url"])
            .arg(redis.url())
            .args(["--token", TOKEN])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start upstash-local");
        let stdout = child.stdout.take().expect("stdout");
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufReader::new(stdout)
                .read_line(&mut line)
                .map(|_| line)
        })
        .await
        .expect("reader")
        .expect("start line");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("start line: {line:?}"))
            .to_owned();
        Self { child, url }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
