//! The `edge-session-host` binary as a deployment runs it: a process started
//! with the gateway's environment variables plus `GATEWAY_LISTEN` and
//! `GATEWAY_LOG`, in front of an origin of the test's own, over a
//! redis-server of the test's own (direct backend). Requests go over real
//! HTTP/1.1 connections (hyper's client), so keep-alive is what a client
//! sees, and the process gets a real SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::routing::{get, post};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::Notify;

const SECRETS: &str = "k1:aG9zdC10ZXN0cy1zaWduaW5nLWtleS0zMi1ieXRlcyE=";

/// A redis-server of this test on a free port, stopped and removed on drop.
struct Redis {
    child: std::process::Child,
    dir: std::path::PathBuf,
    port: u16,
}

impl Redis {
    async fn start() -> Self {
        for attempt in 0..5 {
            let port = free_port();
            let dir = std::env::temp_dir().join(format!(
                "edge-session-host-test-{}-{port}-{attempt}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let binary =
                std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into());
            let mut child = std::process::Command::new(binary)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server must be installed");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if ping(port).await {
                    return Self { child, dir, port };
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&dir);
        }
        panic!("could not start redis-server");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// True when a Redis answers `PING` on `port`.
async fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    if stream.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).await.is_ok() && &reply == b"+PONG\r\n"
}

/// The origin behind the host: `/login` signs `alice` in, `/me` answers
/// with the user the gateway names (`-` for none), `/slow` answers once
/// released, `/echo` answers with the length of the body it got.
struct Origin {
    url: String,
    slow_started: Arc<Notify>,
    slow_release: Arc<Notify>,
}

#[derive(Clone)]
struct OriginState {
    slow_started: Arc<Notify>,
    slow_release: Arc<Notify>,
}

impl Origin {
    async fn start() -> Self {
        let state = OriginState {
            slow_started: Arc::new(Notify::new()),
            slow_release: Arc::new(Notify::new()),
        };
        let app = Router::new()
            .route(
                "/login",
                post(|| async { ([("x-session-login", "alice")], "ok") }),
            )
            .route(
                "/me",
                get(|headers: HeaderMap| async move {
                    headers
                        .get("x-session-user")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-")
                        .to_owned()
                }),
            )
            .route(
                "/slow",
                get(|State(state): State<OriginState>| async move {
                    state.slow_started.notify_one();
                    state.slow_release.notified().await;
                    "slow done"
                }),
            )
            .route(
                "/echo",
                post(|body: Bytes| async move { body.len().to_string() }),
            )
            .layer(DefaultBodyLimit::disable())
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url,
            slow_started: state.slow_started,
            slow_release: state.slow_release,
        }
    }
}

/// One `edge-session-host` process, killed on drop if still running.
struct Host {
    child: Child,
    addr: SocketAddr,
}

impl Host {
    /// Starts the binary with the gateway's variables for `origin` and
    /// `redis`, plus `extra`, listening on a free port (`GATEWAY_LISTEN`
    /// with port 0); returns once it printed its start line.
    async fn start(origin: &Origin, redis: &Redis, extra: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_edge-session-host"));
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("ORIGIN_URL", &origin.url)
            .env("REDIS_URL", redis.url())
            .env("SESSION_SECRETS", SECRETS)
            .env("GATEWAY_LISTEN", "127.0.0.1:0")
            .env("GATEWAY_LOG", "warn")
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("the edge-session-host binary");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        tokio::time::timeout(
            Duration::from_secs(30),
            BufReader::new(stdout).read_line(&mut line),
        )
        .await
        .expect("the start line within 30 s")
        .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected start line {line:?}"))
            .parse()
            .unwrap();
        Self { child, addr }
    }

    /// A new HTTP/1.1 connection to the host from `127.0.0.1`.
    async fn connect(&self) -> Connection {
        self.connect_from(IpAddr::V4(Ipv4Addr::LOCALHOST)).await
    }

    /// A new HTTP/1.1 connection to the host from the local address `from`
    /// (any 127.0.0.0/8 address works on loopback).
    async fn connect_from(&self, from: IpAddr) -> Connection {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(from, 0)).unwrap();
        let stream = socket.connect(self.addr).await.unwrap();
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        Connection {
            sender,
            host: self.addr.to_string(),
        }
    }

    fn terminate(&self) {
        let pid = self.child.id().expect("a running host");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

/// One client connection: every request sent on it reuses it.
struct Connection {
    sender: SendRequest<Full<Bytes>>,
    host: String,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    /// The `name=value` of the session cookie it sets, if any.
    fn session_cookie(&self) -> Option<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("__Host-session="))
            .and_then(|v| v.split(';').next())
            .map(str::to_owned)
    }
}

impl Connection {
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        cookie: Option<&str>,
        body: Vec<u8>,
    ) -> hyper::Result<Answer> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        let request = request.body(Full::new(Bytes::from(body))).unwrap();
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    async fn get(&mut self, path: &str, cookie: Option<&str>) -> Answer {
        self.send(Method::GET, path, cookie, Vec::new())
            .await
            .unwrap()
    }

    async fn post(&mut self, path: &str, cookie: Option<&str>, body: Vec<u8>) -> Answer {
        self.send(Method::POST, path, cookie, body).await.unwrap()
    }
}

