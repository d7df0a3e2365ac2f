//! The harness: a redis-server, origins (the test's own and the demo
//! origin), the `edge-session-host` process and HTTP/1.1 connections to it.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Query, Request as AxumRequest, State};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use axum::routing::{get, post};
use futures_util::StreamExt as _;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::{Mutex, Notify, mpsc};

pub(crate) const SECRETS: &str = "k1:aG9zdC10ZXN0cy1zaWduaW5nLWtleS0zMi1ieXRlcyE=";
pub(crate) const MIB: usize = 1024 * 1024;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body of the requests a [`Connection`] sends.
pub(crate) type ClientBody = BoxBody<Bytes, BoxError>;

/// A redis-server of this test on a free port, stopped and removed on drop.
pub(crate) struct Redis {
    child: std::process::Child,
    dir: std::path::PathBuf,
    port: u16,
}

impl Redis {
    pub(crate) async fn start() -> Self {
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

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A `redis-cli` command against this server; its trimmed output.
    pub(crate) fn cli(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli must be installed");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(crate) fn free_port() -> u16 {
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

/// The demo origin (`tools/demo-origin`, streaming routes included) in this
/// process; returns its URL.
pub(crate) async fn demo_origin() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(demo_origin::serve(listener));
    url
}

/// What the test origin's `/record` got: `bytes` of body, and whether the
/// body ended cleanly (`false`: the request broke off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Upload {
    pub(crate) bytes: u64,
    pub(crate) complete: bool,
}

/// The test's own origin behind the host: `/login` signs `alice` in,
/// `/headers` echoes the request head ([`headers_json`]), `/me`
/// answers with the user the gateway names (`-` for none), `/slow` answers
/// once released, `/echo` answers with the length of the body it got,
/// `/record` reads its body as it comes and reports it ([`Origin::upload`]),
/// `/bulk?bytes=N[&chunked=1]` sends `N` bytes (one shared 1 MiB chunk over
/// and over: the origin costs next to nothing), with a `Content-Length`
/// unless `chunked`.
pub(crate) struct Origin {
    pub(crate) url: String,
    pub(crate) slow_started: Arc<Notify>,
    /// Notified when `/record` starts reading a request.
    pub(crate) record_started: Arc<Notify>,
    pub(crate) slow_release: Arc<Notify>,
    uploads: Mutex<mpsc::UnboundedReceiver<Upload>>,
}

#[derive(Clone)]
struct OriginState {
    slow_started: Arc<Notify>,
    record_started: Arc<Notify>,
    slow_release: Arc<Notify>,
    uploads: mpsc::UnboundedSender<Upload>,
}

impl Origin {
    pub(crate) async fn start() -> Self {
        let (uploads, uploaded) = mpsc::unbounded_channel();
        let state = OriginState {
            slow_started: Arc::new(Notify::new()),
            record_started: Arc::new(Notify::new()),
            slow_release: Arc::new(Notify::new()),
            uploads,
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
            .route("/record", post(record))
            .route("/headers", get(headers_json))
            .route("/static/headers", get(headers_json))
            .route("/bulk", get(bulk))
            .layer(DefaultBodyLimit::disable())
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url,
            slow_started: state.slow_started,
            record_started: state.record_started,
            slow_release: state.slow_release,
            uploads: Mutex::new(uploaded),
        }
    }