#[tokio::test]
async fn a_session_lives_across_requests_on_one_keep_alive_connection() {
    let redis = Redis::start().await;
    let origin = Origin::start().await;
    let host = Host::start(&origin, &redis, &[]).await;
    let mut connection = host.connect().await;

    let anonymous = connection.get("/me", None).await;
    assert_eq!(
        (anonymous.status, anonymous.body.as_str()),
        (StatusCode::OK, "-")
    );
    assert!(anonymous.session_cookie().is_none());

    let login = connection.post("/login", None, Vec::new()).await;
    assert_eq!(login.status, StatusCode::OK);
    let cookie = login.session_cookie().expect("a session cookie on login");

    // Same connection (hyper's http1 sender has exactly one): the host kept it open.
    for _ in 0..3 {
        let me = connection.get("/me", Some(&cookie)).await;
        assert_eq!((me.status, me.body.as_str()), (StatusCode::OK, "alice"));
    }
}

#[tokio::test]
async fn sigterm_lets_the_request_in_flight_finish_then_exits_zero() {
    let redis = Redis::start().await;
    let origin = Origin::start().await;
    let mut host = Host::start(&origin, &redis, &[]).await;
    let mut connection = host.connect().await;

    let started = origin.slow_started.clone();
    let in_flight = tokio::spawn(async move { connection.get("/slow", None).await });
    started.notified().await; // the request reached the origin
    host.terminate();
    // The host stops accepting (it drops its listener) but waits for /slow.
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(host.addr).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "still accepting 10 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        host.child.try_wait().unwrap().is_none(),
        "exited with a request in flight"
    );
    origin.slow_release.notify_one();

    let answer = in_flight.await.unwrap();
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::OK, "slow done")
    );
    let status = tokio::time::timeout(Duration::from_secs(30), host.child.wait())
        .await
        .expect("exit within 30 s of the last response")
        .unwrap();
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn request_bodies_follow_session_max_body_bytes() {
    const MIB: usize = 1024 * 1024;
    let redis = Redis::start().await;
    let origin = Origin::start().await;
    let limit = (12 * MIB).to_string();
    let host = Host::start(&origin, &redis, &[("SESSION_MAX_BODY_BYTES", &limit)]).await;

    // Over the former fixed 10 MiB of the host, under the configured limit.
    let mut connection = host.connect().await;
    let answer = connection.post("/echo", None, vec![b'x'; 11 * MIB]).await;
    assert_eq!(
        (answer.status, answer.body),
        (StatusCode::OK, (11 * MIB).to_string())
    );
    let answer = connection.post("/echo", None, vec![b'x'; 12 * MIB]).await;
    assert_eq!(
        (answer.status, answer.body),
        (StatusCode::OK, (12 * MIB).to_string())
    );

    let mut connection = host.connect().await;
    let answer = connection
        .post("/echo", None, vec![b'x'; 12 * MIB + 1])
        .await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    let error: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(error["code"], "body_too_large", "{error}");
}

#[tokio::test]
async fn the_peer_address_binds_sessions_to_their_subnet() {
    let redis = Redis::start().await;
    let origin = Origin::start().await;
    let host = Host::start(&origin, &redis, &[("SESSION_BIND_SUBNET", "true")]).await;

    let mut home = host.connect_from([127, 0, 0, 1].into()).await;
    let cookie = home
        .post("/login", None, Vec::new())
        .await
        .session_cookie()
        .expect("a session cookie on login");
    assert_eq!(home.get("/me", Some(&cookie)).await.body, "alice");
    // Same /24: still bound.
    let mut neighbour = host.connect_from([127, 0, 0, 2].into()).await;
    assert_eq!(neighbour.get("/me", Some(&cookie)).await.body, "alice");
    // Another /24: the session is not handed out.
    let mut elsewhere = host.connect_from([127, 0, 1, 1].into()).await;
    assert_eq!(elsewhere.get("/me", Some(&cookie)).await.body, "-");
    assert_eq!(home.get("/me", Some(&cookie)).await.body, "alice");
}

#[tokio::test]
async fn bad_configuration_stops_the_host_with_a_message() {
    let run = |vars: &[(&str, &str)]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_edge-session-host"))
            .env_clear()
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let base = [
        ("ORIGIN_URL", "http://127.0.0.1:1"),
        ("REDIS_URL", "redis://127.0.0.1:1"),
        ("SESSION_SECRETS", SECRETS),
        ("GATEWAY_LISTEN", "127.0.0.1:0"),
    ];

    let (ok, stderr) = run(&[&base[..], &[("GATEWAY_LOG", "loud")]].concat());
    assert!(!ok && stderr.contains("--log"), "{stderr}");

    let (ok, stderr) = run(&[base[0], base[1], base[3]]);
    assert!(!ok && stderr.contains("SESSION_SECRETS"), "{stderr}");

    let (ok, stderr) = run(&[&base[..3], &[("GATEWAY_LISTEN", "nowhere")]].concat());
    assert!(!ok && stderr.contains("nowhere"), "{stderr}");
}