    /// The next body `/record` finished reading (or saw break off), within 10 s.
    pub(crate) async fn upload(&self) -> Upload {
        let mut uploads = self.uploads.lock().await;
        tokio::time::timeout(Duration::from_secs(10), uploads.recv())
            .await
            .expect("the origin's /record finished within 10 s")
            .unwrap()
    }
}

/// `/headers`: every request header as JSON (`name -> [values]`), the
/// method and the path and query, and `cache-control: public, max-age=600`
/// on the answer.
async fn headers_json(request: AxumRequest) -> Response {
    let mut seen = serde_json::Map::new();
    for (name, value) in request.headers() {
        let values = seen
            .entry(name.as_str().to_owned())
            .or_insert_with(|| serde_json::Value::Array(Vec::new()));
        if let serde_json::Value::Array(values) = values {
            values.push(
                String::from_utf8_lossy(value.as_bytes())
                    .into_owned()
                    .into(),
            );
        }
    }
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let body =
        serde_json::json!({ "method": request.method().as_str(), "path": path, "headers": seen });
    (
        [(header::CACHE_CONTROL, "public, max-age=600")],
        body.to_string(),
    )
        .into_response()
}

async fn record(State(state): State<OriginState>, request: AxumRequest) -> Response {
    state.record_started.notify_one();
    let mut body = request.into_body().into_data_stream();
    let mut upload = Upload {
        bytes: 0,
        complete: true,
    };
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(chunk) => upload.bytes += chunk.len() as u64,
            Err(_) => {
                upload.complete = false;
                break;
            }
        }
    }
    let _ = state.uploads.send(upload);
    upload.bytes.to_string().into_response()
}

async fn bulk(Query(q): Query<HashMap<String, usize>>) -> Response {
    let bytes = q["bytes"];
    let chunk = Bytes::from(vec![b'x'; MIB]);
    let (whole, rest) = (bytes / MIB, bytes % MIB);
    let chunks =
        std::iter::repeat_n(chunk.clone(), whole).chain((rest > 0).then(|| chunk.slice(..rest)));
    let stream = futures_util::stream::iter(chunks.map(Ok::<_, std::convert::Infallible>));
    let mut response = Body::from_stream(stream).into_response();
    if q.get("chunked") != Some(&1) {
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, bytes.into());
    }
    response
}

/// One `edge-session-host` process, killed on drop if still running.
pub(crate) struct Host {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
}

impl Host {
    /// Starts the binary with the gateway's variables for the origin at
    /// `origin` and `redis`, plus `extra`, listening on a free port
    /// (`GATEWAY_LISTEN` with port 0); returns once it printed its start line.
    pub(crate) async fn start(origin: &str, redis: &Redis, extra: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_edge-session-host"));
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("ORIGIN_URL", origin)
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
    pub(crate) async fn connect(&self) -> Connection {
        self.connect_from(IpAddr::V4(Ipv4Addr::LOCALHOST)).await
    }

    /// A new HTTP/1.1 connection to the host from the local address `from`
    /// (any 127.0.0.0/8 address works on loopback).
    pub(crate) async fn connect_from(&self, from: IpAddr) -> Connection {
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

    pub(crate) fn terminate(&self) {
        let pid = self.child.id().expect("a running host");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// A `/proc/<pid>/status` figure of the host in bytes (`VmRSS`, `VmHWM`).
    pub(crate) fn memory(&self, field: &str) -> u64 {
        let pid = self.child.id().expect("a running host");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
        let kib: u64 = line.trim().trim_end_matches("kB").trim().parse().unwrap();
        kib * 1024
    }
}

/// One client connection: every request sent on it reuses it.
pub(crate) struct Connection {
    sender: SendRequest<ClientBody>,
    host: String,
}

pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

/// The `name=value` of the session cookie `headers` set, if any.
pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("__Host-session="))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
}

impl Answer {
    /// The `name=value` of the session cookie it sets, if any.
    pub(crate) fn session_cookie(&self) -> Option<String> {
        session_cookie(&self.headers)
    }

    /// The body as JSON.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// `bytes` as a [`ClientBody`].
pub(crate) fn full(bytes: impl Into<Bytes>) -> ClientBody {
    Full::new(bytes.into()).map_err(|e| match e {}).boxed()
}

impl Connection {
    /// A request for `path` on this connection, with `cookie`.
    pub(crate) fn request(
        &self,
        method: Method,
        path: &str,
        cookie: Option<&str>,
    ) -> axum::http::request::Builder {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host);
        match cookie {
            Some(cookie) => request.header("cookie", cookie),
            None => request,
        }
    }

    /// Sends `request`; the response comes back as soon as its head is in.
    pub(crate) async fn stream(
        &mut self,
        request: Request<ClientBody>,
    ) -> hyper::Result<axum::http::Response<Incoming>> {
        self.sender.ready().await?;
        self.sender.send_request(request).await
    }

    pub(crate) async fn send(
        &mut self,
        method: Method,
        path: &str,
        cookie: Option<&str>,
        body: Vec<u8>,
    ) -> hyper::Result<Answer> {
        let request = self.request(method, path, cookie).body(full(body)).unwrap();
        let response = self.stream(request).await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    pub(crate) async fn get(&mut self, path: &str, cookie: Option<&str>) -> Answer {
        self.send(Method::GET, path, cookie, Vec::new())
            .await
            .unwrap()
    }

    pub(crate) async fn post(&mut self, path: &str, cookie: Option<&str>, body: Vec<u8>) -> Answer {
        self.send(Method::POST, path, cookie, body).await.unwrap()
    }
}

/// The visitors every streaming test runs for, through `host` in front of
/// the demo origin: `(label, cookie, the x-session-user the origin sees)`.
/// The signed-in one signs in as `alice` with the demo origin's `/api/instruct`.
pub(crate) async fn visitors(
    host: &Host,
) -> Vec<(&'static str, Option<String>, serde_json::Value)> {
    let mut connection = host.connect().await;
    let login = connection
        .post("/api/instruct", None, br#"{"login":"alice"}"#.to_vec())
        .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    let cookie = login.session_cookie().expect("a session cookie on login");
    vec![
        ("anonymous", None, serde_json::Value::Null),
        ("signed-in", Some(cookie), serde_json::json!("alice")),
    ]
}

/// What a client read of a streamed response body.
#[derive(Debug)]
pub(crate) struct Received {
    /// Data bytes read.
    pub(crate) bytes: u64,
    /// Every byte was `demo_origin::stream::pattern` of its offset (when checked).
    pub(crate) pattern_ok: bool,
    /// When the first data byte arrived, from the start given.
    pub(crate) first: Option<Duration>,
    /// When the body ended (or failed), from the start given.
    pub(crate) last: Duration,
    /// The error the body ended with, if it did not end cleanly.
    pub(crate) error: Option<hyper::Error>,
}

/// Reads `body` to its end (or error), checking the demo origin's pattern
/// when `check_pattern`; times from `started`.
pub(crate) async fn receive(mut body: Incoming, started: Instant, check_pattern: bool) -> Received {
    let mut received = Received {
        bytes: 0,
        pattern_ok: true,
        first: None,
        last: Duration::ZERO,
        error: None,
    };
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => {
                received.error = Some(e);
                break;
            }
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        received.first.get_or_insert_with(|| started.elapsed());
        if check_pattern {
            let offset = received.bytes;
            received.pattern_ok &= data
                .iter()
                .enumerate()
                .all(|(k, b)| *b == demo_origin::stream::pattern(offset + k as u64));
        }
        received.bytes += data.len() as u64;
    }
    received.last = started.elapsed();
    received
}

/// `total` bytes of the demo origin's pattern in 256 KiB chunks, one every
/// `every` (none: as fast as they go), as a streamed (chunked) body.
pub(crate) fn pattern_body(total: u64, every: Option<Duration>) -> ClientBody {
    const CHUNK: u64 = 256 * 1024;
    let chunks = futures_util::stream::unfold(0u64, move |offset| async move {
        if offset >= total {
            return None;
        }
        if let Some(every) = every.filter(|_| offset > 0) {
            tokio::time::sleep(every).await;
        }
        let len = (total - offset).min(CHUNK);
        let chunk: Vec<u8> = (offset..offset + len)
            .map(demo_origin::stream::pattern)
            .collect();
        Some((
            Ok::<_, BoxError>(Frame::data(Bytes::from(chunk))),
            offset + len,
        ))
    });
    BodyExt::boxed(StreamBody::new(chunks))
}
